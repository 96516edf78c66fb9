"""Twin choice, centring and phase offset on the test crystal (exact operations).

The twin and the phase ramp themselves are tested in tests/analysis (one convention each)."""

import numpy as np
import pytest

from dynbcdi.analysis import invert_about_centre, twin
from dynbcdi.phasing import center_support, remove_phase_offset, remove_twin, twin_image


def test_phasing_twin_is_the_analysis_twin():
    # One twin convention: the phasing name is the analysis function itself.
    assert twin_image is twin


def test_remove_twin_with_reference(crystal):
    support = np.abs(crystal) > 0
    shifted = np.roll(twin(crystal), (3, -2, 1), axis=(0, 1, 2)) * np.exp(0.7j)
    obj, sup, flipped = remove_twin(shifted, np.roll(invert_about_centre(support), (3, -2, 1), (0, 1, 2)), crystal)
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
    chosen_b, _, _ = remove_twin(twin(obj), invert_about_centre(asymmetric))
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


def test_phase_offset_removal(crystal):
    support = np.abs(crystal) > 0
    corrected = remove_phase_offset(crystal * np.exp(2.0j), support)
    np.testing.assert_allclose(corrected, remove_phase_offset(crystal, support), atol=1e-12)
    assert abs(np.angle(corrected[support].sum())) < 1e-12


def test_bad_support_raises(crystal):
    with pytest.raises(ValueError, match="differs"):
        remove_phase_offset(crystal, np.ones((4, 4, 4), bool))
    with pytest.raises(ValueError, match="empty"):
        center_support(crystal, np.zeros(crystal.shape, bool))
