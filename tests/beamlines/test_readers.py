"""Beamline readers on small synthetic files written in each beamline's own layout."""

import h5py
import numpy as np
import pytest
import tifffile

from dynbcdi.config import from_dict
from dynbcdi.io.readers import SourceConfig, read_scan

N = 5
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------- APS 34-ID-C: spec + TIFF
def _spec_text(command="ascan  th -0.1 0.1  4 0.5", columns=("Theta", "Seconds", "Monitor"), motors=None,
               uimr5="100 8 40 6 1"):
    motors = motors or {"Delta": 32.0, "Theta": -0.1, "Chi": 90.0, "Phi": -5.0, "Mu": 0.0, "Gamma": 12.5,
                        "camdist": 500.0, "Energy": 9.0}
    names = list(motors)
    rows = "\n".join(" ".join(f"{v:g}" for v in (-0.1 + 0.05 * j + 1e-5 * j * j, 0.5, 1000 + j)[:len(columns)])
                     for j in range(N))
    header = "\n".join([f"#UIMDET 34idcTIM2:", f"#UIMR5  {uimr5}"]) if uimr5 else ""
    return (f"#F test.spec\n#E 1580609738\n#D Sat Feb 01 20:15:38 2020\n#C sixc  User = test\n\n"
            f"#O0 {'  '.join(names)}\n\n#S 7  {command}\n#D Sat Feb 01 20:17:06 2020\n#T 0.5  (Seconds)\n"
            f"#P0 {' '.join(f'{motors[n]:g}' for n in names)}\n{header}\n#N {len(columns)}\n"
            f"#L {'  '.join(columns)}\n{rows}\n")


@pytest.fixture
def scan34(tmp_path):
    """A 6×8 ROI (rows 40:46, cols 100:108 of the 512² TIM2) in 5 frames, dark/flat full-detector."""
    frames = RNG.integers(0, 100, size=(N, 6, 8)).astype(np.uint32)
    folder = tmp_path / "S0007"
    folder.mkdir()
    for j in (0, 1, 2, 3, 4):  # names with frame numbers; written out of order on purpose
        tifffile.imwrite(folder / f"scan_S0007_{[3, 0, 4, 1, 2][j]:05d}.tif", frames[[3, 0, 4, 1, 2][j]])
    full = np.zeros((512, 512), np.int32)
    full[42, 103] = 100
    tifffile.imwrite(tmp_path / "dark.tif", full)
    flat = RNG.uniform(0.5, 1.5, size=(512, 512)).astype(np.float32)
    tifffile.imwrite(tmp_path / "flat.tif", flat)
    (tmp_path / "test.spec").write_text(_spec_text())
    return tmp_path, frames, flat


def _source34(tmp_path, **kw):
    cfg = {"beamline": "34idc", "path": str(tmp_path / "S0007"), "spec_file": str(tmp_path / "test.spec"), "scan": 7}
    return from_dict(SourceConfig, {**cfg, **kw}, "source")


def test_spec_tiff_reads_and_transposes(scan34):
    tmp_path, frames, flat = scan34
    raw = read_scan(_source34(tmp_path, bad_pixels=str(tmp_path / "dark.tif"), flat=str(tmp_path / "flat.tif")))
    np.testing.assert_array_equal(raw.frames, frames.transpose(0, 2, 1))  # sorted by number, transposed
    assert raw.energy_eV == 9000.0 and raw.detector_distance_m == 0.5  # keV and mm of the beamline entry
    assert raw.positions_deg["delta"] == 32.0 and raw.positions_deg["gamma"] == 12.5
    np.testing.assert_allclose(raw.rocking_positions_deg, -0.1 + 0.05 * np.arange(N) + 1e-5 * np.arange(N) ** 2)
    np.testing.assert_array_equal(raw.monitor, 1000 + np.arange(N))
    assert raw.metadata["detector_roi_file"] == (40, 46, 100, 108)  # #UIMR5: minX sizeX minY sizeY
    np.testing.assert_array_equal(raw.flat, flat[40:46, 100:108].T)
    assert raw.bad_pixels.shape == (8, 6) and np.argwhere(raw.bad_pixels).tolist() == [[3, 2]]
    # Data frame = transposed file frame: ROI origin (row 40, col 100) → (100, 40); centre (256, 256) + seams.
    assert raw.frames_offset_px == (100 - 260, 40 - 261)
    assert raw.metadata["command_parsed"]["step"] == pytest.approx(0.05)


def test_spec_tiff_overrides_are_used(scan34):
    tmp_path, _, _ = scan34
    raw = read_scan(_source34(tmp_path, rocking_step_deg=0.04, energy_eV=8000.0, positions_deg={"gamma": 10.0},
                              detector_roi=[0, 6, 0, 8]))
    np.testing.assert_allclose(raw.rocking_positions_deg, -0.1 + 0.04 * np.arange(N))  # start from the file
    assert raw.metadata["rocking_step_overridden"] and raw.energy_eV == 8000.0 and raw.positions_deg["gamma"] == 10.0
    assert raw.metadata["detector_roi_file"] == (0, 6, 0, 8)


