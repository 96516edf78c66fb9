"""A user's own crystal: a mask array at its own voxel size, a displacement array or function."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dynbcdi.config import from_dict
from dynbcdi.simulate import displacement as disp
from dynbcdi.simulate import shapes
from dynbcdi.simulate.config import CrystalConfig, DeformationConfig, load_config, to_dict
from dynbcdi.simulate.presets import preset, resize
from dynbcdi.simulate.sample import build_displacement, build_shape
from dynbcdi.simulate.scan import fit_z_sampling, prepare_scan

SHAPE, SPACING = (32, 32, 32), (10e-9, 10e-9, 10e-9)
H_GRID = 2 * np.pi / 2.04e-10 * np.array([0.3, -0.2, 0.933])  # rad/m, a general direction


def _mask_config(path, spacing):
    return CrystalConfig(shape="mask", mask_file=str(path), mask_spacing_m=spacing)


def test_sphere_mask_array_reproduces_the_sphere_volume(tmp_path):
    radius = 105e-9
    fine = (4e-9, 4e-9, 4e-9)  # mask at 0.4 of the grid voxel: averaged, partial-volume surface
    np.save(tmp_path / "fine.npy", shapes.sphere((72, 72, 72), fine, radius) > 0.5)
    s, _ = build_shape(_mask_config(tmp_path / "fine.npy", fine), None, None, SHAPE, SPACING)
    builtin = shapes.sphere(SHAPE, SPACING, radius, smooth_m=2e-9)
    volume = 4 / 3 * np.pi * radius**3
    # Voxelisation of the 4 nm mask itself is ~1 %; the resampled volume follows it to 1e-3.
    assert s.sum() * 1e-24 == pytest.approx(np.sum(np.load(tmp_path / "fine.npy")) * 64e-27, rel=1e-3)
    assert s.sum() * 1e-24 == pytest.approx(volume, rel=0.02)
    partial = (s > 0.02) & (s < 0.98)
    assert partial.sum() > 0.5 * ((builtin > 0.02) & (builtin < 0.98)).sum()  # a partial-volume surface
    assert np.abs(s - builtin).max() < 0.5 and np.mean(np.abs(s - builtin)[builtin > 0.02]) < 0.05
    # A cube mask twice as coarse as the grid (trilinear, no sub-sampling): volume to 1 %.
    coarse = (20e-9, 20e-9, 20e-9)
    np.save(tmp_path / "cube.npy", shapes.cube((16, 16, 16), coarse, 200e-9))
    s, _ = build_shape(_mask_config(tmp_path / "cube.npy", coarse), None, None, SHAPE, SPACING)
    assert s.sum() * 1e-24 == pytest.approx((200e-9) ** 3, rel=0.01)


def test_mask_errors_are_one_line(tmp_path):
    np.save(tmp_path / "big.npy", np.ones((10, 10, 10)))
    with pytest.raises(ValueError, match="does not fit on the simulation grid"):
        build_shape(_mask_config(tmp_path / "big.npy", (50e-9,) * 3), None, None, SHAPE, SPACING)
    with pytest.raises(ValueError, match="give crystal.mask_spacing_m"):
        build_shape(_mask_config(tmp_path / "big.npy", None), None, None, SHAPE, SPACING)
    bad = np.zeros((8, 8, 8))
    bad[4, 4, 4] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match="non-finite"):
        build_shape(_mask_config(tmp_path / "nan.npy", SPACING), None, None, SHAPE, SPACING)
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="not a readable .npy"):
        build_shape(_mask_config(tmp_path / "junk.npy", SPACING), None, None, SHAPE, SPACING)
    with pytest.raises(FileNotFoundError):
        build_shape(_mask_config(tmp_path / "absent.npy", SPACING), None, None, SHAPE, SPACING)
    with pytest.raises(ValueError, match="mask_spacing_m"):
        CrystalConfig(shape="mask", mask_file="m.npy", mask_spacing_m=(1e-9, 0.0, 1e-9))
    with pytest.raises(ValueError, match="shape = 'mask' only"):
        CrystalConfig(shape="sphere", size_m=(1e-7,), mask_spacing_m=(1e-9,) * 3)


def _strain_tensor():
    return np.array([[1e-3, 2e-4, 0.0], [0.0, -5e-4, 3e-4], [1e-4, 0.0, 8e-4]])


def test_linear_displacement_array_reproduces_uniform_strain_phase(tmp_path):
    s = shapes.sphere(SHAPE, SPACING, 100e-9)
    eps = _strain_tensor()
    expected = disp.phase_from_displacement(disp.uniform_strain(SHAPE, SPACING, eps), H_GRID)
    # The same field sampled on a coarser (15 nm), larger grid, as a finite-element export might be.
    fspacing, fshape = (15e-9, 15e-9, 15e-9), (30, 28, 26)
    np.save(tmp_path / "u.npy", disp.uniform_strain(fshape, fspacing, eps))
    u = build_displacement([DeformationConfig(kind="array", file=str(tmp_path / "u.npy"), spacing_m=fspacing)],
                           s, SPACING, H_GRID)
    inside = s > 0.5
    assert np.ptp(expected[inside]) > 4  # rad: a phase range beyond a wrap
    assert np.abs(disp.phase_from_displacement(u, H_GRID) - expected)[inside].max() < 1e-6
    # The component along h only (u_h = ĥ·u), as component = "h".
    h_hat = H_GRID / np.linalg.norm(H_GRID)
    np.save(tmp_path / "uh.npy", np.tensordot(h_hat, disp.uniform_strain(fshape, fspacing, eps), axes=(0, 0)))
    u = build_displacement([DeformationConfig(kind="array", file=str(tmp_path / "uh.npy"), spacing_m=fspacing,
                                              component="h")], s, SPACING, H_GRID)
    assert np.abs(disp.phase_from_displacement(u, H_GRID) - expected)[inside].max() < 1e-6


def test_cubic_interpolation_error_on_a_gaussian_field():
    # Gaussian bulge (A = 50 pm along h, σ = 60 nm) exported at 20 nm (3 samples per σ), interpolated
    # onto the 10 nm grid: the docstring's error statement, measured.
    fspacing = (20e-9, 20e-9, 20e-9)
    h_hat = H_GRID / np.linalg.norm(H_GRID)
    field = disp.gaussian_bulge((20, 20, 20), fspacing, 50e-12, 60e-9, h_hat)
    u = disp.from_array(field, fspacing, SHAPE, SPACING)
    exact = disp.gaussian_bulge(SHAPE, SPACING, 50e-12, 60e-9, h_hat)
    inside = shapes.sphere(SHAPE, SPACING, 140e-9) > 0.5
    err = np.abs(u - exact)[:, inside].max() / 50e-12
    assert err < 1e-3, err  # measured 2.8e-4 of the amplitude


def _uniform(x, y, z):
    eps = _strain_tensor()
    return tuple(eps[i, 0] * x + eps[i, 1] * y + eps[i, 2] * z for i in range(3))


def test_displacement_function_through_the_api_and_by_import_path():
    s = shapes.sphere(SHAPE, SPACING, 100e-9)
    expected = disp.uniform_strain(SHAPE, SPACING, _strain_tensor())
    for function in (_uniform, f"{__name__}:_uniform"):
        u = build_displacement([DeformationConfig(kind="function", function=function)], s, SPACING, H_GRID)
        np.testing.assert_allclose(u, expected, atol=1e-20)
    d = DeformationConfig(kind="function", function=_uniform)
    assert to_dict(d)["function"].endswith(":_uniform")
    with pytest.raises(ValueError, match="cannot be imported"):
        build_displacement([dataclasses.replace(d, function="no_such_module_xyz:f")], s, SPACING, H_GRID)
    with pytest.raises(ValueError, match="non-finite"):
        build_displacement([dataclasses.replace(d, function=lambda x, y, z: (x * np.nan, y, z))], s, SPACING, H_GRID)
    with pytest.raises(ValueError, match="deformation.function"):
        DeformationConfig(kind="function", function=3)


def test_displacement_array_errors(tmp_path):
    s = shapes.sphere(SHAPE, SPACING, 100e-9)
    np.save(tmp_path / "small.npy", np.zeros((3, 8, 8, 8)))
    np.save(tmp_path / "flat.npy", np.zeros((8, 8)))
    field = np.zeros((3, 32, 32, 32))
    field[1, 16, 16, 16] = np.inf
    np.save(tmp_path / "inf.npy", field)
    cases = {"small.npy": "does not cover", "flat.npy": r"must be \(3, Z, Y, X\)", "inf.npy": "non-finite"}
    for name, message in cases.items():
        with pytest.raises(ValueError, match=message):
            build_displacement([DeformationConfig(kind="array", file=str(tmp_path / name))], s, SPACING, H_GRID)
    with pytest.raises(ValueError, match="component"):
        DeformationConfig(kind="array", file="u.npy", component="z")
    with pytest.raises(ValueError, match="does not take"):
        DeformationConfig(kind="array", file="u.npy", sigma_m=1e-9)


def test_toml_config_with_user_mask_and_field_simulates(tmp_path):
    base = fit_z_sampling(resize(preset("au-demo"), 32))
    spacing = prepare_scan(base).spacing_m
    np.save(tmp_path / "mask.npy", shapes.sphere((40, 40, 40), (8e-9,) * 3, 120e-9))
    np.save(tmp_path / "u.npy", disp.uniform_strain((48, 48, 48), (8e-9,) * 3, 2e-4))
    data = to_dict(base)
    data["crystal"] = {"shape": "mask", "mask_file": str(tmp_path / "mask.npy"), "mask_spacing_m": [8e-9] * 3}
    data["deformation"] = [{"kind": "array", "file": str(tmp_path / "u.npy"), "spacing_m": [8e-9] * 3}]
    prepared = prepare_scan(from_dict(type(base), data))
    sample = prepared.sample
    assert sample.s.sum() * np.prod(spacing) == pytest.approx(4 / 3 * np.pi * (120e-9) ** 3, rel=0.03)
    expected = disp.uniform_strain(sample.s.shape, spacing, 2e-4)
    assert np.abs(sample.u - expected)[:, sample.s > 0.5].max() < 1e-15
    # In a TOML file, relative paths are taken from the file's folder, not the working directory.
    (tmp_path / "sim.toml").write_text("""
[reflection]
material = "Au"
hkl = [2, 0, 0]
energy_eV = 8000
[geometry]
rocking_start_deg = -0.1
rocking_stop_deg = 0.1
rocking_step_deg = 0.01
detector_shape = [32, 32]
pixel_size_m = 55e-6
distance_m = 0.4
[grid]
nz = 32
[crystal]
shape = "mask"
mask_file = "mask.npy"
mask_spacing_m = [8e-9, 8e-9, 8e-9]
[[deformation]]
kind = "array"
file = "u.npy"
""")
    loaded = load_config(tmp_path / "sim.toml")
    assert loaded.crystal.mask_file == str(tmp_path / "mask.npy")
    assert loaded.deformation[0].file == str(tmp_path / "u.npy")
