"""The paper's method end to end, truth-free: kinematic phasing → start → dynamical (TTE) reconstruction.

One implementation for the demo, the CLI and the benchmark:

1. :func:`dynbcdi.phasing.phase_retrieval` (HIO/ER, several random starts, the lowest Fourier error
   kept) in the detector-conjugate frame;
2. :func:`kinematic_on_grid`: that result resampled onto the grid frame of the TTE model;
3. :func:`dynamical_from_kinematic`: the start chosen by :func:`choose_start` (uniform amplitude
   on a support of the kinematic result with its unwrapped phase, its twin, or the flat-phase convex
   hull; threshold and sub-voxel position of the kinematic result chosen by the loss after a few
   trial epochs), then the dynamical reconstruction with the TTE model in the loop
   (:func:`dynbcdi.reconstruct.reconstruct`).

What decides success is the start *support* (measured at 64³ on the ``au-demo`` preset,
benchmarks/RESULTS.md): started on the true support the optimiser reaches 0.02 rad, while a support
1 % too small or 15–30 % too large leaves it at 0.13–0.3 rad (the amplitude outside the crystal is
not driven to zero, and shrink-wrap can only shrink). The support is therefore taken at 0.4 of the
kinematic *interior* amplitude level (:func:`interior_level_support`), which encloses the crystal
with a thin margin, instead of a fraction of the maximum. The data fix the crystal only up to a
translation, so the kinematic result sits at an arbitrary sub-voxel position, and a binary support
fits the crystal's faces only at the right one: :func:`choose_start` therefore also tries half-voxel
translations (64³ ``au-demo``, three noise-free single phasing starts: trial loss 2–4× lower,
final phase error 0.06–0.17 → 0.019–0.032 rad; benchmarks/RESULTS.md). A crystal with a smooth
surface has partial-volume voxels outside any binary support that a frozen support cannot take back;
the best start is therefore also tried with a soft edge (:func:`soft_edge`, ``StartConfig.soft_edges``;
48³ ``au-demo`` with a 10 nm surface, 4 seeds: median 0.17 → 0.05 rad; benchmarks/RESULTS.md).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.morphology import convex_hull_image

from dynbcdi.analysis import fourier_shift, remove_phase_ramp
from dynbcdi.forward.tte import TTEModel, min_transverse_width
from dynbcdi.phasing import (
    PhasingResult,
    detector_to_grid,
    grid_shape_for,
    phase_retrieval,
    twin_image,
)
from dynbcdi.reconstruct.config import (
    OptimizerConfig,
    ReconstructionConfig,
    ShrinkWrapConfig,
    StoppingConfig,
    TermConfig,
    TermsConfig,
)
from dynbcdi.reconstruct.optimizer import (
    CallbackFn,
    ProgressFn,
    ReconstructionResult,
    reconstruct,
)
from dynbcdi.reconstruct.parameters import unwrapped_phase
from dynbcdi.reconstruct.start import StartProgressFn, StartSearch, TrialProblem, frame_stride

log = logging.getLogger(__name__)

__all__ = [
    "PipelineResult",
    "StartConfig",
    "amplitude_start",
    "choose_start",
    "default_config",
    "dynamical_from_kinematic",
    "interior_level_support",
    "kinematic_on_grid",
    "rocking_step_rad",
    "run_pipeline",
    "final_loss",
    "soft_edge",
    "start_object",
]


EDGE_MODES = ("out", "in", "kin")


@dataclass(frozen=True)
class StartConfig:
    """How the dynamical start is built from the kinematic result on the grid (truth-free).

    threshold: the kinematic support is |obj| > threshold × interior level
        (:func:`interior_level_support`); 0.4 encloses the crystal (at 64³ au-demo: 0 voxels missed,
        1.4 % extra), which matters more than anything else: 0.45 (a few voxels missed) gave
        0.059 rad, 0.5 gave 0.15 rad, 10 % of the maximum (16 % extra) 0.13 rad.
    extra_thresholds: further thresholds tried as candidate starts (with ``twin_epochs`` > 0): the
        start support must match the crystal closely, and on coarse grids no single level does for
        every crystal; the trial loss picks the best (at 32³ it moved results from 0.16–0.29 to
        0.04–0.16 rad).
    hull: replace that support by its convex hull (for crystals much thicker than the extinction
        length, whose kinematic result loses the far side; off by default: it assumes convexity).
    dilate_vox: dilate the support by up to this many voxels (fewer when the drifting TTE waves
        would wrap around the periodic (y, x) box). 1 voxel (+33 % volume) gave 0.27 rad at 64³.
    phase: "kinematic" (unwrapped kinematic phase, extended by nearest neighbours; default) or
        "flat" (φ = 0).
    remove_ramp: remove the least-squares linear ramp from the kinematic phase first.
    twin_epochs: trial epochs from every candidate (each threshold and its twin); the lowest trial
        loss is kept (0 = a single start at ``threshold``, no twin choice). The kinematic pattern
        cannot tell the twins apart; the TTE pattern can.
    kinematic_amplitude: with ``twin_epochs`` > 0, also try the kinematic result itself (amplitude
        |obj| on its support, unwrapped phase) and its twin as candidates, first (ties keep them).
    amplitude_dilate_vox: grow the support of those candidates by up to this many voxels
        (:func:`amplitude_start`).
    hull_flat: with ``twin_epochs`` > 0, also try for each threshold the convex hull with φ = 0 (for
        crystals much thicker than the extinction length, whose kinematic result misses the far
        side: au-cube-200 at 64³ reaches 0.045 rad with it, 1.95 rad without).
    subvoxel_shifts: with ``twin_epochs`` > 0, translations (voxels) of the kinematic result tried
        along each axis (all 3-axis combinations) for the best candidate, and then its thresholds
        again at the best translation; ``(0.0,)`` turns the search off. Default (0, 0.5): 7 + 2
        more trial runs.
    ranking: how the candidates are ranked (:mod:`dynbcdi.reconstruct.start`): "quick" (default)
        on a cheaper problem, ``quick_epochs`` trial epochs (at most ``twin_epochs``) on every k-th
        rocking frame around the peak, k ≤ ``max_frame_stride`` as large as keeps the candidates'
        support sampled at the Nyquist rate of the intensity along the rocking direction;
        "exhaustive": ``twin_epochs`` epochs on every frame (with ``twin_once=False`` the ranking
        before issue 13). Measured
        (benchmarks/RESULTS.md "Start search cost"): 6 quick epochs gave the same or a better final
        phase error on au-demo, au-cube-200 and sr2iro4-116 at 0.63–0.74 of the exhaustive search's
        CPU time; 2 epochs cost a quarter but took sr2iro4-116 from 0.126 to 0.164 rad, 1 epoch
        chose the wrong twin on au-demo.
    twin_once: in the first stage, choose between the kinematic phase and its twin at ``threshold``
        only, and try the other thresholds in the chosen phase (and as flat hulls): 2 trials fewer
        for 3 thresholds (default; the same start as trying both phases at every threshold on
        au-demo, au-cube-200 and sr2iro4-116, 0.82–0.91 of its search CPU time).
    rethreshold: the third stage (the recipe's other thresholds again at the best translation; on
        au-demo it moves 0.5 to 0.4, and without it the phase error doubles, 0.021 → 0.046 rad).
    soft_edges: with ``twin_epochs`` > 0, a last stage trying the best start with a soft edge, one
        candidate per mode (:func:`soft_edge`): "out" (support grown by one voxel, the new shell at
        ``edge_amplitude``), "in" (the outermost support layer at ``edge_amplitude``), "kin" (grown,
        shell and outer layer at the relative kinematic amplitude). A crystal with a smooth or
        partial-volume surface has voxels of partial amplitude that a binary support at 0.3–0.5 of
        the interior level leaves out, and the frozen support cannot take them back (48³ au-demo
        with a 10 nm surface: started on the true support 0.197 rad, with every partial voxel inside
        at half amplitude 0.050 rad; benchmarks/RESULTS.md).
    edge_amplitude: the amplitude s of the "out" and "in" edges, in (0, 1).
    edge_margin: a soft edge replaces the best start only when its trial loss is below this
        fraction of the best start's (in (0, 1]; 0.9: the soft edges that helped trialled 0.33–0.72
        × the binary start's loss, the one that hurt a sharp crystal 0.97 ×).
    """

    threshold: float = 0.4
    extra_thresholds: tuple[float, ...] = (0.3, 0.5)
    hull: bool = False
    dilate_vox: int = 0
    phase: str = "kinematic"
    remove_ramp: bool = False
    twin_epochs: int = 10
    hull_flat: bool = True
    subvoxel_shifts: tuple[float, ...] = (0.0, 0.5)
    kinematic_amplitude: bool = False
    amplitude_dilate_vox: int = 0
    ranking: str = "quick"
    quick_epochs: int = 6
    max_frame_stride: int = 2
    rethreshold: bool = True
    twin_once: bool = True
    soft_edges: tuple[str, ...] = ("kin",)
    edge_amplitude: float = 0.5
    edge_margin: float = 0.9

    @classmethod
    def measured(cls) -> StartConfig:
        """The start search for measured data: the kinematic result itself (its amplitude and
        unwrapped phase), its twin and the uniform-amplitude start at ``threshold``, 5 trial epochs
        each; the kinematic amplitude is kept unless the trial losses show a flat start fits better.
        A measured crystal is not the homogeneous one the flat start assumes, and its kinematic
        result already fixes the sub-voxel position of its soft edges, so no translation search
        and no soft-edge stage (that stage was measured on simulated crystals only).
        Its support is grown by 4 voxels (:func:`amplitude_start`): phasing's shrink-wrap cuts the
        weak parts of a measured crystal (scan 54 at 64²: 1.70 → 1.50 × the Poisson floor; at 160²
        no change, 1.79 vs 1.78). The ranking stays "exhaustive" (4 trials × 5 epochs on every frame):
        after 2 epochs the uniform-amplitude start can lead before the grown rim of the kinematic
        amplitude has faded, and the quick ranking was not measured on measured scans."""
        return cls(extra_thresholds=(), twin_epochs=5, hull_flat=False, subvoxel_shifts=(0.0,),
                   kinematic_amplitude=True, amplitude_dilate_vox=4, ranking="exhaustive", soft_edges=())

    def __post_init__(self) -> None:
        for value in (self.threshold, *self.extra_thresholds):
            if not 0.0 < value < 1.0:
                raise ValueError(f"StartConfig thresholds must be in (0, 1), got {value}")
        if self.dilate_vox < 0 or self.twin_epochs < 0 or self.amplitude_dilate_vox < 0:
            raise ValueError(f"StartConfig.dilate_vox and twin_epochs must be >= 0, got "
                             f"{self.dilate_vox}, {self.twin_epochs}")
        if self.phase not in ("flat", "kinematic"):
            raise ValueError(f"StartConfig.phase must be 'flat' or 'kinematic', got {self.phase!r}")
        if self.ranking not in ("quick", "exhaustive"):
            raise ValueError(f"StartConfig.ranking must be 'quick' or 'exhaustive', got {self.ranking!r}")
        if self.quick_epochs < 1 or self.max_frame_stride < 1:
            raise ValueError(f"StartConfig.quick_epochs and max_frame_stride must be >= 1, got "
                             f"{self.quick_epochs}, {self.max_frame_stride}")
        if not set(self.soft_edges) <= set(EDGE_MODES):
            raise ValueError(f"StartConfig.soft_edges must be a tuple of {EDGE_MODES}, got {self.soft_edges!r}")
        if not 0.0 < self.edge_margin <= 1.0:
            raise ValueError(f"StartConfig.edge_margin must be in (0, 1], got {self.edge_margin}")
        if not 0.0 < self.edge_amplitude < 1.0:
            raise ValueError(f"StartConfig.edge_amplitude must be in (0, 1), got {self.edge_amplitude}")
        if not self.subvoxel_shifts or not all(0.0 <= v < 1.0 for v in self.subvoxel_shifts):
            raise ValueError(f"StartConfig.subvoxel_shifts must be a non-empty tuple of values in [0, 1) voxel, "
                             f"got {self.subvoxel_shifts}")


@dataclass
class PipelineResult:
    """Outcome of :func:`run_pipeline`.

    phasing: the kinematic result (detector frame); kinematic_grid: (Z, Y, X) complex, that result
    on the grid frame (support applied); dynamical: the TTE reconstruction on the same grid;
    timings: wall times in s (keys "phasing", "dynamical", "total") and "peak_rss_mib";
    attempts: per attempt of ``run_pipeline(attempts=N)`` its phasing seed, mini-batch seed, final
    loss, epochs and stop reason (the kept one has the lowest final loss).
    """

    phasing: PhasingResult
    kinematic_grid: np.ndarray
    dynamical: ReconstructionResult
    timings: dict[str, float] = field(default_factory=dict)
    attempts: list[dict] = field(default_factory=list)


def _grid_shape(dataset: Any, phasing: PhasingResult) -> tuple[int, int, int]:
    """Truth's shape if the dataset has one, else (Z, rows, cols) with Z the smallest even depth that
    holds the kinematic support plus 4 voxels on each side (``grid_shape_for``)."""
    if dataset.truth is not None:
        return tuple(int(n) for n in dataset.truth.shape)
    rows, cols = dataset.intensity.shape[1:]
    basis = dataset.geometry.realspace_basis(phasing.obj.shape)
    nz = grid_shape_for(basis, phasing.obj.shape, dataset.spacing_m, support=phasing.support, margin_vox=4)[0]
    return nz, rows, cols


def kinematic_on_grid(dataset: Any, phasing: PhasingResult) -> np.ndarray:
    """The kinematic result on the dataset's grid frame, (Z, Y, X) complex, zero outside its support.

    The grid is ``dataset.truth.shape`` when the dataset has a truth, else (Z, rows, cols) with Z the
    smallest even depth holding the phasing support plus 4 voxels each side; voxel ``dataset.spacing_m``.
    ``phasing.obj`` must have the shape of ``dataset.intensity`` (N, rows, cols).
    """
    if phasing.obj.shape != dataset.intensity.shape:
        raise ValueError(f"phasing result shape {phasing.obj.shape} differs from the data shape "
                         f"{dataset.intensity.shape}")
    shape = _grid_shape(dataset, phasing)
    basis = dataset.geometry.realspace_basis(phasing.obj.shape)
    obj = detector_to_grid(phasing.obj, basis, shape, dataset.spacing_m)
    support = detector_to_grid(phasing.support.astype(np.complex64), basis, shape, dataset.spacing_m).real > 0.5
    return np.where(support, obj, 0)


def interior_level_support(amp: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Support where ``amp`` exceeds ``level`` × its interior level, (Z, Y, X) bool.

    The interior level is the 90th percentile of ``amp`` over the voxels above 10 % of its maximum:
    unlike the maximum it ignores the few hot voxels of a reconstruction. ``level = 0.5`` puts the
    boundary at half height of a crystal's edge; the pipeline uses 0.4 so that the support encloses
    the crystal (64³ au-demo kinematic result: 0.4 → 0 voxels missed, +1.4 %; 0.5 → 0.7 % missed;
    10 % of the maximum → +16 %). amp : (Z, Y, X) ≥ 0; level in (0, 1).
    """
    amp = np.asarray(amp, dtype=float)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if amp.ndim != 3 or not np.isfinite(amp).all() or amp.max() <= 0:
        raise ValueError(f"amp must be a finite (Z, Y, X) array with a positive maximum, got shape {amp.shape}")
    interior = np.percentile(amp[amp > 0.1 * amp.max()], 90)
    return amp > level * interior


