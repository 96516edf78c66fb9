"""Alignment of two reconstructions and error metrics against a reference (ground truth).

A phase-retrieval result is defined only up to a translation, a global phase and the twin
(complex conjugate of the point-inverted object). :func:`align_to` removes all three;
:func:`compare` then measures phase, amplitude, displacement and strain errors inside the true
support. The phase ramp is *not* removed by default: in dynamical diffraction the refraction
ramp is precisely the artefact a kinematic reconstruction carries, and it must show in the error.

Missing voxels stay missing. :func:`compare` never interpolates the reconstruction: it moves it
by the *whole-voxel* part of the registration shift (an exact permutation of voxels, plus the
exact twin inversion) and moves the *truth* and its support by the remaining sub-voxel part
(|residual| <= 0.5 voxel; Fourier shift for the truth, linear interpolation >= 0.5 for the
support). A voxel that the reconstruction left empty therefore stays empty, and is counted:
``empty_fraction`` is the fraction of true-support voxels where the reconstruction's amplitude is
below ``EMPTY_THRESHOLD`` (0.1) of its maximum. Those voxels carry no phase information, so the
phase error there is counted as that of a uniformly random phase, RMS π/√3 rad (displacement
π/(√3 |h|)), and the strain error (which needs a filled stencil) is taken over filled voxels only.

Arrays are indexed (z, y, x); ``spacing_m = (dz, dy, dx)``; vectors are (x, y, z) components.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from dynbcdi.analysis.strain import (
    PhaseRamp,
    check_support,
    displacement,
    remove_phase_ramp,
    strain,
    unwrap_phase,
)

__all__ = ["EMPTY_THRESHOLD", "AlignmentResult", "Agreement", "ComparisonMetrics", "agreement", "align_to", "compare", "fourier_shift",
           "invert_about_centre", "metrics_of", "twin"]


# A reconstructed voxel below this fraction of the maximum amplitude counts as empty.
EMPTY_THRESHOLD = 0.1
# RMS of a phase uniformly distributed on (−π, π]: the error of a voxel that carries no phase.
RANDOM_PHASE_RMS = float(np.pi / np.sqrt(3.0))


@dataclass(frozen=True)
class AlignmentResult:
    """Object aligned to a reference.

    obj : (Z, Y, X) complex, shifted, possibly twinned, global phase removed.
    shift_vox : (3,) float, (z, y, x) shift applied to the (possibly twinned) input, voxels.
    twin : True when the twin (:func:`twin`) matched better.
    phase_offset_rad : global phase removed, rad.
    correlation : |Σ obj·conj(ref)| / (‖obj‖ ‖ref‖) after alignment, in [0, 1].
    obj_whole : (Z, Y, X) complex, the input moved by round(shift_vox) only (exact voxel
        permutation, no interpolation), twin and global phase as ``obj``; None when not aligned.
        :func:`metrics_of` compares this with the truth moved by the sub-voxel remainder.
    """

    obj: np.ndarray
    shift_vox: np.ndarray
    twin: bool
    phase_offset_rad: float
    correlation: float
    obj_whole: np.ndarray | None = None


@dataclass(frozen=True)
class ComparisonMetrics:
    """Errors of a reconstruction against a reference inside the reference support.

    phase_rms_rad : RMS of the unwrapped phase difference, rad.
    amplitude_rel_error : ‖α|obj| − |ref|‖ / ‖|ref|‖ with the least-squares scale α (reconstructions
        have an arbitrary intensity scale).
    displacement_rms_pm : RMS of u_h(obj) − u_h(ref), pm.
    strain_rms : RMS of ε_h(obj) − ε_h(ref) over voxels whose stencil is inside the filled support.
    empty_fraction : fraction of support voxels where |obj| < ``EMPTY_THRESHOLD`` × max|obj|
        (the reconstruction left them empty); their phase error counts as π/√3 rad RMS in
        ``phase_rms_rad`` and ``displacement_rms_pm`` (module docstring).
    shift_vox, twin, phase_offset_rad, correlation : from the alignment.
    ramp_removed : the ramp removed from the phase difference (``remove_ramp=True``) or None.
    n_voxels : number of support voxels used.
    """

    phase_rms_rad: float
    amplitude_rel_error: float
    displacement_rms_pm: float
    strain_rms: float
    shift_vox: tuple[float, float, float]
    twin: bool
    phase_offset_rad: float
    correlation: float
    ramp_removed: PhaseRamp | None
    n_voxels: int
    empty_fraction: float = 0.0

    def as_dict(self) -> dict:
        """Scalar metrics as a flat dict (for tables and JSON)."""
        d = asdict(self)
        d.pop("ramp_removed")
        d["shift_vox"] = list(self.shift_vox)
        return d


def invert_about_centre(array: np.ndarray) -> np.ndarray:
    """array(−r), r measured from the centre index N//2 of every axis (any dtype, any ndim).

    Index i maps to 2(N//2) − i (mod N): a flip plus a roll of 1 for even N, a flip alone for odd N,
    so an object centred at N//2 stays centred there.
    """
    array = np.asarray(array)
    flipped = array[(slice(None, None, -1),) * array.ndim]
    return np.roll(flipped, tuple(1 - n % 2 for n in array.shape), axis=tuple(range(array.ndim)))


def twin(obj: np.ndarray) -> np.ndarray:
    """The twin image conj(obj(−r)), inverted about the centre index N//2 of every axis.

    The one twin convention of dynbcdi. obj : (Z, Y, X) complex, centred (origin at N//2, the
    convention of :func:`dynbcdi.phasing.phase_retrieval`). On that centred FFT grid
    |fftshift(fftn(ifftshift(twin(obj))))| equals the same of ``obj`` exactly, and twin(twin(obj)) is obj.
    """
    return np.conj(invert_about_centre(obj))


def fourier_shift(obj: np.ndarray, shift_vox) -> np.ndarray:
    """Shift a (Z, Y, X) array by ``shift_vox`` (z, y, x) voxels (sub-voxel, periodic, Fourier)."""
    obj = np.asarray(obj)
    out = np.fft.ifftn(ndimage.fourier_shift(np.fft.fftn(obj), np.asarray(shift_vox, dtype=float)))
    return out.astype(obj.dtype) if np.iscomplexobj(obj) else out.real.astype(obj.dtype)


def _align_translation(obj: np.ndarray, reference: np.ndarray, upsample: int) -> tuple[np.ndarray, np.ndarray]:
    # Register on amplitudes: a phase ramp in obj (refraction) must not bias the shift.
    shift, _, _ = phase_cross_correlation(
        np.abs(reference), np.abs(obj), upsample_factor=upsample, normalization=None
    )
    return fourier_shift(obj, shift), np.asarray(shift, dtype=float)


def _whole_voxel_shift(obj: np.ndarray, shift_vox) -> np.ndarray:
    """``obj`` rolled (periodically) by round(shift_vox) (z, y, x): a voxel permutation, nothing filled."""
    whole = tuple(int(v) for v in np.round(np.asarray(shift_vox, dtype=float)))
    return np.roll(obj, whole, axis=(0, 1, 2))


def _move_support(support: np.ndarray, shift_vox) -> np.ndarray:
    """Bool support moved by a (sub-voxel) shift (z, y, x): linear interpolation, kept where >= 0.5."""
    if not np.any(shift_vox):
        return support
    moved = ndimage.shift(support.astype(float), np.asarray(shift_vox, dtype=float), order=1, mode="grid-wrap")
    return moved >= 0.5 - 1e-9


def align_to(
    obj: np.ndarray,
    reference: np.ndarray,
    upsample: int = 50,
    support: np.ndarray | None = None,
    check_twin: bool = True,
) -> AlignmentResult:
    """Align ``obj`` to ``reference``: sub-voxel translation, twin, global phase.

    obj, reference : (Z, Y, X) complex of equal shape. upsample : sub-voxel precision 1/upsample
    of the cross-correlation (skimage upsampled DFT). support : (Z, Y, X) bool restricting the
    global-phase estimate (default: all voxels, weighted by amplitudes). check_twin : also try
    the twin and keep whichever correlates better with the reference (complex correlation).
    """
    obj, reference = np.asarray(obj), np.asarray(reference)
    if obj.shape != reference.shape or obj.ndim != 3:
        raise ValueError(f"obj {obj.shape} and reference {reference.shape} must be 3-D of equal shape")
    if int(upsample) < 1:
        raise ValueError(f"upsample must be >= 1, got {upsample!r}")
    mask = np.ones(obj.shape, bool) if support is None else check_support(support, obj.shape)
    ref = reference.astype(np.complex128)
    best = None
    for is_twin in (False, True) if check_twin else (False,):
        cand = twin(obj) if is_twin else obj
        shifted, shift = _align_translation(cand.astype(np.complex128), ref, int(upsample))
        overlap = np.sum(shifted[mask] * np.conj(ref[mask]))
        norm = np.linalg.norm(shifted[mask]) * np.linalg.norm(ref[mask])
        corr = float(np.abs(overlap) / norm) if norm > 0 else 0.0
        if best is None or corr > best[3] + 1e-12:
            best = (shifted, shift, is_twin, corr, float(np.angle(overlap)))
    shifted, shift, is_twin, corr, offset = best
    dtype = obj.dtype if np.iscomplexobj(obj) else np.complex64
    aligned = (shifted * np.exp(-1j * offset)).astype(dtype)
    whole = (_whole_voxel_shift(twin(obj) if is_twin else obj, shift) * np.exp(-1j * offset)).astype(dtype)
    return AlignmentResult(obj=aligned, shift_vox=shift, twin=is_twin, phase_offset_rad=offset, correlation=corr,
                           obj_whole=whole)


@dataclass(frozen=True)
class Agreement:
    """How well two reconstructions of the same data agree after :func:`align_to`.

    correlation : |⟨obj, ref⟩| / (‖obj‖ ‖ref‖) over the union of the two (aligned) supports, in [0, 1].
    dice : support overlap 2|A ∩ B| / (|A| + |B|), in [0, 1].
    phase_rms_rad : RMS of the wrapped phase difference angle(obj·conj(ref)) over the common
        support, after the common-support global phase is removed, rad.
    phase_rms_core_rad : the same over the common-support voxels where both amplitudes exceed
        ``core`` × their maximum (the weak surface voxels have an ill-defined phase), rad.
    shift_vox, twin : the alignment applied to ``obj`` ((z, y, x) voxels after the twin).
    n_union, n_common : voxels in the union and in the intersection of the supports.
    """

    correlation: float
    dice: float
    phase_rms_rad: float
    phase_rms_core_rad: float
    shift_vox: tuple[float, float, float]
    twin: bool
    n_union: int
    n_common: int


def agreement(
    obj: np.ndarray,
    support: np.ndarray,
    reference: np.ndarray,
    reference_support: np.ndarray,
    upsample: int = 20,
    core: float = 0.2,
) -> Agreement:
    """Align ``obj`` onto ``reference`` (translation, twin, global phase) and measure their agreement.

    obj, reference : (Z, Y, X) complex of equal shape; support, reference_support : (Z, Y, X) bool,
    each code's own final support. ``support`` undergoes the same twin inversion and (Fourier,
    sub-voxel) shift as ``obj`` and is thresholded back at 0.5. upsample : 1/precision of the
    translation, voxels. core : amplitude fraction defining the core for ``phase_rms_core_rad``.
    """
    support = check_support(support, np.shape(obj))
    reference_support = check_support(reference_support, np.shape(reference))
    al = align_to(obj, reference, upsample=upsample)
    moved = invert_about_centre(support) if al.twin else support
    moved = fourier_shift(moved.astype(float), al.shift_vox) > 0.5
    union, common = moved | reference_support, moved & reference_support
    a, b = al.obj[union].astype(np.complex128), np.asarray(reference)[union].astype(np.complex128)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    corr = float(abs(np.vdot(b, a)) / norm) if norm > 0 else 0.0
    reference = np.asarray(reference)
    amp_obj, amp_ref = np.abs(al.obj), np.abs(reference)
    inner = common & (amp_obj > core * amp_obj.max()) & (amp_ref > core * amp_ref.max())
    dice = 2 * int(common.sum()) / (int(moved.sum()) + int(reference_support.sum()))
    return Agreement(correlation=corr, dice=float(dice), phase_rms_rad=_phase_rms(al.obj, reference, common),
                     phase_rms_core_rad=_phase_rms(al.obj, reference, inner),
                     shift_vox=tuple(float(v) for v in al.shift_vox), twin=al.twin,
                     n_union=int(union.sum()), n_common=int(common.sum()))


def _phase_rms(obj: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """RMS of angle(obj·conj(ref)) on ``mask`` after removing its own global phase; NaN if empty."""
    if not mask.any():
        return float("nan")
    diff = obj[mask] * np.conj(reference[mask])
    return float(np.sqrt(np.mean(np.angle(diff * np.exp(-1j * np.angle(diff.sum()))) ** 2)))


def _rms(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.sqrt(np.mean(values**2))) if values.size else float("nan")


def compare(
    obj: np.ndarray,
    truth: np.ndarray,
    support: np.ndarray,
    h_norm: float,
    spacing_m,
    h_dir_grid,
    remove_ramp: bool = False,
    align: bool = True,
    upsample: int = 50,
    check_twin: bool = True,
) -> ComparisonMetrics:
    """Compare a reconstruction with a reference inside the reference support.

    obj, truth : (Z, Y, X) complex on the same grid. support : (Z, Y, X) bool, the *true* support.
    h_norm : |h| rad/m. spacing_m : (dz, dy, dx) m. h_dir_grid : ĥ, (x, y, z) grid frame.
    remove_ramp : also remove a linear ramp from the phase difference (off by default, so that
    refraction ramps count as error). align : run :func:`align_to` first (translation, twin,
    global phase); otherwise only the global phase over the support is removed.
    The phase difference angle(obj·conj(truth)) is unwrapped inside the support, so errors
    larger than π are not folded back; displacement and strain errors follow from it linearly.
    """
    obj, truth = np.asarray(obj), np.asarray(truth)
    if not (np.iscomplexobj(obj) and np.iscomplexobj(truth)):
        raise ValueError("obj and truth must be complex crystal functions")
    support = check_support(support, truth.shape)
    if align:
        al = align_to(obj, truth, upsample=upsample, support=support, check_twin=check_twin)
    else:
        if obj.shape != truth.shape:
            raise ValueError(f"obj {obj.shape} and truth {truth.shape} must have equal shape")
        offset = float(np.angle(np.sum(obj[support] * np.conj(truth[support]))))
        al = AlignmentResult(obj * np.exp(-1j * offset), np.zeros(3), False, offset, float("nan"))
    return metrics_of(al, truth, support, h_norm, spacing_m, h_dir_grid, remove_ramp)


def metrics_of(al: AlignmentResult, truth: np.ndarray, support: np.ndarray, h_norm: float, spacing_m,
               h_dir_grid, remove_ramp: bool = False) -> ComparisonMetrics:
    """The metrics of :func:`compare` for an object already aligned onto ``truth`` (``al`` from
    :func:`align_to`), so a caller that also needs the aligned object aligns only once.

    When ``al.obj_whole`` is set, the reconstruction is taken on whole voxels and ``truth`` and
    ``support`` are moved by the sub-voxel remainder instead (module docstring): no amplitude is
    interpolated into voxels the reconstruction left empty.
    """
    truth = np.asarray(truth)
    support = check_support(support, truth.shape)
    obj = al.obj
    if al.obj_whole is not None:
        residual = np.asarray(al.shift_vox, dtype=float) - np.round(al.shift_vox)
        obj = al.obj_whole
        if np.any(residual):
            # The truth moves by −residual onto the whole-voxel-moved reconstruction.
            truth, support = fourier_shift(truth.astype(np.complex128), -residual), _move_support(support, -residual)
    amp = np.abs(obj)
    empty = support & (amp < EMPTY_THRESHOLD * amp.max()) if amp.max() > 0 else support.copy()
    filled = support & ~empty
    n, n_empty = int(support.sum()), int(empty.sum())
    dphi = np.full(truth.shape, np.nan)
    ramp = None
    if filled.any():
        dphi = unwrap_phase(np.angle(obj * np.conj(truth)), filled)
        if remove_ramp:
            dphi, ramp = remove_phase_ramp(dphi, filled, spacing_m)
    a_obj, a_ref = amp[support], np.abs(truth[support])
    scale = np.sum(a_obj * a_ref) / max(np.sum(a_obj**2), np.finfo(float).tiny)
    du = displacement(dphi, h_norm)
    return ComparisonMetrics(
        phase_rms_rad=_rms_with_empty(dphi[filled], n_empty, RANDOM_PHASE_RMS),
        amplitude_rel_error=float(np.linalg.norm(scale * a_obj - a_ref) / np.linalg.norm(a_ref)),
        displacement_rms_pm=_rms_with_empty(du[filled], n_empty, RANDOM_PHASE_RMS / h_norm) * 1e12,
        strain_rms=_rms(strain(du, spacing_m, h_dir_grid, filled)) if filled.any() else float("nan"),
        shift_vox=tuple(float(s) for s in al.shift_vox),
        twin=al.twin,
        phase_offset_rad=al.phase_offset_rad,
        correlation=al.correlation,
        ramp_removed=ramp,
        n_voxels=n,
        empty_fraction=n_empty / n,
    )


def _rms_with_empty(values: np.ndarray, n_empty: int, empty_rms: float) -> float:
    """RMS over filled voxels' ``values`` and ``n_empty`` voxels each contributing ``empty_rms``."""
    values = values[np.isfinite(values)]
    total = values.size + n_empty
    if total == 0:
        return float("nan")
    return float(np.sqrt((np.sum(values**2) + n_empty * empty_rms**2) / total))
