"""Frame conversion: sheared detector frame → orthogonal grid → lab, against analytic positions."""

import numpy as np
import pytest
import scipy.ndimage

from dynbcdi.phasing import detector_to_grid, grid_shape_for, grid_to_lab

NM = 1e-9
# Columns: real-space step (x, y, z), metres, per detector-frame index (j, row, col). The rocking
# step is strongly sheared (x and y components), as for a rocking curve off the symmetric case.
BASIS = np.array([[3.0, 0.5, 8.0], [2.0, 8.0, 0.0], [10.0, 0.0, 0.0]]) * NM
DET_SHAPE = (24, 28, 30)
GRID_SHAPE = (26, 30, 32)
SPACING = (9.0 * NM, 7.0 * NM, 7.5 * NM)  # (dz, dy, dx)
BLOBS_XYZ = np.array([[0.0, 0.0, 0.0], [40.0, -25.0, 30.0], [-35.0, 30.0, -45.0]]) * NM
WIDTH = 12 * NM


def _detector_positions(shape=DET_SHAPE) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij"))
    return np.einsum("ck,k...->c...", BASIS, idx)  # (3, N, rows, cols), x y z in metres


def _blobs(pos: np.ndarray) -> np.ndarray:
    """Gaussian blobs with a linear phase k·r (k = (0.02, −0.03, 0.01) rad/nm)."""
    k = np.array([0.02, -0.03, 0.01]) / NM
    amp = sum(np.exp(-np.sum((pos - b[:, None, None, None]) ** 2, axis=0) / (2 * WIDTH**2)) for b in BLOBS_XYZ)
    return amp * np.exp(1j * np.einsum("c,c...->...", k, pos))


def _grid_positions(shape=GRID_SHAPE, spacing=SPACING) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*[(np.arange(n) - n // 2) * d for n, d in zip(shape, spacing)], indexing="ij")
    return np.stack([xx, yy, zz])


@pytest.mark.parametrize("interpolation", ["complex", "polar"])
def test_sheared_blobs_land_at_analytic_grid_positions(interpolation):
    obj = _blobs(_detector_positions())
    grid = detector_to_grid(obj, BASIS, GRID_SHAPE, SPACING, order=3, interpolation=interpolation)
    amp = np.abs(grid)
    labels, n = scipy.ndimage.label(amp > 0.3)
    assert n == 3
    centroids = np.array(scipy.ndimage.center_of_mass(amp * (amp > 0.05), labels, range(1, n + 1)))
    expected = BLOBS_XYZ[:, ::-1] / np.array(SPACING) + np.array(GRID_SHAPE) // 2  # (z, y, x) indices
    for c in centroids:
        # Issue 5 asks for sub-voxel accuracy; 0.2 voxel is a generous bound on the centroid bias
        # of spline interpolation of a Gaussian sampled at ≈1.1 samples per σ along j.
        assert np.min(np.linalg.norm(expected - c, axis=1)) < 0.2
    truth = _blobs(_grid_positions())
    inside = np.abs(truth) > 0.2
    # Cubic-spline error for a field sampled at ≈1.1 samples per σ: measured 0.014 (complex) and
    # 0.013 (polar) of the unit peak, phase 0.007 rad (complex); bounds at about twice that.
    assert np.max(np.abs(grid[inside] - truth[inside])) < 0.03
    assert np.max(np.abs(np.angle(grid[inside] / truth[inside]))) < 0.015


def test_zero_outside_detector_box():
    obj = np.ones(DET_SHAPE, complex)
    big = (80, 80, 80)
    grid = detector_to_grid(obj, BASIS, big, SPACING, order=0)
    pos = _grid_positions(big).reshape(3, -1)
    frac = np.linalg.solve(BASIS, pos) + (np.array(DET_SHAPE) // 2)[:, None]
    outside = np.any((frac < -0.5) | (frac > np.array(DET_SHAPE)[:, None] - 0.5), axis=0)
    assert np.all(grid.ravel()[outside] == 0)
    assert np.all(grid.ravel()[~outside & np.all((frac > 0) & (frac < np.array(DET_SHAPE)[:, None] - 1), axis=0)] == 1)


def test_grid_shape_for_covers_the_box():
    shape = grid_shape_for(BASIS, DET_SHAPE, SPACING, margin_vox=0)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in DET_SHAPE], indexing="ij")).reshape(3, -1)
    xyz = BASIS @ (corners - (np.array(DET_SHAPE) // 2)[:, None])
    zyx_index = xyz[::-1] / np.array(SPACING)[:, None] + (np.array(shape) // 2)[:, None]
    assert np.all(zyx_index >= 0) and np.all(zyx_index <= np.array(shape)[:, None] - 1)
    support = np.zeros(DET_SHAPE, bool)
    support[10:14, 12:16, 13:17] = True
    assert all(a < b for a, b in zip(grid_shape_for(BASIS, DET_SHAPE, SPACING, support), shape))


def test_grid_to_lab_rotation():
    # Grid x, y, z expressed in the lab: x_grid = y_lab, y_grid = −x_lab, z_grid = z_lab.
    rows = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    spacing = (5 * NM, 5 * NM, 5 * NM)
    obj = np.zeros((16, 16, 16), complex)
    obj[8, 8, 12] = 1.0  # grid x = +4 voxels  ->  lab y = +4 voxels
    lab = grid_to_lab(obj, rows, spacing)
    assert np.unravel_index(np.argmax(np.abs(lab)), lab.shape) == (8, 12, 8)
    assert np.abs(lab).max() == pytest.approx(1.0)


def test_invalid_arguments_raise():
    obj = np.ones(DET_SHAPE, complex)
    with pytest.raises(ValueError, match="singular"):
        detector_to_grid(obj, np.zeros((3, 3)) + NM, GRID_SHAPE, SPACING)
    with pytest.raises(ValueError, match="spacing_m"):
        detector_to_grid(obj, BASIS, GRID_SHAPE, (1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="interpolation"):
        detector_to_grid(obj, BASIS, GRID_SHAPE, SPACING, interpolation="cubic")
    with pytest.raises(ValueError, match="orthonormal"):
        grid_to_lab(obj, np.eye(3) * 2, SPACING)
    with pytest.raises(ValueError, match=r"\(N, rows, cols\)"):
        detector_to_grid(obj[0], BASIS, GRID_SHAPE, SPACING)
