"""Regime diagnosis (dynbcdi.analysis.regime, `dynbcdi info --size-um/--support`) and the plain-text
preset list of `dynbcdi simulate --list-presets`."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from dynbcdi.analysis import regime
from dynbcdi.cli.main import main
from dynbcdi.forward.tte import exit_waves
from dynbcdi.materials import load_crystal, reflection_constants
from dynbcdi.materials.susceptibility import R_E_M
from dynbcdi.simulate import refraction, shapes
from dynbcdi.simulate.sample import crystal_rotation


@pytest.fixture(scope="module")
def au200_9kev():
    r = reflection_constants("Au", (2, 0, 0), 9000.0)
    return r, regime.reference_geometry(r)


def _diagnose(edge_m, r, g):
    s, sp = regime.cube_support("Au", (2, 0, 0), edge_m, g)
    return regime.diagnose_regime(s, sp, g, r)


def test_small_cube_kinematic_large_cube_dynamical(au200_9kev):
    r, g = au200_9kev
    small, large = _diagnose(0.15e-6, r, g), _diagnose(1e-6, r, g)
    assert small.verdict == "kinematic is enough" and large.verdict == "dynamical needed"
    # Margins of the verdicts (0.065 and 0.32 rad measured; 24–64 grid points change them by
    # ≤ 0.02 rad) keep both away from the 0.1 rad criterion; both below 10 s on one core.
    assert small.phase_error_rad < 0.08 and large.phase_error_rad > 0.25
    assert small.beyond_refraction_phase_error_rad < small.phase_error_rad
    assert small.size_over_extinction < 1 < large.size_over_extinction
    assert small.seconds < 10 and large.seconds < 10
    # same χ and lengths as `dynbcdi info` prints
    assert large.extinction_length_m == r.extinction_length_bragg_m
    assert large.absorption_length_m == r.absorption_length_m
    assert large.size_m == pytest.approx(1e-6, rel=0.05)  # voxelised thickness along h


def test_extinction_length_against_xraylib_hand_formula():
    # t_B = λ sin θB / (π |C| √|χh χh̄|) with χ = r_e λ² |F| / (π V) is t_B = V sin θB / (r_e λ |C F_h|)
    # (C = 1, centrosymmetric |F_h| = |F_h̄|); F from xraylib, an independent form-factor database.
    # 1 %: the tolerance of the χ cross-check (tests/materials, measured ≤ 0.4 %).
    xraylib = pytest.importorskip("xraylib")
    crystal = xraylib.Crystal_GetCrystal("Gold")
    energy = 9000.0
    r = reflection_constants("Au", (2, 0, 0), energy, lattice_a_m=crystal["a"] * 1e-10, temperature_K=None)
    volume = xraylib.Crystal_UnitCellVolume(crystal) * 1e-30
    theta = xraylib.Bragg_angle(crystal, energy / 1e3, 2, 0, 0)
    F = abs(xraylib.Crystal_F_H_StructureFactor(crystal, energy / 1e3, 2, 0, 0, 1.0, 1.0))
    lam = r.wavelength_m
    assert r.extinction_length_bragg_m == pytest.approx(volume * math.sin(theta) / (R_E_M * lam * F), rel=0.01)
    g = regime.reference_geometry(r)
    s, sp = regime.cube_support("Au", (2, 0, 0), 0.2e-6, g, points=40, lattice_a_m=crystal["a"] * 1e-10)
    d = regime.diagnose_regime(s, sp, g, r, max_points=24)
    assert d.extinction_length_m == pytest.approx(volume * math.sin(theta) / (R_E_M * lam * F), rel=0.01)


def test_kinematic_inversion_is_exact_in_the_weak_coupling_limit(au200_9kev):
    # χ0 = 0, χh → 0: the Strang march is the kinematic sum, so the inversion returns the object
    # itself, here with a phase ramp and a bump (1e-6 rad: float64 rounding amplified by the
    # 1e-5 coupling scale).
    r, g = au200_9kev
    f = g.grid_frame()
    k0, kh = g.beam_directions_grid(f)
    s, sp = regime.cube_support("Au", (2, 0, 0), 0.3e-6, g, points=40)
    c, d = regime.coarse_support(s, sp, k0, kh, 24)
    x, y, z = shapes.grid_coordinates(c.shape, (d, d, d))
    S = c * np.exp(1j * (2e6 * x - 1e6 * z + 0.3 * np.exp(-(x**2 + y**2 + z**2) / (80e-9) ** 2)))
    _, dq = regime.band_angles(g, f, d, max(c.shape[0], 16))
    weak = 1e-5 * r.chih
    Eh = exit_waves(torch.as_tensor(S), (d,) * 3, r.wavelength_m, k0, kh, 0j, weak, 1e-5 * r.chihbar, 1.0,
                    torch.as_tensor(dq)).numpy()
    O = regime.kinematic_inversion(Eh, dq, c, d, r.wavelength_m, kh, weak)
    assert np.abs(O - S).max() < 1e-6
    assert regime.phase_errors(c.astype(complex), c, d) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)


def test_refraction_shift_of_mask_matches_the_facet_formula(au200_9kev):
    # Same cube, once from its exact facets (simulate.refraction, used by `dynbcdi simulate`) and
    # once from its voxel mask (faces found by the smoothed-mask gradient): 10 % for the voxelised
    # edges, where the mask normals are blurred.
    r, g = au200_9kev
    f = g.grid_frame()
    k0, _ = g.beam_directions_grid(f)
    h, axis = f.to_grid(g.h), f.to_grid(g.rocking_axis)
    crystal = load_crystal("Au")
    rot = crystal_rotation(crystal, (2, 0, 0), h, ((1, 0, 0), (0, 1, 0), (0, 0, 1)))
    normals, distances = shapes.parallelepiped_facets(0.5e-6 * rot.T)
    d = 20e-9
    s = shapes.polyhedron((48, 48, 48), (d, d, d), normals, distances)
    exact, _ = refraction.predicted_shift_rad(normals, distances, s, (d, d, d), k0 * g.k_norm, h, axis, r.chi0)
    from_mask = regime.refraction_shift_of_mask(s > 0.5, d, k0 * g.k_norm, h, axis, r.chi0)
    assert exact > 0 and from_mask == pytest.approx(exact, rel=0.1)


def test_info_prints_the_diagnosis(capsys, tmp_path):
    argv = ["info", "--material", "Au", "--hkl", "2", "0", "0", "--energy", "9keV"]
    assert main(argv + ["--size-um", "0.15"]) == 0
    out = capsys.readouterr().out
    assert "verdict: kinematic is enough" in out and "thickness / extinction length" in out
    assert "predicted refraction shift" in out and "Im χ0" in out  # the constants table is still there
    s, sp = regime.cube_support("Au", (2, 0, 0), 1e-6, regime.reference_geometry(reflection_constants(
        "Au", (2, 0, 0), 9000.0)), points=40)
    np.save(tmp_path / "support.npy", s)
    assert main(argv + ["--support", str(tmp_path / "support.npy"), "--voxel-nm", f"{sp[0] * 1e9}"]) == 0
    assert "verdict: dynamical needed" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "message"), [
    (["--voxel-nm", "5"], "--voxel-nm needs --support"),
    (["--size-um", "-1"], "--size-um must be a positive"),
    (["--support", "missing.npy", "--voxel-nm", "5"], "no such support mask"),
    (["--size-um", "1", "--threshold-rad", "0"], "--threshold-rad must be > 0"),
])
def test_info_regime_bad_options(capsys, extra, message):
    assert main(["info", "--material", "Au", "--hkl", "2", "0", "0", "--energy", "9keV", *extra]) == 2
    err = capsys.readouterr()
    assert message in err.err and len(err.err.strip().splitlines()) == 1 and err.out == ""


def test_support_file_of_wrong_rank(capsys, tmp_path):
    np.save(tmp_path / "flat.npy", np.ones((4, 4)))
    argv = ["info", "--material", "Au", "--hkl", "2", "0", "0", "--energy", "9keV",
            "--support", str(tmp_path / "flat.npy"), "--voxel-nm", "5"]
    assert main(argv) == 2
    assert "3-D (z, y, x)" in capsys.readouterr().err


def test_list_presets_is_plain_text(capsys):
    assert main(["simulate", "--list-presets"]) == 0
    out = capsys.readouterr().out
    # no reStructuredText/Sphinx markup: roles, double back-quotes, any back-quote
    assert not re.search(r":(math|func|mod|class|meth|data):|``|`", out)
    blocks = out.strip().split("\n\n")
    from dynbcdi.simulate.multi import MULTI_PRESETS
    from dynbcdi.simulate.presets import PRESETS

    assert [b.splitlines()[0] for b in blocks] == list(PRESETS) + list(MULTI_PRESETS)
    for block in blocks:
        for key in ("reflection", "crystal", "scan", "grid", "for"):
            assert re.search(rf"^  {key} ", block, re.M), (key, block)
    assert "Au (2 0 0) at 8 keV" in blocks[0] and "1 µm" in blocks[0]


def test_34idc_geometry_with_gamma():
    # The paper's Sr2IrO4 (116) geometry (γ = 3°: the rocking axis is not ⟂ the scattering plane,
    # Δq has all three grid components): the diagnosis runs in that geometry and separates a thin
    # from a paper-sized crystal (measured 0.31 rad for 1.5 µm; 0.1 µm well below the criterion).
    from dynbcdi.simulate.presets import preset
    from dynbcdi.simulate.scan import build_geometry

    cfg = preset("sr2iro4-116")
    r = reflection_constants("Sr2IrO4", (1, 1, 6), 10000.0)
    g = build_geometry(cfg.geometry, r)
    assert abs(g.rocking_axis @ np.cross(g.k0, g.h)) < 0.9999 * np.linalg.norm(np.cross(g.k0, g.h))
    verdicts = {}
    for edge in (0.1e-6, 1.5e-6):
        s, sp = regime.cube_support("Sr2IrO4", (1, 1, 6), edge, g, points=48)
        verdicts[edge] = regime.diagnose_regime(s, sp, g, r)
    assert verdicts[0.1e-6].verdict == "kinematic is enough"
    assert verdicts[1.5e-6].verdict == "dynamical needed"
    assert verdicts[1.5e-6].refraction_shift_rad > 0
