"""CPU threads of this process: how many torch uses, and how its idle threads wait.

Why. torch parallelises every element-wise op and FFT over its intra-op threads. The TTE march and
the phasing iteration run thousands of small ops, each a parallel region closed by a barrier. When
another process holds one of the cores, the barrier waits for a thread the OS has descheduled, and
with OpenMP's default wait policy the waiting threads spin on the cores that are still free:
measured on a 2-core machine with one core busy, the TTE forward+backward at 64³ × 64 was up to 80×
slower with 2 threads than with 1 (issue 13; benchmarks/RESULTS.md, "Threads under load").

What. :func:`choose_threads` picks the count from the CPUs this process may really use (affinity
mask and cgroup quota, :func:`usable_cpus`), less the CPUs that other processes keep busy
(estimated from the 1-minute load average), and honours an explicit request (``--threads``, or
else a user's ``OMP_NUM_THREADS``). :func:`configure_threads`
applies it to torch. :func:`prefer_passive_wait` asks OpenMP to let idle threads sleep rather than
spin (``OMP_WAIT_POLICY=PASSIVE``) for this process only; OpenMP reads that variable once, when
torch loads it, so the console script calls it before importing torch, and an explicit setting of
the user is never overridden.

This module does not import torch at import time (so that :func:`prefer_passive_wait` can run first).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

__all__ = ["usable_cpus", "busy_cpus", "choose_threads", "configure_threads", "prefer_passive_wait", "map_chunks"]

log = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2 CPU quota of this process's group: "<quota_us> <period_us>" or "max <period_us>"."""


def _cgroup_cpus(path: Path = CGROUP_CPU_MAX) -> int | None:
    """CPUs granted by the cgroup v2 quota (rounded up), or None without a quota or file."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup CPU quota (≥ 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(n, quota) if quota is not None else n)


def busy_cpus() -> float:
    """CPUs kept busy by other processes, estimated as the 1-minute load average (0 where unknown).

    The load average counts runnable processes machine-wide (this one included once it runs, and it
    lags by about a minute), so this is an estimate for a choice made at start-up, not a measurement.
    """
    try:
        return max(0.0, os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def choose_threads(requested: int | None = None) -> int:
    """Intra-op threads for torch: ``requested`` if given, else the CPUs left idle by others.

    requested: an explicit count (e.g. ``--threads``), an integer ≥ 1; it is capped at
    :func:`usable_cpus` (more threads than CPUs only add barrier waits). None: the default, the
    user's ``OMP_NUM_THREADS`` if set to a positive integer, else the
    usable CPUs minus the busy ones (rounded to nearest, at least 1): all of them on an idle machine,
    1 when the others keep all but one busy. Rationale (benchmarks/RESULTS.md, "Threads under
    load"): with one thread per free CPU no barrier waits on a descheduled thread; a thread more than
    the free CPUs made the small-op loops of dynbcdi many times slower, one thread less costs at most
    the parallel speed-up (≤ 2× on 2 cores).
    Raises ValueError for a count that is not a positive integer.
    """
    usable = usable_cpus()
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"threads must be a positive integer, got {requested!r}")
        if requested > usable:
            log.info("%d threads requested, %d usable CPUs: using %d", requested, usable, usable)
        return min(requested, usable)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:  # the user's explicit setting
        return min(int(env), usable)
    total = os.cpu_count() or usable
    # CPUs idle machine-wide, of which this process can use at most its own usable ones
    idle = total - busy_cpus()
    return max(1, min(usable, math.floor(idle + 0.5)))


def configure_threads(n: int) -> int:
    """Use ``n`` (≥ 1) intra-op threads in torch from now on; returns ``n``.

    The inter-op pool (used by ``torch.jit.fork`` only) is set to ``n`` too when that is still
    allowed (before any inter-op work has started; torch raises otherwise, and it is then left as is).
    """
    import torch

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already set, or parallel work already started
        pass
    log.debug("torch threads: %d intra-op, %d inter-op", torch.get_num_threads(), torch.get_num_interop_threads())
    return n


def prefer_passive_wait() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process if it still has an effect; True if it does.

    Idle OpenMP threads then sleep at once instead of spinning, so a barrier whose last thread was
    descheduled does not also burn the free cores. OpenMP reads the variable when it is loaded
    (with torch), so this does nothing once torch is imported; a value set by the user (or a
    ``GOMP_SPINCOUNT``) is kept. Child processes inherit it, as they inherit any environment.
    """
    if "torch" in sys.modules:
        return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def map_chunks(fn, n_items: int, workers: int | None = None) -> list:
    """``[fn(0), …, fn(n_items - 1)]``, spread over ``workers`` threads that each run torch with one
    intra-op thread; item ``i`` goes to worker ``i % workers`` (a fixed assignment, so results and any
    per-worker accumulation are reproducible).

    Why. The TTE march is thousands of small ops on one angle chunk each (tens of µs); as intra-op
    parallel regions each pays a barrier and, with passive waits, a thread wake-up, which made
    2 threads slower than 1 even on an idle machine (benchmarks/RESULTS.md, "Threads under load").
    Independent chunks on their own threads need no barrier until the final join, and a descheduled
    worker delays only its own chunks.

    workers: default ``torch.get_num_threads()`` (the count chosen by :func:`choose_threads`), capped
    at ``n_items``; 1 runs everything in the calling thread, unchanged. Grad mode is off in the
    workers and in the caller's share (callers are autograd Functions); inference mode is the caller's. Exceptions raised by ``fn`` propagate.
    """
    import threading

    import torch

    if n_items <= 0:
        return []
    outer = torch.get_num_threads()
    workers = min(n_items, outer if workers is None else int(workers))
    if workers <= 1:
        with torch.no_grad():
            return [fn(i) for i in range(n_items)]
    results: list = [None] * n_items
    errors: list[BaseException] = []
    inference = torch.is_inference_mode_enabled()  # thread-local: the workers take the caller's

    def work(w: int) -> None:
        torch.set_num_threads(1)  # this OS thread's OpenMP/MKL setting (thread-local)
        try:
            with torch.inference_mode(inference), torch.no_grad():
                for i in range(w, n_items, workers):
                    results[i] = fn(i)
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(1, workers)]
    for t in threads:
        t.start()
    try:
        work(0)
    finally:
        for t in threads:
            t.join()
        torch.set_num_threads(outer)  # restores the process-wide default the workers changed
    if errors:
        raise errors[0]
    return results
