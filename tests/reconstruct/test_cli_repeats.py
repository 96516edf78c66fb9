"""`dynbcdi reconstruct --repeats N`: uncertainty maps in the CXI, a VTI and a figure; bad N refused first."""

from __future__ import annotations

import numpy as np
import pytest

from dynbcdi.cli.main import main
from dynbcdi.io import load_result, read_vti

MAPS = {"displacement_mean_m", "displacement_std_m", "strain_mean", "strain_std"}


@pytest.fixture(scope="module")
def scan(tiny_scan_files) -> dict[str, str]:
    """The 16³ au-demo scan and its phase-offset truth as the initial object (reconstruct conftest)."""
    return tiny_scan_files


def _args(scan: dict[str, str], out) -> list[str]:
    return ["reconstruct", scan["scan"], "--init", scan["init"], "--start", "as-is", "--model", "kinematic",
            "--epochs", "3", "--no-progress", "--out", str(out)]


def test_repeats_write_maps_vti_and_figure(scan, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main([*_args(scan, out), "--repeats", "2"]) == 0
    assert "uncertainty over 2 runs" in capsys.readouterr().out
    res = load_result(out / "reconstruction.cxi")
    assert set(res.maps) == MAPS and res.metadata["uncertainty"]["repeats"] == 2
    support = np.abs(res.obj) > 0.1 * np.abs(res.obj).max()
    std = res.maps["displacement_std_m"]
    assert std.shape == res.obj.shape and np.isnan(std[~support]).all()
    # two runs with different mini-batch orders: a spread > 0 but far below the 1.5 Å lattice scale
    inside = std[np.isfinite(std)]
    assert inside.size and 0 < np.median(inside) < 1e-11
    assert np.isfinite(res.maps["displacement_mean_m"][support]).all()
    arrays, spacing = read_vti(out / "reconstruction_uncertainty.vti")
    assert {"displacement_mean_pm", "displacement_std_pm", "strain_mean", "strain_std", "support"} <= set(arrays)
    assert np.allclose(arrays["displacement_std_pm"], std * 1e12, equal_nan=True, rtol=1e-5)
    png = (out / "uncertainty.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    # a finished folder with maps: --resume without --overwrite refuses before computing anything
    assert main([*_args(scan, out), "--repeats", "2", "--resume"]) == 2
    assert "exists" in capsys.readouterr().err
    # a single run over it with --overwrite: the old maps do not describe the new result, none is left
    assert main([*_args(scan, out), "--overwrite"]) == 0
    assert load_result(out / "reconstruction.cxi").maps == {}
    assert not (out / "reconstruction_uncertainty.vti").exists() and not (out / "uncertainty.png").exists()


def test_default_is_a_single_run_without_maps(scan, tmp_path):
    out = tmp_path / "single"
    assert main(_args(scan, out)) == 0
    assert load_result(out / "reconstruction.cxi").maps == {}
    assert not (out / "reconstruction_uncertainty.vti").exists() and not (out / "uncertainty.png").exists()


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_bad_repeats_is_a_one_line_error_before_any_file(scan, tmp_path, capsys, bad):
    out = tmp_path / "bad"
    assert main([*_args(scan, out), "--repeats", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert "--repeats must be ≥ 1" in err and "\n" not in err
    assert not out.exists()


def test_repeats_with_distributed_is_refused_before_any_file(scan, tmp_path, capsys):
    out = tmp_path / "dist"
    assert main([*_args(scan, out), "--repeats", "2", "--distributed"]) == 2
    assert "--repeats with --distributed is not supported" in capsys.readouterr().err and not out.exists()


def test_ctrl_c_during_repeats_keeps_the_main_result(scan, tmp_path, monkeypatch, capsys):
    import dynbcdi.reconstruct.uncertainty as uncertainty

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(uncertainty, "repeat_dynamical", interrupted)
    out = tmp_path / "ctrl_c"
    assert main([*_args(scan, out), "--repeats", "3"]) == 130
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "interrupted" in ln]
    assert len(lines) == 1 and "main result was written" in lines[0]
    assert load_result(out / "reconstruction.cxi").maps == {}  # the main run, no partial maps
    assert not (out / "reconstruction_uncertainty.vti").exists() and not (out / "uncertainty.png").exists()


def test_a_short_series_is_an_interrupt_not_a_map(scan, monkeypatch):
    # repeat_dynamical ends early when a repeat is interrupted: repeat_uncertainty must not map fewer runs
    import dynbcdi.reconstruct.uncertainty as uncertainty

    monkeypatch.setattr(uncertainty, "repeat_dynamical", lambda *a, **k: [])
    with pytest.raises(KeyboardInterrupt):
        uncertainty.repeat_uncertainty(None, None, None, type("C", (), {"seed": 0})(), 3, model=None)
    with pytest.raises(ValueError, match="repeats >= 2"):
        uncertainty.repeat_uncertainty(None, None, None, None, 1, model=None)
