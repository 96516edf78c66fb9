"""cohere-core reference for the kinematic phasing of APS 34-ID-C scan 54 (issue 14 acceptance).

Runs cohere-core (numpy backend, CPU) with the settings of the scan's own cohere configuration
(``cohere-conf/config_rec``: "3*(20*ER+180*HIO)+20*ER", HIO β 0.9, Gaussian shrink-wrap threshold
0.1 σ 1 every iteration, initial support half the array, twin trigger at iteration 2) and
``dynbcdi.phasing.phase_retrieval`` on the SAME prepared array, aligns every pair of results
(sub-voxel translation, twin = conjugate + inversion about N//2, global phase;
:func:`dynbcdi.analysis.agreement`) and prints the complex correlation over the union of the
supports, the support overlap (Dice), the phase RMS inside the common support and the times.

Conventions bridged here (and nowhere else):
- cohere's forward transform is the *inverse* FFT (``to_reciprocal_space = ifft``), so its image is
  the complex conjugate of a dynbcdi-convention object (|FFT conj c| = |IFFT c|), up to the twin.
- cohere moves the centred array's maximum to the corner with ``fftshift``; dynbcdi with
  ``ifftshift``. They differ by one sample along odd axes (201 frames), which puts a linear phase
  of 2π/N per voxel on cohere's image; it is removed exactly (``from_cohere``).
- cohere stacks frames on the last axis (x, y, frame); its array is ``moveaxis(I, 0, -1)``, so its
  twin trigger zeroes halves of the two detector axes, as in cohere-ui.
- cohere has no mask: invalid pixels are given as zero amplitude (cohere-ui does the same).

Every run is saved in ``--out`` (one .npz per code/recipe/seed) and reused when present, so
several processes (``--codes``) can share the work; nothing is overwritten. Example (≈ 20 min on
one core at 201 × 128 × 128)::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/cohere_reference.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from dynbcdi.analysis import agreement
from dynbcdi.phasing import phase_retrieval

SCAN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aps34idc-scan54"
# dynbcdi recipes: the paper's, and cohere-conf/config_rec's schedule in dynbcdi's grammar (no twin trigger).
RECIPES = {
    "dynbcdi-paper": "paper",
    "dynbcdi-cohere-schedule": "support(box=0.5), shrinkwrap(start=1, every=1, threshold=0.1, sigma=1), "
                       "(ER**20, HIO(beta=0.9)**180)**3, ER**20",
}


def raw_prepared(scan_dir: Path, size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(intensity (N, rows, cols), valid, description) of scan 54 by ``dynbcdi.prepare.prepare_dataset``.

    The 34-ID-C reader reads the frames transposed (cohere's orientation) and cuts the 512×512 dark
    and white field to the frames' region; ``prepare`` takes the 13-pixel dark for a bad-pixel map
    (masked, not subtracted), divides by the flat and crops ``size``×``size`` around the peak, all 201
    frames kept: the same call as ``dynbcdi prepare --beamline 34idc ... --crop size size``.
    """
    from dynbcdi.io.readers.base import SourceConfig
    from dynbcdi.prepare import PrepareConfig, ReflectionConfig, prepare_dataset

    if not (scan_dir / "example.spec").is_file():
        raise FileNotFoundError(f"{scan_dir}: scan 54 (example.spec) not found")
    source = SourceConfig(beamline="34idc", path=str(scan_dir / "exp_data" / "Staff20-1a_S0054"), scan=54,
                          spec_file=str(scan_dir / "example.spec"), dark=str(scan_dir / "dark.tif"),
                          flat=str(scan_dir / "whitefield.tif"))
    ds = prepare_dataset(source, ReflectionConfig(material="Au", hkl=(1, 1, 1)), PrepareConfig(crop_shape=(size, size)))
    valid = np.broadcast_to(ds.valid, ds.intensity.shape).copy()
    return np.asarray(ds.intensity, float), valid, f"dynbcdi.prepare of scan 54, {size}² crop"


def load_prepared(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """The prepared array (a dataset file written by ``dynbcdi prepare``, or the raw scan), with
    values ≤ ``args.threshold`` set to 0 (cohere-conf/config_data's ``intensity_threshold``; 0 = off)."""
    if args.dataset is None:
        intensity, valid, what = raw_prepared(Path(args.scan_dir), args.size)
    else:
        from dynbcdi.io.dataset import load_dataset

        ds = load_dataset(args.dataset)
        valid = np.broadcast_to(ds.valid, ds.intensity.shape).copy()
        intensity, what = np.asarray(ds.intensity, float), f"dataset {args.dataset}"
    if args.threshold > 0:
        intensity = np.where(intensity <= args.threshold, 0.0, intensity)
        what += f", values <= {args.threshold:g} set to 0"
    return intensity, valid, what


def cohere_params(config_rec: Path) -> dict:
    """config_rec as cohere-core reads it, minus the keys that only concern cohere-ui's driver."""
    import cohere_core.utilities.utils as cut

    params = cut.read_config(str(config_rec))
    if params is None:
        raise FileNotFoundError(f"{config_rec}: cohere config_rec not found")
    for key in ("reconstructions", "progress_trigger"):
        params.pop(key, None)
    return params


def from_cohere(image: np.ndarray) -> np.ndarray:
    """cohere image (x, y, frame) → dynbcdi convention (frame, row, col), see the module notes."""
    image = np.moveaxis(np.asarray(image), -1, 0)
    for axis, n in enumerate(image.shape):
        if n % 2:  # fftshift ≠ ifftshift: cohere's zero frequency sits one sample off on odd axes
            shape = [1] * image.ndim
            shape[axis] = n
            image = image * np.exp(-2j * np.pi * np.arange(n) / n).reshape(shape)
    return np.conj(image)


def run_cohere(intensity: np.ndarray, valid: np.ndarray, params: dict, seed: int) -> dict:
    """One cohere-core reconstruction (numpy backend, CPU); its random start seeded with ``seed``."""
    import cohere_core.controller.phasing as cohere_phasing

    seed_numpy = np.random.seed
    amplitude = np.sqrt(np.where(valid, intensity, 0.0)).astype(np.float32)
    with TemporaryNpy(np.moveaxis(amplitude, 0, -1)) as path, contextlib.redirect_stdout(io.StringIO()):
        # cohere seeds numpy from the clock and pid; pin it so that runs are repeatable.
        with mock.patch.object(np.random, "seed", lambda *_: seed_numpy(seed)):
            rec = cohere_phasing.create_rec(dict(params), path, "np", -1, debug=True)
        start = time.perf_counter()
        rec.iterate()
        seconds = time.perf_counter() - start
    return {"obj": from_cohere(rec.get_image()), "support": np.moveaxis(np.asarray(rec.get_support()) > 0, -1, 0),
            "seconds": seconds}


class TemporaryNpy(contextlib.AbstractContextManager):
    """A .npy file holding ``array`` in a temporary folder (cohere-core reads its data from a file)."""

    def __init__(self, array: np.ndarray) -> None:
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        self.path = str(Path(self._dir.name) / "data.npy")
        np.save(self.path, array)

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc) -> None:
        self._dir.cleanup()


