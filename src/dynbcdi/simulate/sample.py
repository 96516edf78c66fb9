"""Build the ground-truth crystal function S = s·exp(−i h·u) of a :class:`SimulationConfig`.

Crystal orientation: crystal directions are taken in the xrayutilities Cartesian frame of the
material (``Crystal.Q(hkl)`` for plane normals, ``lattice.GetPoint(uvw)`` for lattice directions).
The crystal→grid rotation maps ĥ_crystal onto the grid-frame ĥ of the geometry (the reflection is
in Bragg condition at θ = 0) and, at azimuth 0, the part ⟂ h of the edge least parallel to h onto
grid ŷ (⟂ the default scattering plane); ``azimuth_deg`` turns the crystal about h (right-handed).
For Au (200) this gives the paper's cube: one edge along h, one along ŷ, one in the scattering plane.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dynbcdi.simulate import displacement as disp
from dynbcdi.simulate import shapes
from dynbcdi.simulate.config import CrystalConfig, DeformationConfig


@dataclass(frozen=True)
class Sample:
    """A simulated crystal on the grid.

    s : (Z, Y, X) float64 shape in [0, 1]; u : (3, Z, Y, X) float64 displacement (m, components x, y, z);
    phase : (Z, Y, X) φ = −h·u (rad); rotation : (3, 3) crystal-Cartesian → grid;
    facet_normals : (F, 3) unit outward normals (grid frame) and facet_distances_m : (F,) for convex
    polyhedral shapes (None otherwise), used for the refraction-shift prediction.
    """

    s: np.ndarray
    u: np.ndarray
    phase: np.ndarray
    rotation: np.ndarray
    facet_normals: np.ndarray | None
    facet_distances_m: np.ndarray | None

    def crystal_function(self, dtype: np.dtype | type = np.complex64) -> np.ndarray:
        """S = s·exp(iφ), (Z, Y, X) complex."""
        return disp.crystal_function(self.s, self.phase, dtype)


def crystal_rotation(crystal, hkl: Sequence[int], h_grid: np.ndarray, edges_uvw: Sequence[Sequence[int]],
                     azimuth_deg: float = 0.0) -> np.ndarray:
    """(3, 3) rotation crystal-Cartesian → grid frame (module docstring); ``crystal`` an xrayutilities Crystal."""
    h_c = np.asarray(crystal.Q(*hkl), dtype=float)
    edges_c = np.array([crystal.lattice.GetPoint(*uvw) for uvw in edges_uvw], dtype=float)
    h_hat = h_c / np.linalg.norm(h_c)
    cosines = np.abs(edges_c @ h_hat) / np.linalg.norm(edges_c, axis=1)
    basis_c = shapes.rotation_with_axis(h_hat, edges_c[int(np.argmin(cosines))])
    hg = np.asarray(h_grid, dtype=float) / np.linalg.norm(h_grid)
    y_hint = np.array([0.0, 1.0, 0.0]) if abs(hg[1]) < 0.99 else np.array([1.0, 0.0, 0.0])
    basis_g = shapes.rotation_with_axis(hg, y_hint)
    a = np.radians(azimuth_deg)
    spin = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return basis_g @ spin @ basis_c.T


def _facets(cfg: CrystalConfig, crystal, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Outward unit normals (F, 3) in the grid frame and distances (F,) of a polyhedral crystal."""
    if cfg.shape in ("cube", "parallelepiped"):
        lengths = cfg.size_m * 3 if cfg.shape == "cube" else cfg.size_m
        dirs = np.array([crystal.lattice.GetPoint(*uvw) for uvw in cfg.edges_uvw], dtype=float)
        edges = (dirs / np.linalg.norm(dirs, axis=1)[:, None]) * np.asarray(lengths)[:, None]
        return shapes.parallelepiped_facets(edges @ rotation.T)
    if cfg.shape == "polyhedron":
        n = np.array([crystal.Q(*hkl) for hkl in cfg.facets_hkl], dtype=float) @ rotation.T
        return n / np.linalg.norm(n, axis=1)[:, None], np.asarray(cfg.size_m, dtype=float)
    return None


