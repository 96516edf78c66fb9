"""Dynamical reconstruction loop: Adam on s, φ, the intensity scale (paper Eq. 4 and Methods).

Each epoch splits the rocking angles into ``n_batches`` random mini-batches (torch.Generator
seeded by ``config.seed``); each mini-batch is one Adam step whose gradient is accumulated over
sub-chunks of ``chunk_size`` angles, so peak memory is that of one chunk. The epoch loss drives
``ReduceLROnPlateau``; shrink-wrap tightens the support of s every few epochs. A non-finite loss or
gradient skips the step, rolls parameters and optimiser back to the last good state and halves the
learning rate. Checkpoints make ``resume=True`` continue bit-for-bit.
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
from scipy.ndimage import gaussian_filter

from dynbcdi.distributed.comm import Communicator, SingleProcess
from dynbcdi.distributed.parallel import broadcast_parameters, reduce_gradients
from dynbcdi.reconstruct.checkpoint import load_checkpoint, save_checkpoint
from dynbcdi.reconstruct.config import ReconstructionConfig
from dynbcdi.reconstruct.loss import amplitude_loss, atv, poisson_loss
from dynbcdi.reconstruct.parameters import (CrystalParameters, ForwardFn, effective_dq,
                                            estimate_log_scale, init_parameters)
from dynbcdi.reconstruct.validation import validate_inputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochRecord:
    """One line of the history: epoch (1-based), mean mini-batch loss, lr of φ, elapsed wall time (s)."""

    epoch: int
    loss: float
    lr: float
    time_s: float
    support_voxels: int
    rollbacks: int


@dataclass
class History:
    """Per-epoch records of a run (appended in order)."""

    records: list[EpochRecord] = field(default_factory=list)

    @property
    def loss(self) -> np.ndarray:
        """(epochs,) epoch losses."""
        return np.array([r.loss for r in self.records])

    def as_columns(self) -> dict[str, list]:
        """Column name -> values (for CSV/JSON)."""
        names = EpochRecord.__dataclass_fields__
        return {n: [getattr(r, n) for r in self.records] for n in names}


@dataclass
class ReconstructionResult:
    """Result of :func:`reconstruct`; arrays on the grid frame, indexed (z, y, x).

    S : (Z, Y, X) complex, s·e^{iφ}; s : (Z, Y, X) amplitude (max ~1); phase : (Z, Y, X) rad,
    continuous (0 outside the support); support : (Z, Y, X) bool; scale : photons per model unit;
    offsets : (N,) rocking offsets in rocking steps; stopped_reason : "converged", "max_epochs",
    "interrupted", "non_finite" or "callback".
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

    @property
    def interrupted(self) -> bool:
        """True when the run was stopped by Ctrl-C (KeyboardInterrupt)."""
        return self.stopped_reason == "interrupted"


ProgressFn = Callable[[EpochRecord], None]
CallbackFn = Callable[[int, CrystalParameters], bool | None]


def reconstruct(intensity: np.ndarray, valid: np.ndarray, dq: np.ndarray, model: ForwardFn,
                init: np.ndarray, config: ReconstructionConfig, *,
                checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
                progress: ProgressFn | None = None,
                callback: CallbackFn | None = None,
                comm: Communicator | None = None) -> ReconstructionResult:
    """Reconstruct S = s·e^{iφ} from a rocking scan with a forward model in the loop.

    intensity : (N, R, C) photons ≥ 0; valid : (R, C) or (N, R, C) bool (True = trusted);
    dq : (N, 3) rad/m, grid frame components (x, y, z); model : ForwardModel, ``model(S, dq_batch)``
    -> (B, R, C) unscaled intensity (moved to ``config.device`` if it is an ``nn.Module``);
    init : (Z, Y, X) complex initial object on the model's grid (Y, X) = (R, C) (e.g. the
    kinematic phasing result converted to the grid frame); its phase is unwrapped.
    checkpoint_dir : where checkpoints go (every ``config.checkpoint_every`` epochs and at the end);
    resume : continue from the checkpoint there; progress : called after every epoch;
    callback : called as ``callback(epoch, params)`` after every epoch, True stops the run.
    comm : data parallelism over the angles (:mod:`dynbcdi.distributed`): each rank evaluates its
    shard of every mini-batch, gradient and loss sums are all-reduced, rank 0 alone writes
    checkpoints and reads the one it resumes from; None = one process.
    Inputs are checked before any computation (``ValueError`` naming the offending value).
    """
    data = validate_inputs(intensity, valid, dq, init, model)
    run = _Run(data, model, config, comm if comm is not None else SingleProcess())
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")
        state = load_checkpoint(checkpoint_dir, device=run.device) if run.comm.is_main else None
        run.load_state(run.comm.broadcast_object(state, device=run.device))
    return run.loop(checkpoint_dir, progress, callback)