def _fits(support: np.ndarray, spacing_m: Any, k0: np.ndarray, kh: np.ndarray) -> bool:
    ny, nx = min_transverse_width(support, spacing_m, k0, kh)
    return (ny is None or ny <= support.shape[1]) and (nx is None or nx <= support.shape[2])


def _unwrapped_phase(obj: np.ndarray, support: np.ndarray, remove_ramp: bool) -> np.ndarray:
    """Unwrapped phase of ``obj`` on ``support`` (rad), (Z, Y, X), optionally minus its least-squares plane."""
    phase = unwrapped_phase(obj, support)
    return remove_phase_ramp(phase, support)[0] if remove_ramp else phase


def start_object(kinematic_grid: np.ndarray, spacing_m: Any, k0_dir: Any, kh_dir: Any,
                 start: StartConfig | None = None) -> np.ndarray:
    """Truth-free dynamical start from the kinematic result on the grid, (Z, Y, X) complex.

    Amplitude 1 (a homogeneous crystal) on the kinematic support of ``start`` (optionally its convex
    hull, dilated while the drifting waves of directions ``k0_dir``, ``kh_dir`` (grid frame, (x, y, z))
    do not wrap around the (y, x) box), phase per ``start.phase``; 0 outside. spacing_m: (dz, dy, dx) m.
    """
    start = start or StartConfig()
    kinematic_grid = np.asarray(kinematic_grid)
    if kinematic_grid.ndim != 3 or not np.abs(kinematic_grid).any():
        raise ValueError(f"kinematic_grid must be a non-zero (Z, Y, X) array, got shape {kinematic_grid.shape}")
    support = interior_level_support(np.abs(kinematic_grid), start.threshold)
    region = convex_hull_image(support) if start.hull else support
    if not _fits(region, spacing_m, k0_dir, kh_dir):
        raise ValueError("the kinematic support is too wide for the periodic TTE box "
                         f"(grid {kinematic_grid.shape}): the drifting waves would wrap; pad the grid")
    for n in range(start.dilate_vox, 0, -1):
        dilated = ndimage.binary_dilation(region, iterations=n)
        if _fits(dilated, spacing_m, k0_dir, kh_dir):
            region = dilated
            break
    log.info("start support: %d voxels (kinematic support %d)", region.sum(), support.sum())
    if start.phase == "flat":
        return region.astype(np.complex128)
    phase = _unwrapped_phase(kinematic_grid, support, start.remove_ramp)
    nearest = tuple(ndimage.distance_transform_edt(~support, return_distances=False, return_indices=True))
    return np.where(region, np.exp(1j * phase[nearest]), 0)


