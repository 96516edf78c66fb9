"""Displacement, unwrapping, phase-ramp removal and strain on analytic fields."""

import numpy as np
import pytest

from dynbcdi.analysis import displacement, remove_phase_ramp, strain, strain_analysis, unwrap_phase

SHAPE = (28, 32, 36)  # (Z, Y, X), deliberately non-cubic
SPACING = (3e-9, 4e-9, 5e-9)  # (dz, dy, dx) m, deliberately anisotropic


def _coords():
    z, y, x = np.meshgrid(*[(np.arange(n) - n // 2) * d for n, d in zip(SHAPE, SPACING)], indexing="ij")
    return x, y, z


def _ellipsoid(frac=0.8):
    x, y, z = _coords()
    semi = [frac * n // 2 * d for n, d in zip(SHAPE[::-1], SPACING[::-1])]  # (x, y, z)
    return (x / semi[0]) ** 2 + (y / semi[1]) ** 2 + (z / semi[2]) ** 2 < 1


def test_displacement_sign_and_units():
    h_norm = 2 * np.pi / 2.035e-10
    u = displacement(np.full((2, 2, 2), 1.0), h_norm)
    # φ = −h·u: a positive phase is a displacement against ĥ.
    np.testing.assert_allclose(u, -1.0 / h_norm)
    with pytest.raises(ValueError, match="h_norm"):
        displacement(np.zeros((2, 2, 2)), -1.0)


def test_strain_of_linear_field_is_exact():
    x, y, z = _coords()
    h = np.array([0.6, 0.0, 0.8])  # (x, y, z), oblique to the grid
    eps0 = 3e-4
    u = eps0 * (h[0] * x + h[1] * y + h[2] * z)
    sup = _ellipsoid()
    eps = strain(u, SPACING, h, sup)
    inside = np.isfinite(eps)
    assert inside.sum() > 0.5 * sup.sum()
    # Central differences are exact for a linear field: only float rounding remains.
    np.testing.assert_allclose(eps[inside], eps0, rtol=1e-9)


def test_strain_of_sinusoidal_field_within_one_percent():
    x, y, z = _coords()
    h = np.array([1.0, 2.0, 2.0]) / 3.0
    # 32 voxels per period along each axis: central-difference error (kd)^2/6 ≈ 0.64 % < 1 %.
    k = np.array([2 * np.pi / (32 * SPACING[2]), 2 * np.pi / (32 * SPACING[1]), 2 * np.pi / (32 * SPACING[0])])
    amp = 2e-11
    arg = k[0] * x + k[1] * y + k[2] * z
    u = amp * np.sin(arg)
    expected = amp * (h @ k) * np.cos(arg)
    sup = _ellipsoid()
    eps = strain(u, SPACING, h, sup)
    inside = np.isfinite(eps)
    err = np.max(np.abs(eps[inside] - expected[inside])) / np.max(np.abs(expected[inside]))
    assert err < 0.01, err


def test_strain_is_nan_where_stencil_leaves_support():
    sup = _ellipsoid()
    eps = strain(np.zeros(SHAPE), SPACING, (0, 0, 1), sup)
    assert np.all(np.isnan(eps[~sup]))
    # A surface voxel (in the support, one neighbour outside) has no central difference.
    zc, yc = SHAPE[0] // 2, SHAPE[1] // 2
    xs = np.flatnonzero(sup[zc, yc])
    assert np.isnan(eps[zc, yc, xs[0]]) and np.isfinite(eps[zc, yc, xs[0] + 1])
    with pytest.raises(ValueError, match="spacing_m"):
        strain(np.zeros(SHAPE), (1e-9, -1e-9, 1e-9), (0, 0, 1), sup)
    with pytest.raises(ValueError, match="support shape"):
        strain(np.zeros(SHAPE), SPACING, (0, 0, 1), sup[:-1])


def test_unwrap_and_ramp_removal_recover_known_ramp():
    x, y, z = _coords()
    grad = np.array([2.0e8, -1.5e8, 3.0e8])  # rad/m, (x, y, z): several 2π wraps across the crystal
    offset = 0.4
    true_phase = grad[0] * x + grad[1] * y + grad[2] * z + offset
    sup = _ellipsoid()
    assert np.ptp(true_phase[sup]) > 6 * np.pi
    unwrapped = unwrap_phase(np.angle(np.exp(1j * true_phase)), sup)
    flat, ramp = remove_phase_ramp(unwrapped, sup, SPACING)
    # Pure plane + exact unwrapping: only rounding error remains.
    np.testing.assert_allclose(ramp.gradient, grad, rtol=1e-8)
    # Convention: gradient in rad/m as (x, y, z) components, plane measured from index N//2 (the
    # offset is the plane's value there, up to the 2π the unwrapping may add).
    assert np.angle(np.exp(1j * (ramp.offset_rad - offset))) == pytest.approx(0.0, abs=1e-8)
    np.testing.assert_allclose(ramp.evaluate(SHAPE, SPACING)[sup] - ramp.offset_rad, true_phase[sup] - offset, atol=1e-6)
    assert np.max(np.abs(flat[sup])) < 1e-6
    assert np.all(np.isnan(unwrapped[~sup]))


def test_complex_ramp_removal_and_strain_analysis():
    x, y, z = _coords()
    grad = np.array([1.0e8, 0.5e8, -2.0e8])
    sup = _ellipsoid()
    h_norm = 2 * np.pi / 2.0e-10
    bump = 0.5 * np.exp(-(x**2 + y**2 + z**2) / (20e-9) ** 2)
    obj = np.where(sup, 1.0, 0.0) * np.exp(1j * (grad[0] * x + grad[1] * y + grad[2] * z + bump))
    res = strain_analysis(obj.astype(np.complex64), sup, h_norm, SPACING, (0, 0, 1))
    # The Gaussian bump is symmetric about the origin so it adds no linear term (up to the
    # ellipsoid's discretisation): 1 % of the ramp.
    np.testing.assert_allclose(res.ramp.gradient, grad, rtol=0.01)
    assert res.strain.shape == SHAPE and np.isfinite(res.strain).sum() > 0
    np.testing.assert_allclose(res.displacement_m[sup], -res.phase[sup] / h_norm)
