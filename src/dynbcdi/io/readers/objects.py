"""Read a reconstructed object (complex crystal function) written by PyNX, cdiutils, cohere or dynbcdi.

:func:`load_object` recognises the writer from the file's *content* and converts the object to
dynbcdi's detector-frame convention: ``obj[j, row, col]`` with the far field
``|fftshift(fftn(ifftshift(obj)))|² ∝ I[j, row, col]`` (kernel e^{−i q·r}, docs/CONVENTIONS.md).
A translation of the object does not change |F|, so objects are kept where their writer put them.

Writers and conventions (sources: PyNX 2022.1 ``pynx/cdi/cdi.py`` ``CDI.save_obj_cxi`` and the
``FT`` operator of ``cu_operator.py``; cdiutils ``pipeline/bcdi.py`` ``_save_pynx_results`` /
``_load_reconstruction`` and ``io/cxi.py``; cohere-core 4 ``controller/phasing.py`` and
``utilities/utils.py``; cohere-ui ``beamlines/aps_34idc/detectors.py``):

- **PyNX run CXI** (``pynx-cdi-id01``, ``CDI.save_obj_cxi``): ``/entry_last`` → the last entry,
  ``image_1/data`` the centred object (possibly cropped around the support), ``image_1/mask`` =
  ``image_1/support`` (1 inside), ``image_1/process_1/configuration/iobs_shape`` the data shape.
  PyNX propagates with a *forward* FFT (e^{−i q·r}) on data stored (frame, row, col), as dynbcdi:
  no conversion; a cropped object is zero-padded back to ``iobs_shape`` about its centre.
  ``image_1/image_size`` (m) is kept in the metadata only: PyNX derives it from the transverse
  pixel size for every axis, which is not the rocking-axis sampling of a BCDI scan.
- **PyNX mode file** (``pynx-cdi-analysis --modes``, ``mode.h5``) and **cdiutils mode CXI**
  (``S*_pynx_reconstruction_mode.cxi``): ``entry_1/data_1/data`` (a link to ``image_1/data``) of
  shape (modes, Z, Y, X); the first (strongest) mode is read, as cdiutils' post-processing does
  (``cxi["entry_1/data_1/data"][0]``). Same convention as PyNX; no support stored.
- **cohere** ``image.npy`` (+ ``support.npy`` beside it): cohere keeps arrays in memory as
  (x, y, z) = (col, row, frame) (``read_tif`` transposes each frame, frames are stacked on the
  last axis) and models the far field with the *inverse* FFT, ``|ifftn(image)|`` against the
  data (kernel e^{+i q·r}). Since ``|ifftn(x)| = |fftn(conj x)| / N``, the object in dynbcdi's
  convention is ``conj(image)`` with the axes reversed to (frame, row, col). (The inversion
  ``image(−r)`` fits the data equally well; it is the twin of ``conj(image)``. Conjugation is the
  choice that maps cohere's solution of the physical crystal, ρ* under e^{+i q·r}, back to ρ.)
  Tested in ``tests/io/test_object_files.py`` with cohere-core's own FFT helpers.
- **dynbcdi** result (:func:`dynbcdi.io.load_result`, .cxi or .npz): as stored, frame and voxel
  size from the file.
- Any other CXI with a complex ``entry_1/image_1/data``, or .npz with a complex 3-D ``obj`` /
  ``data`` (or only one complex 3-D array): read as stored (forward-FFT convention), frame unknown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dynbcdi.io.filecheck import check_input_file, load_npy, load_npz, open_hdf5, sniff_format

__all__ = ["ObjectFile", "load_object", "FRAMES"]

FRAMES = ("detector", "grid", "lab")
_WHAT = "object file (PyNX/cdiutils CXI, cohere image.npy, dynbcdi result)"


@dataclass
class ObjectFile:
    """A reconstructed object converted to dynbcdi's conventions.

    obj : (Z, Y, X) complex128. For ``frame="detector"``: (frame, row, col) of the data it was
        phased from, far field ``|fftshift(fftn(ifftshift(obj)))|²``.
    support : (Z, Y, X) bool (True inside) or None.
    frame : "detector", "grid", "lab" or None (unknown).
    spacing_m : (dz, dy, dx) in m where the file states it for this frame, else None.
    source_format : "pynx", "pynx-modes", "cdiutils-modes", "cohere", "dynbcdi", "cxi" or "npz".
    metadata : path, conversions applied, writer-specific values.
    """

    obj: np.ndarray
    support: np.ndarray | None
    frame: str | None
    spacing_m: tuple[float, float, float] | None
    source_format: str
    metadata: dict[str, Any] = field(default_factory=dict)


def load_object(path: str | os.PathLike) -> ObjectFile:
    """Read the object of ``path`` (writer detected from the content, see the module docstring).

    Raises FileNotFoundError / ValueError (one line naming the file) for a missing, empty,
    truncated or foreign file, a missing object, a non-complex or non-3-D array, NaN/Inf values
    or a support of the wrong shape.
    """
    p = check_input_file(path, _WHAT)
    kind = sniff_format(p)
    if kind == "hdf5":
        loaded = _read_hdf5(p)
    elif kind == "npz":
        loaded = _read_npz(p)
    elif kind == "npy":
        loaded = _read_cohere(p)
    else:
        raise ValueError(f"{p}: not a recognised {_WHAT}: the content is neither HDF5 nor NumPy")
    loaded.obj = _check_object(loaded.obj, p)
    if loaded.support is not None:
        if loaded.support.shape != loaded.obj.shape:
            raise ValueError(f"{p}: support shape {loaded.support.shape} differs from the object's {loaded.obj.shape}")
        loaded.support = loaded.support.astype(bool)
    loaded.metadata = {"path": os.fspath(p), **loaded.metadata}
    return loaded


def _check_object(obj: np.ndarray, path: Path) -> np.ndarray:
    obj = np.asarray(obj)
    if obj.ndim != 3:
        raise ValueError(f"{path}: the object must be a 3-D array, got shape {obj.shape}")
    if not np.iscomplexobj(obj):
        raise ValueError(f"{path}: real-valued {obj.dtype} array: an intensity or amplitude, not a complex object")
    obj = obj.astype(np.complex128, copy=False)
    bad = ~np.isfinite(obj)
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} NaN/Inf values in the object")
    return obj


# --- HDF5 writers -----------------------------------------------------------------------------


def _read_hdf5(path: Path) -> ObjectFile:
    with open_hdf5(path, _WHAT) as f:
        program = _text(f.get("entry_1/image_1/process_1/program"))
        creator = str(f.attrs.get("creator", "")) or _text(f.get("creator"))
        if program == "dynbcdi":
            return _read_dynbcdi(path)
        if creator.lower() == "cdiutils":
            return _read_modes(f, path, "cdiutils-modes")
        entry = "entry_last" if "entry_last" in f else "entry_1"
        data = f.get(f"{entry}/image_1/data")
        if data is None:
            data = f.get(f"{entry}/data_1/data")
        if data is None:
            raise ValueError(f"{path}: no object: neither {entry}/image_1/data nor {entry}/data_1/data "
                             "(for a diffraction file use `dynbcdi phase`)")
        if data.ndim == 4:
            return _read_modes(f, path, "pynx-modes")
        if program.lower() == "pynx" or "entry_last" in f:
            return _read_pynx_run(f, path, entry)
        return ObjectFile(obj=data[()], support=_support(f, f"{entry}/image_1"), frame=None, spacing_m=None,
                          source_format="cxi", metadata={"member": data.name})


def _read_pynx_run(f, path: Path, entry: str) -> ObjectFile:
    img = f[f"{entry}/image_1"]
    obj, support = img["data"][()], _support(f, img.name)
    meta: dict[str, Any] = {"member": img.name + "/data", "convention": "PyNX forward FFT, (frame, row, col): as stored"}
    if "image_size" in img:
        meta["pynx_image_size_m"] = np.asarray(img["image_size"][()], dtype=float)
    iobs_key = f"{img.name}/process_1/configuration/iobs_shape"
    if iobs_key in f:
        shape = tuple(int(n) for n in f[iobs_key][()])
        if len(shape) == 3 and shape != obj.shape and all(a <= b for a, b in zip(obj.shape, shape)):
            meta["padded_from"] = obj.shape
            obj = _pad_centred(obj, shape)
            support = None if support is None else _pad_centred(support, shape)
    return ObjectFile(obj=obj, support=support, frame="detector", spacing_m=None, source_format="pynx", metadata=meta)


def _read_modes(f, path: Path, fmt: str) -> ObjectFile:
    key = "entry_1/data_1/data" if "entry_1/data_1/data" in f else "entry_1/image_1/data"
    if key not in f:
        raise ValueError(f"{path}: mode file without entry_1/data_1/data")
    data = f[key]
    obj = data[0] if data.ndim == 4 else data[()]
    meta = {"member": key + ("[0] (first mode)" if data.ndim == 4 else ""),
            "modes": int(data.shape[0]) if data.ndim == 4 else 1,
            "convention": "PyNX forward FFT, (frame, row, col): as stored"}
    return ObjectFile(obj=obj, support=None, frame="detector", spacing_m=None, source_format=fmt, metadata=meta)


def _support(f, image_group: str) -> np.ndarray | None:
    for name in ("support", "mask"):
        key = f"{image_group}/{name}"
        if key in f and f[key].ndim == 3:
            return f[key][()] != 0  # PyNX: 1 = inside the support
    return None


def _pad_centred(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-pad ``array`` to ``shape`` keeping its centre voxel (n//2) at the new centre."""
    pads = [((m // 2) - (n // 2), (m - m // 2) - (n - n // 2)) for n, m in zip(array.shape, shape)]
    return np.pad(array, pads)


def _text(node) -> str:
    if node is None:
        return ""
    value = node[()]
    return value.decode() if isinstance(value, bytes) else str(value)


# --- dynbcdi, npz, cohere -----------------------------------------------------------------------


def _read_dynbcdi(path: Path) -> ObjectFile:
    from dynbcdi.io.results import load_result

    stored = load_result(path)
    frame = stored.metadata.get("frame")
    return ObjectFile(obj=stored.obj, support=stored.support, frame=frame if frame in FRAMES else None,
                      spacing_m=stored.spacing_m, source_format="dynbcdi",
                      metadata={"member": "result", **{k: v for k, v in stored.metadata.items() if k != "frame"}})


def _read_npz(path: Path) -> ObjectFile:
    arrays = load_npz(path, "NumPy .npz object file")
    if {"obj", "metadata_json"} <= set(arrays):  # save_result's keys (spacing_m is optional)
        return _read_dynbcdi(path)
    key = next((k for k in ("obj", "object", "data") if k in arrays), None)
    if key is None:
        candidates = [k for k, v in arrays.items() if v.ndim == 3 and np.iscomplexobj(v)]
        if len(candidates) != 1:
            what = "no complex 3-D array" if not candidates else f"several complex 3-D arrays {sorted(candidates)}"
            raise ValueError(f"{path}: {what}; expected the object under key 'obj' or 'data'")
        key = candidates[0]
    support = arrays.get("support")
    meta = {"member": key, "convention": "forward FFT (PyNX/dynbcdi): as stored"}
    return ObjectFile(obj=arrays[key], support=support, frame=None, spacing_m=None, source_format="npz", metadata=meta)


def _read_cohere(path: Path) -> ObjectFile:
    image = load_npy(path, "cohere image.npy")
    if image.ndim != 3:
        raise ValueError(f"{path}: the object must be a 3-D array, got shape {image.shape}")
    if not np.iscomplexobj(image):
        raise ValueError(f"{path}: real-valued {image.dtype} array: an intensity or amplitude, not a complex object")
    support_path = path.with_name("support.npy")
    support = None
    if support_path.is_file():
        support = load_npy(check_input_file(support_path, "cohere support.npy"), "cohere support.npy")
        if support.shape != image.shape:
            raise ValueError(f"{support_path}: support shape {support.shape} differs from {path.name}'s {image.shape}")
        support = np.transpose(support) != 0
    meta = {"member": "image", "support_file": os.fspath(support_path) if support is not None else None,
            "convention": "cohere inverse FFT, (col, row, frame): conjugated, axes reversed to (frame, row, col)"}
    return ObjectFile(obj=np.conj(np.transpose(image)), support=support, frame="detector", spacing_m=None,
                      source_format="cohere", metadata=meta)
