"""Uniform rocking angles from motor read-backs.

The linear detector-frame basis of :class:`~dynbcdi.geometry.BraggGeometry` needs a uniform rocking
step, but spec read-backs jitter (scan 54 of APS 34-ID-C: steps differ by up to 0.12 % from their
mean). The motor was commanded to a uniform grid, so the geometry gets that grid — the nominal step
of the scan command, or the least-squares line through the read-backs — and the read-back jitter is
recorded. Only a grossly non-uniform scan (a read-back off the line by more than a fraction of a
step: a missed or repeated point) is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["RockingReport", "uniform_rocking_angles"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RockingReport:
    """Uniform rocking grid of a scan and how far the read-backs are from it (angles in degrees).

    method : "nominal" (step of the scan command) or "fit" (least-squares line).
    start_deg, step_deg : uniform angle of raw frame j = start_deg + j·step_deg.
    rms_deviation_deg, max_deviation_deg : read-back − uniform angle, RMS and max |.|.
    max_step_deviation : max |read-back step − step| / |step| (relative).
    fit_step_deg : slope of the least-squares line (for comparison with the nominal step).
    """

    method: str
    start_deg: float
    step_deg: float
    rms_deviation_deg: float
    max_deviation_deg: float
    max_step_deviation: float
    fit_step_deg: float

    def angles_deg(self, raw_index: np.ndarray) -> np.ndarray:
        """Uniform angles (deg) at raw frame indices (fractional or outside the scan: extrapolated)."""
        return self.start_deg + self.step_deg * np.asarray(raw_index, float)


def uniform_rocking_angles(readback_deg: np.ndarray, nominal_step_deg: float | None, method: str,
                           max_deviation_steps: float) -> RockingReport:
    """The uniform grid closest to ``readback_deg`` (N,) absolute motor angles (deg).

    method "nominal": slope = ``nominal_step_deg`` (falls back to "fit" when None), intercept by least
    squares; "fit": least-squares slope and intercept. ValueError if fewer than 2 angles, a zero step,
    a nominal step of the wrong sign, or a read-back off the grid by more than ``max_deviation_steps``.
    """
    theta = np.asarray(readback_deg, float)
    if theta.ndim != 1 or theta.size < 2 or not np.all(np.isfinite(theta)):
        raise ValueError(f"need at least 2 finite rocking angles, got {theta!r}")
    j = np.arange(theta.size, dtype=float)
    fit_step, fit_start = np.polyfit(j, theta, 1)
    if method == "nominal" and nominal_step_deg is None:
        log.info("no nominal rocking step from the scan command: using the fitted step %.6g°", fit_step)
        method = "fit"
    if method == "nominal":
        step = float(nominal_step_deg)  # type: ignore[arg-type]
        if step == 0 or np.sign(step) != np.sign(fit_step):
            raise ValueError(f"nominal rocking step {step}° disagrees with the read-backs (fitted step {fit_step:.6g}°)")
        start = float(np.mean(theta - step * j))
    else:
        step, start = float(fit_step), float(fit_start)
    if step == 0:
        raise ValueError("the rocking motor did not move (step 0)")
    dev = theta - (start + step * j)
    max_dev = float(np.max(np.abs(dev)))
    if max_dev > max_deviation_steps * abs(step):
        worst = int(np.argmax(np.abs(dev)))
        raise ValueError(f"rocking scan is not uniform: frame {worst} read back {theta[worst]:.6g}° is "
                         f"{dev[worst] / step:+.2f} steps off the {method} grid (step {step:.6g}°); "
                         f"limit prepare.max_rocking_deviation = {max_deviation_steps} steps")
    steps = np.diff(theta)
    return RockingReport(method=method, start_deg=start, step_deg=step,
                         rms_deviation_deg=float(np.sqrt(np.mean(dev ** 2))), max_deviation_deg=max_dev,
                         max_step_deviation=float(np.max(np.abs(steps - step)) / abs(step)),
                         fit_step_deg=float(fit_step))
