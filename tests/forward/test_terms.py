"""Measurement terms (dynbcdi.forward.terms / measurement): each recovers a known value from a
simulated scan through dynbcdi.reconstruct, and the composition is the documented equation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dynbcdi.forward.kinematic import KinematicModel
from dynbcdi.forward.measurement import MeasurementModel, MeasurementTerms
from dynbcdi.forward.terms import CoherenceBlur, FrameScale, RockingOffset, TermOptions
from dynbcdi.reconstruct import LossConfig, OptimizerConfig, ReconstructionConfig, TermConfig, reconstruct

N = 16            # grid (N, N, N) and number of rocking angles
SPACING = 10e-9   # m
STEP_RAD = 1e-4   # nominal rocking step for reporting offsets in rad


def crystal() -> np.ndarray:
    """(N, N, N) complex: a truncated octahedron with a smooth phase (not separable)."""
    idx = np.arange(N) - N // 2 + 0.5
    z, y, x = np.meshgrid(idx, idx, idx, indexing="ij")
    r = N / 4
    support = (np.abs(x) < r) & (np.abs(y) < r) & (np.abs(z) < r) & (np.abs(x + y + z) < 1.6 * r)
    return np.where(support, np.exp(1j * (0.6 * np.sin(2 * np.pi * (x + 0.5 * y) / N) + 0.02 * x * z)), 0)


def physics() -> KinematicModel:
    return KinematicModel((SPACING,) * 3, 1.4e-10, (0.5, 0.0, math.sqrt(0.75)), (0.0, 0.0, 1.0),
                          -1e-5 + 1e-6j, 5e-6 + 1e-6j, 5e-6 + 1e-6j, 1.0)


def rocking_dq() -> np.ndarray:
    """(N, 3) rad/m: q_z at the Nyquist step over the grid, a small x tilt like a rocking axis."""
    t = 2 * np.pi * (np.arange(N) - N // 2) / (N * SPACING)
    return np.stack([0.2 * t, np.zeros_like(t), t], axis=-1)


def simulate(terms: MeasurementTerms, set_values, photons: float = 2e6, seed: int = 0,
             reference: float = 1.0) -> np.ndarray:
    """Poisson data (N, N, N) photons of the truth through a MeasurementModel with given term values."""
    dq = torch.as_tensor(rocking_dq())
    model = MeasurementModel(physics(), dq, terms, STEP_RAD, reference_photons=reference)
    S = torch.as_tensor(crystal(), dtype=torch.complex128)
    with torch.no_grad():
        D = model.unscaled(S, torch.arange(N))
        model.scale.log_scale.fill_(math.log(photons / float(D.sum())))
        set_values(model)
        expected = model(S, torch.arange(N))
    return torch.poisson(expected, generator=torch.Generator().manual_seed(seed)).numpy()


def fit(data: np.ndarray, epochs: int = 60, lr: float = 0.01, kind: str = "amplitude", patience: int = 5,
        scale_factor: float = 0.1, **terms: TermConfig):
    """reconstruct from the true crystal with a small crystal learning rate ``lr``: only the term
    explains the misfit (the crystal changes little meanwhile)."""
    opt = OptimizerConfig(lr=lr, plateau_patience=patience, lr_scale_factor=scale_factor)
    cfg = ReconstructionConfig(epochs=epochs, dtype="complex128", optimizer=opt, loss=LossConfig(kind=kind))
    cfg = cfg.with_terms(**terms)
    return reconstruct(data, np.ones(data.shape[1:], bool), rocking_dq(), physics(), crystal(), cfg,
                       rocking_step_rad=STEP_RAD)


def test_global_rocking_offset_is_recovered():
    """In the kinematic model a global offset equals a linear phase ramp on S (the crystal could
    absorb it; only the dynamical model fixes the absolute angle), so the crystal is held nearly fixed."""
    def shift(model):
        model.rocking.global_steps.fill_(0.3)
    data = simulate(MeasurementTerms(rocking=TermOptions(refine=True)), shift)
    res = fit(data, lr=1e-4, rocking=TermConfig(refine=True, lr_factor=500.0))
    assert res.terms["rocking_offset_steps"] == pytest.approx(0.3, abs=0.03)
    assert res.terms["rocking_offset_rad"] == pytest.approx(0.3 * STEP_RAD, abs=0.03 * STEP_RAD)


def test_frame_scales_are_recovered():
    true = np.exp(np.random.default_rng(1).normal(0, 0.08, N))
    true /= np.exp(np.log(true).mean())  # zero-mean logarithms: the global scale takes the rest

    def scales(model):
        model.scale.log_frame.copy_(torch.as_tensor(np.log(true)))
    data = simulate(MeasurementTerms(frame_scale=TermOptions(refine=True)), scales)
    res = fit(data, frame_scale=TermConfig(refine=True, lr_factor=3.0))
    got = res.terms["frame_scales"]
    # weak edge frames hold few photons: 3 % on the 8 central frames, 10 % everywhere
    np.testing.assert_allclose(got[4:12], true[4:12], rtol=0.03)
    np.testing.assert_allclose(got, true, rtol=0.1)


def test_background_is_recovered():
    """With the Poisson likelihood and the crystal held nearly fixed. The amplitude loss is biased
    at low counts (its minimiser is (E√I)², not E I: 2.7 for 3 photons here), and a free crystal
    absorbs part of a flat background into high-frequency amplitude (2.4 after 60 epochs)."""
    def background(model):
        model.background.photons.fill_(3.0)
    data = simulate(MeasurementTerms(), background)
    res = fit(data, lr=1e-4, kind="poisson", background=TermConfig(refine=True, lr_factor=2000.0))
    assert res.terms["background"] == pytest.approx(3.0, rel=0.05)


def test_blur_width_is_recovered():
    def blur(model):
        model.blur.var_px2.fill_(0.8**2)
    data = simulate(MeasurementTerms(blur=TermOptions(refine=True)), blur, photons=5e6)
    res = fit(data, blur=TermConfig(refine=True, lr_factor=10.0, init=0.3))
    np.testing.assert_allclose(res.terms["blur_sigma_px"], [0.8, 0.8], atol=0.08)


def test_measurement_equation_and_term_properties():
    """D = g_j · blur(|F Eh(Δq + δ ∂Δq)|²) + b, composed by hand; blur keeps the total; frame scales
    are re-centred into the global scale; offsets act linearly."""
    dq = torch.as_tensor(rocking_dq())
    model = MeasurementModel(physics(), dq, MeasurementTerms(frame_scale=TermOptions(refine=True),
                                                             blur=TermOptions(refine=True)), STEP_RAD)
    S = torch.as_tensor(crystal(), dtype=torch.complex128)
    idx = torch.tensor([3, 8])
    with torch.no_grad():
        model.rocking.global_steps.fill_(0.25)
        model.scale.log_frame.copy_(torch.linspace(-0.1, 0.2, N, dtype=torch.float64))
        model.background.photons.fill_(0.5)
        model.blur.var_px2.fill_(0.5)
        got = model(S, idx)
        shifted = dq[idx] + 0.25 * torch.gradient(dq, dim=0)[0][idx]
        raw = physics()(S, shifted)
        blurred = model.blur(raw)
        expected = torch.exp(model.scale.log_frame[idx])[:, None, None] * blurred + 0.5
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(blurred.sum(dim=(-2, -1)), raw.sum(dim=(-2, -1)))
    model.project()
    assert float(model.scale.log_frame.detach().mean()) == pytest.approx(0.0, abs=1e-12)
    assert float(model.scale.log_scale.detach()) == pytest.approx(0.05, abs=1e-12)


def test_blur_gradient_is_alive_at_zero_width():
    """σ² parametrisation: a zero-width blur still gets a gradient (∂K/∂σ = 0 at σ = 0)."""
    blur = CoherenceBlur(torch.float64, TermOptions(refine=True), init_sigma_px=0.0)
    D = torch.zeros(1, 8, 8, dtype=torch.float64)
    D[0, 4, 4] = 1.0
    (blur(D)[0, 4, 4]).backward()
    assert float(blur.var_px2.grad.abs().sum()) > 0


def test_terms_reject_bad_options():
    with pytest.raises(ValueError, match="lr_factor"):
        TermOptions(lr_factor=0.0)
    with pytest.raises(ValueError, match="max_rel"):
        FrameScale(4, torch.float64, max_rel=0.0)
    with pytest.raises(ValueError, match="init_sigma_px"):
        CoherenceBlur(torch.float64, init_sigma_px=-1.0)
    with pytest.raises(ValueError, match="dq"):
        MeasurementModel(physics(), torch.zeros(4, 2))
    assert RockingOffset(torch.zeros(4, 3)).forward(torch.ones(4, 3), torch.tensor([1])).shape == (1, 3)


def test_dead_time_is_recovered():
    """A ~10 % count loss at the brightest pixel (non-paralysable dead time), crystal held nearly fixed."""
    def deadtime(model):
        model.deadtime.loss_at_ref.fill_(0.05)
    data = simulate(MeasurementTerms(deadtime=TermOptions(refine=True)), deadtime, photons=2e6, reference=1e5)
    # reconstruct takes the brightest data pixel as the reference: a scales with it (a·n/I_ref is the model)
    # the global scale must follow (the linear start estimate is 8 % high): its rate is raised too
    res = fit(data, lr=1e-5, patience=100, scale_factor=300.0, deadtime=TermConfig(refine=True, lr_factor=1000.0))
    brightest = float(data.max())
    expected = 0.05 * brightest / 1e5
    assert res.terms["deadtime_reference_photons"] == pytest.approx(brightest)
    assert res.terms["deadtime_loss_at_ref"] == pytest.approx(expected, rel=0.1)


def test_offset_gradient_through_the_tte_model():
    """The TTE adjoint returns no Δq gradient; the wrapper's central difference does, and it agrees
    with a finite difference of the whole measurement model (global and per-frame offsets)."""
    from dynbcdi.forward.measurement import has_dq_gradient
    from dynbcdi.forward.tte import TTEModel

    tte = TTEModel((SPACING,) * 3, 1.4e-10, (0.5, 0.0, math.sqrt(0.75)), (0.0, 0.0, 1.0),
                   -1e-5 + 1e-6j, 5e-5 + 1e-6j, 5e-5 + 1e-6j, 1.0)
    assert not has_dq_gradient(tte) and has_dq_gradient(physics())
    on = TermOptions(refine=True)
    model = MeasurementModel(tte, torch.as_tensor(rocking_dq()), MeasurementTerms(rocking=on, rocking_per_frame=on))
    model.param_groups(0.1)
    S = torch.as_tensor(crystal(), dtype=torch.complex128).requires_grad_(True)
    idx = torch.tensor([6, 8, 9])
    weights = torch.rand(3, N, N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (model(S, idx) * weights).sum().backward()
    with torch.no_grad():
        def loss_at(delta: float) -> float:
            model.rocking.global_steps.fill_(delta)
            return float((model(S, idx) * weights).sum())
        fd = (loss_at(1e-3) - loss_at(-1e-3)) / 2e-3
        model.rocking.global_steps.fill_(0.0)
    assert float(model.rocking.global_steps.grad) == pytest.approx(fd, rel=2e-3)
    assert float(model.rocking.frame_steps.grad[idx].sum()) == pytest.approx(fd, rel=2e-3)
    assert not model.rocking.frame_steps.grad[[0, 1, 2]].any()


def test_rocking_offsets_global_and_per_frame_are_not_degenerate():
    """Refined together, the per-frame offsets keep zero mean and the global one takes their mean,
    so the effective offsets are unchanged by the projection."""
    dq = torch.linspace(-1.0, 1.0, 5)[:, None] * torch.tensor([0.0, 0.0, 1e6], dtype=torch.float64)
    term = RockingOffset(dq, options=TermOptions(refine=True), per_frame=True)
    with torch.no_grad():
        term.frame_steps.copy_(torch.tensor([0.3, 0.1, 0.2, 0.4, 0.5], dtype=torch.float64))
    idx = torch.arange(5)
    before = term.offsets_steps(idx).detach().clone()
    term.project()
    assert float(term.frame_steps.detach().mean()) == pytest.approx(0.0, abs=1e-15)
    assert float(term.global_steps.detach()) == pytest.approx(0.3)
    torch.testing.assert_close(term.offsets_steps(idx).detach(), before)
