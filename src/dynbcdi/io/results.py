"""Reconstruction results on disk: CXI/HDF5 (h5py) and NumPy .npz.

CXI layout (Coherent X-ray Imaging format 1.6, as PyNX writes BCDI objects)::

    /cxi_version                                 150
    /entry_1/image_1/data                        (Z, Y, X) complex crystal function S
    /entry_1/image_1/data_type, data_space       "electron density", "real"
    /entry_1/image_1/support                     (Z, Y, X) uint8, 1 = inside the crystal
    /entry_1/image_1/spacing_m                   (dz, dy, dx) m
    /entry_1/image_1/{x,y,z}_pixel_size          scalars, m
    /entry_1/image_1/process_1/program, version  "dynbcdi", package version
    /entry_1/image_1/process_1/configuration/*   metadata: arrays as datasets, the rest as JSON strings
    /entry_1/image_1/process_1/history/*         1-D float arrays (loss, error, ... per epoch)

The support is stored with 1 = inside (a crystal support, not a CXI detector mask where
nonzero means bad).
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

__all__ = ["ReconstructionFile", "save_result", "load_result"]

CXI_VERSION = 150
_IMAGE = "entry_1/image_1"
_PROCESS = f"{_IMAGE}/process_1"


@dataclass
class ReconstructionFile:
    """A reconstruction read back from disk.

    obj : (Z, Y, X) complex crystal function. spacing_m : (dz, dy, dx) m.
    support : (Z, Y, X) bool or None. metadata : dict (JSON-able values and numpy arrays).
    history : name → (n_epochs,) float array.
    """

    obj: np.ndarray
    spacing_m: tuple[float, float, float]
    support: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    raise ValueError(f"metadata value {value!r} of type {type(value).__name__} cannot be stored")


def _check_inputs(path, obj, spacing_m, support, history, overwrite) -> tuple[Path, np.ndarray, tuple, dict]:
    path = Path(path)
    if path.suffix not in (".cxi", ".h5", ".hdf5", ".npz"):
        raise ValueError(f"result file must end in .cxi, .h5, .hdf5 or .npz, got {str(path)!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    obj = np.asarray(obj)
    if obj.ndim != 3 or not np.iscomplexobj(obj):
        raise ValueError(f"obj must be a complex (Z, Y, X) array, got {obj.dtype} {obj.shape}")
    spacing = tuple(float(s) for s in spacing_m)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_m must be three positive sizes (dz, dy, dx), got {spacing_m!r}")
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
) -> Path:
    """Save a reconstruction to ``.cxi``/``.h5`` (CXI layout above) or ``.npz``.

    obj : (Z, Y, X) complex (dtype kept). spacing_m : (dz, dy, dx) m. support : (Z, Y, X) bool.
    metadata : str keys; numpy arrays are stored as arrays, other values must be JSON-able.
    history : name → 1-D sequence (per epoch/iteration). Never overwrites unless ``overwrite``.
    Returns the path written.
    """
    path, obj, spacing, hist = _check_inputs(path, obj, spacing_m, support, history, overwrite)
    metadata = dict(metadata or {})
    arrays = {k: v for k, v in metadata.items() if isinstance(v, np.ndarray) and v.ndim > 0}
    scalars = {k: json.dumps(v, default=_json_default) for k, v in metadata.items() if k not in arrays}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        payload = {"obj": obj, "spacing_m": np.asarray(spacing)}
        if support is not None:
            payload["support"] = np.asarray(support, dtype=bool)
        payload.update({f"history__{k}": v for k, v in hist.items()})
        payload.update({f"metadata__{k}": v for k, v in arrays.items()})
        payload["metadata_json"] = np.asarray(json.dumps(scalars))
        with open(path, "wb") as fh:  # a file handle stops numpy from appending ".npz"
            np.savez_compressed(fh, **payload)
        return path
    with h5py.File(path, "w") as f:
        f.create_dataset("cxi_version", data=CXI_VERSION)
        img = f.create_group(_IMAGE)
        f["entry_1"].attrs["NX_class"] = "NXentry"
        img.create_dataset("data", data=obj, compression="gzip", shuffle=True)
        img["data_type"], img["data_space"] = "electron density", "real"
        img["spacing_m"] = np.asarray(spacing)
        img["z_pixel_size"], img["y_pixel_size"], img["x_pixel_size"] = spacing
        if support is not None:
            img.create_dataset("support", data=np.asarray(support, dtype=np.uint8), compression="gzip")
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
    return path


def _decode(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_result(path: str | os.PathLike) -> ReconstructionFile:
    """Load a reconstruction written by :func:`save_result` (``.cxi``/``.h5``/``.hdf5``/``.npz``).

    For CXI files from other programs, ``/entry_1/image_1/data`` is read; a missing spacing
    is a ValueError, a missing support/metadata/history gives None/empty.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such result file: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            metadata = {k: json.loads(v) for k, v in json.loads(str(z["metadata_json"])).items()}
            metadata.update({k[len("metadata__"):]: z[k] for k in z.files if k.startswith("metadata__")})
            return ReconstructionFile(
                obj=z["obj"],
                spacing_m=tuple(float(s) for s in z["spacing_m"]),
                support=z["support"] if "support" in z.files else None,
                metadata=metadata,
                history={k[len("history__"):]: z[k] for k in z.files if k.startswith("history__")},
            )
    with h5py.File(path, "r") as f:
        if f"{_IMAGE}/data" not in f:
            raise ValueError(f"{path} has no {_IMAGE}/data: not a CXI reconstruction file")
        img = f[_IMAGE]
        if "spacing_m" in img:
            spacing = tuple(float(s) for s in img["spacing_m"][()])
        elif all(f"{a}_pixel_size" in img for a in "zyx"):
            spacing = tuple(float(img[f"{a}_pixel_size"][()]) for a in "zyx")
        else:
            raise ValueError(f"{path}: no voxel size ({_IMAGE}/spacing_m or {{x,y,z}}_pixel_size)")
        metadata: dict[str, Any] = {}
        conf = f.get(f"{_PROCESS}/configuration")
        for k, ds in (conf or {}).items():
            metadata[k] = json.loads(_decode(ds[()])) if ds.attrs.get("json", False) else ds[()]
        hist = f.get(f"{_PROCESS}/history")
        return ReconstructionFile(
            obj=img["data"][()],
            spacing_m=spacing,  # type: ignore[arg-type]
            support=img["support"][()].astype(bool) if "support" in img else None,
            metadata=metadata,
            history={k: ds[()] for k, ds in (hist or {}).items()},
        )
