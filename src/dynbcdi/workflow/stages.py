"""The reconstruction stages of `dynbcdi run`: prepare → phase → grid → dynamical.

Each stage calls the library (``dynbcdi.prepare``, ``dynbcdi.phasing``, ``dynbcdi.reconstruct``)
and keeps its result as a file in its folder (see :mod:`dynbcdi.workflow.cache`):

=========  ==========================  ======================================================
stage      artifact                    typed as
=========  ==========================  ======================================================
prepare    ``dataset.cxi``             :class:`dynbcdi.io.Dataset` (intensity, mask, geometry, provenance)
phase      ``phasing.cxi``             :class:`dynbcdi.io.ReconstructionFile`, detector-conjugate frame
grid       ``kinematic.cxi``           :class:`dynbcdi.io.ReconstructionFile`, grid frame of the TTE model
dynamical  ``dynamical.cxi``           :class:`dynbcdi.io.ReconstructionFile` (+ scale, offsets, history)
=========  ==========================  ======================================================
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from dynbcdi.devices import resolve_device
from dynbcdi.workflow.cache import StageContext, file_fingerprint
from dynbcdi.provenance import as_plain
from dynbcdi.workflow.config import RunConfig

__all__ = ["DynamicalStage", "GridStage", "InterruptGuard", "PhaseStage", "PrepareStage"]

log = logging.getLogger(__name__)


class InterruptGuard:
    """Context manager: Ctrl-C sets ``requested`` and raises KeyboardInterrupt as usual.

    The library's optimiser catches KeyboardInterrupt to return a partial result (the start search
    raises it again); the flag lets a stage notice afterwards and refuse to cache a partial result. ``callback`` stops :func:`dynbcdi.reconstruct.reconstruct`.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        raise KeyboardInterrupt

    def callback(self, *args: Any) -> bool:
        """``reconstruct`` callback: True (stop) once Ctrl-C was pressed."""
        return self.requested

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed meanwhile."""
        if self.requested:
            raise KeyboardInterrupt

    def __enter__(self) -> InterruptGuard:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C cannot reach us anyway
            self._previous = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class PrepareStage:
    """Raw scan → dataset (``dynbcdi.prepare.prepare_dataset``), or a prepared dataset file as it is."""

    name, needs, version = "prepare", (), 1

    def settings(self, config: RunConfig) -> dict[str, Any]:
        if config.dataset is not None:
            return {"dataset": config.dataset, "files": file_fingerprint(config.dataset)}
        from dynbcdi.io.readers.base import SOURCE_PATH_KEYS

        files = {k: file_fingerprint(_file_part(getattr(config.source, k, None))) for k in SOURCE_PATH_KEYS}
        return {"source": as_plain(config.source), "reflection": as_plain(config.reflection),
                "prepare": as_plain(config.prepare), "files": files}

    def run(self, ctx: StageContext) -> list[str]:
        from dynbcdi.io import load_dataset, save_dataset

        cfg = ctx.config
        if cfg.dataset is not None:
            dataset = load_dataset(cfg.dataset)
        else:
            from dynbcdi.prepare import prepare_dataset

            dataset = prepare_dataset(cfg.source, cfg.reflection, cfg.prepare)
        n, rows, cols = dataset.intensity.shape
        log.info("dataset: %d frames of %d × %d pixels, %.3g photons, %.1f %% valid pixels", n, rows, cols,
                 float(dataset.intensity.sum()), 100 * float(np.mean(dataset.valid)))
        save_dataset(dataset, ctx.folder / "dataset.cxi")
        return ["dataset.cxi"]

    def load(self, folder: Path) -> Any:
        from dynbcdi.io import load_dataset

        return load_dataset(folder / "dataset.cxi")


def _file_part(value: str | None) -> str | None:
    """The file of a source path; images inside HDF5 files are given as ``file.h5:/dataset``."""
    if value is None or Path(value).exists() or ":" not in value:
        return value
    head = value.rsplit(":", 1)[0]
    return head if Path(head).exists() else value


class PhaseStage:
    """Kinematic phase retrieval in the detector-conjugate frame, or another code's result (init = "file")."""

    name, needs, version = "phase", ("prepare",), 1

    def settings(self, config: RunConfig) -> dict[str, Any]:
        p = config.phasing
        if p.init == "file":
            return {"init": "file", "init_file": p.init_file, "files": file_fingerprint(p.init_file)}
        return {"init": "phase", "recipe": p.recipe, "starts": p.starts, "seed": p.seed}

    def run(self, ctx: StageContext) -> list[str]:
        if ctx.config.phasing.init == "file":
            return self._from_file(ctx)
        import torch

        from dynbcdi.io import save_result
        from dynbcdi.phasing import phase_retrieval
        from dynbcdi.phasing.recipes import parse_recipe

        p = ctx.config.phasing
        recipe = parse_recipe(p.recipe)
        dataset = ctx.input("prepare")
        resolve_device(p.device)
        with _Bar(ctx.progress, recipe.n_iterations * p.starts, "phasing", "it") as bar, InterruptGuard() as guard:
            def progress(info) -> bool:
                bar.goto(info.start * info.n_iterations + info.iteration,
                         start=f"{info.start + 1}/{info.n_starts}", error=f"{info.error:.3g}")
                return guard.requested

            result = phase_retrieval(dataset.intensity, dataset.valid, recipe=recipe, n_starts=p.starts,
                                     seed=p.seed, device=p.device, dtype=torch.complex64, progress=progress)
            if result.interrupted:
                raise KeyboardInterrupt
        log.info("phasing: final amplitude errors of the starts %s, Poisson deviance/pixel %.4g",
                 ", ".join(f"{e:.4g}" for e in result.start_errors), result.llk)
        basis = dataset.geometry.realspace_basis(result.obj.shape)
        spacing = tuple(float(s) for s in np.linalg.norm(basis, axis=0))
        meta = {"frame": "detector", "recipe": result.recipe, "seeds": list(result.seeds),
                "start_errors": list(result.start_errors), "final_error": result.final_error, "llk": result.llk,
                "realspace_basis": np.asarray(basis), "source": "dynbcdi phase_retrieval"}
        save_result(ctx.folder / "phasing.cxi", result.obj, spacing, result.support, meta, {"error": result.error})
        return ["phasing.cxi"]

    def _from_file(self, ctx: StageContext) -> list[str]:
        from dynbcdi.io import save_result
        from dynbcdi.io.readers.objects import load_object

        dataset = ctx.input("prepare")
        stored = load_object(ctx.config.phasing.init_file)
        obj = np.asarray(stored.obj)
        frame = stored.frame or ("detector" if obj.shape == dataset.intensity.shape else "grid")
        support = stored.support if stored.support is not None else np.abs(obj) > 0.1 * np.abs(obj).max()
        spacing = stored.spacing_m or dataset.spacing_m
        log.info("initial object from %s (%s, %s frame, shape %s)", ctx.config.phasing.init_file,
                 stored.source_format, frame, obj.shape)
        meta = {"frame": frame, "source": f"{stored.source_format}: {ctx.config.phasing.init_file}"}
        save_result(ctx.folder / "phasing.cxi", obj.astype(np.complex64), spacing, support, meta)
        return ["phasing.cxi"]

    def load(self, folder: Path) -> Any:
        from dynbcdi.io import load_result

        return load_result(folder / "phasing.cxi")