def default_config(epochs: int = 60, device: str = "cpu", measured: bool = False) -> ReconstructionConfig:
    """The tuned settings of the truth-free pipeline (64³ au-demo, benchmarks/RESULTS.md).

    Adam lr 0.1 on φ (rad), 0.03 on s, 0.01 on ln(scale); 5 mini-batches per epoch of 16-angle
    chunks; ReduceLROnPlateau(0.5, patience 10); no shrink-wrap (the start support already encloses
    the crystal tightly; shrink-wrap at 20 % of the blurred maximum every 10 epochs cut into the
    crystal); stop when the epoch loss changes < 1e-4 over 10 epochs, after at least 30.
    At 64³ the phase error settles within 20–30 epochs.

    measured=True adds what a measured scan needs (benchmarks/RESULTS.md, scan 54): a fitted global
    rocking offset, per-frame intensity scales and the detector-plane blur (pixel-area integration,
    σ = 1/√12 px, which every pixel does, plus partial coherence; from σ = 0.3 px: on scan 54 at
    64² it took the fit from 2.65 to 1.90 × the Poisson floor, the frame scales to 1.70), 5 % free pixels
    for the over-fitting check, and a stopping tolerance of 2e-3 on 10-epoch means (the noisy
    plateau of real data is recognised).
    """
    cfg = ReconstructionConfig(
        epochs=epochs, device=device,
        optimizer=OptimizerConfig(lr=0.1, lr_amplitude_factor=0.3, chunk_size=16, plateau_patience=10),
        shrinkwrap=ShrinkWrapConfig(every=0, init_threshold=0.1),
        stopping=StoppingConfig(tol=1e-4, window=10, min_epochs=30))
    if not measured:
        return cfg
    on = TermConfig(refine=True, lr_factor=0.1)
    return dataclasses.replace(cfg, stopping=StoppingConfig(tol=2e-3, window=10, min_epochs=30),
                               terms=TermsConfig(rocking=on, frame_scale=on, free_fraction=0.05,
                                                 blur=TermConfig(refine=True, lr_factor=0.1, init=0.3)))


