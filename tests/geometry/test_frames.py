"""Rotations, goniometer circles and GridFrame helpers."""

import numpy as np
import pytest

from dynbcdi.geometry.frames import GridFrame, circle_axis, circles_rotation, rotate

# Rotations of unit vectors in float64: round-off ~1e-16.
EXACT = 1e-14


def test_rotation_is_right_handed_and_exact():
    np.testing.assert_allclose(rotate([0, 0, 1], np.pi / 2, [1, 0, 0]), [0, 1, 0], atol=EXACT)
    angles = np.linspace(-1, 1, 7)
    v = np.array([0.3, -0.2, 0.9])
    out = rotate([1, 1, 0], angles, v)
    assert out.shape == (7, 3)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(v), rtol=EXACT)
    # Rodrigues' formula written out, for one angle.
    a, t = np.array([1, 1, 0]) / np.sqrt(2), angles[1]
    rod = v * np.cos(t) + np.cross(a, v) * np.sin(t) + a * (a @ v) * (1 - np.cos(t))
    np.testing.assert_allclose(out[1], rod, atol=EXACT)


def test_circles_compose_outermost_first():
    # δ about +y (outer), γ about −x (inner), applied to the beam ẑ: 34-ID-C detector arm.
    d, g = 0.4, 0.25
    r = circles_rotation(("y+", "x-"), (d, g))
    expected = [np.sin(d) * np.cos(g), np.sin(g), np.cos(d) * np.cos(g)]
    np.testing.assert_allclose(r.apply([0, 0, 1.0]), expected, atol=EXACT)
    with pytest.raises(ValueError, match="2 circles"):
        circles_rotation(("y+", "x-"), (d,))


@pytest.mark.parametrize("bad", ["y", "w+", "x*", 3])
def test_circle_axis_rejects_bad_names(bad):
    with pytest.raises(ValueError, match="circle must be one of"):
        circle_axis(bad)


def test_frame_from_z_and_x():
    f = GridFrame.from_z_and_x([0, 0, 2.0], [1.0, 0.0, 0.3])
    np.testing.assert_allclose(f.matrix, np.eye(3), atol=EXACT)
    v = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(f.to_lab(f.to_grid(v)), v, atol=EXACT)
    with pytest.raises(ValueError, match="parallel"):
        GridFrame.from_z_and_x([0, 0, 1.0], [0, 0, -3.0])
    with pytest.raises(ValueError, match="non-zero"):
        GridFrame.from_z_and_x([0, 0, 0.0], [1.0, 0, 0])
