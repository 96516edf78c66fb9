"""Thick crystals and the convergence test (issue 12, items 1b and 6; benchmarks/RESULTS.md section
"Convergence test, thick crystals and the 2 µm cube").

Two sub-commands, each printing a Markdown table:

``runs`` — dynamical reconstructions of a preset (default ``au-cube-200`` at 48³, rocking narrowed to
±0.14° like bench_reconstruct.py, dz fitted by ``sized_preset``) from controlled starts, stopping rule
off, for ``--epochs`` epochs; every epoch records the loss, the learning rate and the result change
of :func:`dynbcdi.reconstruct.optimizer.result_change` over 10 epochs, every 10 epochs the phase RMS
against the truth (``analysis.compare``: aligned, inside |truth| > 0.5, no ramp removed). The table
gives the error at 60 epochs and at the end, and for each ``change_tol`` the epoch at which the
stopping rule would have stopped and the error there. Starts: ``truth``; ``truesupp`` = the true
support with the phase of the pipeline's start (registered to the truth); ``pipeline`` = the start the
truth-free pipeline chooses (4 phasing starts, ``choose_start``; cached under ``--cache``). Variants
(``+``-joined ``key=value``): ``lr``, ``plateau_patience``, ``lr_amplitude_factor`` (optimiser);
``sw=every:start:threshold:sigma`` (shrink-wrap); ``sub=k`` (TTE substeps per voxel along z);
``chi=f:k`` (continuation: k epochs with χh, χh̄ scaled by f, then the full model).

``memory`` — the 2 µm Au (200) cube (``au-cube-2um``: 8 keV, 256² × 55 µm pixels at 2.2 m, 101
angles over ±0.1°) at ``--size`` points: simulation, then ``reconstruct`` from the true crystal (the
cost does not depend on the start) for ``--epochs`` epochs with ``default_config``, then 20 iterations
of kinematic phasing (HIO/ER, one start): peak RSS of the process (``ru_maxrss``), set-up time, wall
and CPU time per epoch and per phasing iteration. One size per process.

Usage (the recorded tables: ``runs`` with the variants of the RESULTS table, ``--preset au-demo --size
64`` for the au-demo rows; ``memory`` at 144 and 256)::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_thick.py runs --starts truth,truesupp,pipeline \
        --variants "default,lr=0.03,lr_amplitude_factor=1.0,sw=10:20:0.4:0.5+swref=median"
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_thick.py memory --size 144 --epochs 3
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import pickle
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from dynbcdi.analysis import compare
from dynbcdi.analysis.metrics import align_to
from dynbcdi.phasing import phase_retrieval
from dynbcdi.reconstruct import StartConfig, StoppingConfig, default_config, reconstruct
from dynbcdi.reconstruct.optimizer import result_change
from dynbcdi.reconstruct.pipeline import choose_start, forward_model, kinematic_on_grid, rocking_step_rad
from dynbcdi.simulate import simulate_dataset
from dynbcdi.simulate.config import SimulationConfig, from_dict
from dynbcdi.simulate.presets import PRESETS, resize, sized_preset
from dynbcdi.simulate.scan import fit_z_sampling

# The 2 µm cube of issue 12 (helper accbench adds it to simulate/presets.py as "au-cube-2um"; the same
# numbers here so that this benchmark runs on either side of that merge).
CUBE_2UM = {**PRESETS["au-cube-200"], "name": "au-cube-2um",
            "geometry": {**PRESETS["au-cube-200"]["geometry"], "rocking_start_deg": -0.1, "rocking_stop_deg": 0.1,
                         "rocking_step_deg": 0.002, "distance_m": 2.2},
            "crystal": {"shape": "cube", "size_m": [2e-6]},
            "deformation": [{"kind": "gaussian_bulge", "amplitude_m": 4e-11, "sigma_m": 5e-7,
                             "center_m": [3e-7, 2e-7, 0.0], "direction": "h"}],
            "model": {"kinematic": False, "refraction_kinematic": False, "batch_size": 8}}


def scenario(name: str, size: int) -> SimulationConfig:
    """Noise-free, dynamical-only simulation config of ``name`` at ``size`` points (dz fitted)."""
    if name == "au-cube-2um":
        cfg = PRESETS.get("au-cube-2um")
        return fit_z_sampling(resize(from_dict(SimulationConfig, cfg or CUBE_2UM, where=name), size))
    cfg = sized_preset(name, size)
    if name == "au-cube-200":  # as bench_reconstruct.py: ±0.14° in 0.003°, no kinematic stacks
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kinematic=False,
                                                                 refraction_kinematic=False),
                                  geometry=dataclasses.replace(cfg.geometry, rocking_step_deg=0.003,
                                                               rocking_start_deg=-0.14, rocking_stop_deg=0.14))
        cfg = fit_z_sampling(cfg)
    return cfg


def cached(path: Path, make):
    if path.is_file():
        with open(path, "rb") as fh:
            return pickle.load(fh)
    value = make()
    with open(path, "wb") as fh:
        pickle.dump(value, fh)
    return value


def metric_kw(ds) -> tuple[np.ndarray, dict]:
    truth = ds.truth.astype(np.complex128)
    h = ds.geometry.grid_frame().to_grid(ds.geometry.h)
    return truth, {"support": np.abs(truth) > 0.5, "h_norm": ds.reflection.h_norm, "spacing_m": ds.spacing_m,
                   "h_dir_grid": h / np.linalg.norm(h)}


def pipeline_start(ds, seed: int) -> np.ndarray:
    """The truth-free pipeline's start: 4 kinematic phasing starts, then ``choose_start``."""
    phasing = phase_retrieval(ds.intensity, ds.valid, recipe="paper", n_starts=4, seed=seed)
    kin = kinematic_on_grid(ds, phasing)
    return choose_start(ds, kin, default_config(), model=forward_model(ds), start=StartConfig())


