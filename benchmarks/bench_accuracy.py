"""Accuracy with error bars (issue 12, items 3 and 5): many seeds per case, median and worst.

For every (case, data, seed) the truth-free pipeline runs in its own subprocess (one torch thread):

1. simulate the case's noise-free dataset (:func:`case_config`; the presets through
   :func:`dynbcdi.simulate.presets.sized_preset`, which refines dz where a reduced size would alias z);
2. data "noise-free", or "poisson": Poisson counts with ``--photons`` in the scan, drawn with the seed;
3. :func:`dynbcdi.reconstruct.run_pipeline` with ``n_starts`` kinematic phasing starts seeded
   seed × n_starts + k (no start shared between two seeds) and the dynamical mini-batch order seeded
   by the seed (``ReconstructionConfig.seed``);
4. the kinematic result on the grid and the dynamical result compared with the truth by
   :func:`dynbcdi.analysis.compare` (translation, twin, global phase aligned; inside |truth| > 0.5; no
   ramp removed; the kinematic one also with the ramp removed, as the regime estimate does).

Each run writes ``<out>/runs/<case>__<data>__s<seed>.json`` (metrics, epochs, stop reason, times, peak
RSS, fingerprint of the settings). A rerun skips finished runs; a finished run made with other
settings (a different fingerprint: size, epochs, starts, photons, the case's simulation config, the
pipeline defaults) is refused rather than mixed into the table. Then (and with ``--table-only``) a
Markdown table of median / worst per (case, data), and the regime diagnosis of each case
(:func:`dynbcdi.analysis.regime.diagnose_regime` on the true support) beside the measured kinematic
error.

Usage (from the repository root)::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_accuracy.py --out /tmp/acc --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_KINDS = ("noise-free", "poisson")


@dataclass(frozen=True)
class Case:
    """One benchmark crystal: how to build its simulation config at ``size`` points, and why that size."""

    build: Callable[[int], object]  # size -> SimulationConfig (dynbcdi.simulate.config)
    size: int                       # default points per direction (CPU)
    note: str                       # what the grid is, for the table


def _no_extras(cfg):
    """Dynamical patterns only (no kinematic comparison stacks), noise-free (noise added per seed)."""
    from dynbcdi.simulate.config import NoiseConfig

    return dataclasses.replace(cfg, noise=NoiseConfig(), model=dataclasses.replace(
        cfg.model, kinematic=False, refraction_kinematic=False))


def _au_demo(size: int):
    from dynbcdi.simulate.presets import sized_preset

    return _no_extras(sized_preset("au-demo", size))


def _au_demo_smooth(size: int):
    cfg = _au_demo(size)  # the same crystal with a 10 nm tanh surface (issue 12)
    return dataclasses.replace(cfg, crystal=dataclasses.replace(cfg.crystal, smooth_m=1e-8))


def _au_demo_34idc(size: int):
    """au-demo's crystal, detector and rocking range in the APS 34-ID-C geometry with the detector
    at γ = 5° out of the horizontal plane (δ from the Bragg condition): h no longer lies in the
    horizontal plane, so the grid frame is rotated against the crystal's faces."""
    from dynbcdi.simulate.presets import preset
    from dynbcdi.simulate.scan import fit_z_sampling

    cfg = preset("au-demo")
    cfg = dataclasses.replace(cfg, geometry=dataclasses.replace(cfg.geometry, kind="34idc", gamma_deg=5.0))
    return _no_extras(fit_z_sampling(_resize(cfg, size)))


def _resize(cfg, size: int):
    from dynbcdi.simulate.presets import resize

    return resize(cfg, size)