def forward_model(dataset: Any, kind: str = "tte", polarization: str | float = "sigma") -> Any:
    """The ``kind`` ("tte" or "kinematic") forward model of ``dataset`` on its grid frame and voxel
    (``from_geometry``); ``polarization``: "sigma", "pi" or the factor C."""
    from dynbcdi.forward.kinematic import KinematicModel

    if kind not in ("tte", "kinematic"):
        raise ValueError(f"forward model must be 'tte' or 'kinematic', got {kind!r}")
    cls = TTEModel if kind == "tte" else KinematicModel
    return cls.from_geometry(dataset.geometry, dataset.reflection, dataset.spacing_m, polarization=polarization)


def dynamical_from_kinematic(dataset: Any, kinematic_grid: np.ndarray, config: ReconstructionConfig | None = None,
                             *, model: Any = None, start: StartConfig | None = None,
                             progress: ProgressFn | None = None, callback: CallbackFn | None = None,
                             checkpoint_dir: str | os.PathLike | None = None,
                             start_progress: StartProgressFn | None = None) -> ReconstructionResult:
    """Dynamical reconstruction of ``dataset`` started from its kinematic result on the grid.

    kinematic_grid : (Z, rows, cols) complex (:func:`kinematic_on_grid`). config : default
    :func:`default_config` (``measured=True`` when the dataset has no truth). model : forward model
    (default the σ-polarised TTE model of the dataset). start : :class:`StartConfig` (default
    :meth:`StartConfig.measured` when the dataset has no truth). progress, callback,
    checkpoint_dir : as :func:`dynbcdi.reconstruct.reconstruct`; start_progress : that of the start
    search (:func:`choose_start`). No truth is used.
    """
    measured = dataset.truth is None
    config = config or default_config(measured=measured)
    start = start or (StartConfig.measured() if measured else StartConfig())
    model = model or forward_model(dataset)
    init = choose_start(dataset, kinematic_grid, config, model=model, start=start, progress=start_progress)
    return reconstruct(dataset.intensity, dataset.valid, dataset.geometry.dq_grid(), model, init, config,
                       checkpoint_dir=checkpoint_dir, progress=progress, callback=callback,
                       rocking_step_rad=rocking_step_rad(dataset.geometry))


