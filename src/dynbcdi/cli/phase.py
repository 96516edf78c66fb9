"""`dynbcdi phase`: kinematic phase retrieval (HIO/ER/shrink-wrap) of an intensity file.

Examples::

    dynbcdi phase scan.cxi --out phasing                       # the paper's 1800-iteration schedule
    dynbcdi phase scan.cxi --out phasing --starts 8 --seed 3 --device cuda
    dynbcdi phase scan.cxi --out quick --recipe "shrinkwrap(start=50), (HIO**50, ER**50)**4, ER**100"
    dynbcdi phase data.npy --out phasing                       # PyNX/cohere input: detector frame only

With a dynbcdi dataset (``dynbcdi prepare`` / ``simulate``, .cxi or .npz with geometry) it writes in
OUT: ``object_detector.npz`` (detector-conjugate frame, metadata ``frame="detector"`` and the
real-space basis) and ``object_grid.npz`` (orthogonal grid frame, ``frame="grid"``), both with the
support and the error history (``dynbcdi.io.save_result`` layout; ``--format cxi`` for CXI). Any
other intensity file (``dynbcdi.io.readers.intensity.load_intensity``: .npy, .npz, .tif, CXI/HDF5)
is phased in the detector frame only: the grid conversion needs the geometry.
Everything (device, recipe, option ranges, output folder, data, geometry) is checked before the first
iteration; a non-empty OUT is refused unless ``--overwrite``. Only ``--grid-z`` against the phased
crystal's extent waits for the support (the detector-frame object is saved first).
Ctrl-C stops the iterations and still writes the partial result, flagged ``interrupted``.
"""

from __future__ import annotations

import argparse
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

