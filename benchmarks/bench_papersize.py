"""The paper's size on a CPU (issue 13, item 3): memory and time of the dynamical reconstruction.

For each grid N³ (preset ``au-cube-200`` resized to N points, all 401 rocking angles) and angle
chunk size, two fresh subprocesses:

1. ``simulate``: the noise-free dynamical stack (no kinematic comparison stacks), written with its
   geometry to a pickle in ``--workdir`` (reused when present);
2. ``reconstruct``: :func:`dynbcdi.reconstruct.reconstruct` with :func:`default_config` (the
   pipeline's settings: 5 mini-batches per epoch, ``chunk_size`` 16 unless ``--chunks`` says
   otherwise), started from the true crystal, for ``--epochs`` epochs, no fit statistics. Times:
   the set-up (data to torch, operators, one forward pass over all angles for the intensity
   scale) and each epoch (wall, from the run's history; CPU time of the process from the second
   epoch on: on a shared machine the wall time depends on the load, the CPU time much less).
   Memory: the process's resident-set high-water mark (``ru_maxrss``, via wait4), i.e. what the
   machine must hold, the loaded data set included.

``--max-angles M`` fits a subset of M evenly spread angles (mini-batches scaled to keep ~80 angles
each) and scales the epoch time by 401/M: for grids where a full epoch is too slow; the table
says so. The memory law ``peak ≈ base + a·N³ + b·chunk·N² + c·angles·N²`` is fitted by least
squares to all reconstruct cases (b needs at least two chunk sizes at one N).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_papersize.py --sizes 64,96,128 --chunks 16 \
        --extra 128:8,128:32 --epochs 2

Prints one Markdown table (pasted into benchmarks/RESULTS.md) and the fitted law.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_ANGLES = 401
GIB = 1 << 30


def _simulate(n: int, path: Path) -> dict:
    """Simulate au-cube-200 at n points (dynamical stack only) and pickle it to ``path``."""
    from dynbcdi.simulate import simulate_dataset
    from dynbcdi.simulate.presets import sized_preset

    cfg = sized_preset("au-cube-200", n)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kinematic=False, refraction_kinematic=False))
    t0 = time.perf_counter()
    ds = simulate_dataset(cfg)
    wall = time.perf_counter() - t0
    ds = dataclasses.replace(ds, intensity=ds.intensity.astype(np.float32), metadata={})
    path.write_bytes(pickle.dumps(ds, protocol=5))
    return {"simulate_s": wall, "grid": list(ds.truth.shape)}


def _reconstruct(path: Path, epochs: int, chunk: int, max_angles: int | None) -> dict:
    """Time the set-up and ``epochs`` epochs of the dynamical reconstruction of the pickled data."""
    import torch

    from dynbcdi.reconstruct import default_config, reconstruct
    from dynbcdi.reconstruct.pipeline import forward_model

    ds = pickle.loads(path.read_bytes())
    take = np.arange(ds.intensity.shape[0])
    if max_angles is not None and max_angles < take.size:
        take = np.linspace(0, take.size - 1, max_angles).round().astype(int)
    dq = ds.geometry.dq_grid(ds.geometry.grid_frame())[take]
    base = default_config(epochs)
    n_batches = max(1, round(base.optimizer.n_batches * take.size / N_ANGLES))
    cfg = dataclasses.replace(base, optimizer=dataclasses.replace(base.optimizer, chunk_size=chunk,
                                                                  n_batches=n_batches))
    model = forward_model(ds)
    cpu = [time.process_time()]  # CPU time of this process: what the wall time would be on an idle core
    t0 = time.perf_counter()
    res = reconstruct(ds.intensity[take], ds.valid, dq, model, ds.truth, cfg, evaluate=False,
                      progress=lambda record: cpu.append(time.process_time()))
    total = time.perf_counter() - t0
    times = np.diff([0.0, *(r.time_s for r in res.history.records)])
    cpu_epochs = np.diff(cpu)  # the first includes the set-up
    return {"grid": list(ds.truth.shape), "angles": int(take.size), "chunk": chunk, "n_batches": n_batches,
            "epochs": len(times), "setup_s": total - float(times.sum()), "epoch_s": [float(t) for t in times],
            "epoch_cpu_s": [float(t) for t in cpu_epochs[1:]], "threads": torch.get_num_threads()}


def run_child(args: list[str]) -> dict:
    """Run this script with ``args`` in a fresh process; its JSON result plus ``peak_rss_bytes``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    # wait4 instead of communicate: it returns the child's own rusage (peak RSS of that process)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"child {' '.join(args)} failed with status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(peak_rss_bytes=usage.ru_maxrss * 1024, wall_s=time.perf_counter() - t0)
    return result


