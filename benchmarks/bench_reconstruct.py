"""Benchmark of issue 6: the paper's method end to end, truth-free, against kinematic HIO/ER.

Default scenario: preset ``au-demo`` at its CPU size 64³ (0.6 µm Au cube = 2.3 Bragg extinction
lengths, (200) at 8 keV, 35 nm voxels, 76 angles over ±0.15°; see dynbcdi.simulate.presets).
``--preset au-cube-200`` runs the paper's 1 µm cube resized to ``--size`` (rocking narrowed to
±0.14° so that 44 nm voxels do not alias along z). Two data sets: noise-free and Poisson counts
with ``--photons`` in the scan. For each, :func:`dynbcdi.reconstruct.run_pipeline`:

1. kinematic phase retrieval (paper recipe, HIO/ER + shrink-wrap, 1800 iterations, ``--starts``
   random starts, lowest Fourier error kept), converted to the grid frame;
2. dynamical (TTE) reconstruction from it (start chosen by trial epochs among support thresholds,
   twin, convex hull and half-voxel translations of the kinematic result:
   :func:`dynbcdi.reconstruct.choose_start`; then :func:`dynbcdi.reconstruct.default_config`);
3. both compared with the truth through ``dynbcdi.analysis.compare`` (translation, twin and global
   phase aligned; inside the true support |S| > 0.5; no ramp removed). The truth is used only here.

Usage::

    .venv/bin/python benchmarks/bench_reconstruct.py --out /tmp/bench6

Prints a Markdown table (pasted into benchmarks/RESULTS.md) and writes ``results.json`` to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from dynbcdi.analysis import compare
from dynbcdi.reconstruct import StartConfig, default_config, run_pipeline
from dynbcdi.simulate import preset, simulate_dataset
from dynbcdi.simulate.noise import poisson_noise
from dynbcdi.simulate.presets import CPU_SIZES
from dynbcdi.simulate.scan import fit_z_sampling


def simulate(name: str, size: int | None, device: str):
    """Noise-free dataset of preset ``name`` at ``size`` points (default: its CPU size)."""
    cfg = preset(name, size or CPU_SIZES[name])
    if name == "au-cube-200":  # ±0.2° aliases along z at 44 nm voxels; dynamical patterns only
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kinematic=False,
                                                                 refraction_kinematic=False),
                                  geometry=dataclasses.replace(cfg.geometry, rocking_step_deg=0.003,
                                                               rocking_start_deg=-0.14, rocking_stop_deg=0.14))
    # dz refined only where a reduced size would alias along z (a no-op at the preset's own sizes)
    return simulate_dataset(fit_z_sampling(cfg), device=device)


def _metrics(m) -> dict:
    return {"phase_rms_rad": m.phase_rms_rad, "displacement_rms_pm": m.displacement_rms_pm,
            "strain_rms": m.strain_rms, "amplitude_rel_error": m.amplitude_rel_error, "twin": m.twin}


def run_case(dataset, label: str, args: argparse.Namespace) -> dict:
    """Pipeline on one data set; metrics against the truth, timings and peak RSS so far."""
    truth = dataset.truth.astype(np.complex128)
    h = dataset.geometry.grid_frame().to_grid(dataset.geometry.h)
    kw = {"support": np.abs(truth) > 0.5, "h_norm": dataset.reflection.h_norm, "spacing_m": dataset.spacing_m,
          "h_dir_grid": h / np.linalg.norm(h)}

    def monitor(epoch: int, params) -> None:  # truth used for the log only (< 0.3 s per call at 64³)
        if epoch % 10 == 0:
            err = compare(params.crystal().detach().cpu().numpy().astype(np.complex128), truth, **kw)
            print(f"  {label} epoch {epoch}: phase RMS {err.phase_rms_rad:.4f} rad", flush=True)

    start = StartConfig(threshold=args.threshold, phase=args.phase, hull=args.hull, dilate_vox=args.dilate)
    res = run_pipeline(dataset, n_starts=args.starts, seed=args.seed, config=default_config(args.epochs),
                       device=args.device, start=start, callback=monitor)
    m_kin, m_dyn = compare(res.kinematic_grid, truth, **kw), compare(res.dynamical.S, truth, **kw)
    return {"case": label, "kinematic": _metrics(m_kin), "dynamical": _metrics(m_dyn),
            "time_kinematic_s": res.timings["phasing"], "time_dynamical_s": res.timings["dynamical"],
            "epochs": res.dynamical.epochs, "stopped_reason": res.dynamical.stopped_reason,
            "final_loss": float(res.dynamical.history.loss[-1]), "phasing_errors": res.phasing.start_errors,
            "peak_rss_mib": res.timings["peak_rss_mib"]}


def table(rows: list[dict]) -> str:
    """Markdown table of the results."""
    out = [("| data | method | phase RMS (rad) | displacement RMS (pm) | strain RMS | amplitude rel. err. "
            "| wall time (s) | peak RSS (MiB) |"), "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for method in ("kinematic", "dynamical"):
            m = r[method]
            extra = (f" ({r['epochs']} epochs, {r['stopped_reason']})" if method == "dynamical"
                     else f" ({len(r['phasing_errors'])} starts)")
            out.append(f"| {r['case']} | {method}{extra} | {m['phase_rms_rad']:.4f} | {m['displacement_rms_pm']:.2f} "
                       f"| {m['strain_rms']:.2e} | {m['amplitude_rel_error']:.3f} | {r[f'time_{method}_s']:.0f} "
                       f"| {r['peak_rss_mib']:.0f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=("au-demo", "au-cube-200"), default="au-demo")
    parser.add_argument("--size", type=int, help="points per direction (default: the preset's CPU size)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--starts", type=int, default=4, help="random starts of the kinematic phasing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=StartConfig.threshold,
                        help="start support: fraction of the kinematic interior amplitude")
    parser.add_argument("--phase", choices=("kinematic", "flat"), default=StartConfig.phase)
    parser.add_argument("--hull", action="store_true", help="convex hull of the start support")
    parser.add_argument("--dilate", type=int, default=0, help="dilate the start support (voxels)")
    parser.add_argument("--photons", type=float, default=1e9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", default="noise-free,poisson")
    parser.add_argument("--out", default="bench_reconstruct_out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ds = simulate(args.preset, args.size, args.device)
    print(f"simulated {ds.intensity.shape} on grid {ds.truth.shape}, spacing {ds.spacing_m} in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    clean = ds.intensity.astype(np.float64)
    stacks = {"noise-free": clean, "poisson": poisson_noise(clean, total_photons=args.photons, rng=0)}
    rows = []
    for case in args.cases.split(","):
        label = case if case == "noise-free" else f"Poisson {args.photons:.0e} photons"
        rows.append(run_case(dataclasses.replace(ds, intensity=stacks[case]), label, args))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(table(rows))
    print(f"{args.preset}: grid {ds.truth.shape}, {ds.intensity.shape[0]} angles, peak RSS {peak_mib:.0f} MiB, "
          f"{args.threads} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"total {time.perf_counter() - t0:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"rows": rows, "peak_rss_mib": peak_mib, "args": vars(args),
                                                  "grid": ds.truth.shape, "angles": ds.intensity.shape[0]},
                                                 indent=1, default=float))


if __name__ == "__main__":
    main()