OUTPUT_NAMES = ("object_detector", "object_grid")
EXIT_INTERRUPTED = 130


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `phase` on the `dynbcdi` sub-command parser."""
    from dynbcdi.phasing.recipes import PRESETS

    parser = subparsers.add_parser(
        "phase",
        help="kinematic phase retrieval; writes the object in the detector and grid frames",
        description="Iterative projection phase retrieval (ER, HIO, RAAR, shrink-wrap, Poisson ML) of a "
        "dataset's intensity, several random starts, best kept by the Fourier amplitude error. "
        f"Recipe presets: {', '.join(PRESETS)}; or a recipe string such as "
        "'support(box=0.5), shrinkwrap(start=100, every=10), (HIO(beta=0.9)**50, ER**50)**16, ER**200'.",
    )
    parser.add_argument("data", type=Path, help="dynbcdi dataset (.cxi/.npz with geometry) or any intensity file "
                        "(.npy, .npz, .tif, PyNX/cdiutils/bcdi CXI or HDF5)")
    parser.add_argument("--data-path", help="npz key or HDF5 dataset of the intensity (files holding several)")
    parser.add_argument("--amplitudes", action="store_true",
                        help="the file holds sqrt(I), e.g. cohere's formatted data.tif/data.npy: square it")
    parser.add_argument("--axes", choices=("frc", "xyz"), default="frc",
                        help="axis order of a plain file: frc = (frame, row, col) as PyNX/bcdi/cdiutils/TIFF "
                             "stacks (default); xyz = cohere's in-memory (col, row, frame) of data.npy")
    parser.add_argument("--mask", type=Path, help="bad-pixel mask file, nonzero = bad (PyNX mask=, cdiutils/bcdi "
                        "*_mask.npz); combined with the data file's own mask")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--recipe", default="paper", help="recipe string or preset name (default: paper)")
    parser.add_argument("--starts", type=int, default=1, help="number of random starts (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first start (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument("--double", action="store_true", help="iterate in complex128 (default complex64)")
    parser.add_argument("--grid-z", type=int, help="z planes of the grid-frame output (default: fit the support; "
                                                   "too few to hold the phased crystal is an error)")
    parser.add_argument("--format", choices=("npz", "cxi"), default="npz", help="output format (default npz)")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty --out folder: replace its results")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def output_paths(out: Path, fmt: str, names: tuple[str, ...] = OUTPUT_NAMES) -> dict[str, Path]:
    """The result files written in ``out`` (detector and, with geometry, grid frame)."""
    return {name: out / f"{name}.{fmt}" for name in names}


def run(args: argparse.Namespace) -> int:
    """Run the command; returns 0, or 130 when interrupted (partial result written)."""
    import torch

    from dynbcdi.phasing import phase_retrieval

    recipe, device, data, paths = _prepare(args)
    with _StopOnSigint() as stopper, _progress_bar(recipe.n_iterations * args.starts, args.no_progress) as bar:

        def progress(info) -> bool:
            done = info.start * info.n_iterations + info.iteration
            bar.update(done - bar.n)
            bar.set_postfix(start=info.start, error=f"{info.error:.3g}")
            return stopper.requested

        result = phase_retrieval(
            data.intensity, data.valid, recipe=recipe, n_starts=args.starts, seed=args.seed,
            device=device, dtype=torch.complex128 if args.double else torch.complex64, progress=progress,
        )
    if data.dataset is not None:
        written = write_outputs(result, data.dataset, paths, args.grid_z, args.overwrite)
    else:
        written = write_detector_output(result, paths["object_detector"], data.source, args.overwrite)
    _print_summary(result, written)
    return EXIT_INTERRUPTED if result.interrupted else 0


@dataclass
class _PhasingInput:
    """What `phase` phases: intensity (N, rows, cols) photons, valid (True = good) or None, the
    dataset when the file has geometry (else None), and provenance for the result's metadata."""

    intensity: np.ndarray
    valid: np.ndarray | None
    dataset: Any
    source: dict[str, Any]


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, _PhasingInput, dict[str, Path]]:
    """Validate device, recipe, output paths, data and geometry before any iteration."""
    from dynbcdi.devices import resolve_device
    from dynbcdi.io.dataset import is_dataset_file, load_dataset
    from dynbcdi.io.filecheck import check_new_output
    from dynbcdi.io.readers.intensity import load_intensity, load_mask
    from dynbcdi.phasing.recipes import parse_recipe
    from dynbcdi.phasing.retrieval import validate_data

    device = resolve_device(args.device)
    recipe = parse_recipe(args.recipe)
    if args.starts < 1:
        raise ValueError(f"--starts must be >= 1, got {args.starts}")
    if args.grid_z is not None and args.grid_z < 1:  # the crystal's own extent is checked after phasing
        raise ValueError(f"--grid-z {args.grid_z} is too small: give a positive number of z planes, or omit it")
    check_new_output(args.out, "output folder", directory=True, overwrite=args.overwrite,
                     remedy="pass --overwrite to replace its results, or choose another --out")
    with_geometry = is_dataset_file(args.data)
    if with_geometry and (args.data_path is not None or args.amplitudes or args.axes != "frc"):
        raise ValueError(f"{args.data}: a dynbcdi dataset holds photon counts in (frame, row, col); "
                         "--data-path, --amplitudes and --axes apply to plain intensity files only")
    paths = output_paths(args.out, args.format, OUTPUT_NAMES if with_geometry else OUTPUT_NAMES[:1])
    if with_geometry:
        dataset = load_dataset(args.data)
        _check_geometry(dataset, args.data)
        data = _PhasingInput(dataset.intensity, dataset.valid, dataset, {"data_file": str(args.data)})
    else:
        loaded = load_intensity(args.data, args.data_path, amplitudes=args.amplitudes, axes=args.axes)
        print(f"{args.data}: no geometry: writing the detector-frame object only; the grid-frame conversion "
              "needs the geometry (make a dataset with `dynbcdi prepare`, or pass a dataset file)")
        data = _PhasingInput(loaded.intensity, loaded.valid, None,
                             {"data_file": str(args.data), "data_member": loaded.metadata.get("member"),
                              "data_format": loaded.format, "amplitudes_squared": args.amplitudes or None,
                              "axes": args.axes})
    if args.mask is not None:
        extra = load_mask(args.mask, data.intensity.shape)
        data.valid = extra if data.valid is None else np.logical_and(data.valid, extra)
        data.source["mask_file"] = str(args.mask)
    try:
        validate_data(data.intensity, data.valid)
    except ValueError as err:
        raise ValueError(f"{args.data}: {err}") from None
    return recipe, device, data, paths


