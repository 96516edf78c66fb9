"""Twin image, centring, phase offset and phase ramp on the test crystal (exact operations)."""

import numpy as np
import pytest

from dynbcdi.phasing import center_support, remove_phase_offset, remove_phase_ramp, remove_twin, twin_image
from dynbcdi.phasing.postprocess import phase_ramp


def _intensity(obj):
    return np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj)))) ** 2


@pytest.mark.parametrize("shape", [(16, 16, 16), (15, 16, 17)])
def test_twin_image_has_same_intensity(shape):
    rng = np.random.default_rng(0)
    obj = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    # Same |FFT|² to rounding for even and odd sizes (the roll-by-one for even N is what makes it exact).
    np.testing.assert_allclose(_intensity(twin_image(obj)), _intensity(obj), rtol=1e-10)
    np.testing.assert_array_equal(twin_image(twin_image(obj)), obj)


def test_remove_twin_with_reference(crystal):
    support = np.abs(crystal) > 0
    shifted = np.roll(twin_image(crystal), (3, -2, 1), axis=(0, 1, 2)) * np.exp(0.7j)
    obj, sup, flipped = remove_twin(shifted, np.roll(twin_image(support.astype(complex)).real > 0, (3, -2, 1), (0, 1, 2)), crystal)
    assert flipped
    # Octahedral support is centrosymmetric, so the complex overlap decides; after centring and
    # phase offset the object is the truth up to rounding.
    np.testing.assert_allclose(remove_phase_offset(obj, sup), remove_phase_offset(crystal, support), atol=1e-12)
    _, _, again = remove_twin(crystal, support, crystal)
    assert not again


def test_remove_twin_without_reference_is_consistent(crystal):
    support = np.abs(crystal) > 0
    asymmetric = support.copy()
    asymmetric[16:, 16:, 16:] = False
    obj = crystal * asymmetric
    chosen_a, _, _ = remove_twin(obj, asymmetric)
    chosen_b, _, _ = remove_twin(twin_image(obj), twin_image(asymmetric.astype(complex)).real > 0)
    np.testing.assert_allclose(chosen_a, chosen_b, atol=1e-12)  # same convention from either twin


def test_center_support_integer_and_subpixel(crystal):
    support = np.abs(crystal) > 0
    obj, sup = center_support(np.roll(crystal, (5, -4, 2), axis=(0, 1, 2)), np.roll(support, (5, -4, 2), axis=(0, 1, 2)))
    np.testing.assert_allclose(obj, crystal)
    grids = np.meshgrid(*[np.arange(32)] * 3, indexing="ij")

    def gaussian(centre):
        return np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre)) / (2 * 2.0**2)).astype(complex)

    blob = gaussian((13.5, 14.0, 14.5))
    moved, _ = center_support(blob, np.abs(blob) > 0.1, subpixel=True)
    # σ = 2 voxels is band-limited to ≈e^{-2π²σ²/4} ≈ 3e-9, so the Fourier shift is exact to that.
    np.testing.assert_allclose(moved, gaussian((16, 16, 16)), atol=1e-6)


def test_phase_ramp_and_offset_removal(crystal):
    support = np.abs(crystal) > 0
    grids = np.meshgrid(*[np.arange(32) - 16] * 3, indexing="ij")
    slope = np.array([0.3, -0.2, 0.15])
    ramped = crystal * np.exp(1j * (sum(g * s for g, s in zip(grids, slope)) + 2.0))
    corrected, ramp = remove_phase_ramp(ramped, support)
    # The crystal's own strain field has a small mean gradient, so compare with its ramp.
    np.testing.assert_allclose(ramp, slope + phase_ramp(crystal, support), atol=1e-10)
    expected = remove_phase_ramp(crystal, support)[0]
    np.testing.assert_allclose(corrected, expected, atol=1e-10)
    assert abs(np.angle(corrected[support].sum())) < 1e-12


def test_bad_support_raises(crystal):
    with pytest.raises(ValueError, match="differs"):
        remove_phase_offset(crystal, np.ones((4, 4, 4), bool))
    with pytest.raises(ValueError, match="empty"):
        center_support(crystal, np.zeros(crystal.shape, bool))
