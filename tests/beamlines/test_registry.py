"""Beamline registry: entries round-trip through TOML, detector orientations, crops and 2θ check."""

import dataclasses
import math
import tomllib

import numpy as np
import pytest

from dynbcdi.beamlines import (
    BEAMLINES,
    ORIENTATIONS,
    DetectorSpec,
    beamline_from_dict,
    beamline_geometry,
    beamline_to_toml,
    centre_offset_m,
    check_two_theta,
    get_beamline,
    load_beamline,
)
from dynbcdi.geometry import GridFrame
from dynbcdi.materials.susceptibility import reflection_constants

LAB = GridFrame(x=np.array([1.0, 0, 0]), y=np.array([0, 1.0, 0]), z=np.array([0, 0, 1.0]))
# hc in eV·m (CODATA 2018, exact SI): λ = HC / E.
HC_EV_M = 6.62607015e-34 * 299792458.0 / 1.602176634e-19
# Detector angles giving 2θ ≈ 34° on each diffractometer (in-plane circle, out-of-plane circle).
ANGLES = {"34idc": {"delta": 32.174, "gamma": 12.6346, "theta": 0.0, "chi": 90.0, "phi": -5.0},
          "id01": {"nu": 12.0, "delta": 31.0, "mu": 0.0, "eta": 15.0, "phi": 0.0},
          "p10": {"gam": 10.0, "del": 32.0, "mu": 0.0, "om": 16.0, "chi": 0.0, "phi": 0.0}}


@pytest.mark.parametrize("name", sorted(BEAMLINES))
def test_entry_round_trips_through_toml(name, tmp_path):
    entry = get_beamline(name)
    text = beamline_to_toml(entry)
    assert beamline_from_dict(tomllib.loads(text)) == entry
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    assert load_beamline(path) == entry
    assert entry.source and entry.diffractometer.source  # every convention is cited


def test_unknown_names_and_keys(tmp_path):
    with pytest.raises(ValueError, match=r"unknown beamline 'esrf_bm99'; known: \['34idc', 'id01', 'p10'\]"):
        get_beamline("esrf_bm99")
    text = beamline_to_toml(BEAMLINES["34idc"]).replace('reader = "spec_tiff"', 'reader = "spec_tiff"\nfoo = 1')
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ValueError, match=r"bad\.toml.*unknown config key.*foo"):
        load_beamline(tmp_path / "bad.toml")
    text = beamline_to_toml(BEAMLINES["34idc"]).replace('energy_unit = "keV"', 'energy_unit = "MeV"')
    with pytest.raises(ValueError, match="energy_unit 'MeV'"):
        beamline_from_dict(tomllib.loads(text))
    with pytest.raises(ValueError, match="motors must name exactly"):
        dataclasses.replace(BEAMLINES["34idc"], motors={"theta": ("th",)})


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_orientation_commutes_with_roi(orientation):
    """Cutting the ROI in the file frame then orienting = orienting then cutting the mapped ROI."""
    det = DetectorSpec("d", 55e-6, (6, 9), orientation=orientation)
    full = np.arange(54.0).reshape(6, 9)
    roi = (1, 4, 2, 7)
    r0, r1, c0, c1 = roi
    d0, d1, e0, e1 = det.roi_to_data(roi)
    np.testing.assert_array_equal(det.to_data(full[r0:r1, c0:c1]), det.to_data(full)[d0:d1, e0:e1])
    assert det.to_data(full).shape == det.data_shape
    with pytest.raises(ValueError, match="not inside"):
        det.roi_to_data((0, 7, 0, 9))


def test_34idc_frames_offset_counts_the_seam():
    det = BEAMLINES["34idc"].detector
    assert det.frames_offset_px((0, 256, 0, 256)) == (-260.0, -261.0)
    assert det.frames_offset_px((300, 400, 256, 300)) == (300 + 4 - 260, 0.0)
    assert det.gaps_inside((200, 300, 0, 256)) == ((0, 56, 4),)


@pytest.mark.parametrize("name", sorted(BEAMLINES))
def test_every_entry_builds_a_right_handed_geometry(name):
    """BraggGeometry insists on col × row = +k̂h; the 2θ follows the detector circles."""
    bl = get_beamline(name)
    g = beamline_geometry(bl, 9000.0, ANGLES[name], bl.rocking_motor, np.radians([-0.01, 0.0, 0.01]),
                          (64, 64), bl.detector.pixel_size_m, 1.0)
    np.testing.assert_allclose(np.cross(g.detector_col_dir, g.detector_row_dir), g.kh / g.k_norm, atol=1e-12)
    a, b = (math.radians(ANGLES[name][n]) for n in bl.diffractometer.detector_names)
    # Two orthogonal detector circles: cos 2θ = cos a · cos b.
    assert math.degrees(g.two_theta_rad) == pytest.approx(math.degrees(math.acos(math.cos(a) * math.cos(b))), abs=1e-9)


