"""Built-in materials, CIF loading and bad input of dynbcdi.materials."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dynbcdi.materials import BUILTIN_MATERIALS, builtin_cif_path, load_crystal, reflection_constants


def test_builtins_load_with_expected_cells():
    expected_a = {"Au": 4.0782, "Si": 5.43104, "Ge": 5.65785, "Pt": 3.9242, "Pb": 4.9502, "Sr2IrO4": 5.4994}
    assert set(BUILTIN_MATERIALS) == set(expected_a)
    for name in BUILTIN_MATERIALS:
        crystal = load_crystal(name)
        assert crystal.lattice.a == pytest.approx(expected_a[name], rel=1e-9)
    sio = load_crystal("sr2iro4")  # names are case-insensitive
    assert sio.lattice.space_group_nr == 142
    assert sio.lattice.c == pytest.approx(25.7841)
    assert sio.lattice.nsites == 4  # Ir 8a, Sr 16d, O1 16f, O2 16d


def test_sr2iro4_octahedron_geometry():
    # the shipped structure must give the known IrO6 octahedron: Ir-O 1.98 Å (x4), 2.06 Å (x2)
    lat = load_crystal("Sr2IrO4").lattice
    sites = [(atom.name, lat.GetPoint(*pos)) for atom, pos, _, _ in lat.base()]
    ir = next(p for n, p in sites if n.startswith("Ir"))
    cell = [lat.GetPoint(1, 0, 0), lat.GetPoint(0, 1, 0), lat.GetPoint(0, 0, 1)]
    dists = sorted(
        float(((p + i * cell[0] + j * cell[1] + k * cell[2] - ir) ** 2).sum() ** 0.5)
        for n, p in sites if n.startswith("O")
        for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
    )[:6]
    assert dists[:4] == pytest.approx([1.983] * 4, abs=0.005)
    assert dists[4:] == pytest.approx([2.058] * 2, abs=0.005)


def test_cif_path_gives_same_result_as_builtin(tmp_path: Path):
    copy = tmp_path / "my_sio.cif"
    copy.write_text(builtin_cif_path("Sr2IrO4").read_text())
    by_name = reflection_constants("Sr2IrO4", (1, 1, 6), 9000.0)
    by_path = reflection_constants(copy, (1, 1, 6), 9000.0)
    assert by_path.chih == pytest.approx(by_name.chih, rel=1e-12)
    assert by_path.material == str(copy)


def test_lattice_c_override_tetragonal_and_refused_for_cubic():
    r = reflection_constants("Sr2IrO4", (0, 0, 4), 8000.0, lattice_c_m=26.0e-10)
    assert r.d_spacing_m == pytest.approx(6.5e-10, rel=1e-12)
    with pytest.raises(ValueError, match="lattice_c_m"):
        load_crystal("Au", lattice_c_m=4.0e-10)
    with pytest.raises(ValueError, match="-4e-10"):
        load_crystal("Au", lattice_a_m=-4.0e-10)
    with pytest.raises(ValueError, match="4.07"):
        load_crystal("Au", lattice_a_m=4.07)  # Å given instead of metres


def test_unknown_material_lists_builtins():
    with pytest.raises(ValueError, match=r"'Unobtainium'.*Au, Si, Ge, Pt, Pb, Sr2IrO4"):
        reflection_constants("Unobtainium", (1, 1, 1), 8000.0)


def test_bad_cif_file(tmp_path: Path):
    bad = tmp_path / "bad.cif"
    bad.write_text("data_nothing\n_cell_length_a 4.0\n")
    with pytest.raises(ValueError, match="bad.cif"):
        reflection_constants(bad, (1, 1, 1), 8000.0)


def test_forbidden_reflection():
    with pytest.raises(ValueError, match=r"\(1, 0, 0\) of Au is forbidden"):
        reflection_constants("Au", (1, 0, 0), 8000.0)
    with pytest.raises(ValueError, match=r"\(2, 0, 0\) of Si is forbidden"):
        reflection_constants("Si", (2, 0, 0), 8000.0)


def test_energy_below_cutoff_names_minimum():
    # Au (200), d = 2.0391 Å: cut-off hc/(2d) = 3040.17 eV
    with pytest.raises(ValueError, match=r"3000 eV.*minimum energy is 3040\.17 eV"):
        reflection_constants("Au", (2, 0, 0), 3000.0)
    just_above = reflection_constants("Au", (2, 0, 0), 3041.0)
    assert math.degrees(just_above.bragg_angle_rad) > 85.0


@pytest.mark.parametrize("energy", [0.0, -8000.0, float("nan"), float("inf"), "eight"])
def test_bad_energy(energy):
    with pytest.raises(ValueError, match="energy_eV"):
        reflection_constants("Au", (2, 0, 0), energy)


@pytest.mark.parametrize("hkl", [(0, 0, 0), (1, 1), (1.5, 0, 0), "abc", "111"])
def test_bad_hkl(hkl):
    with pytest.raises(ValueError, match="hkl"):
        reflection_constants("Au", hkl, 8000.0)


def test_bad_temperature():
    with pytest.raises(ValueError, match="-5"):
        reflection_constants("Au", (2, 0, 0), 8000.0, temperature_K=-5.0)
