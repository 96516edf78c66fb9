"""Measurement terms: what a measured rocking scan adds to the physics of the forward model.

Each term is a ``torch.nn.Module`` with its own parameters and :class:`TermOptions` (refine on/off,
learning-rate factor, first epoch), applied by :class:`dynbcdi.forward.measurement.MeasurementModel`
in the order of the measurement equation

    I_j(p) = g_j · [K_σ ∗ |F⊥ Eh(S, Δq_j + δθ_j ∂Δq/∂θ)|²](p) + b        (photons)

- :class:`RockingOffset` δθ_j = δθ + δθ_j' (rad): the absolute Bragg position of a measured scan is
  unknown (motor zero, refraction shift of the peak), so a global offset is fitted; per-frame offsets
  (rocking-motor jitter) are optional;
- :class:`CoherenceBlur` K_σ: partial coherence (and detector point spread) as a Gaussian blur of
  the detector-plane intensity;
- :class:`FrameScale` g_j = exp(ln g + ln g_j'): the global photons-per-model-unit scale times a
  per-frame factor (incident flux / monitor fluctuations) whose logarithms have zero mean, so the
  global scale and the frame factors are not degenerate;
- :class:`Background` b ≥ 0: a flat background (photons per pixel and frame);
- :class:`DeadTime`: the count loss of a photon-counting detector at high rates (non-paralysable,
  m = n / (1 + a n / I_ref)), applied to the scaled model before the background.

Parametrisations are chosen so that Adam's step (≈ lr, independent of the gradient scale) has a
sensible size and the gradient does not vanish at the physical boundary: offsets in rocking steps,
scales as logarithms, the blur as its variance σ² (∂K/∂σ = 0 at σ = 0, ∂K/∂σ² is not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Background", "CoherenceBlur", "DeadTime", "FrameScale", "RockingOffset", "TermOptions"]


@dataclass(frozen=True)
class TermOptions:
    """How a term is optimised. refine: fitted (True) or held at its value; lr_factor: Adam learning
    rate = base lr × factor; start_epoch: first epoch (0-based) in which it is updated."""

    refine: bool = False
    lr_factor: float = 0.1
    start_epoch: int = 0

    def __post_init__(self) -> None:
        if not self.lr_factor > 0 or self.start_epoch < 0:
            raise ValueError(f"TermOptions: lr_factor must be > 0 and start_epoch >= 0, got "
                             f"{self.lr_factor}, {self.start_epoch}")


class Term(torch.nn.Module):
    """Base of the terms: ``options`` per parameter name (``param_options``) and a projection."""

    def __init__(self, options: TermOptions) -> None:
        super().__init__()
        self.options = options

    def param_options(self) -> dict[str, TermOptions]:
        """Options of each parameter (name as in ``named_parameters``); default: one for all."""
        return {name: self.options for name, _ in self.named_parameters()}

    @torch.no_grad()
    def project(self) -> None:
        """Enforce the constraints after an optimiser step (in place); default: none."""


class RockingOffset(Term):
    """Rocking-angle offsets: Δq_j → Δq_j + (δθ + δθ_j') ∂Δq/∂θ|_j (linear in the offset).

    dq : (N, 3) rad/m grid-frame Δq of the scan; step_rad : the rocking step (rad; 1.0 = offsets in
    steps). Parameters (both in rocking steps, so an Adam step is a fraction of a step):
    ``global_steps`` 0-d, ``frame_steps`` (N,) (only refined with ``per_frame``).
    The linearisation errs by ~δθ²|h|/2 in Δq: 4e2 rad/m for δθ = 0.01° and Au (111), 1e-5 of a
    typical rocking step in q. Identifiability: in the kinematic model a global offset is exactly a
    linear phase ramp exp(iδ ∂Δq·r) on S, so only the dynamical model (refraction, extinction: the
    pattern depends on the absolute deviation from the Bragg angle) fixes it; per-frame offsets are
    fixed by the shape of each frame relative to its neighbours.
    """

    def __init__(self, dq: torch.Tensor, step_rad: float = 1.0, options: TermOptions = TermOptions(),
                 per_frame: bool = False, per_frame_options: TermOptions | None = None) -> None:
        super().__init__(options)
        n = dq.shape[0]
        deriv = torch.gradient(dq, dim=0)[0] if n >= 2 else torch.zeros_like(dq)
        self.register_buffer("dq_per_step", deriv)  # (N, 3) rad/m per rocking step
        self.step_rad = float(step_rad)
        self.per_frame = bool(per_frame)
        self.per_frame_options = per_frame_options or options
        self.global_steps = torch.nn.Parameter(torch.zeros((), dtype=dq.dtype))
        self.frame_steps = torch.nn.Parameter(torch.zeros(n, dtype=dq.dtype))

    def param_options(self) -> dict[str, TermOptions]:  # noqa: D102
        pf = self.per_frame_options
        return {"global_steps": self.options,
                "frame_steps": TermOptions(self.per_frame and pf.refine, pf.lr_factor, pf.start_epoch)}

    def active(self) -> bool:
        """True when any offset can be non-zero (refined or set)."""
        opts = self.param_options()
        return (opts["global_steps"].refine or opts["frame_steps"].refine
                or bool(self.global_steps.detach() != 0) or bool(self.frame_steps.detach().any()))

    def offsets_steps(self, idx: torch.Tensor) -> torch.Tensor:
        """Total offsets of frames ``idx`` (B,) in rocking steps."""
        return self.global_steps + self.frame_steps[idx]

    def forward(self, dq: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Effective Δq of frames ``idx``: dq (N, 3) rad/m, idx (B,) -> (B, 3) rad/m."""
        if not self.active():
            return dq[idx]
        return dq[idx] + self.offsets_steps(idx)[:, None] * self.dq_per_step[idx]

    @torch.no_grad()
    def project(self) -> None:
        """With both offsets refined, keep the per-frame ones at zero mean: their mean and the global
        offset are one degree of freedom (the mean moves into the global offset)."""
        opts = self.param_options()
        if opts["global_steps"].refine and opts["frame_steps"].refine:
            mean = self.frame_steps.mean()
            self.frame_steps.sub_(mean)
            self.global_steps.add_(mean)

    @property
    def global_rad(self) -> float:
        """Global offset δθ in rad."""
        return float(self.global_steps) * self.step_rad


class FrameScale(Term):
    """Intensity scale g_j = exp(log_scale + log_frame_j) (photons per model unit).

    ``log_scale`` 0-d (refined with ``global_options``), ``log_frame`` (N,) (refined with
    ``options``); after every step ``log_frame`` is re-centred to zero mean (the mean moves into
    ``log_scale``) and clipped to ±ln(1 + max_rel): free frame scales would otherwise absorb the
    rocking curve itself, which carries information on the crystal.
    """

    def __init__(self, n_frames: int, dtype: torch.dtype, options: TermOptions = TermOptions(),
                 global_options: TermOptions = TermOptions(refine=True), max_rel: float = 0.25) -> None:
        super().__init__(options)
        if not max_rel > 0:
            raise ValueError(f"FrameScale.max_rel must be > 0, got {max_rel}")
        self.global_options = global_options
        self.max_log = math.log1p(max_rel)
        self.log_scale = torch.nn.Parameter(torch.zeros((), dtype=dtype))
        self.log_frame = torch.nn.Parameter(torch.zeros(n_frames, dtype=dtype))

    def param_options(self) -> dict[str, TermOptions]:  # noqa: D102
        return {"log_scale": self.global_options, "log_frame": self.options}

    def forward(self, D: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Scaled intensity: D (B, R, C) model units, idx (B,) -> photons (B, R, C)."""
        if not self.options.refine and not bool(self.log_frame.detach().any()):
            return torch.exp(self.log_scale) * D
        return torch.exp(self.log_scale + self.log_frame[idx])[:, None, None] * D

    @torch.no_grad()
    def project(self) -> None:  # noqa: D102
        if self.options.refine:
            mean = self.log_frame.mean()
            self.log_frame.sub_(mean)
            self.log_scale.add_(mean)
            self.log_frame.clamp_(-self.max_log, self.max_log)

    def scales(self) -> torch.Tensor:
        """(N,) photons per model unit of every frame."""
        return torch.exp(self.log_scale + self.log_frame).detach()


class Background(Term):
    """Flat background b ≥ 0 in photons per pixel and frame, added to the scaled model."""

    def __init__(self, dtype: torch.dtype, options: TermOptions = TermOptions(), init: float = 0.0) -> None:
        super().__init__(options)
        if init < 0:
            raise ValueError(f"Background init must be >= 0 photons, got {init}")
        self.photons = torch.nn.Parameter(torch.tensor(float(init), dtype=dtype))

    def forward(self, D: torch.Tensor) -> torch.Tensor:
        """D + b: (B, R, C) photons."""
        return D + self.photons

    @torch.no_grad()
    def project(self) -> None:  # noqa: D102
        self.photons.clamp_(min=0.0)


class CoherenceBlur(Term):
    """Partial coherence as a Gaussian blur of the detector-plane intensity (rows, cols).

    Physical meaning: for a Gaussian Schell-model beam the measured intensity is the coherent one
    convolved with the Fourier transform of the degree of coherence exp(−r²/2ξ²), a Gaussian of
    σ_q = 1/ξ in q; on the detector σ_px = λ L / (2π ξ p) (L distance, p pixel) — e.g. σ = 0.5 px at
    λ = 1.38 Å, L = 0.5 m, p = 55 µm means ξ ≈ 0.4 µm. A detector point spread adds the same way.
    Parameter ``var_px2`` (2,) = (σ_row², σ_col²) in pixels², ≥ 0. The convolution is done by FFT
    with the Gaussian's transfer function exp(−2π²σ²f²): periodic over the pattern, like the DFT
    sampling of the far field itself. It acts on the model (defined at every pixel), so masked data
    pixels never enter it; they are excluded from the loss only.
    """

    def __init__(self, dtype: torch.dtype, options: TermOptions = TermOptions(), init_sigma_px: float = 0.0) -> None:
        super().__init__(options)
        if init_sigma_px < 0:
            raise ValueError(f"CoherenceBlur init_sigma_px must be >= 0, got {init_sigma_px}")
        self.var_px2 = torch.nn.Parameter(torch.full((2,), float(init_sigma_px) ** 2, dtype=dtype))

    def forward(self, D: torch.Tensor) -> torch.Tensor:
        """Blurred D: (B, R, C) real -> (B, R, C) real (same dtype)."""
        if not self.options.refine and not bool(self.var_px2.detach().any()):
            return D
        rows, cols = D.shape[-2:]
        fr = torch.fft.fftfreq(rows, dtype=D.dtype, device=D.device)
        fc = torch.fft.rfftfreq(cols, dtype=D.dtype, device=D.device)
        var = self.var_px2.to(D.dtype)
        transfer = torch.exp(-2 * math.pi**2 * (var[0] * fr[:, None] ** 2 + var[1] * fc[None, :] ** 2))
        # the FFT round trip leaves ~1e-7 relative negative values where D ≈ 0; √D needs D ≥ 0
        return torch.fft.irfft2(torch.fft.rfft2(D) * transfer, s=(rows, cols)).clamp(min=0)

    @torch.no_grad()
    def project(self) -> None:  # noqa: D102
        self.var_px2.clamp_(min=0.0)

    def sigma_px(self) -> torch.Tensor:
        """(2,) blur σ (rows, cols) in pixels."""
        return self.var_px2.detach().clamp(min=0).sqrt()


class DeadTime(Term):
    """Count-rate loss of a photon-counting pixel: m = n / (1 + a·n / I_ref) (non-paralysable
    dead time τ: a·n/I_ref = n_rate·τ), n the expected photons of a pixel in a frame.

    I_ref : photons (the brightest data pixel, a buffer); parameter ``loss_at_ref`` a ≥ 0, the
    fractional count loss 1 − m/n ≈ a at I_ref (a = 0: linear detector). With binned pixels a is
    an effective value (the raw pixels of a bin see different rates).
    """

    def __init__(self, reference_photons: float, dtype: torch.dtype, options: TermOptions = TermOptions(),
                 init: float = 0.0) -> None:
        super().__init__(options)
        if not reference_photons > 0 or init < 0:
            raise ValueError(f"DeadTime: reference_photons must be > 0 and init >= 0, got "
                             f"{reference_photons}, {init}")
        self.register_buffer("reference", torch.tensor(float(reference_photons), dtype=dtype))
        self.loss_at_ref = torch.nn.Parameter(torch.tensor(float(init), dtype=dtype))

    def forward(self, D: torch.Tensor) -> torch.Tensor:
        """Measured counts m (B, R, C) from expected photons D (B, R, C)."""
        if not self.options.refine and not bool(self.loss_at_ref.detach() != 0):
            return D
        return D / (1 + self.loss_at_ref * (D / self.reference))

    @torch.no_grad()
    def project(self) -> None:  # noqa: D102
        self.loss_at_ref.clamp_(min=0.0)
