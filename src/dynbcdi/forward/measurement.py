"""The measurement model: physics (TTE or kinematic) plus the terms of a measured scan.

``MeasurementModel(physics, dq, ...)`` is called with angle *indices*, so per-frame terms see which
frames they act on::

    model = MeasurementModel(TTEModel(...), dq, step_rad=geometry step)
    D = model(S, idx)          # (B, rows, cols) expected photons of frames idx

The same wrapper takes the kinematic model, so TTE and kinematic fits run through one optimiser.
The order of the measurement equation is given in :mod:`dynbcdi.forward.terms`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .terms import Background, CoherenceBlur, FrameScale, RockingOffset, Term, TermOptions

__all__ = ["MeasurementModel", "MeasurementTerms"]

PhysicsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MeasurementTerms:
    """Which terms a :class:`MeasurementModel` carries and how each is optimised.

    rocking / rocking_per_frame: global and per-frame rocking offsets (:class:`RockingOffset`);
    scale: the global log-scale; frame_scale: per-frame scales (:class:`FrameScale`, max_rel bound);
    background (+ background_init photons); blur (+ blur_init_px, :class:`CoherenceBlur`).
    """

    rocking: TermOptions = field(default_factory=TermOptions)
    rocking_per_frame: TermOptions = field(default_factory=TermOptions)
    scale: TermOptions = field(default_factory=lambda: TermOptions(refine=True))
    frame_scale: TermOptions = field(default_factory=TermOptions)
    frame_scale_max_rel: float = 0.25
    background: TermOptions = field(default_factory=TermOptions)
    background_init: float = 0.0
    blur: TermOptions = field(default_factory=TermOptions)
    blur_init_px: float = 0.0


class MeasurementModel(torch.nn.Module):
    """Expected photons of a rocking scan: physics + measurement terms (``torch.nn.Module``).

    physics : ``physics(S, dq_batch) -> (B, R, C)`` unscaled intensity (a ForwardModel).
    dq : (N, 3) rad/m grid-frame Δq of every frame (kept as buffer ``dq``); step_rad : the rocking
    step in rad (for reporting offsets in rad; 1.0 = offsets reported in steps). terms :
    :class:`MeasurementTerms`. The real dtype of the parameters is that of ``dq``.
    """

    def __init__(self, physics: PhysicsFn, dq: torch.Tensor, terms: MeasurementTerms | None = None,
                 step_rad: float = 1.0) -> None:
        super().__init__()
        terms = terms or MeasurementTerms()
        if dq.ndim != 2 or dq.shape[1] != 3:
            raise ValueError(f"dq must have shape (N, 3), got {tuple(dq.shape)}")
        self.physics = physics
        self.register_buffer("dq", dq)
        n, dtype = dq.shape[0], dq.dtype
        self.rocking = RockingOffset(dq, step_rad, terms.rocking, per_frame=terms.rocking_per_frame.refine,
                                     per_frame_options=terms.rocking_per_frame)
        self.scale = FrameScale(n, dtype, terms.frame_scale, terms.scale, terms.frame_scale_max_rel)
        self.blur = CoherenceBlur(dtype, terms.blur, terms.blur_init_px)
        self.background = Background(dtype, terms.background, terms.background_init)

    def terms(self) -> dict[str, Term]:
        """The terms by name."""
        return {"rocking": self.rocking, "scale": self.scale, "blur": self.blur, "background": self.background}

    def terms_parameters(self) -> list[torch.Tensor]:
        """Parameters of the terms (not of the physics), in a fixed order."""
        return [p for term in self.terms().values() for p in term.parameters()]

    def terms_state_dict(self) -> dict[str, torch.Tensor]:
        """State of the terms only, keys "<term>.<name>" (the physics has its own, fixed state)."""
        return {f"{name}.{k}": v for name, term in self.terms().items() for k, v in term.state_dict().items()}

    def load_terms_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy :meth:`terms_state_dict` values back in place (optimiser references stay valid);
        ``ValueError`` naming missing or unknown keys."""
        own = self.terms_state_dict()
        if set(state) != set(own):
            raise ValueError(f"measurement terms state: missing {sorted(set(own) - set(state))}, "
                             f"unknown {sorted(set(state) - set(own))}")
        with torch.no_grad():
            for key, value in state.items():
                if own[key].shape != value.shape:
                    raise ValueError(f"measurement terms state {key}: shape {tuple(value.shape)}, "
                                     f"expected {tuple(own[key].shape)}")
                own[key].copy_(value)

    def unscaled(self, S: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Physics at the offset Δq, blurred: (B, R, C) model units (S (Z, Y, X) complex, idx (B,))."""
        return self.blur(self.physics(S, self.rocking(self.dq, idx)))

    def forward(self, S: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Expected photons (B, R, C) of frames ``idx`` (B,) long; S (Z, Y, X) complex."""
        return self.background(self.scale(self.unscaled(S, idx), idx))

    def param_groups(self, lr: float) -> list[dict]:
        """Adam parameter groups (one per refined parameter) with ``name`` and ``start_epoch`` keys.

        Parameters that are not refined get ``requires_grad = False``.
        """
        groups = []
        for term_name, term in self.terms().items():
            params = dict(term.named_parameters())
            for pname, opts in term.param_options().items():
                p = params[pname]
                p.requires_grad_(opts.refine)
                if opts.refine:
                    groups.append({"params": [p], "lr": lr * opts.lr_factor, "name": f"{term_name}.{pname}",
                                   "start_epoch": opts.start_epoch})
        return groups

    @torch.no_grad()
    def project(self) -> None:
        """Constraints of every term after an optimiser step."""
        for term in self.terms().values():
            term.project()

    def summary(self) -> dict[str, object]:
        """Fitted values in physical units: rocking offset (rad, steps), frame scales (N,), the
        global scale (photons per model unit), background (photons/pixel), blur σ (rows, cols) px."""
        return {"rocking_offset_rad": self.rocking.global_rad,
                "rocking_offset_steps": float(self.rocking.global_steps),
                "frame_offsets_steps": self.rocking.frame_steps.detach().cpu().numpy().copy(),
                "scale": float(torch.exp(self.scale.log_scale)),
                "frame_scales": (self.scale.scales() / torch.exp(self.scale.log_scale)).cpu().numpy(),
                "background": float(self.background.photons),
                "blur_sigma_px": self.blur.sigma_px().cpu().numpy()}