def build_shape(cfg: CrystalConfig, crystal, rotation: np.ndarray, grid_shape: Sequence[int],
                spacing_m: Sequence[float]) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Shape s (Z, Y, X) and, for polyhedral shapes, (outward normals (F, 3), distances (F,)) in the grid frame."""
    facets = _facets(cfg, crystal, rotation)
    if facets is not None:
        return shapes.polyhedron(grid_shape, spacing_m, facets[0], facets[1], smooth_m=cfg.smooth_m), facets
    if cfg.shape == "sphere":
        return shapes.sphere(grid_shape, spacing_m, cfg.size_m[0], smooth_m=cfg.smooth_m), None
    mask = load_array(cfg.mask_file, "crystal.mask_file")
    if cfg.mask_spacing_m is not None:
        try:
            mask = shapes.resample_mask(mask, cfg.mask_spacing_m, grid_shape, spacing_m)
        except ValueError as err:
            raise ValueError(f"crystal.mask_file {cfg.mask_file}: {err}") from None
    elif tuple(mask.shape) != tuple(grid_shape):
        raise ValueError(f"crystal.mask_file {cfg.mask_file!r} has shape {mask.shape}, the grid is "
                         f"{tuple(grid_shape)}; give crystal.mask_spacing_m to resample it")
    try:
        s = shapes.from_mask(mask, cfg.smooth_m and cfg.smooth_m / min(spacing_m))
    except ValueError as err:
        raise ValueError(f"crystal.mask_file {cfg.mask_file}: {err}") from None
    if not s.any():
        raise ValueError(f"crystal.mask_file {cfg.mask_file}: the mask is empty on the simulation grid")
    return s, None


def load_array(path: str, what: str) -> np.ndarray:
    """A finite numeric array from a .npy file (no pickles); one-line errors naming ``what`` and the file."""
    from dynbcdi.io.filecheck import check_input_file, load_npy

    p = check_input_file(path, f"{what} (.npy array)")
    a = load_npy(p, f".npy array ({what})")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{what} {p}: expected a numeric .npy array, got dtype {a.dtype}")
    bad = int((~np.isfinite(a)).sum()) if np.issubdtype(a.dtype, np.inexact) else 0
    if bad:
        raise ValueError(f"{what} {p} has {bad} NaN/Inf values (non-finite)")
    return a


def _direction(value, h_hat: np.ndarray) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, str):
        return h_hat if value == "h" else -h_hat
    return np.asarray(value, dtype=float)


def _farthest_point(s: np.ndarray, spacing_m: Sequence[float], toward: np.ndarray) -> np.ndarray:
    """Position (x, y, z) m of the crystal voxel (s > 0.5) furthest along ``toward``: a corner of a polyhedron."""
    x, y, z = np.broadcast_arrays(*shapes.grid_coordinates(s.shape, spacing_m))
    inside = s > 0.5
    if not inside.any():
        raise ValueError("the crystal shape is empty: no corner to strain")
    t = toward / np.linalg.norm(toward)
    proj = np.where(inside, t[0] * x + t[1] * y + t[2] * z, -np.inf)
    idx = np.unravel_index(int(np.argmax(proj)), s.shape)
    return np.array([x[idx], y[idx], z[idx]])


def build_displacement(deformations: Sequence[DeformationConfig], s: np.ndarray, spacing_m: Sequence[float],
                       h_grid: np.ndarray) -> np.ndarray:
    """Sum of the configured displacement fields, (3, Z, Y, X) m (grid frame)."""
    h_hat = np.asarray(h_grid, dtype=float) / np.linalg.norm(h_grid)
    u = np.zeros((3, *s.shape))
    shape = s.shape
    for d in deformations:
        center = d.center_m or (0.0, 0.0, 0.0)
        if d.kind == "uniform_strain":
            u += disp.uniform_strain(shape, spacing_m, np.asarray(d.strain, dtype=float), center)
        elif d.kind == "gaussian_bulge":
            direction = _direction(d.direction, h_hat)
            u += disp.gaussian_bulge(shape, spacing_m, d.amplitude_m, d.sigma_m,
                                     h_hat if direction is None else direction, center)
        elif d.kind == "point_inclusion":
            u += disp.point_inclusion(shape, spacing_m, d.radius_m, d.misfit, center, d.poisson_ratio or 1 / 3)
        elif d.kind == "corner_contact":
            corner = _farthest_point(s, spacing_m, _direction(d.corner_toward, h_hat))
            u += disp.corner_contact(shape, spacing_m, corner, d.amplitude_m, d.decay_m,
                                     _direction(d.direction, h_hat))
        else:
            u += _user_field(d, s, spacing_m, h_hat)
    crystal = s > CRYSTAL_LEVEL
    if not np.isfinite(u[:, crystal]).all():
        raise ValueError("the displacement field has non-finite values inside the crystal")
    return u


# Voxels with more than this shape value need the displacement (tanh shapes are never exactly 0).
CRYSTAL_LEVEL = 1e-3


def _user_field(d: DeformationConfig, s: np.ndarray, spacing_m: Sequence[float], h_hat: np.ndarray) -> np.ndarray:
    """(3, Z, Y, X) m of a user deformation: an array file ("array") or a function ("function")."""
    h_dir = h_hat if d.component == "h" else None
    if d.kind == "array":
        field = load_array(d.file, "deformation.file")
        try:
            return disp.from_array(field, d.spacing_m or spacing_m, s.shape, spacing_m, h_dir, s > CRYSTAL_LEVEL)
        except ValueError as err:
            raise ValueError(f"deformation.file {d.file}: {err}") from None
    func = _import_function(d.function) if isinstance(d.function, str) else d.function
    try:
        return disp.from_callable(s.shape, spacing_m, func, h_dir)
    except (ValueError, TypeError) as err:
        raise ValueError(f"deformation.function {d.function!r}: {err}") from None


def _import_function(path: str):
    """The callable named by 'package.module:name'."""
    import importlib

    module, _, name = path.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"deformation.function {path!r} cannot be imported: {err}") from None
    if not callable(obj):
        raise ValueError(f"deformation.function {path!r} is not callable")
    return obj


def build_sample(cfg: CrystalConfig, deformations: Sequence[DeformationConfig], crystal, hkl: Sequence[int],
                 h_grid: np.ndarray, grid_shape: Sequence[int], spacing_m: Sequence[float]) -> Sample:
    """Shape, displacement and phase φ = −h·u of the configured crystal. h_grid (3,) rad/m, grid frame."""
    rot = crystal_rotation(crystal, hkl, h_grid, cfg.edges_uvw, cfg.azimuth_deg)
    s, facets = build_shape(cfg, crystal, rot, grid_shape, spacing_m)
    u = build_displacement(deformations, s, spacing_m, h_grid)
    phase = disp.phase_from_displacement(u, h_grid)
    return Sample(s=s, u=u, phase=phase, rotation=rot,
                  facet_normals=None if facets is None else facets[0],
                  facet_distances_m=None if facets is None else facets[1])
