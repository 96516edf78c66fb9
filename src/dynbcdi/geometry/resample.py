"""Differentiable resampling between rotated orthogonal grids: :class:`GridSpec`, :class:`Resample`.

Several reflections of one crystal see it on different grids: the unknowns live on one
*sample-frame* grid, and each reflection's dynamical model wants them on its own TTE grid (ẑ ∥ kh,
detector-matched transverse voxels). :class:`Resample` maps a field from one grid to another as a
linear ``torch.nn.Module``, so gradients flow back to the sample grid (its adjoint is autograd's
vector-Jacobian product).

Frames
------
A :class:`GridSpec` has ``shape`` (Z, Y, X), ``spacing_m`` (dz, dy, dx) and ``frame``: a (3, 3)
rotation whose **rows are the grid axes x̂, ŷ, ẑ expressed in a common reference frame** (the
sample frame of the crystal), exactly as :attr:`dynbcdi.geometry.GridFrame.matrix` holds them in
the lab frame. A grid point with grid components p = (x, y, z) sits at r = frameᵀ p in the
reference frame, and p = frame r. Voxel centres are at ((i − n//2)·d) along each axis, the
convention of :func:`dynbcdi.simulate.shapes.grid_coordinates`: all grids share the reference
origin at their index n//2.

Interpolation
-------------
``order=3`` (default): cubic B-spline. The field, taken as zero outside its box, is padded with
:data:`PAD` zero voxels per side and prefiltered to B-spline coefficients along each axis (division
by the cubic B-spline's spectrum (4 + 2 cos ω)/6 with an FFT; the padding keeps the FFT's periodic
images away from the box, so the spline interpolates every voxel of the box exactly), then
evaluated with eight trilinear ``grid_sample`` fetches (Sigg & Hadwiger, GPU Gems 2, ch. 20).
``order=1``: trilinear ``grid_sample`` directly. Points outside the (padded) source box read 0.

Accuracy (tests/geometry/test_resample.py, float64, rotation by Euler ZYX (25°, 40°, −15°), max
error relative to the field's maximum): a Gaussian with σ = 2 voxels at 32³ 1.5e-3 (trilinear
7.7e-2), σ = 3 voxels at 64³ 2.7e-4 (trilinear 3.7e-2); a cube with tanh edges 1 voxel wide at
32³ 0.10 (trilinear 0.16), RMS 2.0 % (3.6 %). Cubic is the default for its 25–140× smaller error on
smooth fields. It costs ~16× trilinear: four float64 channels 64³ → 64³ in 0.54 s against 0.034 s
(one core of a loaded 2-core AMD EPYC), the prefilter FFTs and eight fetches instead of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike

from dynbcdi.geometry.frames import UNIT_TOL, GridFrame

__all__ = ["GridSpec", "Resample", "bspline_prefilter"]

# Zero voxels added on each side before the cubic prefilter: the spline's taps reach 2 voxels
# beyond the sample point, so every point inside the box reads padded coefficients, never the
# FFT's periodic image of the opposite face.
PAD = 2


@dataclass(frozen=True, eq=False)
class GridSpec:
    """An orthogonal grid in a reference frame (module docstring).

    shape : (Z, Y, X) voxels; spacing_m : (dz, dy, dx) m; frame : (3, 3) proper rotation, rows =
    grid axes x̂, ŷ, ẑ in reference-frame components (default identity).
    """

    shape: tuple[int, int, int]
    spacing_m: tuple[float, float, float]
    frame: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or any(n < 2 for n in shape):
            raise ValueError(f"GridSpec.shape must be three integers >= 2 (Z, Y, X), got {self.shape!r}")
        spacing = tuple(float(d) for d in self.spacing_m)
        if len(spacing) != 3 or not all(np.isfinite(d) and d > 0 for d in spacing):
            raise ValueError(f"GridSpec.spacing_m must be three positive lengths (dz, dy, dx) m, "
                             f"got {self.spacing_m!r}")
        m = np.eye(3) if self.frame is None else np.array(self.frame, dtype=float)
        if m.shape != (3, 3) or not np.all(np.isfinite(m)):
            raise ValueError(f"GridSpec.frame must be a finite (3, 3) matrix, got shape {m.shape}")
        err = np.abs(m @ m.T - np.eye(3)).max()
        if err > UNIT_TOL or np.linalg.det(m) < 0:
            raise ValueError(f"GridSpec.frame must be a proper rotation (max |MMᵀ − I| = {err:.3g}, "
                             f"det = {np.linalg.det(m):.6f})")
        m.setflags(write=False)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing_m", spacing)
        object.__setattr__(self, "frame", m)

    @classmethod
    def from_grid_frame(cls, shape: Sequence[int], spacing_m: Sequence[float], grid_frame: GridFrame,
                        sample_to_lab: ArrayLike | None = None) -> GridSpec:
        """Grid whose axes are ``grid_frame`` (lab components), expressed in the sample frame.

        ``sample_to_lab`` (3, 3): R with v_lab = R v_sample (the goniometer rotation at the scan
        centre); identity if None. A lab axis a has sample components Rᵀ a, so frame = M_grid R.
        """
        r = np.eye(3) if sample_to_lab is None else np.asarray(sample_to_lab, dtype=float)
        return cls(tuple(shape), tuple(spacing_m), grid_frame.matrix @ r)

    def positions(self) -> np.ndarray:
        """Voxel-centre positions in the reference frame, (Z, Y, X, 3) m, components (x, y, z)."""
        axes = [(np.arange(n) - n // 2) * d for n, d in zip(self.shape, self.spacing_m)]
        z, y, x = np.meshgrid(*axes, indexing="ij")
        return np.stack([x, y, z], axis=-1) @ self.frame

    def fractional_index(self, r: np.ndarray) -> np.ndarray:
        """Fractional (z, y, x) indices of reference-frame points r (..., 3) m: (..., 3)."""
        p = np.asarray(r, dtype=float) @ self.frame.T  # grid components (x, y, z)
        centre = np.array([n // 2 for n in self.shape], dtype=float)
        return p[..., ::-1] / np.array(self.spacing_m) + centre


def bspline_prefilter(field: torch.Tensor, dims: Sequence[int] = (-3, -2, -1)) -> torch.Tensor:
    """Cubic B-spline coefficients c of samples f (periodic): Σ_k c_k β3(i − k) = f_i along ``dims``.

    Division of the DFT by the spectrum of the sampled cubic B-spline, (4 + 2 cos ω)/6 ∈ [1/3, 1]
    (never zero). Real or complex ``field`` of any shape; returns the same shape and dtype.
    """
    out = field
    for dim in dims:
        n = field.shape[dim]
        omega = 2 * np.pi * torch.fft.fftfreq(n, dtype=field.real.dtype, device=field.device)
        kernel = (4 + 2 * torch.cos(omega)) / 6
        shape = [1] * field.ndim
        shape[dim] = n
        spec = torch.fft.fft(out, dim=dim) / kernel.reshape(shape)
        out = torch.fft.ifft(spec, dim=dim)
        if not field.is_complex():
            out = out.real
    return out


def _linear_points(idx: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """grid_sample coordinates (align_corners=True) of fractional (z, y, x) indices: (..., 3) (x, y, z)."""
    scale = np.array([max(n - 1, 1) for n in shape], dtype=float)
    return (2 * idx / scale - 1)[..., ::-1]


def _cubic_taps(idx: np.ndarray, shape: tuple[int, int, int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Eight (point grid, weight) pairs evaluating a cubic B-spline with trilinear fetches.

    Per axis the four B-spline weights at i−1…i+2 collapse into two linear fetches at
    h0 = i − 1 + w1/(w0 + w1) and h1 = i + 1 + w3/(w2 + w3) with weights g0 = w0 + w1, g1 = w2 + w3.
    """
    i = np.floor(idx)
    t = idx - i
    w0 = (1 - t) ** 3 / 6
    w1 = (3 * t**3 - 6 * t**2 + 4) / 6
    w2 = (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6
    w3 = t**3 / 6
    g = (w0 + w1, w2 + w3)
    h = (i - 1 + w1 / g[0], i + 1 + w3 / g[1])
    points, weights = [], []
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                hi = np.stack([h[a][..., 0], h[b][..., 1], h[c][..., 2]], axis=-1)
                points.append(_linear_points(hi, shape))
                weights.append(g[a][..., 0] * g[b][..., 1] * g[c][..., 2])
    return points, weights


class Resample(torch.nn.Module):
    """Linear map of a field from grid ``src`` to grid ``dst`` (both :class:`GridSpec`, same reference).

    ``forward(field)``: ``field`` (Z, Y, X) or (C, Z, Y, X) on ``src``, real or complex, float32/64;
    returns the field at the voxel centres of ``dst``, (Z', Y', X') or (C, Z', Y', X'), same dtype.
    Vector components are *not* rotated (a channel is a scalar field): keep vectors in
    reference-frame components. ``order`` 3 (cubic B-spline, default) or 1 (trilinear).
    ``adjoint(y)`` applies the transpose (autograd's vector-Jacobian product).
    """

    def __init__(self, src: GridSpec, dst: GridSpec, order: int = 3) -> None:
        super().__init__()
        if order not in (1, 3):
            raise ValueError(f"order must be 1 (trilinear) or 3 (cubic B-spline), got {order!r}")
        self.src, self.dst, self.order = src, dst, order
        idx = src.fractional_index(dst.positions())
        if order == 1:
            points, weights = [_linear_points(idx, src.shape)], [np.ones(dst.shape)]
        else:
            padded = tuple(n + 2 * PAD for n in src.shape)
            points, weights = _cubic_taps(idx + PAD, padded)
        self.register_buffer("points", torch.as_tensor(np.stack(points))[:, None])  # (T, 1, Z', Y', X', 3)
        self.register_buffer("weights", torch.as_tensor(np.stack(weights)))       # (T, Z', Y', X')

    def forward(self, field: torch.Tensor) -> torch.Tensor:
        """Resampled field (module docstring)."""
        squeeze = field.ndim == 3
        x = field[None] if squeeze else field
        if x.ndim != 4 or tuple(x.shape[1:]) != self.src.shape:
            raise ValueError(f"field must be (Z, Y, X) or (C, Z, Y, X) with (Z, Y, X) = {self.src.shape}, "
                             f"got {tuple(field.shape)}")
        if self.order == 3:
            x = bspline_prefilter(F.pad(x, (PAD,) * 6))
        channels = torch.view_as_real(x).movedim(-1, 1).flatten(0, 1) if x.is_complex() else x
        real = channels.dtype
        inp = channels[None]  # (1, C', Z, Y, X)
        out = None
        for grid, weight in zip(self.points, self.weights):
            fetched = F.grid_sample(inp, grid.to(real), mode="bilinear", padding_mode="zeros",
                                    align_corners=True)[0]
            term = fetched * weight.to(real)
            out = term if out is None else out + term
        if x.is_complex():
            out = torch.view_as_complex(out.unflatten(0, (-1, 2)).movedim(1, -1).contiguous())
        return out[0] if squeeze else out

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Transpose map Rᵀ y from ``dst`` to ``src`` (same channel layout and dtype as ``forward``)."""
        shape = (*y.shape[:-3], *self.src.shape)
        x = torch.zeros(shape, dtype=y.dtype, device=y.device, requires_grad=True)
        with torch.enable_grad():
            out = self.forward(x)
            (grad,) = torch.autograd.grad(out, x, grad_outputs=y)
        # torch's complex gradient convention returns the conjugate-linear transpose: Rᵀ y for real R
        return grad
