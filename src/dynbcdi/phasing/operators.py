"""Projection operators of kinematic phase retrieval (ER, HIO, RAAR, shrink-wrap, Poisson ML).

All operators act on a :class:`PhasingState` whose arrays are stored in *FFT order*: the
real-space origin is at index 0 and the zero frequency of the data at index 0 (i.e. the
``ifftshift`` of the centred, detector-frame arrays). Keeping that layout inside the loop
saves two shifts per FFT; :mod:`dynbcdi.phasing.retrieval` converts at the edges.

Fourier convention: ``F = torch.fft.fftn(psi, dim=(-3, -2, -1))`` (kernel e^{-i q·r}, no
normalisation), so the measured intensity is ``I = |F|²`` and ``ifftn`` carries the 1/N.
One torch code path; the device is that of the state tensors.

References: Fienup, Appl. Opt. 21, 2758 (1982) (ER, HIO); Luke, Inverse Problems 21, 37 (2005)
(RAAR); Marchesini et al., PRB 68, 140101 (2003) (shrink-wrap); Thibault & Guizar-Sicairos,
New J. Phys. 14, 063004 (2012) (Poisson maximum likelihood).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

_DIMS = (-3, -2, -1)
# Guards divisions by |F| and |F|^2 where the model amplitude vanishes; far below one photon.
_TINY = 1e-30


@dataclass
class PhasingState:
    """Iterate of a phase-retrieval run, arrays in FFT order (origin at index 0).

    Attributes
    ----------
    psi : (N, rows, cols) complex tensor, the real-space iterate.
    support : (N, rows, cols) bool tensor, True inside the support.
    amplitude : (N, rows, cols) real tensor, sqrt of the measured intensity (photons^½).
    valid : bool tensor broadcastable to ``amplitude``; False = unmeasured pixel, left free.
    intensity : real tensor, the measured intensity (photons), used by the ML step.
    iteration : number of iterations done so far.
    errors : (capacity,) real tensor on the device of ``psi``; entry k is the normalised Fourier
        amplitude error of iteration k (:meth:`error_history`). Written in place, so that the loop
        never synchronises with the accelerator; grown by doubling when full.
    """

    psi: torch.Tensor
    support: torch.Tensor
    amplitude: torch.Tensor
    valid: torch.Tensor
    intensity: torch.Tensor
    iteration: int = 0
    errors: torch.Tensor | None = None
    ml_direction: torch.Tensor | None = None
    ml_gradient: torch.Tensor | None = None
    amplitude_norm2: torch.Tensor | None = None
    all_valid: bool = field(init=False)

    def __post_init__(self) -> None:
        # Without masked pixels the masking `where`s are skipped (they cost as much as an FFT).
        self.all_valid = bool(self.valid.all())
        if self.errors is None:
            self.errors = torch.zeros(0, dtype=self.amplitude.dtype, device=self.psi.device)

    def error_history(self) -> torch.Tensor:
        """(iteration,) amplitude error of every iteration so far (a view of :attr:`errors`)."""
        return self.errors[:self.iteration]


def amplitude_error(farfield: torch.Tensor, state: PhasingState, modulus: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised Fourier amplitude error sqrt(Σ_valid (|F| − A)² / Σ_valid A²), 0-d tensor.

    ``modulus`` may pass a precomputed |F| (complex abs is the costliest elementwise step).
    """
    modulus = farfield.abs() if modulus is None else modulus
    diff = modulus - state.amplitude
    if not state.all_valid:
        diff = torch.where(state.valid, diff, 0.0)
    return torch.sqrt(diff.square().sum() / _amplitude_norm2(state))


def _amplitude_norm2(state: PhasingState) -> torch.Tensor:
    """Σ_valid A², cached on the state (the data never change during a run)."""
    if state.amplitude_norm2 is None:
        state.amplitude_norm2 = torch.where(state.valid, state.amplitude, 0.0).square().sum()
    return state.amplitude_norm2


