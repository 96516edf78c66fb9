"""CrystalField: S_i = s'·exp(−i h_i·u') on a reflection's grid, against analytic fields."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dynbcdi.geometry.resample import GridSpec
from dynbcdi.reconstruct.crystal import CrystalField
from dynbcdi.simulate.displacement import phase_from_displacement

D = 5e-9  # voxel, m
H = 2 * np.pi / 2.355e-10 * np.array([1.0, 1.0, 1.0]) / np.sqrt(3)  # Au 111, rad/m


def fields(grid):
    """Smooth shape and a displacement with all three components (m), analytic in the position."""
    r = grid.positions()
    s = np.exp(-(r**2).sum(-1) / (2 * (4 * D) ** 2))
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    u = 2e-11 * np.stack([x / (8 * D), (y * z) / (8 * D) ** 2, 1 - (x / (8 * D)) ** 2])
    return s, u


def test_same_grid_gives_the_projected_phase_exactly():
    grid = GridSpec((16,) * 3, (D,) * 3)
    s, u = fields(grid)
    field = CrystalField(grid, s, u, support=s > 1e-3)
    S = field.on(SimpleNamespace(grid=grid, h_sample=H)).detach().numpy()
    expected = np.where(s > 1e-3, s, 0) * np.exp(1j * phase_from_displacement(u, H))
    assert np.abs(S - expected).max() < 1e-12


def test_rotated_grid_matches_analytic_crystal_function():
    sample = GridSpec((32,) * 3, (D,) * 3)
    rot = Rotation.from_euler("ZYX", [30, -20, 50], degrees=True).as_matrix()
    refl = GridSpec((32,) * 3, (0.9 * D,) * 3, rot)
    s, u = fields(sample)
    S = CrystalField(sample, s, u, support=np.ones(sample.shape, bool)).on(SimpleNamespace(grid=refl, h_sample=H))
    s_r, u_r = fields(refl)  # the analytic fields at the rotated grid's points
    inner = s_r > 0.05  # the Gaussian's tail leaves the box; compare where the crystal is
    expected = s_r * np.exp(1j * phase_from_displacement(u_r, H))
    assert np.abs(S.detach().numpy() - expected)[inner].max() < 5e-3


def test_gradient_reaches_u_and_s_and_projection():
    grid = GridSpec((8,) * 3, (D,) * 3)
    s, u = fields(grid)
    field = CrystalField(grid, s, u, support=s > 0.3)
    refl = SimpleNamespace(grid=GridSpec((8,) * 3, (D,) * 3, Rotation.from_euler("z", 20, degrees=True).as_matrix()),
                           h_sample=H)
    field.on(refl).abs().sum().backward()
    assert field.s.grad.abs().sum() > 0
    torch.sum(field.on(refl).angle()).backward()
    assert field.u_scaled.grad.abs().sum() > 0
    with torch.no_grad():
        field.s.fill_(-1.0)
    field.project()
    assert float(field.s.detach().max()) == 0.0
    with pytest.raises(ValueError, match="need s"):
        CrystalField(grid, s[:-1], u)
