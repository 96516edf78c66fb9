"""`dynbcdi run`: a measured (or prepared) scan to the HTML report in one command, with cached stages.

Example::

    dynbcdi run examples/aps34idc-scan54.toml --out scan54-run

Stages: prepare → phase → grid → regime → dynamical → analysis → patterns → report (``dynbcdi.workflow``).
Each keeps its result in ``OUT/<stage>/``; running again after editing the TOML reruns only the
stages whose settings or inputs changed. Relative paths in the TOML are taken from the TOML's own
folder. Ctrl-C keeps every finished stage. Another measurement's results in OUT are never replaced
without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

EXIT_INTERRUPTED = 130


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `run` on the `dynbcdi` sub-command parser."""
    parser = subparsers.add_parser(
        "run", help="whole chain from a scan to the HTML report, stages cached (TOML configuration)",
        description="Prepare → kinematic phasing → grid → dynamical reconstruction → displacement/strain, "
                    "figures, CXI/VTK and an HTML report, from one TOML file (sections [source] [reflection] "
                    "[prepare] [phasing] [reconstruction] [output], see dynbcdi.workflow.config). Stages whose "
                    "settings and inputs are unchanged are reused.")
    parser.add_argument("config", type=Path, help="run configuration (TOML); relative paths in it are taken from "
                                                  "its own folder")
    parser.add_argument("--out", type=Path, help="run folder (default: [output] dir, else ./<config name>-run)")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow replacing another measurement's results in the run folder")
    parser.add_argument("--device", help="torch device of phasing and reconstruction: cpu, cuda, cuda:1")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--plan", action="store_true", help="print the stage plan (cached / to run) and stop")
    parser.set_defaults(func=run)
    return parser


def _config(args: argparse.Namespace):
    import dataclasses

    from dynbcdi.workflow import load_run_config
    from dynbcdi.workflow.stages import replace_reconstruction

    cfg = load_run_config(args.config)
    if args.threads is not None:  # dynbcdi's common --threads (cli/main.py) overrides the TOML
        cfg = cfg.replace(threads=args.threads)
    if args.device:
        cfg = replace_reconstruction(cfg.replace(phasing=dataclasses.replace(cfg.phasing, device=args.device)),
                                     device=args.device)
    return cfg


def run_dir_for(args: argparse.Namespace, cfg) -> Path:
    """--out, else [output] dir (already resolved against the TOML's folder), else ./<config stem>-run."""
    if args.out is not None:
        return args.out
    if cfg.output.dir is not None:
        return Path(cfg.output.dir)
    return Path(f"{args.config.stem}-run")


def _print_plan(planned) -> None:
    print("stage plan:")
    for p in planned:
        print(f"  {p.stage.name:<10} {'cached' if p.status == 'cached' else 'to run':<7} {p.reason}")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns 0, or 130 after Ctrl-C (finished stages kept)."""
    from dynbcdi.workflow import plan_run, run_workflow

    cfg = _config(args)
    out = run_dir_for(args, cfg)
    if args.plan:
        _print_plan(plan_run(cfg, out))
        return 0
    current: list[str] = []
    try:
        summary = run_workflow(cfg, out, overwrite=args.overwrite, progress=not args.no_progress,
                               on_plan=_print_plan, on_start=lambda p: current.append(p.stage.name))
    except KeyboardInterrupt:
        stage = current[-1] if current else "start-up"
        print(f"\ninterrupted during stage {stage}; the finished stages are kept in {out} and reused by the next "
              f"`dynbcdi run {args.config}`")
        return EXIT_INTERRUPTED
    print("\n" + summary.table())
    from dynbcdi.workflow.regime import verdict_line

    regime = verdict_line(out)
    if regime is not None:
        print("\n" + regime)
    print(f"\ntotal {summary.wall_s:.0f} s; run folder {out.resolve()}")
    print(f"report: {os.fspath(summary.report.resolve())}")
    return 0
