"""Benchmark of issue 6: dynamical (TTE, automatic differentiation) vs kinematic (HIO/ER) reconstruction.

Scenario: the paper's strained Au (200) cube at 8 keV (preset ``au-cube-200``: 1 µm cube, i.e. ≈ 4
Bragg extinction lengths of 252 nm, Gaussian bulge along h), resized to a CPU grid (default 64³,
44 nm voxels, same field of view), rocking ±0.14° (±0.2° would alias along z at 44 nm voxels) in
steps of 0.003° (``--angle-stride`` 3 × the paper's 0.001°). Two data sets:
noise-free and Poisson counts with 1e9 photons in the scan. For each:

1. kinematic phase retrieval (paper recipe, HIO/ER + shrink-wrap, 1800 iterations) in the detector
   frame, converted to the grid frame (``dynbcdi.phasing.detector_to_grid``);
2. dynamical reconstruction started from it (``start_from_kinematic``: convex hull of its support,
   unwrapped phase); the twin is chosen truth-free by the lower loss after ``--twin-epochs`` trial
   epochs from each twin, and the run continues from the better one;
3. both compared with the truth through ``dynbcdi.analysis.compare`` (translation, twin and global
   phase aligned; inside the true support): phase RMS (rad), displacement RMS (pm), strain RMS.

Usage::

    .venv/bin/python benchmarks/bench_reconstruct.py --size 64 --epochs 80 --out /tmp/bench6

Prints a Markdown table (pasted into benchmarks/RESULTS.md) and writes ``results.json`` to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from dynbcdi.analysis import compare
from dynbcdi.forward.tte import TTEModel
from dynbcdi.phasing import detector_to_grid, phase_retrieval
from dynbcdi.reconstruct import (OptimizerConfig, ReconstructionConfig, ShrinkWrapConfig, StoppingConfig,
                                 reconstruct, start_from_kinematic, start_losses, twin_object)
from dynbcdi.simulate import preset, resize, simulate_dataset
from dynbcdi.simulate.noise import poisson_noise


def simulate(size: int, stride: int, range_deg: float, device: str):
    """The resized au-cube-200 data set, rocking ±``range_deg`` with ``stride`` × the paper's step (noise-free)."""
    cfg = resize(preset("au-cube-200"), size)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kinematic=False,
                                                             refraction_kinematic=False))
    cfg = dataclasses.replace(cfg, geometry=dataclasses.replace(
        cfg.geometry, rocking_step_deg=cfg.geometry.rocking_step_deg * stride,
        rocking_start_deg=-range_deg, rocking_stop_deg=range_deg))
    return simulate_dataset(cfg, device=device)


def kinematic_init(dataset, intensity: np.ndarray, device: str) -> tuple[np.ndarray, float]:
    """Kinematic HIO/ER result on the grid frame (support applied) and its wall time (s)."""
    t0 = time.perf_counter()
    res = phase_retrieval(intensity, dataset.valid, recipe="paper", seed=0, device=device)
    basis = dataset.geometry.realspace_basis(res.obj.shape)
    shape = dataset.truth.shape
    obj = detector_to_grid(res.obj, basis, shape, dataset.spacing_m)
    sup = detector_to_grid(res.support.astype(complex), basis, shape, dataset.spacing_m).real > 0.5
    return np.where(sup, obj, 0), time.perf_counter() - t0


def config(epochs: int) -> ReconstructionConfig:
    """Settings used for the table (tuned at test size; see RESULTS.md)."""
    return ReconstructionConfig(
        epochs=epochs, optimizer=OptimizerConfig(lr=0.1, lr_amplitude_factor=0.3, chunk_size=16,
                                                 plateau_patience=10),
        shrinkwrap=ShrinkWrapConfig(every=20, start=20, sigma_vox=1.0, threshold=0.2, init_threshold=0.1),
        stopping=StoppingConfig(tol=1e-4, window=10, min_epochs=20))


