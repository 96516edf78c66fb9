"""Alignment of two reconstructions and error metrics against a reference (ground truth).

A phase-retrieval result is defined only up to a translation, a global phase and the twin
(complex conjugate of the point-inverted object). :func:`align_to` removes all three;
:func:`compare` then measures phase, amplitude, displacement and strain errors inside the true
support. The phase ramp is *not* removed by default: in dynamical diffraction the refraction
ramp is precisely the artefact a kinematic reconstruction carries, and it must show in the error.

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

__all__ = ["AlignmentResult", "ComparisonMetrics", "twin", "fourier_shift", "align_to", "compare"]


@dataclass(frozen=True)
class AlignmentResult:
    """Object aligned to a reference.

    obj : (Z, Y, X) complex, shifted, possibly twinned, global phase removed.
    shift_vox : (3,) float, (z, y, x) shift applied to the (possibly twinned) input, voxels.
    twin : True when the twin conj(obj[::-1, ::-1, ::-1]) matched better.
    phase_offset_rad : global phase removed, rad.
    correlation : |Σ obj·conj(ref)| / (‖obj‖ ‖ref‖) after alignment, in [0, 1].
    """

    obj: np.ndarray
    shift_vox: np.ndarray
    twin: bool
    phase_offset_rad: float
    correlation: float


@dataclass(frozen=True)
class ComparisonMetrics:
    """Errors of a reconstruction against a reference inside the reference support.

    phase_rms_rad : RMS of the unwrapped phase difference, rad.
    amplitude_rel_error : ‖α|obj| − |ref|‖ / ‖|ref|‖ with the least-squares scale α (reconstructions
        have an arbitrary intensity scale).
    displacement_rms_pm : RMS of u_h(obj) − u_h(ref), pm.
    strain_rms : RMS of ε_h(obj) − ε_h(ref) over voxels whose stencil is inside the support.
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

    def as_dict(self) -> dict:
        """Scalar metrics as a flat dict (for tables and JSON)."""
        d = asdict(self)
        d.pop("ramp_removed")
        d["shift_vox"] = list(self.shift_vox)
        return d


def twin(obj: np.ndarray) -> np.ndarray:
    """The twin image conj(obj(−r)), (Z, Y, X) complex; same diffraction intensity as ``obj``."""
    return np.conj(np.asarray(obj)[::-1, ::-1, ::-1])


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
    aligned = (shifted * np.exp(-1j * offset)).astype(obj.dtype if np.iscomplexobj(obj) else np.complex64)
    return AlignmentResult(obj=aligned, shift_vox=shift, twin=is_twin, phase_offset_rad=offset, correlation=corr)


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
    :func:`align_to`), so a caller that also needs the aligned object aligns only once."""
    truth = np.asarray(truth)
    support = check_support(support, truth.shape)
    dphi = unwrap_phase(np.angle(al.obj * np.conj(truth)), support)
    ramp = None
    if remove_ramp:
        dphi, ramp = remove_phase_ramp(dphi, support, spacing_m)
    a_obj, a_ref = np.abs(al.obj[support]), np.abs(truth[support])
    scale = np.sum(a_obj * a_ref) / max(np.sum(a_obj**2), np.finfo(float).tiny)
    du = displacement(dphi, h_norm)
    return ComparisonMetrics(
        phase_rms_rad=_rms(dphi[support]),
        amplitude_rel_error=float(np.linalg.norm(scale * a_obj - a_ref) / np.linalg.norm(a_ref)),
        displacement_rms_pm=_rms(du[support]) * 1e12,
        strain_rms=_rms(strain(du, spacing_m, h_dir_grid, support)),
        shift_vox=tuple(float(s) for s in al.shift_vox),
        twin=al.twin,
        phase_offset_rad=al.phase_offset_rad,
        correlation=al.correlation,
        ramp_removed=ramp,
        n_voxels=int(support.sum()),
    )
