"""Typed, validated configuration of the dynamical reconstruction (paper Eq. 4 and Methods).

A :class:`ReconstructionConfig` is nested per concern (optimiser, loss, shrink-wrap, stopping,
checkpoints). Every field has a default taken from the paper where it gives one (Adam, learning
rate 0.15, 5 random mini-batches per epoch, ATV with p = 2, q = 1). TOML files mirror the nesting::

    epochs = 300
    seed = 0
    [optimizer]
    lr = 0.15
    lr_amplitude_factor = 0.3
    [loss]
    kind = "amplitude"
    atv_weight = 1e-3
    [shrinkwrap]
    every = 20
    [terms]
    free_fraction = 0.05
    [terms.rocking]
    refine = true

Unknown keys and values of the wrong type are errors (``ValueError`` naming the key).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.ndimage import gaussian_filter

from dynbcdi.config import deep_merge, from_dict, load_toml

LossKind = Literal["amplitude", "poisson"]


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam and the plateau scheduler.

    lr: base learning rate of Adam (paper: 0.15); it applies to the phase φ (rad).
    lr_amplitude_factor: learning rate of the amplitude s (s is normalised to max 1) = lr × factor.
    lr_scale_factor: learning rate of the log intensity scale = lr × factor.
    lr_offset_factor: learning rate of the per-angle rocking offsets (in rocking steps) = lr × factor.
    betas: Adam (β1, β2).
    n_batches: random mini-batches of rocking angles per epoch (paper: 5); one Adam step each.
    chunk_size: angles per forward/backward sub-chunk inside a mini-batch; gradients are
        accumulated, so peak memory is bounded by one chunk.
    plateau_factor, plateau_patience, plateau_threshold, min_lr: ReduceLROnPlateau on the epoch loss.
    refine_offsets: also optimise one rocking-angle offset per angle (the paper's "rocking angle
        fluctuations"), opt-in; the same as ``terms.rocking_per_frame.refine`` with lr factor
        ``lr_offset_factor`` (kept so that older configuration files load unchanged).
    max_rollbacks: consecutive non-finite steps tolerated (each halves the learning rate) before
        the run stops with reason "non_finite".
    """

    lr: float = 0.15
    lr_amplitude_factor: float = 1.0
    lr_scale_factor: float = 0.1
    lr_offset_factor: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    n_batches: int = 5
    chunk_size: int = 8
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    plateau_threshold: float = 1e-3
    min_lr: float = 1e-5
    refine_offsets: bool = False
    max_rollbacks: int = 8

    def __post_init__(self) -> None:
        _positive(self, "lr", "lr_amplitude_factor", "lr_scale_factor", "lr_offset_factor")
        _positive(self, "n_batches", "chunk_size", "max_rollbacks")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ValueError(f"optimizer.plateau_factor must be in (0, 1), got {self.plateau_factor}")
        if self.plateau_patience < 0 or self.min_lr < 0 or self.plateau_threshold < 0:
            raise ValueError("optimizer.plateau_patience, plateau_threshold and min_lr must be >= 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optimizer.betas must be two numbers in [0, 1), got {self.betas}")


@dataclass(frozen=True)
class LossConfig:
    """Data term and ATV regulariser (PHYSICS.md §Reconstruction).

    kind: "amplitude" = (1/M) Σ_valid (√D − √I)² (paper); "poisson" = (1/M) Σ_valid (D − I ln D).
    atv_weight: γ of γ·ATV(S); 0 disables the regulariser.
    atv_epsilon: ε in (|∇x S|² + |∇y S|² + |∇z S|² + ε)^{1/2}; keeps the gradient finite at ∇S = 0.
    sqrt_floor: photons added under the square root / logarithm so that D = 0 has a finite gradient.
    """

    kind: LossKind = "amplitude"
    atv_weight: float = 0.0
    atv_epsilon: float = 1e-8
    sqrt_floor: float = 1e-6

    def __post_init__(self) -> None:
        if self.kind not in ("amplitude", "poisson"):
            raise ValueError(f"loss.kind must be 'amplitude' or 'poisson', got {self.kind!r}")
        if self.atv_weight < 0:
            raise ValueError(f"loss.atv_weight must be >= 0, got {self.atv_weight}")
        _positive(self, "atv_epsilon", "sqrt_floor")


