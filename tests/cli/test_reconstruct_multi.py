"""`dynbcdi reconstruct-multi MANIFEST --out DIR`: end to end at the tiny preset, refusals, Ctrl-C."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest

from dynbcdi.cli.main import main
from dynbcdi.reconstruct import interrupt

FAST = ["--epochs", "1", "--batch", "13", "--phasing-starts", "1", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("multi") / "data"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["simulate", "--preset", "au-111-multi-test", "--out", str(out), "--no-progress"]) == 0
    return out / "manifest.json"


@pytest.fixture(scope="module")
def finished(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("joint") / "run"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["reconstruct-multi", str(manifest), "--out", str(out), "--start", "phased", "--twin-epochs", "1",
                   *FAST])
    return rc, buf.getvalue(), out


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("dynbcdi reconstruct-multi: error:") and "\n" not in err, err
    return err


def test_end_to_end_writes_field_figure_and_summary(finished):
    rc, text, out = finished
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["field.vti", "strain_tensor.png", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is False and summary["epochs_done"] == 1 and len(summary["loss"]) == 1
    assert [r["hkl"] for r in summary["reflections"]] == [[1, 1, 1], [-1, 1, 1], [1, -1, 1]]
    assert summary["reflections"][0]["shift_vox"] == [0.0, 0.0, 0.0] and len(summary["twin_losses"]) == 3
    vti = (out / "field.vti").read_text(errors="replace")
    assert 'Vectors="u"' in vti and 'Tensors="strain"' in vti
    assert "result:" in text and "(-1, 1, 1)" in text


def test_a_non_empty_folder_is_refused_and_kept(finished, manifest, capsys):
    _, _, out = finished
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    err = _one_line_error(capsys, main(["reconstruct-multi", str(manifest), "--out", str(out), *FAST]))
    assert "not empty" in err and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.parametrize("option, value, words", [("--epochs", "-1", "--epochs must be"),
                                                  ("--batch", "0", "--batch must be"),
                                                  ("--phasing-starts", "0", "--phasing-starts must be"),
                                                  ("--twin-epochs", "-2", "--twin-epochs must be"),
                                                  ("--shrinkwrap", "-1", "--shrinkwrap must be"),
                                                  ("--shrinkwrap-threshold", "1", "--shrinkwrap-threshold must be")])
def test_bad_options_are_one_line_errors(manifest, tmp_path, capsys, option, value, words):
    code = main(["reconstruct-multi", str(manifest), "--out", str(tmp_path / "r"), option, value])
    assert words in _one_line_error(capsys, code)
    assert not (tmp_path / "r").exists()


def _edited(manifest, tmp_path, edit) -> str:
    folder = tmp_path / "data"
    shutil.copytree(manifest.parent, folder)
    man = json.loads((folder / "manifest.json").read_text())
    edit(man)
    (folder / "manifest.json").write_text(json.dumps(man))
    return str(folder / "manifest.json")


def _two_reflections(man):
    man["reflections"] = man["reflections"][:2]


def _other_mounting(man):
    man["config"]["orientation_euler_deg"] = [-90.0, 0.0, 5.0]


def _rotated_crystal(man):  # same U in both places, but the datasets were measured with another one
    from dynbcdi.simulate.multi import MultiConfig

    man["config"]["orientation_euler_deg"] = [-90.0, 0.0, 5.0]
    cfg = MultiConfig(**{k: (tuple(map(tuple, v)) if k == "hkls" else tuple(v) if isinstance(v, list) else v)
                         for k, v in man["config"].items()})
    man["orientation"] = cfg.orientation.tolist()


def _no_config(man):
    del man["config"]


@pytest.mark.parametrize("edit, words", [(_two_reflections, "non-coplanar"), (_no_config, "malformed manifest"),
                                         (_other_mounting, "orientation matrix disagrees"),
                                         (_rotated_crystal, "another crystal or another mounting")])
def test_inconsistent_manifests_are_refused(manifest, tmp_path, capsys, edit, words):
    path = _edited(manifest, tmp_path, edit)
    code = main(["reconstruct-multi", path, "--out", str(tmp_path / "r"), *FAST])
    assert words in _one_line_error(capsys, code)
    assert not (tmp_path / "r").exists()


def test_missing_and_broken_manifests(tmp_path, capsys):
    code = main(["reconstruct-multi", str(tmp_path / "none.json"), "--out", str(tmp_path / "r")])
    assert "no such manifest" in _one_line_error(capsys, code)
    (tmp_path / "bad.json").write_text("{not json")
    code = main(["reconstruct-multi", str(tmp_path / "bad.json"), "--out", str(tmp_path / "r")])
    assert "not valid JSON" in _one_line_error(capsys, code)


def test_ctrl_c_in_the_twin_trials_writes_nothing(manifest, tmp_path, monkeypatch, capsys):
    """Ctrl-C while the start's twin trials run: exit 130 and nothing written (a trial cut short
    would bias the twin choice; the review found an IndexError traceback here before)."""
    monkeypatch.setattr(interrupt.StopRequest, "__init__", lambda self: setattr(self, "requested", True))
    out = tmp_path / "r"
    code = main(["reconstruct-multi", str(manifest), "--out", str(out), "--twin-epochs", "1", *FAST])
    assert code == 130 and "nothing was written" in capsys.readouterr().out
    assert not out.exists() or not any(out.iterdir())


def test_ctrl_c_stops_at_a_step_boundary_and_writes_the_field(manifest, tmp_path, monkeypatch, capsys):
    """A Ctrl-C already requested when the fit starts: it stops at the first mini-batch boundary (before
    any Adam step) and writes that field, the start (the library tests stop mid-epoch).
    (The start is the true shape with u = 0 instead of the phased one: this test is about the fit.)"""
    from dynbcdi.reconstruct import multi_start
    from dynbcdi.simulate.multi import load_manifest

    def known_shape(datasets, grid, config, problems=None, device="cpu", on_reflection=None):
        s = load_manifest(manifest).truth["s"]
        return multi_start.MultiStart(grid, s, np.zeros((3, *s.shape)), s > 1e-3, [False] * 3, [np.zeros(3)] * 3,
                                      [s + 0j] * 3)  # the default --start flat takes its support from these

    monkeypatch.setattr(multi_start, "phased_start", known_shape)
    monkeypatch.setattr(interrupt.StopRequest, "__init__", lambda self: setattr(self, "requested", True))
    out = tmp_path / "r"
    code = main(["reconstruct-multi", str(manifest), "--out", str(out), "--twin-epochs", "0",
                 "--epochs", "3", "--batch", "13", "--phasing-starts", "1", "--no-progress", "--threads", "1"])
    assert code == 130 and "interrupted" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["steps"] == 0 and summary["epochs_done"] == 0
    assert (out / "field.vti").is_file()
    assert summary["start"] == "flat" and summary["support_voxels"] > 0
