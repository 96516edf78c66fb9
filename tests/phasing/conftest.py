"""Shared test objects: a strained faceted (octahedral) crystal, its intensity, an aligner."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dynbcdi.phasing.postprocess import remove_twin


def faceted_crystal(n: int = 32, radius: float = 6.0, phase_rad: float = 1.5) -> np.ndarray:
    """(n, n, n) complex: a flattened octahedron about index n//2 with a smooth strain phase.

    Amplitude 1 inside with a one-voxel linear edge (a voxel-fraction-like boundary); the phase is
    a Gaussian bump of ``phase_rad`` plus a weak quadratic term (no symmetry, so the twin differs).
    """
    z, y, x = np.meshgrid(*[np.arange(n) - n // 2] * 3, indexing="ij")
    dist = np.abs(z) + np.abs(y) + 0.8 * np.abs(x)
    amplitude = np.clip(radius + 0.5 - dist, 0.0, 1.0)
    phase = phase_rad * (np.exp(-((z - 2) ** 2 + (y + 1) ** 2 + x**2) / (2 * 3.0**2)) + 0.02 * x * y)
    return amplitude * np.exp(1j * phase)


def kinematic_intensity(obj: np.ndarray) -> np.ndarray:
    """|fftshift(fftn(ifftshift(obj)))|², the centred far-field intensity (docs/CONVENTIONS.md)."""
    return np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj)))) ** 2


def align_and_score(obj: np.ndarray, support: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Remove twin/translation/global phase against ``truth``; return (phase RMS rad, amplitude error).

    Phase RMS over voxels with |truth| > 0.5 (the phase of the near-empty edge voxels is undefined);
    amplitude error = ‖|obj| − |truth|‖ / ‖truth‖ over the whole array.
    """
    obj, _, _ = remove_twin(obj, support, truth)
    corr = np.fft.ifftn(np.fft.fftn(obj) * np.conj(np.fft.fftn(truth)))
    shift = np.unravel_index(np.argmax(np.abs(corr)), corr.shape)
    obj = np.roll(obj, [-s for s in shift], axis=(0, 1, 2))
    obj = obj * np.exp(-1j * np.angle(np.vdot(truth, obj)))
    inside = np.abs(truth) > 0.5
    phase_rms = float(np.sqrt(np.mean(np.angle(obj[inside] * np.conj(truth[inside])) ** 2)))
    amp_err = float(np.linalg.norm(np.abs(obj) - np.abs(truth)) / np.linalg.norm(truth))
    return phase_rms, amp_err


@pytest.fixture(scope="session")
def crystal() -> np.ndarray:
    return faceted_crystal()


@pytest.fixture(scope="session")
def intensity(crystal: np.ndarray) -> np.ndarray:
    return kinematic_intensity(crystal)


@pytest.fixture(scope="session")
def scorer() -> Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, float]]:
    return align_and_score


@pytest.fixture(scope="session")
def crystal_factory() -> Callable[..., np.ndarray]:
    return faceted_crystal
