"""Strong scaling of one reconstruction epoch over rocking-angle shards (torch.distributed).

Usage (launcher: runs every configuration through torchrun on 127.0.0.1 and prints a table)::

    .venv/bin/python benchmarks/bench_distributed.py --procs 1 2 --epochs 3
    .venv/bin/python benchmarks/bench_distributed.py --device cuda --procs 1 2 4 8   # on a GPU node

Each configuration reconstructs a strained Au (200) plate at 8 keV with the TTE model in the loop
(grid ``--grid`` = Z Y X, ``--angles`` rocking angles, float32, one chunk per mini-batch and rank)
for ``--epochs`` epochs; the first epoch is a warm-up and is not timed. Reported per epoch (median):
wall time, speed-up and parallel efficiency against the 1-rank torchrun run, rank 0's CPU time (the
work of one rank, which the load of a shared machine distorts less than the wall time), and the
time in collectives (all-reduce of gradients and loss, including the wait for the slowest rank)
with its share of the epoch. The same problem also runs without torch.distributed ("single", 1 and
2 threads) to show the cost of the process group and the alternative of threads.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def build_problem(grid: tuple[int, int, int], n_angles: int) -> dict:
    """TTE data of a strained Au (200) plate, 8 keV, voxel 36 nm (the reconstruct test's crystal, scaled)."""
    from dynbcdi.forward.tte import TTEModel
    from dynbcdi.geometry import generic_geometry
    from dynbcdi.materials import reflection_constants
    from dynbcdi.simulate import displacement, shapes

    refl = reflection_constants("Au", (2, 0, 0), 8000.0, lattice_a_m=4.07e-10)
    dx, pixel_m = 36e-9, 55e-6
    distance_m = grid[2] * dx * pixel_m / refl.wavelength_m
    step = refl.d_spacing_m / (n_angles * dx * np.cos(refl.bragg_angle_rad))
    geo = generic_geometry(refl, (np.arange(n_angles) - n_angles // 2) * step, grid[1:], pixel_m, distance_m)
    spacing = (dx, dx, dx)
    edges = np.diag([(grid[2] - 2) * dx, (grid[1] // 2) * dx, (grid[2] - 2) * dx]) * 0.45
    s = shapes.parallelepiped(grid, spacing, edges)
    h = geo.grid_frame().to_grid(geo.h)
    u = displacement.gaussian_bulge(grid, spacing, 6e-11, 150e-9, h / np.linalg.norm(h))
    truth = displacement.crystal_function(s, displacement.phase_from_displacement(u, h), np.complex64)
    model = TTEModel.from_geometry(geo, refl, spacing)
    dq = geo.dq_grid()
    with torch.no_grad():
        data = model(torch.as_tensor(truth), torch.as_tensor(dq, dtype=torch.float32)).double().numpy()
    init = np.where(np.abs(truth) > 0.5, 0.8 * np.exp(1j * 0.5 * np.angle(truth)), 0).astype(np.complex64)
    return {"model": model, "dq": dq, "intensity": data * (1e9 / data.sum()),
            "valid": np.ones(grid[1:], bool), "init": init}


def worker(args: argparse.Namespace) -> None:
    """One rank: reconstruct for ``args.epochs`` epochs, record epoch and collective times."""
    from dynbcdi.distributed import SingleProcess, init_distributed
    from dynbcdi.reconstruct import OptimizerConfig, ReconstructionConfig, reconstruct

    torch.set_num_threads(args.threads)
    comm = init_distributed(device=args.device) if "RANK" in os.environ else SingleProcess()
    device = str(getattr(comm, "device", args.device if args.device != "auto" else "cpu"))
    p = build_problem(tuple(args.grid), args.angles)
    chunk = -(-args.angles // args.batches)   # one chunk per mini-batch and rank, whatever the ranks
    cfg = ReconstructionConfig(epochs=args.epochs, device=device, dtype="complex64",
                               optimizer=OptimizerConfig(n_batches=args.batches, chunk_size=chunk))
    marks = []

    def progress(record) -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        marks.append((time.perf_counter(), comm.stats.seconds, comm.stats.bytes, time.process_time()))

    comm.stats.reset()
    marks.append((time.perf_counter(), 0.0, 0, time.process_time()))
    reconstruct(p["intensity"], p["valid"], p["dq"], p["model"], p["init"], cfg, progress=progress, comm=comm)
    timed = np.diff(np.array(marks), axis=0)[1:]          # epochs after the warm-up
    row = {"world_size": comm.world_size, "threads": args.threads, "device": device,
           "epoch_s": statistics.median(timed[:, 0]), "comm_s": statistics.median(timed[:, 1]),
           "mbytes": float(np.median(timed[:, 2])) / 1e6, "cpu_s": statistics.median(timed[:, 3]),
           "distributed": not isinstance(comm, SingleProcess)}
    if comm.is_main:
        Path(args.worker).write_text(json.dumps(row))
    if hasattr(comm, "close"):
        comm.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: argparse.Namespace, procs: int | None, threads: int, out: Path) -> dict:
    """Run :func:`worker` with ``procs`` torchrun ranks (None: plain process) and return its row."""
    script = [os.fspath(Path(__file__).resolve()), "--worker", os.fspath(out), "--threads", str(threads),
              "--grid", *map(str, args.grid), "--angles", str(args.angles), "--epochs", str(args.epochs),
              "--batches", str(args.batches), "--device", args.device]
    if procs is None:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={procs}",
               "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{_free_port()}", *script]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads(out.read_text())


def table(rows: list[dict]) -> str:
    """Markdown table; speed-up and efficiency relative to the 1-rank torch.distributed run."""
    base = next((r["epoch_s"] for r in rows if r["distributed"] and r["world_size"] == 1), rows[0]["epoch_s"])
    lines = ["| run | ranks × threads | epoch (s) | speed-up | efficiency | CPU s / rank | collectives (s) | "
             "comm share | MB reduced / epoch |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        speedup = base / r["epoch_s"]
        kind = f"torchrun ({'nccl' if r['device'].startswith('cuda') else 'gloo'})" if r["distributed"] else "single"
        lines.append(f"| {kind} | {r['world_size']} × {r['threads']} | {r['epoch_s']:.3f} | {speedup:.2f} | "
                     f"{speedup / r['world_size']:.2f} | {r['cpu_s']:.3f} | {r['comm_s']:.4f} | "
                     f"{100 * r['comm_s'] / r['epoch_s']:.1f} % | {r['mbytes']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="rank counts to run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--single-threads", type=int, nargs="*", default=[1],
                        help="thread counts of the runs without torch.distributed")
    parser.add_argument("--grid", type=int, nargs=3, default=[32, 64, 64], metavar=("Z", "Y", "X"))
    parser.add_argument("--angles", type=int, default=200)
    parser.add_argument("--batches", type=int, default=5, help="mini-batches per epoch (paper: 5)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run, the first untimed")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        for threads in args.single_threads:
            rows.append(launch(args, None, threads, out))
        for procs in args.procs:
            rows.append(launch(args, procs, args.threads, out))
    print(f"grid {tuple(args.grid)}, {args.angles} angles, {args.batches} mini-batches, "
          f"TTE float32, device {args.device}, torch {torch.__version__}")
    print(table(rows))


if __name__ == "__main__":
    main()