def _narrowed(name: str, half_range_deg: float, step_deg: float, size: int):
    """Preset ``name`` at ``size`` with the rocking range narrowed to ±``half_range_deg``: the coarse CPU
    voxels cannot hold the full range along z without a much finer dz (more z planes)."""
    from dynbcdi.simulate.presets import preset
    from dynbcdi.simulate.scan import fit_z_sampling

    cfg = preset(name)
    geo = dataclasses.replace(cfg.geometry, rocking_start_deg=-half_range_deg, rocking_stop_deg=half_range_deg,
                              rocking_step_deg=step_deg)
    return _no_extras(fit_z_sampling(_resize(dataclasses.replace(cfg, geometry=geo), size)))


def _tiny_au(size: int):
    """Smoke-test crystal (tests/test_bench_accuracy.py, not a benchmark case): a 0.3 µm Au (200) cube
    (1.2 extinction lengths) on ``size``³ voxels of 0.99 µm / size (detector ``size`` × 55 µm at 0.35 m
    × size / 20), rocking ±0.1° in 0.01° (21 angles), au-demo's bulge scaled down."""
    from dynbcdi.simulate.config import SimulationConfig, from_dict
    from dynbcdi.simulate.presets import PRESETS

    base = PRESETS["au-demo"]
    cfg = dict(base, name="tiny-au", grid={"nz": size}, crystal={"shape": "cube", "size_m": [3e-7]},
               geometry=dict(base["geometry"], detector_shape=[size, size], distance_m=0.35 * size / 20,
                             rocking_start_deg=-0.1, rocking_stop_deg=0.1, rocking_step_deg=0.01),
               deformation=[dict(base["deformation"][0], sigma_m=8e-8, center_m=[2e-8, 2e-8, 0.0])])
    return _no_extras(from_dict(SimulationConfig, cfg))


CASES: dict[str, Case] = {
    # Default sizes: the whole table (6 cases × 2 data × 8 seeds) in ≈ 90 CPU-minutes of one thread
    # (benchmarks/RESULTS.md, "Accuracy over seeds"): 48 for au-demo, as coarse as 40 for the others.
    "au-demo": Case(_au_demo, 48, "0.6 µm Au (200) cube"),
    "au-demo-smooth": Case(_au_demo_smooth, 48, "au-demo with a 10 nm tanh surface"),
    # as benchmarks/bench_reconstruct.py: ±0.14° in 0.003° (the preset's ±0.2° aliases z at 44 nm voxels)
    "au-cube-200": Case(lambda n: _narrowed("au-cube-200", 0.14, 0.003, n), 40, "1 µm Au (200) cube, ±0.14°"),
    "au-cube-2um": Case(lambda n: _narrowed("au-cube-2um", 0.05, 0.002, n), 40, "2 µm Au (200) cube, ±0.05°"),
    # the paper's 1.5 µm crystal on a coarse grid, its ±0.15° narrowed to ±0.1° (nz 124 → 83 at 40)
    "sr2iro4-116": Case(lambda n: _narrowed("sr2iro4-116", 0.1, 0.003, n), 40,
                        "1.5 µm Sr2IrO4 (116), 34-ID-C γ = 3°, coarse grid, ±0.1°"),
    "au-34idc-gamma": Case(_au_demo_34idc, 40, "au-demo crystal, 34-ID-C γ = 5°"),
    "tiny-au": Case(_tiny_au, 20, "smoke test only"),
}
DEFAULT_CASES = [name for name in CASES if name != "tiny-au"]


def case_config(name: str, size: int | None = None):
    """Simulation config of case ``name`` at ``size`` points per direction (default: the case's CPU size)."""
    if name not in CASES:
        raise ValueError(f"unknown case {name!r}; available: {', '.join(CASES)}")
    return CASES[name].build(size or CASES[name].size)


def start_config(trial_epochs: int | None = None):
    """The pipeline's default start search, or with ``trial_epochs`` quick trial epochs per candidate."""
    from dynbcdi.reconstruct import StartConfig

    return StartConfig() if trial_epochs is None else dataclasses.replace(StartConfig(), quick_epochs=trial_epochs)


