"""`prepare` on a synthetic RawScan: corrections end to end, geometry that follows crop and binning, checks."""

import dataclasses
import json

import numpy as np
import pytest

from dynbcdi.prepare import PrepareConfig, prepare

NO_SEAMS = PrepareConfig(seams="keep")


def _q_flat_detector(raw, ref, j, r, c):
    """Independent reference: absolute q (lab) of raw frame j, raw pixel (r, c) on the flat detector.

    The detector plane is ⟂ the nominal kh of the detector angles (beamline_geometry without any
    centre offset) and raw pixel (r, c) sits at (r, c) + frames_offset_px pitches from its foot;
    the crystal is turned back by the raw rocking angle of frame j (axis and angles of ``ref``).
    """
    from dynbcdi.beamlines import beamline_geometry
    from dynbcdi.geometry.frames import rotation

    positions = {k: v for k, v in raw.positions_deg.items() if k != "theta"}
    nominal = beamline_geometry("34idc", raw.energy_eV, positions, "theta", ref.geometry.rocking_angles_rad,
                                (1, 1), raw.pixel_size_m, raw.detector_distance_m)
    off_r, off_c = raw.frames_offset_px
    pos = (raw.detector_distance_m * nominal.kh / nominal.k_norm
           + raw.pixel_size_m * ((r + off_r)[:, None] * nominal.detector_row_dir
                                 + (c + off_c)[:, None] * nominal.detector_col_dir))
    k_out = nominal.k_norm * pos / np.linalg.norm(pos, axis=-1, keepdims=True)
    theta = ref.geometry.rocking_angles_rad[j]
    return rotation(ref.geometry.rocking_axis, -theta).apply(k_out - nominal.k0)


def _q_lab(geometry, j, r, c):
    """Absolute momentum transfer (lab frame, crystal at the rocking zero) probed by index (j, r, c)."""
    frame = geometry.grid_frame()
    return frame.to_lab(geometry.q_of_index(np.asarray(j), np.asarray(r), np.asarray(c), frame)) + geometry.h


@pytest.mark.parametrize("crop, n_frames, factors", [((21, 27), 9, (3, 3, 3)), ((24, 16), None, (1, 2, 2)),
                                                     ((30, 30), 15, (1, 1, 1))])
def test_geometry_follows_crop_and_binning(au111, synth, crop, n_frames, factors):
    """q of a prepared (cropped, binned) index = q of the raw pixel/frame at its centre.

    Reference: the flat detector ⟂ the nominal kh, raw pixels placed by frames_offset_px alone (no
    centre offset involved). The prepared geometry has its kh on the crop's centre pixel and its
    detector plane turned by α = |offset|/D (≈ 0.3° here) about it; beamline_geometry states a q
    error O(α²) relative per pixel of offset from the centre (measured: 1–2e-4 δq). Tolerance 1e-3
    of the raw pixel's q step δq, far below the 0.5 δq that a half-pixel slip in a crop or binning causes.
    """
    N, ROWS, COLS, PEAK, STEP_DEG = synth.N, synth.ROWS, synth.COLS, synth.PEAK, synth.STEP_DEG
    make_raw, synthetic_frames = synth.make_raw, synth.frames
    raw = make_raw()
    ref = prepare(raw, au111, NO_SEAMS)  # raw geometry: all frames and pixels, θ = 0 at the same peak frame
    ds = prepare(raw, au111, dataclasses.replace(NO_SEAMS, crop_shape=crop, n_frames=n_frames, bin=factors))
    win = ds.metadata["provenance"]["window_raw"]
    nj, nr, nc = ds.intensity.shape
    J, R, C = (a.ravel() for a in np.meshgrid(np.arange(nj), np.arange(nr), np.arange(nc), indexing="ij"))
    start = [np.asarray(win["start"][k]) + factors[k] * a for k, a in enumerate((J, R, C))]
    inside = np.all([(s >= 0) & (s + f <= n) for s, f, n in zip(start, factors, (N, ROWS, COLS))], axis=0)
    # A binned voxel probes the mean q of its raw block (exact to O((b·p/D)²), ~1e-8 of δq here).
    offsets = np.stack(np.meshgrid(*(np.arange(f) for f in factors), indexing="ij"), -1).reshape(-1, 3)
    q_raw = np.mean([_q_flat_detector(raw, ref, *(s[inside] + o for s, o in zip(start, off)))
                     for off in offsets], axis=0)
    q_prep = _q_lab(ds.geometry, J[inside], R[inside], C[inside])
    err = np.linalg.norm(q_prep - q_raw, axis=-1).max()
    assert inside.sum() > 100 and err < 1e-3 * ref.geometry.pixel_dq
    assert ds.geometry.pixel_size_m == pytest.approx(55e-6 * factors[1])
    if factors[0] > 1:  # binned frames: step × factor, angles = means of the raw uniform angles
        step = np.diff(ds.geometry.rocking_angles_rad)
        np.testing.assert_allclose(np.abs(step), np.deg2rad(STEP_DEG) * factors[0], rtol=1e-12)


