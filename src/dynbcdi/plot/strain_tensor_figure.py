"""The six independent components of the strain tensor ε_ij in central slices, on one colour scale."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from dynbcdi.plot._common import SLICE_NAMES, central_slices, robust_limit

__all__ = ["STRAIN_COMPONENTS", "strain_tensor_figure", "component_means"]

#: (label, i, j) of the six independent components, indices (x, y, z) = (0, 1, 2) as in
#: :func:`dynbcdi.analysis.strain.strain_tensor`.
STRAIN_COMPONENTS = (("xx", 0, 0), ("yy", 1, 1), ("zz", 2, 2), ("xy", 0, 1), ("xz", 0, 2), ("yz", 1, 2))
_CUTS = {"xy": 0, "xz": 1, "yz": 2}  # index into central_slices / SLICE_NAMES
STRAIN_UNIT = 1e-4  # shown in units of 1e-4, as in strain_figure


def _checked(eps: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    eps = np.asarray(eps, dtype=float)
    if eps.ndim != 5 or eps.shape[:2] != (3, 3):
        raise ValueError(f"eps must be a (3, 3, Z, Y, X) strain tensor, got shape {eps.shape}")
    support = np.asarray(support, bool)
    if support.shape != eps.shape[2:]:
        raise ValueError(f"support shape {support.shape} differs from the tensor's grid {eps.shape[2:]}")
    return eps, support


def component_means(eps: np.ndarray, support: np.ndarray) -> dict[str, float]:
    """Mean of each of the six components over the finite values inside ``support`` (dimensionless).

    eps : (3, 3, Z, Y, X), indices (x, y, z); support : (Z, Y, X) bool. NaN for a component with no
    finite value in the support.
    """
    eps, support = _checked(eps, support)
    means = {}
    for label, i, j in STRAIN_COMPONENTS:
        vals = eps[i, j][support]
        vals = vals[np.isfinite(vals)]
        means[label] = float(vals.mean()) if vals.size else float("nan")
    return means


def strain_tensor_figure(eps: np.ndarray, support: np.ndarray, spacing_m=(1.0, 1.0, 1.0),
                         cuts: Sequence[str] = ("xy", "xz", "yz"), percentile: float = 99.5,
                         title: str | None = None) -> Figure:
    """Central slices of ε_xx, ε_yy, ε_zz, ε_xy, ε_xz, ε_yz on one symmetric colour scale.

    eps : (3, 3, Z, Y, X) dimensionless, indices (x, y, z) (e.g. :func:`dynbcdi.analysis.strain.strain_tensor`,
    NaN allowed); shown in units of 1e-4. support : (Z, Y, X) bool, voxels outside blanked (grey).
    spacing_m : (dz, dy, dx) m for the nm axes. cuts : which central cuts, rows of the figure, from
    "xy" (z = centre), "xz" (y = centre), "yz" (x = centre). percentile : the colour limit is ±(this
    percentile of |ε| over all six components), so the components are compared on one scale.
    Columns: the six components, each titled with its mean over the support. Returns a Figure with
    len(cuts) × 6 image axes and one colour-bar axes.
    """
    eps, support = _checked(eps, support)
    unknown = [c for c in cuts if c not in _CUTS]
    if not cuts or unknown:
        raise ValueError(f"cuts must be a non-empty selection of {sorted(_CUTS)}, got {list(cuts)!r}")
    vols = {label: np.where(support, eps[i, j] / STRAIN_UNIT, np.nan) for label, i, j in STRAIN_COMPONENTS}
    lim = robust_limit(list(vols.values()), percentile)
    means = component_means(eps, support)
    fig = Figure(figsize=(13, 2.3 * len(cuts) + 0.6), layout="constrained")
    axes = fig.subplots(len(cuts), 6, squeeze=False)
    for col, (label, vol) in enumerate(vols.items()):
        slices = central_slices(vol, spacing_m)
        for row, cut in enumerate(cuts):
            (img, extent), (cut_title, _, xl, yl) = slices[_CUTS[cut]], SLICE_NAMES[_CUTS[cut]]
            ax = axes[row, col]
            im = ax.imshow(img, origin="lower", extent=extent, cmap="RdBu_r", vmin=-lim, vmax=lim,
                           interpolation="nearest")
            ax.set_facecolor("0.85")  # outside the support (NaN) in light grey
            ax.tick_params(labelsize=7)
            ax.set_xlabel(xl, fontsize=7)
            ax.set_ylabel(yl if col == 0 else "", fontsize=7)
            if row == 0:
                ax.set_title(f"$\\varepsilon_{{{label}}}$  (mean {means[label] / STRAIN_UNIT:.3g})", fontsize=9)
            if col == 0:
                ax.annotate(cut_title, xy=(-0.5, 0.5), xycoords="axes fraction", rotation=90, va="center",
                            ha="center", fontsize=8, fontweight="bold")
    fig.colorbar(im, ax=axes.ravel().tolist(), label="strain $\\varepsilon_{ij}$ (10$^{-4}$)", shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
