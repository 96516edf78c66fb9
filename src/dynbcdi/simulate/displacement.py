"""Displacement fields u(r) on the grid frame and the crystal function S = s·exp(−i h·u).

Every field is returned as ``u : (3, Z, Y, X)`` float64 in metres, component 0 = u_x, 1 = u_y,
2 = u_z (grid frame), sampled at the voxel centres of :func:`dynbcdi.simulate.shapes.grid_coordinates`.
Fields add linearly, so a sample's deformation is a sum of the builders below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from dynbcdi.simulate.shapes import grid_coordinates, source_indices


def _unit(v: Sequence[float], name: str) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    if a.shape != (3,) or not np.isfinite(a).all() or np.linalg.norm(a) == 0:
        raise ValueError(f"{name} must be a finite non-zero 3-vector (x, y, z), got {v!r}")
    return a / np.linalg.norm(a)


def _relative(shape, spacing_m, center_m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, z = grid_coordinates(shape, spacing_m)
    cx, cy, cz = (float(c) for c in center_m)
    return x - cx, y - cy, z - cz


def _positive(value: float, name: str) -> float:
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return float(value)


def uniform_strain(
    shape: Sequence[int],
    spacing_m: Sequence[float],
    strain: np.ndarray | float,
    center_m: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Homogeneous strain: u = ε (r − c).

    strain : (3, 3) displacement-gradient tensor ∂u_i/∂x_j in the grid frame (x, y, z), or a scalar
        for isotropic strain ε·I (dimensionless).
    Returns u : (3, Z, Y, X) float64, m.
    """
    eps = np.asarray(strain, dtype=float)
    eps = eps * np.eye(3) if eps.ndim == 0 else eps
    if eps.shape != (3, 3):
        raise ValueError(f"strain must be a scalar or a (3, 3) tensor, got shape {eps.shape}")
    r = np.broadcast_arrays(*_relative(shape, spacing_m, center_m))
    return np.stack([sum(eps[i, j] * r[j] for j in range(3)) for i in range(3)])


