"""Numerical contracts of the TTE solver: convergence order, gradients, wrap-around, API."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dynbcdi.forward.base import far_field_intensity
from dynbcdi.forward.kinematic import KinematicModel, RefractionKinematicModel
from dynbcdi.forward.tte import TTEModel, exit_waves, min_transverse_width

WAVELENGTH = 12398.42e-10 / 8000.0
THETA_B = math.asin(WAVELENGTH / 4.07e-10)
CHI0 = -2.96e-5 + 2.97e-6j
CHIH = -1.9e-5 + 2.8e-6j
K0_DIR = (-math.sin(2 * THETA_B), 0.0, math.cos(2 * THETA_B))
KH_DIR = (0.0, 0.0, 1.0)


def smooth_crystal(Z=6, Y=4, X=32, dtype=torch.complex128):
    """Gaussian-edged, cos²-modulated, strained crystal: smooth in x, y; its voxels are constant in z."""
    z, y, x = torch.meshgrid(torch.arange(Z, dtype=torch.float64), torch.arange(Y, dtype=torch.float64),
                             torch.arange(X, dtype=torch.float64), indexing="ij")
    s = torch.exp(-((x - X / 2) ** 2) / (2 * 3.0**2)) * (0.6 + 0.4 * torch.cos(math.pi * (z - Z / 2) / Z) ** 2)
    phi = 0.3 * torch.sin(2 * math.pi * x / X) + 0.2 * torch.cos(2 * math.pi * y / Y) * z / Z
    return (s * torch.exp(1j * phi)).to(dtype)


def test_convergence_order():
    """Measured order under sub-step refinement (slope of log error vs log h): 2 ± 0.3 for Strang,
    4 ± 0.3 for RK4 (issue). χ × 10 and Δq_z dz up to 1 put the errors (1e-3..1e-8) well above
    float64 rounding; reference: RK4 with 64 sub-steps. The crystal is smooth in x, y (its Gaussian
    tails fill the box, so the wrap check is off: the tails are < 1e-6 of the peak there)."""
    d = 50e-9
    S = smooth_crystal()
    dq = torch.tensor([[1e6, 0.0, -2e7], [0.0, 0.0, 0.0], [-2e6, 1e6, 1.5e7]], dtype=torch.float64)
    args = (S, (d, d, d), WAVELENGTH, K0_DIR, KH_DIR, 10 * CHI0, 10 * CHIH, 10 * CHIH, 1.0, dq)
    ref = exit_waves(*args, integrator="rk4", substeps=64, check_wrap=False)
    for integrator, subs, order in (("strang", (2, 4, 8, 16), 2.0), ("rk4", (1, 2, 4, 8), 4.0)):
        errs = [((exit_waves(*args, integrator=integrator, substeps=n, check_wrap=False) - ref).norm()
                 / ref.norm()).item() for n in subs]
        slope = -np.polyfit(np.log(subs), np.log(errs), 1)[0]
        assert abs(slope - order) < 0.3, (integrator, errs, slope)
        assert errs[-1] < errs[0] * 0.5 ** (order * 3 - 1)


@pytest.mark.parametrize("integrator,segments", [("strang", 0), ("strang", 2), ("rk4", 2)])
def test_gradcheck_s_and_phi(integrator, segments):
    """torch.autograd.gradcheck (float64) of the patterns w.r.t. s and φ: Strang's hand-written
    adjoint (steps stored, or recomputed per segment) and RK4 through autograd with checkpoints.
    χ × 300 makes the pattern depend non-linearly on S."""
    torch.manual_seed(0)
    Z, Y, X = 3, 2, 4
    s = (0.5 + torch.rand(Z, Y, X, dtype=torch.float64)).requires_grad_()
    phi = torch.randn(Z, Y, X, dtype=torch.float64).requires_grad_()
    dq = torch.tensor([[1e6, 0.0, 2e7], [0.0, -1e6, -1e7]], dtype=torch.float64)
    d = 30e-9

    def f(s_, phi_):
        S = s_ * torch.exp(1j * phi_)
        Eh = exit_waves(S, (d, d, d), WAVELENGTH, K0_DIR, KH_DIR, 300 * CHI0, 300 * CHIH, 300 * CHIH, 1.0, dq,
                        integrator=integrator, checkpoint_segments=segments)
        return far_field_intensity(Eh)

    assert f(s, phi).abs().max() > 1e-2  # non-trivial signal
    assert torch.autograd.gradcheck(f, (s, phi), eps=1e-6, atol=1e-8, rtol=1e-5)


def test_checkpointing_and_chunking_do_not_change_results():
    """Same values and gradients (to rounding, 1e-12) with/without checkpoints and angle chunks."""
    S0 = smooth_crystal(Z=5, Y=3, X=32)
    dq = torch.tensor([[0, 0, 1e7], [1e6, 0, -1e7], [0, 2e6, 0]], dtype=torch.float64)
    grads, vals = [], []
    for opts in ({"checkpoint_segments": 0}, {"checkpoint_segments": 3}, {"checkpoint_segments": 2, "angle_chunk": 2}):
        S = S0.clone().requires_grad_()
        I = far_field_intensity(exit_waves(S, (40e-9,) * 3, WAVELENGTH, K0_DIR, KH_DIR, 30 * CHI0, 30 * CHIH,
                                           30 * CHIH, 1.0, dq, check_wrap=False, **opts))
        (I * torch.linspace(0, 1, I.numel(), dtype=I.dtype).reshape(I.shape)).sum().backward()
        vals.append(I.detach())
        grads.append(S.grad)
    for v, g in zip(vals[1:], grads[1:]):
        assert torch.allclose(v, vals[0], rtol=1e-12, atol=0)
        assert torch.allclose(g, grads[0], rtol=1e-10, atol=1e-12 * grads[0].abs().max().item())


def test_checkpoint_rule():
    """Auto rule: no checkpoints while activations fit ACTIVATION_BUDGET_BYTES, ⌈√steps⌉ beyond."""
    from dynbcdi.forward.tte import ACTIVATION_BUDGET_BYTES, _segments

    assert _segments(None, 64, 1024, "strang") == 0
    assert _segments(None, 100, ACTIVATION_BUDGET_BYTES, "strang") == 10
    assert _segments(3, 100, 1, "rk4") == 3
    with pytest.raises(ValueError, match="checkpoint_segments"):
        _segments(-1, 100, 1, "rk4")


def test_float32_matches_float64():
    """complex64 run agrees with complex128 to 1e-5 relative (float32 rounding over ~10 steps)."""
    S = smooth_crystal(Z=8, Y=4, X=32)
    dq = torch.tensor([[0, 0, 1e7], [1e6, 0, -1e7]], dtype=torch.float64)
    args = ((30e-9,) * 3, WAVELENGTH, K0_DIR, KH_DIR, 30 * CHI0, 30 * CHIH, 30 * CHIH, 1.0, dq)
    for integrator in ("strang", "rk4"):
        e64 = exit_waves(S, *args, integrator=integrator, check_wrap=False)
        e32 = exit_waves(S.to(torch.complex64), *args, integrator=integrator, check_wrap=False)
        assert e32.dtype == torch.complex64
        assert ((e32.to(torch.complex128) - e64).norm() / e64.norm()).item() < 1e-5


def test_wraparound_is_refused_with_minimum_width():
    """Box crystal 4 voxels wide and 8 deep, |t0| = tan 2θB ≈ 0.98: needs 4 + ⌈0.98·8⌉ = 12 columns."""
    S = torch.zeros(10, 1, 10, dtype=torch.complex128)
    S[1:9, :, 3:7] = 1
    d = 20e-9
    assert min_transverse_width(S.abs() > 0, (d, d, d), K0_DIR, KH_DIR) == (None, 12)
    dq = torch.zeros(1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"minimum \(ny, nx\) = \(1, 12\)"):
        exit_waves(S, (d, d, d), WAVELENGTH, K0_DIR, KH_DIR, CHI0, CHIH, CHIH, 1.0, dq)
    S12 = torch.zeros(10, 1, 12, dtype=torch.complex128)
    S12[1:9, :, 3:7] = 1
    assert exit_waves(S12, (d, d, d), WAVELENGTH, K0_DIR, KH_DIR, CHI0, CHIH, CHIH, 1.0, dq).shape == (1, 1, 12)
    S_wrapped = torch.roll(S12, 7, dims=2)  # the crystal straddles the periodic boundary: same width
    assert min_transverse_width(S_wrapped.abs() > 0, (d, d, d), K0_DIR, KH_DIR) == (None, 12)


@pytest.mark.parametrize("bad", [
    dict(spacing=(1e-8, -1e-8, 1e-8)), dict(wavelength=0.0), dict(k0_dir=(1.0, 0.0, -0.1)),
    dict(integrator="euler"), dict(substeps=0), dict(dq=np.zeros((3, 2))), dict(S=np.ones((2, 2, 2))),
])
def test_bad_input_raises_value_error(bad):
    kw = dict(S=torch.ones(2, 1, 2, dtype=torch.complex128), spacing=(1e-8,) * 3, wavelength=WAVELENGTH,
              k0_dir=K0_DIR, kh_dir=KH_DIR, chi0=CHI0, chih=CHIH, chihbar=CHIH, polarization=1.0,
              dq=np.zeros((1, 3)))
    kw.update(bad)
    with pytest.raises(ValueError):
        exit_waves(**kw)


def test_models_share_interface_and_from_geometry():
    """from_geometry uses only the CONVENTIONS.md attribute names; the three models return
    (B, Y, X) patterns; a non-Bragg orientation (kh⊥ ≠ 0) runs and matches the kinematic limit."""
    geometry = SimpleNamespace(beam_directions_grid=lambda frame=None: (np.array(K0_DIR), np.array(KH_DIR)))
    reflection = SimpleNamespace(wavelength_m=WAVELENGTH, chi0=CHI0, chih=CHIH, chihbar=CHIH,
                                 polarization=lambda kind: {"sigma": 1.0, "pi": math.cos(2 * THETA_B)}[kind])
    S = smooth_crystal(Z=4, Y=4, X=32, dtype=torch.complex64)
    dq = torch.zeros(3, 3)
    for cls in (TTEModel, KinematicModel, RefractionKinematicModel):
        m = cls.from_geometry(geometry, reflection, (20e-9,) * 3, polarization="pi", check_wrap=False)
        out = m(S, dq)
        assert out.shape == (3, 4, 32) and out.dtype == torch.float32 and torch.all(out >= 0)
    assert TTEModel.from_geometry(geometry, reflection, (20e-9,) * 3, "pi").polarization == pytest.approx(
        math.cos(2 * THETA_B))
    tilt = (math.sin(0.2), 0.0, math.cos(0.2))  # rotated grid: both waves drift
    k0 = (-math.sin(2 * THETA_B - 0.2), 0.0, math.cos(2 * THETA_B - 0.2))
    S64 = smooth_crystal(Z=4, Y=4, X=32)
    dq = torch.tensor([[0, 0, 1e6], [1e6, 0, -5e6]], dtype=torch.float64)
    args = ((20e-9,) * 3, WAVELENGTH, k0, tilt, 0.0, 1e-4 * CHIH, 1e-4 * CHIH, 1.0)
    It = TTEModel(*args, check_wrap=False)(S64, dq)
    Ik = KinematicModel(*args)(S64, dq)
    # kh⊥ ≠ 0: the kinematic sum ignores the lateral drift of Eh (tan 0.2 · 4 voxels ≈ 0.8 voxel),
    # a small real difference (measured 6e-3): tolerance 2e-2
    assert ((It - Ik).norm() / Ik.norm()).item() < 2e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    """Same code path on CUDA: agrees with CPU to 1e-10 (float64)."""
    S = smooth_crystal(Z=6, Y=4, X=32)
    dq = torch.tensor([[0, 0, 1e7], [1e6, 0, -1e7]], dtype=torch.float64)
    args = ((30e-9,) * 3, WAVELENGTH, K0_DIR, KH_DIR, 30 * CHI0, 30 * CHIH, 30 * CHIH, 1.0)
    for integrator in ("strang", "rk4"):
        cpu = exit_waves(S, *args, dq, integrator=integrator, check_wrap=False)
        gpu = exit_waves(S.cuda(), *args, dq.cuda(), integrator=integrator, check_wrap=False)
        assert torch.allclose(gpu.cpu(), cpu, rtol=0, atol=1e-10 * cpu.abs().max().item())


@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_coupling_exponential_matches_matrix_exponential(scale):
    """The real-amplitude closed form of exp(h c) (integrators.coupling_exponential) against
    torch.linalg.matrix_exp of the 2×2 coupling, float64, s from 0 through the series/closed-form
    switch (|s²κ| = 0.02) to |s√κ| ≈ 6: agreement to 1e-13 relative to the largest entry (rounding
    of cosh/sinh of arguments up to ~6; series truncation < 1e-17). Gradients w.r.t. s and S: gradcheck
    on both branches and at s = 0, where A = I."""
    from dynbcdi.forward.integrators import _SERIES_LIMIT, Coupling, coupling_exponential

    a0, ah, C, h = 2.1e10, 2.3e10, 0.9, 10e-9
    chi0, chih, chihb = scale * CHI0, scale * CHIH, scale * (CHIH * 1.1 + 1e-6j)
    cp = Coupling(1j * a0 * chi0, 1j * a0 * C * chihb, 1j * ah * C * chih, 1j * ah * chi0)
    n0 = 0.5 * h * (cp.k11 - cp.k22)
    s_lim = math.sqrt(_SERIES_LIMIT / abs(n0 * n0 + h * h * cp.k12 * cp.k21))
    s = torch.cat((torch.tensor([0.0, 1e-8, s_lim * (1 - 1e-9), s_lim, s_lim * (1 + 1e-9)]),
                   torch.linspace(0, 1, 7) * min(40 * s_lim, 2.0))).to(torch.float64)
    phi = torch.linspace(-3, 3, s.numel(), dtype=torch.float64)
    S = s * torch.exp(1j * phi)
    A = torch.stack(coupling_exponential(s, S, cp, h), dim=-1).reshape(-1, 2, 2)
    c = torch.stack(cp.coefficients(S, s), dim=-1).reshape(-1, 2, 2)
    ref = torch.linalg.matrix_exp(h * c)
    assert (A - ref).abs().max() <= 1e-13 * ref.abs().max()
    assert torch.equal(A[0], torch.eye(2, dtype=A.dtype))
    for sv in (s[:2], s[2:5], s[-3:]):
        Sv = sv * torch.exp(1j * phi[: sv.numel()])
        assert torch.autograd.gradcheck(lambda a, b: torch.stack(coupling_exponential(a, b, cp, h)),
                                        (sv.clone().requires_grad_(), Sv.clone().requires_grad_()))


def test_drift_along_one_axis_uses_1d_ffts_with_the_same_result():
    """A multiplier constant along qy (drift along x only) is applied with 1-D FFTs along x; it must
    equal the fft2 route to float64 rounding (1e-13). The whole solver with k0 tilted along y
    instead of x (crystal and Δq transposed) gives the transposed exit waves (1e-12)."""
    from dynbcdi.forward.integrators import fourier_mul

    torch.manual_seed(1)
    field = torch.randn(3, 6, 10, dtype=torch.complex128)
    mult = torch.exp(1j * torch.randn(3, 1, 10, dtype=torch.float64))
    full = torch.fft.ifft2(torch.fft.fft2(field) * mult.expand(-1, 6, -1))
    assert (fourier_mul(field, mult) - full).abs().max() < 1e-13 * full.abs().max()
    assert (fourier_mul(field, mult[:, :, :1]) - field * mult[:, :, :1]).abs().max() == 0
    S = smooth_crystal(Z=5, Y=4, X=32)
    dq = torch.tensor([[1e6, 2e6, 1e7], [-2e6, 0, -1e7]], dtype=torch.float64)
    args = ((40e-9,) * 3, WAVELENGTH)
    chis = (30 * CHI0, 30 * CHIH, 30 * CHIH, 1.0)
    e_x = exit_waves(S, *args, K0_DIR, KH_DIR, *chis, dq, check_wrap=False)
    k0_y = (K0_DIR[1], K0_DIR[0], K0_DIR[2])
    e_y = exit_waves(S.transpose(1, 2), *args, k0_y, KH_DIR, *chis, dq[:, [1, 0, 2]], check_wrap=False)
    assert (e_y.transpose(1, 2) - e_x).abs().max() < 1e-12 * e_x.abs().max()


def test_rebuilt_state_gradient_in_float32():
    """Strang's adjoint keeps only U_t per step and rebuilds W_t = W_{t+1} - r21_t U_t backwards.
    In float32 over 24 steps that gradient must be as accurate as the one from exact per-step states
    (``checkpoint_segments`` = steps recomputes each W_t forwards): both within 1e-5 of float64
    (measured 1.64e-6 for both) and within 1e-6 of each other relative to the gradient norm."""
    S0 = smooth_crystal(Z=24, Y=4, X=32)
    dq = torch.tensor([[0, 0, 1e7], [1e6, 0, -1e7], [0, 2e6, 0]], dtype=torch.float64)

    def grad(dtype, segments):
        S = S0.to(dtype).clone().requires_grad_()
        I = far_field_intensity(exit_waves(S, (40e-9,) * 3, WAVELENGTH, K0_DIR, KH_DIR, 30 * CHI0, 30 * CHIH,
                                           30 * CHIH, 1.0, dq, check_wrap=False, checkpoint_segments=segments))
        (I * torch.linspace(0, 1, I.numel(), dtype=I.dtype).reshape(I.shape)).sum().backward()
        return S.grad.to(torch.complex128)

    ref = grad(torch.complex128, 0)
    rebuilt, exact = grad(torch.complex64, 0), grad(torch.complex64, 24)
    assert ((rebuilt - ref).norm() / ref.norm()).item() < 1e-5
    assert ((exact - ref).norm() / ref.norm()).item() < 1e-5
    assert ((rebuilt - exact).norm() / ref.norm()).item() < 1e-6


@pytest.mark.parametrize("scale,substeps", [(1.0, 1), (3000.0, 2)])
def test_scaled_operators_match_autograd_reference(scale, substeps):
    """The hand-written (A11, A12·D_{t-1}, A21/D_t, D_T) of the th = 0 Strang march against the same
    built by autograd from coupling_exponential + cumprod (float64, values to 1e-12 relative),
    and torch.autograd.gradcheck of its gradient w.r.t. s and S (series branch at scale 1, closed
    form for s > 0.18 at scale 3000; s = 0 voxels included)."""
    from dynbcdi.forward.integrators import Coupling, coupling_exponential, prepare_operators

    a0, ah, C, h = 2.1e10, 2.3e10, 0.9, 10e-9 / substeps
    cp = Coupling(*(scale * k for k in (1j * a0 * CHI0, 1j * a0 * C * CHIH, 1j * ah * C * CHIH, 1j * ah * CHI0)))
    torch.manual_seed(2)
    s = torch.rand(4, 2, 3, dtype=torch.float64) * 0.5
    s[1, 0, 0] = 0.0
    S = s * torch.exp(1j * torch.randn(4, 2, 3, dtype=torch.float64))
    ops = prepare_operators("strang", s, S, cp, h, substeps, True)
    a11, a12, a21, a22 = (a.repeat_interleave(substeps, dim=0) for a in coupling_exponential(s, S, cp, h))
    D = torch.cumprod(a22, dim=0)
    ref = (a11, a12 * torch.cat((torch.ones_like(D[:1]), D[:-1])), a21 / D, D[-1:])
    for o, r in zip(ops, ref):
        assert (o - r).abs().max() <= 1e-12 * r.abs().max()
    assert torch.autograd.gradcheck(lambda a, b: prepare_operators("strang", a, b, cp, h, substeps, True),
                                    (s.clone().requires_grad_(), S.clone().requires_grad_()))


@pytest.mark.parametrize("segments", [0, 2])
def test_gradcheck_through_e0(segments):
    """gradcheck (float64) of a loss on both exit fields: the Strang adjoint with a cotangent on U
    (E0) as well as on W (Eh); with and without segment recomputation."""
    torch.manual_seed(3)
    s = (0.5 + torch.rand(3, 2, 4, dtype=torch.float64)).requires_grad_()
    phi = torch.randn(3, 2, 4, dtype=torch.float64).requires_grad_()
    dq = torch.tensor([[1e6, 0.0, 2e7], [0.0, -1e6, -1e7]], dtype=torch.float64)

    def f(s_, phi_):
        Eh, E0 = exit_waves(torch.polar(s_, phi_), (30e-9,) * 3, WAVELENGTH, K0_DIR, KH_DIR, 300 * CHI0,
                            300 * CHIH, 300 * CHIH, 1.0, dq, return_e0=True, checkpoint_segments=segments)
        return far_field_intensity(Eh) + E0.abs() ** 2

    assert torch.autograd.gradcheck(f, (s, phi), eps=1e-6, atol=1e-8, rtol=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_crystal_is_refused(bad):
    """One NaN/Inf voxel used to give an empty support and all-zero patterns without an error (issue 15)."""
    S = smooth_crystal()
    S[2, 1, 5] = complex(bad, 0.0)
    dq = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="1 NaN or infinite voxel"):
        exit_waves(S, (5e-9, 5e-9, 5e-9), WAVELENGTH, K0_DIR, KH_DIR, CHI0, CHIH, CHIH, 1.0, dq, check_wrap=False)