def run_dynbcdi(intensity: np.ndarray, valid: np.ndarray, recipe: str, seed: int) -> dict:
    """One ``phase_retrieval`` start (CPU, complex64)."""
    start = time.perf_counter()
    result = phase_retrieval(intensity, valid, recipe=recipe, seed=seed)
    return {"obj": result.obj, "support": result.support, "seconds": time.perf_counter() - start}


def fourier_error(obj: np.ndarray, intensity: np.ndarray, valid: np.ndarray) -> float:
    """‖s|F obj| − √I‖/‖√I‖ on valid pixels, least-squares scale s, F = fftshift∘fftn∘ifftshift."""
    model = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj))))[valid]
    target = np.sqrt(intensity[valid])
    scale = np.sum(model * target) / np.sum(model**2)
    return float(np.linalg.norm(scale * model - target) / np.linalg.norm(target))


def cached_run(out: Path, name: str, runner, intensity: np.ndarray, valid: np.ndarray) -> dict:
    """Run once and keep the result in ``out/name.npz``; later calls read it back."""
    path = out / f"{name}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    res = runner()
    res["fourier_error"] = fourier_error(res["obj"], intensity, valid)
    np.savez(path, **res)
    print(f"run | {name} | {res['seconds']:.0f} s | Fourier amplitude error {res['fourier_error']:.4f}", flush=True)
    return res


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="dataset file written by `dynbcdi prepare` (default: the raw scan)")
    parser.add_argument("--scan-dir", default=str(SCAN))
    parser.add_argument("--size", type=int, default=128, help="detector crop around the peak, raw pixels")
    parser.add_argument("--threshold", type=float, default=0.0,
                        help="set intensities <= this to 0 for both codes (cohere-conf: 6; default off)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--codes", nargs="+", default=["cohere", *RECIPES], choices=["cohere", *RECIPES])
    parser.add_argument("--out", default="bench_cohere_out", help="folder for the runs (reused when present)")
    parser.add_argument("--compare", action="store_true", help="only compare the runs found in --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    intensity, valid, what = load_prepared(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"data | {what} | shape {intensity.shape} | {int(valid.sum())} valid voxels | "
          f"{intensity[valid].sum():.4g} photons", flush=True)
    runs: dict[str, dict] = {}
    for code, seed in itertools.product(args.codes, args.seeds):
        name = f"{code}-seed{seed}"
        if args.compare and not (out / f"{name}.npz").exists():
            continue
        if code == "cohere":
            runner = lambda: run_cohere(intensity, valid, cohere_params(Path(args.scan_dir) / "cohere-conf" / "config_rec"), seed)  # noqa: E731
        else:
            runner = lambda: run_dynbcdi(intensity, valid, RECIPES[code], seed)  # noqa: E731
        runs[name] = cached_run(out, name, runner, intensity, valid)
    compare_all(runs, out)


def compare_all(runs: dict[str, dict], out: Path) -> None:
    """Print and save the agreement of every pair of runs (cohere runs are the references)."""
    rows = []
    for (name_a, a), (name_b, b) in itertools.combinations(runs.items(), 2):
        if name_a.startswith("cohere") and not name_b.startswith("cohere"):
            name_a, a, name_b, b = name_b, b, name_a, a  # align dynbcdi onto the cohere reference
        agr = agreement(a["obj"], a["support"], b["obj"], b["support"])
        rows.append({"obj": name_a, "reference": name_b, **agr.__dict__})
        print(f"pair | {name_a} → {name_b} | correlation {agr.correlation:.4f} | Dice {agr.dice:.3f} | "
              f"phase RMS {agr.phase_rms_rad:.3f} rad (core {agr.phase_rms_core_rad:.3f}) | twin {agr.twin} | "
              f"shift {np.round(agr.shift_vox, 2)}", flush=True)
    for name, run in runs.items():
        print(f"time | {name} | {float(run['seconds']):.0f} s | Fourier error {float(run['fourier_error']):.4f} | "
              f"support {int(np.sum(run['support']))} voxels")
    (out / "agreement.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