class _Run:
    """State of one reconstruction run (parameters, optimiser, scheduler, RNG, history)."""

    def __init__(self, data: dict[str, np.ndarray], model: ForwardFn, config: ReconstructionConfig,
                 comm: Communicator):
        self.config = config
        self.comm = comm
        self.device = torch.device(config.device)
        cdtype = getattr(torch, config.dtype)
        rdtype = torch.float32 if cdtype == torch.complex64 else torch.float64
        if isinstance(model, torch.nn.Module):
            model.to(self.device)
        self.model = model
        self.intensity = torch.as_tensor(data["intensity"], dtype=rdtype, device=self.device)
        self.valid = torch.as_tensor(data["valid"], device=self.device).expand(self.intensity.shape)
        self.dq = torch.as_tensor(data["dq"], dtype=rdtype, device=self.device)
        n = self.dq.shape[0]
        self.params = init_parameters(data["init"], n, config.shrinkwrap.init_threshold, self.device, rdtype)
        broadcast_parameters(comm, [*self.params.leaves().values(), self.params.support])
        with torch.no_grad():
            self.params.log_scale.fill_(estimate_log_scale(
                self._forward, self.params, self.dq, self.intensity, self.valid,
                config.optimizer.chunk_size, comm))
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

    def _forward(self, S: torch.Tensor, dq: torch.Tensor) -> torch.Tensor:
        return self.model(S.to(getattr(torch, self.config.dtype)), dq)

    def _make_optimizer(self) -> torch.optim.Adam:
        oc = self.config.optimizer
        p = self.params
        groups = [{"params": [p.phase], "lr": oc.lr},
                  {"params": [p.s], "lr": oc.lr * oc.lr_amplitude_factor},
                  {"params": [p.log_scale], "lr": oc.lr * oc.lr_scale_factor}]
        if oc.refine_offsets:
            groups.append({"params": [p.offsets], "lr": oc.lr * oc.lr_offset_factor})
        else:
            p.offsets.requires_grad_(False)
        return torch.optim.Adam(groups, betas=oc.betas)

    def _capture_good(self) -> dict[str, Any]:
        return {"params": self.params.snapshot(), "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def _rollback(self, reason: str) -> None:
        self.params.restore(self.good["params"])
        self.optimizer.load_state_dict(copy.deepcopy(self.good["optimizer"]))
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.5
        self.rollbacks += 1
        self.failures_in_row += 1
        log.warning("epoch %d: %s; rolled back to the last good state, lr halved to %.3g",
                    self.epoch + 1, reason, self.optimizer.param_groups[0]["lr"])

    def _data_loss(self, D: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        lc = self.config.loss
        fn = amplitude_loss if lc.kind == "amplitude" else poisson_loss
        return fn(D, self.intensity[idx], self.valid[idx], lc.sqrt_floor)

    def _step(self, batch: torch.Tensor) -> float | None:
        """One Adam step on a mini-batch of angle indices; None when the step was non-finite."""
        p = self.params
        self.optimizer.zero_grad(set_to_none=False)
        total = 0.0
        local = self.comm.shard(batch)
        for idx in torch.split(local, self.config.optimizer.chunk_size) if local.numel() else ():
            dq = effective_dq(self.dq, p.offsets)[idx] if p.offsets.requires_grad else self.dq[idx]
            D = torch.exp(p.log_scale) * self._forward(p.crystal(), dq)
            loss = self._data_loss(D, idx).sum() / batch.numel()
            loss.backward()
            total += float(loss.detach())
        total = reduce_gradients(self.comm, p.leaves().values(), total)
        if self.config.loss.atv_weight > 0:
            reg = self.config.loss.atv_weight * atv(p.crystal(), self.config.loss.atv_epsilon)
            reg.backward()
            total += float(reg.detach())
        grads_ok = all(bool(torch.isfinite(t.grad).all()) for t in p.leaves().values() if t.grad is not None)
        if not (math.isfinite(total) and grads_ok):
            return None
        self.good = self._capture_good()
        self.optimizer.step()
        p.project()
        return total

    def _epoch(self) -> float:
        """One pass over all angles in random mini-batches; returns the mean mini-batch loss."""
        n = self.dq.shape[0]
        perm = torch.randperm(n, generator=self.generator).to(self.device)
        losses = []
        for batch in torch.tensor_split(perm, min(self.config.optimizer.n_batches, n)):
            loss = self._step(batch)
            if loss is None:
                self._rollback("non-finite loss or gradient")
                continue
            self.failures_in_row = 0
            losses.append(loss)
        return float(np.mean(losses)) if losses else math.nan

    @torch.no_grad()
    def _shrink_wrap(self) -> None:
        sw = self.config.shrinkwrap
        s = self.params.s.detach().cpu().numpy()
        blurred = gaussian_filter(s, sw.sigma_vox)
        keep = torch.as_tensor(blurred > sw.threshold * blurred.max(), device=self.device)
        self.params.support &= keep
        self.params.project()
        log.debug("epoch %d: shrink-wrap support %d voxels", self.epoch, int(self.params.support.sum()))

    def _converged(self) -> bool:
        st = self.config.stopping
        losses = self.history.loss
        if self.epoch < max(st.min_epochs, st.window + 1):
            return False
        old, new = losses[-1 - st.window], losses[-1]
        return abs(old - new) <= st.tol * abs(old)

    def _after_epoch(self, loss: float, t0: float, progress: ProgressFn | None) -> None:
        self.epoch += 1
        if math.isfinite(loss):
            self.scheduler.step(loss)
        sw = self.config.shrinkwrap
        if sw.every and self.epoch >= sw.start and self.epoch % sw.every == 0:
            self._shrink_wrap()
        record = EpochRecord(self.epoch, loss, self.optimizer.param_groups[0]["lr"],
                             self.elapsed_s + time.perf_counter() - t0,
                             int(self.params.support.sum()), self.rollbacks)
        self.history.records.append(record)
        log.debug("epoch %d loss %.6g lr %.3g", record.epoch, record.loss, record.lr)
        if progress is not None:
            progress(record)

    def loop(self, checkpoint_dir: str | os.PathLike | None, progress: ProgressFn | None,
             callback: CallbackFn | None) -> ReconstructionResult:
        """Run epochs until convergence, max epochs, interruption or a callback stop."""
        t0 = time.perf_counter()
        reason = "max_epochs"
        try:
            while self.epoch < self.config.epochs:
                loss = self._epoch()
                self._after_epoch(loss, t0, progress)
                if self.failures_in_row >= self.config.optimizer.max_rollbacks:
                    reason = "non_finite"
                    break
                if callback is not None and callback(self.epoch, self.params):
                    reason = "callback"
                    break
                if self._converged():
                    reason = "converged"
                    break
                if (checkpoint_dir is not None and self.comm.is_main
                        and self.epoch % self.config.checkpoint_every == 0):
                    save_checkpoint(checkpoint_dir, self.state(t0))
        except KeyboardInterrupt:
            reason = "interrupted"
            log.warning("interrupted during epoch %d; saving the current state", self.epoch + 1)
        if checkpoint_dir is not None and self.comm.is_main:
            save_checkpoint(checkpoint_dir, self.state(t0))
        log.info("stopped after %d epochs: %s", self.epoch, reason)
        return self.result(reason)

    def state(self, t0: float) -> dict[str, Any]:
        """Everything needed to continue the run bit-for-bit."""
        return {"params": self.params.snapshot(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": self.generator.get_state(),
                "good": self.good, "epoch": self.epoch, "rollbacks": self.rollbacks,
                "failures_in_row": self.failures_in_row,
                "elapsed_s": self.elapsed_s + time.perf_counter() - t0,
                "history": [list(vars(r).values()) for r in self.history.records],
                "config": self.config.to_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` (from a checkpoint); the grid and scan must match."""
        snap = state["params"]
        if snap["s"].shape != self.params.s.shape or snap["offsets"].shape != self.params.offsets.shape:
            raise ValueError(f"checkpoint grid {tuple(snap['s'].shape)} / {snap['offsets'].shape[0]} angles "
                             f"does not match {tuple(self.params.s.shape)} / {self.params.offsets.shape[0]}")
        if {**state["config"], "epochs": 0} != {**self.config.to_dict(), "epochs": 0}:
            log.warning("resuming with a configuration that differs from the checkpoint's")
        self.params.restore(snap)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["rng"].cpu())
        self.good = state["good"]
        self.epoch, self.rollbacks, self.elapsed_s = state["epoch"], state["rollbacks"], state["elapsed_s"]
        self.failures_in_row = state["failures_in_row"]
        self.history = History([EpochRecord(*row) for row in state["history"]])

    def result(self, reason: str) -> ReconstructionResult:
        """Detached numpy copy of the current state."""
        p = self.params
        with torch.no_grad():
            S = p.crystal().cpu().numpy()
            support = p.support.cpu().numpy()
            return ReconstructionResult(
                S=S, s=np.abs(S), phase=np.where(support, p.phase.cpu().numpy(), 0.0),
                support=support, scale=float(torch.exp(p.log_scale)),
                offsets=p.offsets.detach().cpu().numpy(), history=self.history,
                epochs=self.epoch, stopped_reason=reason)