def perturbed_truth(truth: np.ndarray) -> np.ndarray:
    """Control start (not truth-free): truth with amplitude 0.8 and a smooth ~0.4 rad phase error."""
    z, y, x = np.meshgrid(*(np.arange(n) - n // 2 for n in truth.shape), indexing="ij")
    n = truth.shape[2]
    error = 0.5 * np.cos(2 * np.pi * (x + z) / (0.75 * n)) + 0.12 * x / (n / 32)
    return np.where(np.abs(truth) > 0.5, 0.8 * np.exp(1j * (np.angle(truth) + error)), 0)


def run_case(dataset, intensity: np.ndarray, label: str, epochs: int, twin_epochs: int, device: str,
             start: str = "kinematic") -> dict:
    """Kinematic and dynamical reconstruction of one intensity stack; metrics and timings.

    start : "kinematic" (truth-free, the paper's method), "kinematic-support" (truth-free: the
    kinematic hull support with a flat phase) or "perturbed-truth" (a control that separates the
    optimiser's reach from the basin of the kinematic start).
    """
    dq = dataset.geometry.dq_grid()
    # one checkpoint segment: 4x faster backward than the default √Z segments at 64³ (measured),
    # at ~400 MB per 16-angle chunk
    model = TTEModel.from_geometry(dataset.geometry, dataset.reflection, dataset.spacing_m, checkpoint_segments=1)
    kin, t_kin = kinematic_init(dataset, intensity, device)
    kin_start = start_from_kinematic(kin, threshold=0.1)
    candidates = [kin_start, twin_object(kin_start)]
    losses = start_losses(model, candidates, intensity, dataset.valid, dq, device=device)
    h = dataset.geometry.grid_frame().to_grid(dataset.geometry.h)
    truth = dataset.truth.astype(np.complex128)
    kw = dict(support=np.abs(truth) > 0.5, h_norm=dataset.reflection.h_norm, spacing_m=dataset.spacing_m,
              h_dir_grid=h / np.linalg.norm(h))

    def monitor(epoch: int, params) -> None:  # truth used for the log only, never by the optimiser
        if epoch % 10 == 0:
            err = compare(params.crystal().detach().cpu().numpy().astype(np.complex128), truth, **kw)
            print(f"  {label} epoch {epoch}: phase RMS {err.phase_rms_rad:.4f} rad", flush=True)

    t0 = time.perf_counter()
    cfg = config(epochs).replace(device=device)
    if start == "perturbed-truth":
        candidates, twin_epochs = [perturbed_truth(truth)], 0
    elif start == "kinematic-support":  # truth-free: kinematic hull, flat phase (no twin ambiguity)
        candidates, twin_epochs = [start_from_kinematic(kin, threshold=0.1, keep_phase=False)], 0
    # twin choice, truth-free: the TTE loss of the two raw starts does not discriminate reliably
    # (both are far from the data); a few epochs from each do
    trials = [reconstruct(intensity, dataset.valid, dq, model, c, cfg.replace(epochs=twin_epochs))
              for c in candidates] if twin_epochs else []
    trial_losses = [float(r.history.loss[-1]) for r in trials]
    init = trials[int(np.argmin(trial_losses))].S if twin_epochs else candidates[0]
    res = reconstruct(intensity, dataset.valid, dq, model, init, cfg.replace(epochs=epochs - twin_epochs),
                      callback=monitor,
                      progress=lambda r: print(f"  {label} epoch {r.epoch} loss {r.loss:.5g} lr {r.lr:.3g}",
                                               flush=True) if r.epoch % 10 == 0 else None)
    t_dyn = time.perf_counter() - t0  # includes the monitor's compare() every 10 epochs (< 1 s each)
    m_kin, m_dyn = compare(kin, truth, **kw), compare(res.S, truth, **kw)
    return {"case": label, "start": start, "twin_losses": losses, "twin_trial_losses": trial_losses,
            "kinematic": _metrics(m_kin), "dynamical": _metrics(m_dyn),
            "time_kinematic_s": t_kin, "time_dynamical_s": t_dyn, "epochs": res.epochs + twin_epochs,
            "stopped_reason": res.stopped_reason, "final_loss": float(res.history.loss[-1])}


def _metrics(m) -> dict:
    return {"phase_rms_rad": m.phase_rms_rad, "displacement_rms_pm": m.displacement_rms_pm,
            "strain_rms": m.strain_rms, "amplitude_rel_error": m.amplitude_rel_error, "twin": m.twin}


def table(rows: list[dict]) -> str:
    """Markdown table of the results."""
    out = ["| data | method | phase RMS (rad) | displacement RMS (pm) | strain RMS | amplitude rel. err. | time (s) |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        for method in ("kinematic", "dynamical"):
            m = r[method]
            extra = f" ({r['epochs']} epochs, {r['stopped_reason']})" if method == "dynamical" else ""
            out.append(f"| {r['case']} | {method}{extra} | {m['phase_rms_rad']:.4f} | {m['displacement_rms_pm']:.2f} "
                       f"| {m['strain_rms']:.2e} | {m['amplitude_rel_error']:.3f} | {r[f'time_{method}_s']:.0f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--angle-stride", type=int, default=3)
    parser.add_argument("--range-deg", type=float, default=0.14,
                        help="rocking ±range; ±0.2° of the paper aliases along z at 64³ (44 nm voxels)")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--start", choices=("kinematic", "kinematic-support", "perturbed-truth"), default="kinematic")
    parser.add_argument("--twin-epochs", type=int, default=10, help="trial epochs from each twin")
    parser.add_argument("--photons", type=float, default=1e9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", default="noise-free,poisson")
    parser.add_argument("--out", default="bench_reconstruct_out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ds = simulate(args.size, args.angle_stride, args.range_deg, args.device)
    print(f"simulated {ds.intensity.shape} on grid {ds.truth.shape}, spacing {ds.spacing_m} in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    clean = ds.intensity.astype(np.float64)
    stacks = {"noise-free": clean,
              "poisson": poisson_noise(clean, total_photons=args.photons, rng=0)}
    rows = [run_case(ds, stacks[c], c if c == "noise-free" else f"Poisson {args.photons:.0e} photons",
                     args.epochs, args.twin_epochs, args.device, args.start) for c in args.cases.split(",")]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(table(rows))
    print(f"grid {ds.truth.shape}, {ds.intensity.shape[0]} angles, peak RSS {peak_mib:.0f} MiB, "
          f"{args.threads} threads, total {time.perf_counter() - t0:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"rows": rows, "peak_rss_mib": peak_mib, "args": vars(args),
                                                  "grid": ds.truth.shape, "angles": ds.intensity.shape[0]},
                                                 indent=1, default=float))


if __name__ == "__main__":
    main()