def make_start(kind: str, ds, pipeline: np.ndarray) -> np.ndarray:
    truth, kw = metric_kw(ds)
    if kind == "truth":
        return truth
    if kind == "pipeline":
        return pipeline
    if kind == "truesupp":
        reg = align_to(pipeline, truth, support=kw["support"]).obj_whole
        return np.where(kw["support"], np.exp(1j * np.angle(reg)), 0)
    raise ValueError(f"unknown start {kind!r}")


def make_config(variant: str, epochs: int):
    cfg = default_config(epochs)
    cfg = dataclasses.replace(cfg, stopping=StoppingConfig(window=10, min_epochs=10**9, change_tol=0.0))
    opts = dict(p.split("=") for p in variant.split("+") if "=" in p)
    for key, val in opts.items():
        if hasattr(cfg.optimizer, key):
            cast = type(getattr(cfg.optimizer, key))
            cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, **{key: cast(val)}))
        elif key == "swref":
            cfg = dataclasses.replace(cfg, shrinkwrap=dataclasses.replace(cfg.shrinkwrap, reference=val))
        elif key == "sw":
            every, start, thr, sig = val.split(":")
            cfg = dataclasses.replace(cfg, shrinkwrap=dataclasses.replace(
                cfg.shrinkwrap, every=int(every), start=int(start), threshold=float(thr), sigma_vox=float(sig)))
        elif key not in ("sub", "chi"):
            raise ValueError(f"unknown variant key {key!r}")
    return cfg, opts


class Recorder:
    """Callback: result change over 10 epochs every epoch, phase RMS against the truth every 10."""

    def __init__(self, ds, offset: int = 0):
        self.truth, self.kw = metric_kw(ds)
        self.offset, self.snaps, self.change, self.errors = offset, {}, {}, {}

    def __call__(self, epoch: int, params) -> None:
        epoch += self.offset
        S = params.crystal().detach().clone()
        self.snaps[epoch] = S
        old = self.snaps.pop(epoch - 10, None)
        if old is not None:
            self.change[epoch] = result_change(S, old)
        if epoch % 10 == 0:
            m = compare(S.cpu().numpy().astype(np.complex128), self.truth, **self.kw)
            self.errors[epoch] = (m.phase_rms_rad, m.amplitude_rel_error)


def one_run(ds, start: np.ndarray, variant: str, epochs: int) -> dict:
    cfg, opts = make_config(variant, epochs)
    model = forward_model(ds)
    if "sub" in opts:
        model.substeps = int(opts["sub"])
    rec = Recorder(ds)
    args = (ds.intensity, ds.valid, ds.geometry.dq_grid())
    kw = {"rocking_step_rad": rocking_step_rad(ds.geometry), "evaluate": False, "callback": rec}
    t0 = time.perf_counter()
    history = []
    if "chi" in opts:  # continuation from thin to thick: χh, χh̄ scaled by f for k epochs
        f, k = opts["chi"].split(":")
        thin = copy.deepcopy(model)
        thin.chih, thin.chihbar = thin.chih * float(f), thin.chihbar * float(f)
        res = reconstruct(*args, thin, start, dataclasses.replace(cfg, epochs=int(k)), **kw)
        history, start, rec.offset = list(res.history.records), res.S, int(k)
        cfg = dataclasses.replace(cfg, epochs=epochs - int(k))
    res = reconstruct(*args, model, start, cfg, **kw)
    history += list(res.history.records)
    final = compare(res.S.astype(np.complex128), rec.truth, **rec.kw)
    rec.errors[epochs] = (final.phase_rms_rad, final.amplitude_rel_error)
    return {"variant": variant, "loss": [r.loss for r in history], "lr": [r.lr for r in history],
            "change": rec.change, "errors": rec.errors, "time_s": time.perf_counter() - t0}


