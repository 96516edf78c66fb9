"""The preprocessing steps one by one, on small synthetic stacks with known answers."""

import numpy as np
import pytest

from dynbcdi.config import from_dict
from dynbcdi.prepare import PrepareConfig, ReflectionConfig
from dynbcdi.prepare import corrections as corr
from dynbcdi.prepare.rocking import uniform_rocking_angles
from dynbcdi.prepare.window import Window, bin_stack, extract, find_peak, plan_window

RNG = np.random.default_rng(1)


def test_dark_is_subtracted_and_clipped():
    frames = np.full((2, 4, 5), 3.0)
    dark = np.full((4, 5), 1.0)
    dark[0, 0] = 5.0
    out, bad, report = corr.dark_correction(frames, dark, "dark", 0.01)
    assert report.kind == "dark" and not bad.any()
    assert out[0, 0, 0] == 0.0 and np.all(out[:, 1:, :] == 2.0)


def test_bad_pixel_map_dark_is_detected_and_masked_not_subtracted():
    frames = RNG.poisson(5.0, (3, 50, 60)).astype(float)
    dark = np.zeros((50, 60), np.int32)
    dark[[1, 7, 30], [2, 40, 59]] = 100  # like scan 54's dark.tif: a few pixels at 100, zeros elsewhere
    out, bad, report = corr.dark_correction(frames, dark, "auto", 0.01)
    assert report.kind == "bad_pixels" and report.detected and report.n_masked == 3
    assert bad.sum() == 3 and bad[7, 40]
    np.testing.assert_array_equal(out, frames)  # nothing subtracted
    # Above the fraction, "auto" subtracts: a real dark has counts in most pixels.
    dense = RNG.poisson(1.0, (50, 60)).astype(float)
    _, bad2, report2 = corr.dark_correction(frames, dense, "auto", 0.01)
    assert report2.kind == "dark" and not bad2.any()
    # Explicit kinds win over detection.
    assert corr.dark_correction(frames, dark, "dark", 0.01)[2].kind == "dark"
    assert corr.dark_correction(frames, dense, "ignore", 0.01)[0] is frames


def test_flat_field_division_and_dead_pixels():
    gain = np.ones((6, 8))
    gain[2, 3] = 2.0
    gain[4, 4] = 0.1  # nearly dead: masked rather than amplified 10×
    gain[5, 7] = 0.0
    frames = np.stack([7.0 * gain, 3.0 * gain])
    out, bad, median = corr.flat_correction(frames, 1000.0 * gain, np.ones((6, 8), bool), 0.25)
    assert median == 1000.0
    assert bad.sum() == 2 and bad[4, 4] and bad[5, 7]
    np.testing.assert_allclose(out[:, ~bad], np.array([[7.0], [3.0]]) * np.ones((1, 46)))
    assert np.all(out[:, bad] == 0)


def test_seam_mask_at_a_chip_boundary_and_at_the_frame_edge():
    bad = corr.seam_mask((10, 12), row_boundaries=[4], col_boundaries=[12], width=1)
    assert np.all(bad[3:5, :]) and bad[:, 11].all()  # both sides of row boundary 4; last column (edge)
    assert bad.sum() == 2 * 12 + 10 - 2


def test_hot_pixel_single_pixel_but_not_a_speckle():
    frames = RNG.poisson(2.0, (5, 20, 20)).astype(float)
    frames[:, 8:10, 8:10] += 500.0  # a 2×2 speckle: kept
    frames[:, 3, 15] += 500.0  # one pixel: hot
    hot = corr.hot_pixels(frames, np.ones((20, 20), bool), 20.0, None)
    assert hot.sum() == 1 and hot[3, 15]
    sat = corr.hot_pixels(frames, np.ones((20, 20), bool), None, 400.0)
    assert sat[3, 15] and sat[8:10, 8:10].all()


def test_aliens_are_boxes_in_raw_frame_indices():
    bad = corr.alien_mask((6, 10, 10), [(3, 5, 1, 3, 2, 4)], frame_offset=2)
    assert bad.sum() == 2 * 2 * 2 and bad[1:3, 1:3, 2:4].all()
    with pytest.raises(ValueError, match="outside the frames"):
        corr.alien_mask((6, 10, 10), [(10, 12, 0, 1, 0, 1)], frame_offset=2)


