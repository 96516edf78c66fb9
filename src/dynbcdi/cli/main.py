"""Entry point of the `dynbcdi` console script.

Each sub-command lives in its own module of this package and exposes
``add_parser(subparsers) -> argparse.ArgumentParser``; the parser it returns has a ``func``
default taking the parsed ``argparse.Namespace`` and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Order is the order shown in `dynbcdi --help`.
COMMANDS: tuple[str, ...] = ("info", "prepare", "simulate", "phase", "reconstruct", "run", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynbcdi",
        description="Bragg coherent X-ray diffraction imaging under dynamical diffraction.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dynbcdi.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"dynbcdi {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # IsADirectoryError, NotADirectoryError, PermissionError, disk full ...
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"dynbcdi {args.command}: error: {where}{err.strerror or _one_line(err)}", file=sys.stderr)
        return 2


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (library messages sometimes span several)."""
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
