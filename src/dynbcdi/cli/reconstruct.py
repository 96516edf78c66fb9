"""`dynbcdi reconstruct`: dynamical reconstruction of a dataset from a kinematic initial guess.

Example::

    dynbcdi reconstruct scan.cxi --init phasing.cxi --out run1 --config run.toml --epochs 300

Writes ``DIR/reconstruction.cxi`` (dynbcdi.io.save_result), ``DIR/history.csv`` and
``DIR/history.json``, and keeps ``DIR/checkpoint/`` for ``--resume`` (also after Ctrl-C): the main
loop's checkpoint and the start search's finished trials (``start_search.json``). A non-empty
DIR is refused unless ``--resume`` (continue its checkpoint) or ``--overwrite`` (start again) is given,
so neither results nor an interrupted run's checkpoint are replaced silently.

``--repeats N`` (N ≥ 2) runs N − 1 further reconstructions from independent starts once the main
run has finished and was written (seeds seed + 1, …; each its own start search from the same init),
and adds the per-voxel mean and spread of displacement and strain over all N
(:mod:`dynbcdi.reconstruct.uncertainty`) to ``reconstruction.cxi`` (maps), to
``reconstruction_uncertainty.vti`` and to the figure ``uncertainty.png``. Ctrl-C during the repeats
keeps the main result and writes no maps.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dynbcdi.distributed import Communicator, SingleProcess, init_distributed
from dynbcdi.reconstruct import (ReconstructionConfig, ReconstructionResult, choose_start, default_config, load_config,
                                 reconstruct, rocking_step_rad)
from dynbcdi.reconstruct.checkpoint import checkpoint_path

RESULT_NAME = "reconstruction.cxi"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
CHECKPOINT_DIR = "checkpoint"
START_SEARCH_STATE = "start_search.json"
UNCERTAINTY_VTI = "reconstruction_uncertainty.vti"
UNCERTAINTY_PNG = "uncertainty.png"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `reconstruct` on the `dynbcdi` sub-command parser."""
    parser = subparsers.add_parser(
        "reconstruct", help="dynamical (Takagi-Taupin) reconstruction by automatic differentiation",
        description="Optimise shape s and phase φ of the crystal with the TTE forward model in the loop "
                    "(paper Eq. 4), starting from a kinematic phase-retrieval result.")
    parser.add_argument("dataset", help="dataset file (.cxi/.npz, dynbcdi.io.load_dataset)")
    parser.add_argument("--init", required=True,
                        help="initial object: a dynbcdi result (`dynbcdi phase`), a PyNX run CXI, a cdiutils or "
                             "PyNX mode file, or cohere's image.npy (dynbcdi.io.readers.objects.load_object)")
    parser.add_argument("--init-frame", choices=("auto", "grid", "detector"), default="auto",
                        help="frame of the initial object; auto: its 'frame' metadata, else detector "
                             "when its shape equals the data shape, else grid")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--config", help="TOML configuration (see dynbcdi.reconstruct.config)")
    parser.add_argument("--start", choices=("select", "as-is"), default="select",
                        help="select: build candidate starts from the kinematic init (support thresholds, "
                             "twin, convex hull, half-voxel translations) and keep the one with the lowest loss after a few trial "
                             "epochs (dynbcdi.reconstruct.choose_start; default); as-is: start from the "
                             "init object itself")
    parser.add_argument("--model", choices=("tte", "kinematic"), default="tte", help="forward model")
    parser.add_argument("--polarization", default="sigma", help="sigma, pi or an explicit factor C")
    parser.add_argument("--grid-z", type=int, help="number of z planes of the grid (default: from the init; "
                                                   "too few to hold the crystal is an error)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (overrides the config)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (overrides the config)")
    parser.add_argument("--seed", type=_seed, help="seed of the mini-batch order, also in the start selection's "
                                                   "trial epochs (overrides the config; default 0)")
    parser.add_argument("--repeats", type=int, default=1, metavar="N",
                        help="with N ≥ 2: after the main run, N − 1 more from independent starts (seeds seed + 1, "
                             "…), and the per-voxel mean and spread of displacement and strain over all N in "
                             f"{RESULT_NAME}, {UNCERTAINTY_VTI} and {UNCERTAINTY_PNG} (default 1: a single run)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--resume", action="store_true",
                        help="continue from DIR/checkpoint (after Ctrl-C: from the mini-batch where it stopped, "
                             "bit-for-bit the uninterrupted run)")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow a non-empty DIR: replace its results (and, without --resume, its checkpoint)")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel over the ranks of torchrun (NCCL with --device cuda, "
                             "else gloo); rank 0 writes the files, see docs/distributed.md")
    parser.set_defaults(func=run)
    return parser


