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
