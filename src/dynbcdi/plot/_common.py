"""Helpers shared by the figure modules: central slices and their extents."""

from __future__ import annotations

import numpy as np

from dynbcdi.analysis.strain import check_spacing

#: (title, axis removed, horizontal axis label, vertical axis label) of the three central cuts.
SLICE_NAMES = (("XY (z = centre)", 0, "x (nm)", "y (nm)"),
               ("XZ (y = centre)", 1, "x (nm)", "z (nm)"),
               ("YZ (x = centre)", 2, "y (nm)", "z (nm)"))


def central_slices(volume: np.ndarray, spacing_m) -> list[tuple[np.ndarray, list[float]]]:
    """Three central cuts of a (Z, Y, X) array with imshow extents in nm.

    Returns [(XY (Y, X) cut, extent), (XZ (Z, X) cut, extent), (YZ (Z, Y) cut, extent)], each
    oriented for ``imshow(origin="lower")`` (first array axis vertical). Extents are centred on
    the array centre (index N//2).
    """
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ValueError(f"volume must be a 3-D (Z, Y, X) array, got shape {vol.shape}")
    dz, dy, dx = check_spacing(spacing_m)
    nz, ny, nx = vol.shape

    def ext(n, d):
        return [(-n // 2 - 0.5) * d * 1e9, (n - n // 2 - 0.5) * d * 1e9]

    ex, ey, ez = ext(nx, dx), ext(ny, dy), ext(nz, dz)
    return [(vol[nz // 2], ex + ey), (vol[:, ny // 2, :], ex + ez), (vol[:, :, nx // 2], ey + ez)]


def robust_limit(arrays, percentile: float = 99.5) -> float:
    """Symmetric colour limit: the ``percentile`` of |finite values| over all arrays (> 0)."""
    finite = [np.abs(a[np.isfinite(a)]) for a in arrays]
    finite = np.concatenate([f.ravel() for f in finite]) if finite else np.zeros(0)
    if finite.size == 0:
        return 1.0
    lim = float(np.percentile(finite, percentile))
    return lim if lim > 0 else float(finite.max()) or 1.0


def draw_slice_row(axes, volume: np.ndarray, spacing_m, vmin: float, vmax: float, cmap: str,
                   titles: bool = False):
    """The three central cuts of ``volume`` (Z, Y, X) on ``axes`` (3 Axes), one colour scale, NaN
    (outside the support) in light grey, axes in nm; cut titles on top with ``titles``. Returns the
    last image (for the colour bar)."""
    im = None
    for ax, (cut, extent), (title, _, xl, yl) in zip(axes, central_slices(volume, spacing_m), SLICE_NAMES):
        im = ax.imshow(cut, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_facecolor("0.85")
        ax.tick_params(labelsize=7)
        ax.set_xlabel(xl, fontsize=7)
        ax.set_ylabel(yl, fontsize=7)
        if titles:
            ax.set_title(title, fontsize=9)
    return im
