"""Uncertainty map figure: central slices of the mean over repeated reconstructions and its spread."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from dynbcdi.plot._common import central_slices, draw_slice_row, robust_limit

__all__ = ["uncertainty_figure"]

# (map name, row label, factor to the shown unit, colour map, signed); the mean is signed (±limit),
# the spread is ≥ 0 (0 to limit)
_ROWS = (("displacement_mean_m", "mean $u_h$ (pm)", 1e12, "RdBu_r", True),
         ("displacement_std_m", "std $u_h$ (pm)", 1e12, "viridis", False),
         ("strain_mean", "mean $\\varepsilon_h$ (10$^{-4}$)", 1e4, "RdBu_r", True),
         ("strain_std", "std $\\varepsilon_h$ (10$^{-4}$)", 1e4, "viridis", False))


def uncertainty_figure(maps: dict[str, np.ndarray], spacing_m=(1.0, 1.0, 1.0), percentile: float = 99.5,
                       title: str | None = None) -> Figure:
    """Central XY/XZ/YZ slices of the mean displacement and its standard deviation over repeats
    (and of the strain, when ``maps`` holds it).

    maps : name → (Z, Y, X) float, NaN outside the support, as
        :meth:`dynbcdi.reconstruct.uncertainty.UncertaintyMap.as_maps` or
        :func:`dynbcdi.io.load_result`'s ``maps``: ``displacement_mean_m`` and ``displacement_std_m`` (m)
        are required, ``strain_mean`` and ``strain_std`` (dimensionless) optional. Displacements are
        shown in pm, strains in units of 1e-4.
    spacing_m : (dz, dy, dx) m for the nm axes. percentile : each row's colour limit is this percentile
        of |values| over its three cuts (one scale per quantity): ±limit for the means, 0 to limit for
        the spreads. Returns a Figure with one row per quantity and three cut columns (+ colour bars).
    """
    missing = [k for k in ("displacement_mean_m", "displacement_std_m") if k not in maps]
    if missing:
        raise ValueError(f"maps lacks {', '.join(missing)} (an uncertainty map over repeats)")
    rows = [row for row in _ROWS if row[0] in maps]
    shape = np.shape(maps["displacement_mean_m"])
    for name, *_ in rows:
        if np.shape(maps[name]) != shape or len(shape) != 3:
            raise ValueError(f"maps[{name!r}] must be a (Z, Y, X) array of shape {shape}, got {np.shape(maps[name])}")
    fig = Figure(figsize=(10, 2.6 * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for row, (name, label, factor, cmap, signed) in enumerate(rows):
        volume = np.asarray(maps[name], float) * factor
        lim = robust_limit([c for c, _ in central_slices(volume, spacing_m)], percentile)
        im = draw_slice_row(axes[row], volume, spacing_m, -lim if signed else 0.0, lim, cmap, titles=row == 0)
        fig.colorbar(im, ax=axes[row, :].tolist(), label=label, shrink=0.9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
