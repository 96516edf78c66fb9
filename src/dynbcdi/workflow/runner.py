"""`run_workflow`: the whole chain prepare → phase → grid → regime → dynamical → analysis → patterns → report.

The run folder holds one sub-folder per stage (artifacts + ``stage.json`` manifest), ``run.json``
(which measurement the folder belongs to) and ``config.json`` (the settings of the latest run).
A folder that belongs to another measurement (another source/dataset), or a non-empty folder that
is not a run folder, is refused unless ``overwrite``: results are never replaced silently. Inside
its own folder a run reuses every stage whose settings and inputs are unchanged and replaces the
artifacts of the stages that it reruns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dynbcdi.devices import resolve_device
from dynbcdi.workflow.cache import PlannedStage, Stage, StageRecord, execute, plan
from dynbcdi.provenance import as_plain
from dynbcdi.workflow.config import RunConfig
from dynbcdi.workflow.products import AnalysisStage, PatternsStage
from dynbcdi.workflow.regime import RegimeStage
from dynbcdi.workflow.report import REPORT_NAME, ReportStage
from dynbcdi.workflow.stages import DynamicalStage, GridStage, PhaseStage, PrepareStage

__all__ = ["LOCK_FILE", "RUN_FILE", "RunSummary", "check_lock", "claim_run_dir", "default_stages", "plan_run",
           "run_lock", "run_workflow"]

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"


def default_stages() -> list[Stage]:
    """The stages of `dynbcdi run`, in order."""
    return [PrepareStage(), PhaseStage(), GridStage(), RegimeStage(), DynamicalStage(), AnalysisStage(),
            PatternsStage(), ReportStage()]


@dataclass
class RunSummary:
    """What :func:`run_workflow` did: the stage records (``reused`` or run, seconds), report path, wall time (s)."""

    run_dir: Path
    records: list[StageRecord]
    report: Path
    wall_s: float
    planned: list[PlannedStage] = field(default_factory=list)

    def table(self) -> str:
        """Plain-text table: stage, reused/ran, seconds."""
        lines = [f"{'stage':<10} {'status':<7} {'wall s':>8} {'CPU s':>8}"]
        lines += [f"{r.name:<10} {'reused' if r.reused else 'ran':<7} {r.seconds:8.1f} {r.cpu_seconds:8.1f}"
                  for r in self.records]
        return "\n".join(lines)


def measurement_id(config: RunConfig) -> str:
    """Identity of the measurement a run folder belongs to: the dataset file, or the source path and scan."""
    if config.dataset is not None:
        ident = {"dataset": config.dataset}
    else:
        src = config.source
        ident = {"source": os.fspath(getattr(src, "path", "")), "scan": getattr(src, "scan", None),
                 "beamline": getattr(src, "beamline", None)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def claim_run_dir(run_dir: Path, config: RunConfig, stages: list[Stage], overwrite: bool) -> None:
    """Make ``run_dir`` this run's folder, refusing another run's or a foreign non-empty folder.

    With ``overwrite`` the stage folders and files of a previous run are removed (other files are
    left alone). Raises FileExistsError (one line) when refusing, before anything is computed.
    """
    from dynbcdi.io.filecheck import check_output_path

    run_dir = check_output_path(run_dir, "run folder", directory=True)  # not a file, nor under one
    ident = measurement_id(config)
    owner = _read_run_file(run_dir)
    occupied = run_dir.exists() and any(run_dir.iterdir())
    if occupied and owner != ident:
        if not overwrite:
            what = "results of another measurement" if owner else "files that are not a dynbcdi run"
            raise FileExistsError(f"output folder {run_dir} holds {what}; choose another --out or pass --overwrite")
        for s in stages:
            shutil.rmtree(run_dir / s.name, ignore_errors=True)
        log.warning("--overwrite: removed the previous run's stage folders in %s", run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_FILE).write_text(json.dumps({"measurement": ident, "config": as_plain(config)}, indent=1,
                                               default=str))


def _read_run_file(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / RUN_FILE).read_text())["measurement"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/run.lock`` (this process id) while a run writes into the folder.

    A second run on the same folder while the first is alive is refused (FileExistsError, one line);
    a lock left by a process that no longer exists (killed run) is taken over.
    """
    lock = Path(run_dir) / LOCK_FILE
    check_lock(run_dir)
    lock.write_text(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def check_lock(run_dir: Path) -> None:
    """FileExistsError (one line) if another live process holds ``run_dir/run.lock``."""
    lock = Path(run_dir) / LOCK_FILE
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return
    if pid != os.getpid() and _alive(pid):
        raise FileExistsError(f"run folder {run_dir} is in use by another dynbcdi run (process {pid}); "
                              f"wait for it or remove {lock}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def plan_run(config: RunConfig, run_dir: Path, stages: list[Stage] | None = None) -> list[PlannedStage]:
    """The stage plan (cached / to run, with reasons) without computing anything."""
    return plan(stages or default_stages(), config, Path(run_dir))


def run_workflow(config: RunConfig, run_dir: str | os.PathLike, *, overwrite: bool = False, progress: bool = True,
                 stages: list[Stage] | None = None,
                 on_plan: Callable[[list[PlannedStage]], None] | None = None,
                 on_start: Callable[[PlannedStage], None] | None = None) -> RunSummary:
    """Run every stage that is not cached; returns a :class:`RunSummary`.

    config: the run settings (``config.threads`` torch threads, :func:`dynbcdi.runtime.choose_threads` when None). run_dir: the run folder.
    overwrite: allow replacing another measurement's results in ``run_dir``. progress: tqdm bars.
    on_plan: called with the plan before anything runs (the CLI prints it); on_start: before each stage runs.
    KeyboardInterrupt propagates; completed stages stay cached.
    """
    from dynbcdi.runtime import choose_threads, configure_threads

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    stages = stages or default_stages()
    configure_threads(choose_threads(config.threads))
    for device in (config.phasing.device, config.reconstruction.config.device):
        resolve_device(device)  # before anything is computed or written
    planned = plan(stages, config, run_dir)  # checks input files before touching the folder
    check_lock(run_dir)  # before --overwrite could clean a folder that another run is writing into
    claim_run_dir(run_dir, config, stages, overwrite)
    with run_lock(run_dir):
        planned = plan(stages, config, run_dir)  # after an --overwrite cleanup everything runs
        if on_plan is not None:
            on_plan(planned)
        records = execute(planned, config, run_dir, progress=progress, on_start=on_start)
    return RunSummary(run_dir=run_dir, records=records, report=run_dir / "report" / REPORT_NAME,
                      wall_s=time.perf_counter() - t0, planned=planned)
