"""Detector corrections of a raw stack: invalid values, dark, flat field, bad pixels, seams, hot pixels, aliens.

Every function takes ``frames`` (N, rows, cols) float64 counts (raw pixels, data orientation) and
returns masks with the convention of docs/CONVENTIONS.md: ``bad`` arrays are True where a pixel is
NOT trusted; the pipeline turns them into ``valid = ~bad``. Masked pixels are set to 0, never filled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["invalid_values", "dark_correction", "flat_correction", "seam_mask", "insert_gaps", "hot_pixels",
           "alien_mask", "monitor_normalisation", "DarkReport"]

log = logging.getLogger(__name__)


def invalid_values(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask NaN, ±inf and negative counts (a photon count is finite and ≥ 0).

    frames : (N, rows, cols). Returns (frames with those voxels set to 0, bad (N, rows, cols) bool).
    """
    bad = ~np.isfinite(frames) | (frames < 0)
    if bad.any():
        log.warning("%d voxels of the raw stack are NaN, infinite or negative: masked in their frames", int(bad.sum()))
        frames = np.where(bad, 0.0, frames)
    return frames, bad


@dataclass(frozen=True)
class DarkReport:
    """What was done with the dark image: ``kind`` "dark" (subtracted), "bad_pixels" (masked) or "ignore"."""

    kind: str
    detected: bool
    nonzero_fraction: float
    n_masked: int


def dark_correction(frames: np.ndarray, dark: np.ndarray | None, kind: str,
                    max_map_fraction: float) -> tuple[np.ndarray, np.ndarray, DarkReport | None]:
    """Subtract a dark image, or use it as a bad-pixel map (see ``PrepareConfig.dark_kind``).

    dark : (rows, cols) counts, or None. kind : "auto" | "dark" | "bad_pixels" | "ignore".
    Returns (frames, bad (rows, cols), report or None when there is no dark).
    """
    bad = np.zeros(frames.shape[1:], bool)
    if dark is None:
        return frames, bad, None
    dark = _image(dark, frames.shape[1:], "dark")
    nonzero = dark != 0
    fraction = float(nonzero.mean())
    used = kind
    if kind == "auto":
        used = "bad_pixels" if fraction < max_map_fraction else "dark"
        if used == "bad_pixels":
            log.warning("the dark image has only %d nonzero pixels (%.3g %% of the frame): taken as a bad-pixel "
                        "map, masked and not subtracted (set prepare.dark_kind = 'dark' to subtract it)",
                        int(nonzero.sum()), 100 * fraction)
    if used == "dark":
        if not np.all(np.isfinite(dark)):
            raise ValueError("the dark image holds NaN or infinite values")
        frames = np.clip(frames - dark, 0.0, None)
    elif used == "bad_pixels":
        bad = nonzero
    return frames, bad, DarkReport(used, kind == "auto", fraction, int(bad.sum()))


def flat_correction(frames: np.ndarray, flat: np.ndarray | None, trusted: np.ndarray,
                    min_relative: float) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Divide by the flat (white) field normalised to its median over ``trusted`` pixels.

    flat : (rows, cols) relative efficiency or None. Pixels with flat ≤ min_relative·median (dead or
    nearly dead: the division would amplify their noise) or non-finite flat are returned as bad.
    Returns (frames, bad (rows, cols), median of the flat or None).
    """
    bad = np.zeros(frames.shape[1:], bool)
    if flat is None:
        return frames, bad, None
    flat = _image(flat, frames.shape[1:], "flat").astype(float)
    finite = np.isfinite(flat) & (flat > 0)
    if not (finite & trusted).any():
        raise ValueError("the flat field has no positive value on trusted pixels")
    median = float(np.median(flat[finite & trusted]))
    bad = ~finite | (flat <= min_relative * median)
    gain = np.where(bad, 1.0, flat / median)
    return np.where(bad, 0.0, frames / gain), bad, median


def seam_mask(shape: tuple[int, int], row_boundaries: Sequence[int], col_boundaries: Sequence[int],
              width: int) -> np.ndarray:
    """Bad (rows, cols) mask of ``width`` pixels on each side of chip boundaries.

    A boundary b (frame pixels) lies between pixel b−1 and pixel b; it may sit at or just outside
    the frame edge (a region of interest that ends on a chip edge still holds the wide edge pixels).
    """
    bad = np.zeros(shape, bool)
    for axis, bounds in ((0, row_boundaries), (1, col_boundaries)):
        for b in bounds:
            lo, hi = max(int(b) - width, 0), min(int(b) + width, shape[axis])
            if lo < hi:
                index = [slice(None), slice(None)]
                index[axis] = slice(lo, hi)
                bad[tuple(index)] = True
    return bad


def insert_gaps(frames: np.ndarray, valid: np.ndarray,
                gaps: Sequence[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Insert the detector's physical gaps inside the frames as masked pixels (0, valid False).

    frames, valid : (N, rows, cols). gaps : (axis 0 = rows | 1 = cols, index in the frame, width px):
    ``width`` pixels that the sensor lacks lie just before frame pixel ``index`` (cohere inserts them
    the same way at 34-ID-C). Afterwards the pixels are equally spaced, which the geometry assumes.
    """
    for axis, index, width in sorted(gaps, key=lambda g: -g[1]):  # from the far end: indices stay valid
        if width <= 0:
            continue
        frames = np.insert(frames, [index] * width, 0.0, axis=axis + 1)
        valid = np.insert(valid, [index] * width, False, axis=axis + 1)
    return frames, valid


