"""Peak search, crop/pad window and binning of a corrected stack, with the raw coordinates kept.

A :class:`Window` records where the prepared array sits in the raw stack, so that the geometry and
the provenance can follow every crop and bin exactly: prepared index (J, R, C) covers raw frames
``start[0] + bin[0]·J … + bin[0] − 1`` (and likewise for rows and columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Window", "find_peak", "plan_window", "extract", "bin_stack"]


@dataclass(frozen=True)
class Window:
    """Position of the prepared array in the raw stack.

    start : (frame, row, col) raw index of unbinned window index (0, 0, 0); may be negative (padding).
    shape : (frames, rows, cols) of the window before binning (multiples of ``bin``).
    bin : summing factors (frames, rows, cols).
    """

    start: tuple[int, int, int]
    shape: tuple[int, int, int]
    bin: tuple[int, int, int]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(frames, rows, cols) of the prepared (binned) array."""
        return tuple(n // b for n, b in zip(self.shape, self.bin))  # type: ignore[return-value]

    def raw_position(self, index: tuple[float, float, float]) -> tuple[float, float, float]:
        """Raw (frame, row, col) of the centre of prepared index ``index`` (fractional when binned by an even factor)."""
        return tuple(s + b * i + (b - 1) / 2 for s, b, i in zip(self.start, self.bin, index))  # type: ignore[return-value]

    def as_dict(self) -> dict[str, list[int]]:
        """JSON-able description: raw start, stop (exclusive) and binning."""
        return {"start": list(self.start), "stop": [s + n for s, n in zip(self.start, self.shape)],
                "bin": list(self.bin)}


def find_peak(frames: np.ndarray, valid: np.ndarray) -> tuple[int, int, int]:
    """(frame, row, col) of the Bragg peak: the brightest frame and the brightest pixel of the summed frames.

    frames : (N, rows, cols) counts, 0 where masked; valid : (N, rows, cols) bool.
    """
    masked = np.where(valid, frames, 0.0)
    total = masked.sum(axis=0)
    if not np.any(total > 0):
        raise ValueError("the stack holds no counts on trusted pixels: no Bragg peak to centre on")
    row, col = np.unravel_index(int(np.argmax(total)), total.shape)
    frame = int(np.argmax(masked.sum(axis=(1, 2))))
    return frame, int(row), int(col)


def plan_window(n_frames: int, frame_shape: tuple[int, int], peak: tuple[int, int, int],
                roi: tuple[int, int, int, int] | None, crop_shape: tuple[int, int] | None,
                n_out_frames: int | None, factors: tuple[int, int, int]) -> Window:
    """The window of the prepared array in stack coordinates (frames already cut by frame_range).

    Without crop_shape the roi (or whole frame) is kept, trimmed to a multiple of the binning;
    with it, a (rows, cols) window centred on the peak (peak at index rows//2, cols//2). Frames:
    all (trimmed to a multiple of the frame binning) or ``n_out_frames`` centred on the peak frame.
    """
    r0, r1, c0, c1 = roi if roi is not None else (0, frame_shape[0], 0, frame_shape[1])
    if r1 > frame_shape[0] or c1 > frame_shape[1]:
        raise ValueError(f"prepare.roi = {roi} exceeds the frames ({frame_shape[0]} rows, {frame_shape[1]} cols)")
    if crop_shape is None:
        start_rc = (r0, c0)
        shape_rc = ((r1 - r0) // factors[1] * factors[1], (c1 - c0) // factors[2] * factors[2])
    else:
        start_rc = (peak[1] - crop_shape[0] // 2, peak[2] - crop_shape[1] // 2)
        shape_rc = tuple(crop_shape)
    if n_out_frames is None:
        start_j, n_j = 0, n_frames // factors[0] * factors[0]
    else:
        start_j, n_j = peak[0] - n_out_frames // 2, n_out_frames
    if min(n_j, *shape_rc) < 1:
        raise ValueError(f"binning {factors} leaves nothing of {n_frames} frames of {frame_shape}")
    return Window((int(start_j), int(start_rc[0]), int(start_rc[1])), (int(n_j), *map(int, shape_rc)),
                  tuple(int(f) for f in factors))  # type: ignore[arg-type]


def extract(frames: np.ndarray, valid: np.ndarray, start: tuple[int, ...],
            shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Window ``shape`` from ``start`` of (N, rows, cols) ``frames``/``valid``; outside: 0 and invalid."""
    out = np.zeros(shape, frames.dtype)
    out_valid = np.zeros(shape, bool)
    src, dst = [], []
    for s0, n, total in zip(start, shape, frames.shape):
        lo, hi = max(s0, 0), min(s0 + n, total)
        if hi <= lo:
            raise ValueError(f"crop window start {tuple(start)} size {tuple(shape)} misses the data {frames.shape}")
        src.append(slice(lo, hi))
        dst.append(slice(lo - s0, hi - s0))
    out[tuple(dst)] = frames[tuple(src)]
    out_valid[tuple(dst)] = valid[tuple(src)]
    return out, out_valid


def bin_stack(stack: np.ndarray, valid: np.ndarray, factors: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``factors`` (frames, rows, cols) blocks; shape must be a multiple of them.

    A block with any untrusted voxel is untrusted (its sum would be biased low) and set to 0.
    """
    if tuple(factors) == (1, 1, 1):
        return stack, valid
    if any(n % f for n, f in zip(stack.shape, factors)):
        raise ValueError(f"stack {stack.shape} is not a multiple of the binning {factors}")
    blocks = tuple(x for n, f in zip(stack.shape, factors) for x in (n // f, f))
    summed = (stack * valid).reshape(blocks).sum(axis=(1, 3, 5))
    all_valid = valid.reshape(blocks).all(axis=(1, 3, 5))
    return np.where(all_valid, summed, 0.0), all_valid
