"""Rocking curves (paper Fig. 2b) and convergence curves."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["peak_position", "rocking_curves", "convergence"]


def peak_position(angles: np.ndarray, curve: np.ndarray) -> float:
    """Sub-sample peak position: vertex of the parabola through the maximum and its neighbours.

    angles : (N,) increasing, any unit. curve : (N,) values. Returns the peak in the unit of angles.
    """
    angles, curve = np.asarray(angles, float), np.asarray(curve, float)
    k = int(np.argmax(curve))
    if k == 0 or k == len(curve) - 1:
        return float(angles[k])
    y0, y1, y2 = curve[k - 1:k + 2]
    denom = y0 - 2 * y1 + y2
    frac = 0.0 if denom == 0 else 0.5 * (y0 - y2) / denom
    return float(np.interp(k + frac, np.arange(len(angles)), angles))


def rocking_curves(
    angles_rad: np.ndarray,
    curves: dict[str, np.ndarray],
    annotate_shift: bool = True,
) -> Figure:
    """Total diffracted intensity vs rocking angle, log scale (paper Fig. 2b).

    angles_rad : (N,) rocking offsets Δθ, rad (shown in degrees). curves : label → (N,) total
    intensity (e.g. detector sums of the kinematic and dynamical patterns); each is normalised to
    its maximum. annotate_shift : mark each peak and print its shift from the *first* curve's
    peak, in degrees and µrad (the refraction shift of dynamical diffraction is positive).
    Returns a Figure with one axes.
    """
    angles = np.asarray(angles_rad, float)
    if angles.ndim != 1 or angles.size < 2 or np.any(np.diff(angles) <= 0):
        raise ValueError(f"angles_rad must be a strictly increasing (N,) array, got shape {angles.shape}")
    if not curves:
        raise ValueError("curves is empty")
    for label, c in curves.items():
        if np.shape(c) != angles.shape:
            raise ValueError(f"curve {label!r} has shape {np.shape(c)}, expected {angles.shape}")
    deg = np.rad2deg(angles)
    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ref_peak = None
    for i, (label, c) in enumerate(curves.items()):
        c = np.asarray(c, float)
        norm = c / c.max() if c.max() > 0 else c
        (line,) = ax.semilogy(deg, np.clip(norm, 1e-12, None), marker=".", label=label)
        if not annotate_shift:
            continue
        peak = peak_position(deg, c)
        ax.axvline(peak, color=line.get_color(), ls="--", lw=0.8)
        if ref_peak is None:
            ref_peak = peak
        else:
            shift = peak - ref_peak
            ax.annotate(f"peak shift {shift:+.4f}° ({np.deg2rad(shift) * 1e6:+.1f} µrad)", xy=(peak, 1.0),
                        xytext=(0.02, 0.97 - 0.07 * i), textcoords="axes fraction", fontsize=8,
                        color=line.get_color(), va="top")
    ax.set_xlabel("Δθ (deg)")
    ax.set_ylabel("normalised total intensity")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def convergence(history: dict[str, Sequence[float]], xlabel: str = "epoch") -> Figure:
    """One panel per history series (loss, error, ...) vs iteration, log scale where positive.

    history : name → (n,) values per epoch/iteration. Returns a Figure with len(history) axes
    sharing the x axis.
    """
    series = {k: np.asarray(v, float) for k, v in history.items() if len(v) > 0}
    if not series:
        raise ValueError("history has no non-empty series")
    fig = Figure(figsize=(6, 2.2 * len(series) + 0.5), layout="constrained")
    axes = fig.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, series.items()):
        ax.plot(np.arange(1, values.size + 1), values, lw=1.2)
        if np.all(values[np.isfinite(values)] > 0):
            ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[-1].set_xlabel(xlabel)
    return fig