def stop_epoch(run: dict, change_tol: float, window: int = 10, min_epochs: int = 30) -> int | None:
    """Epoch at which ``StoppingConfig(change_tol=...)`` would stop (its window ends at multiples of
    ``window``), None if it would not within the run."""
    for epoch, c in sorted(run["change"].items()):
        if epoch % window == 0 and epoch >= min_epochs and c <= change_tol:
            return epoch
    return None


def cmd_runs(args: argparse.Namespace) -> None:
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    tag = f"{args.preset}-{args.size}"
    ds = cached(cache / f"{tag}.pkl", lambda: simulate_dataset(scenario(args.preset, args.size)))
    pipeline = cached(cache / f"{tag}-start{args.seed}.pkl", lambda: pipeline_start(ds, args.seed))
    tols = [float(t) for t in args.change_tols.split(",")]
    print(f"{tag}: grid {ds.truth.shape}, {ds.intensity.shape[0]} angles; `uptime` {os.getloadavg()}")
    head = "| start | variant | err 60 | err end (amp) | " + " | ".join(f"stop @ c≤{t:g}: epoch, err" for t in tols)
    print(head + " | time (s) |\n" + "|---" * (5 + len(tols)) + "|")
    for start_kind in args.starts.split(","):
        for variant in args.variants.split(","):
            run = one_run(ds, make_start(start_kind, ds, pipeline), variant, args.epochs)
            run["start"] = start_kind
            with open(cache / f"run-{tag}-{start_kind}-{variant.replace(':', '_')}.json", "w") as fh:
                json.dump(run, fh)
            err = run["errors"]
            stops = []
            for t in tols:
                e = stop_epoch(run, t)
                stops.append("–" if e is None else f"{e}, {err[e][0]:.4f}")
            end = err[args.epochs]
            print(f"| {start_kind} | {variant} | {err.get(60, (np.nan,))[0]:.4f} | {end[0]:.4f} ({end[1]:.3f}) | "
                  + " | ".join(stops) + f" | {run['time_s']:.0f} |", flush=True)


def cmd_memory(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    ds = simulate_dataset(scenario("au-cube-2um", args.size))
    t_sim = time.perf_counter() - t0
    rss_sim = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    marks: list[tuple[float, float]] = []

    def mark(record) -> None:
        marks.append((time.perf_counter(), time.process_time()))

    cfg = dataclasses.replace(default_config(args.epochs), stopping=StoppingConfig(min_epochs=10**9))
    t1 = time.perf_counter()
    reconstruct(ds.intensity, ds.valid, ds.geometry.dq_grid(), forward_model(ds), ds.truth, cfg,
                progress=mark, rocking_step_rad=rocking_step_rad(ds.geometry), evaluate=False)
    t2, c2 = time.perf_counter(), time.process_time()  # kinematic phasing: 20 iterations of one start
    phase_retrieval(ds.intensity, ds.valid, recipe="support(box=0.5), HIO(beta=0.9)**10, ER**10", n_starts=1)
    it_wall, it_cpu = (time.perf_counter() - t2) / 20, (time.process_time() - c2) / 20
    first_wall = marks[0][0] - t1
    walls = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    cpus = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    n = ds.truth.shape
    print("| grid (z, y, x) | voxel (nm) | angles | simulate (s) | set-up + 1st epoch (s) | wall per epoch (s) | "
          "CPU per epoch (s) | phasing per iteration, wall / CPU (s) | peak RSS after simulate / total (GiB) | load |"
          "\n|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {n[0]} × {n[1]} × {n[2]} | {ds.spacing_m[1] * 1e9:.1f} | {ds.intensity.shape[0]} | {t_sim:.0f} | "
          f"{first_wall:.0f} | {', '.join(f'{w:.1f}' for w in walls)} | {', '.join(f'{c:.1f}' for c in cpus)} | "
          f"{it_wall:.2f} / {it_cpu:.2f} | {rss_sim:.2f} / {peak:.2f} | {os.getloadavg()[0]:.1f} |")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("runs")
    r.add_argument("--preset", default="au-cube-200")
    r.add_argument("--size", type=int, default=48)
    r.add_argument("--epochs", type=int, default=100)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--starts", default="truth,truesupp,pipeline")
    r.add_argument("--variants", default="default")
    r.add_argument("--change-tols", default="3e-3,2e-3,1e-3")
    r.add_argument("--cache", default="/tmp/bench_thick")
    m = sub.add_parser("memory")
    m.add_argument("--size", type=int, default=144)
    m.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cmd_runs(args) if args.cmd == "runs" else cmd_memory(args)


if __name__ == "__main__":
    main()
