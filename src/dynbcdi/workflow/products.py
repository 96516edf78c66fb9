"""The product stages of `dynbcdi run`: analysis (displacement, strain, VTK) and model patterns.

=========  ===========================================  ============================================
stage      artifact                                     typed as
=========  ===========================================  ============================================
analysis   ``analysis.npz``, ``analysis.json``, ``*.vti``  :class:`AnalysisArtifact`
patterns   ``patterns.npz``, ``patterns.json``              :class:`PatternArtifact`
=========  ===========================================  ============================================
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dynbcdi.workflow.cache import StageContext
from dynbcdi.workflow.config import RunConfig

__all__ = ["AnalysisArtifact", "AnalysisStage", "PatternArtifact", "PatternsStage", "expected_patterns",
           "poisson_deviance", "report_frames"]

log = logging.getLogger(__name__)

LABELS = ("kinematic", "dynamical")


@dataclass
class AnalysisArtifact:
    """Displacement and strain of both reconstructions on the grid (arrays (Z, Y, X), SI units).

    objects: label → complex object; the kinematic one aligned onto the dynamical one (translation,
    twin, global phase) so that figures compare like with like. supports: label → bool.
    phase (rad), displacement_m (m), strain (1): label → float arrays, NaN outside the support.
    spacing_m: (dz, dy, dx). summary: JSON-able numbers (support size, extent, RMS strain, ...).
    """

    objects: dict[str, np.ndarray]
    supports: dict[str, np.ndarray]
    phase: dict[str, np.ndarray]
    displacement_m: dict[str, np.ndarray]
    strain: dict[str, np.ndarray]
    spacing_m: tuple[float, float, float]
    summary: dict[str, Any] = field(default_factory=dict)


class AnalysisStage:
    """Supports, phase, displacement u_h and strain ε_h of the kinematic and dynamical results; VTK files."""

    name, needs, version = "analysis", ("prepare", "grid", "dynamical"), 1

    def settings(self, config: RunConfig) -> dict[str, Any]:
        o = config.output
        return {"support_threshold": o.support_threshold, "remove_ramp": o.remove_ramp, "vti": o.vti}

    def run(self, ctx: StageContext) -> list[str]:
        from dynbcdi.analysis import align_to, strain_analysis, support_from_amplitude
        from dynbcdi.io import write_vti

        o = ctx.config.output
        dataset = ctx.input("prepare")
        dyn_file = ctx.input("dynamical")
        dyn = dyn_file.obj.astype(np.complex128)
        kin = ctx.input("grid").obj.astype(np.complex128)
        supports = {"dynamical": support_from_amplitude(dyn, o.support_threshold)}
        aligned = align_to(kin, dyn, support=supports["dynamical"])
        objects = {"kinematic": aligned.obj.astype(np.complex128), "dynamical": dyn}
        supports["kinematic"] = support_from_amplitude(objects["kinematic"], o.support_threshold)
        h_dir = _h_direction(dataset)
        files, arrays, summary = [], {}, _summary_base(dataset, aligned)
        spread = _uncertainty_arrays(dyn_file.maps)
        for label in LABELS:
            res = strain_analysis(objects[label], supports[label], dataset.reflection.h_norm, dataset.spacing_m,
                                  h_dir, remove_ramp=o.remove_ramp)
            arrays.update({f"object_{label}": objects[label], f"support_{label}": supports[label],
                           f"phase_{label}": res.phase, f"displacement_m_{label}": res.displacement_m,
                           f"strain_{label}": res.strain})
            summary[label] = _stats(supports[label], res, dataset.spacing_m)
            if o.vti:
                files.append(f"{label}.vti")
                write_vti(ctx.folder / files[-1], {"amplitude": np.abs(objects[label]), "phase": res.phase,
                                                   "displacement_pm": res.displacement_m * 1e12,
                                                   "strain": res.strain, "support": supports[label],
                                                   **(spread if label == "dynamical" else {})},
                          dataset.spacing_m)
        np.savez_compressed(ctx.folder / "analysis.npz", spacing_m=np.asarray(dataset.spacing_m), **arrays)
        (ctx.folder / "analysis.json").write_text(json.dumps(summary, indent=1))
        log.info("analysis: crystal %s nm (dynamical support), strain RMS kinematic %.2e, dynamical %.2e",
                 summary["dynamical"]["extent_nm"], summary["kinematic"]["strain_rms"],
                 summary["dynamical"]["strain_rms"])
        return ["analysis.npz", "analysis.json", *files]

    def load(self, folder: Path) -> AnalysisArtifact:
        with np.load(folder / "analysis.npz") as z:
            def pick(prefix: str) -> dict[str, np.ndarray]:
                return {label: z[f"{prefix}_{label}"] for label in LABELS}

            return AnalysisArtifact(objects=pick("object"), supports=pick("support"), phase=pick("phase"),
                                    displacement_m=pick("displacement_m"), strain=pick("strain"),
                                    spacing_m=tuple(float(s) for s in z["spacing_m"]),
                                    summary=json.loads((folder / "analysis.json").read_text()))


def _uncertainty_arrays(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The spread over repeats (``[reconstruction] repeats``) for the .vti file, if it was computed."""
    if "displacement_std_m" not in maps:
        return {}
    return {"displacement_std_pm": maps["displacement_std_m"] * 1e12, "strain_std": maps["strain_std"]}


