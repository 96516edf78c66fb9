"""Figures render headless to PNG, with the expected panels and shared colour scales."""

import numpy as np
import pytest

from dynbcdi.plot import (
    complex_slices,
    complex_to_rgb,
    convergence,
    crystal_isosurface,
    diffraction_isosurface,
    peak_position,
    rocking_curves,
    strain_figure,
)

SHAPE = (16, 20, 24)
SPACING = (10e-9, 8e-9, 6e-9)


def _crystal(phase_scale=1.0):
    z, y, x = np.meshgrid(*[np.arange(n) - n // 2 for n in SHAPE], indexing="ij")
    amp = 0.5 * (1 - np.tanh((np.sqrt((x / 8) ** 2 + (y / 6) ** 2 + (z / 5) ** 2) - 1) * 5))
    return amp * np.exp(1j * phase_scale * (0.3 * x / 8 + np.sin(z / 3))), amp > 0.5


def _save(fig, path):
    fig.savefig(path, dpi=60)
    assert path.stat().st_size > 5000  # a real image, not an empty canvas


def test_complex_to_rgb_hue_and_value():
    rgb = complex_to_rgb(np.array([1.0, 0.5j * 2, -1.0, 0.0]), amp_max=1.0)
    np.testing.assert_allclose(rgb[0], [1, 0, 0])  # phase 0 → red at full amplitude
    np.testing.assert_allclose(rgb[2], [0, 1, 1])  # phase π → cyan
    np.testing.assert_allclose(rgb[3], [0, 0, 0])  # zero amplitude → black


def test_complex_slices(tmp_path):
    truth, _ = _crystal()
    fig = complex_slices({"ground truth": truth, "kinematic": truth * 0.5, "dynamical": truth}, SPACING)
    assert len(fig.axes) == 3 * 3 + 1  # 3 rows × 3 cuts + colour wheel
    assert fig.axes[0].images[0].get_extent()[1] == pytest.approx((24 - 12 - 0.5) * 6)  # x in nm
    _save(fig, tmp_path / "slices.png")
    with pytest.raises(ValueError, match="shape"):
        complex_slices({"a": truth, "b": truth[:-1]}, SPACING)


def test_strain_figure_shares_colour_scales(tmp_path):
    kin, sup = _crystal(2.0)
    dyn, _ = _crystal(1.0)
    res = {
        label: (np.angle(o), -np.angle(o) / 3e10 * 1e12, np.gradient(np.angle(o), axis=0) * 1e-4)
        for label, o in (("kinematic", kin), ("dynamical", dyn))
    }
    fig = strain_figure(res, sup, SPACING)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3 * 2 * 3 and len(fig.axes) == 18 + 3  # + one colour bar per quantity
    for q in range(3):  # 6 panels (2 methods × 3 cuts) per quantity share one colour scale
        clims = {im.get_clim() for im in images[6 * q:6 * (q + 1)]}
        assert len(clims) == 1
    _save(fig, tmp_path / "strain.png")


def test_isosurfaces(tmp_path):
    truth, _ = _crystal()
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(truth))) ** 2 + 1e-3
    fig = diffraction_isosurface(intensity)
    assert len(fig.axes) == 1 and len(fig.axes[0].collections) == 4
    _save(fig, tmp_path / "diffraction.png")
    fig = crystal_isosurface({"kinematic": truth, "dynamical": np.conj(truth)}, SPACING)
    assert len(fig.axes) == 3
    _save(fig, tmp_path / "crystal.png")
    with pytest.raises(ValueError, match="levels"):
        diffraction_isosurface(intensity, levels=(100.0,))


def test_rocking_curves_annotate_peak_shift(tmp_path):
    ang = np.deg2rad(np.linspace(-0.05, 0.05, 41))
    shift = np.deg2rad(0.0063)
    kin = np.exp(-((ang / np.deg2rad(0.01)) ** 2)) + 1e-4
    dyn = np.exp(-(((ang - shift) / np.deg2rad(0.01)) ** 2)) + 1e-4
    # Parabolic vertex of a Gaussian sampled at 1/4 of its width: bias < 5 % of the step.
    assert peak_position(np.rad2deg(ang), dyn) == pytest.approx(0.0063, abs=0.05 * 0.0025)
    fig = rocking_curves(ang, {"kinematic": kin, "dynamical": dyn})
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 1 and "+0.006" in texts[0]
    _save(fig, tmp_path / "rocking.png")


def test_convergence(tmp_path):
    fig = convergence({"loss": np.geomspace(1, 1e-3, 50), "error": np.linspace(0.5, 0.1, 50)})
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "log"
    _save(fig, tmp_path / "convergence.png")