def gaussian_bulge(
    shape: Sequence[int],
    spacing_m: Sequence[float],
    amplitude_m: float,
    sigma_m: float,
    direction: Sequence[float],
    center_m: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Localised displacement u = A exp(−|r − c|²/(2σ²)) d̂ (A in m, σ in m, d̂ unit, grid frame).

    Returns u : (3, Z, Y, X) float64, m.
    """
    sigma = _positive(sigma_m, "sigma_m")
    d = _unit(direction, "direction")
    x, y, z = _relative(shape, spacing_m, center_m)
    g = amplitude_m * np.exp(-(x**2 + y**2 + z**2) / (2 * sigma**2))
    return np.stack([d[i] * g for i in range(3)])


def point_inclusion(
    shape: Sequence[int],
    spacing_m: Sequence[float],
    radius_m: float,
    misfit: float,
    center_m: Sequence[float] = (0.0, 0.0, 0.0),
    poisson_ratio: float = 1 / 3,
) -> np.ndarray:
    """Spherical misfitting inclusion in an infinite isotropic matrix (Eshelby).

    With constrained strain C = misfit (1 + ν) / (3 (1 − ν)) and a the radius:
    u = C (r − c) inside (uniform dilatation), u = C a³ (r − c)/|r − c|³ outside (1/r² decay).
    misfit : free linear misfit strain δ of the inclusion (dimensionless, > 0 expands).
    Returns u : (3, Z, Y, X) float64, m.
    """
    a = _positive(radius_m, "radius_m")
    if not -1 < poisson_ratio < 0.5:
        raise ValueError(f"poisson_ratio must lie in (-1, 0.5), got {poisson_ratio!r}")
    c = misfit * (1 + poisson_ratio) / (3 * (1 - poisson_ratio))
    x, y, z = np.broadcast_arrays(*_relative(shape, spacing_m, center_m))
    r = np.sqrt(x**2 + y**2 + z**2)
    scale = np.where(r <= a, c, c * a**3 / np.maximum(r, a) ** 3)
    return np.stack([scale * x, scale * y, scale * z])


def corner_contact(
    shape: Sequence[int],
    spacing_m: Sequence[float],
    corner_m: Sequence[float],
    amplitude_m: float,
    decay_m: float,
    direction: Sequence[float] | None = None,
) -> np.ndarray:
    """Contact strain concentrated at one corner (the Pt-weld corner of paper Fig. 4, Sr2IrO4).

    u = A exp(−ρ/ℓ) d̂ with ρ = |r − r_corner|: the displacement is largest at the corner and the
    strain ∂u/∂ρ ≈ −A/ℓ decays over ℓ into the crystal.
    corner_m : (3,) corner position (x, y, z) in m; see :func:`parallelepiped_corner`.
    direction : d̂ (x, y, z); default: from the corner towards the grid origin (a push inwards).
    Returns u : (3, Z, Y, X) float64, m.
    """
    ell = _positive(decay_m, "decay_m")
    corner = np.asarray(corner_m, dtype=float)
    d = _unit(-corner if direction is None else direction, "direction")
    x, y, z = _relative(shape, spacing_m, corner)
    g = amplitude_m * np.exp(-np.sqrt(x**2 + y**2 + z**2) / ell)
    return np.stack([d[i] * g for i in range(3)])


def parallelepiped_corner(edges_m: np.ndarray, toward: Sequence[float], center_m=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Corner (x, y, z) in m of the parallelepiped of :func:`shapes.parallelepiped` furthest along ``toward``."""
    a = np.asarray(edges_m, dtype=float)
    t = _unit(toward, "toward")
    signs = np.sign(a @ t)
    signs[signs == 0] = 1
    return np.asarray(center_m, dtype=float) + 0.5 * (signs @ a)


def from_callable(
    shape: Sequence[int],
    spacing_m: Sequence[float],
    func: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray | Sequence[np.ndarray]],
    h_dir: Sequence[float] | None = None,
) -> np.ndarray:
    """Displacement from a user function of the voxel positions ``func(x, y, z)`` (m, grid frame).

    ``func`` returns either the three components (u_x, u_y, u_z) in m, or — if ``h_dir`` is given —
    the scalar u_h (m) along the unit vector ``h_dir``. Outputs broadcast to (Z, Y, X).
    Returns u : (3, Z, Y, X) float64, m.
    """
    x, y, z = np.broadcast_arrays(*grid_coordinates(shape, spacing_m))
    out = func(x, y, z)
    if h_dir is not None:
        return from_projection(np.broadcast_to(np.asarray(out, float), x.shape), h_dir)
    u = np.stack([np.broadcast_to(np.asarray(c, float), x.shape) for c in out])
    if u.shape != (3, *x.shape):
        raise ValueError(f"func must return 3 components broadcastable to {x.shape}, got {u.shape}")
    return u


# Samples of linear extrapolation around a displacement array before spline interpolation.
SPLINE_MARGIN = 12


