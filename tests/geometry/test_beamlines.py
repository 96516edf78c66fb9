"""APS 34-ID-C geometry: lab-frame convention, cross-check with xrayutilities, bad input."""

import numpy as np
import pytest
import xrayutilities as xu

from dynbcdi.geometry import DIFFRACTOMETERS, GridFrame, aps34idc_geometry, diffractometer_geometry, generic_geometry

LAB = GridFrame(x=np.array([1.0, 0, 0]), y=np.array([0, 1.0, 0]), z=np.array([0, 0, 1.0]))
SHAPE, PIXEL, DIST = (32, 40), 55e-6, 2.5  # small crop of the Timepix at the paper's 2.5 m


def geo34(delta_deg, gamma_deg, scan, energy=10000.0, **kw):
    return aps34idc_geometry(energy, np.radians(delta_deg), np.radians(gamma_deg), scan, SHAPE, PIXEL, DIST, **kw)


@pytest.mark.parametrize("delta,gamma", [(1.0, 0.0), (0.0, 1.0), (30.0, 0.0), (0.0, 30.0), (25.0, 12.0)])
def test_kh_direction_convention(delta, gamma, scan):
    g = geo34(delta, gamma, scan)
    d, gm = np.radians(delta), np.radians(gamma)
    expected = np.array([np.sin(d) * np.cos(gm), np.sin(gm), np.cos(d) * np.cos(gm)])
    np.testing.assert_allclose(g.kh / g.k_norm, expected, atol=1e-14)
    np.testing.assert_allclose(g.k0 / g.k_norm, [0, 0, 1], atol=0)
    assert np.linalg.norm(g.kh - g.k0 - g.h) <= 1e-9 * np.linalg.norm(g.h)
    if gamma == 0:  # pure δ: kh stays in the horizontal plane, rocking about vertical +y
        assert g.kh[1] == 0 and g.h[1] == 0
        np.testing.assert_allclose(g.rocking_axis, [0, 1, 0], atol=0)
    if delta == 0:  # pure γ: kh in the vertical plane; θ about y then moves q ⟂ kh only
        assert g.kh[0] == 0
        with pytest.raises(ValueError, match="singular"):
            g.realspace_basis((scan.size, *SHAPE))


