"""Figures of a simulated dataset (paper Fig. 2b–e) built with :mod:`dynbcdi.plot`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dynbcdi.io.dataset import Dataset
from dynbcdi.simulate.scan import rocking_curve

# Stack names in metadata (``intensity_<key>``) and their legend labels; the first present is the
# reference of the peak-shift annotation, so the kinematic curve comes first.
CURVE_LABELS = {"kinematic": "kinematic", "refraction_kinematic": "kinematic + refraction",
                "dynamical": "dynamical (TTE)"}


def rocking_curve_figure(dataset: Dataset) -> Figure:
    """Paper Fig. 2b: normalised total intensity vs Δθ (log) of the noise-free stacks in ``dataset``.

    The peak shifts from the kinematic peak are annotated by :func:`dynbcdi.plot.rocking_curves`;
    the predicted refraction shift (metadata ``predicted_refraction_shift_rad``) is printed below.
    """
    from dynbcdi.plot import rocking_curves

    curves = {label: rocking_curve(np.asarray(dataset.metadata[f"intensity_{key}"], float))
              for key, label in CURVE_LABELS.items() if f"intensity_{key}" in dataset.metadata}
    if not curves:
        curves = {"measured": rocking_curve(dataset.intensity, dataset.valid)}
    fig = rocking_curves(dataset.geometry.rocking_angles_rad, curves, annotate_shift=len(curves) > 1)
    predicted = dataset.metadata.get("predicted_refraction_shift_rad")
    if predicted is not None:
        fig.axes[0].annotate(f"predicted refraction shift {np.degrees(predicted):+.4f}° ({predicted * 1e6:+.1f} µrad)",
                             xy=(0.02, 0.03), xycoords="axes fraction", fontsize=8)
    return fig


def truth_figure(dataset: Dataset) -> Figure:
    """Paper Fig. 2c–e: central slices of the ground truth S, HSV (hue = phase, brightness = |S|)."""
    from dynbcdi.plot import complex_slices

    if dataset.truth is None:
        raise ValueError("dataset has no ground truth (not a simulation)")
    return complex_slices({"ground truth": dataset.truth}, dataset.spacing_m)


FIGURES = {"rocking_curves": rocking_curve_figure, "truth_slices": truth_figure}


def figure_paths(stem: str | Path) -> dict[str, Path]:
    """``{name: <stem>_<name>.png}`` of the figures :func:`write_figures` writes (checked before simulating)."""
    stem = Path(stem)
    return {name: stem.with_name(f"{stem.name}_{name}.png") for name in FIGURES}


def write_figures(dataset: Dataset, stem: str | Path, overwrite: bool = False) -> list[Path]:
    """Write ``<stem>_rocking_curves.png`` and ``<stem>_truth_slices.png``; returns the paths."""
    from dynbcdi.io.filecheck import check_new_output

    out = []
    for name, path in figure_paths(stem).items():
        check_new_output(path, "figure", overwrite=overwrite, remedy="pass overwrite to replace it")
        FIGURES[name](dataset).savefig(path, dpi=150)
        out.append(path)
    return out
