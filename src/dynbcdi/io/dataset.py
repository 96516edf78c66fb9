"""The :class:`Dataset` container and its CXI (HDF5) and .npz files.

CXI layout written (CXI 1.5 conventions, as read by PyNX / cohere / bcdi):

- ``/cxi_version`` = 150
- ``/entry_1/instrument_1/detector_1/data`` (N, rows, cols) float64 photons, with the soft link
  ``/entry_1/data_1/data`` pointing to it
- ``/entry_1/instrument_1/detector_1/{distance, x_pixel_size, y_pixel_size}`` in m
- ``/entry_1/instrument_1/detector_1/mask`` uint32, CXI convention: nonzero = bad pixel
  ((rows, cols) or (N, rows, cols), the shape of ``valid``)
- ``/entry_1/instrument_1/source_1/energy`` in **joules** (CXI unit), and ``.../wavelength`` in m
- ``/entry_1/dynbcdi``: everything needed to rebuild the :class:`Dataset` exactly — ``geometry/*``
  and ``reflection/*`` (one dataset per dataclass field; complex values stored as complex),
  ``spacing_m`` (dz, dy, dx), ``truth`` (Z, Y, X) complex, ``metadata`` (JSON attribute) and
  ``metadata_arrays/*`` (array-valued metadata, e.g. the kinematic stacks).

The .npz file holds the same fields under flat keys (``geometry.k0``, ``reflection.chi0``, ...).
The mask is converted between ``valid`` (True = good) and the CXI convention only here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dynbcdi.io.filecheck import check_input_file, check_new_output, load_npz, open_hdf5, sniff_format

if TYPE_CHECKING:
    from dynbcdi.geometry import BraggGeometry
    from dynbcdi.materials import ReflectionConstants

ELECTRON_VOLT_J = 1.602176634e-19  # exact (SI 2019); CXI stores energies in J
CXI_VERSION = 150
FORMAT_VERSION = 1
_ROOT = "entry_1/dynbcdi"


# What to do instead of storing NaN/Inf (in the one-line error of Dataset).
FINITE_HINT = {"intensity": "mark bad pixels invalid (valid = False) and store a finite count there",
               "truth": "the ground-truth crystal function must be finite"}


@dataclass
class Dataset:
    """A BCDI rocking scan with everything needed to model it.

    intensity : (N, rows, cols) float, photons, >= 0; j = rocking-angle index.
    valid : (rows, cols) or (N, rows, cols) bool, True = trusted pixel.
    geometry : the scan geometry (rocking angles, detector, wave vectors).
    reflection : material constants of the reflection (χ0, χh, χh̄, θB, ...).
    spacing_m : grid voxel (dz, dy, dx) in m.
    truth : (Z, Y, X) complex ground-truth crystal function S (simulations only).
    metadata : free-form; JSON-able values and numpy arrays survive a file round trip.
    """

    intensity: np.ndarray
    valid: np.ndarray
    geometry: BraggGeometry
    reflection: ReflectionConstants
    spacing_m: tuple[float, float, float]
    truth: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.intensity = np.asarray(self.intensity)
        self.valid = np.asarray(self.valid, dtype=bool)
        if self.intensity.ndim != 3:
            raise ValueError(f"intensity must be (N, rows, cols), got shape {self.intensity.shape}")
        if self.valid.shape not in (self.intensity.shape, self.intensity.shape[1:]):
            raise ValueError(
                f"valid shape {self.valid.shape} matches neither {self.intensity.shape} nor {self.intensity.shape[1:]}"
            )
        self.spacing_m = tuple(float(d) for d in self.spacing_m)  # type: ignore[assignment]
        if len(self.spacing_m) != 3 or min(self.spacing_m) <= 0:
            raise ValueError(f"spacing_m must be three positive lengths (dz, dy, dx), got {self.spacing_m}")
        if self.truth is not None and np.asarray(self.truth).ndim != 3:
            raise ValueError(f"truth must be (Z, Y, X), got shape {np.asarray(self.truth).shape}")
        self._check_against_geometry()
        for name in ("intensity", "truth"):  # a NaN would propagate into every model and loss silently
            values = getattr(self, name)
            if values is not None and not np.isfinite(values).all():
                raise ValueError(f"{name} has {int((~np.isfinite(values)).sum())} NaN/Inf values of "
                                 f"{np.size(values)}; {FINITE_HINT[name]}")

    def _check_against_geometry(self) -> None:
        """One frame per rocking angle and the geometry's detector (rows, cols)."""
        n_frames, rows, cols = self.intensity.shape
        n_angles = len(np.atleast_1d(self.geometry.rocking_angles_rad))
        if n_frames != n_angles:
            raise ValueError(f"intensity has {n_frames} frame(s) but the geometry has {n_angles} rocking angles: "
                             "one frame per rocking angle is needed")
        if (rows, cols) != tuple(self.geometry.detector_shape):
            raise ValueError(f"intensity frames of {rows} × {cols} pixels do not match the geometry's detector "
                             f"(rows, cols) = {tuple(self.geometry.detector_shape)}")