def rocking_step_rad(geometry: Any) -> float | None:
    """Mean rocking step (rad) of a geometry's scan, None for a single angle."""
    angles = np.asarray(geometry.rocking_angles_rad, dtype=float)
    return float(np.mean(np.diff(angles))) if angles.size > 1 else None


def choose_start(dataset: Any, kinematic_grid: np.ndarray, config: ReconstructionConfig, *, model: Any,
                 start: StartConfig | None = None, progress: StartProgressFn | None = None,
                 state_path: str | os.PathLike | None = None, resume: bool = False) -> np.ndarray:
    """The dynamical start built from the kinematic result, (Z, Y, X) complex (truth-free).

    With ``start.twin_epochs`` > 0 candidates are ranked by their loss after a few trial epochs of
    ``config`` with ``model`` (``start.ranking``; never more epochs than ``config.epochs``), in three
    stages: (1) every recipe (threshold × {kinematic phase, twin, flat hull}; with ``start.twin_once``
    the twin decided at ``start.threshold`` alone) at the kinematic result's own position; (2) the best recipe on the kinematic result translated by every
    combination of ``start.subvoxel_shifts``; (3) the other thresholds of that recipe at the best
    translation (``start.rethreshold``); (4) the best start with each soft edge of ``start.soft_edges``
    (:func:`soft_edge`). Without trial epochs: the single start of ``start``.
    The translation is harmless: the data do not fix the crystal's position. Default ``start``:
    :meth:`StartConfig.measured` for a dataset without truth (measured), else :class:`StartConfig`.
    progress : called after every candidate (:class:`dynbcdi.reconstruct.start.StartProgress`).
    state_path : JSON file keeping the finished trials; resume : continue the search stored there
    (the result is bit-for-bit that of an uninterrupted search). Ctrl-C raises KeyboardInterrupt.
    """
    k0, kh = dataset.geometry.beam_directions_grid()
    start = start or (StartConfig.measured() if dataset.truth is None else StartConfig())
    kin = np.asarray(kinematic_grid)
    if not start.twin_epochs:
        return start_object(kin, dataset.spacing_m, k0, kh, start)
    thresholds = tuple(dict.fromkeys((start.threshold, *start.extra_thresholds)))
    kinds = ("kinematic", "twin", "hull") if start.hull_flat else ("kinematic", "twin")
    zero = (0.0, 0.0, 0.0)
    first = [(zero, (start.threshold, kind)) for kind in ("amplitude", "amplitude-twin")] \
        if start.kinematic_amplitude else []
    shifts = [tuple(map(float, sh)) for sh in itertools.product(start.subvoxel_shifts, repeat=3) if any(sh)]
    stage1 = first + [(zero, (t, kind)) for t in thresholds for kind in kinds]

    def build(shift: tuple[float, float, float], recipe: tuple[float, str]) -> np.ndarray | None:
        shifted = fourier_shift(kin, shift) if any(shift) else kin
        return _start_for(shifted, recipe, dataset.spacing_m, k0, kh, start)

    problem = _trial_problem(dataset, kin, config, model, start)
    twin_once = start.twin_once and len(thresholds) > 1
    total = len(stage1) + len(shifts) + (len(thresholds) - 1) * (start.rethreshold - twin_once) \
        + len(start.soft_edges)
    search = StartSearch(problem, problem.fingerprint(kin, start), state_path=state_path, resume=resume,
                         progress=progress, total=total)
    if twin_once:  # the twin chosen once, at the default threshold; the other thresholds in that phase
        best = search.best([(zero, (start.threshold, kind)) for kind in ("kinematic", "twin")], build)
        phase = best[0][1][1]
        best = search.best([c for c in stage1 if c[1][1] not in ("kinematic", "twin") or
                            (c[1][0] != start.threshold and c[1][1] == phase)], build, best)
    else:
        best = search.best(stage1, build)
    recipe = best[0][1]
    if recipe[1].startswith("amplitude"):  # the kinematic result itself: no threshold, no translation
        log.info("start: the kinematic result%s (trial loss %.4g)", " (twin)" if "twin" in recipe[1] else "",
                 best[1])
        return best[2]
    best = search.best([(sh, recipe) for sh in shifts], build, best)
    shift = best[0][0]
    if start.rethreshold:
        best = search.best([(shift, (t, recipe[1])) for t in thresholds if t != recipe[0]], build, best)
    if start.soft_edges:  # the partial-volume surface of a smooth crystal (benchmarks/RESULTS.md)
        best = _soft_stage(search, best, build, start)
    (shift, recipe), loss, obj = best
    log.info("start: threshold %g, %s%s, kinematic result shifted by %s voxel (trial loss %.4g)",
             recipe[0], recipe[1], f", soft edge {recipe[2]}" if len(recipe) > 2 else "", shift, loss)
    return obj