def cli_simulate(n: int, workdir: Path) -> dict:
    """``dynbcdi simulate --preset au-cube-200 --size n --figures`` in a fresh process: wall time and
    peak RSS (wait4), the three stacks' times from its summary."""
    out = workdir / f"au-cube-200_{n}.cxi"
    cmd = [sys.executable, "-m", "dynbcdi.cli.main", "simulate", "--preset", "au-cube-200", "--size", str(n),
           "--out", str(out), "--overwrite", "--no-progress", "--figures"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{' '.join(cmd)} failed")
    grid = next(ln.split(":")[1].split(",")[0] for ln in text.splitlines() if ln.startswith("grid:"))
    shape = [int(v) for v in grid.replace("×", " ").split()]
    models = {ln.split()[1]: float(ln.rsplit("(", 1)[1].split()[0])  # "peak <model> ... (12.3 s)"
              for ln in text.splitlines() if ln.startswith("peak ")}
    return {"grid": shape, "angles": N_ANGLES, "wall_s": time.perf_counter() - t0,
            "peak_rss_bytes": usage.ru_maxrss * 1024, "model_s": models}


def simulate_table(rows: list[dict]) -> str:
    """Markdown table of the CLI simulations, and their memory law base + a·N³ + c·angles·N²."""
    out = ["| grid (z, y, x) × angles | wall (s) | dynamical / refraction-kinematic / kinematic (s) "
           "| peak RSS (GiB) |",
           "|---|---|---|---|"]
    for r in rows:
        m = r["model_s"]
        out.append(f"| {' × '.join(map(str, r['grid']))} × {r['angles']} | {r['wall_s']:.1f} "
                   f"| {' / '.join(f'{m.get(k, 0):.1f}' for k in ('dynamical', 'refraction_kinematic', 'kinematic'))} "
                   f"| {r['peak_rss_bytes'] / GIB:.2f} |")
    law = fit_law([dict(r, chunk=0) for r in rows])
    return "\n".join(out) + "\n" + law_text(law).replace("memory law", "simulate memory law")


def fit_law(rows: list[dict]) -> dict[str, float] | None:
    """Least-squares peak ≈ base + a·N³ + b·chunk·N² + c·angles·N² (bytes; N³ = Z·Y·X, N² = Y·X).

    Terms that the rows cannot separate (one chunk size, one angle count) are left out (None).
    """
    if len(rows) < 3:
        return None
    vox = np.array([np.prod(r["grid"]) for r in rows], float)
    plane = np.array([r["grid"][1] * r["grid"][2] for r in rows], float)
    chunk = np.array([r["chunk"] for r in rows], float)
    angles = np.array([r["angles"] for r in rows], float)
    cols = {"base": np.ones_like(vox), "a": vox}
    if len(set(chunk)) > 1:
        cols["b"] = chunk * plane
    cols["c"] = angles * plane  # with one angle count, c also absorbs b·chunk at that chunk
    if len(rows) < len(cols):
        return None
    A = np.stack(list(cols.values()), axis=1)
    y = np.array([r["peak_rss_bytes"] for r in rows], float)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    law = dict(zip(cols, coef.tolist()))
    law["max_rel_residual"] = float(np.max(np.abs(A @ coef - y) / y))
    return law


def table(rows: list[dict]) -> str:
    """Markdown table of the reconstruct cases."""
    out = ["| grid (z, y, x) | angles fitted | chunk | set-up (s) | time per epoch (s) | CPU per epoch (s) "
           "| per mini-batch (s) | peak RSS (GiB) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        scale = N_ANGLES / r["angles"]
        epoch = float(np.median(r["epoch_s"])) * scale
        note = "" if r["angles"] == N_ANGLES else f" (from {r['angles']} angles × {scale:.2f})"
        cpu = f"{float(np.median(r['epoch_cpu_s'])) * scale:.1f}" if r.get("epoch_cpu_s") else "–"
        out.append(f"| {' × '.join(map(str, r['grid']))} | {r['angles']} | {r['chunk']} | {r['setup_s']:.1f} "
                   f"| {epoch:.1f}{note} | {cpu} | {float(np.median(r['epoch_s'])) / r['n_batches']:.1f} "
                   f"| {r['peak_rss_bytes'] / GIB:.2f} |")
    return "\n".join(out)


def law_text(law: dict[str, float] | None) -> str:
    """The fitted memory law as one line."""
    if law is None:
        return "memory law: not enough cases to fit"
    parts = [f"{law['base'] / GIB:.2f} GiB", f"{law['a']:.0f} B·N³"]
    if "b" in law:
        parts.append(f"{law['b']:.0f} B·chunk·N²")
    parts.append(f"{law['c']:.1f} B·angles·N²")
    return f"memory law: peak ≈ {' + '.join(parts)} (largest residual {100 * law['max_rel_residual']:.1f} %)"


def _cases(args: argparse.Namespace) -> list[tuple[int, int]]:
    cases = [(int(n), c) for n in args.sizes.split(",") if n for c in map(int, args.chunks.split(","))]
    for item in filter(None, args.extra.split(",")):
        n, c = item.split(":")
        cases.append((int(n), int(c)))
    return cases


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (also the child modes ``--child-simulate`` / ``--child-reconstruct``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,96,128", help="grid points per direction, comma-separated ('' for none)")
    parser.add_argument("--chunks", default="16", help="chunk sizes for every size (default_config: 16)")
    parser.add_argument("--extra", default="", help="more N:chunk cases, e.g. 128:8,128:32")
    parser.add_argument("--cli-simulate", default="", help="also time `dynbcdi simulate` at these sizes, e.g. 64,256")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-angles", type=int, help="fit only this many angles (epoch time scaled)")
    parser.add_argument("--workdir", type=Path, default=Path("bench_papersize_out"))
    parser.add_argument("--json", type=Path, help="also write the rows and law here")
    parser.add_argument("--child-simulate", nargs=2, metavar=("N", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--child-reconstruct", nargs=4, metavar=("PATH", "EPOCHS", "CHUNK", "MAX"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_simulate:
        print(json.dumps(_simulate(int(args.child_simulate[0]), Path(args.child_simulate[1]))))
        return 0
    if args.child_reconstruct:
        path, epochs, chunk, most = args.child_reconstruct
        print(json.dumps(_reconstruct(Path(path), int(epochs), int(chunk), int(most) or None)))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    sims = []
    for n in filter(None, args.cli_simulate.split(",")):
        sims.append(cli_simulate(int(n), args.workdir))
        sim = sims[-1]
        print(f"dynbcdi simulate --size {n}: {sim['wall_s']:.1f} s, peak {sim['peak_rss_bytes'] / GIB:.2f} GiB",
              flush=True)
    rows = []
    for n, chunk in _cases(args):
        data = args.workdir / f"au-cube-200_{n}.pkl"
        if not data.exists():
            sim = run_child(["--child-simulate", str(n), str(data)])
            print(f"simulated {n}: {sim['simulate_s']:.1f} s, peak RSS {sim['peak_rss_bytes'] / GIB:.2f} GiB",
                  flush=True)
        row = run_child(["--child-reconstruct", str(data), str(args.epochs), str(chunk), str(args.max_angles or 0)])
        rows.append(row)
        print(f"N={n} chunk={chunk}: set-up {row['setup_s']:.1f} s, epochs {row['epoch_s']}, "
              f"peak {row['peak_rss_bytes'] / GIB:.2f} GiB", flush=True)
    if sims:
        print(simulate_table(sims))
    law = fit_law(rows)
    if rows:
        print(table(rows))
        print(law_text(law))
    print(f"load average {os.getloadavg()[0]:.2f} at the end, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "law": law, "simulate": sims}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
