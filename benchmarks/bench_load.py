"""Slowdown under load (issue 13): each workload idle and with a busy process pinned to one core.

Workloads (each timed in a fresh subprocess, minimum of ``--repeat`` runs after a small warm-up):

- ``tte``: TTE forward + backward, Strang, 64³ × 64 angles (``bench_tte``'s strained Au cube;
  S = polar(s, φ) with leaf s, φ; weighted sum of the patterns as loss);
- ``phasing``: seconds per HIO iteration on a 100 × 128² array (``phase_retrieval``, 20 iterations).

Thread settings: ``1`` and ``2`` torch threads with OpenMP's default (spinning) wait policy,
``2 passive`` (OMP_WAIT_POLICY=PASSIVE), and ``default``: what the ``dynbcdi`` console script does
by itself (:func:`dynbcdi.runtime.prefer_passive_wait` before torch loads, then
:func:`dynbcdi.runtime.choose_threads` with no request; the count it chose is shown).
"busy": a Python spin loop pinned to CPU 0 (``os.sched_setaffinity``) runs during the measurement.

    PYTHONPATH=src python benchmarks/bench_load.py    # 16 fresh subprocesses: 2 min 45 s at load 7 on 2 cores

The machine may be loaded by others already: compare ratios within one run, and quote ``uptime``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {"1": (1, "active"), "2": (2, "active"), "2 passive": (2, "passive"), "default": (None, "program")}
SPIN = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"


def _tte(repeat: int) -> float:
    import torch
    from bench_tte import _inputs, _model

    model = _model("strang", None)
    s0, p0, dq0 = _inputs(16, 4, "cpu", torch.complex64)
    s0.requires_grad_()
    model(torch.polar(s0, p0), dq0).sum().backward()
    s, phi, dq = _inputs(64, 64, "cpu", torch.complex64)
    s.requires_grad_()
    phi.requires_grad_()
    weights = torch.rand(64, 64, 64)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        (model(torch.polar(s, phi), dq) * weights).sum().backward()
        best = min(best, time.perf_counter() - t)
    return best


def _phasing(repeat: int) -> float:
    import numpy as np

    from dynbcdi.phasing import phase_retrieval

    z, y, x = np.meshgrid(np.arange(100) - 50, np.arange(128) - 64, np.arange(128) - 64, indexing="ij")
    obj = ((abs(z) < 15) & (abs(y) < 20) & (abs(x) < 25)) * np.exp(0.01j * (x * y))
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(obj))) ** 2
    phase_retrieval(intensity, None, recipe="HIO(beta=0.9)**2", seed=0)
    n_iter, best = 20, float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        phase_retrieval(intensity, None, recipe=f"HIO(beta=0.9)**{n_iter}", seed=0)
        best = min(best, (time.perf_counter() - t) / n_iter)
    return best


def child(workload: str, setting: str, repeat: int) -> dict:
    """Run one measurement in this (fresh) process; torch is imported only here."""
    threads, policy = SETTINGS[setting]
    from dynbcdi import runtime

    if policy == "program":
        runtime.prefer_passive_wait()
    n = runtime.configure_threads(runtime.choose_threads(threads))
    seconds = {"tte": _tte, "phasing": _phasing}[workload](repeat)
    return {"threads": n, "wait": os.environ.get("OMP_WAIT_POLICY", "spin").lower(), "seconds": seconds}


def _spawn(workload: str, setting: str, repeat: int) -> dict:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)
    if SETTINGS[setting][1] == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    here = Path(__file__).resolve().parent
    env["PYTHONPATH"] = os.pathsep.join([str(here), str(here.parent / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--repeat", str(repeat), "--_child", workload, setting]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", nargs="+", default=["tte", "phasing"], choices=["tte", "phasing"])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--_child", nargs=2, metavar=("WORKLOAD", "SETTING"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._child:
        print(json.dumps(child(*a._child, a.repeat)))
        return
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs", file=sys.stderr)
    rows = []
    for workload in a.workloads:
        for setting in a.settings:
            idle = _spawn(workload, setting, a.repeat)
            spinner = subprocess.Popen([sys.executable, "-c", SPIN])
            try:
                busy = _spawn(workload, setting, a.repeat)
            finally:
                spinner.kill()
                spinner.wait()
            rows.append((workload, setting, idle, busy))
            print(json.dumps([workload, setting, idle, busy]), file=sys.stderr)
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)", file=sys.stderr)
    print("| workload | setting | threads (idle / busy) | idle (s) | one core busy (s) | busy / idle |")
    print("|---|---|---|---|---|---|")
    for workload, setting, idle, busy in rows:
        unit = " per iteration" if workload == "phasing" else ""
        print(f"| {workload}{unit} | {setting} ({idle['wait']}) | {idle['threads']} / {busy['threads']} "
              f"| {idle['seconds']:.3f} | {busy['seconds']:.3f} | {busy['seconds'] / idle['seconds']:.1f}× |")


if __name__ == "__main__":
    main()
