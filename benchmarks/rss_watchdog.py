"""Run a command under a resident-memory watchdog; report its wall time and peak RSS (Linux).

    python benchmarks/rss_watchdog.py --limit-gib 16 -- python -m dynbcdi.cli.main simulate ...

The command runs in its own process group. Every ``--interval`` seconds the watchdog sums VmRSS
over the group's processes (read from /proc); above ``--limit-gib`` it kills the whole group
(SIGKILL) and exits with status 3. ``prlimit --as`` is no substitute: torch reserves far more
virtual address space than it touches, so an address-space limit kills healthy runs.

At the end it prints one line ``watchdog: wall … s, peak RSS … GiB (polled …), exit …``: the
exact peak is the kernel's ru_maxrss of the child (largest single process, from wait4), the polled
value the largest group sum seen.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GIB = 1 << 30


def group_rss_bytes(pgid: int) -> int:
    """Sum of VmRSS (bytes) over the processes of process group ``pgid`` (0 for none left)."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != pgid:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except (OSError, ProcessLookupError, ValueError):
            continue  # the process ended while we looked
    return total


def watch(command: list[str], limit_bytes: int, interval_s: float) -> tuple[int, float, int, int]:
    """Run ``command``; returns (exit status, wall s, peak RSS bytes from wait4, peak polled bytes).

    Exit status 3 means the watchdog killed the command above ``limit_bytes``.
    """
    t0 = time.perf_counter()
    child = subprocess.Popen(command, start_new_session=True)
    polled, killed = 0, False
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        rss = group_rss_bytes(child.pid)
        polled = max(polled, rss)
        if rss > limit_bytes and not killed:
            print(f"watchdog: RSS {rss / GIB:.2f} GiB > limit {limit_bytes / GIB:.2f} GiB, killing", flush=True)
            os.killpg(child.pid, signal.SIGKILL)
            killed = True
        time.sleep(interval_s)
    wall = time.perf_counter() - t0
    code = 3 if killed else os.waitstatus_to_exitcode(status)
    return code, wall, usage.ru_maxrss * 1024, polled


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the command's exit status (3 if killed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-gib", type=float, default=16.0, help="RSS limit, GiB (default 16)")
    parser.add_argument("--interval", type=float, default=0.5, help="poll interval, s (default 0.5)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    code, wall, peak, polled = watch(command, int(args.limit_gib * GIB), args.interval)
    print(f"watchdog: wall {wall:.1f} s, peak RSS {peak / GIB:.3f} GiB (polled {polled / GIB:.3f} GiB), "
          f"exit {code}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