def test_detector_orientation_34idc(scan):
    g = geo34(1e-3, 0.0, scan)  # δ = γ = 0 exactly would put the detector in the direct beam
    # Timepix at δ = γ ≈ 0: rows along +x, columns along −y (cohere pixelorientation ('x+', 'y-')).
    np.testing.assert_allclose(g.detector_row_dir, [1, 0, 0], atol=1e-4)
    np.testing.assert_allclose(g.detector_col_dir, [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(np.cross(g.detector_col_dir, g.detector_row_dir), g.kh / g.k_norm, atol=1e-12)


@pytest.mark.parametrize("delta,gamma", [(32.0, 0.0), (28.0, 9.0), (-30.0, 5.0)])
def test_q_matches_xrayutilities(delta, gamma):
    """Exact per-pixel q against the beamline software's own library (xrayutilities QConversion).

    xrayutilities returns q in the sample frame at θ = Δθ_j; at θ_c = 0 that is R(Δθ_j)⁻¹(k' − k0),
    i.e. our crystal-frame Q + h. Agreement to 1e-9 relative (xrayutilities' own λ constants differ
    from CODATA-2018 at ~1e-9).
    """
    energy = 9000.0
    scan = np.radians(np.linspace(-0.3, 0.3, 5))
    g = geo34(delta, gamma, scan, energy=energy)
    p = DIFFRACTOMETERS["34idc"]
    qc = xu.experiment.QConversion(p.sample_circles, p.detector_circles, p.incident_dir, en=energy)
    qc.init_area(*p.pixel_directions, cch1=SHAPE[0] // 2, cch2=SHAPE[1] // 2, Nch1=SHAPE[0], Nch2=SHAPE[1],
                 distance=DIST, pwidth1=PIXEL, pwidth2=PIXEL)
    xu_q = np.stack(qc.area(np.degrees(scan), 0.0, 0.0, delta, gamma), axis=-1) * 1e10  # 1/Å → rad/m
    j, r, c = np.meshgrid(np.arange(scan.size), np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    if delta < 0:
        # Motor +θ about +y decreases the glancing angle here: stored as axis −y, angles −θ.
        np.testing.assert_allclose(g.rocking_axis, [0, -1, 0], atol=0)
        np.testing.assert_allclose(g.rocking_angles_rad, -scan, atol=0)
    ours = g.q_of_index(j, r, c, frame=LAB) + g.h
    np.testing.assert_allclose(ours, xu_q, rtol=0, atol=1e-9 * np.linalg.norm(g.h))


def test_generic_and_34idc_agree(reflection, scan):
    """γ = 0, δ = 2θB, rocking about vertical y: the same scattering as the generic horizontal set-up."""
    gen = generic_geometry(reflection, scan, SHAPE, PIXEL, DIST)
    bl = aps34idc_geometry(reflection.energy_eV, 2 * reflection.bragg_angle_rad, 0.0, scan, SHAPE, PIXEL, DIST,
                           h_norm=reflection.h_norm)
    # Both use the lab frame of 34-ID-C and the same λ: Δq agrees vector by vector.
    np.testing.assert_allclose(bl.dq_lab(), gen.dq_lab(), rtol=0, atol=1e-9 * reflection.h_norm)
    np.testing.assert_allclose(np.linalg.norm(bl.dq_lab(), axis=1), np.linalg.norm(gen.dq_lab(), axis=1),
                               rtol=1e-9, atol=1e-6)
    # Frame-independent sampling: voxel volume and the z step of the default grids.
    shape = (scan.size, *SHAPE)
    assert abs(np.linalg.det(bl.realspace_basis(shape))) == pytest.approx(
        abs(np.linalg.det(gen.realspace_basis(shape))), rel=1e-9)
    assert bl.grid_spacing_m()[0] == pytest.approx(gen.grid_spacing_m()[0], rel=1e-9)
    # The detector is turned by 90° about kh between them (34-ID-C columns vertical).
    np.testing.assert_allclose(np.abs(bl.detector_col_dir @ gen.detector_row_dir), 1.0, rtol=1e-12)


def test_h_norm_mismatch_reports_angles(reflection, scan):
    with pytest.raises(ValueError, match=r"2θ = 40\.0000°.*2θB = 44\.7\d*°.*mismatch -4\.7\d*°"):
        aps34idc_geometry(8000.0, np.radians(40.0), 0.0, scan, SHAPE, PIXEL, DIST, h_norm=reflection.h_norm)
    with pytest.raises(ValueError, match="Bragg cut-off"):
        aps34idc_geometry(3000.0, np.radians(40.0), 0.0, scan, SHAPE, PIXEL, DIST, h_norm=reflection.h_norm)


def test_rocking_about_inner_circle_needs_outer_angles(scan):
    with pytest.raises(ValueError, match=r"missing outer sample angles.*theta.*chi"):
        geo34(30.0, 0.0, scan, rocking_circle="phi")
    # φ about +y behind χ = 90° about −z: the φ axis turns to R_-z(90°)·ŷ = +x̂.
    g = geo34(30.0, 10.0, scan, rocking_circle="phi", sample_angles_rad={"theta": 0.0, "chi": np.pi / 2})
    np.testing.assert_allclose(np.abs(g.rocking_axis), [1, 0, 0], atol=1e-12)


@pytest.mark.parametrize("kw,msg", [
    ({"energy": -8000.0}, r"energy_eV.*-8000"),
    ({"rocking_circle": "omega"}, "omega"),
])
def test_bad_input(scan, kw, msg):
    with pytest.raises(ValueError, match=msg):
        geo34(30.0, 0.0, scan, **kw)


def test_bad_distances_and_names(scan):
    with pytest.raises(ValueError, match=r"pixel_size_m.*-5\.5e-05"):
        aps34idc_geometry(9000.0, 0.5, 0.0, scan, SHAPE, -PIXEL, DIST)
    with pytest.raises(ValueError, match=r"detector_distance_m.*-2\.5"):
        aps34idc_geometry(9000.0, 0.5, 0.0, scan, SHAPE, PIXEL, -DIST)
    with pytest.raises(ValueError, match="direct beam"):
        aps34idc_geometry(9000.0, 0.0, 0.0, scan, SHAPE, PIXEL, DIST)
    with pytest.raises(ValueError, match="unknown diffractometer"):
        diffractometer_geometry("esrf_id99", 9000.0, {"delta": 0.5}, scan, SHAPE, PIXEL, DIST)
    with pytest.raises(ValueError, match="unknown detector angles"):
        diffractometer_geometry("34idc", 9000.0, {"delta": 0.5, "gamma": 0.0, "nu": 1.0}, scan, SHAPE, PIXEL, DIST)


@pytest.mark.parametrize("delta", [30.0, -30.0])
def test_stored_angles_increase_glancing_angle(delta, scan):
    """Whatever the motor sense, positive stored angles increase the glancing angle (refraction sign)."""
    g = geo34(delta, 3.0, scan)
    hj = g.h + g.dq_lab()
    glancing = np.arcsin(-(hj @ g.k0) / (np.linalg.norm(hj, axis=1) * g.k_norm))
    order = np.argsort(g.rocking_angles_rad)  # for δ < 0 the stored angles are −(motor offsets)
    assert np.all(np.diff(glancing[order]) > 0)
    assert np.all(np.sign(g.rocking_angles_rad) == (1 if delta > 0 else -1) * np.sign(scan))
