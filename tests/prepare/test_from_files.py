"""prepare_dataset from files: a small synthetic 34-ID-C scan (spec + one TIFF per frame) end to end.

Replaces the tests of the former ``dynbcdi.io.load_34idc_scan``: frames in natural order, spec
metadata (energy in keV, camdist in mm), full-detector dark/flat cut to the frames' region, the
34-ID-C transpose, hot pixel, crop and binning.
"""

import numpy as np
import pytest
import tifffile

from dynbcdi.io.readers.base import SourceConfig
from dynbcdi.prepare import PrepareConfig, ReflectionConfig, prepare_dataset

N, ROWS_F, COLS_F = 9, 40, 48  # frames as stored (file frame): 40 rows × 48 columns
PEAK_F = (4, 25, 30)  # (frame, file row, file col)
HOT_F = (7, 5)
THETA0, STEP = 15.2, 0.005
ROI_F = (100, 140, 200, 248)  # the frames' region on the 512² detector, file frame


def _write_scan(tmp_path):
    j, r, c = np.meshgrid(np.arange(N), np.arange(ROWS_F), np.arange(COLS_F), indexing="ij")
    d2 = ((j - PEAK_F[0]) / 1.5) ** 2 + ((r - PEAK_F[1]) / 3.0) ** 2 + ((c - PEAK_F[2]) / 4.0) ** 2
    stack = np.random.default_rng(0).poisson(2000 * np.exp(-d2 / 2) + 0.05).astype(np.uint32)
    stack[:, HOT_F[0], HOT_F[1]] = 60000
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(N):  # names 8, 9, 10, ...: natural (not lexical) order is the right one
        tifffile.imwrite(frames / f"scan12_{k + 8}.tif", stack[k])
    dark = np.zeros((512, 512), np.int32)
    dark[ROI_F[0] + 3, ROI_F[2] + 4] = 100  # one bad pixel inside the frames' region, file frame
    tifffile.imwrite(tmp_path / "dark.tif", dark)
    flat = np.full((512, 512), 1000.0, np.float32)
    flat[ROI_F[0]:ROI_F[1], ROI_F[2] + 10] = 2000.0  # file column 10 of the frames twice as efficient
    tifffile.imwrite(tmp_path / "flat.tif", flat)
    theta = THETA0 + STEP * np.arange(N) + 4e-6 * np.sin(np.arange(N))
    lines = ["#F synthetic.spec", "#E 1700000000", "#O0 Delta  Theta  Chi  Phi  Gamma  Mu",
             "#O1 Energy  camdist", "",
             f"#S 12  ascan  th {THETA0} {THETA0 + STEP * (N - 1):.4f} {N - 1} 1", "#D Mon Jan 01 00:00:00 2024",
             "#T 1  (Seconds)", "#P0 32.174 15.2 90 -5 12.6346 0", "#P1 9.0 500", "#N 3",
             "#L Theta  Monitor  Detector"] + [f"{t:.6f} 1000 {int(s.sum())}" for t, s in zip(theta, stack)]
    (tmp_path / "synthetic.spec").write_text("\n".join(lines) + "\n")
    source = SourceConfig(beamline="34idc", path=str(frames), spec_file=str(tmp_path / "synthetic.spec"), scan=12,
                          dark=str(tmp_path / "dark.tif"), flat=str(tmp_path / "flat.tif"), detector_roi=ROI_F)
    return stack.astype(float), source


def test_spec_tiff_scan_to_dataset(tmp_path):
    stack, source = _write_scan(tmp_path)
    ds = prepare_dataset(source, ReflectionConfig("Au", (1, 1, 1)), PrepareConfig(seams="keep"))
    data = stack.transpose(0, 2, 1)  # 34-ID-C frames are read transposed: data row = file column
    assert ds.intensity.shape == (N, COLS_F, ROWS_F) and ds.reflection.energy_eV == 9000.0
    assert ds.geometry.detector_distance_m == pytest.approx(0.5, rel=1e-3)  # kh turned to the data centre
    prov = ds.metadata["provenance"]
    c = prov["corrections"]
    assert c["dark"]["kind"] == "bad_pixels" and c["hot_pixels"] == 1 and c["flat_masked"] == 0
    valid = np.broadcast_to(ds.valid, ds.intensity.shape)
    assert not valid[:, 4, 3].any() and not valid[:, HOT_F[1], HOT_F[0]].any()  # dark pixel, hot pixel
    np.testing.assert_allclose(ds.intensity[:, 10, 20], data[:, 10, 20] / 2)  # flat-field column
    np.testing.assert_allclose(ds.intensity[:, 11, 20], data[:, 11, 20])
    assert prov["peak_raw"] == [PEAK_F[0], PEAK_F[2], PEAK_F[1]]
    assert prov["rocking"]["method"] == "nominal" and prov["rocking"]["step_deg"] == pytest.approx(STEP)
    assert prov["source"]["detector_roi"] == list(ROI_F)


