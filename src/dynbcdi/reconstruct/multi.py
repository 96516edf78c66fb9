"""Joint reconstruction of one crystal from several reflections: s(r) and the vector u(r).

Each reflection i is a :class:`ReflectionProblem`: its data, its TTE grid in the sample frame, its
h_i (sample frame) and a :class:`~dynbcdi.forward.measurement.MeasurementModel` with the TTE or the
kinematic physics and its own intensity scale. One :class:`~dynbcdi.reconstruct.crystal.CrystalField`
holds the unknowns; :func:`joint_reconstruct` runs Adam on s, u and the scales against all
reflections at once:

    L = Σ_i Σ_{j∈batch_i} ℓ_ij / B  +  w_ATV · mean_i ATV(S_i)      (paper Eq. 4 per reflection)

with ℓ_ij the amplitude loss of :func:`dynbcdi.reconstruct.loss.amplitude_loss`. A mini-batch mixes
angles of every reflection (one shuffled list of (reflection, angle) pairs per epoch); the
gradient of each reflection's part is accumulated before the next one is built, so memory stays
that of one reflection's batch, as in the one-reflection optimiser (each chunk of ``chunk_size``
angles is backpropagated before the next is built; only S_i's resampling graph is kept).

As in the one-reflection loop: shrink-wrap (``JointConfig.shrinkwrap``, the same
:class:`~dynbcdi.reconstruct.config.ShrinkWrapConfig`) tightens the support of s every few epochs;
``torch.distributed`` data parallelism (``comm``) gives each rank a contiguous shard of every
mini-batch — the pairs are ordered by reflection inside a mini-batch, so a shard covers few
reflections — and the gradient sums are all-reduced, so every rank takes the one-process step;
Ctrl-C (:mod:`dynbcdi.reconstruct.interrupt`) stops every rank at the same mini-batch boundary
and the state there is returned (``JointResult.stopped_reason == "interrupted"``).

A start for u: :func:`u_from_phases` solves φ_i = −h_i·u by least squares, voxel by voxel.
"""

from __future__ import annotations

import logging
import math
import time

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from dynbcdi.distributed.comm import Communicator, SingleProcess
from dynbcdi.distributed.parallel import broadcast_parameters, reduce_gradients, reduce_sums
from dynbcdi.forward.measurement import MeasurementModel, MeasurementTerms
from dynbcdi.forward.terms import TermOptions
from dynbcdi.geometry.resample import GridSpec
from dynbcdi.io.dataset import Dataset
from dynbcdi.reconstruct.config import ShrinkWrapConfig
from dynbcdi.reconstruct.crystal import CrystalField
from dynbcdi.reconstruct.interrupt import StopRequest, stop_on_sigint
from dynbcdi.reconstruct.loss import amplitude_loss, atv
from dynbcdi.reconstruct.parameters import estimate_log_scale

__all__ = ["ReflectionProblem", "JointConfig", "JointEpoch", "JointResult", "joint_reconstruct", "u_from_phases",
           "combine_reflections", "displacement_rms_error", "write_field_vti"]

log = logging.getLogger(__name__)

PHYSICS = ("tte", "kinematic")


@dataclass(eq=False)
class ReflectionProblem:
    """One reflection of the joint fit.

    grid : its TTE grid in the sample frame; h_sample : (3,) rad/m; intensity : (N, R, C) photons;
    valid : (R, C) or (N, R, C) bool; measure : the measurement model (physics + scale); hkl : label.
    """

    grid: GridSpec
    h_sample: np.ndarray
    intensity: torch.Tensor
    valid: torch.Tensor
    measure: MeasurementModel
    hkl: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def from_dataset(cls, ds: Dataset, physics: str = "tte", dtype: torch.dtype = torch.float64,
                     device: str | torch.device = "cpu") -> ReflectionProblem:
        """From a dataset of :func:`dynbcdi.simulate.multi.simulate_multi` (metadata ``h_sample``,
        ``grid_frame_sample``; grid shape from ``grid_shape`` or the truth). ``physics``: "tte" or
        "kinematic" (same grid, same Δq, so that the two fits compare like with like)."""
        from dynbcdi.forward.kinematic import KinematicModel
        from dynbcdi.forward.tte import TTEModel

        if physics not in PHYSICS:
            raise ValueError(f"physics must be one of {PHYSICS}, got {physics!r}")
        meta = ds.metadata
        missing = [k for k in ("h_sample", "grid_frame_sample") if k not in meta]
        shape = meta.get("grid_shape", None if ds.truth is None else ds.truth.shape)
        if missing or shape is None:
            raise ValueError(f"dataset {meta.get('name', '?')} lacks the multi-reflection metadata "
                             f"{missing or ['grid_shape']}: write it with dynbcdi.simulate.multi")
        grid = GridSpec(tuple(int(n) for n in shape), ds.spacing_m, np.asarray(meta["grid_frame_sample"]))
        frame = ds.geometry.grid_frame()
        cls_model = TTEModel if physics == "tte" else KinematicModel
        model = cls_model.from_geometry(ds.geometry, ds.reflection, ds.spacing_m, frame=frame)
        dq = torch.as_tensor(ds.geometry.dq_grid(frame), dtype=dtype, device=device)
        # the scale's Adam rate is JointConfig.lr_scale itself (lr_factor 1)
        terms = MeasurementTerms(scale=TermOptions(refine=True, lr_factor=1.0))
        measure = MeasurementModel(model, dq, terms, step_rad=ds.geometry.rocking_step_rad()).to(device)
        intensity = torch.as_tensor(ds.intensity, dtype=dtype, device=device)
        valid = torch.as_tensor(ds.valid, device=device)
        return cls(grid, np.asarray(meta["h_sample"], dtype=float), intensity, valid, measure,
                   tuple(int(i) for i in ds.reflection.hkl))


