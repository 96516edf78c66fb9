"""Physics checks of dynbcdi.materials.reflection_constants against published and library values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xrayutilities as xu

from dynbcdi.materials import load_crystal, reflection_constants
from dynbcdi.materials.susceptibility import HC_EV_M, R_E_M


@pytest.fixture(scope="module")
def au200():
    """Au (200) at 8 keV with the paper's a = 4.07 Å, default (room-temperature) Debye–Waller."""
    return reflection_constants("Au", (2, 0, 0), 8000.0, lattice_a_m=4.07e-10)


def test_au200_paper_bragg_angle(au200):
    # the paper quotes 2θB = 44.76° (two decimals): 0.01° covers the rounding
    assert math.degrees(2 * au200.bragg_angle_rad) == pytest.approx(44.76, abs=0.01)
    assert au200.d_spacing_m == pytest.approx(4.07e-10 / 2, rel=1e-12)
    assert au200.h_norm == pytest.approx(2 * math.pi / au200.d_spacing_m, rel=1e-12)
    assert au200.wavelength_m == pytest.approx(1.5498e-10, rel=1e-4)


def test_au200_paper_extinction_lengths(au200):
    # X0h values quoted by the paper: 252 nm (Bragg) and 1928 nm (Laue); 2 % is the tolerance the
    # issue asks for (X0h uses its own f0/f' tables; we measure +1.6 % and +1.3 %).
    assert au200.extinction_length_bragg_m == pytest.approx(252e-9, rel=0.02)
    assert au200.pendellosung_length_laue_m == pytest.approx(1928e-9, rel=0.02)


def test_au200_definitions_are_the_documented_formulas(au200):
    chi = math.sqrt(abs(au200.chih * au200.chihbar))
    lam, theta = au200.wavelength_m, au200.bragg_angle_rad
    assert au200.extinction_length_bragg_m == pytest.approx(lam * math.sin(theta) / (math.pi * chi), rel=1e-12)
    assert au200.pendellosung_length_laue_m == pytest.approx(lam * math.cos(theta) / chi, rel=1e-12)
    # Bragg and Laue lengths differ by π cot θB for the same |χh| (a definition check, exact)
    ratio = au200.pendellosung_length_laue_m / au200.extinction_length_bragg_m
    assert ratio == pytest.approx(math.pi / math.tan(theta), rel=1e-12)
    # absorption: μ = k Im χ0; Au at 8 keV has 1/μ ≈ 2.57 µm (Henke/CXRO attenuation length)
    assert au200.absorption_length_m == pytest.approx(lam / (2 * math.pi * au200.chi0.imag), rel=1e-12)
    assert au200.absorption_length_m == pytest.approx(2.57e-6, rel=0.03)


def test_polarization_factors(au200):
    assert au200.polarization("sigma") == 1.0
    assert au200.polarization("pi") == pytest.approx(math.cos(2 * au200.bragg_angle_rad), rel=1e-14)
    assert au200.polarization(0.5) == 0.5
    # lengths scale as 1/|C| (exact by definition)
    assert au200.extinction_length_bragg("pi") == pytest.approx(
        au200.extinction_length_bragg_m / abs(au200.polarization_pi), rel=1e-12
    )
    assert au200.pendellosung_length_laue("sigma") == pytest.approx(au200.pendellosung_length_laue_m, rel=1e-12)
    with pytest.raises(ValueError, match="circular"):
        au200.polarization("circular")
    with pytest.raises(ValueError, match="1.5"):
        au200.polarization(1.5)


def test_chi0_matches_xrayutilities_convention():
    # χ0 is built from conj(F0); it must equal xrayutilities' chi0() (same data, rounding only)
    r = reflection_constants("Au", (1, 1, 1), 9000.0, temperature_K=None)
    assert r.chi0 == pytest.approx(complex(xu.materials.Au.chi0(9000.0)), rel=1e-10)
    assert r.chi0.imag > 0 and r.chi0.real < 0


@pytest.mark.parametrize("material", ["Au", "Si", "Ge", "Pt", "Pb", "Sr2IrO4"])
def test_sign_convention_all_builtins(material):
    hkl = {"Au": (1, 1, 1), "Si": (1, 1, 1), "Ge": (1, 1, 1), "Pt": (1, 1, 1), "Pb": (1, 1, 1), "Sr2IrO4": (0, 0, 4)}
    r = reflection_constants(material, hkl[material], 10000.0)
    assert r.chi0.imag > 0, "absorption requires Im χ0 > 0"
    assert r.chi0.real < 0, "n < 1 requires Re χ0 < 0"
    assert abs(r.chih) < abs(r.chi0)