def _soft_stage(search: StartSearch, best: tuple, build: Callable[..., np.ndarray | None],
                start: StartConfig) -> tuple:
    """The best start, or its best soft-edged version when that trials lower than ``start.edge_margin``
    × the best start's loss (ties and near-ties keep the binary start: 64³ sharp au-demo, seed 4, a
    soft edge 3 % lower in trial loss reached 0.052 rad against 0.032; every soft edge that helped
    trialled ≤ 0.72 × lower)."""
    shift, recipe = best[0]
    try:
        soft = search.best([(shift, (*recipe[:2], mode)) for mode in start.soft_edges], build)
    except ValueError:  # no soft edge fits the periodic box
        return best
    return soft if math.isfinite(soft[1]) and soft[1] < start.edge_margin * best[1] else best


def _trial_problem(dataset: Any, kin: np.ndarray, config: ReconstructionConfig, model: Any,
                   start: StartConfig) -> TrialProblem:
    """The trial runs of ``start.ranking``: their epochs never exceed ``config.epochs``; "quick" uses
    every k-th frame (:func:`dynbcdi.reconstruct.start.frame_stride`), k from the largest candidate
    support (the lowest threshold, its convex hull with ``hull_flat``, the grown kinematic support with
    ``kinematic_amplitude``) grown by one voxel for the translations and one more for a soft edge.
    kin : (Z, Y, X) complex."""
    dq = dataset.geometry.dq_grid()
    epochs, stride = start.twin_epochs, 1
    if start.ranking == "quick":
        epochs = min(epochs, start.quick_epochs)
        amp = np.abs(kin)
        support = interior_level_support(amp, min((start.threshold, *start.extra_thresholds)))
        if start.hull_flat:
            support = convex_hull_image(support)
        if start.kinematic_amplitude:
            support |= ndimage.binary_dilation(amp > 0.1 * amp.max(), iterations=max(start.amplitude_dilate_vox, 1))
        grow = 1 + bool(start.soft_edges)  # the translations, and the soft edge's grown shell
        stride = frame_stride(dq, ndimage.binary_dilation(support, iterations=grow), dataset.spacing_m,
                              start.max_frame_stride)
    epochs = max(1, min(epochs, config.epochs))
    log.info("start search: %s ranking, %d trial epochs on every frame of %d", start.ranking, epochs, stride)
    # the exhaustive ranking keeps the mean of the last 3 trial epochs it was measured with
    return TrialProblem(dataset.intensity, dataset.valid, dq, model, rocking_step_rad(dataset.geometry), config,
                        epochs, stride, window=3 if start.ranking == "exhaustive" else None)


