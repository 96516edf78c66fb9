"""The run report: one self-contained HTML file (figures embedded as base64 PNG, no external files).

Sections (HTML ids): ``summary``, ``regime``, ``data-vs-model``, ``rocking-curves``, ``deviance``, ``residuals``,
``complex-slices``, ``strain``, ``isosurfaces``, ``diffraction``, ``convergence``, ``two-theta``,
``timings``, ``settings``, ``versions``, ``provenance``. The PNG files are also written next to it
(``figures/*.png``) for papers and slides.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dynbcdi.workflow.cache import StageContext, read_manifest, versions
from dynbcdi.provenance import as_plain
from dynbcdi.workflow.config import RunConfig

__all__ = ["REPORT_NAME", "ReportStage", "SECTIONS", "two_theta_check"]

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
#: (id, title) of every section, in order.
SECTIONS = (("summary", "Summary"), ("regime", "Regime diagnosis: is kinematic phasing enough?"),
            ("data-vs-model", "Data and models, selected frames (log scale)"),
            ("rocking-curves", "Rocking curves"), ("deviance", "Poisson deviance per frame"),
            ("residuals", "Residual maps"), ("complex-slices", "Complex crystal function, central slices"),
            ("strain", "Phase, displacement and strain"), ("isosurfaces", "Isosurfaces"),
            ("diffraction", "Measured diffraction pattern"), ("convergence", "Convergence"),
            ("two-theta", "2θ check"), ("timings", "Stages and timings"), ("settings", "Settings"),
            ("versions", "Versions"), ("provenance", "Provenance"))

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .5em;
text-align:left;vertical-align:top}th{background:#f4f4f4}img{max-width:100%;height:auto}
.note{color:#555;font-size:.9em}nav a{margin-right:.8em;font-size:.9em}code{font-size:.9em}"""


class ReportStage:
    """HTML report from the artifacts of every other stage."""

    name, version = "report", 2
    needs = ("prepare", "phase", "grid", "regime", "dynamical", "analysis", "patterns")

    def settings(self, config: RunConfig) -> dict[str, Any]:
        settings = config.to_dict()
        settings.pop("base_dir", None)
        return {"config": settings}  # every setting is printed in the report

    def run(self, ctx: StageContext) -> list[str]:
        figures_dir = ctx.folder / "figures"
        figures_dir.mkdir()
        sections = build_sections(ctx, figures_dir)
        page = render(sections, title=_title(ctx))
        (ctx.folder / REPORT_NAME).write_text(page, encoding="utf-8")
        log.info("report: %s", ctx.folder / REPORT_NAME)
        return [REPORT_NAME, *sorted(f"figures/{p.name}" for p in figures_dir.iterdir())]

    def load(self, folder: Path) -> Path:
        return folder / REPORT_NAME


def _title(ctx: StageContext) -> str:
    dataset = ctx.input("prepare")
    r = dataset.reflection
    hkl = "".join(str(i) for i in r.hkl)
    return f"dynbcdi run — {r.material} ({hkl}) at {r.energy_eV / 1e3:.3g} keV, {dataset.intensity.shape[0]} frames"


