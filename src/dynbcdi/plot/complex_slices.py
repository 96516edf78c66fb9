"""Central slices of complex crystal functions in the HSV scheme (paper Fig. 2c–k)."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure

from dynbcdi.plot._common import SLICE_NAMES, central_slices

__all__ = ["complex_to_rgb", "complex_slices"]


def complex_to_rgb(values: np.ndarray, amp_max: float | None = None) -> np.ndarray:
    """Map complex values to RGB: hue = phase ((−π, π] → [0, 1), red = 0 rad), value = |v|/amp_max.

    values : (...) complex. amp_max : amplitude shown at full brightness (default: max |v|).
    Returns (..., 3) float RGB in [0, 1].
    """
    values = np.asarray(values)
    amp = np.abs(values)
    amp_max = float(amp.max()) if amp_max is None else float(amp_max)
    if not np.isfinite(amp_max) or amp_max <= 0:
        amp_max = 1.0
    hue = np.mod(np.angle(values), 2 * np.pi) / (2 * np.pi)
    hsv = np.stack([hue, np.ones_like(hue), np.clip(amp / amp_max, 0, 1)], axis=-1)
    return hsv_to_rgb(hsv)


def _colour_wheel(fig: Figure, rect) -> None:
    ax = fig.add_axes(rect, projection="polar")
    theta = np.linspace(-np.pi, np.pi, 181)
    radius = np.linspace(0, 1, 30)
    t, r = np.meshgrid(theta, radius)
    centres = 0.5 * (r[:-1, :-1] + r[1:, 1:]) * np.exp(0.5j * (t[:-1, :-1] + t[1:, 1:]))
    mesh = ax.pcolormesh(t, r, np.zeros((radius.size - 1, theta.size - 1)), shading="flat")
    mesh.set_array(None)  # explicit RGB faces instead of a colormap
    mesh.set_facecolor(complex_to_rgb(centres, 1.0).reshape(-1, 3))
    ax.set_yticks([])
    ax.set_xticks(np.deg2rad([0, 90, 180, 270]), ["0", "π/2", "π", "−π/2"], fontsize=7)
    ax.tick_params(pad=0)
    ax.set_title("phase (rad)\nradius: amplitude", fontsize=7, pad=4)


def complex_slices(objects: dict[str, np.ndarray], spacing_m, normalise: str = "each") -> Figure:
    """Central XY/XZ/YZ slices of complex objects, HSV-coloured, one row per object, colour wheel.

    objects : label → (Z, Y, X) complex crystal function (e.g. "ground truth", "kinematic",
        "dynamical"), all on the same grid. spacing_m : (dz, dy, dx) m; axes in nm.
    normalise : "each" (brightness relative to each object's max amplitude — reconstructions have
        arbitrary scale) or "common" (one max over all objects).
    Returns a Figure with len(objects) × 3 image axes + 1 colour-wheel axes.
    """
    if not objects:
        raise ValueError("objects is empty")
    if normalise not in ("each", "common"):
        raise ValueError(f"normalise must be 'each' or 'common', got {normalise!r}")
    shapes = {np.shape(v) for v in objects.values()}
    if len(shapes) != 1:
        raise ValueError(f"all objects must share one (Z, Y, X) shape, got {shapes}")
    common = max(float(np.abs(v).max()) for v in objects.values())
    n = len(objects)
    fig = Figure(figsize=(10.5, 3.0 * n + 0.4), layout="constrained")
    axes = fig.subplots(n, 3, squeeze=False)
    fig.get_layout_engine().set(rect=(0, 0, 0.84, 1))
    for row, (label, obj) in enumerate(objects.items()):
        obj = np.asarray(obj)
        amp_max = common if normalise == "common" else float(np.abs(obj).max())
        for col, ((cut, extent), (title, _, xl, yl)) in enumerate(zip(central_slices(obj, spacing_m), SLICE_NAMES)):
            ax = axes[row, col]
            ax.imshow(complex_to_rgb(cut, amp_max), origin="lower", extent=extent, interpolation="nearest")
            ax.set_xlabel(xl, fontsize=8)
            ax.set_ylabel(yl, fontsize=8)
            ax.tick_params(labelsize=7)
            if row == 0:
                ax.set_title(title, fontsize=9)
        axes[row, 0].annotate(label, xy=(-0.38, 0.5), xycoords="axes fraction", rotation=90,
                              va="center", ha="center", fontsize=10, fontweight="bold")
    _colour_wheel(fig, (0.87, 0.42, 0.095, 0.16))
    return fig
