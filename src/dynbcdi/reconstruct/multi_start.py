"""Truth-free start of a joint multi-reflection reconstruction: phase, align, combine (issue 16, item 4).

1. **Phase** each reflection kinematically (:func:`dynbcdi.phasing.phase_retrieval`, the lowest
   Fourier error of several random starts) and convert the detector-frame result onto that
   reflection's TTE grid (:func:`dynbcdi.phasing.detector_to_grid`), as the one-reflection pipeline
   does (:func:`dynbcdi.reconstruct.pipeline.kinematic_on_grid`).
2. **Map** every result onto the common sample-frame grid (:class:`~dynbcdi.geometry.resample.Resample`)
   and **align** it there with a reference reflection (the first): the data of one reflection fix
   its object only up to a translation, a constant phase and the twin conj(S(−r)). The twin is the
   same inversion about the common origin on every grid (all grids share the origin at index n//2),
   so it is chosen on the sample grid, per reflection (below); the translation by sub-voxel
   cross-correlation of the amplitudes (scikit-image ``phase_cross_correlation``), applied as a
   Fourier shift of the complex object.
3. **Combine**: the support is the mean aligned amplitude above ``threshold`` × its interior level
   (:func:`~dynbcdi.reconstruct.pipeline.interior_level_support`, the one-reflection rule), s = 1
   inside (a homogeneous crystal, as the one-reflection start); each phase is unwrapped on that
   support (:func:`dynbcdi.analysis.unwrap_phase`) and shifted to zero mean over it, and u follows
   from :func:`~dynbcdi.reconstruct.multi.u_from_phases` weighted by the amplitudes.

Why zero mean is right: each phase is known only modulo 2π and up to a constant, c_i = −h_i·t
being a rigid translation t of the lattice (invisible to every reflection). With the mean of u over
the support set to zero, the true phase −h_i·u has zero mean over that same voxel set for every
reflection, so subtracting each unwrapped phase's mean removes its unknown constant and 2π multiple
consistently, for any number of reflections.

The twin: the kinematic pattern of a reflection is the same for its object and its twin, and for
a centrosymmetric crystal (the cube of the multi presets) so is the amplitude overlap (au-111-multi-32:
0.9882 vs 0.9871, the wrong one chosen for 1−11). :func:`twin_by_trial` decides each reflection's
twin by its own TTE data instead (a few trial epochs from each), which the dynamical patterns can
tell apart; amplitude overlap remains the rule without TTE problems.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from dynbcdi.analysis import fourier_shift, remove_phase_ramp, unwrap_phase
from dynbcdi.geometry.resample import GridSpec, Resample
from dynbcdi.io.dataset import Dataset
from dynbcdi.phasing import detector_to_grid, phase_retrieval, twin_image
from dynbcdi.reconstruct.crystal import CrystalField
from dynbcdi.reconstruct.pipeline import interior_level_support

log = logging.getLogger(__name__)

__all__ = ["MultiStartConfig", "MultiStart", "phase_on_grid", "to_sample_grid", "align_reflections",
           "combine_aligned", "twin_by_trial", "phased_start", "flat_start"]


@dataclass(frozen=True)
class MultiStartConfig:
    """Settings of :func:`phased_start`.

    recipe, n_starts, seed : kinematic phasing of each reflection (:func:`dynbcdi.phasing.phase_retrieval`;
    reflection i uses seeds seed + 100 i …). threshold : support = mean aligned amplitude above
    threshold × its interior level. upsample : sub-voxel precision 1/upsample of the registration.
    remove_ramp : remove each phase's least-squares plane before combining (a homogeneous strain).
    amplitude : "uniform" (s = 1 on the support, the one-reflection start's homogeneous crystal) or
    "mean" (s = the mean aligned amplitude over its interior level, clipped to 1: partial voxels at
    the surface keep a partial s).
    twin_epochs : trial epochs of the TTE fit of each reflection deciding its twin (:func:`twin_by_trial`;
    0: by amplitude overlap with the reference, :func:`align_reflections`).
    """

    recipe: str = "paper"
    n_starts: int = 2
    seed: int = 0
    threshold: float = 0.4
    upsample: int = 20
    remove_ramp: bool = False
    twin_epochs: int = 3
    amplitude: str = "uniform"

    def __post_init__(self) -> None:
        if self.n_starts < 1 or self.upsample < 1 or self.twin_epochs < 0 or self.seed < 0:
            raise ValueError(f"n_starts and upsample must be >= 1, twin_epochs and seed >= 0, got "
                             f"{self.n_starts}, {self.upsample}, {self.twin_epochs}, {self.seed}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {self.threshold}")
        if self.amplitude not in ("uniform", "mean"):
            raise ValueError(f"amplitude must be 'uniform' or 'mean', got {self.amplitude!r}")


@dataclass
class MultiStart:
    """A start on the sample grid: s (Z, Y, X) ≥ 0, u (3, Z, Y, X) m (sample-frame components),
    support (Z, Y, X) bool; per reflection the twin choice and the shift (z, y, x) voxels applied to
    its object; ``objects`` the aligned complex objects on the sample grid; ``twin_losses`` the
    (object, twin) trial losses per reflection when the twins were chosen by :func:`twin_by_trial`."""

    grid: GridSpec
    s: np.ndarray
    u: np.ndarray
    support: np.ndarray
    twins: list[bool] = field(default_factory=list)
    shifts: list[np.ndarray] = field(default_factory=list)
    objects: list[np.ndarray] = field(default_factory=list)
    twin_losses: list[tuple[float, float]] = field(default_factory=list)

    def field(self, order: int = 3) -> CrystalField:
        """The :class:`CrystalField` of this start (s zero outside the support)."""
        return CrystalField(self.grid, self.s, self.u, support=self.support, order=order)


def _grid_of(ds: Dataset) -> GridSpec:
    meta = ds.metadata
    if "grid_frame_sample" not in meta or "grid_shape" not in meta:
        raise ValueError(f"dataset {meta.get('name', '?')} lacks the multi-reflection metadata "
                         "(grid_shape, grid_frame_sample): write it with dynbcdi.simulate.multi")
    return GridSpec(tuple(int(n) for n in meta["grid_shape"]), ds.spacing_m, np.asarray(meta["grid_frame_sample"]))


def phase_on_grid(ds: Dataset, config: MultiStartConfig = MultiStartConfig(), seed: int | None = None,
                  device: str = "cpu") -> np.ndarray:
    """Kinematic phasing of one reflection, converted onto its TTE grid: (Z, Y, X) complex, zero
    outside the phasing support (the grid of metadata ``grid_shape``, voxel ``ds.spacing_m``)."""
    result = phase_retrieval(ds.intensity, ds.valid, recipe=config.recipe, n_starts=config.n_starts,
                             seed=config.seed if seed is None else seed, device=device)
    shape = _grid_of(ds).shape
    basis = ds.geometry.realspace_basis(result.obj.shape)
    obj = detector_to_grid(result.obj, basis, shape, ds.spacing_m)
    support = detector_to_grid(result.support.astype(np.complex64), basis, shape, ds.spacing_m).real > 0.5
    return np.where(support, obj, 0)


def to_sample_grid(obj: np.ndarray, grid: GridSpec, sample_grid: GridSpec) -> np.ndarray:
    """A complex object (Z', Y', X') on ``grid`` resampled onto ``sample_grid``: (Z, Y, X) complex.

    Real and imaginary parts are interpolated (cubic B-spline), which needs a phase that turns by
    well under π per voxel, as the kinematic results do (max |h·u| of a few rad over the crystal).
    """
    with torch.no_grad():
        out = Resample(grid, sample_grid)(torch.as_tensor(np.asarray(obj, dtype=np.complex128)))
    return out.numpy()


def _registered(obj: np.ndarray, reference_amp: np.ndarray, upsample: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``obj`` translated onto ``reference_amp`` (sub-voxel, amplitudes), its shift (z, y, x) voxels and
    the normalised overlap Σ|ref||obj'| / (‖ref‖ ‖obj'‖) ∈ [0, 1] after the shift."""
    shift = phase_cross_correlation(reference_amp, np.abs(obj), upsample_factor=upsample, normalization=None)[0]
    moved = fourier_shift(obj, shift)
    amp = np.abs(moved)
    overlap = float((reference_amp * amp).sum() / (np.linalg.norm(reference_amp) * np.linalg.norm(amp)))
    return moved, np.asarray(shift, dtype=float), overlap


def align_reflections(objects: Sequence[np.ndarray], reference: int = 0, upsample: int = 20
                      ) -> tuple[list[np.ndarray], list[bool], list[np.ndarray]]:
    """Align complex objects on one sample grid with ``objects[reference]`` (module docstring, step 2).

    objects : M arrays (Z, Y, X) complex on the same grid. For every other object, itself and its
    twin are registered on the reference's amplitude; the one with the larger amplitude overlap is
    kept. Returns the aligned objects, the twin choices (False for the reference) and the shifts
    (z, y, x) voxels applied (after the twin).
    """
    if not objects or not 0 <= reference < len(objects):
        raise ValueError(f"need objects and a reference index among them, got {len(objects)} and {reference}")
    ref_amp = np.abs(objects[reference])
    if not ref_amp.any():
        raise ValueError("the reference object is zero everywhere")
    aligned, twins, shifts = [], [], []
    for i, obj in enumerate(objects):
        if i == reference:
            aligned.append(np.asarray(objects[i]))
            twins.append(False)
            shifts.append(np.zeros(3))
            continue
        plain = _registered(np.asarray(obj), ref_amp, upsample)
        twinned = _registered(twin_image(np.asarray(obj)), ref_amp, upsample)
        best, is_twin = (twinned, True) if twinned[2] > plain[2] else (plain, False)
        log.info("reflection %d: overlap %.4f as is, %.4f twinned: %s, shift %s voxel", i, plain[2], twinned[2],
                 "twin" if is_twin else "as is", np.round(best[1], 2))
        aligned.append(best[0])
        twins.append(is_twin)
        shifts.append(best[1])
    return aligned, twins, shifts


def combine_aligned(objects: Sequence[np.ndarray], h_vectors: np.ndarray, threshold: float = 0.4,
                    remove_ramp: bool = False, amplitude: str = "uniform") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s, u, support) from aligned complex objects on one sample grid (module docstring, step 3).

    objects : M arrays (Z, Y, X) complex; h_vectors : (M, 3) rad/m, sample frame. Returns s
    (on the support 1, or with ``amplitude="mean"`` the mean amplitude over its interior level
    clipped to 1; 0 outside), u (3, Z, Y, X) m — extended outside the support by its nearest
    support voxel, so that the resampling onto the TTE grids sees no jump at the surface — and the
    support (Z, Y, X) bool.
    """
    from dynbcdi.reconstruct.multi import u_from_phases

    amps = np.abs(np.stack(objects))
    support = _support(objects, threshold)
    phases = []
    for obj in objects:
        phase = unwrap_phase(np.angle(obj), support)
        if remove_ramp:
            phase = remove_phase_ramp(phase, support)[0]
        phases.append(np.where(support, phase - phase[support].mean(), 0.0))
    u = u_from_phases(np.stack(phases), np.asarray(h_vectors, dtype=float), weights=amps * support)
    s = support.astype(float)
    if amplitude == "mean":
        mean = amps.mean(axis=0)
        s = np.where(support, np.clip(mean / np.percentile(mean[mean > 0.1 * mean.max()], 90), 0, 1), 0.0)
    return s, _extend(u, support), support


def _extend(u: np.ndarray, support: np.ndarray) -> np.ndarray:
    """u (3, Z, Y, X) with every voxel outside ``support`` set to its nearest support voxel's value."""
    nearest = tuple(ndimage.distance_transform_edt(~support, return_distances=False, return_indices=True))
    return u[(slice(None), *nearest)]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected part of ``mask`` (stray voxels of the phasing results dropped)."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    return labels == 1 + int(np.argmax(sizes))


def flat_start(objects: Sequence[np.ndarray], grid: GridSpec, threshold: float = 0.4) -> MultiStart:
    """Support and s of :func:`combine_aligned` with u = 0 (the flat-phase start), same alignment input."""
    support = _support(objects, threshold)
    return MultiStart(grid, support.astype(float), np.zeros((3, *grid.shape)), support)


def phased_start(datasets: Sequence[Dataset], sample_grid: GridSpec, config: MultiStartConfig = MultiStartConfig(),
                 problems: Sequence | None = None, device: str = "cpu",
                 on_reflection: Callable[[int], None] | None = None) -> MultiStart:
    """The truth-free start (module docstring) of the reflections ``datasets`` on ``sample_grid``.

    datasets : one per reflection (metadata ``h_sample``, ``grid_shape``, ``grid_frame_sample`` of
    :mod:`dynbcdi.simulate.multi`); reflection 0 is the alignment reference. problems : their
    :class:`~dynbcdi.reconstruct.multi.ReflectionProblem` with the TTE model; with them and
    ``config.twin_epochs`` > 0 the twin of every reflection (the reference's too) is chosen by
    :func:`twin_by_trial`, else by amplitude overlap (:func:`align_reflections`, the reference as
    phased). on_reflection(i) : called after each reflection is phased.
    """
    if len(datasets) < 3:
        raise ValueError(f"a start for the displacement vector needs at least 3 reflections, got {len(datasets)}")
    if problems is not None and len(problems) != len(datasets):
        raise ValueError(f"need one problem per dataset, got {len(problems)} for {len(datasets)}")
    mapped = []
    for i, ds in enumerate(datasets):
        obj = phase_on_grid(ds, config, seed=config.seed + 100 * i, device=device)
        mapped.append(to_sample_grid(obj, _grid_of(ds), sample_grid))
        if on_reflection is not None:
            on_reflection(i)
    h = np.stack([np.asarray(ds.metadata["h_sample"], dtype=float) for ds in datasets])
    if config.twin_epochs and problems is not None:
        ref_amp = np.abs(mapped[0])
        candidates = [[_registered(o, ref_amp, config.upsample)[:2] for o in (m, twin_image(m))] for m in mapped]
        support = _support([c[0] for pair in candidates for c in pair], config.threshold)
        twins, losses = twin_by_trial([[c[0] for c in pair] for pair in candidates], support, h, problems,
                                      sample_grid, config)
        aligned = [candidates[i][t][0] for i, t in enumerate(twins)]
        shifts = [candidates[i][t][1] for i, t in enumerate(twins)]
    else:
        aligned, twins, shifts = align_reflections(mapped, 0, config.upsample)
        losses = []
    s, u, support = combine_aligned(aligned, h, config.threshold, config.remove_ramp, config.amplitude)
    return MultiStart(sample_grid, s, u, support, twins, shifts, aligned, losses)


def _support(objects: Sequence[np.ndarray], threshold: float) -> np.ndarray:
    """Largest connected part of the mean amplitude of ``objects`` above ``threshold`` × its interior level."""
    return _largest_component(interior_level_support(np.abs(np.stack(objects)).mean(axis=0), threshold))


def twin_by_trial(candidates: Sequence[Sequence[np.ndarray]], support: np.ndarray, h_vectors: np.ndarray,
                  problems: Sequence, grid: GridSpec, config: MultiStartConfig = MultiStartConfig()
                  ) -> tuple[list[bool], list[tuple[float, float]]]:
    """Per reflection, the object (False) or its twin (True), whichever fits that reflection's own TTE
    data better after ``config.twin_epochs`` trial epochs.

    candidates : per reflection [object, twin] (Z, Y, X) complex, aligned on the sample grid;
    support : (Z, Y, X) bool, common; h_vectors : (M, 3) rad/m; problems : the M TTE problems;
    grid : the sample grid. Why per reflection: with three reflections the least-squares u
    reproduces every phase exactly, so reflection i's fit at the start depends on its own twin only
    (with more, nearly so); the kinematic data cannot tell
    the twins apart (same |FT|), the dynamical data can. Each trial starts from s = 1 on the support
    and u = −φ_i h_i / |h_i|² (the displacement along h_i that gives the phase). Returns the choices
    and the (object, twin) trial losses (mean data loss per pattern after the last epoch). Ctrl-C
    during a trial raises KeyboardInterrupt at the trial's next mini-batch boundary: no twin is
    chosen from a shortened trial.
    """
    from dynbcdi.reconstruct.interrupt import stop_on_sigint
    from dynbcdi.reconstruct.multi import JointConfig, joint_reconstruct

    if not len(candidates) == len(h_vectors) == len(problems):
        raise ValueError(f"need one candidate pair, h and problem per reflection, got {len(candidates)}, "
                         f"{len(h_vectors)}, {len(problems)}")
    twins, losses = [], []
    for pair, h, problem in zip(candidates, np.asarray(h_vectors, dtype=float), problems):
        trial = []
        for obj in pair:
            phase = unwrap_phase(np.angle(obj), support)
            phase = np.where(support, phase - phase[support].mean(), 0.0)
            u = _extend(-phase[None] * (h / (h @ h))[:, None, None, None], support)
            field = CrystalField(grid, support.astype(float), u, support=support)
            with stop_on_sigint():  # one request for every trial and the caller's block, if any
                result = joint_reconstruct(field, [problem], JointConfig(epochs=config.twin_epochs,
                                                                         seed=config.seed))
            if result.interrupted:  # a shortened trial would bias the choice: the start is abandoned
                raise KeyboardInterrupt
            trial.append(result.loss[-1])
        log.info("reflection %s: trial loss %.4g as phased, %.4g twinned", problem.hkl, *trial)
        twins.append(trial[1] < trial[0])
        losses.append(tuple(trial))
    return twins, losses
