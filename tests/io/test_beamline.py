"""34-ID-C TIFF + spec loader and generic HDF5 stack loader on a small synthetic scan."""

import h5py
import numpy as np
import pytest
import tifffile

from dynbcdi.io.beamline import load_34idc_scan, load_hdf5_stack, read_spec_scan

N, ROWS, COLS = 9, 40, 48
PEAK = (5, 25, 30)  # (frame, row, col) of the Bragg peak in the raw stack
HOT = (7, 5)  # (row, col) of a hot pixel
THETA0, STEP = 15.2, 0.01  # deg


def _stack():
    j, r, c = np.meshgrid(np.arange(N), np.arange(ROWS), np.arange(COLS), indexing="ij")
    d2 = ((j - PEAK[0]) / 1.5) ** 2 + ((r - PEAK[1]) / 3.0) ** 2 + ((c - PEAK[2]) / 4.0) ** 2
    fringes = 1 + 0.5 * np.cos(1.3 * (c - PEAK[2]))
    rng = np.random.default_rng(0)
    stack = rng.poisson(2000 * np.exp(-d2 / 2) * fringes + 0.05).astype(np.uint32)
    stack[:, HOT[0], HOT[1]] = 60000  # hot in every frame
    return stack


def _write_scan(tmp_path):
    stack = _stack()
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(N):  # names 8, 9, 10, ...: natural (not lexical) order is the right one
        tifffile.imwrite(frames / f"scan12_{k + 8}.tif", stack[k])
    theta = THETA0 + STEP * np.arange(N)
    lines = [
        "#F synthetic.spec", "#E 1700000000", "#O0 Delta  Theta  Chi  Phi  Gamma  Mu", "#O1 Energy", "",
        "#S 12  ascan  Theta 15.2 15.28 8 1", "#D Mon Jan 01 00:00:00 2024", "#T 1  (Seconds)",
        "#P0 30.5 15.2 90 0 12.25 0", "#P1 10.0", "#N 3", "#L Theta  Seconds  Detector",
    ] + [f"{t:.5f} 1 {int(s.sum())}" for t, s in zip(theta, stack)]
    (tmp_path / "synthetic.spec").write_text("\n".join(lines) + "\n")
    return stack, frames, tmp_path / "synthetic.spec"


def test_spec_reader(tmp_path):
    _, _, spec = _write_scan(tmp_path)
    info = read_spec_scan(spec, 12)
    assert info.motors["Delta"] == 30.5 and info.motors["Energy"] == 10.0
    np.testing.assert_allclose(info.columns["Theta"], THETA0 + STEP * np.arange(N))
    with pytest.raises(ValueError, match="scan 3 not in"):
        read_spec_scan(spec, 3)