def _seed(text: str) -> int:
    """argparse type of ``--seed``: an integer ≥ 0 (torch.Generator.manual_seed)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def _config(args: argparse.Namespace, measured: bool) -> ReconstructionConfig:
    """The configuration (the pipeline's tuned defaults — for measured data when ``measured`` — with
    the TOML's keys on top, then flags), its device checked against this machine."""
    from dynbcdi.devices import resolve_device

    base = default_config(measured=measured)
    cfg = load_config(args.config, base) if args.config else base
    if args.device:
        cfg = cfg.replace(device=args.device)
    resolve_device(cfg.device)
    if args.epochs is not None:
        cfg = cfg.replace(epochs=args.epochs)
    if args.seed is not None:
        cfg = cfg.replace(seed=args.seed)
    return cfg


def _initial_object(args: argparse.Namespace, dataset) -> np.ndarray:
    """The initial object on the grid frame (Z, rows, cols), converted from the detector frame if needed.

    The file's writer and conventions are detected by :func:`dynbcdi.io.readers.objects.load_object`.
    Frame: ``--init-frame``, else the file's own (dynbcdi results; PyNX/cdiutils/cohere objects are
    detector-frame), else detector when the shape equals the data shape, else grid.
    """
    from dynbcdi.io.readers.objects import load_object
    from dynbcdi.phasing import check_grid_z, detector_to_grid, grid_shape_for

    stored = load_object(args.init)
    frame = args.init_frame
    if frame == "auto":
        frame = stored.frame or ("detector" if stored.obj.shape == dataset.intensity.shape else "grid")
    rows, cols = dataset.intensity.shape[1:]
    if frame == "grid":
        if stored.obj.shape[1:] != (rows, cols):
            raise ValueError(f"{args.init}: grid-frame object of shape {stored.obj.shape} does not match the "
                             f"detector (rows, cols) = {(rows, cols)}")
        if args.grid_z is not None and args.grid_z != stored.obj.shape[0]:  # not silently ignored
            raise ValueError(f"--grid-z {args.grid_z}: the grid-frame initial object {args.init} has "
                             f"{stored.obj.shape[0]} z planes already; omit --grid-z")
        return stored.obj
    if frame != "detector":
        raise ValueError(f"{args.init}: a {frame}-frame object cannot start the reconstruction; "
                         "pass a detector- or grid-frame object")
    if stored.obj.shape != dataset.intensity.shape:
        raise ValueError(f"{args.init}: {stored.source_format} object of shape {stored.obj.shape} is not in the "
                         f"detector frame of {args.dataset}: a detector-frame object must have the data shape "
                         f"{dataset.intensity.shape} (--init-frame grid for a grid-frame object)")
    basis = dataset.geometry.realspace_basis(stored.obj.shape)
    amp = np.abs(stored.obj)
    crystal = stored.support if stored.support is not None else amp > 0.1 * amp.max()
    check_grid_z(args.grid_z, basis, stored.obj.shape, dataset.spacing_m, crystal, "the initial object's crystal")
    nz = args.grid_z or grid_shape_for(basis, stored.obj.shape, dataset.spacing_m)[0]
    return detector_to_grid(stored.obj, basis, (nz, rows, cols), dataset.spacing_m)


def _forward_model(args: argparse.Namespace, dataset):
    from dynbcdi.reconstruct.pipeline import forward_model

    pol = args.polarization
    try:
        pol = float(pol)
    except ValueError:
        pass
    return forward_model(dataset, args.model, pol)


def write_history(result: ReconstructionResult, out: Path) -> None:
    """history.csv and history.json (one row / entry per epoch) in ``out``."""
    columns = result.history.as_columns()
    with open(out / HISTORY_CSV, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values()))
    with open(out / HISTORY_JSON, "w") as fh:
        json.dump({"stopped_reason": result.stopped_reason, "epochs": result.epochs, **columns}, fh, indent=1)


