"""Displacement and strain from the phase of a reconstructed crystal function.

Paper Methods ("Lattice strain calculation"): φ(r) = −h·u(r), so the displacement projected on
ĥ is u_h = −φ/|h| and the strain along the scattering vector is ε_h = ∂u_h/∂x_h = ĥ·∇u_h.
The phase must first be unwrapped (scikit-image's reliability-guided unwrapper on a masked
array) and, for display, freed of the linear phase ramp left by an off-centre Bragg peak.

Conventions (docs/CONVENTIONS.md): arrays are indexed (z, y, x), ``spacing_m = (dz, dy, dx)``,
3-vectors are given as (x, y, z) components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.restoration import unwrap_phase as _sk_unwrap_phase

__all__ = [
    "PhaseRamp",
    "StrainResult",
    "displacement",
    "unwrap_phase",
    "remove_phase_ramp",
    "strain",
    "strain_analysis",
    "strain_tensor",
    "check_support",
    "check_spacing",
]


@dataclass(frozen=True)
class PhaseRamp:
    """Linear phase φ_ramp(r) = g·r + offset fitted inside a support.

    gradient : (3,) float, (x, y, z) components in rad per unit of ``spacing_m``
        (rad/m when the spacing is given in metres). r is measured from the array centre
        (index N//2 along each axis).
    offset_rad : phase of the plane at the array centre, rad.
    """

    gradient: np.ndarray
    offset_rad: float

    def evaluate(self, shape: tuple[int, int, int], spacing_m=(1.0, 1.0, 1.0)) -> np.ndarray:
        """The ramp on a (Z, Y, X) grid, rad."""
        z, y, x = _centred_coordinates(shape, spacing_m)
        gx, gy, gz = self.gradient
        return gx * x + gy * y + gz * z + self.offset_rad


@dataclass(frozen=True)
class StrainResult:
    """Phase, displacement and strain of one object, NaN outside the support.

    phase : (Z, Y, X) float, rad, unwrapped (and ramp-free if requested).
    displacement_m : (Z, Y, X) float, u_h = −φ/|h|, m.
    strain : (Z, Y, X) float, ε_h = ĥ·∇u_h (dimensionless); NaN where the stencil leaves the support.
    ramp : the removed phase ramp, or None.
    """

    phase: np.ndarray
    displacement_m: np.ndarray
    strain: np.ndarray
    ramp: PhaseRamp | None


def check_support(support: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``support`` as a bool array after checking its shape and that it is not empty."""
    support = np.asarray(support)
    if support.shape != tuple(shape):
        raise ValueError(f"support shape {support.shape} does not match array shape {tuple(shape)}")
    support = support.astype(bool)
    if not support.any():
        raise ValueError("support is empty (no True voxel)")
    return support


def check_spacing(spacing_m) -> tuple[float, float, float]:
    """Return ``spacing_m`` as three positive floats (dz, dy, dx)."""
    try:
        spacing = tuple(float(s) for s in spacing_m)
    except TypeError as err:
        raise ValueError(f"spacing_m must be (dz, dy, dx), got {spacing_m!r}") from err
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_m must be three positive voxel sizes (dz, dy, dx), got {spacing_m!r}")
    return spacing  # type: ignore[return-value]


def _unit_vector(h_dir_grid) -> np.ndarray:
    h = np.asarray(h_dir_grid, dtype=float)
    if h.shape != (3,) or not np.all(np.isfinite(h)) or np.linalg.norm(h) == 0:
        raise ValueError(f"h_dir_grid must be a non-zero (x, y, z) 3-vector, got {h_dir_grid!r}")
    return h / np.linalg.norm(h)


def _centred_coordinates(shape, spacing_m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dz, dy, dx = spacing_m
    axes = [(np.arange(n) - n // 2) * d for n, d in zip(shape, (dz, dy, dx))]
    return tuple(np.meshgrid(*axes, indexing="ij"))  # type: ignore[return-value]


def displacement(phase: np.ndarray, h_norm: float) -> np.ndarray:
    """Displacement along ĥ, u_h = −φ/|h| (m).

    phase : (Z, Y, X) float, rad (NaN allowed, propagated). h_norm : |h| = 2π/d in rad/m.
    """
    if not np.isfinite(h_norm) or h_norm <= 0:
        raise ValueError(f"h_norm must be a positive |h| in rad/m, got {h_norm!r}")
    return -np.asarray(phase, dtype=float) / float(h_norm)


def unwrap_phase(phase: np.ndarray, support: np.ndarray, seed: int | None = 0) -> np.ndarray:
    """Unwrap a 3-D phase inside ``support`` (scikit-image, reliability-guided, masked).

    phase : (Z, Y, X) float, rad, wrapped or not. support : (Z, Y, X) bool.
    Returns (Z, Y, X) float, rad, NaN outside the support. Each connected part of the support
    is unwrapped independently up to a multiple of 2π; the result is shifted by a multiple of 2π
    so that its mean inside the support lies in (−π, π].
    """
    phase = np.asarray(phase, dtype=float)
    if phase.ndim != 3:
        raise ValueError(f"phase must be a 3-D (Z, Y, X) array, got shape {phase.shape}")
    support = check_support(support, phase.shape)
    masked = np.ma.masked_array(np.where(support, phase, 0.0), mask=~support)
    unwrapped = _sk_unwrap_phase(masked, rng=seed)
    out = np.where(support, np.ma.getdata(unwrapped), np.nan)
    out -= 2 * np.pi * np.round(np.nanmean(out) / (2 * np.pi))
    return out


def _fit_plane(phase: np.ndarray, support: np.ndarray, spacing_m, weights=None) -> PhaseRamp:
    z, y, x = _centred_coordinates(phase.shape, spacing_m)
    design = np.stack([x[support], y[support], z[support], np.ones(int(support.sum()))], axis=1)
    rhs = phase[support]
    if weights is not None:
        w = np.sqrt(weights[support])
        design, rhs = design * w[:, None], rhs * w
    if np.linalg.matrix_rank(design) < 4:
        raise ValueError("support is too small or flat to fit a 3-D phase ramp (needs a 3-D extent)")
    coef, *_ = np.linalg.lstsq(design, rhs, rcond=None)
    return PhaseRamp(gradient=coef[:3].copy(), offset_rad=float(coef[3]))


def remove_phase_ramp(
    obj_or_phase: np.ndarray,
    support: np.ndarray,
    spacing_m=(1.0, 1.0, 1.0),
) -> tuple[np.ndarray, PhaseRamp]:
    """Remove the least-squares linear phase ramp inside ``support``.

    obj_or_phase : (Z, Y, X) complex crystal function, or (Z, Y, X) float *unwrapped* phase (rad).
    For a complex input the phase is unwrapped inside the support first, the plane is fitted
    with amplitude² weights (weak edge voxels have unreliable phase) and the returned object is
    ``obj · exp(−i ramp)`` on the whole grid. For a float input the plane is subtracted
    (unweighted fit; NaN outside the support is kept).
    spacing_m : (dz, dy, dx); the ramp gradient is returned in rad per unit of spacing (rad/m).
    Returns (corrected array of the input's kind, PhaseRamp).
    """
    arr = np.asarray(obj_or_phase)
    if arr.ndim != 3:
        raise ValueError(f"obj_or_phase must be a 3-D (Z, Y, X) array, got shape {arr.shape}")
    support = check_support(support, arr.shape)
    spacing = check_spacing(spacing_m)
    if np.iscomplexobj(arr):
        phase = unwrap_phase(np.angle(arr), support)
        ramp = _fit_plane(phase, support, spacing, weights=np.abs(arr) ** 2)
        return arr * np.exp(-1j * ramp.evaluate(arr.shape, spacing)).astype(arr.dtype), ramp
    phase = arr.astype(float)
    if not np.all(np.isfinite(phase[support])):
        raise ValueError("phase has non-finite values inside the support")
    ramp = _fit_plane(phase, support, spacing)
    return phase - ramp.evaluate(arr.shape, spacing), ramp


def strain(u_h: np.ndarray, spacing_m, h_dir_grid, support: np.ndarray) -> np.ndarray:
    """Strain along the scattering vector, ε_h = ĥ·∇u_h (dimensionless).

    u_h : (Z, Y, X) float displacement along ĥ, m (values outside the support are ignored).
    spacing_m : (dz, dy, dx) m. h_dir_grid : ĥ as (x, y, z) components in the grid frame
    (normalised here). support : (Z, Y, X) bool.
    Central differences (numpy.gradient) are used only where the voxel and its six face
    neighbours are all inside the support, so no derivative straddles the crystal surface;
    every other voxel is NaN. Second-order accurate in the voxel size.
    """
    u = np.asarray(u_h, dtype=float)
    if u.ndim != 3:
        raise ValueError(f"u_h must be a 3-D (Z, Y, X) array, got shape {u.shape}")
    support = check_support(support, u.shape)
    spacing = check_spacing(spacing_m)
    hx, hy, hz = _unit_vector(h_dir_grid)
    if not np.all(np.isfinite(u[support])):
        raise ValueError("u_h has non-finite values inside the support")
    u = np.where(support, u, 0.0)
    du_dz, du_dy, du_dx = np.gradient(u, *spacing)
    eps = hx * du_dx + hy * du_dy + hz * du_dz
    interior = ndimage.binary_erosion(support, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return np.where(interior, eps, np.nan)


def strain_tensor(u: np.ndarray, spacing_m, support: np.ndarray) -> np.ndarray:
    """Full (small) strain tensor ε_ij = ½(∂_i u_j + ∂_j u_i) of a displacement vector field.

    u : (3, Z, Y, X) m, components (x, y, z) in the grid frame of the array. spacing_m : (dz, dy, dx) m.
    support : (Z, Y, X) bool. Returns (3, 3, Z, Y, X), indices i, j = x, y, z (symmetric), with the
    derivatives of :func:`strain` (central differences, NaN where a face neighbour is outside the
    support). ε_ii is the strain along axis i; for any unit n̂, n̂ᵀεn̂ is the strain along n̂ (equal
    to :func:`strain` of u·n̂ along n̂).
    """
    uu = np.asarray(u, dtype=float)
    if uu.ndim != 4 or uu.shape[0] != 3:
        raise ValueError(f"u must be (3, Z, Y, X), got shape {uu.shape}")
    support = check_support(support, uu.shape[1:])
    spacing = check_spacing(spacing_m)
    if not np.all(np.isfinite(uu[:, support])):
        raise ValueError("u has non-finite values inside the support")
    uu = np.where(support, uu, 0.0)
    grad = np.empty((3, 3, *uu.shape[1:]))  # grad[i, j] = ∂_i u_j, i over (x, y, z)
    for j in range(3):
        d_dz, d_dy, d_dx = np.gradient(uu[j], *spacing)
        grad[0, j], grad[1, j], grad[2, j] = d_dx, d_dy, d_dz
    eps = 0.5 * (grad + grad.transpose(1, 0, 2, 3, 4))
    interior = ndimage.binary_erosion(support, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return np.where(interior, eps, np.nan)


def strain_analysis(
    obj: np.ndarray,
    support: np.ndarray,
    h_norm: float,
    spacing_m,
    h_dir_grid,
    remove_ramp: bool = True,
) -> StrainResult:
    """Phase → unwrap → (ramp removal) → displacement → strain for a complex object.

    obj : (Z, Y, X) complex crystal function S. support : (Z, Y, X) bool.
    h_norm : |h| rad/m; spacing_m : (dz, dy, dx) m; h_dir_grid : ĥ (x, y, z) grid frame.
    """
    obj = np.asarray(obj)
    if not np.iscomplexobj(obj):
        raise ValueError("obj must be the complex crystal function S, got a real array")
    support = check_support(support, obj.shape)
    ramp = None
    if remove_ramp:
        obj, ramp = remove_phase_ramp(obj, support, spacing_m)
    phase = unwrap_phase(np.angle(obj), support)
    u = displacement(phase, h_norm)
    return StrainResult(phase=phase, displacement_m=u, strain=strain(u, spacing_m, h_dir_grid, support), ramp=ramp)