@dataclass(frozen=True)
class ShrinkWrapConfig:
    """Shrink-wrap on the amplitude s: Gaussian blur, threshold, freeze s = 0 outside.

    every: apply every this many epochs (0 = never). start: first epoch where it may apply.
    sigma_vox: Gaussian σ in voxels. threshold: fraction of the reference level kept as support.
    reference: "max" = the blurred maximum; "median" = the median of s inside the current support,
    robust to the few voxels whose fitted s overshoots (2.5× the typical s on au-cube-200 at 48³,
    where 0.3 × the maximum cut into the crystal and 0.4 × the median removed exactly the 442
    voxels that the start support had too many: benchmarks/RESULTS.md, "thick crystals").
    init_threshold: fraction of max |init| defining the initial support.
    """

    every: int = 0
    start: int = 10
    sigma_vox: float = 1.0
    threshold: float = 0.2
    init_threshold: float = 0.1
    reference: Literal["max", "median"] = "max"

    def __post_init__(self) -> None:
        if self.every < 0 or self.start < 0:
            raise ValueError(f"shrinkwrap.every/start must be >= 0, got {self.every}, {self.start}")
        _positive(self, "sigma_vox")
        if self.reference not in ("max", "median"):
            raise ValueError(f"shrinkwrap.reference must be 'max' or 'median', got {self.reference!r}")
        for name in ("threshold", "init_threshold"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"shrinkwrap.{name} must be in [0, 1), got {getattr(self, name)}")

    def keep(self, s: np.ndarray, support: np.ndarray) -> np.ndarray:
        """The voxels this rule keeps, (Z, Y, X) bool: Gaussian-blurred s (zero outside ``support``)
        above ``threshold`` × the reference level. s : (Z, Y, X) amplitude; support : (Z, Y, X) bool.
        One rule for the one-reflection and the joint (multi-reflection) fits."""
        s = np.where(support, s, 0.0)
        blurred = gaussian_filter(s, self.sigma_vox)
        if self.reference == "max":
            level = blurred.max()
        else:
            level = float(np.median(s[support])) if support.any() else 0.0
        return blurred > self.threshold * level


@dataclass(frozen=True)
class StoppingConfig:
    """When a run has converged (else it stops at max epochs). Three tests, any one stops it, all
    only after ``min_epochs`` epochs:

    * the **result** no longer moves: every ``window`` epochs the crystal S is compared with the S of
      ``window`` epochs earlier, c = ‖S − e^{iα} S_old‖ / ‖S‖ with the global phase α removed (on a
      crystal of uniform amplitude c is the RMS phase change in rad); stop when c ≤ ``change_tol``
      (0 disables). On noise-free data the loss keeps falling by orders of magnitude while the
      result has stopped changing, so only this test fires there. 1e-3 per 10 epochs stopped every
      measured run within 0.0003 rad of its phase error after 100–300 epochs (3e-3: up to 0.003 rad
      worse); benchmarks/RESULTS.md, "Convergence test, thick crystals and the 2 µm cube".
    * the **learning rate** is spent (``at_min_lr``): the plateau scheduler found no improvement
      for ``optimizer.plateau_patience`` epochs while the lr was already at ``optimizer.min_lr``.
    * the **loss** no longer falls: the mean losses of the last ``window`` epochs and of the
      ``window`` before differ by at most ``tol`` (relative). Epoch losses scatter by ~1 % (random
      mini-batch order, Adam moving the parameters within the epoch), window means √window times
      less: ``tol`` should exceed that scatter for a noisy plateau to be recognised (the
      measured-data default is 2e-3 with a window of 10).

    loss: "fit" (the fitted pixels) or "free" (the held-out pixels of ``terms.free_fraction``: stops
    when the free loss stops falling, i.e. before over-fitting).
    """

    tol: float = 1e-4
    window: int = 10
    min_epochs: int = 10
    loss: Literal["fit", "free"] = "fit"
    change_tol: float = 1e-3
    at_min_lr: bool = True

    def __post_init__(self) -> None:
        _positive(self, "tol", "window")
        if self.min_epochs < 0 or self.change_tol < 0:
            raise ValueError(f"stopping.min_epochs and change_tol must be >= 0, got {self.min_epochs}, "
                             f"{self.change_tol}")
        if self.loss not in ("fit", "free"):
            raise ValueError(f"stopping.loss must be 'fit' or 'free', got {self.loss!r}")


@dataclass(frozen=True)
class TermConfig:
    """Options of one measurement term (:mod:`dynbcdi.forward.terms`).

    refine: fit it; lr_factor: Adam lr = optimizer.lr × factor (in the term's own units: rocking
    steps, ln scale, photons, px²); start_epoch: first epoch (0-based) in which it is updated;
    init: its starting value (background: photons/pixel; blur: σ in pixels; others: unused, 0).
    """

    refine: bool = False
    lr_factor: float = 0.1
    start_epoch: int = 0
    init: float = 0.0

    def __post_init__(self) -> None:
        _positive(self, "lr_factor")
        if self.start_epoch < 0 or self.init < 0:
            raise ValueError(f"terms: start_epoch and init must be >= 0, got {self.start_epoch}, {self.init}")


