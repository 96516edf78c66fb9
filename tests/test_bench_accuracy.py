"""Smoke test of benchmarks/bench_accuracy.py on its 16³ tiny case: the worker subprocesses, the run
records, resume (finished runs skipped), refusal of runs made with other settings, and the table."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", ROOT / "benchmarks" / "bench_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_accuracy"] = module
    spec.loader.exec_module(module)
    return module


def test_runs_resume_refusal_and_table(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))  # the workers import this checkout's dynbcdi
    common = ["--out", str(tmp_path), "--cases", "tiny-au", "--size", "16", "--seeds", "2", "--starts", "2",
              "--trial-epochs", "1", "--data", "poisson"]
    assert bench.main([*common, "--epochs", "2", "--jobs", "2", "--no-regime"]) == 0  # both runs at once
    out = capsys.readouterr().out
    assert "2 runs to do" in out
    runs = sorted((tmp_path / "runs").glob("*.json"))
    assert [p.name for p in runs] == ["tiny-au__poisson__s0.json", "tiny-au__poisson__s1.json"]
    recs = [json.loads(p.read_text()) for p in runs]
    for seed, rec in enumerate(recs):
        assert rec["seed"] == seed and rec["grid"] == [16, 16, 16] and rec["epochs"] == 2
        assert rec["settings"]["epochs"] == 2 and rec["fingerprint"] == recs[0]["fingerprint"]
        for method in ("kinematic", "kinematic_ramp_removed", "dynamical"):
            m = rec[method]
            assert math.isfinite(m["phase_rms_rad"]) and 0 < m["phase_rms_rad"] < 3
            assert 0 <= m["empty_fraction"] <= 1
        assert rec["peak_rss_mib"] > 50 and rec["time_total_s"] > 0
    # The seed changes the noise and the phasing starts (disjoint sets), so the two runs differ.
    assert [r["phasing_seeds"] for r in recs] == [[0, 1], [2, 3]]
    assert recs[0]["phasing_errors"] != recs[1]["phasing_errors"]

    # Rerun with the same settings: nothing to do, the records are untouched.
    mtimes = [p.stat().st_mtime_ns for p in runs]
    assert bench.main([*common, "--epochs", "2", "--no-regime"]) == 0
    assert "0 runs to do" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in runs] == mtimes

    # Other settings into the same folder: refused, nothing written.
    with pytest.raises(ValueError, match="made with other settings"):
        bench.main([*common, "--epochs", "3"])
    assert sorted((tmp_path / "runs").glob("*.json")) == runs

    # The table: one row over both seeds, median and worst; the regime check beside it.
    assert bench.main([*common, "--epochs", "2", "--table-only"]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("| tiny-au | 16×16×16"))
    dyn = sorted(r["dynamical"]["phase_rms_rad"] for r in recs)
    assert f"| {sum(dyn) / 2:.3f} / {dyn[1]:.3f} |" in row
    assert "| poisson | 2 |" in row
    regime = next(line for line in table.splitlines()
                  if line.startswith("| tiny-au | ") and ("dynamical needed" in line or "kinematic is enough" in line))
    assert "| — | — |" in regime  # no noise-free runs to measure the kinematic error on
    assert json.loads((tmp_path / "regime__tiny-au.json").read_text())["fingerprint"] == recs[0]["fingerprint"]


def test_bad_arguments(bench, tmp_path):
    with pytest.raises(ValueError, match="unknown case 'nope'"):
        bench.main(["--out", str(tmp_path), "--cases", "nope"])
    with pytest.raises(ValueError, match="--data must list"):
        bench.main(["--out", str(tmp_path), "--data", "noisy"])