def test_corrections_mask_and_provenance(au111, synth):
    N, ROWS, COLS, PEAK, STEP_DEG = synth.N, synth.ROWS, synth.COLS, synth.PEAK, synth.STEP_DEG
    make_raw, synthetic_frames = synth.make_raw, synth.frames
    frames = synthetic_frames()
    frames[:, 5, 9] += 50000.0  # hot pixel
    frames[3, 30, 40] = np.nan  # one broken voxel
    dark = np.zeros((ROWS, COLS))
    dark[[2, 11], [3, 17]] = 100.0  # a bad-pixel map, as scan 54's dark.tif
    flat = np.full((ROWS, COLS), 1000.0)
    flat[20, 10] = 50.0  # dead in the flat: masked
    flat[:, 20] = 2000.0  # twice as efficient: counts halved
    raw = make_raw(frames, dark=dark, flat=flat)
    cfg = PrepareConfig(aliens=((2, 4, 0, 3, 0, 3),))
    ds = prepare(raw, au111, cfg)
    prov = ds.metadata["provenance"]
    c = prov["corrections"]
    assert c["dark"]["kind"] == "bad_pixels" and c["dark"]["n_masked"] == 2 and c["hot_pixels"] == 1
    assert c["flat_masked"] == 1 and c["invalid_values"] == 1 and c["alien_voxels"] == 2 * 9
    assert c["seam_rows"] == [ROWS] and c["seam_cols"] == [COLS]  # frames end on the chip edge
    valid = np.broadcast_to(ds.valid, ds.intensity.shape)
    assert not valid[:, ROWS - 1, :].any() and not valid[:, :, COLS - 1].any()  # seam pixels
    for r, col in ((2, 3), (11, 17), (5, 9), (20, 10)):
        assert not valid[:, r, col].any() and not ds.intensity[:, r, col].any()
    assert not valid[3, 30, 40] and valid[4, 30, 40] and not valid[2:4, :3, :3].any() and valid[4, :3, :3].all()
    np.testing.assert_allclose(ds.intensity[:, 8, 20], frames[:, 8, 20] / 2)
    np.testing.assert_allclose(ds.intensity[:, 8, 21], frames[:, 8, 21])
    assert np.all(ds.intensity[~valid] == 0) and np.all(ds.intensity >= 0)
    assert prov["peak_raw"] == list(PEAK) and prov["prepare"]["aliens"] == [[2, 4, 0, 3, 0, 3]]
    assert prov["rocking"]["method"] == "nominal" and prov["rocking"]["step_deg"] == STEP_DEG
    assert prov["rocking"]["max_step_deviation"] > 1e-3  # jitter kept on record ...
    np.testing.assert_allclose(np.diff(ds.geometry.rocking_angles_rad), np.deg2rad(STEP_DEG), rtol=1e-12)
    ds.geometry.rocking_step_rad()  # ... while the geometry is uniform
    assert ds.geometry.rocking_angles_rad[PEAK[0]] == 0.0
    assert abs(prov["two_theta"]["mismatch_deg"]) < 1.0 and "summary" in prov["two_theta"]
    assert set(prov["versions"]) >= {"dynbcdi", "numpy", "torch", "xrayutilities"}
    json.dumps(prov)  # JSON-able


