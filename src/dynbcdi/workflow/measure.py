"""Expected photons of a fitted reconstruction for every frame: the physics model plus its fitted
measurement terms, rebuilt from what the dynamical stage stored.

The dynamical stage keeps the fitted terms as :meth:`MeasurementModel.summary` values (global and
per-frame rocking offsets in steps, global and per-frame scales, background, blur σ); they are put
back into a fresh :class:`dynbcdi.forward.measurement.MeasurementModel` built with the same term
options (:func:`dynbcdi.reconstruct.optimizer.measurement_terms`), so the report shows exactly the
model that was fitted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["expected_photons", "terms_state"]


def terms_state(model: Any, summary: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The terms' state dict of ``model`` (MeasurementModel) with the fitted values of ``summary``.

    summary keys (:meth:`MeasurementModel.summary`): rocking_offset_steps, frame_offsets_steps (N,),
    scale (photons per model unit), frame_scales (N,) relative, background (photons/pixel),
    blur_sigma_px (2,) (rows, cols) px, deadtime_loss_at_ref, deadtime_reference_photons. Missing keys keep the model's initial values.
    """
    state = {k: v.clone() for k, v in model.terms_state_dict().items()}

    def put(key: str, value: Any, transform=lambda v: v) -> None:
        if value is not None:
            state[key] = torch.as_tensor(transform(np.asarray(value, float)), dtype=state[key].dtype).reshape(
                state[key].shape)

    put("rocking.global_steps", summary.get("rocking_offset_steps"))
    put("rocking.frame_steps", summary.get("frame_offsets_steps"))
    put("scale.log_scale", summary.get("scale"), np.log)
    put("scale.log_frame", summary.get("frame_scales"), np.log)
    put("background.photons", summary.get("background"))
    put("blur.var_px2", summary.get("blur_sigma_px"), np.square)
    put("deadtime.loss_at_ref", summary.get("deadtime_loss_at_ref"))
    put("deadtime.reference", summary.get("deadtime_reference_photons"))
    return state


def expected_photons(physics: Any, dq: np.ndarray, obj: np.ndarray, config: Any, summary: dict[str, Any],
                     chunk: int = 16, step_rad: float = 1.0) -> np.ndarray:
    """Expected photons (N, rows, cols) float64 of ``obj`` (Z, Y, X) complex for every frame.

    physics: forward model (TTE or kinematic) on the grid; dq: (N, 3) rad/m grid-frame Δq;
    config: the ReconstructionConfig of the fit (its term options); summary: the fitted terms
    (:func:`terms_state`); chunk: frames per model call (memory); no gradients.
    """
    from dynbcdi.forward.measurement import MeasurementModel
    from dynbcdi.reconstruct.optimizer import measurement_terms

    dq_t = torch.as_tensor(np.asarray(dq, float), dtype=torch.float64)
    model = MeasurementModel(lambda S, q: physics(S, q.to(torch.float32)), dq_t, measurement_terms(config),
                             step_rad)
    model.load_terms_state_dict(terms_state(model, summary))
    S = torch.as_tensor(obj, dtype=torch.complex64)
    out = []
    with torch.no_grad():
        for i in range(0, len(dq_t), chunk):
            idx = torch.arange(i, min(i + chunk, len(dq_t)))
            out.append(model(S, idx).double().numpy())
    return np.concatenate(out)


def ml_scale(data: np.ndarray, model: np.ndarray, valid: np.ndarray) -> float:
    """Poisson maximum-likelihood scale c of λ = c·model: Σ I / Σ model over valid pixels."""
    total = float(np.sum(model * valid))
    return float(np.sum(data * valid)) / total if total > 0 and math.isfinite(total) else 1.0