def settings(name: str, size: int, epochs: int, n_starts: int, photons: float,
             trial_epochs: int | None = None, attempts: int = 1) -> dict:
    """Everything that decides a run's result apart from the seed and the data kind, with its hash."""
    from dynbcdi.reconstruct import default_config
    from dynbcdi.simulate.config import to_dict

    s = {"case": name, "size": size, "epochs": epochs, "n_starts": n_starts, "photons": photons,
         **({} if attempts == 1 else {"attempts": attempts}),  # 1: the fingerprints of earlier tables
         "simulation": to_dict(case_config(name, size)), "reconstruction": repr(default_config(epochs)),
         "start": repr(start_config(trial_epochs)), "seeds": "noise: seed; phasing starts: seed × n_starts + k; "
                                                              "mini-batch order: seed"}
    s["fingerprint"] = hashlib.sha256(json.dumps(s, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return s


def run_path(out: Path, name: str, data: str, seed: int) -> Path:
    """Where the result of one run lives."""
    return out / "runs" / f"{name}__{data}__s{seed}.json"


def _metrics(m) -> dict:
    return {"phase_rms_rad": m.phase_rms_rad, "amplitude_rel_error": m.amplitude_rel_error,
            "empty_fraction": m.empty_fraction, "displacement_rms_pm": m.displacement_rms_pm,
            "strain_rms": m.strain_rms, "twin": bool(m.twin)}


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process so far: unlike wall time, not inflated by a busy machine."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def run_one(name: str, data: str, seed: int, size: int, epochs: int, n_starts: int, photons: float,
            trial_epochs: int | None = None, attempts: int = 1) -> dict:
    """Simulate, (noise), truth-free pipeline, compare: one run's record (SI; times in s, RSS in MiB)."""
    from dynbcdi.analysis import compare
    from dynbcdi.reconstruct import default_config, run_pipeline
    from dynbcdi.reconstruct.pipeline import final_loss
    from dynbcdi.simulate import simulate_dataset
    from dynbcdi.simulate.noise import poisson_noise

    if data not in DATA_KINDS:
        raise ValueError(f"data must be one of {DATA_KINDS}, got {data!r}")
    t0 = time.perf_counter()
    ds = simulate_dataset(case_config(name, size))
    if data == "poisson":
        ds = dataclasses.replace(ds, intensity=poisson_noise(ds.intensity.astype(np.float64), total_photons=photons,
                                                             rng=seed))
    t_sim = time.perf_counter() - t0
    config = dataclasses.replace(default_config(epochs), seed=seed * attempts)
    # phase_retrieval's start k uses seed + k: seed × n_starts × attempts gives every run (and each of its
    # attempts, run_pipeline's seed + a × n_starts) its own, disjoint starts.
    res = run_pipeline(ds, n_starts=n_starts, seed=seed * n_starts * attempts, config=config,
                       start=start_config(trial_epochs), attempts=attempts)
    truth = ds.truth.astype(np.complex128)
    h = ds.geometry.grid_frame().to_grid(ds.geometry.h)
    kw = {"support": np.abs(truth) > 0.5, "h_norm": ds.reflection.h_norm, "spacing_m": ds.spacing_m,
          "h_dir_grid": h / np.linalg.norm(h)}
    return {"case": name, "data": data, "seed": seed, "grid": list(truth.shape), "angles": ds.intensity.shape[0],
            "spacing_nm": [d * 1e9 for d in ds.spacing_m],
            "kinematic": _metrics(compare(res.kinematic_grid, truth, **kw)),
            "kinematic_ramp_removed": _metrics(compare(res.kinematic_grid, truth, remove_ramp=True, **kw)),
            "dynamical": _metrics(compare(res.dynamical.S, truth, **kw)),
            "epochs": res.dynamical.epochs, "stopped_reason": res.dynamical.stopped_reason,
            "final_loss": final_loss(res.dynamical), "attempts": res.attempts,  # truth-free ranking
            "phasing_errors": [float(e) for e in res.phasing.start_errors],
            "phasing_seeds": [int(k) for k in res.phasing.seeds],
            "time_simulate_s": t_sim, "time_phasing_s": res.timings["phasing"],
            "time_dynamical_s": res.timings["dynamical"], "time_total_s": time.perf_counter() - t0,
            "cpu_s": _cpu_s(),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load_avg": os.getloadavg()}


def _write_new(path: Path, record: dict) -> None:
    """Write ``record`` as JSON to a new file (atomic rename; never over an existing one)."""
    if path.exists():
        raise FileExistsError(f"{path} exists already; not overwritten")
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, default=float))
    os.replace(tmp, path)


