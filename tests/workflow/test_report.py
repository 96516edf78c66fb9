"""The HTML report: every section, figures inline, settings and versions; the numbers it is built on."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dynbcdi.workflow.products import poisson_deviance, report_frames
from dynbcdi.workflow.report import SECTIONS, two_theta_check


@pytest.fixture(scope="module")
def page(cli_run) -> str:
    assert cli_run["code"] == 0, cli_run["stdout"]
    return (cli_run["run_dir"] / "report" / "report.html").read_text(encoding="utf-8")


def test_report_has_every_section_and_is_self_contained(page):
    for sid, title in SECTIONS:
        assert f'<section id="{sid}">' in page, sid
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    # nine figures, all inline PNG: the file opens anywhere on its own
    assert len(images) == 9 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "figure not drawn" not in page
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # no external file or URL


def test_report_lists_settings_versions_timings(page, cli_run):
    for key in ("reconstruction.config.epochs", "reconstruction.start.twin_epochs", "phasing.recipe",
                "output.report_frames", "threads"):
        assert f"<th>{key}</th>" in page, key
    for lib in ("dynbcdi", "torch", "numpy", "xrayutilities"):
        assert f"<th>{lib}</th>" in page, lib
    for stage in ("prepare", "phase", "grid", "dynamical", "analysis", "patterns"):
        assert f"<td>{stage}</td>" in page, stage
    assert "Poisson deviance per pixel" in page and "measured 2θ (deg)" in page
    assert "simulate tiny-au" in page  # the dataset's provenance


def test_stage_artifacts(cli_run):
    run_dir = cli_run["run_dir"]
    for path in ("prepare/dataset.cxi", "phase/phasing.cxi", "grid/kinematic.cxi", "dynamical/dynamical.cxi",
                 "analysis/analysis.npz", "analysis/kinematic.vti", "analysis/dynamical.vti",
                 "patterns/patterns.npz", "report/figures/rocking_curves.png", "run.json"):
        assert (run_dir / path).is_file(), path


def test_poisson_deviance_known_values():
    data = np.array([0.0, 1.0, 4.0, 10.0])
    assert np.allclose(poisson_deviance(data, data + (data == 0) * 1e-300), 0, atol=1e-9)
    # 2[I ln(I/λ) − (I − λ)]: I = 0 → 2λ; I = 4, λ = 2 → 2(4 ln 2 − 2)
    assert np.allclose(poisson_deviance(np.array([0.0, 4.0]), np.array([3.0, 2.0])), [6.0, 2 * (4 * np.log(2) - 2)])


def test_report_frames_span_peak_and_tails():
    # Gaussian σ = 3 frames at 25: the curve falls to 1/√10 at |x| ≥ 4.55 and to 1/100 at |x| ≥ 9.1
    curve = np.exp(-0.5 * ((np.arange(61) - 25) / 3.0) ** 2)
    assert report_frames(curve, 5).tolist() == [15, 20, 25, 30, 35]
    assert report_frames(curve, 3).tolist() == [18, 25, 32]  # 1/10 at |x| ≥ 6.4
    assert report_frames(curve, 1).tolist() == [25]


def test_two_theta_check_of_a_matching_geometry(cli_run):
    from dynbcdi.io import load_dataset

    dataset = load_dataset(cli_run["run_dir"] / "prepare" / "dataset.cxi")
    check = two_theta_check(dataset)  # the simulation sits exactly on the Bragg angle
    assert abs(float(check["mismatch (deg)"])) < 1e-3 and abs(float(check["equivalent Δa/a"])) < 1e-5


def test_two_theta_check_signs():
    # 2θ measured 0.2° below 2θB: explained by a larger lattice parameter (Δa/a = −cot θB · Δθ > 0)
    # or an energy higher by the same fraction (λ = 2d sin θ).
    from types import SimpleNamespace

    theta_b = np.deg2rad(17.01)
    two_theta = 2 * theta_b - np.deg2rad(0.2)
    k0 = np.array([0.0, 0.0, 1.0])
    kh = np.array([np.sin(two_theta), 0.0, np.cos(two_theta)])
    refl = SimpleNamespace(bragg_angle_rad=theta_b, material="Au", hkl=(1, 1, 1), energy_eV=9000.0)
    ds = SimpleNamespace(geometry=SimpleNamespace(k0=k0, kh=kh), reflection=refl, metadata={})
    check = two_theta_check(ds)
    expected = np.deg2rad(0.1) / np.tan(theta_b)
    assert float(check["mismatch (deg)"]) == pytest.approx(-0.2, abs=1e-4)
    assert float(check["equivalent Δa/a"]) == pytest.approx(expected, rel=1e-2)
    assert float(check["equivalent ΔE (eV)"]) == pytest.approx(9000 * expected, rel=1e-2)


def test_regime_diagnosis_of_the_measured_support(cli_run, page):
    # The regime stage diagnoses the kinematic support before the dynamical stage: its numbers in
    # regime/regime.json, the verdict on the console, a section and a summary row in the report.
    import json

    r = json.loads((cli_run["run_dir"] / "regime" / "regime.json").read_text())
    assert "error" not in r, r.get("error")
    # the tiny scan is a 0.52 µm Au cube, (200) at 8 keV: about 2 extinction lengths, well under 1/μ
    assert 400 < r["thickness_along_h_nm"] < 800
    assert r["thickness_over_extinction"] == pytest.approx(r["thickness_along_h_nm"] / r["extinction_length_nm"])
    assert r["thickness_over_absorption"] == pytest.approx(r["thickness_along_h_nm"] / r["absorption_length_nm"])
    assert r["extinction_length_nm"] == pytest.approx(json.loads(
        (cli_run["run_dir"] / "analysis" / "analysis.json").read_text())["extinction_length_nm"])
    assert r["kinematic_enough"] == (r["kinematic_phase_error_rad"] < r["threshold_rad"])
    assert r["verdict"] == "dynamical needed"  # 0.5 µm of Au: above 0.1 rad (analysis.regime docstring)
    assert r["support"]["voxels"] > 100 and r["seconds"] < 10
    assert "regime diagnosis (kinematic support): dynamical needed" in cli_run["stdout"]
    section = page.split('<section id="regime">', 1)[1].split("</section>", 1)[0]
    assert "Verdict: dynamical needed" in section and "thickness / extinction length" in section
    assert f"{r['thickness_over_extinction']:.2f}" in section and f"{r['kinematic_phase_error_rad']:.3f}" in section
    assert "<th>regime diagnosis (kinematic support)</th>" in page


def test_regime_without_a_diagnosis_says_why(tmp_path):
    # A diagnosis that could not be made is said so on the console and in the report, not hidden.
    import json

    from dynbcdi.workflow.regime import verdict_line
    from dynbcdi.workflow.report import _regime

    assert verdict_line(tmp_path) is None  # a run folder without the regime stage
    (tmp_path / "regime").mkdir()
    regime = {"support": {"voxels": 3, "spacing_nm": [10.0, 10.0, 10.0], "threshold": 0.3},
              "polarization": "sigma", "error": "the crystal covers fewer than 8 voxels of the diagnosis grid"}
    (tmp_path / "regime" / "regime.json").write_text(json.dumps(regime))
    assert verdict_line(tmp_path) == ("regime diagnosis: not made (the crystal covers fewer than 8 voxels of the "
                                      "diagnosis grid)")
    assert "could not be made: the crystal covers fewer than 8 voxels" in _regime(regime)
