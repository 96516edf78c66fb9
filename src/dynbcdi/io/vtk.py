"""VTK XML image data (.vti) export/import for ParaView (the ``vtk`` package's XML writer/reader).

dynbcdi arrays are C-ordered and indexed (z, y, x); VTK image data store points with x varying
fastest, so a C-order ravel of a (Z, Y, X) array *is* VTK point order with dimensions (X, Y, Z).
Spacing is passed to VTK as (dx, dy, dz) and the origin as (x, y, z).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkIOXML import vtkXMLImageDataReader, vtkXMLImageDataWriter

__all__ = ["write_vti", "read_vti", "vector_array", "tensor_array"]


def vector_array(u: np.ndarray) -> np.ndarray:
    """(3, Z, Y, X) vector field, components (x, y, z) → (Z, Y, X, 3), the layout ParaView reads as a vector."""
    v = np.asarray(u)
    if v.ndim != 4 or v.shape[0] != 3:
        raise ValueError(f"vector field must be (3, Z, Y, X), got shape {v.shape}")
    return np.ascontiguousarray(np.moveaxis(v, 0, -1))


def tensor_array(t: np.ndarray) -> np.ndarray:
    """(3, 3, Z, Y, X) tensor field, indices (x, y, z) → (Z, Y, X, 9), row-major (xx, xy, xz, yx, …),
    VTK's 9-component tensor layout (ParaView shows it as a tensor with eigen-analysis filters)."""
    a = np.asarray(t)
    if a.ndim != 5 or a.shape[:2] != (3, 3):
        raise ValueError(f"tensor field must be (3, 3, Z, Y, X), got shape {a.shape}")
    return np.ascontiguousarray(np.moveaxis(a.reshape(9, *a.shape[2:]), 0, -1))


def _prepare_arrays(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], tuple[int, int, int]]:
    if not arrays:
        raise ValueError("arrays is empty: give at least one (Z, Y, X) array")
    out: dict[str, np.ndarray] = {}
    shape = None
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.ndim not in (3, 4):
            raise ValueError(f"array {name!r} must be (Z, Y, X) or (Z, Y, X, C), got shape {arr.shape}")
        if shape is None:
            shape = arr.shape[:3]
        elif arr.shape[:3] != shape:
            raise ValueError(f"array {name!r} has grid shape {arr.shape[:3]}, expected {shape}")
        if np.iscomplexobj(arr):
            # ParaView has no complex type; amplitude and phase are what one looks at.
            out[f"{name}_amplitude"] = np.abs(arr)
            out[f"{name}_phase"] = np.angle(arr)
        elif arr.dtype == bool:
            out[name] = arr.astype(np.uint8)
        else:
            out[name] = arr
    return out, shape  # type: ignore[return-value]


def write_vti(
    path: str | os.PathLike,
    arrays: dict[str, np.ndarray],
    spacing_m,
    origin_m=(0.0, 0.0, 0.0),
    overwrite: bool = False,
    vectors: str | None = None,
    tensors: str | None = None,
) -> Path:
    """Write point-data arrays on a regular grid to a VTK XML image file (.vti, zlib-compressed).

    arrays : name → (Z, Y, X) or (Z, Y, X, C) array (e.g. amplitude, phase, displacement, strain).
        Complex arrays are written as ``<name>_amplitude`` and ``<name>_phase`` (rad); bool as uint8.
        NaN values are written as they are (ParaView shows them as NaN colour).
    spacing_m : (dz, dy, dx) m. origin_m : (x, y, z) position of voxel (0, 0, 0), m.
    overwrite : replace an existing file (otherwise FileExistsError).
    vectors, tensors : names of a 3-component (:func:`vector_array`) and a 9-component
        (:func:`tensor_array`) array to mark as the active vectors / tensors, so that ParaView's
        glyph and tensor filters pick them up.
    Returns the path written.
    """
    path = Path(path)
    if path.suffix != ".vti":
        raise ValueError(f"VTK image data files must end in .vti, got {str(path)!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    spacing = tuple(float(s) for s in spacing_m)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_m must be three positive sizes (dz, dy, dx), got {spacing_m!r}")
    origin = tuple(float(o) for o in origin_m)
    if len(origin) != 3:
        raise ValueError(f"origin_m must be an (x, y, z) position, got {origin_m!r}")
    prepared, (nz, ny, nx) = _prepare_arrays(arrays)
    for name, comps in ((vectors, 3), (tensors, 9)):
        if name is not None and (name not in prepared or prepared[name].shape[3:] != (comps,)):
            raise ValueError(f"array {name!r} to mark as active must exist with {comps} components")

    image = vtkImageData()
    image.SetDimensions(nx, ny, nz)
    image.SetSpacing(spacing[2], spacing[1], spacing[0])
    image.SetOrigin(*origin)
    for name, arr in prepared.items():
        flat = np.ascontiguousarray(arr).reshape(nx * ny * nz, -1)
        vtk_arr = numpy_to_vtk(flat if flat.shape[1] > 1 else flat[:, 0], deep=True)
        vtk_arr.SetName(name)
        image.GetPointData().AddArray(vtk_arr)
    if vectors is not None:
        image.GetPointData().SetActiveVectors(vectors)
    if tensors is not None:
        image.GetPointData().SetActiveTensors(tensors)

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = vtkXMLImageDataWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.SetCompressorTypeToZLib()
    writer.SetDataModeToAppended()
    writer.EncodeAppendedDataOff()
    if writer.Write() != 1:
        raise OSError(f"VTK failed to write {path}")
    return path


def read_vti(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], tuple[float, float, float]]:
    """Read a .vti file written by :func:`write_vti` (or ParaView).

    Returns (arrays, spacing_m): name → (Z, Y, X) or (Z, Y, X, C) array in the file's dtype, and
    spacing (dz, dy, dx) m. The origin is ignored here; use VTK directly if you need it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such .vti file: {path}")
    reader = vtkXMLImageDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    nx, ny, nz = image.GetDimensions()
    if nx * ny * nz == 0:
        raise ValueError(f"{path} holds no image data")
    dx, dy, dz = image.GetSpacing()
    point_data = image.GetPointData()
    arrays = {}
    for i in range(point_data.GetNumberOfArrays()):
        vtk_arr = point_data.GetArray(i)
        data = vtk_to_numpy(vtk_arr).copy()
        comps = vtk_arr.GetNumberOfComponents()
        arrays[vtk_arr.GetName()] = data.reshape((nz, ny, nx) + ((comps,) if comps > 1 else ()))
    return arrays, (float(dz), float(dy), float(dx))