def test_fcc_static_lattice_borrmann_identity():
    # fcc, one atom type, no Debye–Waller: F_h = 4 f(h), Im F_h = Im F_0 = 4 f'' exactly, hence
    # Im χh = Im χ0 up to floating-point rounding (1e-12 relative)
    for material, hkl in [("Au", (2, 0, 0)), ("Pt", (2, 2, 0)), ("Pb", (1, 1, 1))]:
        r = reflection_constants(material, hkl, 8000.0, temperature_K=None)
        assert r.chih.imag == pytest.approx(r.chi0.imag, rel=1e-12)
        assert r.chihbar == pytest.approx(r.chih, rel=1e-12)  # centrosymmetric at the origin


def test_debye_waller_reduces_chih_only():
    static = reflection_constants("Au", (2, 0, 0), 8000.0, temperature_K=None)
    warm = reflection_constants("Au", (2, 0, 0), 8000.0, temperature_K=600.0)
    assert warm.chi0 == static.chi0
    assert abs(warm.chih) < abs(static.chih)
    # same phase: the Debye–Waller factor is a real positive number
    assert np.angle(warm.chih) == pytest.approx(np.angle(static.chih), abs=1e-12)


def test_sr2iro4_116_sign_opposite_to_au200(au200):
    r = reflection_constants("Sr2IrO4", (1, 1, 6), 8000.0)
    # F(116) < 0 for the origin-choice-2 structure: Re χh > 0, opposite to Au (200) (Re χh < 0)
    assert r.chih.real > 0
    assert au200.chih.real < 0
    assert r.d_spacing_m == pytest.approx(1.0 / math.sqrt(2 / 5.4994**2 + 36 / 25.7841**2) * 1e-10, rel=1e-10)


def test_sr2iro4_forbidden_and_allowed():
    # I4_1/acd: 00l needs l = 4n
    with pytest.raises(ValueError, match=r"\(0, 0, 2\)"):
        reflection_constants("Sr2IrO4", (0, 0, 2), 8000.0)
    assert abs(reflection_constants("Sr2IrO4", (0, 0, 4), 8000.0).chih) > 0


def test_si220_against_x0h_reference():
    # Si (220) at 8.048 keV (Cu Kα1), X0h server (Stepanov), room temperature:
    # χ0 = −15.127e-6 + 0.3489e-6 i, |Re χh| ≈ 9.2e-6. Tolerances: Re χ0 0.5 % (f0 sum, density);
    # Im χ0 4 % and Re χh 2 % (different f'' tables and Debye–Waller model: we use θD = 645 K).
    r = reflection_constants("Si", (2, 2, 0), 8048.0)
    assert r.chi0.real == pytest.approx(-15.127e-6, rel=0.005)
    assert r.chi0.imag == pytest.approx(0.3489e-6, rel=0.04)
    assert r.chih.real == pytest.approx(-9.2e-6, rel=0.02)
    assert math.degrees(r.bragg_angle_rad) == pytest.approx(23.65, abs=0.01)  # textbook Si 220 Cu Kα1


def test_lattice_override_changes_d_and_volume():
    ref = reflection_constants("Au", (2, 0, 0), 8000.0, temperature_K=None)
    big = reflection_constants("Au", (2, 0, 0), 8000.0, lattice_a_m=4.2e-10, temperature_K=None)
    assert big.d_spacing_m == pytest.approx(2.1e-10, rel=1e-12)
    # χ0 ∝ 1/V at fixed energy (F0 does not depend on the cell)
    assert big.chi0 == pytest.approx(ref.chi0 * (4.0782 / 4.2) ** 3, rel=1e-10)
    assert load_crystal("Au").lattice.a == pytest.approx(4.0782)  # the override did not leak


def test_explicit_formula_for_chih_from_structure_factor():
    # χh = −r_e λ² conj(F(−h)) / (πV) with xrayutilities' F(q) = Σ f e^{−iq·r}
    crystal = load_crystal("Ge")
    energy = 11000.0
    lam = HC_EV_M / energy
    q = crystal.Q(1, 1, 1)
    fmh = crystal.StructureFactor(-q, energy, 0)
    expected = -R_E_M * lam**2 * np.conj(fmh) / (math.pi * crystal.lattice.UnitCellVolume() * 1e-30)
    r = reflection_constants("Ge", (1, 1, 1), energy, temperature_K=None)
    assert r.chih == pytest.approx(complex(expected), rel=1e-12)
    # Ge (111) is not centrosymmetric about the atom at the origin: χh and χh̄ differ in phase
    assert abs(np.angle(r.chih) - np.angle(r.chihbar)) > 1e-3
    assert abs(r.chih) == pytest.approx(abs(r.chihbar), rel=1e-12)