def test_spec_tiff_scan_crop_and_bin(tmp_path):
    stack, source = _write_scan(tmp_path)
    cfg = PrepareConfig(seams="keep", crop_shape=(16, 20), bin=(1, 2, 2), dark_kind="ignore")
    ds = prepare_dataset(source, ReflectionConfig("Au", (1, 1, 1)), cfg)
    assert ds.intensity.shape == (N, 8, 10) and ds.geometry.pixel_size_m == pytest.approx(110e-6)
    data = stack.transpose(0, 2, 1)
    r0, c0 = PEAK_F[2] - 8, PEAK_F[1] - 10  # window centred on the peak (data frame)
    block = data[:, r0 + 4:r0 + 6, c0 + 6:c0 + 8].sum(axis=(1, 2))
    np.testing.assert_allclose(ds.intensity[:, 2, 3], block)
    assert ds.metadata["provenance"]["window_raw"] == {"start": [0, r0, c0], "stop": [N, r0 + 16, c0 + 20],
                                                       "bin": [1, 2, 2]}


def test_plain_array_with_geometry_in_the_source(tmp_path):
    """A cohere/PyNX-style data.npz (stack + mask, nonzero = bad) with the geometry from [source]."""
    stack, _ = _write_scan(tmp_path)
    data = stack.transpose(0, 2, 1)  # as another program stored it, already in the data frame
    mask = np.zeros(data.shape[1:], np.uint8)
    mask[3, 4] = 1
    np.savez(tmp_path / "data.npz", data=data, mask=mask)
    positions = {"theta": 15.2, "chi": 90.0, "phi": -5.0, "delta": 32.174, "gamma": 12.6346}
    source = SourceConfig(beamline="34idc", path=str(tmp_path / "data.npz"), energy_eV=9000.0,
                          detector_distance_m=0.5, positions_deg=positions, rocking_step_deg=STEP)
    ds = prepare_dataset(source, ReflectionConfig("Au", (1, 1, 1)), PrepareConfig(crop_shape=(32, 32)))
    prov = ds.metadata["provenance"]
    assert ds.intensity.shape == (N, 32, 32) and prov["raw"]["metadata"]["reader"] == "array"
    assert prov["rocking"]["method"] == "nominal" and prov["rocking"]["max_step_deviation"] < 1e-9
    assert prov["corrections"]["bad_pixels_given"] == 1 and prov["corrections"]["seam_rows"] == []
    # without detector_roi the frames' centre pixel is on the nominal kh: 2θ there = δ/γ's 2θ
    full = prepare_dataset(source, ReflectionConfig("Au", (1, 1, 1)), PrepareConfig())
    assert np.degrees(full.geometry.two_theta_rad) == pytest.approx(34.32, abs=0.01)
    # the 2θ check is made at the Bragg peak's pixel, wherever the crop puts the data's centre
    cropped_tth = ds.metadata["provenance"]["two_theta"]["measured_deg"]
    assert cropped_tth == pytest.approx(np.degrees(ds.geometry.two_theta_rad), abs=1e-6)
    assert full.metadata["provenance"]["two_theta"]["measured_deg"] == pytest.approx(cropped_tth, abs=1e-4)
    with pytest.raises(ValueError, match="rocking_step_deg"):
        prepare_dataset(SourceConfig(beamline="34idc", path=str(tmp_path / "data.npz"), energy_eV=9000.0,
                                     detector_distance_m=0.5, positions_deg=positions),
                        ReflectionConfig("Au", (1, 1, 1)), PrepareConfig())
    with pytest.raises(ValueError, match="energy_eV"):
        prepare_dataset(SourceConfig(beamline="34idc", path=str(tmp_path / "data.npz"), detector_distance_m=0.5,
                                     positions_deg=positions, rocking_step_deg=STEP),
                        ReflectionConfig("Au", (1, 1, 1)), PrepareConfig())