def modulus_projection(psi: torch.Tensor, state: PhasingState) -> tuple[torch.Tensor, torch.Tensor]:
    """P_M: replace |F| by the measured amplitude on valid pixels; masked pixels float freely.

    Returns the projected real-space array and the amplitude error of ``psi`` (before projection).
    """
    farfield = torch.fft.fftn(psi, dim=_DIMS)
    modulus = farfield.abs()
    error = amplitude_error(farfield, state, modulus)
    scale = state.amplitude / modulus.clamp_min(_TINY)
    if not state.all_valid:
        scale = torch.where(state.valid, scale, 1.0)
    return torch.fft.ifftn(farfield.mul_(scale), dim=_DIMS), error


def er_step(state: PhasingState) -> None:
    """Error reduction: ψ ← P_S P_M ψ."""
    projected, error = modulus_projection(state.psi, state)
    state.psi = torch.where(state.support, projected, 0)
    _record(state, error)


def hio_step(state: PhasingState, beta: float = 0.9) -> None:
    """Hybrid input-output: ψ ← P_M ψ inside S, ψ − β P_M ψ outside (Fienup 1982)."""
    projected, error = modulus_projection(state.psi, state)
    state.psi = torch.where(state.support, projected, state.psi.sub_(projected, alpha=beta))
    _record(state, error)


def raar_step(state: PhasingState, beta: float = 0.75) -> None:
    """RAAR: ψ ← P_M ψ inside S, β ψ + (1 − 2β) P_M ψ outside (Luke 2005)."""
    projected, error = modulus_projection(state.psi, state)
    state.psi = torch.where(state.support, projected, state.psi.mul_(beta).add_(projected, alpha=1 - 2 * beta))
    _record(state, error)


def _record(state: PhasingState, error: torch.Tensor) -> None:
    # One preallocated history written in place, not a list of 0-d tensors: on CPU each small
    # tensor kept alive lands in a hole left by the iteration's large temporaries, so glibc can
    # no longer reuse the hole, and the process grew by one data-sized array per iteration
    # (76×64×64: 0.36 → 2.4 GiB over 1800 iterations).
    if state.iteration >= state.errors.numel():
        grown = torch.zeros(max(64, 2 * state.errors.numel()), dtype=state.errors.dtype, device=state.errors.device)
        grown[:state.errors.numel()] = state.errors
        state.errors = grown
    state.errors[state.iteration] = error.detach()
    state.iteration += 1


def gaussian_blur(volume: torch.Tensor, sigma_vox: float) -> torch.Tensor:
    """Periodic Gaussian blur of a real (N, rows, cols) tensor, σ in voxels along every axis.

    Done in Fourier space (transfer exp(−2π²σ²f²)); periodic wrap is harmless because the
    support sits well inside an oversampled array.
    """
    shape = volume.shape[-3:]
    freqs = [torch.fft.fftfreq(n, device=volume.device, dtype=volume.dtype) for n in shape[:2]]
    freqs.append(torch.fft.rfftfreq(shape[2], device=volume.device, dtype=volume.dtype))
    fz, fy, fx = torch.meshgrid(*freqs, indexing="ij")
    transfer = torch.exp(-2 * (torch.pi * sigma_vox) ** 2 * (fz**2 + fy**2 + fx**2))
    return torch.fft.irfftn(torch.fft.rfftn(volume, dim=_DIMS) * transfer, s=shape, dim=_DIMS)


def shrink_wrap(state: PhasingState, sigma_vox: float, threshold: float) -> None:
    """Shrink-wrap (Marchesini 2003): support ← blur(|ψ|, σ) > threshold · max(blur(|ψ|, σ)).

    An empty result (ψ ≈ 0) keeps the previous support rather than killing the iterate.
    """
    blurred = gaussian_blur(state.psi.abs(), sigma_vox)
    new_support = blurred > threshold * blurred.max()
    state.support = torch.where(new_support.any(), new_support, state.support)


