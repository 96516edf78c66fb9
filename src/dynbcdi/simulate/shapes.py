"""Crystal shapes s(r) on the grid frame.

All builders return a ``(Z, Y, X)`` float64 array with values in [0, 1] (1 inside the crystal).
Positions are in metres in the grid frame, with the origin at the voxel of index ``n // 2``
along each axis (the same centre as the ``fftshift``ed far-field patterns). 3-vectors are given
as ``(x, y, z)`` components; only array indexing is ``(z, y, x)``.

Edges are either sharp (a voxel is inside when its centre is) or smooth: with a signed distance
``d`` to the surface (negative inside) the shape is ``0.5 (1 - tanh(d / w))``, a sub-voxel
surface of width ``w`` that moves continuously with the crystal size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Shape3 = tuple[int, int, int]
Spacing3 = tuple[float, float, float]


def _check_grid(shape: Sequence[int], spacing_m: Sequence[float]) -> tuple[Shape3, Spacing3]:
    if len(shape) != 3 or any(int(n) < 1 for n in shape):
        raise ValueError(f"grid shape must be three positive integers (Z, Y, X), got {shape!r}")
    if len(spacing_m) != 3 or any(not np.isfinite(d) or d <= 0 for d in spacing_m):
        raise ValueError(f"spacing_m must be three positive lengths (dz, dy, dx) in m, got {spacing_m!r}")
    return tuple(int(n) for n in shape), tuple(float(d) for d in spacing_m)  # type: ignore[return-value]


def grid_coordinates(
    shape: Sequence[int], spacing_m: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre positions ``(x, y, z)`` in m, broadcastable to ``(Z, Y, X)``.

    ``x`` has shape ``(1, 1, X)``, ``y`` ``(1, Y, 1)``, ``z`` ``(Z, 1, 1)``; index ``n // 2`` is 0.
    """
    (nz, ny, nx), (dz, dy, dx) = _check_grid(shape, spacing_m)
    x = ((np.arange(nx) - nx // 2) * dx).reshape(1, 1, nx)
    y = ((np.arange(ny) - ny // 2) * dy).reshape(1, ny, 1)
    z = ((np.arange(nz) - nz // 2) * dz).reshape(nz, 1, 1)
    return x, y, z


def _from_signed_distance(sd: np.ndarray, smooth_m: float | None) -> np.ndarray:
    """Shape from a signed distance (m, negative inside): sharp or tanh-smoothed edges."""
    if smooth_m is None or smooth_m == 0:
        return (sd <= 0).astype(np.float64)
    if smooth_m < 0 or not np.isfinite(smooth_m):
        raise ValueError(f"smooth_m must be a non-negative edge width in m, got {smooth_m!r}")
    return 0.5 * (1.0 - np.tanh(sd / smooth_m))


def polyhedron(
    shape: Sequence[int],
    spacing_m: Sequence[float],
    normals: np.ndarray,
    distances_m: Sequence[float],
    center_m: Sequence[float] = (0.0, 0.0, 0.0),
    smooth_m: float | None = None,
) -> np.ndarray:
    """Convex faceted crystal: the intersection of the half-spaces ``n_i · (r - c) <= d_i``.

    normals : (F, 3) facet normals (x, y, z), grid frame; normalised here.
    distances_m : (F,) distance of each facet plane from the centre ``c`` (m), > 0.
    center_m : (3,) centre ``c`` (x, y, z) in m.
    smooth_m : edge width ``w`` (m) of the tanh profile; None for sharp edges. The signed distance
        used is max_i (n_i·(r−c) − d_i), exact on the facets and slightly inside at edges/corners.
    Returns s : (Z, Y, X) float64 in [0, 1].
    """
    n = np.asarray(normals, dtype=float).reshape(-1, 3)
    d = np.asarray(distances_m, dtype=float).reshape(-1)
    if n.shape[0] != d.shape[0] or n.shape[0] < 4:
        raise ValueError(f"need >= 4 facets with one distance each, got {n.shape[0]} normals, {d.shape[0]} distances")
    norms = np.linalg.norm(n, axis=1)
    if np.any(norms == 0):
        raise ValueError("facet normals must be non-zero")
    if np.any(d <= 0):
        raise ValueError(f"facet distances must be > 0 m, got {d.tolist()}")
    n = n / norms[:, None]
    x, y, z = grid_coordinates(shape, spacing_m)
    cx, cy, cz = (float(c) for c in center_m)
    sd = np.full(np.broadcast_shapes(x.shape, y.shape, z.shape), -np.inf)
    for (nx_, ny_, nz_), di in zip(n, d):
        sd = np.maximum(sd, nx_ * (x - cx) + ny_ * (y - cy) + nz_ * (z - cz) - di)
    return _from_signed_distance(sd, smooth_m)


def parallelepiped_facets(edges_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward unit normals (6, 3) and centre distances (6,) in m of the parallelepiped spanned by ``edges_m``.

    edges_m : (3, 3) rows are the edge vectors a1, a2, a3 (x, y, z) in m. ValueError if coplanar.
    """
    a = np.asarray(edges_m, dtype=float)
    if a.shape != (3, 3):
        raise ValueError(f"edges_m must be (3, 3) (three edge vectors), got shape {a.shape}")
    # relative test: the volume over the product of the edge lengths measures the flatness
    if abs(np.linalg.det(a)) <= 1e-9 * np.prod(np.linalg.norm(a, axis=1)):
        raise ValueError("edge vectors are (nearly) coplanar: the parallelepiped has no volume")
    normals, distances = [], []
    for i in range(3):
        nvec = np.cross(a[(i + 1) % 3], a[(i + 2) % 3])
        nvec /= np.linalg.norm(nvec)
        half = abs(nvec @ a[i]) / 2
        normals += [nvec, -nvec]
        distances += [half, half]
    return np.array(normals), np.array(distances)


def parallelepiped(
    shape: Sequence[int],
    spacing_m: Sequence[float],
    edges_m: np.ndarray,
    center_m: Sequence[float] = (0.0, 0.0, 0.0),
    smooth_m: float | None = None,
) -> np.ndarray:
    """Parallelepiped spanned by three edge vectors, centred on ``center_m``.

    edges_m : (3, 3) rows are the edge vectors a1, a2, a3 (x, y, z) in m, grid frame, e.g. the
        crystal directions of the faces' intersections rotated into the grid frame and scaled.
    Returns s : (Z, Y, X) float64 in [0, 1].
    """
    normals, distances = parallelepiped_facets(edges_m)
    return polyhedron(shape, spacing_m, normals, distances, center_m, smooth_m)


def cube_edges(edge_m: float, rotation: np.ndarray | None = None) -> np.ndarray:
    """Edge vectors (3, 3) of a cube of side ``edge_m`` (m): rows are the rotated unit axes.

    rotation : (3, 3) crystal→grid rotation matrix (columns = crystal axes in the grid frame);
        identity if None.
    """
    if not np.isfinite(edge_m) or edge_m <= 0:
        raise ValueError(f"edge_m must be a positive length in m, got {edge_m!r}")
    r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=float)
    if r.shape != (3, 3) or not np.allclose(r.T @ r, np.eye(3), atol=1e-8):
        raise ValueError("rotation must be a (3, 3) orthogonal matrix")
    return edge_m * r.T


def rotation_with_axis(first_axis: np.ndarray, second_hint: np.ndarray | None = None) -> np.ndarray:
    """Rotation (3, 3) whose first column is ``first_axis`` (normalised) in the grid frame.

    The second column is ``second_hint`` made orthogonal to the first (default: the grid axis least
    parallel to ``first_axis``); the third completes a right-handed set. For the paper's (200) Au cube,
    ``first_axis`` = ĥ in the grid frame puts one cube edge along h.
    """
    a = np.asarray(first_axis, dtype=float)
    if a.shape != (3,) or np.linalg.norm(a) == 0:
        raise ValueError(f"first_axis must be a non-zero 3-vector, got {first_axis!r}")
    a = a / np.linalg.norm(a)
    b = np.eye(3)[int(np.argmin(np.abs(a)))] if second_hint is None else np.asarray(second_hint, float)
    b = b - (b @ a) * a
    if np.linalg.norm(b) < 1e-8:
        raise ValueError("second_hint is parallel to first_axis")
    b /= np.linalg.norm(b)
    return np.stack([a, b, np.cross(a, b)], axis=1)


def cube(
    shape: Sequence[int],
    spacing_m: Sequence[float],
    edge_m: float,
    rotation: np.ndarray | None = None,
    center_m: Sequence[float] = (0.0, 0.0, 0.0),
    smooth_m: float | None = None,
) -> np.ndarray:
    """Cube of side ``edge_m`` (m) with edges along the crystal→grid ``rotation`` columns.

    Returns s : (Z, Y, X) float64 in [0, 1].
    """
    return parallelepiped(shape, spacing_m, cube_edges(edge_m, rotation), center_m, smooth_m)


def sphere(
    shape: Sequence[int],
    spacing_m: Sequence[float],
    radius_m: float,
    center_m: Sequence[float] = (0.0, 0.0, 0.0),
    smooth_m: float | None = None,
) -> np.ndarray:
    """Sphere of radius ``radius_m`` (m). Returns s : (Z, Y, X) float64 in [0, 1]."""
    if not np.isfinite(radius_m) or radius_m <= 0:
        raise ValueError(f"radius_m must be a positive length in m, got {radius_m!r}")
    x, y, z = grid_coordinates(shape, spacing_m)
    cx, cy, cz = (float(c) for c in center_m)
    sd = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) - radius_m
    return _from_signed_distance(sd, smooth_m)


def from_mask(mask: np.ndarray, smooth_voxels: float | None = None) -> np.ndarray:
    """Shape from any user (Z, Y, X) mask or density; optionally blurred by a Gaussian.

    mask : (Z, Y, X) bool or float in [0, 1].
    smooth_voxels : Gaussian sigma in voxels for sub-voxel edges (None: unchanged).
    Returns s : (Z, Y, X) float64 in [0, 1].
    """
    m = np.asarray(mask)
    if m.ndim != 3:
        raise ValueError(f"mask must be a 3-D (Z, Y, X) array, got shape {m.shape}")
    s = m.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError(f"mask has {int(np.count_nonzero(~np.isfinite(s)))} non-finite value(s)")
    if s.min() < 0 or s.max() > 1:
        raise ValueError(f"mask values must lie in [0, 1], got [{s.min()}, {s.max()}]")
    if smooth_voxels:
        from scipy.ndimage import gaussian_filter

        s = np.clip(gaussian_filter(s, float(smooth_voxels), mode="constant"), 0.0, 1.0)
    return s


def source_indices(z_m: np.ndarray, y_m: np.ndarray, x_m: np.ndarray, source_shape: Sequence[int],
                   source_spacing_m: Sequence[float]) -> np.ndarray:
    """Fractional (z, y, x) indices into a source array of positions (m) given as broadcastable arrays.

    The source array follows the grid convention: its index ``n // 2`` along every axis sits at 0 m.
    source_spacing_m : (dz, dy, dx) of the source, m. Returns (3, ...) float64 indices.
    """
    (nz, ny, nx), (dz, dy, dx) = _check_grid(source_shape, source_spacing_m)
    pos = np.broadcast_arrays(z_m, y_m, x_m)
    return np.stack([p / d + n // 2 for p, d, n in zip(pos, (dz, dy, dx), (nz, ny, nx))])


def resample_mask(mask: np.ndarray, mask_spacing_m: Sequence[float], shape: Sequence[int],
                  spacing_m: Sequence[float], max_subsamples: int = 6) -> np.ndarray:
    """A user's mask, sampled at its own voxel size, as volume fractions on the simulation grid.

    mask : (Zm, Ym, Xm) bool or float in [0, 1], its index ``n // 2`` at the grid origin (0 m).
    mask_spacing_m : (dz, dy, dx) of the mask, m. shape, spacing_m : the simulation grid.
    Each grid voxel gets the mean of the mask, interpolated trilinearly
    (``scipy.ndimage.map_coordinates``, order 1, 0 outside the mask array), over k_z × k_y × k_x
    sub-points spread evenly across the voxel, k = ceil(grid spacing / mask spacing) capped at
    ``max_subsamples``: the fraction of the voxel the crystal fills (partial-volume amplitudes),
    exact for a mask at least as coarse as the grid and to ~1/k² of a surface voxel otherwise.
    Returns s : (Z, Y, X) float64 in [0, 1]. ValueError if the crystal reaches beyond the grid.
    """
    m = from_mask(mask)
    (_, _, _), (dz, dy, dx) = _check_grid(shape, spacing_m)
    src_spacing = _check_grid(m.shape, mask_spacing_m)[1]
    x, y, z = grid_coordinates(shape, spacing_m)
    k = [int(min(max_subsamples, max(1, np.ceil(g / s - 1e-9)))) for g, s in zip((dz, dy, dx), src_spacing)]
    offsets = [((np.arange(n) + 0.5) / n - 0.5) * d for n, d in zip(k, (dz, dy, dx))]
    out = np.zeros(tuple(int(n) for n in shape))
    from scipy.ndimage import map_coordinates

    for oz in offsets[0]:
        for oy in offsets[1]:
            for ox in offsets[2]:
                idx = source_indices(z + oz, y + oy, x + ox, m.shape, src_spacing)
                out += map_coordinates(m, idx.reshape(3, -1), order=1, mode="constant", cval=0.0).reshape(out.shape)
    out /= np.prod(k)
    inside, landed = float(m.sum() * np.prod(src_spacing)), float(out.sum() * dz * dy * dx)
    if inside > 0 and abs(landed - inside) > 0.02 * inside + dz * dy * dx:
        raise ValueError(f"the mask's crystal ({inside:.3g} m³) does not fit on the simulation grid "
                         f"{tuple(shape)} × {tuple(spacing_m)} m (only {landed:.3g} m³ lands on it)")
    return np.clip(out, 0.0, 1.0)


def extent_along(s: np.ndarray, spacing_m: Sequence[float], direction: np.ndarray, threshold: float = 0.5) -> float:
    """Width (m) of the crystal ``s > threshold`` projected on ``direction`` (x, y, z), grid frame.

    Measured between the outermost voxel centres plus one voxel's projected size.
    """
    u = np.asarray(direction, dtype=float)
    u = u / np.linalg.norm(u)
    x, y, z = grid_coordinates(s.shape, spacing_m)
    inside = s > threshold
    if not inside.any():
        return 0.0
    proj = np.broadcast_to(u[0] * x + u[1] * y + u[2] * z, s.shape)[inside]
    dz, dy, dx = spacing_m
    voxel = abs(u[0]) * dx + abs(u[1]) * dy + abs(u[2]) * dz
    return float(proj.max() - proj.min() + voxel)
