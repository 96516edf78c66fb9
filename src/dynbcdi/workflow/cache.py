"""Stages with cached artifacts: the `Stage` protocol, cache keys, manifests and the executor.

A stage writes its artifacts (CXI/HDF5 through ``dynbcdi.io``, JSON and .npz for small things) into
its own folder ``RUN/<stage>/`` and, last, a manifest ``RUN/<stage>/stage.json``. Its cache key is

    key = sha256(stage name, stage version, canonical JSON of its settings, keys of its inputs)

so a key changes when the stage's own settings change or when any stage upstream of it re-ran with
different settings (content-addressed by configuration, like a build system). A stage whose
manifest holds the same key, with every file it lists present, is reused; every other stage runs.
Editing one setting therefore reruns that stage and what depends on it, nothing else.

The manifest is written atomically only after the stage finished, so a stage that fails or is
interrupted (Ctrl-C) leaves no manifest: completed stages stay cached and the next run starts at
the interrupted one. Device and thread settings are not part of the keys (the same result, up to
rounding, on any device).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from dynbcdi.provenance import as_plain
from dynbcdi.provenance import library_versions as versions
from dynbcdi.workflow.config import RunConfig

__all__ = ["MANIFEST", "PlannedStage", "Stage", "StageContext", "StageRecord", "execute", "file_fingerprint",
           "plan", "read_manifest", "settings_key", "versions"]

log = logging.getLogger(__name__)

MANIFEST = "stage.json"


@runtime_checkable
class Stage(Protocol):
    """One step of a run.

    name: folder and key name. needs: names of the stages whose artifacts it reads.
    version: bump when the stage's code changes its output, so old caches are not reused.
    """

    name: str
    needs: tuple[str, ...]
    version: int

    def settings(self, config: RunConfig) -> dict[str, Any]:
        """The JSON-able settings that determine this stage's output (hashed into its key)."""

    def run(self, ctx: StageContext) -> list[str]:
        """Compute and write the artifacts into ``ctx.folder``; return their names (relative)."""

    def load(self, folder: Path) -> Any:
        """The typed artifact read back from ``folder`` (what downstream stages receive)."""