def test_spec_tiff_errors(scan34, tmp_path):
    path, _, _ = scan34
    (path / "test.spec").write_text(_spec_text(motors={"Delta": 32.0, "Theta": 0.0, "Chi": 90.0, "Phi": -5.0,
                                                       "Energy": 9.0, "camdist": 500.0}))
    with pytest.raises(ValueError, match=r"test\.spec scan 7: no position for gamma \(file names \['Gamma'\]\)"):
        read_scan(_source34(path))
    (path / "test.spec").write_text(_spec_text(uimr5=None))
    with pytest.raises(ValueError, match=r"frames of shape \(6, 8\) are a region of the 34idcTIM2 detector.*"
                                         r"source\.detector_roi"):
        read_scan(_source34(path))
    with pytest.raises(ValueError, match=r"detector ROI \(0, 6, 0, 9\) is 6×9 pixels but the frames are 6×8"):
        read_scan(_source34(path, detector_roi=[0, 6, 0, 9]))
    tifffile.imwrite(path / "small.tif", np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"small\.tif: dark image has shape \(4, 4\); expected the full"):
        read_scan(_source34(path, dark=str(path / "small.tif"), detector_roi=[0, 6, 0, 8]))
    with pytest.raises(ValueError, match=r"no scan 8"):
        read_scan(_source34(path, scan=8))
    with pytest.raises(FileNotFoundError, match="TIFF folder not found"):
        read_scan(_source34(path, path=str(path / "nope")))
    with pytest.raises(ValueError, match=r"unknown config key.*source\.bogus"):
        from_dict(SourceConfig, {"beamline": "34idc", "path": "x", "bogus": 1}, "source")
    with pytest.raises(ValueError, match=r"unknown beamline 'aps99'"):
        from_dict(SourceConfig, {"beamline": "aps99", "path": "x"}, "source")


# ---------------------------------------------------------------------------- ESRF ID01: BLISS HDF5
def _write_bliss(path, drop=None):
    frames = RNG.integers(0, 50, size=(N, 7, 9)).astype(np.uint16)
    eta = np.linspace(10.0, 10.4, N)
    with h5py.File(path, "w") as f:
        g = f.create_group("3.1")
        g["title"] = "ascan eta 10 10.4 4 0.1"
        g["measurement/mpxgaas"] = frames
        g["measurement/mon"] = np.full(N, 7.0)
        pos = {"mu": 0.0, "eta": eta, "phi": 1.0, "nu": 12.0, "delta": 31.0}
        for k, v in pos.items():
            if k != drop:
                g[f"instrument/positioners/{k}"] = v
        g["instrument/mpxgaas/distance"] = 0.83
        g["instrument/monochromator/Energy"] = 9.5
    return frames, eta


def test_id01_bliss(tmp_path):
    frames, eta = _write_bliss(tmp_path / "sample.h5")
    raw = read_scan(SourceConfig(beamline="id01", path=str(tmp_path / "sample.h5"), scan=3,
                                 detector_roi=(2, 9, 10, 19)))
    np.testing.assert_array_equal(raw.frames, frames.transpose(0, 2, 1))  # columns outboard: transposed
    assert raw.rocking_motor == "eta" and raw.energy_eV == 9500.0 and raw.detector_distance_m == 0.83
    np.testing.assert_allclose(raw.rocking_positions_deg, eta)
    assert raw.positions_deg["nu"] == 12.0 and raw.positions_deg["delta"] == 31.0
    np.testing.assert_array_equal(raw.monitor, 7.0)
    assert raw.frames_offset_px == (10 - 258.0, 2 - 258.0)  # data frame = transposed file frame


def test_id01_errors(tmp_path):
    _write_bliss(tmp_path / "sample.h5", drop="nu")
    src = SourceConfig(beamline="id01", path=str(tmp_path / "sample.h5"), scan=3, detector_roi=(0, 7, 0, 9))
    with pytest.raises(ValueError, match=r"sample\.h5 scan 3\.1: no position for nu"):
        read_scan(src)
    with pytest.raises(ValueError, match=r"sample\.h5: no scan group '4\.1'"):
        read_scan(SourceConfig(beamline="id01", path=str(tmp_path / "sample.h5"), scan=4))
    with pytest.raises(ValueError, match=r"sample\.h5 scan 3\.1: no frames dataset '3\.1/measurement/eiger'"):
        read_scan(SourceConfig(beamline="id01", path=str(tmp_path / "sample.h5"), scan=3, detector="eiger"))
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"text\.h5: not an HDF5/CXI file \(no HDF5 signature\), expected a beamline scan file"):
        read_scan(SourceConfig(beamline="id01", path=str(tmp_path / "text.h5"), scan=3))