def _check_geometry(dataset, path: Path) -> None:
    """Everything the grid-frame output needs, evaluated now rather than after the iterations."""
    try:
        dataset.geometry.realspace_basis(dataset.intensity.shape)
        dataset.geometry.grid_spacing_m()
    except ValueError as err:
        raise ValueError(f"{path}: the geometry cannot give the grid frame: {err}") from None


def write_detector_output(result, path: Path, source: dict, overwrite: bool) -> dict[str, Path]:
    """Save the detector-frame object of a file without geometry (no voxel size); return {name: path}."""
    from dynbcdi.io import save_result

    metadata = {
        "recipe": result.recipe, "seeds": list(result.seeds), "start_errors": list(result.start_errors),
        "final_error": result.final_error, "llk": result.llk, "interrupted": result.interrupted,
        "frame": "detector", **{k: v for k, v in source.items() if v is not None},
    }
    return {"object_detector": save_result(path, result.obj, None, result.support, metadata,
                                           {"error": result.error}, overwrite)}


def write_outputs(result, dataset, paths: dict[str, Path], grid_z: int | None, overwrite: bool) -> dict[str, Path]:
    """Save the detector-frame object and its grid-frame conversion; return the paths written.

    The grid frame is (Z, rows, cols) with the dataset's ``spacing_m``; Z fits the support
    (``grid_shape_for``) unless ``grid_z`` is given. A ``grid_z`` too small for the phased support
    (known only now) is a ValueError raised after the detector-frame object is saved.
    """
    from dynbcdi.io import save_result
    from dynbcdi.phasing import check_grid_z, detector_to_grid, grid_shape_for

    basis = dataset.geometry.realspace_basis(result.obj.shape)
    rows, cols = result.obj.shape[1:]
    common = {
        "recipe": result.recipe, "seeds": list(result.seeds), "start_errors": list(result.start_errors),
        "final_error": result.final_error, "llk": result.llk, "interrupted": result.interrupted,
        "realspace_basis": basis,
    }
    history = {"error": result.error}
    detector_spacing = tuple(float(s) for s in np.linalg.norm(basis, axis=0))
    written = {"object_detector": save_result(paths["object_detector"], result.obj, detector_spacing, result.support,
                                              {**common, "frame": "detector"}, history, overwrite)}
    try:  # a smaller grid would crop the crystal silently
        check_grid_z(grid_z, basis, result.obj.shape, dataset.spacing_m, result.support, "the phased crystal")
    except ValueError as err:
        paths["object_grid"].unlink(missing_ok=True)  # only --overwrite lets one exist: no stale pair left
        raise ValueError(f"{err} (the detector-frame object is saved in {written['object_detector']}; "
                         "no grid-frame object was written)") from None
    nz = grid_z or grid_shape_for(basis, result.obj.shape, dataset.spacing_m, result.support)[0]
    grid_obj = detector_to_grid(result.obj, basis, (nz, rows, cols), dataset.spacing_m)
    grid_support = detector_to_grid(result.support.astype(np.complex64), basis, (nz, rows, cols),
                                    dataset.spacing_m, order=1).real > 0.5
    written["object_grid"] = save_result(paths["object_grid"], grid_obj, dataset.spacing_m, grid_support,
                                         {**common, "frame": "grid"}, history, overwrite)
    return written


def _print_summary(result, written: dict[str, Path]) -> None:
    state = "INTERRUPTED (partial result)" if result.interrupted else "done"
    print(f"phase retrieval {state}: {len(result.error)} iterations of the best start")
    print(f"  final amplitude error {result.final_error:.4g}   Poisson deviance/pixel {result.llk:.4g}")
    print("  starts (seed: final error): " + ", ".join(f"{s}: {e:.4g}" for s, e in zip(result.seeds, result.start_errors)))
    for name, path in written.items():
        print(f"  {name:16s} {path}")


def _progress_bar(total: int, disable: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=disable, unit="it", desc="phasing")


class _StopOnSigint:
    """Context manager: the first Ctrl-C sets ``requested`` (the loop then stops cleanly and the
    partial result is written); a second Ctrl-C raises KeyboardInterrupt as usual."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopOnSigint:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)
