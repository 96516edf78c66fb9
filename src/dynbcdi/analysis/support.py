"""Support extraction and isosurfaces of a reconstructed amplitude (scikit-image, SciPy).

Arrays are indexed (z, y, x); ``spacing_m = (dz, dy, dx)``; returned vertex coordinates are
(x, y, z) components as everywhere in dynbcdi (docs/CONVENTIONS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import marching_cubes

from dynbcdi.analysis.strain import check_spacing

__all__ = ["Isosurface", "support_from_amplitude", "isosurface"]


@dataclass(frozen=True)
class Isosurface:
    """Triangulated isosurface.

    vertices_m : (V, 3) float, (x, y, z) positions, m, origin at voxel (0, 0, 0).
    faces : (F, 3) int, vertex indices of each triangle.
    normals : (V, 3) float, (x, y, z) unit normals pointing towards decreasing values.
    level : the absolute iso-value used.
    """

    vertices_m: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    level: float


def support_from_amplitude(
    amplitude: np.ndarray,
    threshold: float = 0.3,
    sigma: float = 1.0,
    fill_holes: bool = True,
    largest_component: bool = True,
) -> np.ndarray:
    """Support = voxels where the Gaussian-smoothed amplitude exceeds ``threshold`` × its max.

    amplitude : (Z, Y, X) float ≥ 0 (or complex: its modulus is used).
    threshold : fraction of the maximum of the smoothed amplitude, in (0, 1); 0.2–0.5 is usual.
    sigma : Gaussian smoothing width in voxels (0 = none).
    fill_holes, largest_component : close internal voids / keep the largest connected body.
    Returns (Z, Y, X) bool.
    """
    amp = np.abs(np.asarray(amplitude))
    if amp.ndim != 3:
        raise ValueError(f"amplitude must be a 3-D (Z, Y, X) array, got shape {amp.shape}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be a fraction of the maximum in (0, 1), got {threshold!r}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 voxels, got {sigma!r}")
    smooth = ndimage.gaussian_filter(amp.astype(float), sigma) if sigma > 0 else amp.astype(float)
    peak = smooth.max()
    if not np.isfinite(peak) or peak <= 0:
        raise ValueError("amplitude has no positive finite maximum")
    support = smooth > threshold * peak
    if largest_component:
        labels, n = ndimage.label(support)
        if n > 1:
            sizes = ndimage.sum_labels(support, labels, index=np.arange(1, n + 1))
            support = labels == 1 + int(np.argmax(sizes))
    if fill_holes:
        support = ndimage.binary_fill_holes(support)
    return support


def isosurface(
    volume: np.ndarray,
    level: float,
    spacing_m=(1.0, 1.0, 1.0),
    relative: bool = True,
) -> Isosurface:
    """Isosurface of a 3-D scalar volume by marching cubes (scikit-image).

    volume : (Z, Y, X) float (complex → modulus). level : iso-value, a fraction of the maximum in
    (0, 1) when ``relative`` (default) else absolute. spacing_m : (dz, dy, dx) m.
    """
    vol = np.abs(np.asarray(volume)).astype(float) if np.iscomplexobj(volume) else np.asarray(volume, float)
    if vol.ndim != 3 or min(vol.shape) < 2:
        raise ValueError(f"volume must be a 3-D (Z, Y, X) array with >= 2 voxels per axis, got {vol.shape}")
    spacing = check_spacing(spacing_m)
    if relative:
        if not 0 < level < 1:
            raise ValueError(f"relative level must be in (0, 1), got {level!r}")
        level = level * float(np.nanmax(vol))
    lo, hi = float(np.nanmin(vol)), float(np.nanmax(vol))
    if not lo < level < hi:
        raise ValueError(f"iso level {level!r} is outside the volume's range ({lo!r}, {hi!r})")
    verts, faces, normals, _ = marching_cubes(np.nan_to_num(vol, nan=lo), level=level, spacing=spacing)
    # marching_cubes works in index order (z, y, x); dynbcdi vectors are (x, y, z).
    return Isosurface(vertices_m=verts[:, ::-1].copy(), faces=faces, normals=normals[:, ::-1].copy(), level=level)
