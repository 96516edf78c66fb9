"""Susceptibilities and characteristic lengths of one Bragg reflection.

Sign and Fourier convention (``docs/PHYSICS.md``): fields ∝ e^{+i(k·r − ωt)},
ε(r) = 1 + χ(r), χ(r) = Σ_g χ_g e^{+i g·r}, absorption ⇔ Im χ0 > 0, and Re χ0 < 0. With
xrayutilities' structure factor F(q) = Σ_j f_j(q, E) e^{−i q·r_j} (f = f0 + f' + i f'', f'' > 0)
this convention reads

    χ_g = −r_e λ² conj(F(−g)) / (π V),

i.e. χ0 = −r_e λ² conj(F0)/(πV) (identical to xrayutilities' ``Crystal.chi0``), χh from F(−h),
χh̄ from F(+h). xraylib's ``Crystal_F_H_StructureFactor`` is Σ f e^{+2πi h·x} with f'' > 0, so
χh = −r_e λ² conj(F_xraylib(h)) / (πV). xrayutilities' ``Crystal.chih`` only returns the absolute
values of the real and imaginary parts and is not used.

Characteristic lengths (X0h conventions; they reproduce the values the paper quotes from the X0h
server for Au (200) at 8 keV with a = 4.07 Å, see ``tests/materials``):

* symmetric Bragg "extinction length" t_B = λ √(γ0|γh|) / (π |C| √|χh χh̄|), γ0 = |γh| = sin θB.
  This is Authier's Pendellösung distance of the Bragg case Λ_B = λ√(γ0|γh|)/(|C|√|χhχh̄|)
  divided by π, i.e. twice the 1/e *amplitude* penetration depth at the centre of the
  total-reflection range (Als-Nielsen & McMorrow's Λ_ext = v_c/(4 d r_e |F|) is t_B/2).
* symmetric Laue Pendellösung distance Λ_L = λ √(γ0 γh) / (|C| √|χh χh̄|), γ0 = γh = cos θB
  (Authier, *Dynamical Theory of X-ray Diffraction*, Λ0).
* absorption length 1/μ with μ = k Im χ0 (intensity attenuation, normal incidence).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.constants as sc
import xrayutilities as xu

from dynbcdi.materials.library import load_crystal, material_label, static_lattice_copy

R_E_M: float = sc.physical_constants["classical electron radius"][0]
HC_EV_M: float = sc.h * sc.c / sc.e  # λ[m] = HC_EV_M / E[eV]
ROOM_TEMPERATURE_K: float = 293.15
# |F_h| below this fraction of |F_0| is a systematically absent (forbidden) reflection; genuine
# weak reflections are > 1e-4 while symmetry cancellation leaves ~1e-15.
_FORBIDDEN_RELATIVE_F: float = 1e-6


@dataclass(frozen=True)
class ReflectionConstants:
    """Two-beam constants of reflection `hkl` of `material` at `energy_eV` (SI units).

    Lengths in metres, angles in radians, |h| in rad/m; χ in the PHYSICS.md convention. The three
    characteristic lengths are for σ polarization (C = 1); the methods give them for any C.
    `temperature_K` records the Debye–Waller temperature used (None: static lattice).
    """

    material: str
    hkl: tuple[int, int, int]
    energy_eV: float
    wavelength_m: float
    d_spacing_m: float
    h_norm: float
    bragg_angle_rad: float
    chi0: complex
    chih: complex
    chihbar: complex
    polarization_sigma: float
    polarization_pi: float
    extinction_length_bragg_m: float
    pendellosung_length_laue_m: float
    absorption_length_m: float
    temperature_K: float | None = None

    def polarization(self, kind: str | float) -> float:
        """Polarization factor C: "sigma" → 1, "pi" → cos 2θB, or an explicit C in [−1, 1]."""
        if isinstance(kind, str):
            key = kind.strip().lower()
            if key in ("sigma", "s"):
                return self.polarization_sigma
            if key in ("pi", "p"):
                return self.polarization_pi
            raise ValueError(f"polarization must be 'sigma', 'pi' or a number in [-1, 1], got {kind!r}")
        value = float(kind)
        if not (math.isfinite(value) and -1.0 <= value <= 1.0):
            raise ValueError(f"explicit polarization factor C must lie in [-1, 1], got {kind!r}")
        return value

    def _coupling(self, kind: str | float) -> float:
        c = abs(self.polarization(kind))
        if c == 0.0:
            raise ValueError(f"polarization {kind!r} gives C = 0 (2θB = 90°): the beams do not couple")
        return c * math.sqrt(abs(self.chih) * abs(self.chihbar))

    def extinction_length_bragg(self, polarization: str | float = "sigma") -> float:
        """Symmetric-Bragg X0h extinction length λ sinθB / (π |C| √|χh χh̄|), metres."""
        return self.wavelength_m * math.sin(self.bragg_angle_rad) / (math.pi * self._coupling(polarization))

    def pendellosung_length_laue(self, polarization: str | float = "sigma") -> float:
        """Symmetric-Laue Pendellösung distance λ cosθB / (|C| √|χh χh̄|), metres."""
        return self.wavelength_m * math.cos(self.bragg_angle_rad) / self._coupling(polarization)


def _validate_hkl(hkl: Sequence[int]) -> tuple[int, int, int]:
    if isinstance(hkl, (str, bytes)):
        raise ValueError(f"hkl must be three integers, got {hkl!r}")
    try:
        values = [float(v) for v in hkl]
    except (TypeError, ValueError) as err:
        raise ValueError(f"hkl must be three integers, got {hkl!r}") from err
    if len(values) != 3 or any(not math.isfinite(v) or v != round(v) for v in values):
        raise ValueError(f"hkl must be three integers, got {hkl!r}")
    result = tuple(int(round(v)) for v in values)
    if result == (0, 0, 0):
        raise ValueError("hkl = (0, 0, 0) is the forward beam, not a Bragg reflection")
    return result  # type: ignore[return-value]


def _validate_energy(energy_eV: float) -> float:
    try:
        value = float(energy_eV)
    except (TypeError, ValueError) as err:
        raise ValueError(f"energy_eV must be a number, got {energy_eV!r}") from err
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"energy_eV must be positive and finite, got {energy_eV!r}")
    return value


def _bragg_sine(wavelength_m: float, d_m: float, what: str) -> float:
    """sin θB = λ/(2d); ValueError giving the minimum energy hc/(2d) when there is no Bragg angle."""
    sin_theta = wavelength_m / (2 * d_m)
    if sin_theta >= 1.0:
        raise ValueError(
            f"energy {HC_EV_M / wavelength_m:g} eV is below the Bragg cut-off of {what} "
            f"(d = {d_m * 1e10:.5g} Å): the minimum energy is {HC_EV_M / (2 * d_m):.6g} eV"
        )
    return sin_theta


def _structure_factors(
    crystal: xu.materials.Crystal,
    hkl: tuple[int, int, int],
    energy_eV: float,
    temperature_K: float | None,
) -> tuple[complex, complex, complex]:
    """(F0, F(+h), F(−h)) from xrayutilities, electrons per unit cell, Debye–Waller included."""
    if crystal.thetaDebye:
        temp = 0.0 if temperature_K is None else temperature_K
    else:
        # CIF crystals: xrayutilities uses the per-atom B factors only when temp == 0.
        temp = 0.0
        if temperature_K is None:
            crystal = static_lattice_copy(crystal)
    q = np.asarray(crystal.Q(*hkl), dtype=float)
    f0 = complex(crystal.StructureFactor(np.zeros(3), energy_eV, temp))
    fh = complex(crystal.StructureFactor(q, energy_eV, temp))
    fmh = complex(crystal.StructureFactor(-q, energy_eV, temp))
    return f0, fh, fmh


def reflection_constants(
    material: str | os.PathLike,
    hkl: Sequence[int],
    energy_eV: float,
    *,
    lattice_a_m: float | None = None,
    lattice_c_m: float | None = None,
    temperature_K: float | None = ROOM_TEMPERATURE_K,
) -> ReflectionConstants:
    """Compute d, |h|, θB, χ0, χh, χh̄, C and the characteristic lengths of one reflection.

    Parameters
    ----------
    material : built-in name (`BUILTIN_MATERIALS`) or path of a CIF file.
    hkl : three integer Miller indices, not all zero.
    energy_eV : photon energy (eV), above the Bragg cut-off hc/(2d).
    lattice_a_m, lattice_c_m : lattice-constant overrides (metres), e.g. ``lattice_a_m=4.07e-10``
        for the paper's Au.
    temperature_K : Debye–Waller temperature. Elemental built-ins use the Debye model with their
        Debye temperature; CIF materials use the CIF's own displacement parameters whatever the
        value (the shipped Sr2IrO4 has none). None: static lattice, no Debye–Waller factor.

    Raises ValueError naming the offending value: unknown material, bad hkl, non-positive energy,
    energy below the cut-off (the message gives the minimum energy), forbidden reflection.
    """
    hkl_t = _validate_hkl(hkl)
    energy = _validate_energy(energy_eV)
    if temperature_K is not None and not (math.isfinite(temperature_K) and temperature_K >= 0):
        raise ValueError(f"temperature_K must be >= 0 or None, got {temperature_K!r}")
    crystal = load_crystal(material, lattice_a_m=lattice_a_m, lattice_c_m=lattice_c_m)
    label = material_label(material)

    wavelength = HC_EV_M / energy
    d = 2 * math.pi / (np.linalg.norm(crystal.Q(*hkl_t)) * 1e10)
    sin_theta = _bragg_sine(wavelength, d, f"{label} {hkl_t}")
    f0, fh, fmh = _structure_factors(crystal, hkl_t, energy, temperature_K)
    if max(abs(fh), abs(fmh)) <= _FORBIDDEN_RELATIVE_F * abs(f0):
        raise ValueError(
            f"reflection {hkl_t} of {label} is forbidden: |F_h| = {abs(fh):.3g} ≈ 0 "
            f"(F_0 = {abs(f0):.4g} electrons)"
        )
    volume = crystal.lattice.UnitCellVolume() * 1e-30
    scale = -R_E_M * wavelength**2 / (math.pi * volume)
    theta = math.asin(sin_theta)
    chi0 = scale * f0.conjugate()
    chih = scale * fmh.conjugate()
    chihbar = scale * fh.conjugate()
    coupling = math.sqrt(abs(chih) * abs(chihbar))
    return ReflectionConstants(
        material=label,
        hkl=hkl_t,
        energy_eV=energy,
        wavelength_m=wavelength,
        d_spacing_m=d,
        h_norm=2 * math.pi / d,
        bragg_angle_rad=theta,
        chi0=complex(chi0),
        chih=complex(chih),
        chihbar=complex(chihbar),
        polarization_sigma=1.0,
        polarization_pi=math.cos(2 * theta),
        extinction_length_bragg_m=wavelength * sin_theta / (math.pi * coupling),
        pendellosung_length_laue_m=wavelength * math.cos(theta) / coupling,
        absorption_length_m=wavelength / (2 * math.pi * chi0.imag),
        temperature_K=temperature_K,
    )
