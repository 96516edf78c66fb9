"""The machinery of the start search (:func:`dynbcdi.reconstruct.pipeline.choose_start`): trial runs,
their cost, progress, interruption and resumption.

A candidate start is ranked by its loss after a few trial epochs of the dynamical reconstruction.
The trials can run on a cheaper problem (:class:`TrialProblem`): fewer epochs and every k-th
rocking frame around the peak, as long as the frames kept still sample the candidates' intensity at
its Nyquist rate along the rocking direction (object oversampling ≥ 2, :func:`frame_stride`), so
the subset still determines the object. Identical candidate objects (e.g. the convex hulls of two
thresholds, or a threshold tried again at the translation it already had) are trialled once.

Trials are deterministic given ``config.seed``; a :class:`StartSearch` with a state file keeps the
finished trials' losses (JSON, written atomically after every trial), so that a search interrupted
by Ctrl-C continues where it stopped and chooses bit-for-bit the start of an uninterrupted search.
An interrupted trial (``reconstruct`` returns ``stopped_reason == "interrupted"``) raises
KeyboardInterrupt: it is never ranked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynbcdi.reconstruct.config import ReconstructionConfig
from dynbcdi.reconstruct.optimizer import reconstruct

log = logging.getLogger(__name__)

__all__ = ["StartProgress", "StartProgressFn", "StartSearch", "TrialProblem", "frame_stride", "trial_loss"]

STATE_VERSION = 1


@dataclass(frozen=True)
class StartProgress:
    """Progress of the start search after one candidate.

    done: candidates ranked so far (including those read back from the state file; 0 at the start of
    the search, before the first trial); total: the
    candidates planned (an upper bound: a search that keeps the kinematic amplitude stops early);
    candidate: its description; loss: its trial loss (NaN when it does not fit the periodic box);
    best_loss: the lowest trial loss so far; cached: known already (read back from the state file, or
    the same candidate trialled earlier in this search), not rerun.
    """

    done: int
    total: int
    candidate: str
    loss: float
    best_loss: float
    cached: bool = False


StartProgressFn = Callable[[StartProgress], None]


def trial_loss(losses: Sequence[float], window: int | None = None) -> float:
    """The rank of a trial: the mean of its last ``window`` epoch losses; None: the last
    ``max(1, min(3, epochs // 3))`` (the last 3 of 10 trial epochs; the last one of 3 or fewer, whose
    first epochs are far from settled). The exhaustive ranking keeps its measured window of 3."""
    n = max(1, min(3, len(losses) // 3)) if window is None else max(1, min(window, len(losses)))
    return float(np.mean(np.asarray(losses, dtype=float)[-n:]))


def frame_stride(dq: np.ndarray, support: np.ndarray, spacing_m: Any, max_stride: int, min_frames: int = 16) -> int:
    """The largest frame stride k ≤ ``max_stride`` for which every k-th frame still oversamples
    ``support`` twice along the rocking direction: k |δq| L ≤ π, with δq the mean step of ``dq``
    (N, 3) rad/m (grid frame (x, y, z)) and L the support's extent (m) along δq plus one voxel;
    at least ``min_frames`` frames are kept. support : (Z, Y, X) bool; spacing_m : (dz, dy, dx) m."""
    dq = np.asarray(dq, dtype=float)
    if max_stride <= 1 or dq.shape[0] < 2 * min_frames or not support.any():
        return 1
    step = np.mean(np.diff(dq, axis=0), axis=0)
    norm = float(np.linalg.norm(step))
    if norm == 0.0:
        return 1
    u = step / norm
    dz, dy, dx = (float(v) for v in np.broadcast_to(np.asarray(spacing_m, dtype=float), (3,)))
    z, y, x = np.nonzero(support)
    proj = x * dx * u[0] + y * dy * u[1] + z * dz * u[2]
    extent = float(proj.max() - proj.min()) + abs(dx * u[0]) + abs(dy * u[1]) + abs(dz * u[2])
    k = int(math.floor(math.pi / (norm * extent)))
    return max(1, min(k, max_stride, dq.shape[0] // min_frames))


class TrialProblem:
    """The trial runs of the start search: ``epochs`` epochs of ``config`` on every ``stride``-th frame
    of the scan, the brightest frame among them (intensity (N, R, C) photons, valid (R, C) or
    (N, R, C) bool, dq (N, 3) rad/m, rocking step ``step_rad`` rad or None)."""

    def __init__(self, intensity: np.ndarray, valid: np.ndarray, dq: np.ndarray, model: Any,
                 step_rad: float | None, config: ReconstructionConfig, epochs: int, stride: int = 1,
                 window: int | None = None):
        if epochs < 1 or stride < 1:
            raise ValueError(f"trial epochs and frame stride must be >= 1, got {epochs}, {stride}")
        intensity = np.asarray(intensity)
        peak = int(np.argmax(intensity.reshape(intensity.shape[0], -1).sum(axis=1)))
        frames = np.arange(peak % stride, intensity.shape[0], stride)
        valid = np.asarray(valid)
        self.intensity = intensity[frames]
        self.valid = valid[frames] if valid.ndim == 3 else valid
        self.dq = np.asarray(dq)[frames]
        self.model, self.stride, self.frames = model, stride, frames
        self.step_rad = None if step_rad is None else step_rad * stride
        self.config = config.replace(epochs=epochs, checkpoint_every=epochs)
        self.window = window

    @property
    def epochs(self) -> int:
        return self.config.epochs

    def run(self, obj: np.ndarray) -> tuple[float, list[float]]:
        """(rank, epoch losses) of a trial from ``obj`` (Z, Y, X) complex, the rank :func:`trial_loss`
        of the epoch losses. KeyboardInterrupt if the trial was interrupted (a partial trial must not
        be ranked)."""
        run = reconstruct(self.intensity, self.valid, self.dq, self.model, obj, self.config,
                          rocking_step_rad=self.step_rad, evaluate=False)
        if run.interrupted:
            raise KeyboardInterrupt
        losses = [float(v) for v in run.history.loss]
        return trial_loss(losses, self.window), losses

    def fingerprint(self, *extra: Any) -> str:
        """sha256 of the trial data, settings and ``extra`` (what makes stored trial losses reusable)."""
        h = hashlib.sha256()
        for arr in (self.intensity, self.valid, self.dq):
            a = np.ascontiguousarray(arr)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        model = {"class": type(self.model).__name__, "polarization": getattr(self.model, "polarization", None)}
        settings = {"config": self.config.to_dict(), "stride": self.stride, "window": self.window,
                    "step": self.step_rad, "model": model,
                    "extra": [repr(e) for e in extra]}
        h.update(json.dumps(settings, sort_keys=True, default=repr).encode())
        return h.hexdigest()


Candidate = Any  # hashable description of a candidate, e.g. (shift, (threshold, kind))


def _rank(loss: float) -> float:
    return loss if math.isfinite(loss) else math.inf


class StartSearch:
    """Ranks candidate starts by :class:`TrialProblem` losses, with progress and a resumable state.

    state_path : JSON file of the finished trials (None: nothing kept); resume : read it first (it
    must belong to the same data and settings, else ValueError); progress : called after every
    candidate with a :class:`StartProgress`; total : the candidates planned (for the progress).
    """

    def __init__(self, problem: TrialProblem, fingerprint: str, *, state_path: str | os.PathLike | None = None,
                 resume: bool = False, progress: StartProgressFn | None = None, total: int = 0):
        self.problem, self.fingerprint, self.progress, self.total = problem, fingerprint, progress, total
        self.state_path = Path(state_path) if state_path is not None else None
        self.trials: dict[str, dict[str, Any]] = {}
        self.by_object: dict[str, float] = {}
        self.done = 0
        self.best_loss = math.inf
        if resume and self.state_path is not None and self.state_path.is_file():
            self._load()
        self._save()  # from the start: a search interrupted in its first trial can be resumed too
        if progress is not None:
            progress(StartProgress(0, total, "", math.nan, math.inf))

    def _load(self) -> None:
        path = self.state_path
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: unreadable start-search state ({err}); rerun without --resume") from None
        if state.get("version") != STATE_VERSION or state.get("fingerprint") != self.fingerprint:
            raise ValueError(f"{path}: the stored start search belongs to other data or settings "
                             "(trial epochs, frames, start options); rerun without --resume")
        self.trials = dict(state.get("trials", {}))
        log.info("start search: %d finished trials read from %s", len(self.trials), path)

    def _save(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f"{self.state_path.name}.{os.getpid()}.tmp")
        state = {"version": STATE_VERSION, "fingerprint": self.fingerprint, "trial_epochs": self.problem.epochs,
                 "frame_stride": self.problem.stride, "trials": self.trials}
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.state_path)  # atomic: an interruption leaves the previous state

    def _loss(self, key: str, obj: np.ndarray) -> tuple[float, bool]:
        """(trial loss of ``obj``, whether it was known already)."""
        if key in self.trials:
            return float(self.trials[key]["loss"]), True
        digest = hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()
        if digest in self.by_object:  # the same object as an earlier candidate: the same trial
            loss = self.by_object[digest]
            losses: list[float] = []
        else:
            loss, losses = self.problem.run(obj)
        self.by_object[digest] = loss
        self.trials[key] = {"loss": loss, "losses": losses}
        self._save()
        return loss, False

    def best(self, candidates: Sequence[Candidate], build: Callable[..., np.ndarray | None],
             best: tuple | None = None) -> tuple:
        """``(candidate, loss, start)`` with the lowest trial loss among ``candidates`` (each built
        by ``build(*candidate)``, None when it does not fit the box) and the incumbent ``best``;
        ties keep the earlier one. ValueError when none fits."""
        for candidate in candidates:
            obj = build(*candidate)
            key = repr(candidate)
            loss, cached = (math.nan, False) if obj is None else self._loss(key, obj)
            self.done += 1
            if obj is not None:
                log.info("start candidate %s: loss %.4g after %d trial epochs%s", candidate, loss,
                         self.problem.epochs, " (known)" if cached else "")
                if best is None or _rank(loss) < _rank(best[1]):  # a non-finite trial never wins
                    best = (candidate, loss, obj)
                self.best_loss = min(self.best_loss, loss)
            if self.progress is not None:
                self.progress(StartProgress(self.done, max(self.total, self.done), key, loss, self.best_loss,
                                            cached))
        if best is None:
            raise ValueError("no start candidate fits the periodic TTE box")
        return best
