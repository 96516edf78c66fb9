"""A plain intensity array (.npy, .npz, .tif, .cxi) as a raw scan, the geometry given in ``[source]``.

The usual input of cohere and PyNX is a bare (frame, row, col) stack. Its geometry is not in the
file (a CXI file may carry the detector distance, pixel size and energy), so the ``[source]``
table gives it: ``beamline`` (diffractometer and detector), ``energy_eV``, ``detector_distance_m``,
``positions_deg`` of every circle (the rocking motor's entry is the position of frame 0) and
``rocking_step_deg``. The array is taken in the beamline's *data* orientation, as stored
(programs that wrote it already applied their transposes); its centre pixel (rows//2, cols//2) is
taken to lie on the nominal kh of the detector angles unless ``detector_roi`` (file frame of the
full detector) says where the frames were cut. The file's mask (if any) becomes the bad-pixel map.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["ARRAY_SUFFIXES", "is_array_source", "read_array_scan"]

log = logging.getLogger(__name__)

#: Files read by :func:`read_array_scan` (HDF5/NeXus stacks go to the "nexus" beamline reader).
ARRAY_SUFFIXES = (".npy", ".npz", ".tif", ".tiff", ".cxi")


def is_array_source(source) -> bool:
    """True if ``source.path`` is one array file (no reader override): read by :func:`read_array_scan`."""
    p = Path(source.path)
    return source.reader is None and p.suffix.lower() in ARRAY_SUFFIXES and not p.is_dir()


def read_array_scan(source):
    """:class:`~dynbcdi.io.readers.base.RawScan` of an intensity array file and the geometry in ``source``."""
    from dynbcdi.io.readers.base import RawScan, circle_positions, load_image, rocking_positions
    from dynbcdi.io.readers.intensity import load_intensity

    bl = source.beamline_entry
    where = str(source.path)
    data = load_intensity(source.path, source.data_path)
    frames = np.array(data.intensity, dtype=np.float64)
    n, rows, cols = frames.shape
    bad = _file_mask(frames, data.valid)
    rm = source.rocking_motor or bl.rocking_motor
    rocking, how = rocking_positions(source, rm, n, None, None, where)
    positions = circle_positions(bl, source, {}, rm, rocking, where)
    meta = data.metadata
    values = {}
    for name in ("energy_eV", "detector_distance_m"):
        values[name] = getattr(source, name) or meta.get(name)
        if values[name] is None:
            raise ValueError(f"{where}: the array file gives no {name}; set source.{name}")
    pixel = source.pixel_size_m or meta.get("pixel_size_m") or bl.detector.pixel_size_m
    region: dict = {}
    if source.detector_roi is not None:
        roi_data = bl.detector.roi_to_data(source.detector_roi)
        if (roi_data[1] - roi_data[0], roi_data[3] - roi_data[2]) != (rows, cols):
            raise ValueError(f"{where}: source.detector_roi {tuple(source.detector_roi)} does not match the "
                             f"frames' {rows}×{cols} pixels (data frame)")
        offset = bl.detector.frames_offset_px(roi_data)
        region = {"detector_roi_file": tuple(source.detector_roi), "detector_roi_data": roi_data,
                  "gaps_in_frames": bl.detector.gaps_inside(roi_data)}
    else:
        offset = (-float(rows // 2), -float(cols // 2))
        log.info("%s: no source.detector_roi: the frames' centre pixel is taken to lie on the nominal kh", where)
    images = {what: _image(load_image(getattr(source, what), what), (rows, cols), what)
              for what in ("dark", "flat", "bad_pixels") if getattr(source, what) is not None}
    if "bad_pixels" in images or bad is not None:
        given = images.get("bad_pixels", np.zeros((rows, cols))) != 0
        images["bad_pixels"] = given | (bad if bad is not None else False)
    metadata = {"reader": "array", "file": where, "format": data.format, **how, **region,
                **{f"file_{k}": v for k, v in meta.items() if np.ndim(v) == 0}}
    return RawScan(frames=frames, beamline=bl.name, positions_deg=positions, rocking_motor=rm,
                   energy_eV=float(values["energy_eV"]), detector_distance_m=float(values["detector_distance_m"]),
                   pixel_size_m=float(pixel), frames_offset_px=offset, dark=images.get("dark"),
                   flat=images.get("flat"), bad_pixels=images.get("bad_pixels"), metadata=metadata)


def _file_mask(frames: np.ndarray, valid: np.ndarray | None) -> np.ndarray | None:
    """(rows, cols) bad pixels of the file's mask; a per-frame mask marks its voxels NaN (masked later)."""
    if valid is None:
        return None
    valid = np.asarray(valid, bool)
    if valid.ndim == 2:
        return ~valid
    if np.all(valid == valid[:1]):
        return ~valid[0]
    frames[~valid] = np.nan  # per-frame mask: prepare masks non-finite voxels in their frames only
    return None


def _image(image: np.ndarray, shape: tuple[int, int], what: str) -> np.ndarray:
    if image.shape != shape:
        raise ValueError(f"the {what} image has shape {image.shape}; an array source needs the frames' {shape}")
    return image
