"""Dynamical reconstruction loop: Adam on s, φ and the measurement terms (paper Eq. 4 and Methods).

The expected photons come from a :class:`dynbcdi.forward.measurement.MeasurementModel` wrapping the
forward model (intensity scale, optional rocking offsets, frame scales, background, coherence blur);
its Adam parameter groups are built from each term's options, and snapshots, roll-backs and
checkpoints go through its state dict, so a new term needs no edit here.

Each epoch splits the rocking angles into ``n_batches`` random mini-batches (torch.Generator
seeded by ``config.seed``); each mini-batch is one Adam step whose gradient is accumulated over
sub-chunks of ``chunk_size`` angles, so peak memory is that of one chunk. The epoch loss drives
``ReduceLROnPlateau``; shrink-wrap tightens the support of s every few epochs. A non-finite loss or
gradient skips the step, rolls parameters and optimiser back to the last good state and halves the
learning rate. Checkpoints make ``resume=True`` continue bit-for-bit.

Ctrl-C (:mod:`dynbcdi.reconstruct.interrupt`) is a request: the loop stops at the next mini-batch
boundary, saves a checkpoint that records the position inside the epoch (its permutation, the next
mini-batch, the mini-batch losses so far) and returns an ``interrupted`` result; resuming finishes
that same epoch, so the run is bit-for-bit the uninterrupted one. A second Ctrl-C, or a
KeyboardInterrupt raised by the model or a callback, propagates at once; the checkpoint is then
written only if no update was in progress (the state is that of a mini-batch boundary), otherwise
the last one is kept.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dynbcdi.distributed.comm import Communicator, SingleProcess
from dynbcdi.distributed.parallel import broadcast_parameters, reduce_gradients, reduce_sums
from dynbcdi.forward.measurement import MeasurementModel, MeasurementTerms, has_dq_gradient
from dynbcdi.forward.terms import TermOptions
from dynbcdi.reconstruct.checkpoint import load_checkpoint, save_checkpoint
from dynbcdi.reconstruct.config import ReconstructionConfig, StoppingConfig, TermConfig
from dynbcdi.reconstruct.evaluate import FitStatistics, fit_statistics, free_pixel_mask
from dynbcdi.reconstruct.interrupt import StopRequest, stop_on_sigint
from dynbcdi.reconstruct.loss import amplitude_loss, atv, poisson_loss
from dynbcdi.reconstruct.parameters import CrystalParameters, ForwardFn, estimate_log_scale, init_parameters
from dynbcdi.reconstruct.validation import validate_inputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochRecord:
    """One line of the history: epoch (1-based), mean mini-batch loss on the fitted pixels, lr of φ,
    elapsed wall time (s), support size, rollbacks so far, mean mini-batch loss on the free pixels
    (NaN without free pixels), relative change of S over the last ``stopping.window`` epochs
    (:func:`result_change`; NaN except at the end of each window, or when ``change_tol`` is 0)."""

    epoch: int
    loss: float
    lr: float
    time_s: float
    support_voxels: int
    rollbacks: int
    free_loss: float = math.nan
    change: float = math.nan


@dataclass
class History:
    """Per-epoch records of a run (appended in order)."""

    records: list[EpochRecord] = field(default_factory=list)

    @property
    def loss(self) -> np.ndarray:
        """(epochs,) epoch losses."""
        return np.array([r.loss for r in self.records])

    @property
    def free_loss(self) -> np.ndarray:
        """(epochs,) epoch losses on the free pixels (NaN without free pixels)."""
        return np.array([r.free_loss for r in self.records])

    @property
    def change(self) -> np.ndarray:
        """(epochs,) relative change of S over the last window (NaN between window ends)."""
        return np.array([r.change for r in self.records])

    def as_columns(self) -> dict[str, list]:
        """Column name -> values (for CSV/JSON and checkpoints)."""
        names = EpochRecord.__dataclass_fields__
        return {n: [getattr(r, n) for r in self.records] for n in names}

    @classmethod
    def from_columns(cls, columns: dict[str, list]) -> History:
        """Inverse of :meth:`as_columns`, by name: columns missing from an older file take the
        field's default, unknown columns are ignored."""
        fields = EpochRecord.__dataclass_fields__
        n = len(columns.get("epoch", []))
        rows = [{k: columns[k][i] for k in fields if k in columns} for i in range(n)]
        return cls([EpochRecord(**row) for row in rows])


