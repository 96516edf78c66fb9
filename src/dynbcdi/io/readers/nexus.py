"""Generic HDF5 / NeXus rocking scan: the frames' dataset and every motor's dataset are given.

``source.data_path`` names the (N, rows, cols) frames; ``source.motor_paths`` maps canonical
circle names, "energy", "detector_distance" (in the beamline's units) and optionally "monitor" to
datasets of the same file (scalars, or (N,) for the rocking motor). Anything not in the file can
be given in ``source.positions_deg`` / ``energy_eV`` / ``detector_distance_m`` /
``rocking_step_deg``. The beamline entry sets the geometry and the detector orientation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dynbcdi.beamlines.registry import Beamline
from dynbcdi.io.filecheck import check_input_file, open_hdf5
from dynbcdi.io.readers.base import (
    RawScan,
    SourceConfig,
    circle_positions,
    cut_to_frames,
    frame_region,
    load_image,
    rocking_positions,
    scalar_quantity,
)

__all__ = ["open_h5", "read", "read_frames", "read_value", "scan_from_parts"]


@contextmanager
def open_h5(path: str | Path) -> Iterator[h5py.File]:
    """An HDF5 scan file opened read-only (:func:`dynbcdi.io.filecheck.open_hdf5`): a missing, empty,
    non-HDF5 or truncated file, also one failing while read inside the block, is a one-line error."""
    with open_hdf5(check_input_file(path, "beamline scan file"), "beamline scan file") as f:
        yield f


def read_frames(f: h5py.File, path: str, where: str) -> np.ndarray:
    """(N, rows, cols) float64 frames from dataset ``path`` (a 2-D dataset is one frame)."""
    if path not in f:
        raise ValueError(f"{where}: no frames dataset {path!r}")
    try:
        frames = np.asarray(f[path][()], dtype=np.float64)
    except (OSError, KeyError, TypeError) as err:  # e.g. an external link whose file is missing
        raise ValueError(f"{where}: cannot read frames dataset {path!r} ({err})") from None
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(f"{where}: frames dataset {path!r} must be (N, rows, cols), got shape {frames.shape}")
    return frames


def read_value(f: h5py.File, path: str, what: str, where: str) -> np.ndarray:
    """Numeric dataset ``path`` as a float64 array (0-d or 1-d); ValueError naming what is missing."""
    if path not in f:
        raise ValueError(f"{where}: no dataset {path!r} for {what}")
    try:
        return np.asarray(f[path][()], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: dataset {path!r} ({what}) is not numeric ({err})") from None


def scan_from_parts(bl: Beamline, source: SourceConfig, frames_file: np.ndarray, values: dict[str, Any],
                    rocking_motor: str, nominal: tuple[float, float] | None, where: str,
                    metadata: dict[str, Any]) -> RawScan:
    """Assemble a RawScan from values read in the beamline's units (shared by the HDF5 readers).

    values : canonical name → file value (circles in deg, scalar or (N,); "energy",
    "detector_distance" in the beamline's units; "monitor" (N,)). The rocking motor's entry, if an
    (N,) array, gives the rocking positions.
    """
    det = bl.detector
    n = frames_file.shape[0]
    rock_file = values.get(rocking_motor)
    rock_file = rock_file if rock_file is not None and np.ndim(rock_file) == 1 else None
    rocking, how = rocking_positions(source, rocking_motor, n, rock_file, nominal, where)
    scalars = {k: float(np.ravel(v)[0]) for k, v in values.items()
               if k in bl.circle_names and k != rocking_motor and np.size(v) >= 1}
    positions = circle_positions(bl, source, scalars, rocking_motor, rocking, where)
    energy_eV = scalar_quantity(source.energy_eV, values.get("energy"), bl.energy_to_eV, "energy_eV", where,
                                f"energy in {bl.energy_unit}")
    distance_m = scalar_quantity(source.detector_distance_m, values.get("detector_distance"), bl.distance_to_m,
                                 "detector_distance_m", where, f"detector distance in {bl.distance_unit}")
    frame_shape = frames_file.shape[1:]
    roi_data, region = frame_region(det, source.detector_roi, frame_shape, where)
    images = {what: cut_to_frames(load_image(getattr(source, what), what), det, region["detector_roi_file"],
                                  frame_shape, getattr(source, what), what)
              for what in ("dark", "flat", "bad_pixels") if getattr(source, what) is not None}
    if "bad_pixels" in images:
        images["bad_pixels"] = images["bad_pixels"] != 0
    monitor = values.get("monitor")
    return RawScan(frames=det.to_data(frames_file), beamline=bl.name, positions_deg=positions,
                   rocking_motor=rocking_motor, energy_eV=energy_eV, detector_distance_m=distance_m,
                   pixel_size_m=source.pixel_size_m or det.pixel_size_m,
                   frames_offset_px=det.frames_offset_px(roi_data),
                   monitor=None if monitor is None else np.ravel(monitor), dark=images.get("dark"),
                   flat=images.get("flat"), bad_pixels=images.get("bad_pixels"),
                   metadata={**metadata, **region, **how})


def read(source: SourceConfig) -> RawScan:
    """Read ``source.path`` (HDF5/NeXus) with the dataset paths of ``source.data_path`` / ``motor_paths``."""
    bl = source.beamline_entry
    where = str(source.path)
    if source.data_path is None:
        raise ValueError(f"{where}: give source.data_path, the (N, rows, cols) frames dataset")
    rm = source.rocking_motor or bl.rocking_motor
    with open_h5(source.path) as f:
        frames = read_frames(f, source.data_path, where)
        values = {name: read_value(f, path, f"motor_paths.{name}", where) for name, path in source.motor_paths.items()}
    metadata = {"reader": "nexus", "file": str(source.path), "data_path": source.data_path,
                "motor_paths": dict(source.motor_paths)}
    return scan_from_parts(bl, source, frames, values, rm, None, where, metadata)