def test_monitor_normalisation():
    frames = np.ones((3, 2, 2))
    out, mean = corr.monitor_normalisation(frames, np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0
    np.testing.assert_allclose(out[:, 0, 0], [2.0, 1.0, 2.0 / 3.0])
    with pytest.raises(ValueError, match="not positive"):
        corr.monitor_normalisation(frames, np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="no monitor"):
        corr.monitor_normalisation(frames, None)


def test_invalid_values_are_masked():
    frames = np.ones((2, 3, 3))
    frames[0, 1, 1], frames[1, 2, 0] = np.nan, -4.0
    out, bad = corr.invalid_values(frames)
    assert bad.sum() == 2 and out[0, 1, 1] == 0 and out[1, 2, 0] == 0


def test_binning_masks_blocks_with_a_bad_pixel():
    stack = np.arange(2 * 4 * 4, dtype=float).reshape(2, 4, 4)
    valid = np.ones_like(stack, bool)
    valid[0, 0, 1] = False
    out, ok = bin_stack(stack, valid, (1, 2, 2))
    assert out.shape == (2, 2, 2) and not ok[0, 0, 0] and out[0, 0, 0] == 0 and ok[1].all()
    assert out[0, 1, 1] == stack[0, 2:4, 2:4].sum()
    out3, ok3 = bin_stack(stack, np.ones_like(stack, bool), (2, 2, 2))
    assert out3.shape == (1, 2, 2) and out3[0, 0, 0] == stack[:, :2, :2].sum()


def test_window_centred_on_the_peak_with_padding():
    stack = np.zeros((5, 10, 12))
    stack[1, 2, 9] = 100.0  # peak near a corner: the window pads
    valid = np.ones_like(stack, bool)
    peak = find_peak(stack, valid)
    assert peak == (1, 2, 9)
    w = plan_window(5, (10, 12), peak, None, (6, 8), 4, (2, 2, 2))
    assert w.start == (-1, -1, 5) and w.shape == (4, 6, 8) and w.out_shape == (2, 3, 4)
    out, ok = extract(stack, valid, w.start, w.shape)
    assert out[2, 3, 4] == 100.0  # peak at (n//2, rows//2, cols//2) of the window
    assert not ok[0].any() and not ok[:, 0].any() and not ok[:, :, 7].any() and ok[1:, 1:, :7].all()
    assert w.raw_position((1, 1, 2)) == (1.5, 1.5, 9.5)  # centre of a 2×2×2 block in raw indices


def test_window_keeps_roi_trimmed_to_the_binning():
    w = plan_window(9, (10, 12), (0, 0, 0), (1, 8, 2, 12), None, None, (2, 3, 3))
    assert w.start == (0, 1, 2) and w.shape == (8, 6, 9)
    assert Window((0, 0, 0), (4, 4, 4), (1, 1, 1)).as_dict() == {"start": [0, 0, 0], "stop": [4, 4, 4],
                                                                  "bin": [1, 1, 1]}


def test_rocking_uniform_grid_from_jittery_readbacks():
    step = 0.005
    theta = -0.28 + step * np.arange(201)
    jitter = 6e-6 * np.sin(np.arange(201) * 1.7)  # ~0.12 % of a step, as in scan 54
    rep = uniform_rocking_angles(theta + jitter, step, "nominal", 0.25)
    assert rep.method == "nominal" and rep.step_deg == step
    assert rep.max_deviation_deg < 7e-6 and rep.max_step_deviation > 1e-3  # would fail the 0.1 % check
    np.testing.assert_allclose(rep.angles_deg(np.arange(201)), theta, atol=1e-6)
    fit = uniform_rocking_angles(theta + jitter, None, "nominal", 0.25)
    assert fit.method == "fit" and fit.step_deg == pytest.approx(step, rel=1e-4)
    gross = theta.copy()
    gross[50:] += step  # a repeated point: the rest of the scan is one step late
    with pytest.raises(ValueError, match="not uniform"):
        uniform_rocking_angles(gross, step, "nominal", 0.25)
    with pytest.raises(ValueError, match="disagrees"):
        uniform_rocking_angles(theta, -step, "nominal", 0.25)


def test_config_from_toml_table_and_errors():
    cfg = from_dict(PrepareConfig, {"crop_shape": [128, 128], "bin": [1, 2, 2], "aliens": [[0, 1, 2, 3, 4, 5]],
                                    "dark_kind": "bad_pixels"}, "prepare")
    assert cfg.crop_shape == (128, 128) and cfg.aliens == ((0, 1, 2, 3, 4, 5),)
    refl = from_dict(ReflectionConfig, {"material": "Au", "hkl": [1, 1, 1]}, "reflection")
    assert refl.hkl == (1, 1, 1) and refl.debye_waller
    with pytest.raises(ValueError, match=r"prepare\.cropshape"):
        from_dict(PrepareConfig, {"cropshape": [1, 2]}, "prepare")
    for bad, match in [({"bin": [1, 2, 3]}, "rows == cols"), ({"crop_shape": [129, 128], "bin": [1, 2, 2]},
                       "multiple"), ({"aliens": [[0, 0, 1, 2, 3, 4]]}, "start < stop"),
                       ({"frame_range": [5, 2]}, "first < stop"), ({"dark_kind": "maybe"}, "one of")]:
        with pytest.raises(ValueError, match=match):
            from_dict(PrepareConfig, bad, "prepare")
