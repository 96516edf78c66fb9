"""TOML configuration, presets and the `dynbcdi simulate` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynbcdi.cli.main import main
from dynbcdi.io import load_dataset
from dynbcdi.simulate.config import SimulationConfig, from_dict, load_config
from dynbcdi.simulate.presets import PRESETS, preset, resize
from dynbcdi.simulate.scan import fit_z_sampling, nyquist_fractions, prepare_scan

TINY_TOML = """
name = "tiny"
[reflection]
material = "Au"
hkl = [1, 1, 1]
energy_eV = 9000
[geometry]
rocking_start_deg = -0.3
rocking_stop_deg = 0.3
rocking_step_deg = 0.05
detector_shape = [24, 24]
pixel_size_m = 55e-6
distance_m = 0.2
[grid]
nz = 12
[crystal]
shape = "sphere"
size_m = [4e-8]
smooth_m = 3e-9
[[deformation]]
kind = "point_inclusion"
radius_m = 1e-8
misfit = 0.01
[noise]
total_photons = 1e5
gap_rows = [[5, 7]]
[model]
batch_size = 13
"""


def test_toml_round_trip_and_errors(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(TINY_TOML)
    cfg = load_config(path)
    assert cfg.reflection.energy_eV == 9000.0 and cfg.reflection.hkl == (1, 1, 1)
    assert cfg.deformation[0].misfit == 0.01 and cfg.noise.gap_rows == ((5, 7),)
    path.write_text(TINY_TOML.replace("nz = 12", "nz = 12\nnx = 3"))
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['grid\.nx'\]"):
        load_config(path)
    path.write_text(TINY_TOML.replace("misfit = 0.01", "misfit = 0.01\nsigma_m = 1e-8"))
    with pytest.raises(ValueError, match="'point_inclusion' does not take"):
        load_config(path)
    path.write_text(TINY_TOML.replace("distance_m = 0.2\n", ""))
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['distance_m'\]"):
        load_config(path)
    path.write_text(TINY_TOML.replace("total_photons = 1e5", "total_photons = 0"))
    with pytest.raises(ValueError, match="photon count must be > 0"):
        load_config(path)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_pass_sampling_checks(name):
    full = preset(name)
    assert full.geometry.detector_shape == (256, 256) and full.grid.nz == 256
    small = resize(full, 48)
    with pytest.raises(ValueError, match="dz too coarse for the rocking range"):
        prepare_scan(small)
    prepared = prepare_scan(fit_z_sampling(small))
    # fit_z_sampling keeps max |Δq_z| dz at 0.8 π (below the π Nyquist limit).
    assert nyquist_fractions(prepared.geometry, prepared.frame, prepared.spacing_m)[2] == pytest.approx(0.8)
    dy, dx = prepared.geometry.transverse_spacing_m()
    # Same field of view: 48 voxels of the resized grid span what 256 voxels of the full grid span.
    assert 48 * dx == pytest.approx(256 * prepare_scan_spacing(full), rel=1e-12)
    assert prepared.oversampling["rocking_oversampling"] > 2
    assert prepared.sample.s.sum() > 0


def prepare_scan_spacing(config: SimulationConfig) -> float:
    from dynbcdi.materials import reflection_constants
    from dynbcdi.simulate.scan import build_geometry

    rc = config.reflection
    refl = reflection_constants(rc.material, rc.hkl, rc.energy_eV, lattice_a_m=rc.lattice_a_m)
    return build_geometry(config.geometry, refl).transverse_spacing_m()[1]


def test_paper_preset_geometry():
    au = prepare_scan(fit_z_sampling(resize(preset("au-cube-200"), 48)))
    # Paper Methods: 2θB = 44.76° for Au (200) at 8 keV with a = 4.07 Å; 401 angles of 0.001°.
    assert np.degrees(2 * au.reflection.bragg_angle_rad) == pytest.approx(44.76, abs=0.005)
    assert au.geometry.n_angles == 401
    h_hat = au.frame.to_grid(au.geometry.h) / np.linalg.norm(au.geometry.h)
    # One cube edge along h: the first column of the crystal→grid rotation ([100]) is ĥ.
    np.testing.assert_allclose(au.sample.rotation[:, 0], h_hat, atol=1e-12)
    sr = prepare_scan(fit_z_sampling(resize(preset("sr2iro4-116"), 48)))
    assert np.degrees(sr.geometry.two_theta_rad) == pytest.approx(np.degrees(2 * sr.reflection.bragg_angle_rad))
    # Corner contact: the largest displacement sits at the corner furthest along −h.
    u_norm = np.linalg.norm(sr.sample.u, axis=0)
    assert u_norm.max() == pytest.approx(1e-10, rel=0.2)


def test_cli_simulate(tmp_path, capsys):
    torch.set_num_threads(2)
    toml = tmp_path / "run.toml"
    toml.write_text(TINY_TOML)
    out = tmp_path / "tiny.npz"
    assert main(["simulate", "--config", str(toml), "--out", str(out), "--figures", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "tiny.npz" in printed and "oversampling" in printed
    assert (tmp_path / "tiny_rocking_curves.png").stat().st_size > 10_000
    assert (tmp_path / "tiny_truth_slices.png").stat().st_size > 10_000
    ds = load_dataset(out)
    assert ds.intensity.shape == (13, 24, 24) and not ds.valid[5:7].any()
    assert ds.metadata["config"]["crystal"]["shape"] == "sphere"
    assert from_dict(SimulationConfig, ds.metadata["config"]).name == "tiny"  # config survives the file
    # Refuses to overwrite.
    assert main(["simulate", "--config", str(toml), "--out", str(out), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err


def test_polyhedron_crystal_from_miller_facets(tmp_path):
    # Au octahedron bounded by the eight {111} planes at 40 nm from the centre.
    facets = [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    toml = TINY_TOML.replace('shape = "sphere"\nsize_m = [4e-8]',
                             f'shape = "polyhedron"\nfacets_hkl = {facets}\nsize_m = {[4e-8] * 8}')
    path = tmp_path / "octa.toml"
    path.write_text(toml)
    prepared = prepare_scan(load_config(path))
    s = prepared.sample.s
    # Octahedron volume (4/3)(d√3)³ with d = 40 nm; voxelised + 3 nm tanh edges: within 10 %.
    voxel = np.prod(prepared.spacing_m)
    assert s.sum() * voxel == pytest.approx(4 / 3 * (4e-8 * np.sqrt(3)) ** 3, rel=0.1)
    # The [111] facet normal of the crystal maps onto the grid through the same rotation as h.
    normals = prepared.sample.facet_normals
    assert np.allclose(np.linalg.norm(normals, axis=1), 1)
    h_hat = prepared.frame.to_grid(prepared.geometry.h) / np.linalg.norm(prepared.geometry.h)
    assert np.isclose(np.abs(normals @ h_hat).max(), 1.0)  # (111) reflection ⟂ a {111} facet
