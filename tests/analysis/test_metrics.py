"""Alignment (sub-voxel shift, twin, global phase), comparison metrics, supports, isosurfaces."""

import dataclasses

import numpy as np
import pytest

from dynbcdi.analysis import (agreement, align_to, compare, fourier_shift, invert_about_centre, isosurface, metrics_of,
                              support_from_amplitude, twin)

SHAPE = (32, 32, 32)


def _blob():
    z, y, x = np.meshgrid(*[np.arange(n) - n // 2 for n in SHAPE], indexing="ij")
    r = np.sqrt((x / 9.0) ** 2 + (y / 7.0) ** 2 + ((z - 1) / 6.0) ** 2)
    # Soft edge: band-limited enough for Fourier shifting to be accurate.
    amp = 0.5 * (1 - np.tanh((r - 1) * 6))
    phase = 0.8 * np.sin(x / 5.0) + 0.3 * y / 7.0 - 0.2 * (z / 6.0) ** 2  # asymmetric: twin distinguishable
    return (amp * np.exp(1j * phase)).astype(np.complex128), amp > 0.5


def test_align_recovers_subvoxel_shift_and_phase_offset():
    truth, _ = _blob()
    applied = np.array([0.37, -1.62, 2.21])
    moved = fourier_shift(truth, applied) * np.exp(1j * 0.8)
    res = align_to(moved, truth, upsample=100)
    # Requirement: < 0.05 voxel; upsample=100 resolves 0.01 voxel.
    assert np.max(np.abs(res.shift_vox + applied)) < 0.05, res.shift_vox
    assert not res.twin
    assert abs(res.phase_offset_rad - 0.8) < 1e-2
    assert res.correlation > 0.999
    np.testing.assert_allclose(res.obj, truth, atol=1e-2 * np.abs(truth).max())


def test_align_detects_twin():
    truth, _ = _blob()
    res = align_to(fourier_shift(twin(truth), (1.0, 0.0, -2.0)), truth, upsample=10)
    assert res.twin and res.correlation > 0.99


@pytest.mark.parametrize("shape", [(16, 16, 16), (15, 16, 17)])
def test_twin_convention_on_the_centred_fft_grid(shape):
    rng = np.random.default_rng(0)
    obj = rng.normal(size=shape) + 1j * rng.normal(size=shape)

    def intensity(o):
        return np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(o)))) ** 2

    # Same centred intensity exactly (even and odd sizes) and an involution.
    np.testing.assert_allclose(intensity(twin(obj)), intensity(obj), rtol=1e-10)
    np.testing.assert_array_equal(twin(twin(obj)), obj)
    # The centre convention: inversion about index N//2, so the origin voxel stays put and its
    # value is conjugated; index N//2 + k goes to N//2 − k.
    centre = tuple(n // 2 for n in shape)
    assert twin(obj)[centre] == np.conj(obj[centre])
    probe = tuple(c + 1 for c in centre)
    assert twin(obj)[tuple(c - 1 for c in centre)] == np.conj(obj[probe])
    support = np.abs(obj) > 1
    np.testing.assert_array_equal(invert_about_centre(support), np.abs(twin(obj)) > 1)


def test_agreement_of_a_twinned_shifted_copy_and_of_a_different_object():
    truth, sup = _blob()
    copy = fourier_shift(twin(truth), (2.3, -1.0, 0.6)) * np.exp(-1.1j)
    copy_sup = fourier_shift(invert_about_centre(sup).astype(float), (2.3, -1.0, 0.6)) > 0.5
    agr = agreement(copy, copy_sup, truth, sup)
    assert agr.twin and agr.correlation > 0.999 and agr.dice > 0.97 and agr.phase_rms_rad < 0.02
    assert agr.phase_rms_core_rad < 0.02 and agr.n_common > 0.9 * sup.sum()
    # Same support, phase changed by a 1-rad-scale field: correlation and phase RMS must show it.
    z, y, x = np.meshgrid(*[np.arange(n) - n // 2 for n in SHAPE], indexing="ij")
    other = np.abs(truth) * np.exp(1j * (np.angle(truth) + 1.0 * np.cos(x / 3.0)))
    worse = agreement(other, sup, truth, sup)
    assert worse.correlation < 0.9 and worse.phase_rms_rad > 0.3 and worse.phase_rms_core_rad > 0.3
    with pytest.raises(ValueError, match="support"):
        agreement(copy, np.zeros(SHAPE, bool), truth, sup)


def test_compare_keeps_ramp_unless_asked():
    truth, sup = _blob()
    h_norm, spacing = 2 * np.pi / 2.0e-10, (5e-9, 5e-9, 5e-9)
    z, y, x = np.meshgrid(*[(np.arange(n) - n // 2) * 5e-9 for n in SHAPE], indexing="ij")
    ramp = 1.2e7 * z  # rad, a refraction-like ramp along z
    m0 = compare(truth, truth, sup, h_norm, spacing, (0, 0, 1))
    assert m0.phase_rms_rad < 1e-6 and m0.amplitude_rel_error < 1e-6 and m0.strain_rms < 1e-12
    obj = 3.0 * truth * np.exp(1j * ramp)  # arbitrary scale must not count as amplitude error
    m1 = compare(obj, truth, sup, h_norm, spacing, (0, 0, 1), align=False)
    expected = np.sqrt(np.mean((ramp[sup] - ramp[sup].mean()) ** 2))
    # Global phase is the amplitude-weighted one, not the plain mean: 5 % slack.
    assert m1.phase_rms_rad == pytest.approx(expected, rel=0.05)
    assert m1.displacement_rms_pm == pytest.approx(m1.phase_rms_rad / h_norm * 1e12, rel=1e-9)
    assert m1.amplitude_rel_error < 1e-6
    # ε = −(1/|h|) ∂φ/∂z for ĥ = ẑ, constant for a linear ramp.
    assert m1.strain_rms == pytest.approx(1.2e7 / h_norm, rel=1e-6)
    m2 = compare(obj, truth, sup, h_norm, spacing, (0, 0, 1), remove_ramp=True, align=False)
    assert m2.phase_rms_rad < 1e-6 and m2.ramp_removed.gradient[2] == pytest.approx(1.2e7, rel=1e-6)
    assert set(m2.as_dict()) >= {"phase_rms_rad", "strain_rms", "displacement_rms_pm"}


def test_support_and_isosurface_axis_order():
    truth, _ = _blob()
    amp = np.abs(truth)
    sup = support_from_amplitude(amp, threshold=0.5, sigma=0.5)
    assert sup.dtype == bool and sup[16, 16, 16] and not sup[0, 0, 0]
    with pytest.raises(ValueError, match="threshold"):
        support_from_amplitude(amp, threshold=1.5)
    spacing = (1e-9, 2e-9, 3e-9)
    iso = isosurface(amp, 0.5, spacing)
    ext = np.ptp(iso.vertices_m, axis=0)  # (x, y, z) extents
    # Semi-axes 9, 7, 6 voxels along x, y, z times spacing 3, 2, 1 nm: 54, 28, 12 nm; ±1 voxel.
    np.testing.assert_allclose(ext, [54e-9, 28e-9, 12e-9], atol=2 * 3e-9)
    assert iso.faces.shape[1] == 3 and iso.normals.shape == iso.vertices_m.shape


_KW = dict(h_norm=2 * np.pi / 2.04e-10, spacing_m=(5e-9, 5e-9, 5e-9), h_dir_grid=(0, 0, 1))


def test_compare_counts_voxels_a_reconstruction_left_empty():
    # A reconstruction = the truth moved by a sub-voxel shift with a 3-layer slab zeroed (16:19 of
    # the ~13-layer blob). Alignment must not interpolate amplitude back into the slab.
    truth, sup = _blob()
    obj = fourier_shift(truth, (0.3, 0.2, -0.4))
    obj[16:19] = 0
    m = compare(obj, truth, sup, **_KW)
    expected = sup[16:19].sum() / sup.sum()
    assert m.empty_fraction == pytest.approx(expected, rel=0.03)
    # With the scale α = 1 the amplitude error is the slab's share of the amplitude norm.
    amp = np.abs(truth)
    lost = np.sqrt(np.sum(amp[16:19][sup[16:19]] ** 2) / np.sum(amp[sup] ** 2))
    assert m.amplitude_rel_error == pytest.approx(lost, rel=0.05)
    # The old alignment (the Fourier-shifted object compared on the unmoved truth) fills part of
    # the slab: it reports fewer empty voxels and a smaller amplitude error.
    al = align_to(obj, truth, support=sup)
    smeared = metrics_of(dataclasses.replace(al, obj_whole=None), truth, sup, **_KW)
    assert smeared.empty_fraction < 0.8 * m.empty_fraction
    assert smeared.amplitude_rel_error < m.amplitude_rel_error - 0.03
    # Empty voxels count as random phase (π/√3 rad RMS); the filled ones are exact here.
    assert m.phase_rms_rad == pytest.approx(np.pi / np.sqrt(3) * np.sqrt(m.empty_fraction), rel=0.05)


def test_compare_of_a_subvoxel_shifted_truth_reports_no_error():
    truth, sup = _blob()
    for shift in [(0.5, -0.3, 0.27), (1.4, 0.0, -2.6)]:
        m = compare(fourier_shift(truth, shift) * np.exp(0.4j), truth, sup, **_KW)
        assert m.empty_fraction == 0.0
        assert m.phase_rms_rad < 2e-3 and m.amplitude_rel_error < 5e-3, (shift, m)
        np.testing.assert_allclose(m.shift_vox, -np.asarray(shift), atol=0.03)