@dataclass(frozen=True)
class JointConfig:
    """Adam settings of :func:`joint_reconstruct`.

    epochs; batch_size : (reflection, angle) pairs per step; chunk_size : angles of one reflection per
    forward/backward pass inside a step (bounds the memory as in the one-reflection optimiser);
    lr_u : Adam step of u in Å (the
    parameter unit, :data:`~dynbcdi.reconstruct.crystal.U_UNIT_M`); lr_s : step of s; lr_scale : of
    each log-scale; atv_weight : w_ATV; refine_s : optimise the shape too; seed : batch order.
    shrinkwrap : the one-reflection :class:`~dynbcdi.reconstruct.config.ShrinkWrapConfig` (``every``,
    ``start``, ``sigma_vox``, ``threshold``; its ``init_threshold`` is unused, the starting support
    is the field's): every ``every`` epochs from epoch ``start`` the support becomes
    support ∧ {blurred s > threshold · reference level} (``reference`` "max" or "median"), s = 0
    outside. Default ``every = 0``: off.
    """

    epochs: int = 30
    batch_size: int = 16
    chunk_size: int = 8
    lr_u: float = 0.02
    lr_s: float = 0.01
    lr_scale: float = 0.01
    atv_weight: float = 0.0
    refine_s: bool = True
    seed: int = 0
    shrinkwrap: ShrinkWrapConfig = ShrinkWrapConfig()

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.chunk_size < 1:
            raise ValueError(f"epochs must be >= 0, batch_size and chunk_size >= 1, got {self.epochs}, "
                             f"{self.batch_size}, {self.chunk_size}")
        if min(self.lr_u, self.lr_s, self.lr_scale) < 0 or self.atv_weight < 0:
            raise ValueError("learning rates and atv_weight must be >= 0")
        if not isinstance(self.shrinkwrap, ShrinkWrapConfig):
            raise ValueError(f"shrinkwrap must be a ShrinkWrapConfig, got {type(self.shrinkwrap).__name__}")
        if self.shrinkwrap.every and self.shrinkwrap.threshold <= 0:
            raise ValueError("shrinkwrap.threshold must be > 0 when shrink-wrap is on (every > 0)")


@dataclass(frozen=True)
class JointEpoch:
    """One epoch of :func:`joint_reconstruct` (given to its ``progress``): epoch (1-based), mean data
    loss per pattern, support voxels after the epoch's shrink-wrap, elapsed wall time (s), metric
    (NaN without one)."""

    epoch: int
    loss: float
    support_voxels: int
    time_s: float
    metric: float = math.nan


@dataclass
class JointResult:
    """Loss per epoch (mean data term per pattern), fitted scales per reflection, optional metric
    history, support voxels per epoch; epochs completed, Adam steps taken, and why the fit stopped:
    "max_epochs" or "interrupted" (Ctrl-C, at a mini-batch boundary: the field is that after
    ``steps`` complete steps)."""

    loss: list[float] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    support_voxels: list[int] = field(default_factory=list)
    epochs: int = 0
    steps: int = 0
    stopped_reason: str = "max_epochs"

    @property
    def interrupted(self) -> bool:
        """True when Ctrl-C stopped the fit."""
        return self.stopped_reason == "interrupted"