def plan(out: Path, cases: Sequence[str], seeds: Sequence[int], sizes: dict[str, int], epochs: int,
         n_starts: int, photons: float, data_kinds: Sequence[str] = DATA_KINDS, trial_epochs: int | None = None,
         attempts: int = 1) -> tuple[list[tuple[str, str, int]], dict[str, dict]]:
    """The runs still to do, and the settings of each case. Finished runs with the same fingerprint are
    skipped; one made with other settings raises ValueError (use another --out)."""
    todo, sets = [], {}
    for name in cases:
        sets[name] = settings(name, sizes[name], epochs, n_starts, photons, trial_epochs, attempts)
        for path in sorted((out / "runs").glob(f"{name}__*.json")):  # every finished run, any seed or data
            found = json.loads(path.read_text()).get("fingerprint")
            if found != sets[name]["fingerprint"]:
                raise ValueError(f"{path} was made with other settings (fingerprint {found}, now "
                                 f"{sets[name]['fingerprint']}): use another --out, or the same settings")
        todo += [(name, data, seed) for data in data_kinds for seed in seeds
                 if not run_path(out, name, data, seed).exists()]
    return todo, sets


def _command(args: argparse.Namespace, name: str, data: str, seed: int, size: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--out", str(args.out), "--one", f"{name},{data},{seed}",
            "--size", str(size), "--epochs", str(args.epochs), "--starts", str(args.starts),
            "--photons", repr(args.photons), "--attempts", str(args.attempts)] + ([] if args.trial_epochs is None else
                                                ["--trial-epochs", str(args.trial_epochs)])


