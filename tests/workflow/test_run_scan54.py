"""`dynbcdi run` on a small crop of the measured APS 34-ID-C scan 54 (examples/aps34idc-scan54-tiny.toml).

The same chain as examples/aps34idc-scan54.toml (raw TIFF frames → prepare → phasing → grid →
dynamical → analysis → patterns → report) on 48 frames of 64 × 64 pixels; skipped when the shared
data folder is absent.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from pathlib import Path

import pytest

from dynbcdi.cli.main import main
from dynbcdi.workflow.report import SECTIONS

REPO = Path(__file__).resolve().parents[2]
SCAN54 = REPO / ".." / "shared" / "data" / "aps34idc-scan54"
TOML = REPO / "examples" / "aps34idc-scan54-tiny.toml"


@pytest.fixture(scope="module")
def scan54_run(tmp_path_factory):
    if not SCAN54.is_dir():
        pytest.skip(f"measured data not found at {SCAN54}")
    run_dir = tmp_path_factory.mktemp("scan54") / "run"
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(["run", str(TOML), "--out", str(run_dir), "--no-progress"])
    return {"code": code, "stdout": out.getvalue(), "run_dir": run_dir, "seconds": time.perf_counter() - t0}


def test_chain_runs_to_the_report(scan54_run):
    assert scan54_run["code"] == 0, scan54_run["stdout"]
    # Measured 40–60 s on the shared 2-core machine; the bound leaves room for its load.
    assert scan54_run["seconds"] < 180
    page = (scan54_run["run_dir"] / "report" / "report.html").read_text(encoding="utf-8")
    for sid, _ in SECTIONS:
        assert f'<section id="{sid}">' in page, sid
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 9 and "figure not drawn" not in page
    assert "Au (111) at 9 keV, 48 frames" in page
    # the 2θ check of the prepare step (34.02° expected for Au (111) at 9 keV) reaches the report
    assert "34.02" in page and "prepare: summary" in page
    assert "34idc" in page and "Staff20-1a_S0054" in page  # provenance: beamline and raw files
    assert "fitted measurement terms" in page and "free pixels" in page
    # the regime diagnosis of the measured (kinematic) support: on the console and in the report
    assert "regime diagnosis (kinematic support): " in scan54_run["stdout"] and "Verdict: " in page


def test_stage_artifacts(scan54_run):
    from dynbcdi.io import load_dataset, load_result

    run_dir = scan54_run["run_dir"]
    dataset = load_dataset(run_dir / "prepare" / "dataset.cxi")
    assert dataset.intensity.shape == (48, 64, 64)
    kin = load_result(run_dir / "grid" / "kinematic.cxi")
    dyn = load_result(run_dir / "dynamical" / "dynamical.cxi")
    assert kin.obj.shape == dyn.obj.shape and kin.obj.shape[1:] == (64, 64)
    assert dyn.metadata["epochs"] == 5 and len(dyn.history["loss"]) == 5
    # the fitted measurement terms and fit statistics travel with the result (and into the report)
    assert dyn.metadata["terms_frame_scales"].shape == (48,) and "rocking_offset_rad" in str(list(dyn.metadata))
    assert dyn.metadata["fit"]["deviance_free"] > 0
    for name in ("regime/regime.json", "analysis/analysis.npz", "analysis/dynamical.vti", "patterns/patterns.npz",
                 "report/figures/frames.png"):
        assert (run_dir / name).is_file(), name
