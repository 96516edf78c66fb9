"""Post-processing of a phase-retrieval result: centring, phase offset and twin choice.

Every function takes centred 3-D arrays (origin at index N//2 of each axis) and returns new arrays.
The three ambiguities that the intensity cannot fix are: a global phase, a translation (integer
shifts are exact symmetries of |FFT|²) and the twin image conj(obj(−r)). The twin itself
(:func:`dynbcdi.analysis.twin`, inversion about N//2) and the phase ramp
(:func:`dynbcdi.analysis.remove_phase_ramp`, rad/m, (x, y, z) components) live in
:mod:`dynbcdi.analysis`, one convention each.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from dynbcdi.analysis import fourier_shift, invert_about_centre, twin


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


def remove_twin(
    obj: np.ndarray, support: np.ndarray | None = None, reference: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Choose between ``obj`` and its twin (:func:`dynbcdi.analysis.twin`); return (obj, support, flipped).

    With a ``reference`` (bool support or complex object, same shape, centred): keep the candidate
    whose support (after centring) overlaps the reference support more; ties → the candidate with
    the larger |⟨candidate, reference⟩| when the reference is complex. Without one, the choice is a
    convention (the data cannot decide): keep the candidate whose support has a non-negative sum of
    third central moments along the three axes, so that repeated runs agree with one another.
    """
    support = _check_pair(obj, support)
    candidates = [center_support(obj, support), center_support(twin(obj), invert_about_centre(support))]
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
