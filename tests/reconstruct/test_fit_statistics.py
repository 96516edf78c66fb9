"""Free pixels, fit statistics and their Poisson floors, smoothed stopping, the [terms] config and
checkpoints by name (dynbcdi.reconstruct with the tiny kinematic model of conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynbcdi.reconstruct import (OptimizerConfig, ReconstructionConfig, StoppingConfig, TermConfig, config_from_dict,
                                 reconstruct)
from dynbcdi.reconstruct.checkpoint import load_checkpoint, save_checkpoint
from dynbcdi.reconstruct.evaluate import free_pixel_mask
from dynbcdi.reconstruct.loss import expected_poisson_terms
from dynbcdi.reconstruct.optimizer import History, smoothed_converged


def test_expected_poisson_terms_match_sampling():
    """Floors against 400 000 Poisson samples per level (standard error ≤ 2e-3), across the
    tabulated (≤ 50 photons) and the series (> 50) ranges; limits 0 at D = 0, 1/4 and 1 at large D."""
    levels = torch.tensor([0.0, 0.05, 0.7, 3.0, 20.0, 49.0, 80.0, 2000.0], dtype=torch.float64)
    amp, dev = expected_poisson_terms(levels)
    g = torch.Generator().manual_seed(0)
    for lam, a, d in zip(levels.tolist(), amp.tolist(), dev.tolist()):
        sample = torch.poisson(torch.full((400_000,), lam, dtype=torch.float64), generator=g)
        mc_amp = float(((lam + 1e-6) ** 0.5 - sample.sqrt()).square().mean())
        lam_t = torch.tensor(lam + 1e-6, dtype=torch.float64)
        mc_dev = float((2 * (torch.xlogy(sample, sample) - torch.xlogy(sample, lam_t) - (sample - lam_t))).mean())
        assert a == pytest.approx(mc_amp, abs=2e-3), lam
        assert d == pytest.approx(mc_dev, abs=1e-2), lam
    assert float(amp[0]) == pytest.approx(0.0, abs=1e-5) and float(amp[-1]) == pytest.approx(0.25, abs=1e-3)
    assert float(dev[-1]) == pytest.approx(1.0, abs=1e-3)


def test_free_pixels_are_held_out_and_reported(problem):
    """Poisson data of the truth, fitted from the truth: both sets sit at their floor (ratio ≈ 1), the
    free set is ~5 % of the valid points, drawn only from valid ones, and never fitted."""
    rng = torch.Generator().manual_seed(3)
    data = torch.poisson(torch.as_tensor(problem["intensity"]) * 0.05, generator=rng).numpy()
    valid = np.ones(data.shape[1:], bool)
    valid[:, :2] = False
    cfg = ReconstructionConfig(epochs=3, dtype="complex128", optimizer=OptimizerConfig(lr=1e-3))
    cfg = cfg.with_terms(free_fraction=0.05, free_seed=4)
    res = reconstruct(data, valid, problem["dq"], problem["model"], problem["truth"], cfg)
    assert res.free.sum() == pytest.approx(0.05 * valid.sum() * data.shape[0], rel=0.15)
    assert not res.free[:, :, :2].any()
    np.testing.assert_array_equal(res.free, free_pixel_mask(np.broadcast_to(valid, data.shape), 0.05, 4))
    f = res.fit
    assert f.ratio == pytest.approx(1.0, abs=0.1)
    assert f.loss_free / f.floor_free == pytest.approx(1.0, abs=0.25)
    assert f.deviance_fit / f.deviance_floor_fit == pytest.approx(1.0, abs=0.1)
    assert np.isfinite(res.history.free_loss).all()
    # the free pixels do not enter the gradient: changing their data leaves the run unchanged
    poisoned = np.where(res.free, data + 1000.0, data)
    again = reconstruct(poisoned, valid, problem["dq"], problem["model"], problem["truth"], cfg)
    np.testing.assert_array_equal(again.S, res.S)
    assert again.fit.loss_free > 10 * f.loss_free


def test_smoothed_stopping_ignores_single_epoch_scatter():
    """Epoch losses with 1 % scatter: a plateau stops within a few epochs of two windows, a loss that
    still falls by 0.2 %/epoch or rises does not; the old single-epoch rule (|ΔL| ≤ 1e-4 L over 10
    epochs) almost never fired on the plateau (it stopped only by coincidence)."""
    rng = np.random.default_rng(0)
    stop = StoppingConfig(tol=2e-3, window=10, min_epochs=30)
    stops, old = [], 0
    for _ in range(50):
        plateau = 0.3 * (1 + 0.01 * rng.standard_normal(200))
        stops.append(next(e for e in range(1, 201) if smoothed_converged(plateau[:e], stop)))
        old += sum(abs(plateau[e - 11] - plateau[e - 1]) <= 1e-4 * plateau[e - 11] for e in range(31, 41))
    assert min(stops) >= 30 and np.median(stops) <= 40
    assert old <= 0.05 * 50 * 10
    falling = 0.3 * 0.998 ** np.arange(200) * (1 + 0.002 * rng.standard_normal(200))
    assert not any(smoothed_converged(falling[:e], stop) for e in range(1, 201))
    assert not smoothed_converged(np.linspace(0.3, 0.6, 40), stop)


def test_terms_config_from_toml_dict_and_old_keys():
    cfg = config_from_dict({"epochs": 5, "optimizer": {"refine_offsets": True},
                            "terms": {"free_fraction": 0.1, "rocking": {"refine": True, "lr_factor": 0.5},
                                      "blur": {"refine": True, "init": 0.4}}})
    assert cfg.terms.rocking == TermConfig(refine=True, lr_factor=0.5)
    assert cfg.terms.blur.init == 0.4 and cfg.terms.free_fraction == 0.1 and cfg.optimizer.refine_offsets
    assert config_from_dict({"epochs": 5}).terms.rocking.refine is False  # old files: no terms
    with pytest.raises(ValueError, match="terms.rocking.refin"):
        config_from_dict({"terms": {"rocking": {"refin": True}}})
    with pytest.raises(ValueError, match="free_fraction"):
        config_from_dict({"terms": {"free_fraction": 0.7}})


def test_checkpoint_history_by_name_and_term_state(problem, tmp_path):
    cfg = ReconstructionConfig(epochs=3, dtype="complex128", checkpoint_every=1).with_terms(
        rocking=TermConfig(refine=True), frame_scale=TermConfig(refine=True), free_fraction=0.05)
    args = (problem["intensity"], problem["valid"], problem["dq"], problem["model"], problem["truth"])
    reconstruct(*args, cfg, checkpoint_dir=tmp_path)
    state = load_checkpoint(tmp_path)
    assert set(state["history"]) >= {"epoch", "loss", "free_loss", "lr"}
    assert "rocking.global_steps" in state["terms"] and "scale.log_frame" in state["terms"]
    # an older history without free_loss and with an unknown column still loads, by name
    columns = {k: v for k, v in state["history"].items() if k != "free_loss"}
    history = History.from_columns({**columns, "retired_column": [0, 0, 0]})
    assert np.isnan(history.free_loss).all() and np.array_equal(history.loss, state["history"]["loss"])
    state["history"] = columns
    save_checkpoint(tmp_path, state)
    resumed = reconstruct(*args, cfg.replace(epochs=4), checkpoint_dir=tmp_path, resume=True)
    assert resumed.epochs == 4 and np.isnan(resumed.history.free_loss[:3]).all()
    assert np.isfinite(resumed.history.free_loss[3])
