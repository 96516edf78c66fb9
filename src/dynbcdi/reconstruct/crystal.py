"""One crystal seen by several reflections: :class:`CrystalField` (shape s and displacement vector u).

The unknowns of a multi-reflection reconstruction live on one orthogonal *sample-frame* grid
(:class:`dynbcdi.geometry.resample.GridSpec`): the shape s(r) ≥ 0 and the displacement
u(r) = (u_x, u_y, u_z) in metres, components in the sample frame. Each reflection i sees

    S_i = s'·exp(−i h_i·u')      (docs/CONVENTIONS.md: φ = −h·u, S = s·e^{iφ})

on its own TTE grid, where s' and u' are s and the three components of u resampled onto that grid
(:class:`~dynbcdi.geometry.resample.Resample`) and h_i is the reflection's reciprocal-lattice
vector in sample-frame components (rad/m). s and u are resampled, not S: S winds its phase by
h·u, which is smooth, whereas the wrapped S_i would alias.

Parametrisation (why): u is stored as u / :data:`U_UNIT_M` so that the Adam parameter is O(1)
(displacements are 1e-12…1e-10 m); s is a plain tensor kept ≥ 0 and zero outside the support by
:meth:`CrystalField.project`, as in the one-reflection :class:`~dynbcdi.reconstruct.parameters.CrystalParameters`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from dynbcdi.geometry.resample import GridSpec, Resample

__all__ = ["U_UNIT_M", "CrystalField", "ReflectionTarget"]

# Unit of the stored displacement parameter: 1 Å, so that |u| / unit is O(0.01…1).
U_UNIT_M = 1e-10


class ReflectionTarget(Protocol):
    """What :meth:`CrystalField.on` needs of a reflection: its TTE grid and h in the sample frame."""

    grid: GridSpec
    h_sample: np.ndarray  # (3,) rad/m, sample-frame components (x, y, z)


class CrystalField(torch.nn.Module):
    """Shape s (Z, Y, X) and displacement u (3, Z, Y, X) in m on a sample-frame ``grid``.

    s : ≥ 0 (dimensionless); u_xyz : components (x, y, z) of the sample frame, metres.
    support : (Z, Y, X) bool, where s may be non-zero (default s > 0). ``order`` : resampling
    order (3 cubic B-spline, 1 trilinear). ``dtype``: real dtype of the parameters.
    """

    def __init__(self, grid: GridSpec, s: np.ndarray, u_xyz: np.ndarray, support: np.ndarray | None = None,
                 order: int = 3, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        s = np.asarray(s, dtype=float)
        u = np.asarray(u_xyz, dtype=float)
        if s.shape != grid.shape or u.shape != (3, *grid.shape):
            raise ValueError(f"need s {grid.shape} and u_xyz {(3, *grid.shape)} on the grid, "
                             f"got {s.shape} and {u.shape}")
        if not (np.isfinite(s).all() and np.isfinite(u).all()) or (s < 0).any():
            raise ValueError("s must be finite and >= 0 and u_xyz finite")
        sup = s > 0 if support is None else np.asarray(support, dtype=bool)
        if sup.shape != grid.shape:
            raise ValueError(f"support shape {sup.shape} differs from the grid {grid.shape}")
        self.grid, self.order = grid, order
        self.s = torch.nn.Parameter(torch.tensor(np.where(sup, s, 0.0), dtype=dtype))
        self.u_scaled = torch.nn.Parameter(torch.tensor(u / U_UNIT_M, dtype=dtype))
        self.register_buffer("support", torch.tensor(sup))
        self._resamplers: dict[tuple, tuple[Resample, Resample]] = {}  # (cubic, trilinear) per grid
        self._images: dict[tuple, torch.Tensor] = {}  # the support's image per grid

    @property
    def u(self) -> torch.Tensor:
        """Displacement (3, Z, Y, X) in metres (differentiable)."""
        return self.u_scaled * U_UNIT_M

    def resampler(self, grid: GridSpec) -> tuple[Resample, torch.Tensor]:
        """The (cached) :class:`Resample` from the sample grid to ``grid`` and the support's image there.

        The image (bool, ``grid.shape``) is every voxel that a trilinear resampling of the support
        touches: s' is zero outside it, which removes the cubic spline's ringing (~1 % of max s) far
        from the crystal, where the TTE model would take it for crystal (and its wrap check fail).
        """
        key = (grid.shape, grid.spacing_m, grid.frame.tobytes())  # by value: ids of dead grids are reused
        if key not in self._resamplers:
            resample = Resample(self.grid, grid, self.order).to(self.s.device)
            self._resamplers[key] = (resample, Resample(self.grid, grid, 1).to(self.s.device))
        if key not in self._images:  # dropped when the support changes (shrink-wrap)
            self._images[key] = self._resamplers[key][1](self.support.to(self.s.dtype)) > 1e-9
        return self._resamplers[key][0], self._images[key]

    def on(self, target: ReflectionTarget) -> torch.Tensor:
        """S = s'·exp(−i h·u') on ``target.grid``: (Z', Y', X') complex (module docstring)."""
        h = torch.as_tensor(np.asarray(target.h_sample, dtype=float), dtype=self.s.dtype, device=self.s.device)
        if h.shape != (3,):
            raise ValueError(f"h_sample must be a (3,) vector in rad/m, got shape {tuple(h.shape)}")
        s = torch.where(self.support, self.s, torch.zeros_like(self.s))
        resample, image = self.resampler(target.grid)
        fields = resample(torch.cat([s[None], self.u_scaled]))
        phase = -torch.tensordot(h * U_UNIT_M, fields[1:], dims=1)
        amplitude = torch.where(image, fields[0].clamp(min=0), torch.zeros_like(fields[0]))
        return torch.polar(amplitude, phase)

    def phase(self, h_sample: np.ndarray) -> torch.Tensor:
        """φ = −h·u (rad) on the sample grid for ``h_sample`` (3,) rad/m: (Z, Y, X)."""
        h = torch.as_tensor(np.asarray(h_sample, dtype=float), dtype=self.s.dtype, device=self.s.device)
        return -torch.tensordot(h * U_UNIT_M, self.u_scaled, dims=1)

    @torch.no_grad()
    def restrict_support(self, keep: np.ndarray | torch.Tensor) -> int:
        """Shrink the support to support ∧ ``keep`` ((Z, Y, X) bool), set s = 0 outside it and drop
        the cached images of the old support; returns the new number of support voxels. The
        support only shrinks, as in the one-reflection shrink-wrap. An empty result is refused
        (ValueError): it would leave no crystal for any reflection to see."""
        keep = torch.as_tensor(keep, device=self.support.device).bool()  # numpy or a tensor on any device
        if keep.shape != self.support.shape:
            raise ValueError(f"support mask shape {tuple(keep.shape)} differs from the grid {self.grid.shape}")
        new = self.support & keep
        if not bool(new.any()):
            raise ValueError("the new support would be empty")
        self.support.copy_(new)
        self._images.clear()
        self.project()
        return int(new.sum())

    @torch.no_grad()
    def project(self) -> None:
        """Enforce s ≥ 0 and s = 0 outside the support (in place, after an optimiser step)."""
        self.s.clamp_(min=0.0)
        self.s.masked_fill_(~self.support, 0.0)