def _h_direction(dataset: Any) -> np.ndarray:
    h = dataset.geometry.grid_frame().to_grid(dataset.geometry.h)
    return h / np.linalg.norm(h)


def _summary_base(dataset: Any, aligned: Any) -> dict[str, Any]:
    r = dataset.reflection
    return {"extinction_length_nm": float(r.extinction_length_bragg_m) * 1e9,
            "absorption_length_nm": float(r.absorption_length_m) * 1e9,
            "kinematic_vs_dynamical": {"correlation": aligned.correlation, "twin": bool(aligned.twin),
                                       "shift_vox": [float(s) for s in aligned.shift_vox]}}


def _stats(support: np.ndarray, res: Any, spacing_m: tuple[float, float, float]) -> dict[str, Any]:
    """Size of the support (voxels, extent (z, y, x) nm, volume-equivalent sphere diameter) and RMS values."""
    idx = np.nonzero(support)
    extent = [float((i.max() - i.min() + 1) * d * 1e9) if i.size else 0.0 for i, d in zip(idx, spacing_m)]
    volume = float(support.sum() * np.prod(spacing_m))
    finite = np.isfinite(res.strain)
    return {"voxels": int(support.sum()), "extent_nm": [round(e, 1) for e in extent],
            "equivalent_diameter_nm": float((6 * volume / np.pi) ** (1 / 3) * 1e9),
            "phase_rms_rad": float(np.nanstd(np.where(support, res.phase, np.nan))),
            "displacement_rms_pm": float(np.nanstd(np.where(support, res.displacement_m, np.nan)) * 1e12),
            "strain_rms": float(np.sqrt(np.mean(res.strain[finite] ** 2))) if finite.any() else float("nan")}


@dataclass
class PatternArtifact:
    """Data against the kinematic and dynamical models, per frame and for a few frames.

    angles_rad: (N,) rocking offsets. frames: (F,) frame indices shown as images.
    images: name ("data", "kinematic", "dynamical") → (F, rows, cols) photons (NaN = invalid pixel).
    integrated: name → (N,) photons summed over valid pixels per frame (rocking curves).
    deviance: model → (N,) Poisson deviance per valid pixel per frame; floor: model → (N,) its
    expectation under Poisson noise alone if that model were exact. residual: model → (rows, cols)
    deviance per pixel averaged over frames. scales: model → photons per model unit used.
    summary: overall deviance per pixel and floors (JSON-able).
    """

    angles_rad: np.ndarray
    frames: np.ndarray
    images: dict[str, np.ndarray]
    integrated: dict[str, np.ndarray]
    deviance: dict[str, np.ndarray]
    floor: dict[str, np.ndarray]
    residual: dict[str, np.ndarray]
    summary: dict[str, Any]