@pytest.mark.parametrize("start,binning", [((40, -30), (1, 1)), ((-60, 75), (2, 2))])
def test_centre_offset_follows_crop_and_binning(start, binning):
    """q per pixel of a cropped (binned) geometry = q of the un-cropped geometry at the same pixels.

    Un-cropped: 256² detector, nominal kh on pixel (128, 128). Crop: 32² (binned) pixels from
    ``start`` relative to pixel (0, 0). The crop's geometry turns the detector plane by α (up to
    0.6° here) to stay ⟂ its kh, so a point u from the crop centre is seen at an angle that differs
    by ≈ α (u/D)² from the flat detector's: α n² p / D ≈ 5e-3 of a pixel at n = 64 unbinned pixels,
    p = 55 µm, D = 0.5 m. Tolerance 1e-2 pixel. Binned: the mean q of the 2×2 block.
    """
    bl = get_beamline("34idc")
    p, dist, full = 55e-6, 0.5, (256, 256)
    rocking = np.radians(np.linspace(-0.02, 0.02, 5))
    g_full = beamline_geometry(bl, 9000.0, ANGLES["34idc"], "theta", rocking, full, p, dist)
    shape = (32, 32)
    frames_offset = (-128.0, -128.0)  # frame pixel (0, 0) relative to the pixel on the nominal kh
    start_abs = (start[0] + 128, start[1] + 128)
    off = centre_offset_m(frames_offset, start_abs, shape, binning, p)
    g_crop = beamline_geometry(bl, 9000.0, ANGLES["34idc"], "theta", rocking, shape, p * binning[0], dist,
                               centre_offset_m=off)
    j, r, c = np.meshgrid(np.arange(5), np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    # q_of_index is relative to each geometry's own h = kh − k0: compare absolute k' − k0 (rotated back).
    q_crop = g_crop.q_of_index(j, r, c, frame=LAB) + g_crop.h
    blocks = [g_full.q_of_index(j, start_abs[0] + binning[0] * r + a, start_abs[1] + binning[1] * c + b, frame=LAB)
              + g_full.h for a in range(binning[0]) for b in range(binning[1])]
    q_full = np.mean(blocks, axis=0)
    err_px = np.linalg.norm(q_crop - q_full, axis=-1) / g_full.pixel_dq
    assert err_px.max() < 1e-2
    # Without the offset the crop's q would be off by the whole crop position.
    g_wrong = beamline_geometry(bl, 9000.0, ANGLES["34idc"], "theta", rocking, shape, p * binning[0], dist)
    q_wrong = g_wrong.q_of_index(j, r, c, frame=LAB) + g_wrong.h
    assert np.linalg.norm(q_wrong - q_full, axis=-1).min() > 20 * g_full.pixel_dq


def test_two_theta_report_scan54_numbers():
    """Au (111) at 9 keV against δ = 32.174°, γ = 12.6346° (scan 54), Bragg's law by hand."""
    refl = reflection_constants("Au", (1, 1, 1), 9000.0)
    lam = HC_EV_M / 9000.0
    d = 4.0782e-10 / math.sqrt(3.0)  # Au a = 4.0782 Å (xrayutilities' Au, the library's source)
    theta_b = math.asin(lam / (2 * d))
    two_theta_m = math.acos(math.cos(math.radians(32.174)) * math.cos(math.radians(12.6346)))
    g = beamline_geometry("34idc", 9000.0, ANGLES["34idc"], "theta", np.radians([-0.01, 0.0, 0.01]), (64, 64),
                          55e-6, 0.5)
    report = check_two_theta(g, refl)
    assert report.measured_deg == pytest.approx(math.degrees(two_theta_m), abs=1e-9)
    assert report.expected_deg == pytest.approx(math.degrees(2 * theta_b), abs=1e-6)
    assert report.measured_deg == pytest.approx(34.3163, abs=1e-4)
    assert report.expected_deg == pytest.approx(34.0202, abs=1e-3)
    ratio = math.sin(theta_b) / math.sin(two_theta_m / 2) - 1
    assert report.lattice_offset == pytest.approx(ratio, rel=1e-4)
    assert report.energy_offset_eV == pytest.approx(9000.0 * ratio, rel=1e-4)
    assert report.lattice_offset == pytest.approx(-8.37e-3, rel=1e-2)  # d from the angles is 0.84 % short
    assert not report.negligible and "mismatch +0.296" in report.summary()
    same = check_two_theta(math.degrees(two_theta_m), refl)  # a 2θ in degrees, at the reflection's energy
    assert same.mismatch_deg == pytest.approx(report.mismatch_deg, abs=1e-9)


def test_two_theta_gross_mismatch_is_an_error():
    refl = reflection_constants("Au", (1, 1, 1), 9000.0)
    with pytest.raises(ValueError, match=r"gross 2θ mismatch.*Au \(1, 1, 1\).*mismatch \+5\.9798"):
        check_two_theta(40.0, refl)
    with pytest.raises(ValueError, match=r"mismatch \+5\.9798.* > 1\.0°"):
        beamline_geometry("34idc", 9000.0, {"delta": 40.0, "gamma": 0.0}, "theta", np.radians([-0.01, 0.0, 0.01]),
                          (64, 64), 55e-6, 0.5, h_norm=refl.h_norm)
    with pytest.raises(ValueError, match=r"missing detector circle position 'gamma'"):
        beamline_geometry("34idc", 9000.0, {"delta": 34.0}, "theta", [0.0], (64, 64), 55e-6, 0.5)
