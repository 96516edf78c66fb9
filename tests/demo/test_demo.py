"""Smoke test of the end-to-end demo (issue 7) at a tiny size.

The demo simulates the ``au-demo`` crystal (0.6 µm Au cube, 2.3 Bragg extinction lengths), phases it
with HIO/ER, refines it with the TTE model and compares both with the truth. At this size it must
still show the point of the package: the dynamical reconstruction is closer to the truth than the
kinematic one (same metric, same alignment, no ramp removed).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dynbcdi.demo import DemoOptions, prepare_out_dir, run_demo
from dynbcdi.io import load_result, read_vti

# Tiny but still dynamical: 32 points per direction keeps the 0.6 µm cube at 2.3 extinction lengths
# (the field of view is fixed; only the voxels coarsen).
TINY = dict(size=32, n_starts=2, epochs=60, progress=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("demo") / "run"
    return run_demo(DemoOptions(out_dir=out, **TINY))


def test_dynamical_beats_kinematic(demo):
    kin, dyn = demo.metrics["kinematic"], demo.metrics["dynamical"]
    assert np.isfinite(dyn.phase_rms_rad) and np.isfinite(kin.phase_rms_rad)
    assert dyn.phase_rms_rad < kin.phase_rms_rad
    assert dyn.displacement_rms_pm < kin.displacement_rms_pm


def test_writes_every_file_and_figure(demo):
    names = {p.name for p in demo.files}
    for expected in ("dataset.cxi", "kinematic.cxi", "dynamical.cxi", "dynamical.vti", "objects.npz",
                     "rocking_curves.png", "complex_slices.png", "strain.png", "diffraction_isosurface.png",
                     "crystal_isosurface.png", "convergence.png", "errors.md", "summary.json"):
        assert expected in names, expected
    for path in demo.files:
        assert path.is_file() and path.stat().st_size > 0, path
    result = load_result(demo.out_dir / "dynamical.cxi")
    arrays, spacing = read_vti(demo.out_dir / "dynamical.vti")
    assert arrays["strain"].shape == result.obj.shape
    summary = json.loads((demo.out_dir / "summary.json").read_text())
    assert summary["metrics"]["dynamical"]["phase_rms_rad"] == pytest.approx(demo.metrics["dynamical"].phase_rms_rad)
    assert "| dynamical |" in (demo.out_dir / "errors.md").read_text()


def test_refuses_non_empty_output_folder(tmp_path):
    (tmp_path / "previous_result.cxi").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        prepare_out_dir(tmp_path, overwrite=False)
    assert (tmp_path / "previous_result.cxi").read_text() == "keep me"
