"""Paper Fig. 4 layout: central slices of phase, displacement and strain, methods side by side."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from dynbcdi.plot._common import draw_slice_row, robust_limit

__all__ = ["strain_figure"]

_QUANTITIES = (("phase", "phase (rad)", "RdBu_r"),
               ("displacement", "displacement $u_h$ (pm)", "RdBu_r"),
               ("strain", "strain $\\varepsilon_h$ (10$^{-4}$)", "RdBu_r"))


def strain_figure(
    results: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    support: np.ndarray,
    spacing_m=(1.0, 1.0, 1.0),
    percentile: float = 99.5,
) -> Figure:
    """Central XY/XZ/YZ slices of phase, displacement and strain for several reconstructions.

    results : label → (phase rad, displacement pm, strain dimensionless), each (Z, Y, X) float
        (NaN allowed, e.g. from :func:`dynbcdi.analysis.strain_analysis`; the strain is shown
        in units of 1e-4). support : (Z, Y, X) bool; voxels outside are blanked.
    spacing_m : (dz, dy, dx) m for the nm axes. percentile : colour limits are ±(this percentile
        of |values| over *all* results) per quantity, so methods are compared on one scale.
    Rows: for each quantity, one row per label (paper: kinematic then dynamical); columns: the
    three cuts. Returns a Figure with 3·len(results) × 3 image axes + 3 colour-bar axes.
    """
    if not results:
        raise ValueError("results is empty")
    support = np.asarray(support, bool)
    for label, triple in results.items():
        if len(triple) != 3 or any(np.shape(a) != support.shape for a in triple):
            raise ValueError(f"results[{label!r}] must be (phase, u_pm, strain) arrays of shape {support.shape}")
    n = len(results)
    fig = Figure(figsize=(10, 2.5 * 3 * n), layout="constrained")
    axes = fig.subplots(3 * n, 3, squeeze=False)
    for q, (_, qlabel, cmap) in enumerate(_QUANTITIES):
        scale = 1e4 if q == 2 else 1.0
        masked = {k: np.where(support, np.asarray(v[q], float) * scale, np.nan) for k, v in results.items()}
        lim = robust_limit(list(masked.values()), percentile)
        for i, (label, vol) in enumerate(masked.items()):
            row = q * n + i
            im = draw_slice_row(axes[row], vol, spacing_m, -lim, lim, cmap, titles=row == 0)
            axes[row, 0].annotate(f"{label}\n{qlabel.split(' ')[0]}", xy=(-0.45, 0.5), xycoords="axes fraction",
                                  rotation=90, va="center", ha="center", fontsize=8, fontweight="bold")
        fig.colorbar(im, ax=axes[q * n:(q + 1) * n, :].ravel().tolist(), label=qlabel, shrink=0.8)
    return fig
