"""Soft-edged start candidates (:func:`dynbcdi.reconstruct.pipeline.soft_edge`, ``StartConfig.soft_edges``):
a smooth or partial-volume crystal surface must end up inside the start support, at partial amplitude."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dynbcdi.reconstruct import StartConfig
from dynbcdi.reconstruct.pipeline import soft_edge

SPACING = (1e-8,) * 3
K0, KH = (0.0, 0.0, 1.0), (0.5, 0.0, 1.0)  # kh drifts half a voxel in x per voxel in z


def _box(shape=(16, 16, 16), half=3):
    z, y, x = np.indices(shape)
    inside = (abs(z - 8) < half) & (abs(y - 8) < half) & (abs(x - 8) < half)
    return inside, np.where(inside, np.exp(1j * 0.1 * x), 0)


def test_soft_edge_modes():
    inside, obj = _box()
    shell = ndimage.binary_dilation(inside) & ~inside
    layer = inside & ~ndimage.binary_erosion(inside)
    out = soft_edge(obj, obj, "out", SPACING, K0, KH, 0.5)
    np.testing.assert_array_equal(out != 0, inside | shell)
    np.testing.assert_allclose(np.abs(out[shell]), 0.5)
    np.testing.assert_array_equal(out[inside], obj[inside])
    # the shell takes the phase of the nearest support voxel: at most one voxel's 0.1 rad away
    assert np.abs(np.angle(out[shell] * np.conj(np.exp(1j * 0.1 * np.indices(obj.shape)[2][shell])))).max() <= 0.1 + 1e-9
    inner = soft_edge(obj, obj, "in", SPACING, K0, KH, 0.5)
    np.testing.assert_array_equal(inner != 0, inside)
    np.testing.assert_allclose(np.abs(inner[layer]), 0.5)
    np.testing.assert_allclose(np.abs(inner[inside & ~layer]), 1.0)
    # "kin": the kinematic amplitude relative to its interior level, clipped to [0.1, 1], on shell and layer
    kin = ndimage.gaussian_filter(inside.astype(float), 0.7) * np.exp(1j * 0.2)
    soft = soft_edge(obj, kin, "kin", SPACING, K0, KH)
    edge = shell | layer
    rel = np.abs(kin) / np.percentile(np.abs(kin)[np.abs(kin) > 0.1 * np.abs(kin).max()], 90)
    np.testing.assert_allclose(np.abs(soft[edge]), np.clip(rel[edge], 0.1, 1.0))
    assert 0.1 <= np.abs(soft[shell]).max() < 0.6 < np.abs(soft[layer]).min()
    # a support that fills the periodic box: growing it would wrap the drifting wave
    wide = np.zeros((16, 16, 16), complex)
    wide[2:14, 4:12, 1:11] = 1
    assert soft_edge(wide, wide, "out", SPACING, K0, KH) is None
    assert soft_edge(wide, wide, "in", SPACING, K0, KH) is not None


def test_start_config_rejects_bad_soft_edges():
    with pytest.raises(ValueError, match="soft_edges"):
        StartConfig(soft_edges=("blur",))
    with pytest.raises(ValueError, match="edge_amplitude"):
        StartConfig(edge_amplitude=1.0)