def hot_pixels(frames: np.ndarray, valid: np.ndarray, threshold: float | None,
               max_count: float | None) -> np.ndarray:
    """Bad (rows, cols) mask of hot pixels among the ``valid`` (rows, cols) ones.

    threshold : a pixel whose sum over frames exceeds threshold × the largest sum of its 8 neighbours
    (floor 1 photon, so isolated counts in dark regions are not flagged) is hot: a speckle spans ≥ 2
    pixels in each direction (oversampling ≥ 2), so every speckle pixel has a bright neighbour; a
    hot pixel has none. (A 3×3 median would flag the pixels of a 2×2 speckle.) max_count : any
    single-frame value above it is hot.
    """
    hot = np.zeros(frames.shape[1:], bool)
    if threshold is not None:
        summed = np.where(valid, frames.sum(axis=0), 0.0)
        ring = np.ones((3, 3), bool)
        ring[1, 1] = False
        neighbours = ndimage.maximum_filter(summed, footprint=ring, mode="constant", cval=0.0)
        hot |= summed > threshold * np.maximum(neighbours, 1.0)
    if max_count is not None:
        hot |= (frames > max_count).any(axis=0)
    return hot & valid


def alien_mask(shape: tuple[int, int, int], aliens: Sequence[Sequence[int]], frame_offset: int) -> np.ndarray:
    """Bad (N, rows, cols) mask of alien boxes (frame0, frame1, row0, row1, col0, col1), half-open.

    Box frame indices are raw (scan) indices; ``frame_offset`` is the raw index of frames[0].
    A box entirely outside the frames is a ValueError (it was meant for another crop).
    """
    bad = np.zeros(shape, bool)
    for box in aliens:
        f0, f1, r0, r1, c0, c1 = (int(v) for v in box)
        f0, f1 = f0 - frame_offset, f1 - frame_offset
        if f1 <= 0 or f0 >= shape[0] or r0 >= shape[1] or c0 >= shape[2]:
            raise ValueError(f"alien box {tuple(box)} lies outside the frames kept (raw frames {frame_offset}…"
                             f"{frame_offset + shape[0] - 1}, {shape[1]} rows, {shape[2]} cols)")
        bad[max(f0, 0):f1, r0:r1, c0:c1] = True
    return bad


def monitor_normalisation(frames: np.ndarray, monitor: np.ndarray | None) -> tuple[np.ndarray, float]:
    """Scale each frame by mean(monitor)/monitor_j (counts stay near photon numbers).

    monitor : (N,) counter values of the frames. Returns (frames, mean monitor). ValueError if the
    monitor is missing, of the wrong length or not positive (a zero monitor means no beam).
    """
    if monitor is None:
        raise ValueError("prepare.monitor = true but the reader found no monitor counter for this scan")
    monitor = np.asarray(monitor, float)
    if monitor.shape != frames.shape[:1]:
        raise ValueError(f"{monitor.size} monitor values for {frames.shape[0]} frames")
    if not np.all(np.isfinite(monitor) & (monitor > 0)):
        raise ValueError(f"the monitor counter is not positive in frames {np.flatnonzero(~(monitor > 0)).tolist()}")
    mean = float(monitor.mean())
    return frames * (mean / monitor)[:, None, None], mean


def _image(value: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != tuple(shape):
        raise ValueError(f"the {name} image has shape {arr.shape}, the frames {tuple(shape)}")
    return arr