def _png(fig: Any, path: Path) -> str:
    """Save ``fig`` to ``path`` and return it as an <img> tag with the PNG inline (base64)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    path.write_bytes(buf.getvalue())
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _figure(make: Callable[[], Any], path: Path) -> str:
    """The figure as an inline image, or a one-line note when it cannot be drawn (the report still renders)."""
    try:
        return _png(make(), path)
    except (ValueError, RuntimeError) as err:  # e.g. no isosurface at that level
        log.warning("figure %s not drawn: %s", path.stem, err)
        return f'<p class="note">figure not drawn: {html.escape(str(err))}</p>'


def build_sections(ctx: StageContext, figures_dir: Path) -> dict[str, str]:
    """Section id → HTML body of every section in :data:`SECTIONS`."""
    from dynbcdi import plot
    from dynbcdi.workflow import figures

    dataset, ana, pat = ctx.input("prepare"), ctx.input("analysis"), ctx.input("patterns")
    phased, dyn = ctx.input("phase"), ctx.input("dynamical")
    fig = {name: (lambda make, name=name: _figure(make, figures_dir / f"{name}.png"))
           for name in ("frames", "rocking_curves", "deviance", "residuals", "complex_slices", "strain",
                        "crystal_isosurface", "diffraction_isosurface", "convergence", "uncertainty")}
    triples = {k: (ana.phase[k], ana.displacement_m[k] * 1e12, ana.strain[k]) for k in ana.phase}
    history = {"phasing: Fourier error (per iteration)": phased.history.get("error", [])}
    history["dynamical: loss (per epoch)"] = dyn.history.get("loss", [])
    return {
        "summary": _summary(ctx, dataset, ana, pat, dyn),
        "regime": _regime(ctx.input("regime")),
        "data-vs-model": _note("Expected photons of each model on the data's pixels; grey: masked pixels. The "
                               "kinematic model is the grid-frame kinematic result through the kinematic forward "
                               "model with the Poisson maximum-likelihood scale; the dynamical model is the "
                               "fitted one.") + fig["frames"](lambda: figures.frames_figure(pat)),
        "rocking-curves": fig["rocking_curves"](lambda: figures.rocking_figure(pat)),
        "deviance": _note("Dashed: the expected deviance of Poisson counts drawn from that very model (the floor "
                          "an exact model reaches: ≈ 1 per pixel for large counts, less for weak pixels).") + fig["deviance"](lambda: figures.deviance_figure(pat)),
        "residuals": fig["residuals"](lambda: figures.residual_figure(pat)),
        "complex-slices": _note("Brightness: amplitude; hue: phase. The kinematic result is aligned onto the "
                                "dynamical one (translation, twin, global phase).")
        + fig["complex_slices"](lambda: plot.complex_slices(ana.objects, ana.spacing_m)),
        "strain": _note(f"Inside the dynamical support; phase ramp removed: {ctx.config.output.remove_ramp}.")
        + fig["strain"](lambda: plot.strain_figure(triples, ana.supports["dynamical"], ana.spacing_m))
        + (fig["uncertainty"](lambda: plot.uncertainty_figure(dyn.maps, ana.spacing_m)) if dyn.maps else ""),
        "isosurfaces": fig["crystal_isosurface"](lambda: plot.crystal_isosurface(ana.objects, ana.spacing_m)),
        "diffraction": fig["diffraction_isosurface"](lambda: plot.diffraction_isosurface(dataset.intensity)),
        "convergence": fig["convergence"](lambda: plot.convergence(history, xlabel="iteration / epoch")),
        "two-theta": _table(two_theta_check(dataset)),
        "timings": _timings(ctx),
        "settings": _table(_flatten(ctx.config.to_dict())),
        "versions": _table(versions()),
        "provenance": _table(_flatten(_provenance(dataset))),
    }


def _summary(ctx: StageContext, dataset: Any, ana: Any, pat: Any, dyn: Any) -> str:
    dev, floor = pat.summary["deviance_per_pixel"], pat.summary["floor_per_pixel"]
    n, rows, cols = dataset.intensity.shape
    size = ana.summary["dynamical"]
    ext = ana.summary["extinction_length_nm"]
    rows_ = {
        "data": f"{n} frames × {rows} × {cols} pixels, {dataset.intensity.sum():.4g} photons, "
                f"{100 * np.mean(dataset.valid):.1f} % valid pixels",
        "grid": f"{ana.objects['dynamical'].shape} voxels of "
                f"{' × '.join(f'{s * 1e9:.1f}' for s in ana.spacing_m)} nm (z, y, x)",
        "crystal (dynamical support)": f"extent {size['extent_nm']} nm (z, y, x), volume-equivalent diameter "
                                       f"{size['equivalent_diameter_nm']:.0f} nm = "
                                       f"{size['equivalent_diameter_nm'] / ext:.2f} Bragg extinction lengths "
                                       f"({ext:.1f} nm)",
        "Poisson deviance per pixel": f"kinematic {dev['kinematic']:.4f} (floor {floor['kinematic']:.4f}, ratio "
                                      f"{dev['kinematic'] / floor['kinematic']:.2f}); dynamical "
                                      f"{dev['dynamical']:.4f} (floor {floor['dynamical']:.4f}, ratio "
                                      f"{dev['dynamical'] / floor['dynamical']:.2f})",
        "dynamical reconstruction": f"{ctx.config.reconstruction.model} model, {dyn.metadata.get('stopped_reason')} "
                                    f"after {dyn.metadata.get('epochs')} epochs",
        **_fit_rows(dyn.metadata),
        "regime diagnosis (kinematic support)": _regime_verdict(ctx.input("regime")),
        "kinematic vs dynamical": _agreement_text(ana.summary["kinematic_vs_dynamical"]),
        "strain RMS": f"kinematic {ana.summary['kinematic']['strain_rms']:.3g}, dynamical "
                      f"{size['strain_rms']:.3g}",
    }
    return _table(rows_)


def _regime_verdict(regime: dict[str, Any]) -> str:
    """The verdict of the regime stage in a few words (the numbers are in the ``regime`` section)."""
    if "error" in regime:
        return f"not made: {regime['error']}"
    return (f"{regime['verdict']} (predicted kinematic phase error {regime['kinematic_phase_error_rad']:.3f} rad, "
            f"criterion {regime['threshold_rad']:g} rad)")


def _regime(regime: dict[str, Any]) -> str:
    """The regime section: the diagnosis table of :mod:`dynbcdi.analysis.regime` on the measured support."""
    sup = regime["support"]
    how = _note(
        f"Crystal shape: the support of the kinematic result on the grid ({sup['voxels']} voxels of "
        f"{' × '.join(f'{s:.1f}' for s in sup['spacing_nm'])} nm, smoothed amplitude above "
        f"{sup['threshold']:g} of its maximum). That shape, unstrained, is simulated with the dynamical (TTE) "
        f"model in this scan's geometry ({regime['polarization']} polarization) on a coarse grid, and the "
        "kinematic reconstruction of those patterns is compared with it: the phase error in the table is what "
        "kinematic phasing would show even for a perfect crystal (a lower bound). The verdict compares it with the "
        "criterion (dynbcdi.analysis.regime; docs/PHYSICS.md, Regime diagnosis).")
    if "error" in regime:
        return how + _note(f"The diagnosis could not be made: {regime['error']}")
    r, shift = regime, regime["refraction_shift_rad"]
    rows = {
        "crystal thickness along h": f"{r['thickness_along_h_nm']:.0f} nm",
        "thickness / extinction length": f"{r['thickness_over_extinction']:.2f} (symmetric Bragg t_B = "
                                         f"{r['extinction_length_nm']:.1f} nm)",
        "thickness / absorption length": f"{r['thickness_over_absorption']:.3f} (1/μ = "
                                         f"{r['absorption_length_nm'] / 1e3:.2f} µm)",
        "predicted refraction shift of the rocking curve": f"{shift * 1e6:+.1f} µrad = {np.rad2deg(shift):+.5f}°",
        "kinematic phase error (Bragg peak centred)": f"{r['kinematic_phase_error_rad']:.3f} rad RMS",
        "… with the true Bragg angle (no ramp removed)": f"{r['kinematic_phase_error_no_ramp_rad']:.3f} rad RMS",
        "… from refraction and absorption alone": f"{r['refraction_phase_error_rad']:.3f} rad RMS",
        "… beyond refraction (extinction, multiple scattering)": f"{r['beyond_refraction_phase_error_rad']:.3f} "
                                                                 "rad RMS",
        "kinematic amplitude error": f"{r['kinematic_amplitude_error']:.3f}",
        "estimated on": f"{' × '.join(map(str, r['coarse_grid']))} grid of {r['coarse_voxel_nm']:.1f} nm voxels, "
                        f"{r['n_angles']} angles, {r['seconds']:.1f} s",
    }
    op = "<" if r["kinematic_enough"] else "≥"
    verdict = (f"Verdict: {r['verdict']} (predicted kinematic phase error {r['kinematic_phase_error_rad']:.3f} rad "
               f"{op} {r['threshold_rad']:g} rad).")
    return f"<p><b>{html.escape(verdict)}</b></p>" + _table(rows) + how


def _agreement_text(agreement: dict[str, Any]) -> str:
    """The alignment of the kinematic result onto the dynamical one, in words."""
    shift = ", ".join(f"{v:+.2f}" for v in agreement["shift_vox"])
    twin = "its twin" if agreement["twin"] else "the result itself"
    return (f"complex correlation {agreement['correlation']:.3f} after aligning {twin}, "
            f"shifted by ({shift}) voxel (z, y, x)")


def _fit_rows(meta: dict[str, Any]) -> dict[str, str]:
    """Fit statistics of the optimiser (fitted and free pixels) and the fitted measurement terms."""
    rows = {}
    fit = meta.get("fit")
    if isinstance(fit, dict):
        rows["optimiser fit (amplitude loss)"] = (f"{fit['loss_fit']:.4f}, Poisson floor {fit['floor_fit']:.4f}, "
                                                  f"ratio {fit['ratio']:.2f}")
        free = (f"free pixels {fit['deviance_free']:.4f} (floor {fit['deviance_floor_free']:.4f})"
                if np.isfinite(fit["deviance_free"]) else "no free pixels held out (reconstruction.terms.free_fraction)")
        rows["optimiser fit (deviance per pixel)"] = (f"fitted pixels {fit['deviance_fit']:.4f} (floor "
                                                      f"{fit['deviance_floor_fit']:.4f}); {free}")
    terms = {k.removeprefix("terms_"): v for k, v in meta.items() if k.startswith("terms_")}
    if terms:
        frame = np.asarray(terms.get("frame_scales", [1.0]), float)
        blur = np.atleast_1d(np.asarray(terms.get("blur_sigma_px", [0.0]), float))
        rows["fitted measurement terms"] = (
            f"rocking offset {np.rad2deg(float(terms.get('rocking_offset_rad', 0.0))):+.5f}° "
            f"({float(terms.get('rocking_offset_steps', 0.0)):+.3f} steps); frame scales "
            f"{frame.min():.3f}–{frame.max():.3f}; background {float(terms.get('background', 0.0)):.3g} "
            f"photons/pixel; blur σ {', '.join(f'{b:.2f}' for b in blur)} px")
    return rows


def two_theta_check(dataset: Any) -> dict[str, str]:
    """Measured 2θ (angle between k0 and kh of the geometry) against 2θB of the reflection.

    The mismatch is also given as the lattice-parameter offset Δa/a = −cot θB · Δθ that would explain
    it, or the equal relative energy offset ΔE/E = Δa/a (a smaller measured 2θ means a larger d or a
    shorter wavelength). Values from the prepare step's own check, where it made
    one, are listed under "prepare".
    """
    g, r = dataset.geometry, dataset.reflection
    cos = float(np.dot(g.k0, g.kh) / (np.linalg.norm(g.k0) * np.linalg.norm(g.kh)))
    measured = float(np.arccos(np.clip(cos, -1, 1)))
    expected = 2 * float(r.bragg_angle_rad)
    dtheta = (measured - expected) / 2
    da_a = -dtheta / np.tan(r.bragg_angle_rad)
    out = {"measured 2θ (deg)": f"{np.rad2deg(measured):.4f}",
           "expected 2θB (deg)": f"{np.rad2deg(expected):.4f} ({r.material} {tuple(r.hkl)}, {r.energy_eV:.1f} eV)",
           "mismatch (deg)": f"{np.rad2deg(measured - expected):+.4f}",
           "equivalent Δa/a": f"{da_a:+.2e}", "equivalent ΔE (eV)": f"{da_a * r.energy_eV:+.1f}"}
    prov = dataset.metadata.get("provenance", {}) if isinstance(dataset.metadata, dict) else {}
    for key in ("two_theta", "two_theta_check", "2theta"):
        if isinstance(prov, dict) and key in prov:
            out.update({f"prepare: {k}": v for k, v in _flatten(prov[key]).items()})
    return out


def _provenance(dataset: Any) -> dict[str, Any]:
    meta = dataset.metadata if isinstance(dataset.metadata, dict) else {}
    prov = meta.get("provenance")
    if prov is None:  # a dataset not written by the prepare step: show its scalar metadata
        prov = {k: v for k, v in meta.items() if not isinstance(v, np.ndarray)}
    return prov if isinstance(prov, dict) else {"provenance": prov}


def _timings(ctx: StageContext) -> str:
    head = ("stage", "status this run", "wall (s)", "CPU (s)", "load", "finished (UTC)", "key")
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    total = 0.0
    for name in ReportStage.needs:
        r = read_manifest(ctx.run_dir / name)
        if r is None:
            continue
        total += r.seconds
        cells = (name, "reused" if r.finished_utc < ctx.started_utc else "ran", f"{r.seconds:.1f}",
                 f"{r.cpu_seconds:.1f}", f"{r.load_average:.1f}", r.finished_utc, f"<code>{r.key[:12]}</code>")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows.append(f"<tr><td>report</td><td>ran</td><td colspan=5>(this page, {now})</td></tr>")
    return f"<table>{''.join(rows)}</table>" + _note(
        f"Sum of the stages' wall times: {total:.0f} s. CPU: all threads of the process; load: the machine's "
        "5-minute load average when the stage finished (wall times grow with it, CPU times much less). A stage "
        "is reused while its settings and inputs are unchanged.")


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts → {"a.b.c": text}; long lists shortened to their length, first and last items."""
    value = as_plain(value)
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: "{}"}
    if isinstance(value, list) and len(value) > 8:
        value = f"{len(value)} items: {json.dumps(value[0], default=str)} … {json.dumps(value[-1], default=str)}"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return {prefix or "value": text}


def _table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def render(sections: dict[str, str], title: str) -> str:
    """The complete HTML page: title, navigation, every section of :data:`SECTIONS` in order."""
    nav = " ".join(f'<a href="#{sid}">{html.escape(t)}</a>' for sid, t in SECTIONS)
    body = "\n".join(f'<section id="{sid}"><h2>{html.escape(t)}</h2>\n{sections.get(sid, "")}</section>'
                     for sid, t in SECTIONS)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="note">Written by dynbcdi {html.escape(versions()["dynbcdi"])} on {stamp}.</p>'
            f"<nav>{nav}</nav>\n{body}\n</body></html>\n")
