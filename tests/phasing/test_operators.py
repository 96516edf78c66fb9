"""Projection operators: contracts (projection, mask handling, update formulas) on small arrays."""

import numpy as np
import pytest
import scipy.ndimage
import torch

from dynbcdi.phasing import operators as ops

SHAPE = (8, 10, 12)


def _state(seed: int = 0, masked: bool = True) -> ops.PhasingState:
    gen = torch.Generator().manual_seed(seed)
    psi = torch.randn(SHAPE, generator=gen, dtype=torch.complex128)
    intensity = torch.rand(SHAPE, generator=gen, dtype=torch.float64) * 100
    valid = torch.ones(SHAPE[1:], dtype=torch.bool)
    if masked:
        valid[2:4, 5] = False
    support = torch.zeros(SHAPE, dtype=torch.bool)
    support[:3, :4, :5] = True
    return ops.PhasingState(psi=psi, support=support, amplitude=intensity.sqrt(), valid=valid, intensity=intensity)


def test_modulus_projection_sets_measured_amplitude_and_leaves_masked_pixels():
    state = _state()
    projected, _ = ops.modulus_projection(state.psi, state)
    before = torch.fft.fftn(state.psi, dim=(-3, -2, -1))
    after = torch.fft.fftn(projected, dim=(-3, -2, -1))
    valid = state.valid.expand(SHAPE)
    torch.testing.assert_close(after.abs()[valid], state.amplitude[valid], rtol=1e-12, atol=1e-10)
    # Masked pixels float freely: their complex value is untouched by P_M.
    torch.testing.assert_close(after[~valid], before[~valid], rtol=1e-12, atol=1e-10)
    # The phase is kept where the amplitude is replaced.
    torch.testing.assert_close(torch.angle(after[valid]), torch.angle(before[valid]), rtol=0, atol=1e-9)
    again, error = ops.modulus_projection(projected, state)
    torch.testing.assert_close(again, projected, rtol=1e-12, atol=1e-10)  # P_M P_M = P_M
    assert float(error) < 1e-12


def test_amplitude_error_is_normalised():
    state = _state(masked=False)
    farfield = 2 * state.amplitude.to(torch.complex128)  # |F| = 2 A  ->  error = ‖A‖/‖A‖ = 1
    assert float(ops.amplitude_error(farfield, state)) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("name, beta", [("er", None), ("hio", 0.9), ("raar", 0.75)])
def test_update_formulas(name, beta):
    state = _state()
    psi = state.psi.clone()
    projected, _ = ops.modulus_projection(psi, state)
    inside, outside = state.support, ~state.support
    expected_out = {
        "er": torch.zeros_like(psi),
        "hio": psi - 0.9 * projected,
        "raar": 0.75 * psi + (1 - 1.5) * projected,
    }[name]
    {"er": ops.er_step, "hio": ops.hio_step, "raar": ops.raar_step}[name](state, *([beta] if beta else []))
    torch.testing.assert_close(state.psi[inside], projected[inside])
    torch.testing.assert_close(state.psi[outside], expected_out[outside])
    assert state.iteration == 1 and state.error_history().numel() == 1


def test_gaussian_blur_matches_scipy():
    volume = torch.zeros(16, 16, 16, dtype=torch.float64)
    volume[5:9, 6:12, 4:8] = 1.0
    ours = ops.gaussian_blur(volume, 1.5).numpy()
    ref = scipy.ndimage.gaussian_filter(volume.numpy(), 1.5, mode="wrap", truncate=6.0)
    # A kernel sampled in real space (scipy) and a transfer function sampled in Fourier space are
    # two discretisations of the same Gaussian; at σ = 1.5 voxel they differ by ≈7e-8 (measured).
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert ours.sum() == pytest.approx(volume.sum().item(), rel=1e-12)


def test_shrink_wrap_follows_object_and_survives_zero():
    state = _state(masked=False)
    cube = torch.zeros(SHAPE, dtype=torch.bool)
    cube[2:6, 3:7, 4:9] = True
    state.psi = cube.to(torch.complex128)
    ops.shrink_wrap(state, sigma_vox=1.0, threshold=0.2)
    dilated = torch.from_numpy(scipy.ndimage.binary_dilation(cube.numpy(), iterations=2))
    assert bool(state.support[cube].all()) and not bool(state.support[~dilated].any())
    previous = state.support.clone()
    state.psi = torch.zeros_like(state.psi)
    ops.shrink_wrap(state, sigma_vox=1.0, threshold=0.2)
    assert torch.equal(state.support, previous)


def test_half_support_keeps_one_side_across_wrap():
    support = torch.zeros(SHAPE, dtype=torch.bool)
    support[-2:, :, :] = True  # FFT order: a slab around the origin, wrapping through index 0
    support[:3, :, :] = True
    half = ops.half_support(support, axis=0)
    rows = torch.nonzero(half.any(dim=(1, 2))).flatten().tolist()
    assert rows == [0, 6, 7]  # centre at index 0.5 (circular): keep the side at and below it


def test_ml_step_decreases_poisson_nll():
    gen = torch.Generator().manual_seed(3)
    truth = torch.zeros(SHAPE, dtype=torch.complex128)
    truth[:3, :4, :5] = torch.randn(3, 4, 5, generator=gen, dtype=torch.complex128) + 2
    intensity = torch.fft.fftn(truth, dim=(-3, -2, -1)).abs() ** 2
    state = ops.PhasingState(
        psi=truth * (1 + 0.2 * torch.randn(SHAPE, generator=gen, dtype=torch.complex128)),
        support=truth.abs() > 0,
        amplitude=intensity.sqrt(),
        valid=torch.ones(SHAPE[1:], dtype=torch.bool),
        intensity=intensity,
    )
    values = []
    for _ in range(10):
        values.append(float(ops.poisson_nll(torch.fft.fftn(state.psi, dim=(-3, -2, -1)), state)))
        ops.ml_step(state)
    assert all(b <= a * (1 + 1e-9) for a, b in zip(values, values[1:]))
    assert values[-1] < 0.1 * values[0]


def test_error_history_grows_in_place_beyond_its_capacity():
    # A state built without a preallocated history (standalone use of the operators) must keep
    # every iteration's error: the buffer doubles when full and the recorded values survive.
    # Entry k is the amplitude error of the iterate *before* step k (float64: equal to 1e-12).
    generator = torch.Generator().manual_seed(0)
    shape = (8, 8, 8)
    truth = torch.zeros(shape, dtype=torch.complex128)
    truth[3:5, 3:5, 3:5] = 1.0
    amplitude = torch.fft.fftn(truth).abs()
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    state = ops.PhasingState(psi=truth + 0.3 * noise, support=truth.abs() > 0, amplitude=amplitude,
                             valid=torch.ones((), dtype=torch.bool), intensity=amplitude.square())
    expected = []
    for _ in range(70):
        expected.append(float(ops.amplitude_error(torch.fft.fftn(state.psi), state)))
        ops.er_step(state)
    history = state.error_history()
    assert history.shape == (70,) and state.errors.numel() >= 70
    assert expected[0] > 0.1
    np.testing.assert_allclose(history.numpy(), expected, rtol=1e-12)