def half_support(support: torch.Tensor, axis: int) -> torch.Tensor:
    """The part of ``support`` (FFT order) at or below its circular centre of mass along ``axis``."""
    n = support.shape[axis]
    angle = 2 * torch.pi * torch.arange(n, device=support.device) / n
    profile = support.sum(dim=[d for d in range(3) if d != axis]).to(angle.dtype)
    centre = torch.atan2((profile * torch.sin(angle)).sum(), (profile * torch.cos(angle)).sum())
    # Signed circular distance from the centre, in (−π, π].
    offset = torch.remainder(angle - centre + torch.pi, 2 * torch.pi) - torch.pi
    shape = [1, 1, 1]
    shape[axis] = n
    return support & (offset <= 0).reshape(shape)


def poisson_nll(farfield: torch.Tensor, state: PhasingState) -> torch.Tensor:
    """Poisson deviance per valid pixel, Σ_valid [Ic − I − I ln(Ic/I)] / n_valid (0 at the optimum)."""
    calc = farfield.abs().square().clamp_min(_TINY)
    data = state.intensity
    log_term = torch.where(data > 0, data * torch.log(calc / data.clamp_min(_TINY)), 0.0)
    dev = torch.where(state.valid, calc - data - log_term, 0.0)
    n_valid = torch.broadcast_to(state.valid, calc.shape).sum()
    return dev.sum() / n_valid


def ml_step(state: PhasingState, newton_iterations: int = 3) -> None:
    """One Polak-Ribière conjugate-gradient step on the Poisson likelihood, ψ kept in S.

    Gradient w.r.t. ψ*: P_S F⁻¹[F (1 − I/|F|²)] on valid pixels. The step length along the
    search direction D = F[d] minimises f(t) = Σ |F + tD|² − I ln|F + tD|² by a few Newton
    steps on elementwise sums (one extra FFT per iteration, no trial evaluations).
    """
    farfield = torch.fft.fftn(state.psi, dim=_DIMS)
    error = amplitude_error(farfield, state)
    calc = farfield.abs().square().clamp_min(_TINY)
    residual = torch.where(state.valid, farfield * (1 - state.intensity / calc), 0)
    grad = torch.where(state.support, torch.fft.ifftn(residual, dim=_DIMS), 0)
    direction = -grad
    if state.ml_gradient is not None and state.ml_direction is not None:
        previous = state.ml_gradient
        num = torch.real(torch.vdot((grad - previous).flatten(), grad.flatten()))
        den = torch.real(torch.vdot(previous.flatten(), previous.flatten())).clamp_min(_TINY)
        direction = direction + (num / den).clamp_min(0) * state.ml_direction
    dfar = torch.fft.fftn(direction, dim=_DIMS)
    step = _newton_line_search(farfield, dfar, state, newton_iterations)
    state.psi = state.psi + step * direction
    state.ml_gradient, state.ml_direction = grad, direction
    _record(state, error)


def _newton_line_search(
    farfield: torch.Tensor, dfar: torch.Tensor, state: PhasingState, iterations: int
) -> torch.Tensor:
    """Step t ≥ 0 minimising the Poisson NLL along F + tD (Newton on f'(t), 0-d tensor)."""
    data = torch.where(state.valid, state.intensity, 0.0)
    weight = state.valid.to(farfield.real.dtype)
    step = torch.zeros((), dtype=farfield.real.dtype, device=farfield.device)
    for _ in range(iterations):
        model = farfield + step * dfar
        calc = model.abs().square().clamp_min(_TINY)
        cross = 2 * torch.real(model.conj() * dfar)
        first = (weight * cross - data * cross / calc).sum()
        second = (2 * weight * dfar.abs().square() * (1 - data / calc) + data * cross**2 / calc**2).sum()
        step = (step - first / second.abs().clamp_min(_TINY)).clamp_min(0)
    return step
