"""Checks of the joint multi-reflection fit (issue 16): shrink-wrap from a too-large support, Poisson noise.

Starts (``--starts``, comma-separated), all with u = 0 and s refined (Adam lr ``--lr-s``):
``truenosw`` the true shape, support s > 1e-3, no shrink-wrap; ``true`` the same with shrink-wrap;
``dilated`` s = 1 on the true shape (s > 0.5) dilated by one voxel, with shrink-wrap; ``dilblur``
that mask blurred (Gaussian σ = 1 voxel), support the dilated mask, with shrink-wrap.
``--photons N``: Poisson noise with N photons in total per reflection (0: noise-free).
Prints one JSON line per start (u RMS error per component in pm over s > 0.5, its history, the
support size per epoch, voxels outside / missing from s > 0.5) and the machine load.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/multi_joint_checks.py --preset au-111-multi-32 \
        --epochs 40 --lr-s 0.05 --every 2 --sw-start 2 --starts truenosw,true,dilblur
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np
import torch
from scipy.ndimage import binary_dilation, gaussian_filter

from dynbcdi.reconstruct.config import ShrinkWrapConfig
from dynbcdi.reconstruct.crystal import CrystalField
from dynbcdi.reconstruct.multi import JointConfig, ReflectionProblem, displacement_rms_error, joint_reconstruct
from dynbcdi.simulate.multi import MULTI_PRESETS, simulate_multi, truth_on

STARTS = ("truenosw", "true", "dilated", "dilblur")


def start_field(start: str, grid, s: np.ndarray, u: np.ndarray) -> CrystalField:
    """The starting field of ``start`` (module docstring); u = 0 in every case."""
    mask = s > 0.5
    if start in ("true", "truenosw"):
        return CrystalField(grid, s, 0 * u, support=s > 1e-3)
    dilated = binary_dilation(mask)
    s0 = dilated.astype(float) if start == "dilated" else gaussian_filter(dilated.astype(float), 1.0)
    return CrystalField(grid, s0 / s0.max(), 0 * u, support=dilated)


def noisy(problems: list[ReflectionProblem], photons: float, rng: np.random.Generator) -> None:
    """Replace each reflection's intensity by a Poisson draw with ``photons`` in total (in place)."""
    for p in problems:
        lam = p.intensity * (photons / float(p.intensity.sum()))
        p.intensity = torch.as_tensor(rng.poisson(lam.numpy()).astype(float))


def run_start(a: argparse.Namespace, start: str, datasets, grid, s, u, rng) -> dict:
    """One joint fit from ``start``; errors in pm over s > 0.5."""
    mask = s > 0.5
    problems = [ReflectionProblem.from_dataset(ds, a.physics) for ds in datasets]
    if a.photons:
        noisy(problems, a.photons, rng)
    field = start_field(start, grid, s, u)
    sw = ShrinkWrapConfig(every=0 if start == "truenosw" else a.every, start=a.sw_start, sigma_vox=a.sigma,
                          threshold=a.threshold)

    def err(f: CrystalField) -> float:
        return float(np.linalg.norm(displacement_rms_error(f.u.detach().numpy(), u, mask)))

    t0 = time.perf_counter()
    config = JointConfig(epochs=a.epochs, batch_size=a.batch, lr_s=a.lr_s, refine_s=True, shrinkwrap=sw)
    res = joint_reconstruct(field, problems, config, metric=err)
    sup = field.support.numpy()
    rms = displacement_rms_error(field.u.detach().numpy(), u, mask) * 1e12
    return {"time_s": round(time.perf_counter() - t0, 1), "u_rms_pm": rms.round(2).tolist(),
            "u_err_hist_pm": [round(m * 1e12, 2) for m in res.metric], "support_hist": res.support_voxels,
            "final_support": int(sup.sum()), "extra_voxels": int((sup & ~mask).sum()),
            "missing_voxels": int((mask & ~sup).sum()), "loss_first_last": [res.loss[0], res.loss[-1]],
            "scales": res.scales}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="au-111-multi-test", choices=sorted(MULTI_PRESETS))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--lr-s", type=float, default=0.01)
    ap.add_argument("--every", type=int, default=5, help="shrink-wrap every this many epochs")
    ap.add_argument("--sw-start", type=int, default=5, help="first shrink-wrap epoch")
    ap.add_argument("--threshold", type=float, default=0.2, help="shrink-wrap threshold (fraction of max)")
    ap.add_argument("--sigma", type=float, default=1.0, help="shrink-wrap blur σ, voxels")
    ap.add_argument("--photons", type=float, default=0.0, help="total photons per reflection (Poisson), 0 = none")
    ap.add_argument("--starts", default="true,dilated")
    ap.add_argument("--physics", default="tte", choices=("tte", "kinematic"))
    a = ap.parse_args()
    starts = a.starts.split(",")
    if unknown := set(starts) - set(STARTS):
        ap.error(f"unknown start(s) {sorted(unknown)}; choose from {STARTS}")
    torch.set_num_threads(1)
    cfg = dataclasses.replace(MULTI_PRESETS[a.preset], truth_source="sample_grid")
    datasets = simulate_multi(cfg)
    grid = cfg.sample_grid()
    s, u = truth_on(cfg, grid)
    mask = s > 0.5
    rng = np.random.default_rng(1)
    out = {"preset": a.preset, "args": vars(a), "true_voxels": int(mask.sum()), "load_before": os.getloadavg(),
           "u_rms_true_pm": (displacement_rms_error(0 * u, u, mask) * 1e12).round(2).tolist()}
    for start in starts:
        out[start] = run_start(a, start, datasets, grid, s, u, rng)
        print(start, json.dumps(out[start]), flush=True)
    out["load_after"] = os.getloadavg()
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}))


if __name__ == "__main__":
    main()
