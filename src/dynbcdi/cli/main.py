"""Entry point of the `dynbcdi` console script.

Each sub-command lives in its own module of this package and exposes
``add_parser(subparsers) -> argparse.ArgumentParser``; the parser it returns has a ``func``
default taking the parsed ``argparse.Namespace`` and returning an exit code.

Every command also takes ``--threads N`` (added here, see :func:`_add_threads`); before the command
runs, torch gets :func:`dynbcdi.runtime.choose_threads` threads. OpenMP is asked to let idle threads
sleep (:func:`dynbcdi.runtime.prefer_passive_wait`) before anything imports torch, i.e. at the
import of this module, unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from dynbcdi import runtime

runtime.prefer_passive_wait()  # before torch loads OpenMP (the command modules import torch)

# Order is the order shown in `dynbcdi --help`.
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C

COMMANDS: tuple[str, ...] = ("info", "prepare", "simulate", "phase", "reconstruct", "reconstruct-multi", "run", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynbcdi",
        description="Bragg coherent X-ray diffraction imaging under dynamical diffraction.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        _add_threads(importlib.import_module(f"dynbcdi.cli.{name.replace('-', '_')}").add_parser(sub))
    return parser


def _add_threads(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads`` to a command's parser (``args.threads``: an int or None; ``run`` also copies it
    into its config, where it overrides the TOML's ``threads``)."""
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads (default: $OMP_NUM_THREADS, else the usable CPUs that other "
                             "processes leave idle)")


def _configure(args: argparse.Namespace) -> None:
    """Apply the thread count of ``args.threads`` (None: the default choice) to torch."""
    n = runtime.configure_threads(runtime.choose_threads(getattr(args, "threads", None)))
    logging.getLogger(__name__).debug("%d torch threads (OMP_WAIT_POLICY=%s)", n,
                                      os.environ.get("OMP_WAIT_POLICY", "unset"))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        _configure(args)
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"dynbcdi {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # IsADirectoryError, NotADirectoryError, PermissionError, disk full ...
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"dynbcdi {args.command}: error: {where}{err.strerror or _one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # commands that keep partial work catch it themselves and say what they kept
        print(f"\ndynbcdi {args.command}: interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (library messages sometimes span several)."""
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
