"""Checks of the reconstruction inputs, run before any computation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} is not an array: {err}") from err


def model_grid_shape(model: Any) -> tuple[int, int, int] | None:
    """(Z, Y, X) grid of a forward model when it declares one (``grid_shape`` attribute), else None."""
    shape = getattr(model, "grid_shape", None)
    return None if shape is None else tuple(int(n) for n in shape)


def validate_inputs(intensity: Any, valid: Any, dq: Any, init: Any, model: Any = None) -> dict[str, np.ndarray]:
    """Check shapes and values of the reconstruction inputs; ``ValueError`` naming the bad value.

    intensity : (N, R, C) finite ≥ 0, not all zero on the valid pixels; valid : (R, C) or (N, R, C)
    bool with at least one True; dq : (N, 3) finite rad/m; init : (Z, Y, X) finite, not all zero,
    with (Y, X) = (R, C) and (Z, Y, X) equal to ``model.grid_shape`` when the model declares one.
    Returns the inputs as numpy arrays (keys intensity, valid, dq, init).
    """
    intensity = _array(intensity, "intensity")
    if intensity.ndim != 3 or 0 in intensity.shape:
        raise ValueError(f"intensity must have shape (N, rows, cols), got {intensity.shape}")
    if not np.isrealobj(intensity):
        raise ValueError(f"intensity must be real, got dtype {intensity.dtype}")
    if not np.isfinite(intensity).all():
        raise ValueError(f"intensity has {int((~np.isfinite(intensity)).sum())} NaN/Inf values")
    if (intensity < 0).any():
        raise ValueError(f"intensity has negative values (min {intensity.min():.3g})")
    valid = _array(valid, "valid")
    if valid.dtype != bool:
        raise ValueError(f"valid must be a bool mask (True = trusted), got dtype {valid.dtype}")
    if valid.shape not in (intensity.shape, intensity.shape[1:]):
        raise ValueError(f"valid shape {valid.shape} matches neither {intensity.shape} nor {intensity.shape[1:]}")
    if not valid.any():
        raise ValueError("valid mask hides every pixel")
    if not (np.broadcast_to(valid, intensity.shape) * intensity).any():
        raise ValueError("intensity is zero on every valid pixel")
    dq = _array(dq, "dq")
    if dq.shape != (intensity.shape[0], 3):
        raise ValueError(f"dq must have shape (N, 3) = ({intensity.shape[0]}, 3), got {dq.shape}")
    if not np.isfinite(dq).all():
        raise ValueError("dq has NaN/Inf values")
    init = _array(init, "init")
    if init.ndim != 3 or init.shape[1:] != intensity.shape[1:]:
        raise ValueError(f"init shape {init.shape} is not (Z, {intensity.shape[1]}, {intensity.shape[2]}) "
                         f"of the data (rows, cols) = {intensity.shape[1:]}")
    grid = model_grid_shape(model)
    if grid is not None and init.shape != grid:
        raise ValueError(f"init shape {init.shape} differs from the forward model grid {grid}")
    if not np.isfinite(init).all():
        raise ValueError("init has NaN/Inf values")
    if not np.abs(init).any():
        raise ValueError("init is zero everywhere")
    return {"intensity": intensity, "valid": valid, "dq": dq, "init": init.astype(np.complex128)}