@dataclass(frozen=True)
class TermsConfig:
    """The measurement terms (:class:`dynbcdi.forward.measurement.MeasurementModel`) and free pixels.

    rocking: global rocking-angle offset (fitted by default for measured data: the absolute Bragg
    position is unknown and refraction moves the peak); rocking_per_frame: one offset per frame;
    frame_scale: per-frame intensity scale (fitted by default for measured data), bounded to
    ±``frame_scale_max_rel``; background: flat background ≥ 0 (photons/pixel); blur: partial
    coherence as a Gaussian blur of the detector intensity (σ ≥ 0 in pixels; it also takes up the
    integration over the pixel area, σ = 1/√12 px for a uniform pixel); deadtime: count-rate loss
    of a photon-counting detector (init: fractional loss at the brightest data pixel).
    free_fraction: fraction of the valid (frame, row, col) data points held out of the fit (seeded
    by ``free_seed``); their loss and Poisson deviance are reported beside the fitted ones.
    """

    rocking: TermConfig = field(default_factory=lambda: TermConfig(lr_factor=0.1))
    rocking_per_frame: TermConfig = field(default_factory=lambda: TermConfig(lr_factor=0.1))
    frame_scale: TermConfig = field(default_factory=lambda: TermConfig(lr_factor=0.1))
    frame_scale_max_rel: float = 0.25
    background: TermConfig = field(default_factory=lambda: TermConfig(lr_factor=0.1))
    blur: TermConfig = field(default_factory=lambda: TermConfig(lr_factor=0.1))
    deadtime: TermConfig = field(default_factory=lambda: TermConfig(lr_factor=0.1))
    free_fraction: float = 0.0
    free_seed: int = 0

    def __post_init__(self) -> None:
        _positive(self, "frame_scale_max_rel")
        if not 0.0 <= self.free_fraction < 0.5:
            raise ValueError(f"terms.free_fraction must be in [0, 0.5), got {self.free_fraction}")


@dataclass(frozen=True)
class ReconstructionConfig:
    """Everything :func:`dynbcdi.reconstruct.reconstruct` needs besides data, model and init.

    epochs: maximum number of epochs. seed: seeds the mini-batch permutations (torch.Generator).
    device: torch device of the optimisation. dtype: "complex64" or "complex128" for S.
    checkpoint_every: epochs between checkpoints when a checkpoint directory is given.
    """

    epochs: int = 200
    seed: int = 0
    device: str = "cpu"
    dtype: Literal["complex64", "complex128"] = "complex64"
    checkpoint_every: int = 10
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    shrinkwrap: ShrinkWrapConfig = field(default_factory=ShrinkWrapConfig)
    stopping: StoppingConfig = field(default_factory=StoppingConfig)
    terms: TermsConfig = field(default_factory=TermsConfig)

    def __post_init__(self) -> None:
        _positive(self, "epochs", "checkpoint_every")
        if self.dtype not in ("complex64", "complex128"):
            raise ValueError(f"dtype must be 'complex64' or 'complex128', got {self.dtype!r}")

    def replace(self, **changes: Any) -> ReconstructionConfig:
        """Return a copy with top-level fields replaced (e.g. ``epochs=50``)."""
        return dataclasses.replace(self, **changes)

    def with_terms(self, **changes: Any) -> ReconstructionConfig:
        """Return a copy with fields of ``terms`` replaced (e.g. ``background=TermConfig(refine=True)``)."""
        return dataclasses.replace(self, terms=dataclasses.replace(self.terms, **changes))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (TOML/JSON-serialisable)."""
        return dataclasses.asdict(self)


def config_from_dict(data: dict[str, Any], base: ReconstructionConfig | None = None,
                     where: str = "") -> ReconstructionConfig:
    """Build a :class:`ReconstructionConfig` from a nested dict; unknown keys raise ``ValueError``.

    base : settings that keys absent from ``data`` keep (default: the field defaults of
    :class:`ReconstructionConfig`); the CLI and ``dynbcdi run`` pass the pipeline's tuned
    ``default_config()``. where : dotted name of the section, for messages.
    """
    merged = deep_merge(base.to_dict(), data) if base is not None else data
    return from_dict(ReconstructionConfig, merged, where)


def load_config(path: str | os.PathLike, base: ReconstructionConfig | None = None) -> ReconstructionConfig:
    """Read a TOML file (sections ``optimizer``, ``loss``, ``shrinkwrap``, ``stopping``, ``terms``)
    on top of ``base`` (see :func:`config_from_dict`)."""
    return config_from_dict(load_toml(path), base)


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {value!r}")