@dataclass
class EpochPosition:
    """Where the current epoch stands: its angle permutation perm (N,), split into ``n_batches``
    mini-batches; ``next_batch`` is the first not yet taken; ``losses`` the (fit, free) losses of
    those taken (a rolled-back mini-batch has none)."""

    perm: torch.Tensor
    n_batches: int
    next_batch: int = 0
    losses: list[tuple[float, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain form for a checkpoint (the permutation on the CPU)."""
        return {"perm": self.perm.cpu(), "n_batches": self.n_batches, "next_batch": self.next_batch,
                "losses": [list(loss) for loss in self.losses]}

    @classmethod
    def from_dict(cls, d: dict[str, Any], device: torch.device) -> EpochPosition:
        """Inverse of :meth:`as_dict`, the permutation on ``device``."""
        return cls(d["perm"].to(device), int(d["n_batches"]), int(d["next_batch"]),
                   [(float(a), float(b)) for a, b in d["losses"]])


@dataclass
class ReconstructionResult:
    """Result of :func:`reconstruct`; arrays on the grid frame, indexed (z, y, x).

    S : (Z, Y, X) complex, s·e^{iφ}; s : (Z, Y, X) amplitude (max ~1); phase : (Z, Y, X) rad,
    continuous (0 outside the support); support : (Z, Y, X) bool; scale : photons per model unit;
    offsets : (N,) per-frame rocking offsets in rocking steps; stopped_reason : "converged",
    "max_epochs", "interrupted", "non_finite" or "callback"; terms : fitted measurement terms
    (:meth:`MeasurementModel.summary`: rocking_offset_rad, frame_scales (N,), background photons,
    blur_sigma_px ...); fit : :class:`FitStatistics` (loss, deviance and their Poisson floors on the
    fitted and free pixels; None when not evaluated); free : (N, R, C) bool, the held-out pixels.
    """

    S: np.ndarray
    s: np.ndarray
    phase: np.ndarray
    support: np.ndarray
    scale: float
    offsets: np.ndarray
    history: History
    epochs: int
    stopped_reason: str
    terms: dict[str, Any] = field(default_factory=dict)
    fit: FitStatistics | None = None
    free: np.ndarray | None = None

    @property
    def interrupted(self) -> bool:
        """True when the run was stopped by Ctrl-C (at a mini-batch boundary, checkpoint saved)."""
        return self.stopped_reason == "interrupted"


ProgressFn = Callable[[EpochRecord], None]
CallbackFn = Callable[[int, CrystalParameters], bool | None]


def measurement_terms(config: ReconstructionConfig) -> MeasurementTerms:
    """The :class:`MeasurementTerms` of ``config.terms`` (and the older ``optimizer.refine_offsets``)."""
    oc, t = config.optimizer, config.terms

    def opts(tc: TermConfig) -> TermOptions:
        return TermOptions(tc.refine, tc.lr_factor, tc.start_epoch)

    per_frame = TermOptions(True, oc.lr_offset_factor) if oc.refine_offsets else opts(t.rocking_per_frame)
    return MeasurementTerms(rocking=opts(t.rocking), rocking_per_frame=per_frame,
                            scale=TermOptions(True, oc.lr_scale_factor), frame_scale=opts(t.frame_scale),
                            frame_scale_max_rel=t.frame_scale_max_rel, background=opts(t.background),
                            background_init=t.background.init, blur=opts(t.blur), blur_init_px=t.blur.init,
                            deadtime=opts(t.deadtime), deadtime_init=t.deadtime.init)


def reconstruct(intensity: np.ndarray, valid: np.ndarray, dq: np.ndarray, model: ForwardFn,
                init: np.ndarray, config: ReconstructionConfig, *,
                checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
                progress: ProgressFn | None = None,
                callback: CallbackFn | None = None,
                comm: Communicator | None = None, rocking_step_rad: float | None = None,
                evaluate: bool = True) -> ReconstructionResult:
    """Reconstruct S = s·e^{iφ} from a rocking scan with a forward model in the loop.

    intensity : (N, R, C) photons ≥ 0; valid : (R, C) or (N, R, C) bool (True = trusted);
    dq : (N, 3) rad/m, grid frame components (x, y, z); model : ForwardModel, ``model(S, dq_batch)``
    -> (B, R, C) unscaled intensity (moved to ``config.device`` if it is an ``nn.Module``), wrapped
    in a :class:`dynbcdi.forward.measurement.MeasurementModel` with the terms of ``config.terms``;
    init : (Z, Y, X) complex initial object on the model's grid (Y, X) = (R, C) (e.g. the
    kinematic phasing result converted to the grid frame); its phase is unwrapped.
    checkpoint_dir : where checkpoints go (every ``config.checkpoint_every`` epochs and at the end);
    resume : continue from the checkpoint there (also from the middle of an epoch after Ctrl-C);
    progress : called after every epoch; callback : called as ``callback(epoch, params)`` after
    every epoch, True stops the run. Ctrl-C stops the run at the next mini-batch boundary (result
    ``interrupted``, checkpoint saved); a second Ctrl-C raises KeyboardInterrupt.
    comm : data parallelism over the angles (:mod:`dynbcdi.distributed`): each rank evaluates its
    shard of every mini-batch, gradient and loss sums are all-reduced, rank 0 alone writes
    checkpoints and reads the one it resumes from; None = one process.
    rocking_step_rad : the rocking step (rad), to report rocking offsets in rad (None: in steps).
    evaluate : compute the :class:`FitStatistics` of the result (one more pass over the frames).
    Inputs are checked before any computation (``ValueError`` naming the offending value).
    """
    data = validate_inputs(intensity, valid, dq, init, model)
    run = _Run(data, model, config, comm if comm is not None else SingleProcess(), rocking_step_rad)
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")
        state = load_checkpoint(checkpoint_dir, device=run.device) if run.comm.is_main else None
        run.load_state(run.comm.broadcast_object(state, device=run.device))
    return run.loop(checkpoint_dir, progress, callback, evaluate)


def smoothed_converged(losses: np.ndarray, stopping: StoppingConfig) -> bool:
    """The stopping rule on epoch losses (epochs,): after ``max(min_epochs, 2·window)`` epochs, the
    mean losses of the last two windows differ by at most ``tol`` (relative). Two-sided: a rising
    loss (too large a step) is not convergence. NaN epochs (rolled back) are skipped."""
    w = stopping.window
    if len(losses) < max(stopping.min_epochs, 2 * w):
        return False
    prev, last = np.nanmean(losses[-2 * w:-w]), np.nanmean(losses[-w:])
    return bool(abs(prev - last) <= stopping.tol * abs(prev))


def result_change(S: torch.Tensor, reference: torch.Tensor) -> float:
    """c = ‖S − e^{iα} R‖ / ‖S‖ with α = arg Σ S·conj(R) (the global phase, which the data do not fix,
    removed); S, R (Z, Y, X) complex. For |S| ≈ 1 on the support, c ≈ the RMS phase change in rad."""
    overlap = torch.vdot(reference.flatten(), S.flatten())
    rotation = overlap / overlap.abs() if float(overlap.abs()) > 0 else torch.ones((), dtype=S.dtype)
    norm = float(torch.linalg.vector_norm(S))
    return float(torch.linalg.vector_norm(S - rotation.to(S.device) * reference)) / norm if norm > 0 else math.inf


def converged(history: History, stopping: StoppingConfig, use_free: bool = False,
              scheduler_exhausted: bool = False) -> bool:
    """The stopping rule (:class:`StoppingConfig`): after ``min_epochs``, the last window's result
    change is at most ``change_tol``, or the loss (free loss with ``use_free``) has levelled off
    (:func:`smoothed_converged`), or (with ``stopping.at_min_lr``) ``scheduler_exhausted``: the
    plateau scheduler found no improvement while already at ``optimizer.min_lr``."""
    if len(history.records) < stopping.min_epochs:
        return False
    if stopping.at_min_lr and scheduler_exhausted:
        return True
    last = history.records[-1].change if history.records else math.nan
    if stopping.change_tol > 0 and math.isfinite(last) and last <= stopping.change_tol:
        return True
    return smoothed_converged(history.free_loss if use_free else history.loss, stopping)


class _Run:
    """State of one reconstruction run (parameters, optimiser, scheduler, RNG, history)."""

    def __init__(self, data: dict[str, np.ndarray], model: ForwardFn, config: ReconstructionConfig,
                 comm: Communicator, rocking_step_rad: float | None):
        self.config = config
        self.comm = comm
        self.device = torch.device(config.device)
        cdtype = getattr(torch, config.dtype)
        rdtype = torch.float32 if cdtype == torch.complex64 else torch.float64
        self.intensity = torch.as_tensor(data["intensity"], dtype=rdtype, device=self.device)
        valid = np.broadcast_to(data["valid"], data["intensity"].shape)
        free = free_pixel_mask(valid, config.terms.free_fraction, config.terms.free_seed)
        self.has_free = bool(free.any())
        self.fit_valid = torch.as_tensor(valid & ~free, device=self.device)
        self.free_valid = torch.as_tensor(free, device=self.device)
        dq = torch.as_tensor(data["dq"], dtype=rdtype, device=self.device)
        self.n_angles = dq.shape[0]
        self.measure = MeasurementModel(lambda S, q: model(S.to(cdtype), q), dq, measurement_terms(config),
                                        rocking_step_rad if rocking_step_rad is not None else 1.0,
                                        reference_photons=max(float(data["intensity"].max()), 1.0),
                                        dq_gradient=has_dq_gradient(model))
        if isinstance(model, torch.nn.Module):
            model.to(self.device)
            self.measure.add_module("physics_module", model)  # moved and listed with the wrapper
        self.measure.to(self.device)
        self.params = init_parameters(data["init"], config.shrinkwrap.init_threshold, self.device, rdtype)
        broadcast_parameters(comm, [*self.params.leaves().values(), self.params.support,
                                    *self.measure.parameters()])
        with torch.no_grad():
            self.measure.scale.log_scale.fill_(estimate_log_scale(
                self.measure.unscaled, self.params.crystal(), self.n_angles, self.intensity, self.fit_valid,
                config.optimizer.chunk_size, config.terms.background.init, comm))
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=config.optimizer.plateau_factor,
            patience=config.optimizer.plateau_patience, threshold=config.optimizer.plateau_threshold,
            min_lr=config.optimizer.min_lr)
        self.generator = torch.Generator(device="cpu").manual_seed(config.seed)
        self.history = History()
        self.epoch = 0
        self.elapsed_s = 0.0
        self.rollbacks = 0
        self.failures_in_row = 0
        self.good = self._capture_good()
        # S at the start of the current stopping window (for StoppingConfig.change_tol)
        self.reference = self._crystal_copy() if config.stopping.change_tol > 0 else None
        self.exhausted = False  # the plateau scheduler could not lower the lr further (last epoch)
        self.position: EpochPosition | None = None  # None between epochs
        self.clean = True  # False while an update is half done (no checkpoint can be taken then)

    def leaves(self) -> list[torch.Tensor]:
        """Every optimised tensor: crystal and measurement-term parameters."""
        return [*self.params.leaves().values(), *self.measure.terms_parameters()]

    def _make_optimizer(self) -> torch.optim.Adam:
        oc = self.config.optimizer
        p = self.params
        groups = [{"params": [p.phase], "lr": oc.lr, "name": "crystal.phase", "start_epoch": 0},
                  {"params": [p.s], "lr": oc.lr * oc.lr_amplitude_factor, "name": "crystal.s", "start_epoch": 0},
                  *self.measure.param_groups(oc.lr)]
        return torch.optim.Adam(groups, betas=oc.betas)

    @torch.no_grad()
    def _crystal_copy(self) -> torch.Tensor:
        return self.params.crystal().detach().clone()

    def _window_change(self) -> float:
        """Result change over the window ending now (NaN between window ends); moves the reference."""
        if self.reference is None or self.epoch % self.config.stopping.window:
            return math.nan
        S = self._crystal_copy()
        change = result_change(S, self.reference)
        self.reference = S
        return change

    def _terms_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.measure.terms_state_dict().items()}

    def _capture_good(self) -> dict[str, Any]:
        return {"params": self.params.snapshot(), "terms": self._terms_state(),
                "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def _restore(self, snap: dict[str, Any]) -> None:
        self.params.restore(snap["params"])
        self.measure.load_terms_state_dict(snap["terms"])

    def _rollback(self, reason: str) -> None:
        self._restore(self.good)
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(copy.deepcopy(self.good["optimizer"]))
        # halve the rates in force (the good state's own would undo earlier halvings)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = 0.5 * lr
        self.rollbacks += 1
        self.failures_in_row += 1
        log.warning("epoch %d: %s; rolled back to the last good state, lr halved to %.3g",
                    self.epoch + 1, reason, self.optimizer.param_groups[0]["lr"])

    def _data_loss(self, D: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lc = self.config.loss
        fn = amplitude_loss if lc.kind == "amplitude" else poisson_loss
        return fn(D, self.intensity[idx], mask[idx], lc.sqrt_floor)

    def _step(self, batch: torch.Tensor) -> tuple[float, float] | None:
        """One Adam step on a mini-batch of angle indices: (fit loss, free loss), None when non-finite."""
        p = self.params
        self.optimizer.zero_grad(set_to_none=False)
        total, free = 0.0, 0.0
        local = self.comm.shard(batch)
        for idx in torch.split(local, self.config.optimizer.chunk_size) if local.numel() else ():
            D = self.measure(p.crystal(), idx)
            loss = self._data_loss(D, idx, self.fit_valid).sum() / batch.numel()
            if self.has_free:
                with torch.no_grad():
                    free += float(self._data_loss(D.detach(), idx, self.free_valid).sum()) / batch.numel()
            loss.backward()
            total += float(loss.detach())
        total = reduce_gradients(self.comm, self.leaves(), total)
        if self.has_free:
            (free,) = reduce_sums(self.comm, free)
        if self.config.loss.atv_weight > 0:
            reg = self.config.loss.atv_weight * atv(p.crystal(), self.config.loss.atv_epsilon)
            reg.backward()
            total += float(reg.detach())
        grads_ok = all(bool(torch.isfinite(t.grad).all()) for t in self.leaves() if t.grad is not None)
        if not (math.isfinite(total) and grads_ok):
            return None
        for group in self.optimizer.param_groups:  # terms that start later: no update yet
            if group.get("start_epoch", 0) > self.epoch:
                for t in group["params"]:
                    t.grad = None
        self.clean = False  # from here on the parameters change
        self.good = self._capture_good()
        self.optimizer.step()
        p.project()
        self.measure.project()
        return total, (free if self.has_free else math.nan)

    def _stop_requested(self, stop: StopRequest) -> bool:
        """Ctrl-C pressed on any rank (all ranks must stop at the same mini-batch boundary)."""
        if self.comm.world_size == 1:
            return stop.requested
        (pressed,) = reduce_sums(self.comm, float(stop.requested))
        return pressed > 0

    def _epoch(self, stop: StopRequest) -> tuple[float, float] | None:
        """One pass over all angles in random mini-batches, or the rest of the epoch in progress;
        returns the mean mini-batch (fit, free) losses, None when Ctrl-C stopped it part-way."""
        if self.position is None:
            n = self.n_angles
            self.clean = False  # the generator advances before the position records its draw
            perm = torch.randperm(n, generator=self.generator).to(self.device)
            self.position = EpochPosition(perm, min(self.config.optimizer.n_batches, n))
            self.clean = True
        pos = self.position
        batches = torch.tensor_split(pos.perm, pos.n_batches)
        for k in range(pos.next_batch, pos.n_batches):
            if self._stop_requested(stop):
                return None
            loss = self._step(batches[k])  # marks the state unclean before it changes it
            self.clean = False
            if loss is None:
                self._rollback("non-finite loss or gradient")
            else:
                self.failures_in_row = 0
                pos.losses.append(loss)
            pos.next_batch = k + 1
            self.clean = True
        self.clean = False  # until _after_epoch has recorded the epoch
        self.position = None
        return tuple(np.mean(pos.losses, axis=0)) if pos.losses else (math.nan, math.nan)

    @torch.no_grad()
    def _shrink_wrap(self) -> None:
        sw = self.config.shrinkwrap
        keep = sw.keep(self.params.s.detach().cpu().numpy(), self.params.support.cpu().numpy())
        keep = torch.as_tensor(keep, device=self.device)
        self.params.support &= keep
        self.params.project()
        log.debug("epoch %d: shrink-wrap support %d voxels", self.epoch, int(self.params.support.sum()))

    def _converged(self) -> bool:
        st = self.config.stopping
        return converged(self.history, st, use_free=st.loss == "free" and self.has_free,
                         scheduler_exhausted=self.exhausted)

    def _after_epoch(self, losses: tuple[float, float], t0: float, progress: ProgressFn | None) -> None:
        self.epoch += 1
        loss, free = losses
        self.exhausted = False
        if math.isfinite(loss):
            sch, lr = self.scheduler, self.optimizer.param_groups[0]["lr"]
            best, bad = sch.best, sch.num_bad_epochs
            sch.step(loss)
            # the scheduler met a plateau (no new best, patience spent) with the lr already at its floor
            self.exhausted = (lr <= self.config.optimizer.min_lr * (1 + 1e-9) and sch.best == best
                              and bad >= sch.patience and sch.num_bad_epochs == 0)
        sw = self.config.shrinkwrap
        if sw.every and self.epoch >= sw.start and self.epoch % sw.every == 0:
            self._shrink_wrap()
        record = EpochRecord(self.epoch, float(loss), self.optimizer.param_groups[0]["lr"],
                             self.elapsed_s + time.perf_counter() - t0,
                             int(self.params.support.sum()), self.rollbacks, float(free), self._window_change())
        self.history.records.append(record)
        self.clean = True
        log.debug("epoch %d loss %.6g free %.6g lr %.3g", record.epoch, record.loss, record.free_loss, record.lr)
        if progress is not None:
            progress(record)

    def loop(self, checkpoint_dir: str | os.PathLike | None, progress: ProgressFn | None,
             callback: CallbackFn | None, evaluate: bool = True) -> ReconstructionResult:
        """Run epochs until convergence, max epochs, interruption or a callback stop."""
        t0 = time.perf_counter()
        with stop_on_sigint() as stop:
            try:
                reason = self._epochs(checkpoint_dir, progress, callback, stop, t0)
            except KeyboardInterrupt:
                self._save_on_keyboard_interrupt(checkpoint_dir, t0)
                raise
            if reason == "interrupted":
                log.warning("Ctrl-C: stopped in epoch %d %s", self.epoch + 1, self._where())
            if checkpoint_dir is not None and self.comm.is_main:  # a first Ctrl-C here is only recorded
                save_checkpoint(checkpoint_dir, self.state(t0))
        log.info("stopped after %d epochs: %s", self.epoch, reason)
        stats = None
        if evaluate and reason != "interrupted":
            stats = fit_statistics(self.measure, self.params.crystal(), self.intensity, self.fit_valid,
                                   self.free_valid, self.config.optimizer.chunk_size,
                                   self.config.loss.sqrt_floor, self.comm)
        return self.result(reason, stats)

    def _epochs(self, checkpoint_dir: str | os.PathLike | None, progress: ProgressFn | None,
                callback: CallbackFn | None, stop: StopRequest, t0: float) -> str:
        """The epoch loop; returns the stop reason."""
        while self.epoch < self.config.epochs:
            if self.position is None and self._stop_requested(stop):
                return "interrupted"
            losses = self._epoch(stop)
            if losses is None:
                return "interrupted"
            self._after_epoch(losses, t0, progress)
            if self.failures_in_row >= self.config.optimizer.max_rollbacks:
                return "non_finite"
            if callback is not None and callback(self.epoch, self.params):
                return "callback"
            if self._converged():
                return "converged"
            if (checkpoint_dir is not None and self.comm.is_main
                    and self.epoch % self.config.checkpoint_every == 0):
                save_checkpoint(checkpoint_dir, self.state(t0))
        return "max_epochs"

    def _where(self) -> str:
        pos = self.position
        if pos is None:
            return "before its first mini-batch"
        return f"before mini-batch {pos.next_batch + 1}/{pos.n_batches}"

    def _save_on_keyboard_interrupt(self, checkpoint_dir: str | os.PathLike | None, t0: float) -> None:
        """A KeyboardInterrupt (second Ctrl-C, or raised by the model or a callback) propagates; the
        state is saved only at a mini-batch boundary, where resuming continues bit-for-bit."""
        if checkpoint_dir is None or not self.comm.is_main:
            return
        if self.clean:
            save_checkpoint(checkpoint_dir, self.state(t0))
            log.warning("interrupted in epoch %d %s; state saved in %s", self.epoch + 1, self._where(),
                        checkpoint_dir)
        else:
            log.warning("interrupted in the middle of an update in epoch %d; the last checkpoint in %s is "
                        "kept", self.epoch + 1, checkpoint_dir)

    def state(self, t0: float) -> dict[str, Any]:
        """Everything needed to continue the run bit-for-bit; the history is stored by column name."""
        return {"params": self.params.snapshot(), "terms": self._terms_state(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": self.generator.get_state(),
                "good": self.good, "epoch": self.epoch, "rollbacks": self.rollbacks,
                "failures_in_row": self.failures_in_row,
                "elapsed_s": self.elapsed_s + time.perf_counter() - t0,
                "history": self.history.as_columns(), "reference": self.reference,
                "position": None if self.position is None else self.position.as_dict(),
                "config": self.config.to_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` (from a checkpoint); the grid and scan must match."""
        snap = state["params"]
        n = state["terms"]["rocking.frame_steps"].shape[0]
        if snap["s"].shape != self.params.s.shape or n != self.n_angles:
            raise ValueError(f"checkpoint grid {tuple(snap['s'].shape)} / {n} angles "
                             f"does not match {tuple(self.params.s.shape)} / {self.n_angles}")
        if {**state["config"], "epochs": 0} != {**self.config.to_dict(), "epochs": 0}:
            log.warning("resuming with a configuration that differs from the checkpoint's")
        self._restore(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["rng"].cpu())
        self.good = state["good"]
        self.epoch, self.rollbacks, self.elapsed_s = state["epoch"], state["rollbacks"], state["elapsed_s"]
        self.failures_in_row = state["failures_in_row"]
        self.history = History.from_columns(state["history"])
        if self.reference is not None:  # an older checkpoint has none: the window restarts here
            ref = state.get("reference")
            self.reference = ref.to(self.device) if ref is not None else self._crystal_copy()
        pos = state["position"]
        self.position = None if pos is None else EpochPosition.from_dict(pos, self.device)

    def result(self, reason: str, stats: FitStatistics | None = None) -> ReconstructionResult:
        """Detached numpy copy of the current state."""
        p = self.params
        with torch.no_grad():
            S = p.crystal().cpu().numpy()
            support = p.support.cpu().numpy()
            terms = self.measure.summary()
            return ReconstructionResult(
                S=S, s=np.abs(S), phase=np.where(support, p.phase.cpu().numpy(), 0.0),
                support=support, scale=terms["scale"], offsets=terms["frame_offsets_steps"],
                history=self.history, epochs=self.epoch, stopped_reason=reason, terms=terms, fit=stats,
                free=self.free_valid.cpu().numpy())