def from_array(
    field: np.ndarray,
    field_spacing_m: Sequence[float],
    shape: Sequence[int],
    spacing_m: Sequence[float],
    h_dir: Sequence[float] | None = None,
    support: np.ndarray | None = None,
) -> np.ndarray:
    """A displacement field sampled on its own grid (e.g. a finite-element export), on the simulation grid.

    field : (3, Zf, Yf, Xf) components (u_x, u_y, u_z) in m, grid frame, or, with ``h_dir``, the
        (Zf, Yf, Xf) component u_h along the unit vector ``h_dir`` (m). Its index ``n // 2`` along
        every axis sits at the grid origin (0 m); field_spacing_m : its (dz, dy, dx), m.
    shape, spacing_m : the simulation grid. support : (Z, Y, X) bool, voxels where the field is
        needed (the crystal); ValueError if any lies outside the field's sampled extent.
    Interpolation: cubic B-splines (``scipy.ndimage.map_coordinates``, order 3) of the field extended
    by ``SPLINE_MARGIN`` samples of odd reflection (linear extrapolation): exact (to ~1e-13
    relative) for a field linear in position, error of order d⁴ × the fourth derivative for smooth
    fields: 3e-4 of the amplitude for a Gaussian sampled at σ/3 (tests/simulate/test_user_crystal.py).
    Returns u : (3, Z, Y, X) float64, m.
    """
    from scipy.ndimage import map_coordinates

    f = np.asarray(field, dtype=float)
    if f.ndim != (4 if h_dir is None else 3) or (h_dir is None and f.shape[0] != 3):
        raise ValueError(f"displacement array must be {'(3, Z, Y, X) components' if h_dir is None else '(Z, Y, X) u_h'}"
                         f" in m, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError(f"displacement array has {int(np.count_nonzero(~np.isfinite(f)))} non-finite value(s)")
    comps = f if h_dir is None else f[None]
    x, y, z = grid_coordinates(shape, spacing_m)
    idx = source_indices(z, y, x, comps.shape[1:], field_spacing_m)
    if support is not None:
        outside = np.zeros(idx.shape[1:], bool)
        for axis, n in enumerate(comps.shape[1:]):
            outside |= (idx[axis] < -1e-9) | (idx[axis] > n - 1 + 1e-9)
        if np.any(outside & support):
            raise ValueError(f"the displacement array (shape {comps.shape[1:]}, spacing {tuple(field_spacing_m)} m) "
                             f"does not cover {int(np.count_nonzero(outside & support))} crystal voxel(s)")
    # The spline prefilter's boundary condition disturbs the interpolant over a few samples from
    # each edge (decaying ×0.27 per sample); an odd-reflected margin (a linear extrapolation,
    # exact for linear fields) moves that disturbance outside the sampled extent.
    pad = SPLINE_MARGIN
    flat = idx.reshape(3, -1) + pad
    out = np.stack([map_coordinates(np.pad(c, pad, mode="reflect", reflect_type="odd"), flat, order=3,
                                    mode="nearest").reshape(idx.shape[1:]) for c in comps])
    return out if h_dir is None else from_projection(out[0], h_dir)


def from_projection(u_h: np.ndarray, h_dir: Sequence[float]) -> np.ndarray:
    """Field (3, Z, Y, X) in m from its projection u_h (Z, Y, X, m) along the unit vector ĥ."""
    d = _unit(h_dir, "h_dir")
    uh = np.asarray(u_h, dtype=float)
    if uh.ndim != 3:
        raise ValueError(f"u_h must be (Z, Y, X), got shape {uh.shape}")
    return np.stack([d[i] * uh for i in range(3)])


def phase_from_displacement(u: np.ndarray, h_grid: Sequence[float]) -> np.ndarray:
    """φ = −h·u (rad), u : (3, Z, Y, X) in m, h : (3,) rad/m (x, y, z) grid frame. Returns (Z, Y, X)."""
    uu = np.asarray(u, dtype=float)
    h = np.asarray(h_grid, dtype=float)
    if uu.ndim != 4 or uu.shape[0] != 3 or h.shape != (3,):
        raise ValueError(f"need u (3, Z, Y, X) and h (3,), got {uu.shape} and {h.shape}")
    return -np.tensordot(h, uu, axes=(0, 0))


def crystal_function(
    s: np.ndarray, phase: np.ndarray | None = None, dtype: np.dtype | type = np.complex64
) -> np.ndarray:
    """S = s · exp(iφ) as a (Z, Y, X) complex array (φ = −h·u in rad, 0 if None)."""
    ss = np.asarray(s, dtype=float)
    if phase is None:
        return ss.astype(dtype)
    ph = np.asarray(phase, dtype=float)
    if ph.shape != ss.shape:
        raise ValueError(f"phase shape {ph.shape} differs from shape-function shape {ss.shape}")
    return (ss * np.exp(1j * ph)).astype(dtype)