# ---------------------------------------------------------------------------- PETRA III P10: .fio + Eiger
def _write_p10(root, drop=None):
    folder = root / "align_00012"
    (folder / "e4m").mkdir(parents=True)
    om = np.linspace(16.0, 16.2, N)
    params = {"del": 32.0, "gam": 10.0, "om": 16.0, "mu": 0.0, "chi": 0.0, "phi": 0.0, "fmbenergy": 9000.0,
              "_distance": 1830.0}
    lines = ["!", "! Comments", "%c", "ascan om 16.0 16.2 4 1.0", "user p10user Acquisition started at x", "!",
             "! Parameter", "%p"] + [f"{k} = {v}" for k, v in params.items() if k != drop] + [
             "!", "! Data", "%d", " Col 1 om DOUBLE", " Col 2 ipetra DOUBLE"] + [
             f" {o} {100.0 + j}" for j, o in enumerate(om)]
    (folder / "align_00012.fio").write_text("\n".join(lines) + "\n")
    frames = RNG.integers(0, 50, size=(N, 6, 4)).astype(np.uint32)
    with h5py.File(folder / "e4m" / "align_00012_data_000001.h5", "w") as f:
        f["entry/data/data"] = frames[:3]
    with h5py.File(folder / "e4m" / "align_00012_data_000002.h5", "w") as f:
        f["entry/data/data"] = frames[3:]
    with h5py.File(folder / "e4m" / "align_00012_master.h5", "w") as f:
        f["entry/data/data_000001"] = h5py.ExternalLink("align_00012_data_000001.h5", "entry/data/data")
        f["entry/data/data_000002"] = h5py.ExternalLink("align_00012_data_000002.h5", "entry/data/data")
    return folder, frames, om


def test_p10_fio_and_eiger(tmp_path):
    folder, frames, om = _write_p10(tmp_path)
    raw = read_scan(SourceConfig(beamline="p10", path=str(folder), detector_roi=(0, 6, 0, 4)))
    np.testing.assert_array_equal(raw.frames, frames)  # both data files, in order, as stored
    assert raw.rocking_motor == "om" and raw.energy_eV == 9000.0 and raw.detector_distance_m == pytest.approx(1.83)
    np.testing.assert_allclose(raw.rocking_positions_deg, om)
    np.testing.assert_array_equal(raw.monitor, 100.0 + np.arange(N))
    assert raw.positions_deg["del"] == 32.0 and raw.metadata["command"] == "ascan om 16.0 16.2 4 1.0"


def test_p10_errors(tmp_path):
    folder, _, _ = _write_p10(tmp_path, drop="_distance")
    with pytest.raises(ValueError, match=r"align_00012\.fio: no detector_distance_m \(detector distance in mm\)"):
        read_scan(SourceConfig(beamline="p10", path=str(folder), detector_roi=(0, 6, 0, 4)))
    (folder / "e4m" / "align_00012_data_000002.h5").unlink()
    with pytest.raises(ValueError, match=r"_master\.h5: cannot read frames dataset 'entry/data/data_000002'"):
        read_scan(SourceConfig(beamline="p10", path=str(folder), detector_roi=(0, 6, 0, 4), detector_distance_m=1.8))


# ---------------------------------------------------------------------------- generic HDF5 / NeXus
def test_nexus_generic(tmp_path):
    frames = RNG.integers(0, 9, size=(N, 512, 512)).astype(np.uint8)
    with h5py.File(tmp_path / "scan.nxs", "w") as f:
        f["entry/data/data"] = frames
        f["entry/sample/theta"] = np.linspace(-0.1, 0.1, N)
        f["entry/instrument/delta"] = 32.0
        f["entry/instrument/energy"] = 9.0
    paths = {"theta": "entry/sample/theta", "delta": "entry/instrument/delta", "energy": "entry/instrument/energy"}
    src = SourceConfig(beamline="34idc", reader="nexus", path=str(tmp_path / "scan.nxs"), data_path="entry/data/data",
                       motor_paths=paths, positions_deg={"gamma": 12.0, "chi": 90.0, "phi": 0.0},
                       detector_distance_m=0.5)
    raw = read_scan(src)
    np.testing.assert_array_equal(raw.frames, frames.transpose(0, 2, 1))
    assert raw.energy_eV == 9000.0 and raw.positions_deg["delta"] == 32.0 and raw.frames_offset_px == (-260, -261)
    bad = SourceConfig(beamline="34idc", reader="nexus", path=str(tmp_path / "scan.nxs"), data_path="entry/data/data",
                       motor_paths={**paths, "delta": "entry/instrument/del"}, positions_deg={"gamma": 12.0},
                       detector_distance_m=0.5)
    with pytest.raises(ValueError, match=r"scan\.nxs: no dataset 'entry/instrument/del' for motor_paths\.delta"):
        read_scan(bad)