@dataclass
class StageContext:
    """What a running stage sees: the run config, its folder, its inputs (loaded on demand), progress flag,
    and when this run started (UTC, ISO 8601: manifests finished before it were reused)."""

    config: RunConfig
    folder: Path
    stages: dict[str, Stage]
    run_dir: Path
    progress: bool = True
    started_utc: str = ""
    _loaded: dict[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> Any:
        """The artifact of upstream stage ``name`` (loaded once, from its folder)."""
        if name not in self._loaded:
            self._loaded[name] = self.stages[name].load(self.run_dir / name)
        return self._loaded[name]


@dataclass(frozen=True)
class PlannedStage:
    """A stage, its cache key and whether it is reused ("cached") or run ("run", with the reason)."""

    stage: Stage
    key: str
    status: str
    reason: str


@dataclass(frozen=True)
class StageRecord:
    """The manifest of a finished stage (``RUN/<stage>/stage.json``).

    seconds: wall time; cpu_seconds: CPU time of the process over all its threads (with the
    machine's load, the wall time varies; the CPU time much less); load_average: the machine's
    5-minute load average when the stage finished (os.getloadavg; NaN where unavailable).
    """

    name: str
    key: str
    settings: dict[str, Any]
    inputs: dict[str, str]
    files: list[str]
    seconds: float
    finished_utc: str
    versions: dict[str, str]
    cpu_seconds: float = float("nan")
    load_average: float = float("nan")
    reused: bool = False


def _canonical(value: Any) -> str:
    return json.dumps(as_plain(value), sort_keys=True, separators=(",", ":"), default=str)


def settings_key(name: str, version: int, settings: dict[str, Any], inputs: dict[str, str]) -> str:
    """sha256 hex digest of the stage name, version, settings (canonical JSON) and input keys."""
    text = _canonical({"stage": name, "version": version, "settings": settings, "inputs": inputs})
    return hashlib.sha256(text.encode()).hexdigest()


def file_fingerprint(path: str | os.PathLike | None) -> Any:
    """(name, size, mtime_ns) of a file, or of every file under a folder (sorted); None for None.

    Part of the key of stages that read files, so an edited or replaced input file reruns them.
    Raises FileNotFoundError for a missing path (before anything is computed).
    """
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file or folder {p} does not exist")
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    return [[os.fspath(q.relative_to(p) if p.is_dir() else q.name), q.stat().st_size, q.stat().st_mtime_ns]
            for q in files]


def read_manifest(folder: Path) -> StageRecord | None:
    """The manifest of ``folder``, or None if absent or unreadable (then the stage reruns)."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
        optional = {"reused", "cpu_seconds", "load_average"}
        return StageRecord(**{k: data[k] for k in StageRecord.__dataclass_fields__ if k not in optional},
                           cpu_seconds=float(data.get("cpu_seconds", float("nan"))),
                           load_average=float(data.get("load_average", float("nan"))))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _order(stages: Sequence[Stage]) -> list[Stage]:
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    seen: set[str] = set()
    for s in stages:
        missing = [n for n in s.needs if n not in seen]
        if missing:
            raise ValueError(f"stage {s.name!r} needs {missing}, which do not run before it")
        seen.add(s.name)
    return list(stages)


def plan(stages: Sequence[Stage], config: RunConfig, run_dir: Path) -> list[PlannedStage]:
    """Cache keys of every stage and whether each is reused or has to run (nothing is computed)."""
    keys: dict[str, str] = {}
    out = []
    for stage in _order(stages):
        settings = stage.settings(config)
        inputs = {n: keys[n] for n in stage.needs}
        key = keys[stage.name] = settings_key(stage.name, stage.version, settings, inputs)
        status, reason = _status(stage, key, settings, inputs, run_dir / stage.name,
                                 any(p.status == "run" and p.stage.name in stage.needs for p in out))
        out.append(PlannedStage(stage, key, status, reason))
    return out


def _status(stage: Stage, key: str, settings: dict, inputs: dict, folder: Path, upstream_runs: bool) -> tuple[str, str]:
    record = read_manifest(folder)
    if record is None:
        return "run", "no result yet"
    if record.key == key:
        missing = [f for f in record.files if not (folder / f).exists()]
        return ("run", f"files missing: {missing}") if missing else ("cached", "settings and inputs unchanged")
    new, old = _dotted(settings), _dotted(record.settings)
    changed = [k for k in sorted(set(new) | set(old)) if _canonical(new.get(k)) != _canonical(old.get(k))]
    if changed:
        return "run", f"settings changed: {', '.join(changed)}"
    if upstream_runs or record.inputs != inputs:
        return "run", "inputs changed: " + ", ".join(n for n in inputs if record.inputs.get(n) != inputs[n])
    return "run", "stage code changed"


def _load() -> float:
    try:
        return float(os.getloadavg()[1])
    except (OSError, AttributeError):
        return float("nan")


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _dotted(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts flattened to dotted keys (to name the settings that changed)."""
    value = as_plain(value)
    if not isinstance(value, dict) or not value:
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(_dotted(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _write_manifest(folder: Path, record: StageRecord) -> None:
    tmp = folder / (MANIFEST + ".tmp")
    payload = {k: v for k, v in record.__dict__.items() if k != "reused"}
    tmp.write_text(json.dumps(as_plain(payload), indent=1, default=str))
    os.replace(tmp, folder / MANIFEST)  # atomic: a manifest exists only for a finished stage


def execute(planned: Sequence[PlannedStage], config: RunConfig, run_dir: Path, progress: bool = True,
            on_start: Callable[[PlannedStage], None] | None = None) -> list[StageRecord]:
    """Run the stages of ``planned`` that are not cached, in order; returns every stage's record.

    A stage about to run gets an empty folder ``run_dir/<name>`` (its previous artifacts are
    replaced). KeyboardInterrupt and errors propagate; the stage that was running keeps no manifest.
    """
    stages = {p.stage.name: p.stage for p in planned}
    keys = {p.stage.name: p.key for p in planned}
    records = []
    started = _utc_now()
    for p in planned:
        folder = run_dir / p.stage.name
        if p.status == "cached":
            record = read_manifest(folder)
            records.append(StageRecord(**{**record.__dict__, "reused": True}))
            log.info("stage %-10s cached (%s)", p.stage.name, p.key[:12])
            continue
        if on_start is not None:
            on_start(p)
        log.info("stage %-10s running: %s", p.stage.name, p.reason)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        t0, c0 = time.perf_counter(), time.process_time()
        ctx = StageContext(config=config, folder=folder, stages=stages, run_dir=run_dir, progress=progress,
                           started_utc=started)
        files = p.stage.run(ctx)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        record = StageRecord(name=p.stage.name, key=p.key, settings=as_plain(p.stage.settings(config)),
                             inputs={n: keys[n] for n in p.stage.needs}, files=list(files), seconds=seconds,
                             finished_utc=_utc_now(), versions=versions(), cpu_seconds=cpu,
                             load_average=_load())
        _write_manifest(folder, record)
        log.info("stage %-10s done in %.1f s (CPU %.1f s, load %.1f)", p.stage.name, seconds, cpu,
                 record.load_average)
        records.append(record)
    return records