class GridStage:
    """The kinematic result resampled from the detector-conjugate frame onto the TTE model's grid."""

    name, needs, version = "grid", ("prepare", "phase"), 1

    def settings(self, config: RunConfig) -> dict[str, Any]:
        return {}  # the grid follows from the dataset's geometry and the phasing support

    def run(self, ctx: StageContext) -> list[str]:
        from dynbcdi.io import save_result
        from dynbcdi.reconstruct.pipeline import kinematic_on_grid

        dataset, phased = ctx.input("prepare"), ctx.input("phase")
        frame = phased.metadata.get("frame", "detector")
        rows, cols = dataset.intensity.shape[1:]
        if frame == "detector":
            support = phased.support if phased.support is not None else np.abs(phased.obj) > 0
            kin = kinematic_on_grid(dataset, SimpleNamespace(obj=phased.obj, support=support))
        elif frame == "grid":
            if phased.obj.shape[1:] != (rows, cols):
                raise ValueError(f"grid-frame initial object {phased.obj.shape} does not match the detector "
                                 f"(rows, cols) = {(rows, cols)} of the dataset")
            kin = phased.obj
        else:
            raise ValueError(f"initial object in the {frame!r} frame: only detector- or grid-frame objects "
                             "can start the dynamical reconstruction")
        log.info("kinematic result on the grid: %s voxels of %s nm", kin.shape,
                 tuple(round(s * 1e9, 1) for s in dataset.spacing_m))
        save_result(ctx.folder / "kinematic.cxi", kin.astype(np.complex64), dataset.spacing_m, np.abs(kin) > 0,
                    {"frame": "grid", "from": frame})
        return ["kinematic.cxi"]

    def load(self, folder: Path) -> Any:
        from dynbcdi.io import load_result

        return load_result(folder / "kinematic.cxi")