def _batches(problems: Sequence[ReflectionProblem], batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """One epoch's mini-batches of (reflection, angle) pairs, (B, 2) each. Inside a mini-batch the
    pairs are ordered by reflection (stable, so the angles keep their random order): a rank's
    contiguous shard then spans few reflections, and few S_i are built per rank."""
    pairs = torch.cat([torch.stack([torch.full((p.intensity.shape[0],), i), torch.arange(p.intensity.shape[0])], 1)
                       for i, p in enumerate(problems)])
    pairs = pairs[torch.randperm(len(pairs), generator=gen)]
    return [b[torch.sort(b[:, 0], stable=True).indices] for b in torch.split(pairs, batch_size)]


def _step_loss(field: CrystalField, problems: Sequence[ReflectionProblem], batch: torch.Tensor,
               config: JointConfig, comm: Communicator | None = None) -> float:
    """Accumulate this rank's gradients of one mini-batch, one reflection and one chunk of its angles
    at a time (S_i is built once per reflection; its small resampling graph is kept across the
    chunks); returns the data loss summed over this rank's patterns. Every term is divided by the
    *global* batch size, so the ranks' gradients sum to the one-process gradient
    (:mod:`dynbcdi.distributed.parallel`). ATV(S_i) is added once per reflection of the batch, by
    the rank that holds its first pair."""
    comm = comm if comm is not None else SingleProcess()
    positions = comm.shard(torch.arange(len(batch)))
    local = batch[positions]
    present = batch[:, 0].unique().tolist()
    first = {i: int((batch[:, 0] == i).nonzero()[0]) for i in present}
    total = 0.0
    for i in local[:, 0].unique().tolist():
        p = problems[i]
        S = field.on(p)
        chunks = torch.split(local[local[:, 0] == i, 1].to(p.intensity.device), config.chunk_size)
        for n, idx in enumerate(chunks):
            D = p.measure(S, idx)
            valid = p.valid if p.valid.ndim == 2 else p.valid[idx]
            data = amplitude_loss(D, p.intensity[idx], valid).sum()
            loss = data / len(batch)
            if config.atv_weight > 0 and n == 0 and first[i] in positions:
                loss = loss + config.atv_weight * atv(S) / len(present)
            loss.backward(retain_graph=n < len(chunks) - 1)
            total += float(data.detach())
            del D, data, loss  # a retained chunk graph is freed before the next chunk is built
    return total


def joint_reconstruct(field: CrystalField, problems: Sequence[ReflectionProblem], config: JointConfig = JointConfig(),
                      metric: Callable[[CrystalField], float] | None = None, *,
                      comm: Communicator | None = None,
                      progress: Callable[[JointEpoch], None] | None = None) -> JointResult:
    """Fit ``field`` (in place) to all ``problems`` with Adam (module docstring).

    Each reflection's log-scale starts at the least-squares value for the starting field
    (:func:`~dynbcdi.reconstruct.parameters.estimate_log_scale`). ``metric(field)`` (e.g. the
    displacement error against a known truth) is recorded after every epoch when given;
    ``progress(JointEpoch)`` is called after every epoch (and a line logged on rank 0).
    comm : data parallelism over the (reflection, angle) pairs (:mod:`dynbcdi.distributed`): every
    rank holds the field and all problems, evaluates its contiguous shard of each mini-batch, the
    gradient and loss sums are all-reduced and every rank takes the same Adam step; None = one process.
    Ctrl-C stops at the next mini-batch boundary (on every rank) and returns the state there
    (``stopped_reason == "interrupted"``); a second Ctrl-C raises KeyboardInterrupt.
    A non-finite loss stops the fit with a ValueError (no silent NaN result).
    """
    if not problems:
        raise ValueError("joint_reconstruct needs at least one reflection")
    run = _JointRun(field, problems, config, comm if comm is not None else SingleProcess())
    with stop_on_sigint() as stop:
        run.loop(stop, metric, progress)
    run.result.scales = [float(torch.exp(p.measure.scale.log_scale.detach())) for p in problems]
    return run.result


class _JointRun:
    """State of one joint fit: the field, the problems, Adam, the batch generator, the result so far."""

    def __init__(self, field: CrystalField, problems: Sequence[ReflectionProblem], config: JointConfig,
                 comm: Communicator) -> None:
        self.field, self.problems, self.config, self.comm = field, problems, config, comm
        scales = [p.measure.scale.log_scale for p in problems]
        broadcast_parameters(comm, [field.s, field.u_scaled, field.support, *scales])
        field.restrict_support(field.support)  # drops images cached for another support
        for p in problems:
            with torch.no_grad():
                S = field.on(p)
                p.measure.scale.log_scale.fill_(0.0)  # the estimate is relative to the model's current scale
                p.measure.scale.log_scale.fill_(estimate_log_scale(
                    p.measure, S, p.intensity.shape[0], p.intensity,
                    p.valid.expand_as(p.intensity), 16, comm=comm))
        groups = [{"params": [field.u_scaled], "lr": config.lr_u}]
        field.s.requires_grad_(config.refine_s)
        if config.refine_s:
            groups.append({"params": [field.s], "lr": config.lr_s})
        for p in problems:
            groups += [g for g in p.measure.param_groups(config.lr_scale)]
        self.optimizer = torch.optim.Adam(groups)
        self.leaves = [t for g in self.optimizer.param_groups for t in g["params"]]
        for t in self.leaves:  # zeros, not None: every rank then steps every parameter alike
            t.grad = torch.zeros_like(t)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.n_patterns = sum(p.intensity.shape[0] for p in problems)
        self.result = JointResult()

    def _stop_requested(self, stop: StopRequest) -> bool:
        """Ctrl-C on any rank: all ranks must stop at the same mini-batch boundary."""
        if self.comm.world_size == 1:
            return stop.requested
        (pressed,) = reduce_sums(self.comm, float(stop.requested))
        return pressed > 0

    def _step(self, batch: torch.Tensor) -> float:
        """One Adam step on a (B, 2) mini-batch; returns its data loss summed over the patterns."""
        self.optimizer.zero_grad(set_to_none=False)
        loss = _step_loss(self.field, self.problems, batch, self.config, self.comm)
        loss = reduce_gradients(self.comm, self.leaves, loss)
        if not math.isfinite(loss):
            raise ValueError(f"non-finite loss in epoch {self.result.epochs + 1}: lower the learning rates")
        self.optimizer.step()
        self.field.project()
        for p in self.problems:
            p.measure.project()
        self.result.steps += 1
        return loss

    def _shrink_wrap(self, epoch: int) -> None:
        """The one-reflection rule (:meth:`ShrinkWrapConfig.keep`) on s: support ∧= {blurred s > threshold ·
        reference level}."""
        sw = self.config.shrinkwrap
        if not (sw.every and epoch >= sw.start and epoch % sw.every == 0):
            return
        self.field.restrict_support(sw.keep(self.field.s.detach().cpu().numpy(), self.field.support.cpu().numpy()))

    def loop(self, stop: StopRequest, metric: Callable[[CrystalField], float] | None,
             progress: Callable[[JointEpoch], None] | None) -> None:
        """Epochs until ``config.epochs`` or Ctrl-C (checked before every mini-batch)."""
        t0 = time.perf_counter()
        res = self.result
        for epoch in range(1, self.config.epochs + 1):
            epoch_loss = 0.0
            for batch in _batches(self.problems, self.config.batch_size, self.gen):
                if self._stop_requested(stop):
                    res.stopped_reason = "interrupted"
                    if self.comm.is_main:
                        log.warning("Ctrl-C: joint fit stopped in epoch %d after %d steps", epoch, res.steps)
                    return
                epoch_loss += self._step(batch)
            self._shrink_wrap(epoch)
            res.epochs = epoch
            res.loss.append(epoch_loss / self.n_patterns)
            res.support_voxels.append(int(self.field.support.sum()))
            if metric is not None:
                res.metric.append(float(metric(self.field)))
            record = JointEpoch(epoch, res.loss[-1], res.support_voxels[-1], time.perf_counter() - t0,
                                res.metric[-1] if metric is not None else math.nan)
            if self.comm.is_main:
                log.info("joint epoch %d/%d: loss %.6g, support %d voxels, %.1f s", epoch, self.config.epochs,
                         record.loss, record.support_voxels, record.time_s)
            if progress is not None:
                progress(record)


def u_from_phases(phases: np.ndarray, h_vectors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares displacement from per-reflection phases: minimise Σ_i w_i (φ_i + h_i·u)² per voxel.

    phases : (M, Z, Y, X) rad, continuous (unwrapped) phases on one grid; h_vectors : (M, 3) rad/m in
    the frame u is wanted in; weights : (M, Z, Y, X) ≥ 0 (e.g. amplitudes), None = equal.
    Returns u : (3, Z, Y, X) m. ValueError if the h vectors do not span 3-D (coplanar reflections).
    """
    phi = np.asarray(phases, dtype=float)
    h = np.asarray(h_vectors, dtype=float)
    if phi.ndim != 4 or h.shape != (phi.shape[0], 3):
        raise ValueError(f"need phases (M, Z, Y, X) and h_vectors (M, 3), got {phi.shape} and {h.shape}")
    if np.linalg.matrix_rank(h / np.linalg.norm(h, axis=1, keepdims=True), tol=1e-3) < 3:
        raise ValueError("the h vectors are coplanar: the phases determine at most two components of u")
    flat = phi.reshape(len(h), -1)
    if weights is None:
        u = np.linalg.lstsq(-h, flat, rcond=None)[0]
    else:
        w = np.asarray(weights, dtype=float).reshape(len(h), -1)
        if w.shape != flat.shape or (w < 0).any():
            raise ValueError("weights must be (M, Z, Y, X) and >= 0")
        a = np.einsum("mv,mi,mj->vij", w, h, h)  # normal equations per voxel: (Σ w h hᵀ) u = −Σ w φ h
        b = -np.einsum("mv,mv,mi->vi", w, flat, h)
        singular = np.linalg.det(a) <= 1e-12 * np.einsum("vii->v", a) ** 3
        a[singular] = np.eye(3)
        b[singular] = 0.0
        u = np.linalg.solve(a, b[..., None])[..., 0].T
    return u.reshape(3, *phi.shape[1:])


def combine_reflections(objects: Sequence[np.ndarray], grids: Sequence[GridSpec], h_vectors: np.ndarray,
                        sample_grid: GridSpec, threshold: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Start (s, u) on ``sample_grid`` from one complex object per reflection on its own grid.

    objects : (Z_i, Y_i, X_i) complex S_i (e.g. each reflection phased on its TTE grid, already
    aligned and twin-resolved); grids : their :class:`GridSpec`; h_vectors : (M, 3) rad/m sample
    frame. Each S_i is resampled to the sample grid, s = mean |S_i| / max, support s > threshold;
    the phases are unwrapped there and combined by :func:`u_from_phases` with |S_i| weights. The
    2π offset of each unwrapped phase is arbitrary: every phase is shifted to zero mean on the
    support first (a rigid translation of u is invisible anyway). Returns s (Z, Y, X) and u
    (3, Z, Y, X) m, 0 outside the support.
    """
    from dynbcdi.analysis import unwrap_phase
    from dynbcdi.geometry.resample import Resample

    if not (len(objects) == len(grids) == len(h_vectors)):
        raise ValueError(f"need one grid and one h per object, got {len(objects)}, {len(grids)}, {len(h_vectors)}")
    resampled = [Resample(g, sample_grid)(torch.as_tensor(np.asarray(o, dtype=np.complex128))).numpy()
                 for o, g in zip(objects, grids)]
    amps = np.abs(np.stack(resampled))
    s = amps.mean(axis=0)
    s = s / s.max()
    support = s > threshold
    phases = np.stack([unwrap_phase(np.angle(o), support) for o in resampled])
    phases = np.where(support, phases - phases[:, support].mean(axis=1)[:, None, None, None], 0.0)
    u = u_from_phases(phases, h_vectors, weights=amps)
    return np.where(support, s, 0.0), np.where(support, u, 0.0)


def displacement_rms_error(u: np.ndarray, u_true: np.ndarray, support: np.ndarray) -> np.ndarray:
    """RMS of u − u_true over ``support`` per component after removing the mean difference (a rigid
    translation of the lattice, invisible to every reflection): (3,) m. u, u_true (3, Z, Y, X) m."""
    d = (np.asarray(u) - np.asarray(u_true))[:, support]
    d = d - d.mean(axis=1, keepdims=True)
    return np.sqrt((d**2).mean(axis=1))


def write_field_vti(path, field: CrystalField, threshold: float = 0.5, overwrite: bool = False):
    """Write a fitted :class:`CrystalField` for ParaView (.vti): ``s``, ``support`` (s > threshold·max s),
    the displacement vector ``u`` (m, sample frame, active vectors) and the strain tensor ``strain``
    (ε_ij, 9 components, NaN outside the support's interior, active tensors), on the sample grid.
    The image axes are the sample frame's only if the grid's frame is the identity (ValueError otherwise)."""
    from dynbcdi.analysis.strain import strain_tensor
    from dynbcdi.io.vtk import tensor_array, vector_array, write_vti

    if not np.allclose(field.grid.frame, np.eye(3)):
        raise ValueError("write_field_vti needs a sample grid whose axes are the sample frame (frame = identity)")
    s = field.s.detach().cpu().numpy()
    u = field.u.detach().cpu().numpy()
    support = s > threshold * s.max()
    eps = strain_tensor(u, field.grid.spacing_m, support)
    arrays = {"s": s, "support": support, "u": vector_array(np.where(support, u, np.nan)),
              "strain": tensor_array(eps)}
    return write_vti(path, arrays, field.grid.spacing_m, overwrite=overwrite, vectors="u", tensors="strain")
