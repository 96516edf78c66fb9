"""Resample between rotated grids: accuracy against analytic rotations, adjointness, gradients."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dynbcdi.geometry import GridFrame
from dynbcdi.geometry.resample import GridSpec, Resample

ROT = Rotation.from_euler("ZYX", [25, 40, -15], degrees=True).as_matrix()


def gauss(pos, centre, sigma):
    return np.exp(-((pos - centre) ** 2).sum(-1) / (2 * sigma**2))


def smooth_cube(pos, half, width):
    """Axis-aligned (reference-frame) cube with tanh edges of ``width``."""
    return 0.5 * (1 - np.tanh((np.abs(pos).max(-1) - half) / width))


def resampled(field, src, dst, order):
    return Resample(src, dst, order)(torch.as_tensor(field)).numpy()


@pytest.mark.parametrize("n, sigma, tol_cubic", [(32, 2.0, 2e-3), (64, 3.0, 4e-4)])
def test_gaussian_rotation_matches_analytic(n, sigma, tol_cubic):
    src = GridSpec((n,) * 3, (1e-9,) * 3)
    dst = GridSpec((n,) * 3, (1e-9,) * 3, ROT)
    c = np.array([1.3, -0.7, 0.4]) * 1e-9
    f, truth = gauss(src.positions(), c, sigma * 1e-9), gauss(dst.positions(), c, sigma * 1e-9)
    err_cubic = np.abs(resampled(f, src, dst, 3) - truth).max()
    err_linear = np.abs(resampled(f, src, dst, 1) - truth).max()
    assert err_cubic < tol_cubic
    assert err_linear > 10 * err_cubic  # why cubic is the default


def test_smooth_cube_rotation_matches_analytic():
    src = GridSpec((32,) * 3, (1.0,) * 3)
    dst = GridSpec((32,) * 3, (1.0,) * 3, ROT)
    f, truth = smooth_cube(src.positions(), 6.4, 1.0), smooth_cube(dst.positions(), 6.4, 1.0)
    rel_rms = lambda out: np.sqrt(((out - truth) ** 2).mean() / (truth**2).mean())  # noqa: E731
    assert rel_rms(resampled(f, src, dst, 3)) < 0.025
    assert rel_rms(resampled(f, src, dst, 3)) < rel_rms(resampled(f, src, dst, 1))


def test_identity_cubic_is_exact_and_round_trip_is_accurate():
    src = GridSpec((24,) * 3, (2e-9, 1.5e-9, 1e-9))
    f = gauss(src.positions(), np.zeros(3), 4e-9) * np.exp(1j * src.positions()[..., 0] / 5e-9)
    f_t = torch.as_tensor(f)
    assert torch.allclose(Resample(src, src)(f_t), f_t, atol=1e-12)
    dst = GridSpec((24,) * 3, (1.2e-9,) * 3, ROT)
    back = Resample(dst, src)(Resample(src, dst)(f_t)).numpy()
    assert np.abs(back - f).max() < 0.02 * np.abs(f).max()


def test_channels_and_complex_equal_separate_real_calls():
    src = GridSpec((8, 9, 10), (1.0,) * 3)
    dst = GridSpec((7, 8, 9), (1.1,) * 3, ROT)
    m = Resample(src, dst)
    x = torch.randn(2, 8, 9, 10, dtype=torch.complex128)
    out = m(x)
    assert out.shape == (2, 7, 8, 9) and out.dtype == torch.complex128
    assert torch.allclose(out[1].real, m(x[1].real)) and torch.allclose(out[0].imag, m(x[0].imag))
    with pytest.raises(ValueError, match="field must be"):
        m(torch.zeros(8, 9, 11))


def test_adjoint_is_the_matrix_transpose():
    src = GridSpec((5, 6, 4), (1.0,) * 3)
    dst = GridSpec((4, 5, 6), (0.9,) * 3, ROT)
    m = Resample(src, dst)
    eye = torch.eye(src.shape[0] * src.shape[1] * src.shape[2], dtype=torch.float64)
    matrix = torch.stack([m(e.reshape(src.shape)).flatten() for e in eye], dim=1)  # (N_dst, N_src)
    y = torch.randn(dst.shape, dtype=torch.float64)
    assert torch.allclose(m.adjoint(y).flatten(), matrix.T @ y.flatten(), atol=1e-12)
    x = torch.randn(src.shape, dtype=torch.float64)
    assert torch.allclose((m(x) * y).sum(), (x * m.adjoint(y)).sum(), rtol=1e-12)


def test_gradcheck_complex_field():
    src = GridSpec((4, 5, 4), (1.0,) * 3)
    dst = GridSpec((4, 4, 5), (1.0,) * 3, ROT)
    x = torch.randn(src.shape, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(Resample(src, dst), (x,))


def test_gridspec_from_grid_frame_and_validation():
    frame = GridFrame.from_z_and_x([0.0, 0.3, 1.0], [1.0, 0.0, 0.0])
    rot = Rotation.from_euler("y", 30, degrees=True).as_matrix()
    spec = GridSpec.from_grid_frame((4, 4, 4), (1.0, 1.0, 1.0), frame, rot)
    # a grid axis in sample components, turned into the lab by the goniometer, is the lab axis
    assert np.allclose(rot @ spec.frame[2], frame.z)
    with pytest.raises(ValueError, match="proper rotation"):
        GridSpec((4, 4, 4), (1.0,) * 3, -np.eye(3))
    with pytest.raises(ValueError, match="spacing_m"):
        GridSpec((4, 4, 4), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="order"):
        Resample(spec, spec, order=2)