def test_34idc_scan_hot_pixel_roi_and_metadata(tmp_path):
    stack, frames, spec = _write_scan(tmp_path)
    scan = load_34idc_scan(frames, spec_file=spec, scan=12, detector_distance_m=1.5, roi="auto", roi_size=(16, 20))
    assert scan.intensity.shape == (N, 16, 20) and scan.intensity.dtype == np.float64
    # Bragg peak centred: raw frame 5 of 9 moves to 4, so the last output frame is padding (invalid).
    assert scan.peak_index == (N // 2, 8, 10)
    assert scan.roi == (PEAK[0] - N // 2, PEAK[1] - 8, PEAK[2] - 10)
    assert scan.valid.shape == (N, 16, 20) and not scan.valid[-1].any() and scan.valid[:-1].all()
    np.testing.assert_array_equal(scan.intensity[:-1], stack[1:, 17:33, 20:40])
    assert scan.intensity[-1].max() == 0
    assert scan.energy_eV == 10000.0  # spec stores keV
    assert scan.delta_rad == pytest.approx(np.deg2rad(30.5)) and scan.gamma_rad == pytest.approx(np.deg2rad(12.25))
    assert scan.pixel_size_m == 55e-6 and scan.detector_distance_m == 1.5
    # xrayutilities parses spec columns as float32 (~1e-7 relative of 15°): 1e-5 deg tolerance.
    np.testing.assert_allclose(np.rad2deg(scan.rocking_angles_rad), STEP * (np.arange(N) - N // 2), atol=1e-5)
    # Padded frame: angle extrapolated with the mean step.
    np.testing.assert_allclose(np.rad2deg(scan.theta_rad), THETA0 + STEP * (1 + np.arange(N)), atol=1e-5)

    full = load_34idc_scan(frames, spec_file=spec, scan=12, detector_distance_m=1.5, roi=None, centre=False,
                           energy_eV=9000.0)
    assert full.energy_eV == 9000.0  # explicit argument beats spec
    assert full.metadata["n_hot_pixels"] == 1
    assert not full.valid[HOT] and full.intensity[:, HOT[0], HOT[1]].max() == 0
    assert full.valid.sum() == ROWS * COLS - 1


def test_binning_and_masks(tmp_path):
    stack, frames, spec = _write_scan(tmp_path)
    mask = np.zeros((ROWS, COLS), np.uint8)
    mask[20, 28] = 1  # a gap pixel next to the peak (nonzero = bad, file convention)
    scan = load_34idc_scan(frames, spec_file=spec, scan=12, detector_distance_m=1.5, mask=mask,
                           dark=np.ones((ROWS, COLS)), roi=None, centre=False, bin=(1, 2, 2))
    assert scan.intensity.shape == (N, ROWS // 2, COLS // 2) and scan.pixel_size_m == 110e-6
    assert not scan.valid[10, 14] and scan.valid[12, 15]
    expected = np.clip(stack[:, 24:26, 30:32].astype(float) - 1, 0, None).sum(axis=(1, 2))
    np.testing.assert_allclose(scan.intensity[:, 12, 15], expected)


def test_missing_metadata_is_listed(tmp_path):
    _, frames, _ = _write_scan(tmp_path)
    with pytest.raises(ValueError) as err:
        load_34idc_scan(frames, delta_deg=30.0)
    msg = str(err.value)
    for key in ("energy_eV", "gamma_deg", "theta_deg", "detector_distance_m"):
        assert key in msg
    assert "delta_deg" not in msg
    scan = load_34idc_scan(frames, energy_eV=10000, delta_deg=30, gamma_deg=12, theta_step_deg=0.01,
                           detector_distance_m=1.5, roi=None, centre=False)
    np.testing.assert_allclose(np.rad2deg(scan.rocking_angles_rad), 0.01 * (np.arange(N) - PEAK[0]), atol=1e-12)


def test_hdf5_stack_matches_tiff(tmp_path):
    stack, frames, spec = _write_scan(tmp_path)
    h5 = tmp_path / "scan.h5"
    with h5py.File(h5, "w") as f:
        f["entry/data/data"] = stack
        f["entry/instrument/theta"] = THETA0 + STEP * np.arange(N)
        f["entry/instrument/energy_eV"] = 10000.0
    a = load_hdf5_stack(h5, "entry/data/data", metadata_paths={"theta_deg": "entry/instrument/theta",
                        "energy_eV": "entry/instrument/energy_eV"}, delta_deg=30.5, gamma_deg=12.25,
                        detector_distance_m=1.5, roi="auto", roi_size=(16, 20))
    b = load_34idc_scan(frames, spec_file=spec, scan=12, detector_distance_m=1.5, roi="auto", roi_size=(16, 20))
    np.testing.assert_array_equal(a.intensity, b.intensity)
    # The spec file stores 5 decimals of a degree: 1e-5 deg ≈ 1.7e-7 rad.
    np.testing.assert_allclose(a.rocking_angles_rad, b.rocking_angles_rad, atol=2e-7)
    with pytest.raises(ValueError, match="no dataset"):
        load_hdf5_stack(h5, "entry/data/missing")


def test_raw_scan_builds_34idc_geometry(tmp_path):
    pytest.importorskip("dynbcdi.geometry.beamlines")
    _, frames, spec = _write_scan(tmp_path)
    scan = load_34idc_scan(frames, spec_file=spec, scan=12, detector_distance_m=1.5, roi_size=(16, 20))
    geometry = scan.geometry()
    assert geometry.detector_shape == (16, 20) and geometry.dq_lab().shape == (N, 3)
    np.testing.assert_allclose(geometry.rocking_angles_rad, scan.rocking_angles_rad)
