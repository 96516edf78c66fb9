"""Scan 54 (APS 34-ID-C, Au (111), 9 keV): how close do the dynamical and kinematic fits come to the
Poisson floor, and which measurement terms get them there. Prints one table row per variant.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_scan54.py [--dataset scan54.cxi]
        [--crop 256 --bin 2] [--epochs 60] [--variants tte:kin:none tte:kin:rock+fs+blur ...]

The dataset is a prepared file (``--dataset``, :func:`dynbcdi.io.load_dataset`) or is built here from
the raw files in the data folder: each TIFF frame TRANSPOSED (the data orientation of 34-ID-C, as
cohere reads it) with ``aps34idc_geometry`` pixel orientation ('x+', 'y-'); the "dark" file is a
bad-pixel map (used as the mask); flat = white field cut to the 256×256 frames [0:256, 0:256] and
transposed; the nominal 0.005° step (the read-backs jitter by 0.12 %); ``--crop`` pixels around the
peak, binned ``--bin``. The kinematic phasing (paper recipe, one start) is cached in ``--cache``.

A variant is ``MODEL:START:TERMS``: MODEL ``tte`` or ``kin`` (kinematic model through the same
optimiser), START ``kin`` (the kinematic result: its amplitude and phase) or ``flat`` (uniform
amplitude on its 0.4-interior support), TERMS ``none`` or ``+``-joined ``rock`` (global rocking
offset), ``fs`` (frame scales), ``bg`` (background), ``blur`` (coherence blur), ``poisson`` (loss).
Every variant runs the fixed number of epochs (no early stop) so that rows compare.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dynbcdi.forward.kinematic import KinematicModel
from dynbcdi.forward.tte import TTEModel
from dynbcdi.reconstruct import (StartConfig, TermConfig, default_config, kinematic_on_grid, reconstruct,
                                 rocking_step_rad, start_object)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aps34idc-scan54"
DEFAULT_VARIANTS = ("kin:kin:none", "tte:kin:none", "tte:flat:none", "tte:kin:rock", "tte:kin:rock+fs",
                    "tte:kin:blur", "tte:kin:rock+fs+blur", "tte:kin:rock+fs+bg+blur", "kin:kin:rock+fs+blur")


def build_dataset(data: Path, crop: int, bin_px: int):
    """The scan-54 Dataset from the raw files (module docstring), (201, crop/bin, crop/bin)."""
    import tifffile

    from dynbcdi.geometry.beamlines import aps34idc_geometry
    from dynbcdi.io import Dataset
    from dynbcdi.io.beamline import prepare_stack
    from dynbcdi.materials import reflection_constants

    files = sorted((data / "exp_data" / "Staff20-1a_S0054").glob("*.tif"))
    if not files:
        raise FileNotFoundError(f"no scan-54 frames under {data}")
    stack = np.stack([tifffile.imread(f).astype(float).T for f in files])
    mask = tifffile.imread(data / "dark.tif")[0:256, 0:256].T
    flat = tifffile.imread(data / "whitefield.tif")[0:256, 0:256].T.astype(float)
    theta = -0.279996 + 0.005 * np.arange(len(files))
    roi = None if crop >= 256 else "auto"
    intensity, valid, th, peak, _, _ = prepare_stack(stack, theta, dark=None, flat=flat, mask=mask, roi=roi,
                                                     roi_size=(crop, crop), bin=(1, bin_px, bin_px), centre=True)
    rocking = np.deg2rad(th - th[min(peak[0], len(th) - 1)])
    geometry = aps34idc_geometry(9000.0, np.deg2rad(32.174), np.deg2rad(12.6346), rocking, intensity.shape[1:],
                                 55e-6 * bin_px, 0.5)
    reflection = reflection_constants("Au", (1, 1, 1), 9000.0)
    return Dataset(intensity, valid, geometry, reflection, geometry.grid_spacing_m())


def phased(dataset, cache: Path):
    """Kinematic phasing (paper recipe, 1 start), cached on disk (pickle) by data shape and sum."""
    from dynbcdi.phasing import phase_retrieval

    key = f"{'x'.join(map(str, dataset.intensity.shape))}_{dataset.intensity.sum():.6e}"
    path = cache / f"phasing_{key}.pkl"
    if path.is_file():
        with open(path, "rb") as fh:
            return pickle.load(fh)
    t0 = time.perf_counter()
    result = phase_retrieval(dataset.intensity, dataset.valid, recipe="paper", n_starts=1, seed=0)
    print(f"# phasing: {time.perf_counter() - t0:.0f} s, error {result.start_errors}", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(result, fh)
    return result


def variant_config(terms: str, epochs: int):
    """Measured-data optimiser settings with the named terms on, fixed epoch count."""
    cfg = default_config(epochs=epochs)
    cfg = cfg.replace(stopping=dataclasses.replace(cfg.stopping, tol=1e-12)).with_terms(free_fraction=0.05)
    on = TermConfig(refine=True, lr_factor=0.1)
    for part in terms.split("+"):
        if part == "rock":
            cfg = cfg.with_terms(rocking=on)
        elif part == "fs":
            cfg = cfg.with_terms(frame_scale=on)
        elif part == "bg":
            cfg = cfg.with_terms(background=on)
        elif part == "blur":
            cfg = cfg.with_terms(blur=TermConfig(refine=True, lr_factor=0.1, init=0.3))
        elif part == "poisson":
            cfg = cfg.replace(loss=dataclasses.replace(cfg.loss, kind="poisson"))
        elif part != "none":
            raise ValueError(f"unknown term {part!r} in variant")
    return cfg


def run_variant(dataset, kin: np.ndarray, variant: str, epochs: int) -> dict:
    model_kind, start_kind, terms = variant.split(":")
    cls = {"tte": TTEModel, "kin": KinematicModel}[model_kind]
    geo = dataset.geometry
    physics = cls.from_geometry(geo, dataset.reflection, dataset.spacing_m)
    if start_kind == "kin":
        init = kin
    elif start_kind == "flat":
        k0, kh = geo.beam_directions_grid()
        init = start_object(kin, dataset.spacing_m, k0, kh, StartConfig())
    else:
        raise ValueError(f"unknown start {start_kind!r}")
    t0 = time.perf_counter()
    res = reconstruct(dataset.intensity, dataset.valid, geo.dq_grid(), physics, init,
                      variant_config(terms, epochs), rocking_step_rad=rocking_step_rad(geo))
    fit = res.fit
    return {"variant": variant, "time_s": time.perf_counter() - t0, "s_per_epoch": res.history.records[-1].time_s / res.epochs,
            **fit.as_dict(), "rock_deg": float(np.rad2deg(res.terms["rocking_offset_rad"])),
            "blur_px": res.terms["blur_sigma_px"], "background": res.terms["background"],
            "frame_scale_std": float(np.std(res.terms["frame_scales"])), "S": res.S}


def path_lengths(support: np.ndarray, spacing_m, k0: np.ndarray, kh: np.ndarray) -> np.ndarray:
    """Beam path (m) through the crystal of every support voxel: back along k0 to the entrance face
    plus along kh to the exit face (rays marched in 0.25-voxel steps, nearest-voxel support test).
    support (Z, Y, X) bool; k0, kh unit (x, y, z) grid-frame vectors. Returns (n_support,) m."""
    d = np.asarray(spacing_m, float)  # (dz, dy, dx)
    pos = np.argwhere(support).astype(float)  # (n, 3) voxel indices (z, y, x)
    total = np.zeros(len(pos))
    for direction in (-np.asarray(k0, float), np.asarray(kh, float)):
        step_m = 0.25 * d.min()
        step_vox = direction[::-1] * step_m / d  # (z, y, x) voxels per step
        length = np.zeros(len(pos))
        inside = np.ones(len(pos), bool)
        p = pos.copy()
        while inside.any():
            p[inside] += step_vox
            idx = np.rint(p).astype(int)
            ok = np.all((idx >= 0) & (idx < np.array(support.shape)), axis=1)
            still = np.zeros(len(pos), bool)
            still[ok] = support[tuple(idx[ok].T)]
            length[inside & still] += step_m
            inside &= still
        total += length
    return total


def extinction_comparison(dataset, kin: np.ndarray) -> str:
    """Crystal size and beam path lengths vs the extinction length (one line)."""
    amp = np.abs(kin)
    support = amp > 0.4 * np.percentile(amp[amp > 0.1 * amp.max()], 90)
    k0, kh = dataset.geometry.beam_directions_grid()
    total = path_lengths(support, dataset.spacing_m, k0, kh)
    ext = dataset.reflection.extinction_length_bragg_m
    extent = [int(n) * d for n, d in zip(np.ptp(np.argwhere(support), axis=0) + 1, dataset.spacing_m)]
    return (f"# crystal extent (z, y, x) {[round(e * 1e9) for e in extent]} nm; beam path through it "
            f"median {np.median(total) * 1e9:.0f} nm, 90th pct {np.percentile(total, 90) * 1e9:.0f} nm, max "
            f"{total.max() * 1e9:.0f} nm; extinction length {ext * 1e9:.1f} nm -> {np.median(total) / ext:.2f} "
            f"(median) / {np.percentile(total, 90) / ext:.2f} (90 %) / {total.max() / ext:.2f} (max) extinction lengths")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="prepared scan-54 dataset (.cxi/.npz); default: build from raw files")
    parser.add_argument("--data", default=str(DATA), help="raw scan-54 folder")
    parser.add_argument("--crop", type=int, default=256, help="detector crop around the peak, raw pixels")
    parser.add_argument("--bin", type=int, default=2, help="pixel binning after the crop")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--cache", default=os.environ.get("TMPDIR", "/tmp") + "/dynbcdi-scan54")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--save", help="folder for the S of each variant (.npy)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.dataset:
        from dynbcdi.io import load_dataset
        dataset = load_dataset(args.dataset)
    else:
        dataset = build_dataset(Path(args.data), args.crop, args.bin)
    kin = kinematic_on_grid(dataset, phased(dataset, Path(args.cache)))
    load = os.getloadavg()[0]
    print(f"# scan 54 {dataset.intensity.shape}, grid {kin.shape}, voxel {[f'{d * 1e9:.1f}' for d in dataset.spacing_m]} nm;"
          f" {args.epochs} epochs; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"1 torch thread, load {load:.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(extinction_comparison(dataset, kin))
    header = ("variant", "loss", "floor", "ratio", "free/floor", "dev fit", "dev free", "dev floor", "rock °",
              "blur px", "bg", "fs std", "s/epoch")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    for variant in args.variants:
        r = run_variant(dataset, kin, variant, args.epochs)
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            np.save(Path(args.save) / f"S_{variant.replace(':', '_').replace('+', '-')}.npy", r["S"])
        blur = "/".join(f"{b:.2f}" for b in r["blur_px"])
        print(f"| {variant} | {r['loss_fit']:.4f} | {r['floor_fit']:.4f} | {r['ratio']:.2f} | "
              f"{r['loss_free'] / r['floor_free']:.2f} | {r['deviance_fit']:.3f} | {r['deviance_free']:.3f} | "
              f"{r['deviance_floor_fit']:.3f} | {r['rock_deg']:+.5f} | {blur} | {r['background']:.3f} | "
              f"{r['frame_scale_std']:.3f} | {r['s_per_epoch']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