def _check_targets(out: Path, overwrite: bool, resume: bool) -> None:
    """No work lost: a non-empty run folder needs ``--resume`` (continue its checkpoint) or ``--overwrite``;
    with ``--resume`` the checkpoint must exist and be readable, and finished results are replaced only
    with ``--overwrite``. Raises before any folder is created or anything is computed."""
    from dynbcdi.io.filecheck import check_new_output
    from dynbcdi.reconstruct.checkpoint import load_checkpoint

    check_new_output(out, "output folder", directory=True, overwrite=overwrite or resume,
                     remedy="pass --resume to continue the run saved in it, --overwrite to start again "
                            "(its checkpoint and results are replaced), or choose another --out")
    if resume:
        ckpt = out / CHECKPOINT_DIR  # a start search interrupted before the loop began left only its trials
        if checkpoint_path(ckpt).is_file() or not (ckpt / START_SEARCH_STATE).is_file():
            load_checkpoint(ckpt)  # missing, empty, truncated or corrupt: one line naming it
        for name in (RESULT_NAME, HISTORY_CSV, HISTORY_JSON, UNCERTAINTY_VTI, UNCERTAINTY_PNG):
            if (out / name).exists() and not overwrite:
                raise FileExistsError(f"{out / name} exists (the run finished); pass --overwrite with "
                                      "--resume to continue it and replace its results")


def run(args: argparse.Namespace) -> int:
    """Load, reconstruct with a progress bar, write result and history; returns the exit code.

    With ``--distributed`` this process is one torchrun rank: it computes on ``cuda:LOCAL_RANK``
    (``--device cuda``) or the CPU, and only rank 0 shows progress and writes files.
    """
    from dynbcdi.io import load_dataset

    _check_repeats(args)
    _check_targets(Path(args.out), args.overwrite, args.resume)
    dataset = load_dataset(args.dataset)
    cfg = _config(args, measured=dataset.truth is None)
    if not args.distributed:
        return _run(args, cfg, dataset, SingleProcess())
    comm = init_distributed(device=cfg.device)
    try:
        return _run(args, cfg.replace(device=str(comm.device)), dataset, comm)
    finally:
        comm.close()


def _check_repeats(args: argparse.Namespace) -> None:
    """``--repeats``: an integer ≥ 1, and not with ``--distributed`` (the repeats run in one process)."""
    repeats = getattr(args, "repeats", 1)
    if repeats < 1:
        raise ValueError(f"--repeats must be ≥ 1 (1: a single run, N ≥ 2: an uncertainty map over N runs), "
                         f"got {repeats}")
    if repeats > 1 and getattr(args, "distributed", False):
        raise ValueError("--repeats with --distributed is not supported: run the repeats without --distributed")


def _print_second_interrupt(checkpoint_dir: Path) -> None:
    from dynbcdi.reconstruct.checkpoint import checkpoint_path

    if checkpoint_path(checkpoint_dir).is_file():
        print(f"interrupted at once; continue from the last state saved in {checkpoint_dir} with --resume")
    else:
        print("interrupted at once, before any state was saved")


def _select_start(args: argparse.Namespace, dataset, init: np.ndarray, cfg: ReconstructionConfig, model,
                  state: Path, show: bool) -> np.ndarray:
    """:func:`choose_start` with a progress bar (candidate k of n, best trial loss so far), its finished
    trials kept in ``state`` and, with ``--resume``, read back from it."""
    with tqdm(total=1, unit="trial", desc="start search",
              disable=not show or getattr(args, "no_progress", False)) as bar:
        def progress(p) -> None:
            bar.total, bar.n = p.total, p.done
            bar.set_postfix(best=f"{p.best_loss:.4g}", refresh=False)
            bar.refresh()

        return choose_start(dataset, init, cfg, model=model, progress=progress, state_path=state,
                            resume=args.resume)