def _start_for(kin: np.ndarray, recipe: tuple, spacing_m: Any, k0: np.ndarray, kh: np.ndarray,
               start: StartConfig) -> np.ndarray | None:
    """One candidate start: recipe (threshold, kind) or (threshold, kind, edge mode), kind "kinematic"
    (the start of ``start`` at that threshold), "twin" (its twin) or "hull" (flat-phase convex hull;
    None when it would wrap); an edge mode softens its edge (:func:`soft_edge`)."""
    if len(recipe) == 3:
        plain = "kinematic" if recipe[1] == "twin" else recipe[1]  # softened first, then twinned
        obj = _start_for(kin, (recipe[0], plain), spacing_m, k0, kh, start)
        if obj is None:
            return None
        soft = soft_edge(obj, kin, recipe[2], spacing_m, k0, kh, start.edge_amplitude)
        return None if soft is None else (twin_image(soft) if recipe[1] == "twin" else soft)
    threshold, kind = recipe
    if kind in ("amplitude", "amplitude-twin"):
        obj = amplitude_start(kin, spacing_m, k0, kh, start.amplitude_dilate_vox)
        return twin_image(obj) if kind == "amplitude-twin" else obj
    if kind == "hull":
        try:
            return start_object(kin, spacing_m, k0, kh, dataclasses.replace(
                start, threshold=threshold, hull=True, phase="flat", dilate_vox=0))
        except ValueError as err:  # hull too wide for the periodic box: not a candidate
            log.info("no hull candidate at threshold %g: %s", threshold, err)
            return None
    obj = start_object(kin, spacing_m, k0, kh, dataclasses.replace(start, threshold=threshold))
    return twin_image(obj) if kind == "twin" else obj


def soft_edge(obj: np.ndarray, kinematic_grid: np.ndarray, mode: str, spacing_m: Any, k0_dir: Any,
              kh_dir: Any, amplitude: float = 0.5) -> np.ndarray | None:
    """A start ``obj`` (Z, Y, X) complex, amplitude 1 on its support) with a soft, partial-volume edge.

    mode "out": the support grown by one voxel, the new shell at ``amplitude`` with the phase of the
    nearest support voxel; "in": the outermost layer of the support at ``amplitude``; "kin": grown by
    one voxel, and on the new shell and the outermost layer the kinematic amplitude
    |``kinematic_grid``| relative to its interior level, clipped to [0.1, 1]. None when the grown
    support would wrap around the periodic (y, x) box (``k0_dir``, ``kh_dir`` grid-frame (x, y, z);
    spacing_m (dz, dy, dx) m). Soften a start before taking its twin.
    """
    obj = np.asarray(obj)
    support = obj != 0
    if mode == "in":
        return np.where(support & ~ndimage.binary_erosion(support), amplitude * obj, obj)
    grown = ndimage.binary_dilation(support)
    if not _fits(grown, spacing_m, k0_dir, kh_dir):
        return None
    nearest = tuple(ndimage.distance_transform_edt(~support, return_distances=False, return_indices=True))
    phase = np.exp(1j * np.angle(obj[nearest]))
    if mode == "out":
        return np.where(support, obj, np.where(grown, amplitude * phase, 0))
    amp = np.abs(kinematic_grid)
    rel = np.clip(amp / np.percentile(amp[amp > 0.1 * amp.max()], 90), 0.1, 1.0)
    edge = grown & ~ndimage.binary_erosion(support)
    return np.where(edge, rel * phase, obj)


def amplitude_start(kinematic_grid: np.ndarray, spacing_m: Any, k0_dir: Any, kh_dir: Any,
                    dilate_vox: int = 0, rim_amplitude: float = 0.1) -> np.ndarray:
    """The kinematic result as a start, its support grown by up to ``dilate_vox`` voxels, (Z, Y, X) complex.

    Inside the kinematic support (|obj| > 10 % of its maximum) the object is kept as it is; the
    added rim gets ``rim_amplitude`` × max|obj| and the phase of the nearest support voxel, so that
    the optimiser can grow the crystal where phasing's shrink-wrap cut it (fewer voxels when the
    drifting TTE waves would wrap around the periodic (y, x) box). spacing_m (dz, dy, dx) m; k0_dir,
    kh_dir grid-frame (x, y, z) unit vectors.
    """
    kin = np.asarray(kinematic_grid)
    amp = np.abs(kin)
    support = amp > 0.1 * amp.max()
    for n in range(int(dilate_vox), 0, -1):
        grown = ndimage.binary_dilation(support, iterations=n)
        if _fits(grown, spacing_m, k0_dir, kh_dir):
            nearest = tuple(ndimage.distance_transform_edt(~support, return_distances=False, return_indices=True))
            phase = np.angle(kin)[nearest]
            rim = rim_amplitude * amp.max() * np.exp(1j * phase)
            if n < dilate_vox:
                log.info("kinematic support grown by %d voxels only (of %d): the periodic (y, x) box is too "
                         "narrow for more", n, dilate_vox)
            return np.where(support, kin, np.where(grown, rim, 0))
    if dilate_vox:
        log.warning("kinematic support not grown: the drifting TTE waves would wrap around the periodic "
                    "(y, x) box %s; a finer detector sampling (less binning) widens the box", support.shape[1:])
    return np.where(support, kin, 0)


