"""Sample builders (shapes, displacement fields) and noise/defect models."""

from __future__ import annotations

import numpy as np
import pytest

from dynbcdi.simulate import displacement as disp
from dynbcdi.simulate import noise, shapes

SPACING = (10e-9, 10e-9, 10e-9)


def test_cube_volume_and_orientation():
    # A 21-voxel-wide axis-aligned cube contains exactly 21^3 voxel centres (sharp edges).
    s = shapes.cube((32, 32, 32), SPACING, 21 * 10e-9)
    assert s.shape == (32, 32, 32)
    assert s.sum() == 21**3
    # Rotated by 45° about z: the x-extent grows by sqrt(2) (within one voxel).
    r = shapes.rotation_with_axis(np.array([1.0, 1.0, 0.0]), np.array([-1.0, 1.0, 0.0]))
    s45 = shapes.cube((48, 48, 48), SPACING, 200e-9, rotation=r)
    assert shapes.extent_along(s45, SPACING, [1, 0, 0]) == pytest.approx(200e-9 * np.sqrt(2), abs=20e-9)
    assert shapes.extent_along(s45, SPACING, [1, 1, 0]) == pytest.approx(200e-9, abs=20e-9)
    # The volume is preserved by the rotation to within the voxelisation error (~5 % here).
    assert s45.sum() * 1e-24 == pytest.approx((200e-9) ** 3, rel=0.05)


def test_smooth_edges_conserve_volume_and_move_subvoxel():
    # tanh edges: the summed shape equals the geometric volume (symmetric profile) to 1 %.
    s = shapes.sphere((40, 40, 40), SPACING, 120e-9, smooth_m=5e-9)
    assert 0 <= s.min() and s.max() <= 1
    assert s.sum() * 1e-24 == pytest.approx(4 / 3 * np.pi * (120e-9) ** 3, rel=0.01)
    a = shapes.cube((24, 24, 24), SPACING, 100e-9, smooth_m=5e-9).sum()
    b = shapes.cube((24, 24, 24), SPACING, 103e-9, smooth_m=5e-9).sum()
    assert b > a  # a 0.3-voxel size change is visible (sharp edges would not move)


def test_polyhedron_octahedron_and_bad_input():
    normals = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    s = shapes.polyhedron((40, 40, 40), SPACING, normals, [100e-9] * 8)
    # Octahedron |x|+|y|+|z| <= d·sqrt(3): volume (4/3)(d√3)^3, voxelised within 5 %.
    assert s.sum() * 1e-24 == pytest.approx(4 / 3 * (100e-9 * np.sqrt(3)) ** 3, rel=0.05)
    with pytest.raises(ValueError, match="distances"):
        shapes.polyhedron((8, 8, 8), SPACING, normals, [-1.0] * 8)
    with pytest.raises(ValueError, match="coplanar"):
        shapes.parallelepiped((8, 8, 8), SPACING, np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]]) * 1e-8)
    with pytest.raises(ValueError, match="spacing_m"):
        shapes.sphere((8, 8, 8), (0, 1, 1), 1.0)
    with pytest.raises(ValueError, match="mask values"):
        shapes.from_mask(np.full((4, 4, 4), 2.0))


def test_displacement_fields():
    shape = (16, 16, 16)
    u = disp.uniform_strain(shape, SPACING, 1e-3)
    x, y, z = shapes.grid_coordinates(shape, SPACING)
    np.testing.assert_allclose(u[0], np.broadcast_to(1e-3 * x, shape))
    np.testing.assert_allclose(u[2], np.broadcast_to(1e-3 * z, shape))
    # Eshelby inclusion: continuous at r = a and 1/r^2 outside.
    a = 40e-9
    ui = disp.point_inclusion((1, 1, 64), SPACING, a, misfit=0.01)
    ux = ui[0, 0, 0]
    r = (np.arange(64) - 32) * 10e-9
    c = 0.01 * (4 / 3) / (3 * (2 / 3))
    expected = np.where(np.abs(r) <= a, c * r, c * a**3 * np.sign(r) / np.maximum(np.abs(r), a) ** 2)
    np.testing.assert_allclose(ux, expected, atol=1e-20)
    # Corner contact: largest at the corner, along the requested direction.
    edges = shapes.cube_edges(100e-9)
    corner = disp.parallelepiped_corner(edges, toward=[-1, -1, -1])
    np.testing.assert_allclose(corner, [-50e-9, -50e-9, -50e-9])
    uc = disp.corner_contact(shape, SPACING, corner, 1e-10, 30e-9, direction=[0, 0, 1])
    assert np.abs(uc[:2]).max() == 0
    assert np.unravel_index(np.argmax(uc[2]), shape) == (3, 3, 3)  # nearest voxel to (-50,-50,-50) nm
    # Callable along h, and the phase phi = -h.u.
    h = np.array([0.0, 0.0, 3.0e10])
    uh = disp.from_callable(shape, SPACING, lambda x, y, z: 1e-11 * np.cos(x / 50e-9), h_dir=h)
    phi = disp.phase_from_displacement(uh, h)
    np.testing.assert_allclose(phi, np.broadcast_to(-3e10 * 1e-11 * np.cos(x / 50e-9), shape), rtol=1e-12)
    S = disp.crystal_function(shapes.sphere(shape, SPACING, 50e-9), phi)
    assert S.dtype == np.complex64 and S.shape == shape


def test_poisson_total_count_and_integers():
    rng = np.random.default_rng(1)
    i = rng.random((5, 16, 16)) ** 4
    counts = noise.poisson_noise(i, total_photons=1e6, rng=0)
    assert np.all(counts == np.round(counts)) and counts.min() >= 0
    # The total of independent Poisson counts has std sqrt(1e6) = 1e3: 5 sigma bound.
    assert abs(counts.sum() - 1e6) < 5e3
    peak = noise.scale_to_photons(i, peak_photons=1e4)
    assert peak.max() == pytest.approx(1e4)
    for bad in (0, -3.0):
        with pytest.raises(ValueError, match="photon count must be > 0"):
            noise.poisson_noise(i, total_photons=bad)
    with pytest.raises(ValueError, match="exactly one"):
        noise.scale_to_photons(i, 1.0, 1.0)


def test_detector_defects_flagged_not_zeroed():
    defects = noise.DetectorDefects(gap_rows=((7, 9),), gap_cols=((3, 4),), hot_pixels=5, hot_counts=7e5)
    valid, hot = noise.detector_valid((16, 16), defects, rng=3)
    assert hot.sum() == 5 and not np.any(valid & hot)
    assert not valid[7:9].any() and not valid[:, 3].any()
    assert valid.sum() == 16 * 16 - 2 * 16 - 14 - 5
    counts = noise.apply_defects(np.ones((2, 16, 16)), valid, hot, defects.hot_counts)
    assert np.all(counts[:, hot] == 7e5)  # hot pixels keep their (wrong) counts, flagged invalid
    assert np.all(counts[:, valid] == 1)
    with pytest.raises(ValueError, match="exceeds"):
        noise.detector_valid((16, 16), noise.DetectorDefects(gap_rows=((10, 20),)))
