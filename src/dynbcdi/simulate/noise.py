"""Photon-counting noise and detector defects for simulated rocking scans.

Intensity stacks are ``(N, rows, cols)``; masks are boolean ``valid`` arrays (True = trusted pixel),
``(rows, cols)`` for a fixed detector defect map. Defective pixels are *flagged* in ``valid`` and keep
what a real detector would record (0 counts in a gap, a large count on a hot pixel); nothing is
zeroed silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def scale_to_photons(
    intensity: np.ndarray,
    total_photons: float | None = None,
    peak_photons: float | None = None,
) -> np.ndarray:
    """Noise-free expected counts: the stack scaled to a total or a peak-pixel photon count.

    intensity : (N, rows, cols) non-negative float (arbitrary units).
    total_photons : expected sum over the whole stack; or
    peak_photons : expected count in the brightest pixel (give exactly one of the two).
    Returns (N, rows, cols) float64 expected photons.
    """
    if (total_photons is None) == (peak_photons is None):
        raise ValueError("give exactly one of total_photons or peak_photons")
    target, kind = (total_photons, "total") if total_photons is not None else (peak_photons, "peak")
    if not np.isfinite(target) or target <= 0:
        raise ValueError(f"{kind} photon count must be > 0, got {target!r}")
    i = np.asarray(intensity, dtype=np.float64)
    if i.size == 0 or not np.isfinite(i).all() or i.min() < 0:
        raise ValueError("intensity must be a non-empty, finite, non-negative array")
    ref = i.sum() if kind == "total" else i.max()
    if ref <= 0:
        raise ValueError("intensity is identically zero: cannot scale it to a photon count")
    return i * (target / ref)


def poisson_noise(
    intensity: np.ndarray,
    total_photons: float | None = None,
    peak_photons: float | None = None,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Poisson-sampled photon counts (integer values in a float64 array, shape of ``intensity``).

    The expected counts follow :func:`scale_to_photons`; the sum of the result fluctuates around
    ``total_photons`` by its square root. ``rng`` is a numpy Generator or a seed.
    """
    expected = scale_to_photons(intensity, total_photons, peak_photons)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return gen.poisson(expected).astype(np.float64)


@dataclass(frozen=True)
class DetectorDefects:
    """Detector defect map for a (rows, cols) frame.

    gap_rows, gap_cols : (start, stop) pixel ranges (python slices) of insensitive module gaps.
    hot_pixels : number of randomly placed hot pixels (outside the gaps).
    hot_counts : counts a hot pixel records in every frame.
    """

    gap_rows: tuple[tuple[int, int], ...] = ()
    gap_cols: tuple[tuple[int, int], ...] = ()
    hot_pixels: int = 0
    hot_counts: float = 1e6

    def __post_init__(self) -> None:
        for start, stop in (*self.gap_rows, *self.gap_cols):
            if not 0 <= start < stop:
                raise ValueError(f"gap range must satisfy 0 <= start < stop, got ({start}, {stop})")
        if self.hot_pixels < 0:
            raise ValueError(f"hot_pixels must be >= 0, got {self.hot_pixels}")


def detector_valid(
    detector_shape: Sequence[int], defects: DetectorDefects, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Defect map: ``valid`` (rows, cols) bool and the hot-pixel map (rows, cols) bool.

    Gaps beyond the detector edge raise ValueError.
    """
    rows, cols = (int(n) for n in detector_shape)
    valid = np.ones((rows, cols), dtype=bool)
    for start, stop in defects.gap_rows:
        if stop > rows:
            raise ValueError(f"row gap ({start}, {stop}) exceeds the {rows} detector rows")
        valid[start:stop, :] = False
    for start, stop in defects.gap_cols:
        if stop > cols:
            raise ValueError(f"column gap ({start}, {stop}) exceeds the {cols} detector columns")
        valid[:, start:stop] = False
    hot = np.zeros_like(valid)
    if defects.hot_pixels:
        candidates = np.flatnonzero(valid)
        if defects.hot_pixels > candidates.size:
            raise ValueError(f"{defects.hot_pixels} hot pixels do not fit in {candidates.size} live pixels")
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        hot.flat[gen.choice(candidates, defects.hot_pixels, replace=False)] = True
        valid &= ~hot
    return valid, hot


def apply_defects(counts: np.ndarray, valid: np.ndarray, hot: np.ndarray, hot_counts: float) -> np.ndarray:
    """What the detector records: 0 in gaps, ``hot_counts`` on hot pixels; (N, rows, cols) copy.

    The caller keeps ``valid`` with the data, so these pixels are excluded downstream.
    """
    out = np.array(counts, dtype=np.float64, copy=True)
    gaps = ~valid & ~hot
    out[:, gaps] = 0.0
    out[:, hot] = float(hot_counts)
    return out