def run_all(args: argparse.Namespace, todo: list[tuple[str, str, int]], sizes: dict[str, int]) -> list[str]:
    """Run the pending runs, ``args.jobs`` subprocesses at a time (one thread each); returns the failures."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    pending, running, failed = list(todo), [], []
    while pending or running:
        while pending and len(running) < args.jobs:
            name, data, seed = pending.pop(0)
            log = open(args.out / "runs" / f"{name}__{data}__s{seed}.log", "w")  # noqa: SIM115 (closed below)
            proc = subprocess.Popen(_command(args, name, data, seed, sizes[name]), env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
            running.append((proc, log, (name, data, seed)))
            print(f"started {name} {data} seed {seed}", flush=True)
        time.sleep(0.5)
        for item in list(running):
            proc, log, key = item
            if proc.poll() is None:
                continue
            running.remove(item)
            log.close()
            status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {log.name})"
            if proc.returncode != 0:
                failed.append(" ".join(map(str, key)))
            print(f"{status}: {' '.join(map(str, key))}", flush=True)
    return failed


def load_runs(out: Path) -> list[dict]:
    """Every finished run record under ``out``."""
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def _med_worst(values: Sequence[float], fmt: str = ".3f") -> str:
    return f"{statistics.median(values):{fmt}} / {max(values):{fmt}}"


def regime_of(name: str, size: int) -> dict:
    """Regime diagnosis of case ``name`` on its true support (|truth| > 0.5), as a dict."""
    from dynbcdi.analysis.regime import diagnose_regime
    from dynbcdi.simulate.scan import prepare_scan

    p = prepare_scan(case_config(name, size))
    support = np.abs(p.sample.crystal_function(np.complex64)) > 0.5
    d = diagnose_regime(support, p.spacing_m, p.geometry, p.reflection)
    return {"size_over_extinction": d.size_over_extinction, "size_over_absorption": d.size_over_absorption,
            "refraction_shift_urad": d.refraction_shift_rad * 1e6, "phase_error_rad": d.phase_error_rad,
            "phase_error_no_ramp_rad": d.phase_error_no_ramp_rad, "verdict": d.verdict,
            "seconds": d.seconds}


def table(runs: list[dict], regimes: dict[str, dict] | None = None) -> str:
    """Markdown tables: accuracy per (case, data) over the seeds, then the regime check per case."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["case"], r["data"]), []).append(r)
    lines = ["| case | grid | data | seeds | kinematic phase RMS (rad) median / worst | dynamical phase RMS (rad) "
             "median / worst | dynamical amplitude error median / worst | dynamical empty fraction median / worst "
             "| epochs (stop) | time per run (s) median / CPU s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (name, data), rs in groups.items():
        rs.sort(key=lambda r: r["seed"])
        grid = "×".join(map(str, rs[0]["grid"])) + f", {rs[0]['angles']} angles"
        stops = sorted({r["stopped_reason"] for r in rs})
        lines.append(
            f"| {name} | {grid} | {data} | {len(rs)} | {_med_worst([r['kinematic']['phase_rms_rad'] for r in rs])} "
            f"| {_med_worst([r['dynamical']['phase_rms_rad'] for r in rs])} "
            f"| {_med_worst([r['dynamical']['amplitude_rel_error'] for r in rs])} "
            f"| {_med_worst([r['dynamical']['empty_fraction'] for r in rs])} "
            f"| {statistics.median(r['epochs'] for r in rs):.0f} ({', '.join(stops)}) "
            f"| {statistics.median(r['time_total_s'] for r in rs):.0f} / "
            f"{statistics.median(r['cpu_s'] for r in rs):.0f} |")
    if not regimes:
        return "\n".join(lines)
    lines += ["", "| case | size / t_B | size / absorption length | refraction shift (µrad) | predicted kinematic "
              "error (rad), peak centred / no ramp | verdict | measured kinematic, noise-free median: ramp removed "
              "/ no ramp (rad) | measured dynamical median (rad) |", "|---|---|---|---|---|---|---|---|"]
    for name, g in regimes.items():
        rs = groups.get((name, "noise-free"), [])
        kin = (f"{statistics.median(r['kinematic_ramp_removed']['phase_rms_rad'] for r in rs):.3f} / "
               f"{statistics.median(r['kinematic']['phase_rms_rad'] for r in rs):.3f}") if rs else "—"
        dyn = f"{statistics.median(r['dynamical']['phase_rms_rad'] for r in rs):.3f}" if rs else "—"
        lines.append(f"| {name} | {g['size_over_extinction']:.2f} | {g['size_over_absorption']:.3f} "
                     f"| {g['refraction_shift_urad']:+.1f} | {g['phase_error_rad']:.3f} / "
                     f"{g['phase_error_no_ramp_rad']:.3f} | {g['verdict']} | {kin} | {dyn} |")
    return "\n".join(lines)


def regimes_for(out: Path, runs: list[dict], sizes: dict[str, int]) -> dict[str, dict]:
    """Regime diagnosis of each case with runs, cached in ``<out>/regime__<case>.json`` by fingerprint."""
    result = {}
    for name in dict.fromkeys(r["case"] for r in runs):
        fp = runs[[r["case"] for r in runs].index(name)]["fingerprint"]
        path = out / f"regime__{name}.json"
        cached = json.loads(path.read_text()) if path.exists() else None
        if cached is None or cached.get("fingerprint") != fp:
            size = next(r["size"] for r in runs if r["case"] == name)
            cached = {**regime_of(name, size), "fingerprint": fp}
            path.write_text(json.dumps(cached, indent=1, default=float))
        result[name] = cached
    return result


def _parse_sizes(text: str | None, cases: Sequence[str]) -> dict[str, int]:
    """``--size``: one integer for every case, or ``case=N,case=N`` (others at their default)."""
    sizes = {name: CASES[name].size for name in CASES}
    if not text:
        return sizes
    if "=" not in text:
        return {name: int(text) for name in CASES}
    for item in text.split(","):
        name, _, n = item.partition("=")
        if name not in CASES:
            raise ValueError(f"--size: unknown case {name!r}")
        sizes[name] = int(n)
    return sizes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="results folder (resumable)")
    p.add_argument("--cases", default=",".join(DEFAULT_CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    p.add_argument("--seeds", type=int, default=8, help="seeds 0 … N-1 per case and data kind")
    p.add_argument("--size", help="points per direction: N for every case, or case=N,case=N "
                                  f"(default {', '.join(f'{k}={v.size}' for k, v in CASES.items())})")
    p.add_argument("--epochs", type=int, default=60, help="maximum dynamical epochs")
    p.add_argument("--starts", type=int, default=4, help="kinematic phasing starts")
    p.add_argument("--attempts", type=int, default=1, help="whole pipeline runs per seed, the lowest final loss "
                                                          "kept (run_pipeline(attempts=N), truth-free)")
    p.add_argument("--trial-epochs", type=int, help="quick trial epochs per start candidate (default: the "
                                                        "pipeline's StartConfig; fewer only for a smoke test)")
    p.add_argument("--photons", type=float, default=1e9, help="photons in the scan for the Poisson data")
    p.add_argument("--data", default=",".join(DATA_KINDS), help="comma-separated data kinds, of: noise-free, poisson")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (subprocesses, one thread each)")
    p.add_argument("--table-only", action="store_true", help="print the table of the finished runs and stop")
    p.add_argument("--no-regime", action="store_true", help="leave out the regime diagnosis")
    p.add_argument("--one", help=argparse.SUPPRESS)  # case,data,seed: one run (the worker subprocess)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    for name in cases:
        if name not in CASES:
            raise ValueError(f"unknown case {name!r}; available: {', '.join(CASES)}")
    if args.jobs < 1 or args.seeds < 1 or args.attempts < 1:
        raise ValueError("--jobs, --seeds and --attempts must be >= 1")
    data_kinds = [d for d in args.data.split(",") if d]
    if not data_kinds or any(d not in DATA_KINDS for d in data_kinds):
        raise ValueError(f"--data must list some of {', '.join(DATA_KINDS)}, got {args.data!r}")
    sizes = _parse_sizes(args.size, cases)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    if args.one:
        import torch

        torch.set_num_threads(1)
        name, data, seed = args.one.split(",")
        s = settings(name, sizes[name], args.epochs, args.starts, args.photons, args.trial_epochs, args.attempts)
        rec = run_one(name, data, int(seed), sizes[name], args.epochs, args.starts, args.photons, args.trial_epochs,
                      args.attempts)
        _write_new(run_path(args.out, name, data, int(seed)), {**rec, "size": sizes[name],
                                                                "fingerprint": s["fingerprint"], "settings": s})
        return 0
    failed = []
    if not args.table_only:
        todo, _ = plan(args.out, cases, range(args.seeds), sizes, args.epochs, args.starts, args.photons, data_kinds,
                       args.trial_epochs, args.attempts)
        print(f"{len(todo)} runs to do", flush=True)
        failed = run_all(args, todo, sizes)
    runs = [r for r in load_runs(args.out) if r["case"] in cases]
    for name in cases:
        if len({r["fingerprint"] for r in runs if r["case"] == name}) > 1:
            raise ValueError(f"{args.out} holds runs of {name} made with different settings; not mixed in one table")
    regimes = None if args.no_regime else regimes_for(args.out, runs, sizes)
    print(table(runs, regimes))
    if failed:
        print(f"{len(failed)} runs failed: {'; '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