def test_frame_range_padding_and_monitor(au111, synth):
    N, ROWS, COLS, PEAK, STEP_DEG = synth.N, synth.ROWS, synth.COLS, synth.PEAK, synth.STEP_DEG
    make_raw, synthetic_frames = synth.make_raw, synth.frames
    frames = synthetic_frames()
    frames[-1] = 1e6  # a padded / broken last frame
    monitor = np.linspace(1.0, 2.0, N)
    raw = make_raw(frames * monitor[:, None, None], monitor=monitor)
    cfg = PrepareConfig(frame_range=(1, N - 1), n_frames=16, crop_shape=(20, 20), monitor=True, seams="keep")
    ds = prepare(raw, au111, cfg)
    win = ds.metadata["provenance"]["window_raw"]
    assert ds.intensity.shape == (16, 20, 20) and win["start"] == [PEAK[0] - 8, PEAK[1] - 10, PEAK[2] - 10]
    valid = np.broadcast_to(ds.valid, ds.intensity.shape)
    # Window frames from raw −1 to 14: raw frames −1, 0 (outside frame_range) and 14 (cut) are padding.
    assert not valid[:2].any() and not valid[15].any() and valid[2:15].all()
    expected = frames[1:14, 12:32, 20:40] * monitor[1:14].mean()
    np.testing.assert_allclose(ds.intensity[2:15], expected, rtol=1e-12)
    assert ds.intensity[8, 10, 10] == ds.intensity[2:15].max() or ds.metadata["provenance"]["peak_raw"][0] == PEAK[0]
    angles = np.rad2deg(ds.geometry.rocking_angles_rad)  # padded frames extrapolate the uniform grid
    np.testing.assert_allclose(angles, STEP_DEG * (np.arange(16) - 8), atol=1e-12)


def test_bad_input_is_refused_before_any_computation(au111, synth):
    N, ROWS, COLS, PEAK, STEP_DEG = synth.N, synth.ROWS, synth.COLS, synth.PEAK, synth.STEP_DEG
    make_raw, synthetic_frames = synth.make_raw, synth.frames
    with pytest.raises(ValueError, match="not uniform"):
        theta = -0.02 + STEP_DEG * np.arange(N)
        theta[9:] += STEP_DEG  # one point repeated
        prepare(make_raw(positions_deg={"theta": theta, "chi": 90.0, "phi": -5.0, "delta": 32.174,
                                        "gamma": 12.6346}), au111, PrepareConfig())
    with pytest.raises(ValueError, match="frame_range"):
        prepare(make_raw(), au111, PrepareConfig(frame_range=(0, N + 1)))
    with pytest.raises(ValueError, match="no counts"):
        prepare(make_raw(np.zeros((N, ROWS, COLS))), au111, PrepareConfig())
    with pytest.raises(ValueError, match="monitor"):
        prepare(make_raw(), au111, PrepareConfig(monitor=True))
    with pytest.raises(ValueError, match="gross 2θ mismatch"):
        from dynbcdi.materials import reflection_constants

        prepare(make_raw(), reflection_constants("Au", (2, 0, 0), 9000.0), PrepareConfig())
    with pytest.raises(ValueError, match="every pixel is masked"):
        prepare(make_raw(bad_pixels=np.ones((ROWS, COLS), bool)), au111, PrepareConfig())
    with pytest.raises(ValueError, match="no positive value"):
        prepare(make_raw(flat=np.zeros((ROWS, COLS))), au111, PrepareConfig())


def test_gaps_inside_the_frames_are_inserted_as_masked_pixels(au111, synth):
    N, ROWS, COLS, PEAK, STEP_DEG = synth.N, synth.ROWS, synth.COLS, synth.PEAK, synth.STEP_DEG
    make_raw, synthetic_frames = synth.make_raw, synth.frames
    raw = make_raw(metadata={**make_raw().metadata, "gaps_in_frames": ((1, 24, 3),)})
    ds = prepare(raw, au111, NO_SEAMS)
    assert ds.intensity.shape == (N, ROWS, COLS + 3)
    assert not np.broadcast_to(ds.valid, ds.intensity.shape)[:, :, 24:27].any()
    np.testing.assert_array_equal(ds.intensity[:, :, 27:], synthetic_frames()[:, :, 24:])


def test_roi_and_explicit_peak(au111, synth):
    raw = synth.make_raw()
    ds = prepare(raw, au111, PrepareConfig(seams="keep", roi=(10, 36, 20, 40), crop_shape=(20, 24)))
    win = ds.metadata["provenance"]["window_raw"]
    assert win["start"][1:] == [synth.PEAK[1] - 10, synth.PEAK[2] - 12]
    valid = np.broadcast_to(ds.valid, ds.intensity.shape)
    cols = np.arange(win["start"][2], win["stop"][2])
    kept = (cols >= 20) & (cols < 40)
    assert not valid[:, :, ~kept].any() and valid[:, :, kept].all()  # outside the roi: not kept
    fixed = prepare(raw, au111, PrepareConfig(seams="keep", peak=(5, 20, 20), crop_shape=(10, 10), n_frames=5))
    assert fixed.metadata["provenance"]["window_raw"]["start"] == [3, 15, 15]
    assert fixed.geometry.rocking_angles_rad[2] == 0.0  # θ = 0 at the given peak frame
    with pytest.raises(ValueError, match="exceeds the frames"):
        prepare(raw, au111, PrepareConfig(roi=(0, 100, 0, 10)))
