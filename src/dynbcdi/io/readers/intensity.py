"""Read a plain diffraction-intensity stack written by another program (or by dynbcdi).

:func:`load_intensity` recognises the format from the file's content (:mod:`dynbcdi.io.filecheck`)
and returns an :class:`IntensityFile`: ``intensity (N, rows, cols)`` float64 photons, ``valid``
(True = trusted pixel) or None.

Layouts read, and the conventions converted:

- **NumPy .npy** — the usual input of PyNX (``pynx-cdi-id01 data=data.npy``) and cohere
  (``data.npy`` / ``data.tif``): one 3-D array.
- **NumPy .npz** — key ``data`` (PyNX, bcdi ``S*_pynx_*.npz``, cdiutils ``S*_pynx_input_data.npz``),
  ``intensity`` (a dynbcdi dataset), or the only 3-D array; ``data_path`` picks a key. Mask:
  key ``mask`` (nonzero = bad, PyNX/bcdi convention) or ``valid`` (dynbcdi, True = good).
- **TIFF** — a multi-page stack (tifffile), one page per frame.
- **HDF5 / CXI** — ``entry_1/data_1/data`` (CXI shortcut, cdiutils ``S*_preprocessed_data.cxi``,
  dynbcdi datasets) or ``entry_1/instrument_1/detector_1/data`` (CXI 1.5, PyNX
  ``save_cdi_data_cxi``), else the only 3-D real dataset; ``data_path`` picks one. Mask:
  ``entry_1/instrument_1/detector_1/mask`` (CXI), ``entry_1/detector_1/mask`` (cdiutils) or a
  ``mask`` beside ``data_path``; CXI/PyNX/cdiutils convention nonzero = bad pixel, converted here
  to ``valid = (mask == 0)``.

Axis order: PyNX, bcdi, cdiutils and dynbcdi store the stack as (frame, row, col) — the first
axis is the rocking index — and so does a TIFF stack on disk (cohere's ``save_tif`` writes the
transpose of its in-memory (x, y, frame) array, i.e. (frame, row, col)). It is kept as stored.
Cohere's formatted ``data.tif``/``data.npy`` hold *amplitudes* (the square root of the counts,
``cohere_core.data.standard_preprocess``); pass ``amplitudes=True`` to square them. A cohere
``data.npy`` is in cohere's in-memory order (col, row, frame); pass ``axes="xyz"`` to reverse it.

Bad files give one-line errors naming the file: missing, empty, truncated, of another format,
without a 3-D array, with several candidate arrays and no ``data_path``, with complex values (an
object, not an intensity), NaN/Inf or negative values, or a mask of the wrong shape.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dynbcdi.io.filecheck import check_input_file, load_npy, load_npz, open_hdf5, sniff_format

__all__ = ["IntensityFile", "load_intensity", "validate_intensity"]

_WHAT = "intensity file (.npy, .npz, .tif, .cxi/.h5)"
CXI_DATA_PATHS = ("entry_1/data_1/data", "entry_1/instrument_1/detector_1/data")
CXI_MASK_PATHS = ("entry_1/instrument_1/detector_1/mask", "entry_1/detector_1/mask")


@dataclass
class IntensityFile:
    """A diffraction-intensity stack read from a file.

    intensity : (N, rows, cols) float64, photons (or detector counts), >= 0, finite.
    valid : (rows, cols) or (N, rows, cols) bool, True = trusted pixel; None if the file has no mask.
    metadata : path, member read, mask member, conversions applied, CXI detector values if stored
        (``detector_distance_m``, ``pixel_size_m``, ``energy_eV``).
    format : "npy", "npz", "tiff" or "hdf5".
    """

    intensity: np.ndarray
    valid: np.ndarray | None
    metadata: dict[str, Any] = field(default_factory=dict)
    format: str = ""


def load_intensity(path: str | os.PathLike, data_path: str | None = None, *, amplitudes: bool = False,
                   axes: str = "frc") -> IntensityFile:
    """Read the intensity stack of ``path`` (format from its content, see the module docstring).

    data_path : npz key or HDF5 dataset path of the stack when the file holds several.
    amplitudes : the file holds √I (cohere's formatted data): square it.
    axes : "frc" (frame, row, col; PyNX, bcdi, cdiutils, dynbcdi, TIFF stacks) or "xyz" (cohere's
        in-memory (col, row, frame) order of ``data.npy``), reversed to (frame, row, col).
    Raises FileNotFoundError / ValueError (one line, naming the file).
    """
    p = check_input_file(path, _WHAT)
    if axes not in ("frc", "xyz"):
        raise ValueError(f"axes must be 'frc' or 'xyz', got {axes!r}")
    kind = sniff_format(p)
    readers = {"npy": _read_npy, "npz": _read_npz, "tiff": _read_tiff, "hdf5": _read_hdf5}
    if kind not in readers:
        raise ValueError(f"{p}: not a recognised {_WHAT}: the content is none of HDF5, NumPy or TIFF")
    data, mask, metadata = readers[kind](p, data_path)
    metadata = {"path": os.fspath(p), **metadata}
    if axes == "xyz":
        data = np.transpose(data) if data.ndim == 3 else data
        mask = None if mask is None else np.transpose(mask)
        metadata["converted_axes"] = "cohere (col, row, frame) -> (frame, row, col)"
    intensity = validate_intensity(data, p)
    if amplitudes:
        intensity = intensity**2
        metadata["converted_amplitudes"] = "squared (file holds sqrt of the counts)"
    valid = _valid_from(mask, intensity.shape, p, metadata.get("mask_member"))
    return IntensityFile(intensity=intensity, valid=valid, metadata=metadata, format=kind)


def validate_intensity(data: np.ndarray, path: Path | str) -> np.ndarray:
    """``data`` as float64 (N, rows, cols) after the checks; ValueError naming ``path`` otherwise."""
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"{path}: intensity must be a 3-D (frames, rows, cols) stack, got shape {data.shape}")
    if np.iscomplexobj(data):
        raise ValueError(f"{path}: complex values: this is a reconstructed object, not an intensity "
                         "(use it with `dynbcdi reconstruct --init`)")
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{path}: intensity must be numeric, got dtype {data.dtype}")
    data = data.astype(np.float64, copy=False)
    bad = ~np.isfinite(data)
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} NaN/Inf intensity values; mask them instead")
    if data.size == 0 or min(data.shape) == 0:
        raise ValueError(f"{path}: empty intensity stack of shape {data.shape}")
    negative = data < 0
    if negative.any():
        raise ValueError(f"{path}: {int(negative.sum())} negative intensity values (min {data.min():.4g}); "
                         "subtract backgrounds with clipping, and mask bad pixels")
    return data


def _valid_from(mask: np.ndarray | None, shape: tuple[int, ...], path: Path, member: str | None) -> np.ndarray | None:
    """Boolean valid (True = good) from a stored mask (already converted to True = good)."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1 and shape[0] != 1:
        mask = mask[0]
    if mask.shape not in (shape, shape[1:]):
        raise ValueError(f"{path}: mask {member or ''} has shape {mask.shape}, expected {shape[1:]} or {shape}")
    return mask.astype(bool)


def _read_npy(path: Path, data_path: str | None) -> tuple[np.ndarray, None, dict]:
    if data_path is not None:
        raise ValueError(f"{path}: a .npy file holds one array; data_path={data_path!r} does not apply")
    return load_npy(path, "NumPy .npy intensity file"), None, {"member": None}


def _read_npz(path: Path, data_path: str | None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    arrays = load_npz(path, "NumPy .npz intensity file")
    if data_path is not None:
        if data_path not in arrays:
            raise ValueError(f"{path}: no array {data_path!r}; the archive holds {sorted(arrays)}")
        key = data_path
    else:
        key = next((k for k in ("data", "intensity") if k in arrays), None) or _only_candidate(
            path, {k: v for k, v in arrays.items() if _is_stack(v)}, "array")
    meta: dict[str, Any] = {"member": key}
    if "valid" in arrays:  # a dynbcdi dataset: True = good
        meta["mask_member"] = "valid (True = good)"
        return arrays[key], arrays["valid"].astype(bool), meta
    if "mask" in arrays and key != "mask":
        meta["mask_member"] = "mask (nonzero = bad)"
        return arrays[key], arrays["mask"] == 0, meta
    return arrays[key], None, meta


def _read_tiff(path: Path, data_path: str | None) -> tuple[np.ndarray, None, dict]:
    import tifffile

    if data_path is not None:
        raise ValueError(f"{path}: a TIFF file holds one stack; data_path={data_path!r} does not apply")
    try:
        data = tifffile.imread(path)
    except Exception as err:  # tifffile raises its own TiffFileError, ValueError, struct.error ...
        raise ValueError(f"{path}: unreadable TIFF (truncated or corrupt: {str(err).splitlines()[0]})") from None
    if data.ndim == 2:
        raise ValueError(f"{path}: a single {data.shape} image; expected a multi-page stack (one page per frame)")
    return data, None, {"member": "pages"}


def _read_hdf5(path: Path, data_path: str | None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    with open_hdf5(path, _WHAT) as f:
        key = _hdf5_member(f, path, data_path)
        data = f[key][()]
        meta: dict[str, Any] = {"member": key, **_cxi_detector_values(f)}
        mask_key = _hdf5_mask_member(f, key)
        mask = None
        if mask_key is not None:
            mask = f[mask_key][()] == 0  # CXI / PyNX / cdiutils: nonzero = bad pixel
            meta["mask_member"] = f"{mask_key} (nonzero = bad)"
    return data, mask, meta


def _hdf5_member(f, path: Path, data_path: str | None) -> str:
    import h5py

    if data_path is not None:
        if not isinstance(f.get(data_path), h5py.Dataset):
            raise ValueError(f"{path}: no dataset {data_path!r}; 3-D datasets in the file: {_stacks(f) or 'none'}")
        return data_path
    for key in CXI_DATA_PATHS:
        if isinstance(f.get(key), h5py.Dataset):
            return key
    return _only_candidate(path, {k: None for k in _stacks(f)}, "dataset")


def _hdf5_mask_member(f, data_key: str) -> str | None:
    import h5py

    beside = f"{data_key.rsplit('/', 1)[0]}/mask" if "/" in data_key else "mask"
    for key in (*CXI_MASK_PATHS, beside):
        if isinstance(f.get(key), h5py.Dataset) and key != data_key:
            return key
    return None


def _stacks(f) -> list[str]:
    """Paths of every 3-D numeric dataset in an open HDF5 file (soft links followed once)."""
    import h5py

    found: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim == 3 and obj.dtype.kind in "biufc":
            found.append(name)

    f.visititems(visit)
    return found


def _is_stack(value: np.ndarray) -> bool:
    return value.ndim == 3 and value.dtype.kind in "biufc"


def _only_candidate(path: Path, candidates: dict[str, Any], kind: str) -> str:
    if not candidates:
        raise ValueError(f"{path}: no 3-D {kind} (frames, rows, cols) found")
    if len(candidates) > 1:
        raise ValueError(f"{path}: several 3-D {kind}s {sorted(candidates)}; pick one with data_path")
    return next(iter(candidates))


def _cxi_detector_values(f) -> dict[str, float]:
    """Detector distance, pixel size (m) and energy (eV) where the CXI file stores them."""
    out: dict[str, float] = {}
    det = "entry_1/instrument_1/detector_1"
    for key, name in ((f"{det}/distance", "detector_distance_m"), (f"{det}/x_pixel_size", "pixel_size_m")):
        if key in f and f[key].shape == ():
            out[name] = float(f[key][()])
    energy = "entry_1/instrument_1/source_1/energy"
    if energy in f and f[energy].shape == ():
        out["energy_eV"] = float(f[energy][()]) / 1.602176634e-19  # CXI stores joules
    return out
