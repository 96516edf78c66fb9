"""Common interface of the forward models and the far-field helper.

Every forward model maps a complex crystal function ``S = s·e^{iφ}`` on the grid frame
(indexed ``(z, y, x)``) and a batch of rocking offsets ``dq`` (``(B, 3)``, rad/m, grid-frame
components ``(x, y, z)``) to exit waves ``Eh`` on the last z-plane and to far-field patterns
``|F⊥ Eh|²`` (docs/CONVENTIONS.md, "dynbcdi.forward").
"""

from __future__ import annotations

import abc
from typing import Any

import torch

__all__ = ["ForwardModel", "far_field", "far_field_intensity"]


def far_field(exit_wave: torch.Tensor) -> torch.Tensor:
    """Transverse Fourier transform of exit waves in the detector convention.

    ``exit_wave``: ``(..., Y, X)`` complex. Returns ``fftshift(fft2(exit_wave))`` over the last
    two axes (kernel e^{-i q·r}, no normalisation, zero frequency at index ``N//2``), same shape
    and dtype. Pixel index increasing ↔ q increasing along +x̂ (columns) / +ŷ (rows).
    """
    return torch.fft.fftshift(torch.fft.fft2(exit_wave), dim=(-2, -1))


def far_field_intensity(exit_wave: torch.Tensor) -> torch.Tensor:
    """``|far_field(exit_wave)|²``: ``(..., Y, X)`` real, same precision as the input."""
    # |fftshift(F)|² = fftshift(|F|²): shift the real intensity (half the bytes)
    return torch.fft.fftshift(_SquaredModulus.apply(torch.fft.fft2(exit_wave)), dim=(-2, -1))


class _SquaredModulus(torch.autograd.Function):
    """``|z|²`` of a complex tensor (real result). re² + im² by addcmul is ~4× faster on CPU than a
    sum over ``view_as_real``'s last axis, and the hand-written gradient ``2 g z`` (torch's
    convention for complex inputs) is one product instead of autograd's select/square graph."""

    @staticmethod
    def forward(ctx, z):  # noqa: D102
        ctx.save_for_backward(z)
        return torch.addcmul(z.real.square(), z.imag, z.imag)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        (z,) = ctx.saved_tensors
        return z * (2 * g)


class ForwardModel(torch.nn.Module, abc.ABC):
    """A forward model of a Bragg rocking scan (``torch.nn.Module``).

    Subclasses implement :meth:`exit_waves`; :meth:`forward` returns the patterns. Both are
    differentiable with respect to ``S`` and run on the device and precision of ``S``.
    """

    @abc.abstractmethod
    def exit_waves(self, S: torch.Tensor, dq: torch.Tensor) -> torch.Tensor:
        """Diffracted exit waves.

        ``S``: ``(Z, Y, X)`` complex crystal function; ``dq``: ``(B, 3)`` rocking offsets
        Δq_j (rad/m, grid frame, components ``(x, y, z)``). Returns ``Eh`` on the exit plane,
        ``(B, Y, X)`` complex, in units of the incident amplitude.
        """

    def forward(self, S: torch.Tensor, dq: torch.Tensor) -> torch.Tensor:
        """Far-field patterns ``|F⊥ Eh|²``: ``(B, Y, X)`` real, fftshifted, no intensity scale."""
        return far_field_intensity(self.exit_waves(S, dq))


class TwoBeamModel(ForwardModel):
    """A forward model built from the two-beam constants; the constructor of every subclass takes
    ``(spacing_m, wavelength_m, k0_dir, kh_dir, chi0, chih, chihbar, polarization, **options)``."""

    @classmethod
    def from_geometry(cls, geometry: Any, reflection: Any, spacing_m: Any, polarization: str | float = "sigma",
                      frame: Any = None, **kw: Any) -> "TwoBeamModel":
        """Build from a ``BraggGeometry`` and ``ReflectionConstants`` (docs/CONVENTIONS.md): beam
        directions in ``frame`` (default the geometry's grid frame), λ, χ0, χh, χh̄ and the polarization
        factor of ``polarization`` ("sigma", "pi" or C); ``kw`` are the model's options."""
        k0, kh = geometry.beam_directions_grid(frame)
        return cls(spacing_m, reflection.wavelength_m, k0, kh, reflection.chi0, reflection.chih,
                   reflection.chihbar, reflection.polarization(polarization), **kw)
