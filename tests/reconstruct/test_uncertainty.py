"""Uncertainty map from repeated truth-free reconstructions: the spread follows the true error."""

from __future__ import annotations

import numpy as np
import pytest

from dynbcdi.analysis import align_to
from dynbcdi.reconstruct import StartConfig, default_config
from dynbcdi.reconstruct.uncertainty import repeat_dynamical, uncertainty_map


def _kwargs(dataset) -> dict:
    h = dataset.geometry.grid_frame().to_grid(dataset.geometry.h)
    return {"h_norm": dataset.reflection.h_norm, "spacing_m": dataset.spacing_m, "h_dir_grid": h / np.linalg.norm(h)}


def test_spread_is_larger_where_the_error_is_larger(tiny_au):
    # 4 repeats (phasing seed, start candidates and mini-batch order change), a short chain: 30
    # epochs, one phasing start, a reduced start search with the exhaustive ranking it was measured
    # with (with the quick ranking the repeats agree more: Spearman 0.17, decile ratio 1.14). Measured (one thread, ~17 s): repeats at
    # 0.03–0.38 rad; over the crystal core, Spearman(spread, |error of the mean|) = 0.42 and the mean
    # spread in the worst-error decile 2.5× that in the best decile.
    # no soft-edge stage: the starts it was measured with (with the stage the decile ratio was 1.49, bound 1.5)
    start = StartConfig(twin_epochs=5, extra_thresholds=(), hull_flat=False, subvoxel_shifts=(0.0,),
                        ranking="exhaustive", soft_edges=())
    results = repeat_dynamical(tiny_au, 4, config=default_config(30), start=start, n_starts=1)
    kw = _kwargs(tiny_au)
    um = uncertainty_map([r.S for r in results], **kw)
    assert um.repeats == 4 and not um.twins[0] and um.correlations[0] == 1.0
    # The true error of the mean map: the truth aligned onto the first repeat, global phase removed.
    truth = align_to(tiny_au.truth.astype(np.complex128), results[0].S.astype(np.complex128), support=um.support).obj
    core = um.support & (np.abs(truth) > 0.5 * np.abs(truth).max())
    err = np.angle(np.exp(1j * (-um.displacement_mean_m * kw["h_norm"] - np.angle(truth))))
    err = np.abs(np.angle(np.exp(1j * (err - np.angle(np.sum(np.exp(1j * err[core])))))))[core]
    spread = um.displacement_std_m[core] * kw["h_norm"]  # rad
    from scipy.stats import spearmanr

    assert spearmanr(err, spread)[0] > 0.2
    order, tenth = np.argsort(err), err.size // 10
    assert spread[order[-tenth:]].mean() > 1.5 * spread[order[:tenth]].mean()
    assert np.all(np.isfinite(um.strain_std[core & np.isfinite(um.strain_mean)]))
    assert np.isnan(um.displacement_std_m[~um.support]).all()


def test_uncertainty_map_of_identical_copies_and_bad_input():
    z, y, x = np.meshgrid(*[np.arange(16) - 8] * 3, indexing="ij")
    amp = (np.maximum(np.abs(x), np.maximum(np.abs(y), np.abs(z))) < 5).astype(float)
    obj = amp * np.exp(1j * 0.3 * np.sin(x / 3.0 + y / 5.0))
    kw = {"h_norm": 3e10, "spacing_m": (1e-8,) * 3, "h_dir_grid": (0, 0, 1)}
    # A copy moved by whole voxels with another global phase: zero spread; a copy with an extra
    # phase δ in one voxel: std |δ|/(|h|√2) there (two samples, ddof = 1).
    moved = np.roll(obj, (1, -2, 0), axis=(0, 1, 2)) * np.exp(0.7j)
    bumped = obj.copy()
    bumped[8, 8, 8] *= np.exp(0.2j)
    um = uncertainty_map([obj, moved], **kw)
    assert np.nanmax(um.displacement_std_m) < 1e-6 / kw["h_norm"]
    np.testing.assert_allclose(um.shifts_vox[1], (-1, 2, 0), atol=0.05)
    um = uncertainty_map([obj, bumped], **kw)
    assert um.displacement_std_m[8, 8, 8] == pytest.approx(0.2 / kw["h_norm"] / np.sqrt(2), rel=0.02)
    with pytest.raises(ValueError, match="at least 2"):
        uncertainty_map([obj], **kw)
    with pytest.raises(ValueError, match="shape"):
        uncertainty_map([obj, obj[:8]], **kw)