# --- dataclass <-> flat dict of numpy values -------------------------------------------------


def _fields_to_arrays(obj: Any) -> dict[str, np.ndarray]:
    """Flat {field: array} of a (frozen) dataclass; None fields are left out."""
    out: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value) or isinstance(value, dict):
            raise TypeError(f"cannot store field {type(obj).__name__}.{f.name} of type {type(value).__name__}")
        out[f.name] = np.asarray(value)
    return out


def _to_python(value: np.ndarray, annotation: str) -> Any:
    """Stored array back to the field's type (tuples and scalars become Python objects)."""
    if value.dtype.kind in "SUO":
        return str(value.item() if value.ndim == 0 else value.tolist())
    if value.ndim == 0:
        return value.item()
    if annotation.startswith("tuple"):
        return tuple(v for v in value.tolist())
    return value


def _arrays_to_fields(cls: type, stored: dict[str, np.ndarray]) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(stored) - set(names)
    if unknown:
        raise ValueError(f"file holds unknown {cls.__name__} fields {sorted(unknown)}")
    required = {n for n, f in names.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = required - set(stored)
    if missing:
        raise ValueError(f"{cls.__name__} fields missing from the file: {sorted(missing)}")
    kwargs = {k: _to_python(v, str(names[k].type)) for k, v in stored.items()}
    return cls(**kwargs)


def _split_metadata(metadata: dict[str, Any]) -> tuple[str, dict[str, np.ndarray]]:
    plain, arrays = {}, {}
    for key, value in metadata.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
        else:
            plain[key] = value
    try:
        text = json.dumps(plain, default=_json_default)
    except TypeError as err:
        raise ValueError(f"metadata must hold JSON-able values or numpy arrays: {err}") from None
    return text, arrays


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def check_dataset_target(path: str | os.PathLike, overwrite: bool, how: str = "overwrite=True") -> Path:
    """One-line errors for a dataset output path that cannot be written (suffix, parent, existing file);
    ``how`` names the way to allow replacing it ("--overwrite" on the command line)."""
    p = Path(path)
    if p.suffix not in (".cxi", ".npz"):
        raise ValueError(f"dataset file must end in .cxi or .npz, got {str(p)!r}")
    return check_new_output(p, "dataset file", overwrite=overwrite, remedy=f"pass {how} to replace it")


# --- CXI ------------------------------------------------------------------------------------


def _mask_from_valid(valid: np.ndarray) -> np.ndarray:
    return (~valid).astype(np.uint32)  # CXI pixel-mask bit 0 = "invalid"


def _write_cxi(dataset: Dataset, path: Path) -> None:
    import h5py

    geo, refl = dataset.geometry, dataset.reflection
    with h5py.File(path, "w") as f:
        f.create_dataset("cxi_version", data=CXI_VERSION)
        entry = f.create_group("entry_1")
        entry.attrs["NX_class"] = "NXentry"
        det = entry.create_group("instrument_1/detector_1")
        det.create_dataset("data", data=dataset.intensity, compression="gzip", compression_opts=4)
        det["distance"] = float(geo.detector_distance_m)
        det["x_pixel_size"] = float(geo.pixel_size_m)
        det["y_pixel_size"] = float(geo.pixel_size_m)
        det.create_dataset("mask", data=_mask_from_valid(dataset.valid), compression="gzip")
        src = entry.create_group("instrument_1/source_1")
        src["energy"] = float(refl.energy_eV) * ELECTRON_VOLT_J
        src["energy"].attrs["units"] = "J"
        src["wavelength"] = float(refl.wavelength_m)
        entry.create_group("data_1")
        entry["data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
        root = f.create_group(_ROOT)
        root.attrs["format_version"] = FORMAT_VERSION
        for name, obj in (("geometry", geo), ("reflection", refl)):
            grp = root.create_group(name)
            for key, value in _fields_to_arrays(obj).items():
                grp[key] = str(value) if value.dtype.kind == "U" else value
        root["spacing_m"] = np.asarray(dataset.spacing_m)
        if dataset.truth is not None:
            root.create_dataset("truth", data=dataset.truth, compression="gzip", compression_opts=4)
        text, arrays = _split_metadata(dataset.metadata)
        root.attrs["metadata"] = text
        grp = root.create_group("metadata_arrays")
        for key, value in arrays.items():
            grp.create_dataset(key, data=value, compression="gzip", compression_opts=4)


def _read_group(grp) -> dict[str, np.ndarray]:
    out = {}
    for key in grp:
        value = grp[key][()]
        out[key] = np.asarray(value.decode() if isinstance(value, bytes) else value)
    return out


NOT_A_DATASET = ("not a dynbcdi dataset; for a plain intensity file use `dynbcdi prepare` "
                 "or `dynbcdi phase` directly")
_CXI_INTENSITY = "entry_1/data_1/data"
_CXI_MASK = "entry_1/instrument_1/detector_1/mask"


def _read_cxi(path: Path) -> Dataset:
    import h5py

    from dynbcdi.geometry import BraggGeometry
    from dynbcdi.materials import ReflectionConstants

    with open_hdf5(path, "dataset file") as f:
        if _ROOT not in f:
            raise ValueError(f"{path}: CXI file without the {_ROOT} group: {NOT_A_DATASET}")
        root = f[_ROOT]
        needed = {_CXI_INTENSITY: f, _CXI_MASK: f, "geometry": root, "reflection": root, "spacing_m": root}
        missing = [k for k, where in needed.items() if k not in where]
        if missing:
            raise ValueError(f"{path}: dynbcdi dataset missing {', '.join(missing)}")
        if not isinstance(f[_CXI_INTENSITY], h5py.Dataset):
            raise ValueError(f"{path}: {_CXI_INTENSITY} is not a dataset")
        truth = root["truth"][()] if "truth" in root else None
        arrays = _read_group(root["metadata_arrays"]) if "metadata_arrays" in root else {}
        return _build(path, intensity=f[_CXI_INTENSITY][()], valid=f[_CXI_MASK][()] == 0,
                      geometry=(BraggGeometry, _read_group(root["geometry"])),
                      reflection=(ReflectionConstants, _read_group(root["reflection"])),
                      spacing_m=root["spacing_m"][()], truth=truth,
                      metadata_json=root.attrs.get("metadata", "{}"), metadata_arrays=arrays)


def _build(path: Path, *, intensity, valid, geometry, reflection, spacing_m, truth, metadata_json,
           metadata_arrays) -> Dataset:
    """The Dataset from stored arrays; every inconsistency becomes a ValueError naming ``path``."""
    try:
        metadata = json.loads(str(metadata_json))
        dataset = Dataset(
            intensity=intensity, valid=valid,
            geometry=_arrays_to_fields(*geometry), reflection=_arrays_to_fields(*reflection),
            spacing_m=tuple(np.asarray(spacing_m, dtype=float).reshape(-1).tolist()), truth=truth,
            metadata={**metadata, **metadata_arrays},
        )
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: invalid dynbcdi dataset: {err}") from None
    return dataset


# --- npz ------------------------------------------------------------------------------------


def _write_npz(dataset: Dataset, path: Path) -> None:
    text, arrays = _split_metadata(dataset.metadata)
    payload: dict[str, np.ndarray] = {
        "format_version": np.asarray(FORMAT_VERSION),
        "intensity": dataset.intensity,
        "valid": dataset.valid,
        "spacing_m": np.asarray(dataset.spacing_m),
        "metadata_json": np.asarray(text),
    }
    if dataset.truth is not None:
        payload["truth"] = dataset.truth
    for prefix, obj in (("geometry", dataset.geometry), ("reflection", dataset.reflection)):
        payload.update({f"{prefix}.{k}": v for k, v in _fields_to_arrays(obj).items()})
    payload.update({f"metadata_array.{k}": v for k, v in arrays.items()})
    with open(path, "wb") as fh:  # a file object stops numpy from appending a second ".npz"
        np.savez_compressed(fh, **payload)


def _read_npz(path: Path) -> Dataset:
    from dynbcdi.geometry import BraggGeometry
    from dynbcdi.materials import ReflectionConstants

    data = load_npz(path, "dataset .npz")
    if "format_version" not in data or not any(k.startswith("geometry.") for k in data):
        raise ValueError(f"{path}: .npz without dynbcdi's format_version and geometry.* keys "
                         f"(holds {sorted(data)[:6]}): {NOT_A_DATASET}")
    missing = [k for k in ("intensity", "valid", "spacing_m", "metadata_json") if k not in data]
    if missing:
        raise ValueError(f"{path}: dynbcdi dataset missing {', '.join(missing)}")

    def group(prefix: str) -> dict[str, np.ndarray]:
        return {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith(prefix + ".")}

    return _build(path, intensity=data["intensity"], valid=data["valid"],
                  geometry=(BraggGeometry, group("geometry")), reflection=(ReflectionConstants, group("reflection")),
                  spacing_m=data["spacing_m"], truth=data.get("truth"), metadata_json=data["metadata_json"],
                  metadata_arrays=group("metadata_array"))


def is_dataset_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is a dynbcdi dataset (.cxi with ``entry_1/dynbcdi``, or .npz with ``geometry.*``).

    Decided from the content; an unreadable file raises the one-line errors of :func:`load_dataset`.
    """
    p = check_input_file(path, "data file")
    kind = sniff_format(p)
    if kind == "hdf5":
        with open_hdf5(p, "data file") as f:
            return _ROOT in f
    if kind == "npz":
        keys = _npz_keys(p)
        return "format_version" in keys and any(k.startswith("geometry.") for k in keys)
    return False


def _npz_keys(path: Path) -> list[str]:
    """The array names of an .npz archive, without reading the arrays."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            return list(z.files)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable NumPy .npz archive (truncated or corrupt: {err})") from None


def save_dataset(dataset: Dataset, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``dataset`` to ``path`` (``.cxi`` HDF5 or ``.npz``); returns the path.

    Raises FileExistsError if the file exists and ``overwrite`` is False, ValueError for another suffix.
    """
    p = check_dataset_target(path, overwrite)
    (_write_cxi if p.suffix == ".cxi" else _write_npz)(dataset, p)
    return p


def load_dataset(path: str | os.PathLike) -> Dataset:
    """Read a dataset written by :func:`save_dataset` (``.cxi`` or ``.npz``), all metadata included.

    The format is taken from the content. Every bad file — missing, empty, truncated, not
    HDF5/npz, a CXI or .npz that dynbcdi did not write, a missing mask/geometry/field, shapes that
    do not fit — is a one-line FileNotFoundError/ValueError naming the file.
    """
    p = check_input_file(path, "dataset file")
    kind = sniff_format(p)
    if kind == "hdf5":
        return _read_cxi(p)
    if kind == "npz":
        return _read_npz(p)
    raise ValueError(f"{p}: neither HDF5/CXI nor .npz: {NOT_A_DATASET}")
