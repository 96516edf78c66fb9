"""Algorithm tests of dynbcdi.reconstruct.reconstruct with a tiny kinematic model (conftest.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from dynbcdi.reconstruct import (LossConfig, OptimizerConfig, ReconstructionConfig, ShrinkWrapConfig, StoppingConfig,
                                 reconstruct)
from dynbcdi.reconstruct.checkpoint import checkpoint_path
from dynbcdi.reconstruct.optimizer import EpochRecord, History, converged, result_change


def phase_rms(S: np.ndarray, truth: np.ndarray) -> float:
    """RMS phase error (rad) on the true support after removing the global phase."""
    sup = np.abs(truth) > 0
    d = np.angle(S[sup] * np.conj(truth[sup]))
    d = np.angle(np.exp(1j * (d - np.angle(np.exp(1j * d).mean()))))
    return float(np.sqrt(np.mean(d**2)))


def perturbed_init(truth: np.ndarray) -> np.ndarray:
    """Truth with 0.9 amplitude and a smooth phase error of ~0.3 rad RMS."""
    n = truth.shape[0]
    z, y, x = np.meshgrid(*(np.arange(n) - n // 2,) * 3, indexing="ij")
    error = 0.4 * np.cos(2 * np.pi * y / n) + 0.3 * np.sin(2 * np.pi * (x - z) / n)
    return 0.9 * np.abs(truth) * np.exp(1j * (np.angle(truth) + error))


@pytest.mark.parametrize("kind", ["amplitude", "poisson"])
def test_converges_to_truth(problem, kind):
    init = perturbed_init(problem["truth"])
    cfg = ReconstructionConfig(epochs=300, loss=LossConfig(kind=kind),
                               optimizer=OptimizerConfig(lr=0.15, lr_amplitude_factor=0.3))
    res = reconstruct(problem["intensity"], problem["valid"], problem["dq"], problem["model"], init, cfg)
    before, after = phase_rms(init, problem["truth"]), phase_rms(res.S, problem["truth"])
    # noise-free kinematic data, exact model: from 0.25 rad initial error;
    # 0.03 leaves margin for BLAS differences while still demanding a 10x improvement
    assert before > 0.2 and after < 0.03, after
    # the default stopping rule (result change <= 1e-3 per 10 epochs) fires well before 300 epochs
    # (at ~120 / ~80 epochs; the error then is within 0.001 rad of that after 300 epochs)
    assert res.stopped_reason == "converged" and 50 <= res.epochs < 200, (res.stopped_reason, res.epochs)
    if kind == "amplitude":  # the Poisson NLL has a non-zero minimum
        assert res.history.loss[-1] < 1e-3 * res.history.loss[0]
    assert np.all(res.s >= 0) and not np.any(res.S[~res.support])
    # the scale is fitted: data were normalised to 1e6 photons; model/data agree to 2 %
    model_total = (res.scale * problem["model"](torch.as_tensor(res.S), torch.as_tensor(problem["dq"]))).sum()
    assert float(model_total) == pytest.approx(1e6, rel=0.02)


def _small_cfg(**kw) -> ReconstructionConfig:
    sw = ShrinkWrapConfig(every=2, start=2, threshold=0.05)
    stop = StoppingConfig(window=2, min_epochs=100)  # result change every 2 epochs, never stops
    return ReconstructionConfig(epochs=6, dtype="complex128", checkpoint_every=2, shrinkwrap=sw, stopping=stop,
                                optimizer=OptimizerConfig(chunk_size=3, refine_offsets=True), **kw)


def test_resume_is_bit_for_bit(problem, tmp_path):
    args = (problem["intensity"], problem["valid"], problem["dq"], problem["model"],
            perturbed_init(problem["truth"]))
    straight = reconstruct(*args, _small_cfg())
    first = reconstruct(*args, _small_cfg().replace(epochs=3), checkpoint_dir=tmp_path)
    assert first.epochs == 3 and checkpoint_path(tmp_path).is_file()
    resumed = reconstruct(*args, _small_cfg(), checkpoint_dir=tmp_path, resume=True)
    assert resumed.epochs == 6
    for name in ("S", "phase", "support", "offsets"):
        assert np.array_equal(getattr(straight, name), getattr(resumed, name)), name
    assert straight.scale == resumed.scale
    assert np.array_equal(straight.history.loss, resumed.history.loss)
    # the stopping window's reference S (epoch 2) travels in the checkpoint taken at epoch 3
    assert np.array_equal(straight.history.change, resumed.history.change, equal_nan=True)
    assert np.isfinite(straight.history.change[[1, 3, 5]]).all()


def test_chunking_does_not_change_the_step(problem):
    """Gradient accumulation over sub-chunks equals one big batch (float64 round-off only)."""
    args = (problem["intensity"], problem["valid"], problem["dq"], problem["model"],
            perturbed_init(problem["truth"]))
    runs = [reconstruct(*args, ReconstructionConfig(epochs=2, dtype="complex128",
                                                    optimizer=OptimizerConfig(chunk_size=c)))
            for c in (1, 16)]
    # summation order differs only: 1e-9 rad is far above float64 round-off, far below any real change
    np.testing.assert_allclose(runs[0].phase, runs[1].phase, atol=1e-9)


class FlakyModel(torch.nn.Module):
    """Wraps a model and poisons call number ``bad_call`` with NaN (Ctrl-C: test_interrupt_resume.py)."""

    def __init__(self, model, bad_call: int, failure: str):
        super().__init__()
        self.model, self.bad_call, self.failure, self.calls = model, bad_call, failure, 0

    def forward(self, S, dq):
        self.calls += 1
        if self.calls == self.bad_call:
            return self.model(S, dq) * float("nan")
        return self.model(S, dq)


def test_nan_rolls_back_and_halves_lr(problem, caplog):
    model = FlakyModel(problem["model"], bad_call=10, failure="nan")
    cfg = ReconstructionConfig(epochs=4, optimizer=OptimizerConfig(chunk_size=16, plateau_patience=100))
    with caplog.at_level(logging.WARNING):
        res = reconstruct(problem["intensity"], problem["valid"], problem["dq"], model,
                          perturbed_init(problem["truth"]), cfg)
    assert "rolled back" in caplog.text
    assert res.history.records[-1].rollbacks == 1
    assert res.history.records[-1].lr == pytest.approx(0.075)  # 0.15 halved once, plateau disabled
    assert np.isfinite(res.S).all() and np.isfinite(res.history.loss).all()


def test_shrink_wrap_tightens_a_loose_support(problem):
    truth = problem["truth"]
    loose = np.zeros(truth.shape, bool)
    loose[3:13, 3:13, 3:13] = True  # a cube larger than the crystal
    init = np.where(loose, np.exp(1j * np.angle(truth)) * (0.3 + 0.7 * (np.abs(truth) > 0)), 0)
    cfg = ReconstructionConfig(epochs=40, shrinkwrap=ShrinkWrapConfig(every=10, start=10, threshold=0.3),
                               optimizer=OptimizerConfig(lr_amplitude_factor=0.3))
    res = reconstruct(problem["intensity"], problem["valid"], problem["dq"], problem["model"], init, cfg)
    true_sup = np.abs(truth) > 0
    assert res.support.sum() < loose.sum()
    # the blurred support keeps the crystal: ≥ 95 % of the true voxels survive
    assert (res.support & true_sup).sum() >= 0.95 * true_sup.sum()
    assert not np.any(res.s[~res.support])


def test_resume_without_checkpoint_fails(problem, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        reconstruct(problem["intensity"], problem["valid"], problem["dq"], problem["model"],
                    problem["truth"], ReconstructionConfig(epochs=1), checkpoint_dir=tmp_path, resume=True)


def test_rocking_offsets_are_refined(problem):
    """Data measured at angle 5 shifted by +0.4 rocking steps: the refined offset finds it."""
    dq = problem["dq"].copy()
    true_dq = dq.copy()
    true_dq[5] += 0.4 * (dq[6] - dq[4]) / 2
    with torch.no_grad():
        data = problem["model"](torch.as_tensor(problem["truth"]), torch.as_tensor(true_dq)).numpy()
    cfg = ReconstructionConfig(epochs=60, dtype="complex128", optimizer=OptimizerConfig(
        lr=0.02, refine_offsets=True, lr_offset_factor=2.0))
    res = reconstruct(data, problem["valid"], dq, problem["model"], problem["truth"], cfg)
    # starting from the true object, only the offset explains the misfit; 0.1 step tolerance
    # covers the small object changes Adam makes meanwhile
    assert res.offsets[5] == pytest.approx(0.4, abs=0.1)
    assert np.abs(np.delete(res.offsets, 5)).max() < 0.1


def test_result_change_is_the_rms_phase_change_without_global_phase():
    rng = np.random.default_rng(1)
    S = torch.as_tensor(np.exp(1j * rng.uniform(-3, 3, (6, 7, 8))))
    dphi = 0.01 * torch.as_tensor(rng.standard_normal((6, 7, 8)))
    moved = S * torch.exp(1j * (dphi - dphi.mean() + 2.0))  # + a global phase the data do not fix
    assert result_change(moved, S) == pytest.approx(float(dphi.std()), rel=0.02)
    assert result_change(S * np.exp(0.7j), S) < 1e-12


def _history(losses: np.ndarray, changes: np.ndarray) -> History:
    return History([EpochRecord(e + 1, float(v), 0.1, 0.0, 1, 0, change=float(c))
                    for e, (v, c) in enumerate(zip(losses, changes))])


def test_stopping_rule_on_synthetic_histories():
    """Noise-free data: the loss falls by 3 %/epoch for ever (never 'levelled off') while the result
    change decays 1.5× per window — the run stops at the first window end with change <= 1e-3;
    a still-moving result (change 5e-3 per window) with a noisy plateau of 1 % does not stop on
    the result, and only after min_epochs on the loss."""
    stop = StoppingConfig(tol=1e-4, window=10, min_epochs=30, change_tol=1e-3)
    epochs = np.arange(1, 201)
    window_end = epochs % 10 == 0
    falling = 0.3 * 0.97 ** epochs
    decaying = np.where(window_end, 0.05 / 1.5 ** (epochs / 10), np.nan)  # 1e-3 passed at epoch 100
    first = next(e for e in epochs if converged(_history(falling[:e], decaying[:e]), stop))
    assert first == 100
    moving = np.where(window_end, 5e-3, np.nan)
    assert not any(converged(_history(falling[:e], moving[:e]), stop) for e in epochs)
    early = np.where(window_end, 1e-4, np.nan)  # converged result, but not before min_epochs
    assert next(e for e in epochs if converged(_history(falling[:e], early[:e]), stop)) == 30
    off = StoppingConfig(tol=1e-4, window=10, min_epochs=30, change_tol=0.0)
    assert not any(converged(_history(falling[:e], early[:e]), off) for e in epochs)
    rng = np.random.default_rng(0)
    noisy_plateau = 0.3 * (1 + 0.01 * rng.standard_normal(200))
    loose = StoppingConfig(tol=2e-2, window=10, min_epochs=30, change_tol=1e-3)
    assert next(e for e in epochs if converged(_history(noisy_plateau[:e], moving[:e]), loose)) >= 30


def test_stopping_config_rejects_negative_change_tol():
    with pytest.raises(ValueError, match="change_tol"):
        StoppingConfig(change_tol=-1e-3)


def test_stops_when_the_plateau_scheduler_is_spent(problem):
    """With the result test off, a run stops once the scheduler has reached min_lr and then found
    another plateau (patience spent): lowering the lr further is what it would do next, and cannot."""
    oc = OptimizerConfig(lr=0.15, lr_amplitude_factor=0.3, plateau_patience=2, min_lr=0.15 / 8)
    stop = StoppingConfig(tol=1e-12, change_tol=0.0, min_epochs=10)
    cfg = ReconstructionConfig(epochs=300, optimizer=oc, stopping=stop)
    res = reconstruct(problem["intensity"], problem["valid"], problem["dq"], problem["model"],
                      perturbed_init(problem["truth"]), cfg)
    lrs = [r.lr for r in res.history.records]
    assert res.stopped_reason == "converged" and res.epochs < 300
    assert lrs[-1] == pytest.approx(0.15 / 8) and lrs[-4] == pytest.approx(0.15 / 8)  # ≥ patience + 1 epochs there
    again = reconstruct(problem["intensity"], problem["valid"], problem["dq"], problem["model"],
                        perturbed_init(problem["truth"]),
                        cfg.replace(stopping=StoppingConfig(tol=1e-12, change_tol=0.0, min_epochs=10,
                                                            at_min_lr=False), epochs=res.epochs + 5))
    assert again.stopped_reason == "max_epochs"


def test_shrink_wrap_relative_to_the_median_ignores_an_overshooting_voxel(problem):
    """One voxel whose s overshoots 5× sets the blurred maximum: 0.5 × that maximum removes most of
    the crystal, 0.5 × the median s inside the support trims only the loose shell (a support one
    voxel too large, as a start thresholded from a kinematic result can be)."""
    from scipy.ndimage import binary_dilation

    truth = problem["truth"]
    true_sup = np.abs(truth) > 0
    loose = binary_dilation(true_sup)
    amp = 0.1 + 0.9 * true_sup
    amp[tuple(np.argwhere(true_sup)[len(np.argwhere(true_sup)) // 2])] = 5.0
    init = np.where(loose, amp * np.exp(1j * np.angle(truth)), 0)
    kept = {}
    for ref in ("max", "median"):
        sw = ShrinkWrapConfig(every=1, start=1, threshold=0.5, sigma_vox=0.5, reference=ref, init_threshold=0.01)
        cfg = ReconstructionConfig(epochs=1, shrinkwrap=sw, optimizer=OptimizerConfig(lr=1e-4))
        res = reconstruct(problem["intensity"], problem["valid"], problem["dq"], problem["model"], init, cfg)
        kept[ref] = ((res.support & true_sup).sum() / true_sup.sum(), (res.support & ~true_sup).sum())
    assert kept["max"][0] < 0.5  # cut into the crystal
    assert kept["median"][0] >= 0.95 and kept["median"][1] < 0.5 * (loose & ~true_sup).sum()
