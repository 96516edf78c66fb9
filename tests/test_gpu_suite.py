"""benchmarks/gpu_suite.sh at its tiny CPU size, so that the prepared GPU check cannot rot (issue 13)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _driver():
    if "gpu_suite" in sys.modules:
        return sys.modules["gpu_suite"]
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "benchmarks" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_suite", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _table_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[1:]]  # without the header


def test_tiny_suite_on_cpu_prints_every_row():
    env = dict(os.environ, PYTHON=sys.executable, GPU_SUITE_SIZE="tiny", GPU_SUITE_DEVICE="cpu",
               GPU_SUITE_BUDGET_S="300", GPU_SUITE_TIMEOUT_S="600", OMP_NUM_THREADS="1")
    proc = subprocess.run([str(ROOT / "benchmarks" / "gpu_suite.sh"), "--tests", "tests/forward/test_tte_numerics.py",
                           "--threads", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _table_rows(proc.stdout)
    expected = _driver().expected_checks(_driver().SIZES["tiny"])
    assert [r[0] for r in rows] == expected
    assert f"{len(expected)} of {len(expected)} checks done" in proc.stdout
    assert rows[0][-1].startswith("1 skipped") or "passed" in rows[0][-1]  # the gpu-marked test ran or skipped
    for row in rows[1:]:
        assert re.fullmatch(r"[\d.]+ (ms|s)", row[2]), row  # every stage has a time
    for row in rows[1:6]:  # TTE and phasing rows: a positive ratio to the FFT floor
        assert float(row[4]) >= 0 and re.fullmatch(r"[\d.]+ (ms|s)", row[3]), row
    assert "phase RMS" in rows[-1][-1]


def test_failed_or_late_stage_keeps_its_rows_and_fails():
    suite = _driver()
    rows: list = []

    def half_then_crash(out):
        out.append(suite.Row("a", "x", 1.0))
        raise RuntimeError("boom | bad")

    lines: list[str] = []
    suite._stage(rows, [("a", "x"), ("b", "x")], suite.Clock(100.0), half_then_crash, lines.append)
    assert [(r.check, r.failed) for r in rows] == [("a", False), ("b", True)]
    assert lines == [r.markdown() for r in rows] and lines[0].startswith("| a | x | 1.00 s |")
    assert rows[1].note == "error: RuntimeError: boom / bad"  # no '|' to break the table
    suite._stage(rows, [("c", "y")], suite.Clock(0.0), lambda out: pytest.fail("must not run"))
    assert rows[-1].note == "skipped: time budget spent" and rows[-1].failed