class DynamicalStage:
    """Start search and dynamical (TTE) reconstruction from the kinematic result on the grid."""

    name, needs, version = "dynamical", ("prepare", "grid"), 1

    def settings(self, config: RunConfig) -> dict[str, Any]:
        r = config.reconstruction
        recon = as_plain(r.config)
        recon.pop("device", None)  # where it runs does not change the result
        repeats = {"repeats": r.repeats} if r.repeats > 1 else {}  # single runs keep their cache keys
        return {"model": r.model, "config": recon, "start": as_plain(r.start), **repeats}

    def run(self, ctx: StageContext) -> list[str]:
        from dynbcdi.io import save_result
        from dynbcdi.reconstruct.pipeline import dynamical_from_kinematic, forward_model

        r = ctx.config.reconstruction
        dataset, kin = ctx.input("prepare"), ctx.input("grid").obj
        resolve_device(r.config.device)
        model = forward_model(dataset, r.model)
        with _Bar(ctx.progress, 1, "start search", "trial") as search, \
                _Bar(ctx.progress, r.config.epochs, f"dynamical ({r.model})", "epoch") as bar, \
                InterruptGuard() as guard:
            def start_progress(p) -> None:
                if search.bar is not None:
                    search.bar.total = p.total
                search.goto(p.done, best=f"{p.best_loss:.4g}")

            def progress(record) -> None:
                bar.goto(record.epoch, loss=f"{record.loss:.4g}", lr=f"{record.lr:.3g}")

            result = dynamical_from_kinematic(dataset, kin, r.config, model=model, start=r.start,
                                              progress=progress, callback=guard.callback,
                                              start_progress=start_progress)
            guard.check()
            if result.interrupted:
                raise KeyboardInterrupt
        log.info("dynamical: %s after %d epochs, loss %.4g", result.stopped_reason, result.epochs,
                 result.history.loss[-1])
        columns = {k: v for k, v in result.history.as_columns().items() if k != "epoch"}
        meta = {"frame": "grid", "model": r.model, "scale": float(result.scale),
                "offsets": np.asarray(result.offsets, float), "stopped_reason": result.stopped_reason,
                "epochs": int(result.epochs), **_terms_metadata(result)}
        maps = _uncertainty(dataset, kin, r, model, result, meta) if r.repeats > 1 else None
        save_result(ctx.folder / "dynamical.cxi", result.S, dataset.spacing_m, result.support, meta, columns,
                    maps=maps)
        return ["dynamical.cxi"]

    def load(self, folder: Path) -> Any:
        from dynbcdi.io import load_result

        return load_result(folder / "dynamical.cxi")


def _uncertainty(dataset: Any, kin: np.ndarray, r: Any, model: Any, result: Any, meta: dict) -> dict:
    """The uncertainty maps of ``r.repeats`` runs: ``result`` and r.repeats − 1 more (seeds + 1, …)."""
    from dynbcdi.reconstruct.uncertainty import repeat_uncertainty

    with InterruptGuard() as guard:
        um = repeat_uncertainty(dataset, result, kin, r.config, r.repeats, model=model, start=r.start,
                                callback=guard.callback)
    meta["uncertainty"] = um.summary()
    log.info("uncertainty over %d repeats: median spread %.3g pm (displacement), %.3g (strain)", um.repeats,
             meta["uncertainty"]["displacement_std_median_pm"], meta["uncertainty"]["strain_std_median"])
    return um.as_maps()


def _terms_metadata(result: Any) -> dict[str, Any]:
    """The fitted measurement terms (``terms_<name>``, arrays kept as arrays) and fit statistics (``fit``,
    ``fit_<column>`` per frame) of a ReconstructionResult, for the result file's metadata."""
    meta: dict[str, Any] = {}
    for key, value in result.terms.items():
        meta[f"terms_{key}"] = np.asarray(value, float) if np.ndim(value) else float(value)
    fit = result.fit
    if fit is not None:
        meta["fit"] = {k: float(v) for k, v in fit.as_dict().items()}
        meta.update({f"fit_{k}": np.asarray(v, float) for k, v in fit.per_frame.items()})
    return meta


def terms_summary(metadata: dict[str, Any]) -> dict[str, Any]:
    """The fitted terms stored by :func:`_terms_metadata`, keys as :meth:`MeasurementModel.summary`."""
    return {k.removeprefix("terms_"): v for k, v in metadata.items() if k.startswith("terms_")}


class _Bar:
    """A tqdm bar (a no-op when progress is off) that jumps to an absolute position."""

    def __init__(self, enabled: bool, total: int, desc: str, unit: str) -> None:
        self.enabled, self.total, self.desc, self.unit = enabled, total, desc, unit
        self.bar: Any = None

    def __enter__(self) -> _Bar:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, leave=True)
        return self

    def goto(self, n: int, **postfix: str) -> None:
        if self.bar is not None:
            self.bar.update(max(n - self.bar.n, 0))
            self.bar.set_postfix(postfix, refresh=False)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def replace_reconstruction(config: RunConfig, **changes: Any) -> RunConfig:
    """``config`` with top-level fields of its ReconstructionConfig replaced (e.g. ``epochs``, ``device``)."""
    r = config.reconstruction
    return config.replace(reconstruction=dataclasses.replace(r, config=r.config.replace(**changes)))