def final_loss(result: ReconstructionResult) -> float:
    """The truth-free quality of a finished run: its amplitude loss over all fitted pixels
    (``result.fit``, evaluated once at the end), else the last epoch's mini-batch loss."""
    if result.fit is not None and math.isfinite(result.fit.loss_fit):
        return float(result.fit.loss_fit)
    return float(result.history.loss[-1])


def run_pipeline(dataset: Any, *, recipe: str = "paper", n_starts: int = 4, seed: int = 0,
                 config: ReconstructionConfig | None = None, device: str = "cpu",
                 start: StartConfig | None = None, attempts: int = 1,
                 phasing_progress: Callable[..., bool | None] | None = None,
                 progress: ProgressFn | None = None, callback: CallbackFn | None = None) -> PipelineResult:
    """Kinematic phasing (``n_starts`` random starts, lowest Fourier error kept) → grid → dynamical.

    dataset : :class:`dynbcdi.io.Dataset` (its truth, if any, only sets the grid shape).
    config : dynamical settings (default :func:`default_config`; ``device`` overrides its device).
    attempts : run the whole chain this many times with disjoint phasing starts (seeds
        seed + a·n_starts, …) and mini-batch orders (``config.seed`` + a), and keep the attempt with
        the lowest :func:`final_loss`. On the same data a run that ends far off has a 2.4–45× higher
        final loss than a good one (48³ au-demo, sharp and smooth, noise-free and Poisson, 8 seeds
        each: Spearman 0.5–0.93 between error and loss; 3 attempts: Poisson median 0.041 → 0.034 rad,
        worst 0.194 → 0.072; benchmarks/RESULTS.md), so the loss picks the good attempt without the
        truth. A Ctrl-C (or ``callback``) stop ends the series with that attempt's result.
    Returns a :class:`PipelineResult` with wall times (s) of the kept attempt, the process peak RSS
    (MiB) and every attempt's seed and final loss.
    """
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise ValueError(f"attempts must be an integer >= 1, got {attempts!r}")
    config = dataclasses.replace(config or default_config(), device=device)
    best, tried = None, []
    for a in range(attempts):
        result = _one_attempt(dataset, recipe, n_starts, seed + a * n_starts,
                              dataclasses.replace(config, seed=config.seed + a), device, start,
                              phasing_progress, progress, callback)
        dyn = result.dynamical
        tried.append({"phasing_seed": seed + a * n_starts, "seed": config.seed + a, "final_loss": final_loss(dyn),
                      "epochs": dyn.epochs, "stopped_reason": dyn.stopped_reason})
        log.info("attempt %d/%d: final loss %.4g", a + 1, attempts, tried[-1]["final_loss"])
        if dyn.interrupted or dyn.stopped_reason == "callback":
            best = result
            break
        if best is None or tried[-1]["final_loss"] < final_loss(best.dynamical):
            best = result
    best.attempts = tried
    return best


def _one_attempt(dataset: Any, recipe: str, n_starts: int, seed: int, config: ReconstructionConfig,
                 device: str, start: StartConfig | None, phasing_progress: Callable[..., bool | None] | None,
                 progress: ProgressFn | None, callback: CallbackFn | None) -> PipelineResult:
    """One phasing → grid → dynamical chain (:func:`run_pipeline`)."""
    t0 = time.perf_counter()
    phasing = phase_retrieval(dataset.intensity, dataset.valid, recipe=recipe, n_starts=n_starts, seed=seed,
                              device=device, progress=phasing_progress)
    t1 = time.perf_counter()
    log.info("phasing: %d starts, errors %s, %.0f s", n_starts, phasing.start_errors, t1 - t0)
    kin = kinematic_on_grid(dataset, phasing)
    dyn = dynamical_from_kinematic(dataset, kin, config, start=start, progress=progress, callback=callback)
    t2 = time.perf_counter()
    timings = {"phasing": t1 - t0, "dynamical": t2 - t1, "total": t2 - t0,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return PipelineResult(phasing=phasing, kinematic_grid=kin, dynamical=dyn, timings=timings)
