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

Unknown keys and values of the wrong type are errors (``ValueError`` naming the key).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from dynbcdi.config import from_dict, load_toml

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
        fluctuations"), opt-in.
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
    sigma_vox: Gaussian σ in voxels. threshold: fraction of the blurred maximum kept as support.
    init_threshold: fraction of max |init| defining the initial support.
    """

    every: int = 0
    start: int = 10
    sigma_vox: float = 1.0
    threshold: float = 0.2
    init_threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.every < 0 or self.start < 0:
            raise ValueError(f"shrinkwrap.every/start must be >= 0, got {self.every}, {self.start}")
        _positive(self, "sigma_vox")
        for name in ("threshold", "init_threshold"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"shrinkwrap.{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class StoppingConfig:
    """Convergence: stop when |L(e − window) − L(e)| / L(e − window) < tol, or at max epochs."""

    tol: float = 1e-4
    window: int = 10
    min_epochs: int = 10

    def __post_init__(self) -> None:
        _positive(self, "tol", "window")
        if self.min_epochs < 0:
            raise ValueError(f"stopping.min_epochs must be >= 0, got {self.min_epochs}")


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

    def __post_init__(self) -> None:
        _positive(self, "epochs", "checkpoint_every")
        if self.dtype not in ("complex64", "complex128"):
            raise ValueError(f"dtype must be 'complex64' or 'complex128', got {self.dtype!r}")

    def replace(self, **changes: Any) -> ReconstructionConfig:
        """Return a copy with top-level fields replaced (e.g. ``epochs=50``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (TOML/JSON-serialisable)."""
        return dataclasses.asdict(self)


def config_from_dict(data: dict[str, Any]) -> ReconstructionConfig:
    """Build a :class:`ReconstructionConfig` from a nested dict; unknown keys raise ``ValueError``."""
    return from_dict(ReconstructionConfig, data)


def load_config(path: str | os.PathLike) -> ReconstructionConfig:
    """Read a TOML file (sections ``optimizer``, ``loss``, ``shrinkwrap``, ``stopping``)."""
    return config_from_dict(load_toml(path))


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {value!r}")
