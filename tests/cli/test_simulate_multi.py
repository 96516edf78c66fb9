"""`dynbcdi simulate --preset au-111-multi-test --out DIR/`: datasets + manifest, refusals, preset list."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re

import numpy as np
import pytest

from dynbcdi.cli.main import main
from dynbcdi.simulate.multi import MULTI_PRESETS, load_manifest

PRESET = "au-111-multi-test"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Run the command once; (rc, stdout, folder). A module fixture cannot use capsys: stdout by hand."""
    out = tmp_path_factory.mktemp("multi") / "run"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["simulate", "--preset", PRESET, "--out", str(out), "--no-progress"])
    return rc, buf.getvalue(), out


def test_writes_one_dataset_per_reflection_and_a_readable_manifest(written):
    rc, text, out = written
    assert rc == 0
    cfg = MULTI_PRESETS[PRESET]
    multi = load_manifest(out / "manifest.json")  # checks one crystal, one mounting, reachability
    assert [tuple(ds.reflection.hkl) for ds in multi.datasets] == list(cfg.hkls)
    n_angles = len(cfg.rocking_angles_rad())
    for ds in multi.datasets:
        assert ds.intensity.shape == (n_angles, *cfg.detector_shape) and ds.intensity.sum() > 0
    assert multi.truth is not None and multi.truth["u"].shape == (3, *cfg.sample_shape)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", "truth.npz"] + [e["file"] for e in multi.manifest["reflections"]])
    # one printed line per reflection: hkl, θ, δ, γ and the file, equal to the manifest's
    for entry in multi.manifest["reflections"]:
        hkl = " ".join(f"{i:2d}" for i in entry["hkl"])
        line = next(ln for ln in text.splitlines() if ln.startswith(hkl) and ln.endswith(entry["file"]))
        theta, delta, gamma = (float(v) for v in line[len(hkl):].split()[:3])
        assert (theta, delta, gamma) == pytest.approx(
            (entry["theta_deg"], entry["delta_deg"], entry["gamma_deg"]), abs=1e-3)
    det = float(re.search(r"non-coplanarity \|det\| of unit h: ([0-9.]+)", text).group(1))
    h = np.stack([ds.metadata["h_sample"] for ds in multi.datasets])
    h = h / np.linalg.norm(h, axis=1, keepdims=True)
    assert det == pytest.approx(abs(np.linalg.det(h)), abs=1e-3) and det > 0.5


def test_refuses_a_non_empty_folder_and_keeps_it(written, capsys):
    _, _, out = written
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["simulate", "--preset", PRESET, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.parametrize("extra, message", [
    (["--size", "32"], "--size is not available"),
    (["--figures"], "--figures is not available"),
    (["--total-photons", "1e6"], "--total-photons is not available"),
    (["--peak-photons", "-5"], "--peak-photons must be a positive number"),
    (["--seed", "-1"], "--seed must be a non-negative integer"),
])
def test_bad_options_refused_before_simulating(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(["simulate", "--preset", PRESET, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_file_out_and_missing_out_refused(tmp_path, capsys):
    assert main(["simulate", "--preset", PRESET, "--out", str(tmp_path / "run.cxi")]) == 2
    assert "writes a folder" in capsys.readouterr().err
    assert main(["simulate", "--preset", PRESET]) == 2
    assert "--out DIR is required" in capsys.readouterr().err
    assert not (tmp_path / "run.cxi").exists()


def test_list_presets_names_the_multi_presets(capsys):
    assert main(["simulate", "--list-presets"]) == 0
    text = capsys.readouterr().out
    for name, cfg in MULTI_PRESETS.items():
        block = text.split(f"\n{name}\n", 1)[1].split("\n\n", 1)[0]
        assert "(1 1 1), (-1 1 1), (1 -1 1)" in block
        assert f"{len(cfg.rocking_angles_rad())} angles" in block
        assert f"TTE {cfg.nz} × {cfg.detector_shape[0]} × {cfg.detector_shape[1]}" in block
    assert "au-cube-200" in text  # the single-reflection presets are still listed


def test_overwrite_replaces_the_run(written, capsys):
    _, _, out = written
    manifest = json.loads((out / "manifest.json").read_text())
    assert main(["simulate", "--preset", PRESET, "--out", str(out), "--no-progress", "--overwrite",
                 "--peak-photons", "1e4", "--seed", "3"]) == 0
    new = json.loads((out / "manifest.json").read_text())
    assert new["config"]["peak_photons"] == 1e4 and manifest["config"]["peak_photons"] is None
    multi = load_manifest(out / "manifest.json")
    peak = max(float(ds.intensity.max()) for ds in multi.datasets)
    assert math.isclose(peak, 1e4, rel_tol=0.1)  # Poisson counts scaled to 1e4 in the brightest pixel
    assert all(np.array_equal(ds.intensity, np.round(ds.intensity)) for ds in multi.datasets)
