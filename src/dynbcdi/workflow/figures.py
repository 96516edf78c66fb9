"""Figures of the run report that compare data with models (the crystal figures are ``dynbcdi.plot``'s).

Every function returns a matplotlib ``Figure`` (no pyplot, headless).
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from dynbcdi.workflow.products import PatternArtifact

__all__ = ["deviance_figure", "frames_figure", "residual_figure", "rocking_figure"]

MODEL_STYLE = {"data": dict(color="k", marker=".", ls="none", ms=4),
               "kinematic": dict(color="tab:blue", lw=1.4),
               "dynamical": dict(color="tab:red", lw=1.4)}


def frames_figure(pat: PatternArtifact) -> Figure:
    """Data, kinematic and dynamical model of the report frames, log10 photons, one colour scale per row.

    Rows: frames (index j and Δθ in the title); columns: data, kinematic, dynamical. Invalid pixels
    are grey.
    """
    names = ("data", "kinematic", "dynamical")
    n = len(pat.frames)
    fig = Figure(figsize=(9, 2.9 * n + 0.3), layout="constrained")
    axes = fig.subplots(n, 3, squeeze=False)
    for row, j in enumerate(pat.frames):
        stack = [pat.images[name][row] for name in names]
        finite = np.concatenate([s[np.isfinite(s)].ravel() for s in stack])
        vmax = max(float(finite.max()) if finite.size else 1.0, 1.0)
        norm = LogNorm(vmin=max(vmax * 1e-4, 0.3), vmax=vmax)
        for col, (name, img) in enumerate(zip(names, stack)):
            ax = axes[row, col]
            im = ax.imshow(np.clip(img, norm.vmin, None), norm=norm, cmap="magma", origin="lower",
                           interpolation="nearest")
            ax.set_facecolor("0.6")
            ax.set_title(f"{name} — frame {int(j)} (Δθ = {np.rad2deg(pat.angles_rad[j]):+.4f}°)", fontsize=8)
            ax.tick_params(labelsize=6)
            ax.set_xlabel("column (pixel)", fontsize=7)
            ax.set_ylabel("row (pixel)", fontsize=7)
        fig.colorbar(im, ax=axes[row, :].tolist(), label="photons", shrink=0.9)
    return fig


def rocking_figure(pat: PatternArtifact) -> Figure:
    """Rocking curves: photons per frame (valid pixels) of data and both models, and model/data ratio."""
    deg = np.rad2deg(pat.angles_rad)
    fig = Figure(figsize=(7, 5.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.3))
    data = pat.integrated["data"]
    for name, curve in pat.integrated.items():
        label = name if name == "data" else f"{name} model"
        top.semilogy(deg, np.clip(curve, 1e-3, None), label=label, **MODEL_STYLE[name])
        if name != "data":
            with np.errstate(divide="ignore", invalid="ignore"):
                bottom.plot(deg, curve / data, label=label, **MODEL_STYLE[name])
    top.set_ylabel("photons per frame")
    top.legend(fontsize=8)
    top.grid(True, which="both", alpha=0.3)
    bottom.axhline(1.0, color="k", lw=0.8)
    bottom.set_ylim(0, 2)
    bottom.set_ylabel("model / data")
    bottom.set_xlabel("Δθ (deg)")
    bottom.grid(True, alpha=0.3)
    return fig


def deviance_figure(pat: PatternArtifact) -> Figure:
    """Poisson deviance per valid pixel for every frame, both models, with their Poisson floors (dashed)."""
    deg = np.rad2deg(pat.angles_rad)
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for name, dev in pat.deviance.items():
        style = {k: v for k, v in MODEL_STYLE[name].items() if k in ("color", "lw")}
        total = pat.summary["deviance_per_pixel"][name]
        ax.plot(deg, dev, label=f"{name} model ({total:.3f} per pixel)", **style)
        ax.plot(deg, pat.floor[name], ls="--", label=f"{name}: Poisson floor", color=style["color"], lw=0.8)
    ax.set_xlabel("Δθ (deg)")
    ax.set_ylabel("Poisson deviance per pixel")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def residual_figure(pat: PatternArtifact) -> Figure:
    """Maps of the Poisson deviance per pixel averaged over all frames, both models, one colour scale."""
    fig = Figure(figsize=(9, 4), layout="constrained")
    axes = fig.subplots(1, len(pat.residual), squeeze=False)[0]
    values = np.concatenate([r.ravel() for r in pat.residual.values()])
    vmax = float(np.percentile(values, 99.5)) or 1.0
    for ax, (name, res) in zip(axes, pat.residual.items()):
        im = ax.imshow(res, origin="lower", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{name} model: mean deviance per pixel", fontsize=9)
        ax.set_xlabel("column (pixel)", fontsize=8)
        ax.set_ylabel("row (pixel)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=axes.tolist(), label="deviance (mean over frames)", shrink=0.9)
    return fig
