"""The regime stage of `dynbcdi run`: does the measured crystal need the dynamical model?

=========  ==================  =====================================================================
stage      artifact            typed as
=========  ==================  =====================================================================
regime     ``regime.json``     dict: the numbers of :class:`dynbcdi.analysis.regime.RegimeDiagnosis`,
                               the verdict, the support it was computed on (or ``error``)
=========  ==================  =====================================================================

It runs after the grid stage and before the dynamical reconstruction, so the verdict is on the
console before the long stage starts. The crystal shape is the *measured* one: the support of the
kinematic result on the grid frame (the smoothed amplitude above ``output.support_threshold`` of
its maximum, holes filled, largest body: the same rule as the analysis stage's kinematic support).
:func:`dynbcdi.analysis.regime.diagnose_regime` then simulates that shape both ways on a coarse
grid (≤ :data:`MAX_POINTS` per axis, about a second) in the dataset's own geometry, with the σ
polarization factor of the run's forward model (:func:`dynbcdi.reconstruct.pipeline.forward_model`).

A diagnosis that cannot be made (a support too small for the coarse grid, a rocking axis that does
not sample along the beam) does not stop the run: ``regime.json`` holds the one-line ``error`` and
the console and report say so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from dynbcdi.workflow.cache import StageContext
from dynbcdi.workflow.config import RunConfig

__all__ = ["MAX_POINTS", "POLARIZATION", "RegimeStage", "lengths_line", "measured_support", "regime_summary",
           "verdict_line"]

log = logging.getLogger(__name__)

#: Coarse-grid points per axis of the diagnosis (cost ∝ MAX_POINTS⁴; 32: < 1 s on one core).
MAX_POINTS = 32
#: The polarization factor of the run's forward model (forward_model's default).
POLARIZATION = "sigma"
REGIME_FILE = "regime.json"


def measured_support(kinematic: np.ndarray, threshold: float) -> np.ndarray:
    """The crystal support of the kinematic result ``kinematic`` (Z, Y, X) complex on the grid frame:
    the 1-voxel-smoothed amplitude above ``threshold`` × its maximum, holes filled, largest body;
    (Z, Y, X) bool. ValueError when the result is zero everywhere."""
    from dynbcdi.analysis import support_from_amplitude

    return support_from_amplitude(kinematic, threshold)


def regime_summary(diagnosis: Any) -> dict[str, Any]:
    """The JSON-able numbers of a :class:`~dynbcdi.analysis.regime.RegimeDiagnosis` (lengths in nm,
    angles and phases in rad, ratios unitless) with its verdict and report text."""
    d = diagnosis
    return {
        "verdict": d.verdict, "kinematic_enough": bool(d.kinematic_enough), "threshold_rad": d.threshold_rad,
        "thickness_along_h_nm": d.size_m * 1e9, "extinction_length_nm": d.extinction_length_m * 1e9,
        "absorption_length_nm": d.absorption_length_m * 1e9,
        "thickness_over_extinction": d.size_over_extinction, "thickness_over_absorption": d.size_over_absorption,
        "refraction_shift_rad": d.refraction_shift_rad, "kinematic_phase_error_rad": d.phase_error_rad,
        "kinematic_phase_error_no_ramp_rad": d.phase_error_no_ramp_rad,
        "refraction_phase_error_rad": d.refraction_phase_error_rad,
        "beyond_refraction_phase_error_rad": d.beyond_refraction_phase_error_rad,
        "kinematic_amplitude_error": d.amplitude_error, "coarse_grid": list(d.grid_shape),
        "coarse_voxel_nm": d.voxel_m * 1e9, "n_angles": d.n_angles, "seconds": d.seconds, "report": d.report(),
    }


class RegimeStage:
    """Regime diagnosis (:mod:`dynbcdi.analysis.regime`) of the crystal support measured by kinematic phasing."""

    name, needs, version = "regime", ("prepare", "grid"), 1

    def settings(self, config: RunConfig) -> dict[str, Any]:
        from dynbcdi.analysis.regime import DEFAULT_THRESHOLD_RAD

        return {"support_threshold": config.output.support_threshold, "max_points": MAX_POINTS,
                "polarization": POLARIZATION, "threshold_rad": DEFAULT_THRESHOLD_RAD}

    def run(self, ctx: StageContext) -> list[str]:
        from dynbcdi.analysis.regime import DEFAULT_THRESHOLD_RAD, diagnose_regime

        dataset, kin = ctx.input("prepare"), ctx.input("grid").obj
        support = measured_support(kin, ctx.config.output.support_threshold)
        out: dict[str, Any] = {"support": {"source": "kinematic result on the grid",
                                           "threshold": ctx.config.output.support_threshold,
                                           "voxels": int(support.sum()),
                                           "spacing_nm": [s * 1e9 for s in dataset.spacing_m]},
                               "polarization": POLARIZATION}
        try:
            diagnosis = diagnose_regime(support, dataset.spacing_m, dataset.geometry, dataset.reflection,
                                        polarization=POLARIZATION, max_points=MAX_POINTS,
                                        threshold_rad=DEFAULT_THRESHOLD_RAD)
        except ValueError as err:  # the run goes on; the report and console say why there is no verdict
            out["error"] = str(err).splitlines()[0]
            log.warning("regime diagnosis not made: %s", out["error"])
        else:
            out.update(regime_summary(diagnosis))
            log.info("regime diagnosis of the kinematic support (%d voxels):\n%s", out["support"]["voxels"],
                     out["report"])
        (ctx.folder / REGIME_FILE).write_text(json.dumps(out, indent=1))
        return [REGIME_FILE]

    def load(self, folder: Path) -> dict[str, Any]:
        return json.loads((folder / REGIME_FILE).read_text())


def verdict_line(run_dir: str | Path) -> str | None:
    """One line for the console from ``run_dir/regime/regime.json``: the verdict with its numbers, or
    why there is none; None when the run has no regime stage output."""
    try:
        r = json.loads((Path(run_dir) / RegimeStage.name / REGIME_FILE).read_text())
    except (OSError, ValueError):
        return None
    if "error" in r:
        return f"regime diagnosis: not made ({r['error']})"
    op = "<" if r["kinematic_enough"] else "≥"
    return (f"regime diagnosis (kinematic support): {r['verdict']} — predicted kinematic phase error "
            f"{r['kinematic_phase_error_rad']:.3f} rad {op} {r['threshold_rad']:g} rad; thickness along h "
            f"{r['thickness_along_h_nm']:.0f} nm = {r['thickness_over_extinction']:.2f} extinction lengths, "
            f"{r['thickness_over_absorption']:.3f} absorption lengths; refraction shift "
            f"{r['refraction_shift_rad'] * 1e6:+.1f} µrad")


def lengths_line(reflection: Any) -> str:
    """The characteristic lengths of ``reflection`` (:class:`dynbcdi.materials.ReflectionConstants`, σ) in one
    line, for commands that have no crystal support yet (``dynbcdi prepare``)."""
    h, k, l = reflection.hkl  # noqa: E741
    return (f"{reflection.material} ({h} {k} {l}) at {reflection.energy_eV / 1e3:.4g} keV: extinction length "
            f"(symmetric Bragg, σ) {reflection.extinction_length_bragg_m * 1e9:.1f} nm, Pendellösung distance "
            f"(symmetric Laue, σ) {reflection.pendellosung_length_laue_m * 1e9:.0f} nm, absorption length "
            f"{reflection.absorption_length_m * 1e6:.2f} µm; the regime diagnosis (kinematic phase error) needs "
            "a crystal support: `dynbcdi run`, or `dynbcdi info --support MASK.npy --voxel-nm D`")
