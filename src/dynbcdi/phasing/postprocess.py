"""Post-processing of a phase-retrieval result: twin image, centring, phase offset and ramp.

Every function takes centred 3-D arrays (origin at index N//2 of each axis) and returns new arrays.
The three ambiguities that the intensity cannot fix are: a global phase, a translation (integer
shifts are exact symmetries of |FFT|²) and the twin image conj(obj(−r)).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from dynbcdi.analysis import fourier_shift


def _check_pair(obj: np.ndarray, support: np.ndarray | None) -> np.ndarray:
    obj = np.asarray(obj)
    if obj.ndim != 3:
        raise ValueError(f"obj must be 3-D, got shape {obj.shape}")
    if support is None:
        return np.abs(obj) > 0
    support = np.asarray(support, bool)
    if support.shape != obj.shape:
        raise ValueError(f"support shape {support.shape} differs from obj shape {obj.shape}")
    if not support.any():
        raise ValueError("support is empty")
    return support


def invert_about_centre(array: np.ndarray) -> np.ndarray:
    """array(−r) about the centre index N//2 of every axis (any dtype)."""
    # Index i maps to 2(N//2) − i: a flip plus a roll of 1 for even N, a flip alone for odd N.
    shifts = tuple(1 - n % 2 for n in array.shape)
    return np.roll(array[::-1, ::-1, ::-1], shifts, axis=(0, 1, 2))


def twin_image(obj: np.ndarray) -> np.ndarray:
    """conj(obj(−r)) about the centre index N//2 of every axis (same |FFT|², exactly)."""
    return np.conj(invert_about_centre(obj))


def center_support(
    obj: np.ndarray, support: np.ndarray | None = None, subpixel: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Move the support's centre of mass to index N//2 of every axis.

    Integer rolls are exact (periodic arrays); with ``subpixel`` the remaining fraction is removed
    by a Fourier shift of ``obj`` (the support is then only rolled). Returns (obj, support).
    """
    support = _check_pair(obj, support)
    com = np.array(scipy.ndimage.center_of_mass(support))
    target = np.array([n // 2 for n in obj.shape], float)
    shift = target - com
    whole = np.round(shift).astype(int)
    obj = np.roll(obj, tuple(whole), axis=(0, 1, 2))
    support = np.roll(support, tuple(whole), axis=(0, 1, 2))
    if subpixel:
        obj = fourier_shift(obj, shift - whole)
    return obj, support


def remove_phase_offset(obj: np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
    """Multiply by e^{−iφ0}, φ0 = arg Σ_support obj (amplitude-weighted mean phase, wrap-safe)."""
    support = _check_pair(obj, support)
    total = obj[support].sum()
    return obj * np.exp(-1j * np.angle(total)) if total != 0 else obj.copy()


def phase_ramp(obj: np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
    """Mean phase gradient (rad per voxel along axes 0, 1, 2) inside the support.

    Uses arg Σ obj(r + e_k) conj(obj(r)) over neighbour pairs inside the support, which needs no
    phase unwrapping and weights each pair by its amplitudes (robust near the surface).
    """
    support = _check_pair(obj, support)
    ramp = np.zeros(3)
    for axis in range(3):
        lead = [slice(None)] * 3
        lag = [slice(None)] * 3
        lead[axis], lag[axis] = slice(1, None), slice(None, -1)
        pair = support[tuple(lead)] & support[tuple(lag)]
        ramp[axis] = np.angle(np.sum((obj[tuple(lead)] * np.conj(obj[tuple(lag)]))[pair]))
    return ramp


def remove_phase_ramp(obj: np.ndarray, support: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Remove the linear phase (:func:`phase_ramp`) about the array centre, then the phase offset.

    A linear phase is a shift of the Bragg peak off the array centre (e.g. a mis-centred data set).
    Returns (corrected obj, ramp in rad/voxel along axes 0, 1, 2).
    """
    support = _check_pair(obj, support)
    ramp = phase_ramp(obj, support)
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in obj.shape], indexing="ij")
    plane = sum(g * r for g, r in zip(grids, ramp))
    return remove_phase_offset(obj * np.exp(-1j * plane), support), ramp


def remove_twin(
    obj: np.ndarray, support: np.ndarray | None = None, reference: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Choose between ``obj`` and its twin; return (obj, support, flipped).

    With a ``reference`` (bool support or complex object, same shape, centred): keep the candidate
    whose support (after centring) overlaps the reference support more; ties → the candidate with
    the larger |⟨candidate, reference⟩| when the reference is complex. Without one, the choice is a
    convention (the data cannot decide): keep the candidate whose support has a non-negative sum of
    third central moments along the three axes, so that repeated runs agree with one another.
    """
    support = _check_pair(obj, support)
    candidates = [center_support(obj, support), center_support(twin_image(obj), invert_about_centre(support))]
    if reference is None:
        scores = [_skewness(s) for _, s in candidates]
    else:
        reference = np.asarray(reference)
        if reference.shape != obj.shape:
            raise ValueError(f"reference shape {reference.shape} differs from obj shape {obj.shape}")
        ref_support = reference if reference.dtype == bool else np.abs(reference) > 0.5 * np.abs(reference).max()
        scores = [np.sum(s & ref_support) / np.sum(s | ref_support) for _, s in candidates]
        if np.iscomplexobj(reference) and np.isclose(scores[0], scores[1]):
            scores = [abs(np.vdot(reference, o)) for o, _ in candidates]
    flipped = bool(scores[1] > scores[0])
    chosen_obj, chosen_support = candidates[int(flipped)]
    return chosen_obj, chosen_support, flipped


def _skewness(support: np.ndarray) -> float:
    coords = np.nonzero(support)
    return float(sum(np.mean((c - c.mean()) ** 3) for c in coords))