_RUN_TOML = """
dataset = "{dataset}"
threads = 1

[phasing]
recipe = "support(box=0.5), shrinkwrap(start=20, every=10), (HIO**20, ER**20)**3, ER**20"
starts = 1

[reconstruction]
epochs = 3
repeats = {repeats}

[reconstruction.start]
twin_epochs = 0
"""


def test_workflow_repeats_write_the_maps_to_cxi_and_vti(tmp_path, tiny_au):
    # `[reconstruction] repeats = 2` through dynbcdi run's stages: the spread lands in dynamical.cxi
    # (/entry_1/image_1/maps) and dynamical.vti; a single run keeps its cache key.
    import copy

    from dynbcdi.io import load_result, read_vti, save_dataset
    from dynbcdi.workflow import load_run_config, run_workflow
    from dynbcdi.workflow.stages import DynamicalStage

    measured = copy.copy(tiny_au)
    measured.truth = None
    dataset = save_dataset(measured, tmp_path / "tiny.cxi")
    toml = tmp_path / "run.toml"
    toml.write_text(_RUN_TOML.format(dataset=dataset.as_posix(), repeats=1))
    assert "repeats" not in DynamicalStage().settings(load_run_config(toml))
    toml.write_text(_RUN_TOML.format(dataset=dataset.as_posix(), repeats=2))
    config = load_run_config(toml)
    assert config.reconstruction.repeats == 2 and DynamicalStage().settings(config)["repeats"] == 2
    run_workflow(config, tmp_path / "run", progress=False)
    result = load_result(tmp_path / "run" / "dynamical" / "dynamical.cxi")
    assert set(result.maps) == {"displacement_mean_m", "displacement_std_m", "strain_mean", "strain_std"}
    std = result.maps["displacement_std_m"][result.support]
    assert np.all(np.isfinite(std)) and std.max() > 0
    assert result.metadata["uncertainty"]["repeats"] == 2
    arrays, _ = read_vti(tmp_path / "run" / "analysis" / "dynamical.vti")
    assert {"displacement_std_pm", "strain_std"} <= set(arrays)
    assert (tmp_path / "run" / "report" / "figures" / "uncertainty.png").is_file()  # the report shows the maps
    toml.write_text(_RUN_TOML.format(dataset=dataset.as_posix(), repeats=0))
    with pytest.raises(ValueError, match="reconstruction.repeats"):
        load_run_config(toml)


@pytest.mark.parametrize("suffix", [".cxi", ".npz"])
def test_result_files_keep_maps(tmp_path, suffix):
    from dynbcdi.io import load_result, save_result

    obj = np.ones((4, 5, 6), np.complex64)
    spread = np.full((4, 5, 6), np.nan)
    spread[1:3, 1:4, 1:5] = 2.5e-12
    path = save_result(tmp_path / f"r{suffix}", obj, (1e-8,) * 3, maps={"displacement_std_m": spread})
    back = load_result(path).maps["displacement_std_m"]
    np.testing.assert_allclose(back, spread.astype(np.float32), equal_nan=True)
    assert load_result(save_result(tmp_path / f"plain{suffix}", obj, (1e-8,) * 3)).maps == {}
    with pytest.raises(ValueError, match="map 'bad'"):
        save_result(tmp_path / f"x{suffix}", obj, (1e-8,) * 3, maps={"bad": np.zeros((4, 5))})