def poisson_deviance(data: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Per-pixel Poisson deviance 2[I ln(I/λ) − (I − λ)] (I ln I = 0 at I = 0), same shape as the inputs.

    data: photons ≥ 0. model: expected photons λ > 0 (clipped at 1e-12).
    """
    lam = np.maximum(np.asarray(model, float), 1e-12)
    d = np.asarray(data, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(d > 0, d * np.log(d / lam), 0.0)
    return 2.0 * (log_term - (d - lam))


def report_frames(curve: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` distinct frame indices along the rocking curve ``curve`` (N,): the peak frame and,
    on each side, the frames nearest to the peak where the curve has fallen to levels spread on a log
    scale from 1/3 down to 1/100 of the peak (the tails, where the models differ most)."""
    curve = np.clip(np.asarray(curve, float), 0, None)
    k = int(np.argmax(curve))
    n_side = max((n - 1) // 2, 0)
    levels = np.logspace(-0.5, -2, n_side) if n_side > 1 else np.array([0.1] * n_side)
    frames = [k]
    for level in levels:
        below = np.nonzero(curve <= level * curve[k])[0]
        left, right = below[below < k], below[below > k]
        frames += [int(left.max()) if left.size else 0, int(right.min()) if right.size else len(curve) - 1]
    if n > 1 and n % 2 == 0:  # an even count: one more frame halfway into the right tail
        frames.append(min(k + max((len(curve) - k) // 4, 1), len(curve) - 1))
    return np.unique(frames)


def expected_patterns(model: Any, obj: np.ndarray, dq: np.ndarray, chunk: int) -> np.ndarray:
    """Model patterns |F⊥ Eh|² of ``obj`` (Z, Y, X) complex for every Δq row of ``dq`` (N, 3) rad/m,
    computed ``chunk`` angles at a time without gradients; (N, rows, cols) float64, no scale."""
    import torch

    S = torch.as_tensor(obj, dtype=torch.complex64)
    dq_t = torch.as_tensor(dq, dtype=torch.float64)
    out = []
    with torch.no_grad():
        for i in range(0, len(dq_t), chunk):
            out.append(model(S, dq_t[i:i + chunk]).double().numpy())
    return np.concatenate(out)


class PatternsStage:
    """Expected photons of the kinematic and dynamical results for every frame, deviance and residuals."""

    name, needs, version = "patterns", ("prepare", "grid", "dynamical"), 2

    def settings(self, config: RunConfig) -> dict[str, Any]:
        return {"report_frames": config.output.report_frames, "model": config.reconstruction.model}

    def run(self, ctx: StageContext) -> list[str]:
        from dynbcdi.reconstruct.pipeline import forward_model, rocking_step_rad
        from dynbcdi.workflow.measure import expected_photons, ml_scale
        from dynbcdi.workflow.stages import terms_summary

        dataset, grid, dyn = ctx.input("prepare"), ctx.input("grid"), ctx.input("dynamical")
        chunk = ctx.config.output.pattern_chunk
        valid = np.broadcast_to(dataset.valid, dataset.intensity.shape)
        data = np.where(valid, dataset.intensity, 0.0)
        dq = dataset.geometry.dq_grid()
        kin_raw = expected_patterns(forward_model(dataset, "kinematic"), grid.obj, dq, chunk)
        kin_scale = ml_scale(data, kin_raw, valid)
        fitted = terms_summary(dyn.metadata) or {"scale": dyn.metadata.get("scale", 1.0)}
        dyn_model = expected_photons(forward_model(dataset, ctx.config.reconstruction.model), dq, dyn.obj,
                                     ctx.config.reconstruction.config, fitted, chunk,
                                     rocking_step_rad(dataset.geometry) or 1.0)
        models = {"kinematic": kin_raw * kin_scale, "dynamical": dyn_model}
        arrays, summary = _pattern_arrays(data, valid, models, ctx.config.output.report_frames)
        summary["scales"] = {"kinematic": kin_scale, "dynamical": float(fitted.get("scale", 1.0))}
        np.savez_compressed(ctx.folder / "patterns.npz", angles_rad=dataset.geometry.rocking_angles_rad, **arrays)
        (ctx.folder / "patterns.json").write_text(json.dumps(summary, indent=1))
        log.info("Poisson deviance per pixel: kinematic %.3f, dynamical %.3f (floor %.3f)",
                 summary["deviance_per_pixel"]["kinematic"], summary["deviance_per_pixel"]["dynamical"],
                 summary["floor_per_pixel"]["dynamical"])
        return ["patterns.npz", "patterns.json"]

    def load(self, folder: Path) -> PatternArtifact:
        with np.load(folder / "patterns.npz") as z:
            def pick(prefix: str, names=LABELS) -> dict[str, np.ndarray]:
                return {n: z[f"{prefix}_{n}"] for n in names}

            return PatternArtifact(angles_rad=z["angles_rad"], frames=z["frames"],
                                   images=pick("image", ("data", *LABELS)),
                                   integrated=pick("integrated", ("data", *LABELS)), deviance=pick("deviance"),
                                   floor=pick("floor"), residual=pick("residual"),
                                   summary=json.loads((folder / "patterns.json").read_text()))


def _pattern_arrays(data: np.ndarray, valid: np.ndarray, models: dict[str, np.ndarray],
                    n_frames: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-frame sums, deviance and floor, residual maps and the frames shown (see PatternArtifact)."""
    import torch

    from dynbcdi.reconstruct.loss import expected_poisson_terms

    n_valid = np.maximum(valid.sum(axis=(1, 2)), 1)
    curve = data.sum(axis=(1, 2))
    frames = report_frames(curve, n_frames)
    arrays: dict[str, np.ndarray] = {"frames": frames, "integrated_data": curve,
                                     "image_data": np.where(valid[frames], data[frames], np.nan)}
    summary: dict[str, Any] = {"deviance_per_pixel": {}, "floor_per_pixel": {}, "frames": frames.tolist()}
    for label, lam in models.items():
        dev = np.where(valid, poisson_deviance(data, lam), 0.0)
        # The floor: the expected deviance of Poisson samples of this very model against it.
        floor = np.where(valid, expected_poisson_terms(torch.as_tensor(lam))[1].numpy(), 0.0)
        arrays.update({f"integrated_{label}": np.sum(lam * valid, axis=(1, 2)),
                       f"deviance_{label}": dev.sum(axis=(1, 2)) / n_valid,
                       f"floor_{label}": floor.sum(axis=(1, 2)) / n_valid,
                       f"residual_{label}": dev.sum(axis=0) / np.maximum(valid.sum(axis=0), 1),
                       f"image_{label}": np.where(valid[frames], lam[frames], np.nan)})
        summary["deviance_per_pixel"][label] = float(dev.sum() / valid.sum())
        summary["floor_per_pixel"][label] = float(floor.sum() / valid.sum())
    return arrays, summary
