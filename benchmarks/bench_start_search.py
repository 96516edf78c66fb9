"""Benchmark of issue 13 item 2: the cost of the start search against the dynamical reconstruction.

For a simulated preset (noise as the preset has it): kinematic phasing (paper recipe, ``--starts``
random starts, lowest Fourier error kept) → grid → for each ``--rankings`` entry
:func:`dynbcdi.reconstruct.choose_start` with that ranking, then the 60-epoch reconstruction
(:func:`dynbcdi.reconstruct.default_config`) from the chosen start. Times are CPU seconds of this
process (one torch thread: on a shared machine they do not depend on the other jobs the way wall
times do); the accuracy is the phase RMS against the truth (``dynbcdi.analysis.compare``, used only
for the table). A ranking is ``exhaustive`` or ``quick[:EPOCHS[:MAX_STRIDE]]``, optionally followed
by ``+nostage3`` (``StartConfig.rethreshold=False``) and/or ``+twinall`` (``twin_once=False``: both
phases at every threshold, the ranking before the default ``twin_once``). The table also gives the
number of trial runs, the kinematic phasing's CPU time and the search's share of phasing + search +
reconstruction.

Usage (benchmarks/RESULTS.md "Start search cost"; au-cube-200 and sr2iro4-116 at ``--size 48``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_start_search.py --preset au-demo --size 64 \
        --rankings quick+twinall,quick
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time

import numpy as np
import torch

from dynbcdi.analysis import compare
from dynbcdi.phasing import phase_retrieval
from dynbcdi.reconstruct import StartConfig, choose_start, default_config, kinematic_on_grid, reconstruct
from dynbcdi.reconstruct.pipeline import forward_model, rocking_step_rad
from dynbcdi.reconstruct.start import TrialProblem
from dynbcdi.simulate import preset, simulate_dataset
from dynbcdi.simulate.presets import sized_preset
from dynbcdi.simulate.scan import fit_z_sampling


def simulate(name: str, size: int):
    """The preset at ``size``; au-cube-200 with dynamical patterns only and its rocking range narrowed
    to ±0.14° (as benchmarks/bench_reconstruct.py), dz refined where the size would alias."""
    if name != "au-cube-200":
        return simulate_dataset(sized_preset(name, size))
    cfg = preset(name, size)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kinematic=False, refraction_kinematic=False),
                              geometry=dataclasses.replace(cfg.geometry, rocking_step_deg=0.003,
                                                           rocking_start_deg=-0.14, rocking_stop_deg=0.14))
    return simulate_dataset(fit_z_sampling(cfg))


def start_config(ranking: str) -> StartConfig:
    ranking, *mods = ranking.split("+")
    kind, *opt = ranking.split(":")
    start = StartConfig(ranking=kind, rethreshold="nostage3" not in mods, twin_once="twinall" not in mods)
    if opt:
        start = dataclasses.replace(start, quick_epochs=int(opt[0]))
    if len(opt) > 1:
        start = dataclasses.replace(start, max_frame_stride=int(opt[1]))
    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=("au-demo", "au-cube-200", "sr2iro4-116"), default="au-demo")
    parser.add_argument("--size", type=int, default=64, help="points per direction")
    parser.add_argument("--starts", type=int, default=2, help="random starts of the kinematic phasing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kinematic phasing")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--rankings", default="exhaustive,quick")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(format="  %(name)s: %(message)s")
    for name in ("dynbcdi.reconstruct.pipeline", "dynbcdi.reconstruct.start"):  # the candidates' losses, the choice
        logging.getLogger(name).setLevel(logging.INFO)
    ds = simulate(args.preset, args.size)
    t_phasing = time.process_time()
    phasing = phase_retrieval(ds.intensity, ds.valid, recipe="paper", n_starts=args.starts, seed=args.seed)
    t_phasing = time.process_time() - t_phasing
    kin = kinematic_on_grid(ds, phasing)
    trials = [0]
    run_trial = TrialProblem.run

    def counted(self, obj):
        trials[0] += 1
        return run_trial(self, obj)

    TrialProblem.run = counted
    model, config = forward_model(ds), default_config(args.epochs)
    truth = ds.truth.astype(np.complex128)
    h = ds.geometry.grid_frame().to_grid(ds.geometry.h)
    kw = {"support": np.abs(truth) > 0.5, "h_norm": ds.reflection.h_norm, "spacing_m": ds.spacing_m,
          "h_dir_grid": h / np.linalg.norm(h)}
    print(f"{args.preset} at {args.size}, phasing seed {args.seed}: grid {ds.truth.shape}, {ds.intensity.shape[0]} angles, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()[0]:.1f}, "
          f"phasing CPU {t_phasing:.1f} s")
    print("| ranking | trials | search CPU s | main CPU s | search / (search + main) | search / (phasing + search + main) "
          "| phase RMS (rad) |\n|---|---|---|---|---|---|---|")
    for ranking in args.rankings.split(","):
        trials[0] = 0
        t0 = time.process_time()
        init = choose_start(ds, kin, config, model=model, start=start_config(ranking))
        t1 = time.process_time()
        res = reconstruct(ds.intensity, ds.valid, ds.geometry.dq_grid(), model, init, config,
                          rocking_step_rad=rocking_step_rad(ds.geometry))
        t2 = time.process_time()
        rms = compare(res.S, truth, **kw).phase_rms_rad
        print(f"| {ranking} | {trials[0]} | {t1 - t0:.1f} | {t2 - t1:.1f} | {(t1 - t0) / (t2 - t0):.2f} "
              f"| {(t1 - t0) / (t2 - t0 + t_phasing):.2f} | {rms:.4f} |", flush=True)


if __name__ == "__main__":
    main()
