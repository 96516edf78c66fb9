"""Full strain tensor of a displacement vector field, and its VTK vector/tensor export."""

import numpy as np
import pytest

from dynbcdi.analysis.strain import strain, strain_tensor
from dynbcdi.io.vtk import read_vti, tensor_array, vector_array, write_vti
from dynbcdi.simulate import displacement as disp
from dynbcdi.simulate.shapes import grid_coordinates

SHAPE, SPACING = (10, 12, 14), (3e-9, 2e-9, 1e-9)


def test_uniform_and_quadratic_fields_match_analytic_strain():
    grad = np.array([[1.0, 2.0, -0.5], [0.3, -1.0, 0.7], [0.0, 0.4, 2.0]]) * 1e-3  # ∂u_i/∂x_j
    u = disp.uniform_strain(SHAPE, SPACING, grad)
    support = np.ones(SHAPE, bool)
    eps = strain_tensor(u, SPACING, support)
    expected = 0.5 * (grad + grad.T)  # ε_ij = ½(∂_i u_j + ∂_j u_i)
    inner = eps[:, :, 1:-1, 1:-1, 1:-1]
    assert np.allclose(inner, expected[:, :, None, None, None], atol=1e-15)
    assert np.isnan(eps[:, :, 0]).all()  # boundary voxels have no centred difference
    # quadratic field u_x = a x y: ε_xx = a y, ε_xy = a x / 2 (central differences exact for quadratics)
    a = 1e6
    x, y, z = grid_coordinates(SHAPE, SPACING)
    uq = np.stack(np.broadcast_arrays(a * x * y, 0 * x, 0 * z))
    eq = strain_tensor(uq, SPACING, support)[:, :, 1:-1, 1:-1, 1:-1]
    xs, ys = np.broadcast_arrays(x, y, z)[0][1:-1, 1:-1, 1:-1], np.broadcast_arrays(x, y, z)[1][1:-1, 1:-1, 1:-1]
    assert np.allclose(eq[0, 0], a * ys) and np.allclose(eq[0, 1], a * xs / 2) and np.allclose(eq[1, 0], eq[0, 1])
    assert np.allclose(eq[2], 0)


def test_projection_on_h_equals_the_along_h_strain():
    u = disp.point_inclusion(SHAPE, SPACING, 4e-9, 1e-3, (1e-9, 0, 0))
    support = np.ones(SHAPE, bool)
    n = np.array([1.0, 2.0, 2.0]) / 3
    eps = strain_tensor(u, SPACING, support)
    along = np.einsum("i,ij...,j->...", n, eps, n)
    assert np.allclose(along, strain(np.tensordot(n, u, axes=1), SPACING, n, support), equal_nan=True)
    with pytest.raises(ValueError, match=r"\(3, Z, Y, X\)"):
        strain_tensor(u[:2], SPACING, support)


def test_vti_vector_and_tensor_arrays_round_trip(tmp_path):
    u = np.random.default_rng(0).normal(size=(3, *SHAPE))
    eps = strain_tensor(u, SPACING, np.ones(SHAPE, bool))
    path = write_vti(tmp_path / "u.vti", {"u": vector_array(u), "strain": tensor_array(eps)}, SPACING,
                     vectors="u", tensors="strain")
    arrays, spacing = read_vti(path)
    assert np.allclose(arrays["u"][..., 1], u[1]) and spacing == SPACING
    assert np.allclose(arrays["strain"][..., 5], eps[1, 2], equal_nan=True)  # yz = index 3·1 + 2
    with pytest.raises(ValueError, match="9 components"):
        write_vti(tmp_path / "bad.vti", {"u": vector_array(u)}, SPACING, tensors="u")
