"""Reconstruction results on disk: CXI/HDF5 (h5py) and NumPy .npz.

CXI layout (Coherent X-ray Imaging format 1.5, as PyNX writes BCDI objects, plus the shortcut
that cdiutils' post-processing reads)::

    /cxi_version                                 150
    /entry_1                                     NXentry, attribute default = "data_1"
    /entry_last                                  soft link to /entry_1 (PyNX: the last run's entry)
    /entry_1/image_1/data                        (Z, Y, X) complex crystal function S
    /entry_1/image_1/data_type, data_space       "electron density", "real"
    /entry_1/image_1/support                     (Z, Y, X) uint8, 1 = inside the crystal
    /entry_1/image_1/mask                        soft link to support (PyNX stores the support there)
    /entry_1/image_1/spacing_m                   (dz, dy, dx) m (absent when unknown)
    /entry_1/image_1/{x,y,z}_pixel_size          scalars, m (absent when unknown)
    /entry_1/image_1/image_size                  (Z·dz, Y·dy, X·dx) m, PyNX's extent (absent when unknown)
    /entry_1/image_1/process_1/program, version  "dynbcdi", package version
    /entry_1/image_1/process_1/configuration/*   metadata: arrays as datasets, the rest as JSON strings
    /entry_1/image_1/process_1/history/*         1-D float arrays (loss, error, ... per epoch)
    /entry_1/image_1/maps/*                      (Z, Y, X) float32 per-voxel maps beside the object, e.g.
                                                 the uncertainty map (displacement_std_m, strain_std, ...;
                                                 :mod:`dynbcdi.reconstruct.uncertainty`); absent if none
    /entry_1/data_1/data                         (1, Z, Y, X) virtual dataset over image_1/data: the
                                                 "mode" axis that cdiutils' post-processing indexes
                                                 (``cxi["entry_1/data_1/data"][0]``), no copy

The support is stored with 1 = inside (a crystal support, not a CXI detector mask where
nonzero means bad). Files written before ``data_1``/``entry_last`` were added read the same.
A result may carry no voxel size (``spacing_m=None``): a detector-frame object phased from a plain
intensity file, without geometry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import dynbcdi
from dynbcdi.io.filecheck import check_input_file, check_new_output, load_npz, open_hdf5, sniff_format

__all__ = ["ReconstructionFile", "save_result", "load_result"]

CXI_VERSION = 150
_IMAGE = "entry_1/image_1"
_PROCESS = f"{_IMAGE}/process_1"


@dataclass
class ReconstructionFile:
    """A reconstruction read back from disk.

    obj : (Z, Y, X) complex crystal function. spacing_m : (dz, dy, dx) m, or None when the file
    states no voxel size (a detector-frame object phased without geometry).
    support : (Z, Y, X) bool or None. metadata : dict (JSON-able values and numpy arrays).
    history : name → (n_epochs,) float array. maps : name → (Z, Y, X) float array (NaN outside
    the support), e.g. the uncertainty map.
    """

    obj: np.ndarray
    spacing_m: tuple[float, float, float] | None
    support: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    raise ValueError(f"metadata value {value!r} of type {type(value).__name__} cannot be stored")


def _check_inputs(path, obj, spacing_m, support, history, overwrite) -> tuple[Path, np.ndarray, tuple | None, dict]:
    path = Path(path)
    if path.suffix not in (".cxi", ".h5", ".hdf5", ".npz"):
        raise ValueError(f"result file must end in .cxi, .h5, .hdf5 or .npz, got {str(path)!r}")
    check_new_output(path, "result file", overwrite=overwrite, remedy="pass overwrite=True to replace it")
    obj = np.asarray(obj)
    if obj.ndim != 3 or not np.iscomplexobj(obj):
        raise ValueError(f"obj must be a complex (Z, Y, X) array, got {obj.dtype} {obj.shape}")
    spacing = None if spacing_m is None else tuple(float(s) for s in spacing_m)
    if spacing is not None and (len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing)):
        raise ValueError(f"spacing_m must be three positive sizes (dz, dy, dx) or None, got {spacing_m!r}")
    if support is not None and np.shape(support) != obj.shape:
        raise ValueError(f"support shape {np.shape(support)} does not match obj shape {obj.shape}")
    hist = {str(k): np.asarray(v, dtype=float) for k, v in (history or {}).items()}
    for k, v in hist.items():
        if v.ndim != 1:
            raise ValueError(f"history[{k!r}] must be 1-D, got shape {v.shape}")
    return path, obj, spacing, hist


def save_result(
    path: str | os.PathLike,
    obj: np.ndarray,
    spacing_m,
    support: np.ndarray | None = None,
    metadata: dict[str, Any] | None = None,
    history: dict[str, Any] | None = None,
    overwrite: bool = False,
    maps: dict[str, np.ndarray] | None = None,
) -> Path:
    """Save a reconstruction to ``.cxi``/``.h5`` (CXI layout above) or ``.npz``.

    obj : (Z, Y, X) complex (dtype kept). spacing_m : (dz, dy, dx) m, or None if unknown.
    support : (Z, Y, X) bool. metadata : str keys; numpy arrays are stored as arrays, other values
    must be JSON-able. history : name → 1-D sequence (per epoch/iteration). Never overwrites
    unless ``overwrite``; refuses a path under an existing file. maps : name → real (Z, Y, X)
    array of the object's shape, stored as float32. Returns the path written.
    """
    path, obj, spacing, hist = _check_inputs(path, obj, spacing_m, support, history, overwrite)
    maps = _check_maps(maps, obj.shape)
    metadata = dict(metadata or {})
    arrays = {k: v for k, v in metadata.items() if isinstance(v, np.ndarray) and v.ndim > 0}
    scalars = {k: json.dumps(v, default=_json_default) for k, v in metadata.items() if k not in arrays}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        payload = {"obj": obj}
        if spacing is not None:
            payload["spacing_m"] = np.asarray(spacing)
        if support is not None:
            payload["support"] = np.asarray(support, dtype=bool)
        payload.update({f"history__{k}": v for k, v in hist.items()})
        payload.update({f"metadata__{k}": v for k, v in arrays.items()})
        payload.update({f"maps__{k}": v for k, v in maps.items()})
        payload["metadata_json"] = np.asarray(json.dumps(scalars))
        with open(path, "wb") as fh:  # a file handle stops numpy from appending ".npz"
            np.savez_compressed(fh, **payload)
        return path
    with h5py.File(path, "w") as f:
        _write_cxi(f, obj, spacing, support, arrays, scalars, hist)
        for k, v in maps.items():
            f.create_dataset(f"{_IMAGE}/maps/{k}", data=v, compression="gzip", shuffle=True)
    return path


def _check_maps(maps: dict[str, np.ndarray] | None, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in (maps or {}).items():
        v = np.asarray(v)
        if v.shape != shape or np.iscomplexobj(v) or not np.issubdtype(v.dtype, np.number):
            raise ValueError(f"map {k!r} must be a real array of the object's shape {shape}, got {v.dtype} {v.shape}")
        out[str(k)] = v.astype(np.float32)
    return out


def _write_cxi(f, obj, spacing, support, arrays: dict, scalars: dict, hist: dict) -> None:
    f.attrs["creator"] = "dynbcdi"
    f.create_dataset("cxi_version", data=CXI_VERSION)
    img = f.create_group(_IMAGE)
    f["entry_1"].attrs["NX_class"] = "NXentry"
    f["entry_1"].attrs["default"] = "data_1"
    f["entry_last"] = h5py.SoftLink("/entry_1")
    data = img.create_dataset("data", data=obj, compression="gzip", shuffle=True)
    img.attrs["NX_class"], img.attrs["signal"] = "NXdata", "data"
    img["data_type"], img["data_space"] = "electron density", "real"
    if spacing is not None:
        img["spacing_m"] = np.asarray(spacing)
        img["z_pixel_size"], img["y_pixel_size"], img["x_pixel_size"] = spacing
        img["image_size"] = np.asarray(spacing) * np.asarray(obj.shape)
    if support is not None:
        img.create_dataset("support", data=np.asarray(support, dtype=np.uint8), compression="gzip")
        img["mask"] = h5py.SoftLink(f"/{_IMAGE}/support")
    layout = h5py.VirtualLayout(shape=(1, *obj.shape), dtype=data.dtype)
    layout[0] = h5py.VirtualSource(".", f"/{_IMAGE}/data", shape=obj.shape)
    shortcut = f.create_group("entry_1/data_1")
    shortcut.create_virtual_dataset("data", layout)
    shortcut.attrs["NX_class"], shortcut.attrs["signal"] = "NXdata", "data"
    proc = f.create_group(_PROCESS)
    proc["program"], proc["version"] = "dynbcdi", dynbcdi.__version__
    conf = proc.create_group("configuration")
    for k, v in arrays.items():
        conf.create_dataset(k, data=v)
    for k, v in scalars.items():
        conf[k] = v
        conf[k].attrs["json"] = True
    hgroup = proc.create_group("history")
    for k, v in hist.items():
        hgroup[k] = v


def _decode(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_result(path: str | os.PathLike) -> ReconstructionFile:
    """Load a reconstruction written by :func:`save_result` (``.cxi``/``.h5``/``.hdf5``/``.npz``).

    The format is read from the content. For CXI files from other programs, ``/entry_1/image_1/data``
    is read; a missing spacing is a ValueError, a missing support/metadata/history gives None/empty
    (use :func:`dynbcdi.io.readers.objects.load_object` for PyNX, cdiutils and cohere files).
    Every unreadable file (missing, empty, truncated, foreign) is a one-line error naming it.
    """
    path = check_input_file(path, "result file")
    kind = sniff_format(path)
    if kind == "npz":
        return _load_npz(path)
    if kind != "hdf5":
        raise ValueError(f"{path}: not a result file (.cxi/.h5 HDF5 or .npz): unrecognised content")
    with open_hdf5(path, "result file") as f:
        return _load_cxi(f, path)


def _load_npz(path: Path) -> ReconstructionFile:
    z = load_npz(path, "result .npz")
    missing = [k for k in ("obj", "metadata_json") if k not in z]
    if missing:
        raise ValueError(f"{path}: not a dynbcdi result .npz (missing {', '.join(missing)}; holds {sorted(z)})")
    try:
        metadata = {k: json.loads(v) for k, v in json.loads(str(z["metadata_json"])).items()}
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{path}: unreadable metadata_json ({err})") from None
    metadata.update({k[len("metadata__"):]: v for k, v in z.items() if k.startswith("metadata__")})
    spacing = tuple(float(s) for s in z["spacing_m"]) if "spacing_m" in z else None
    return ReconstructionFile(
        obj=_checked_obj(z["obj"], path), spacing_m=spacing,  # type: ignore[arg-type]
        support=_checked_support(z.get("support"), z["obj"].shape, path), metadata=metadata,
        history={k[len("history__"):]: v for k, v in z.items() if k.startswith("history__")},
        maps={k[len("maps__"):]: v for k, v in z.items() if k.startswith("maps__")},
    )


def _load_cxi(f, path: Path) -> ReconstructionFile:
    if f"{_IMAGE}/data" not in f:
        raise ValueError(f"{path}: no {_IMAGE}/data: not a CXI reconstruction file")
    img = f[_IMAGE]
    ours = _decode(f[f"{_PROCESS}/program"][()]) == "dynbcdi" if f"{_PROCESS}/program" in f else False
    if "spacing_m" in img:
        spacing = tuple(float(s) for s in img["spacing_m"][()])
    elif all(f"{a}_pixel_size" in img for a in "zyx"):
        spacing = tuple(float(img[f"{a}_pixel_size"][()]) for a in "zyx")
    elif ours:
        spacing = None
    else:
        raise ValueError(f"{path}: no voxel size ({_IMAGE}/spacing_m or {{x,y,z}}_pixel_size)")
    metadata: dict[str, Any] = {}
    conf = f.get(f"{_PROCESS}/configuration")
    for k, ds in (conf or {}).items():
        metadata[k] = json.loads(_decode(ds[()])) if ds.attrs.get("json", False) else ds[()]
    hist = f.get(f"{_PROCESS}/history")
    obj = _checked_obj(img["data"][()], path)
    return ReconstructionFile(
        obj=obj,
        spacing_m=spacing,  # type: ignore[arg-type]
        support=_checked_support(img["support"][()] if "support" in img else None, obj.shape, path),
        metadata=metadata,
        history={k: ds[()] for k, ds in (hist or {}).items()},
        maps={k: ds[()] for k, ds in (img.get("maps") or {}).items()},
    )


def _checked_obj(obj: np.ndarray, path: Path) -> np.ndarray:
    if obj.ndim != 3 or not np.iscomplexobj(obj):
        raise ValueError(f"{path}: the object must be a complex (Z, Y, X) array, got {obj.dtype} {obj.shape}")
    return obj


def _checked_support(support: np.ndarray | None, shape: tuple[int, ...], path: Path) -> np.ndarray | None:
    if support is None:
        return None
    if support.shape != shape:
        raise ValueError(f"{path}: support shape {support.shape} differs from the object's {shape}")
    return support.astype(bool)