def _run(args: argparse.Namespace, cfg: ReconstructionConfig, dataset, comm: Communicator) -> int:
    out = Path(args.out)
    init = kinematic = _initial_object(args, dataset)  # the repeats search their starts from `kinematic`
    model = _forward_model(args, dataset)
    # --resume continues the main loop from its checkpoint (which holds the start), else an
    # interrupted start search from its state file
    loop_checkpoint = checkpoint_path(out / CHECKPOINT_DIR)
    resume_loop = args.resume and loop_checkpoint.is_file()
    search_state = out / CHECKPOINT_DIR / START_SEARCH_STATE
    if args.resume and not resume_loop and not (args.start == "select" and search_state.is_file()):
        raise FileNotFoundError(f"no checkpoint to resume from: {loop_checkpoint}")
    if args.start == "select" and not resume_loop:  # deterministic: every rank picks the same start
        try:
            init = _select_start(args, dataset, init, cfg, model, search_state, comm.is_main)
        except KeyboardInterrupt:
            if comm.is_main:
                print(f"interrupted during the start search; finished trials kept in {search_state}, "
                      f"continue with --resume")
            return 130
    if comm.is_main:
        out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=cfg.epochs, unit="epoch", desc="reconstruct", disable=args.no_progress or not comm.is_main)
    with bar:
        def progress(record) -> None:
            bar.n = record.epoch
            bar.set_postfix(loss=f"{record.loss:.4g}", lr=f"{record.lr:.3g}", refresh=False)
            bar.refresh()

        try:
            result = reconstruct(dataset.intensity, dataset.valid, dataset.geometry.dq_grid(), model, init, cfg,
                                 checkpoint_dir=out / CHECKPOINT_DIR, resume=resume_loop, progress=progress,
                                 comm=comm, rocking_step_rad=rocking_step_rad(dataset.geometry))
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once (the library saved what it could)
            if comm.is_main:
                _print_second_interrupt(out / CHECKPOINT_DIR)
            return 130
    if not comm.is_main:
        return 130 if result.interrupted else 0
    if result.interrupted:
        print(f"interrupted after epoch {result.epochs}; state saved in {out / CHECKPOINT_DIR}, "
              f"continue with --resume")
        return 130
    write_history(result, out)
    path = _save(args, cfg, dataset, result, overwrite=args.overwrite)
    for stale in (UNCERTAINTY_VTI, UNCERTAINTY_PNG):  # an earlier run's maps do not describe this result
        (out / stale).unlink(missing_ok=True)
    print(f"{result.stopped_reason} after {result.epochs} epochs, loss {result.history.loss[-1]:.4g}")
    print(f"result:  {path}\nhistory: {out / HISTORY_CSV}")
    return _uncertainty(args, cfg, dataset, kinematic, model, result) if getattr(args, "repeats", 1) > 1 else 0


def _save(args: argparse.Namespace, cfg: ReconstructionConfig, dataset, result: ReconstructionResult,
          overwrite: bool, maps: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``DIR/reconstruction.cxi`` (with the uncertainty ``maps`` and metadata ``extra`` when given)."""
    from dynbcdi.io import save_result

    meta = {"frame": "grid", "scale": result.scale, "offsets": result.offsets, "stopped_reason": result.stopped_reason,
            "epochs": result.epochs, "config": cfg.to_dict(), "dataset": os.fspath(args.dataset), **(extra or {})}
    return save_result(Path(args.out) / RESULT_NAME, result.S, dataset.spacing_m, support=result.support,
                       metadata=meta, history={"loss": result.history.loss}, overwrite=overwrite, maps=maps)


def _uncertainty(args: argparse.Namespace, cfg: ReconstructionConfig, dataset, kinematic: np.ndarray, model,
                 result: ReconstructionResult) -> int:
    """``--repeats``: args.repeats − 1 more runs, then the maps into the result, a .vti and a figure.

    Runs after the main result was written; Ctrl-C keeps it and writes no (partial) maps (exit 130).
    """
    from dynbcdi.io import write_vti
    from dynbcdi.plot import uncertainty_figure
    from dynbcdi.reconstruct.uncertainty import repeat_uncertainty

    out = Path(args.out)
    start = None if args.start == "select" else "as-is"
    with tqdm(total=args.repeats - 1, unit="run", desc="repeats", disable=args.no_progress) as bar:
        try:
            um = repeat_uncertainty(dataset, result, kinematic, cfg, args.repeats, model=model, start=start,
                                    on_repeat=lambda k, res: bar.update())
        except KeyboardInterrupt:
            print(f"interrupted during the repeats: the main result was written to {out / RESULT_NAME}, "
                  "the uncertainty maps were not")
            return 130
    summary = um.summary()
    maps = um.as_maps()
    _save(args, cfg, dataset, result, overwrite=True, maps=maps, extra={"uncertainty": summary})
    write_vti(out / UNCERTAINTY_VTI, {"amplitude_mean": um.amplitude_mean, "support": um.support,
                                      "displacement_mean_pm": um.displacement_mean_m * 1e12,
                                      "displacement_std_pm": um.displacement_std_m * 1e12,
                                      "strain_mean": um.strain_mean, "strain_std": um.strain_std},
              dataset.spacing_m, overwrite=True)  # _check_targets refused an existing one unless --overwrite
    fig = uncertainty_figure(maps, dataset.spacing_m, title=f"mean and spread over {um.repeats} reconstructions")
    fig.savefig(out / UNCERTAINTY_PNG, dpi=100)
    print(f"uncertainty over {um.repeats} runs: median spread {summary['displacement_std_median_pm']:.3g} pm "
          f"(displacement), {summary['strain_std_median']:.3g} (strain); lowest correlation with the first "
          f"{summary['min_correlation']:.4f}")
    print(f"maps:    {out / RESULT_NAME} (maps), {out / UNCERTAINTY_VTI}, {out / UNCERTAINTY_PNG}")
    return 0
