"""`dynbcdi phase` on a tiny simulated dataset: outputs in both frames, overwrite, Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from dynbcdi.cli.main import main
from dynbcdi.geometry import generic_geometry
from dynbcdi.io import Dataset, load_result, save_dataset
from dynbcdi.materials import reflection_constants

RECIPE = "shrinkwrap(start=20, every=10), (HIO**20, ER**20)**2, ER**20"


@pytest.fixture(scope="session")
def dataset_path(tmp_path_factory, crystal_factory):
    refl = reflection_constants("Au", (1, 1, 1), 9000.0)
    geo = generic_geometry(refl, np.linspace(-2e-3, 2e-3, 16), (16, 16), 55e-6, 1.0)
    truth = crystal_factory(16, radius=3.0, phase_rad=1.0)
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(truth)))) ** 2
    dataset = Dataset(intensity=intensity, valid=np.ones((16, 16), bool), geometry=geo, reflection=refl,
                      spacing_m=geo.grid_spacing_m())
    return save_dataset(dataset, tmp_path_factory.mktemp("data") / "tiny.npz")


def test_phase_writes_both_frames(dataset_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["phase", str(dataset_path), "--out", str(out), "--recipe", RECIPE, "--starts", "2",
                 "--no-progress"]) == 0
    det = load_result(out / "object_detector.npz")
    grid = load_result(out / "object_grid.npz")
    assert det.obj.shape == (16, 16, 16) and det.metadata["frame"] == "detector"
    assert grid.metadata["frame"] == "grid" and grid.obj.shape[1:] == (16, 16)
    assert det.history["error"].shape == (100,) and not det.metadata["interrupted"]
    assert det.metadata["seeds"] == [0, 1]
    # The conversion keeps the object's norm up to the Jacobian |det R| / (dz dy dx) (voxel volumes).
    basis = det.metadata["realspace_basis"]
    jac = abs(np.linalg.det(basis)) / np.prod(grid.spacing_m)
    ratio = np.sum(np.abs(grid.obj) ** 2) / (jac * np.sum(np.abs(det.obj) ** 2))
    assert ratio == pytest.approx(1.0, rel=0.1)  # 10 %: cubic interpolation of a 16³ object
    assert "final amplitude error" in capsys.readouterr().out

    code = main(["phase", str(dataset_path), "--out", str(out), "--recipe", RECIPE, "--no-progress"])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert main(["phase", str(dataset_path), "--out", str(out), "--recipe", "ER**5", "--overwrite",
                 "--no-progress"]) == 0
    assert load_result(out / "object_detector.npz").history["error"].shape == (5,)


def test_ctrl_c_writes_partial_result(dataset_path, tmp_path):
    out = tmp_path / "interrupted"
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code = main(["phase", str(dataset_path), "--out", str(out), "--recipe", "HIO**200000", "--no-progress"])
    finally:
        timer.cancel()
    assert code == 130
    det = load_result(out / "object_detector.npz")
    assert det.metadata["interrupted"]
    assert 0 < det.history["error"].shape[0] < 200000


def test_bad_recipe_fails_before_loading(tmp_path, capsys):
    code = main(["phase", str(tmp_path / "missing.npz"), "--out", str(tmp_path), "--recipe", "HIO**0"])
    assert code == 2 and "positive integer" in capsys.readouterr().err
