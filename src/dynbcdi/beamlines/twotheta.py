"""Measured 2θ against the reflection: a convention and calibration check, reported as offsets.

The detector angles (and the position of the analysed pixel on the detector) give the measured
scattering angle 2θm; the reflection (material, hkl, energy) gives 2θB = 2 asin(λ/2d). A mismatch
of a few 0.1° is common (lattice parameter of the sample, energy calibration, detector angle zero)
and is reported as either of two equivalent explanations, from Bragg's law λ = 2d sin θ:

* a lattice-parameter offset at fixed energy, Δa/a = d_m/d − 1 = sin θB / sin θm − 1;
* an energy offset at fixed lattice, ΔE = E (sin θB / sin θm − 1) (E' = hc / (2 d sin θm)).

Only a gross mismatch (more than :data:`GROSS_MISMATCH_DEG`, e.g. a wrong reflection, a wrong
energy unit or a wrong detector convention) is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dynbcdi.geometry.bragg import BraggGeometry, ReflectionLike

__all__ = ["GROSS_MISMATCH_DEG", "TwoThetaReport", "check_h_norm_gross", "check_two_theta"]

#: |2θm − 2θB| above this (deg) is an error: 1° is Δa/a ≈ 3 % at 2θ = 34°, beyond any elastic
#: strain of a crystal, while neighbouring reflections (Au 111 → 200 at 9 keV) lie ≥ 5° apart.
GROSS_MISMATCH_DEG = 1.0
#: Below this (deg) the mismatch is within angle read-back and pixel-position uncertainty.
NEGLIGIBLE_MISMATCH_DEG = 0.02


@dataclass(frozen=True)
class TwoThetaReport:
    """Measured vs expected scattering angle of one reflection.

    Attributes
    ----------
    measured_deg, expected_deg : float
        2θm from the geometry, 2θB of the reflection at the same wavelength (deg).
    mismatch_deg : float
        2θm − 2θB (deg).
    lattice_offset : float
        Δa/a that would explain the mismatch at the nominal energy (dimensionless).
    energy_offset_eV : float
        ΔE that would explain it with the nominal lattice (eV).
    energy_eV : float
        The energy used (eV). reflection : str — e.g. "Au (1, 1, 1)".
    """

    measured_deg: float
    expected_deg: float
    mismatch_deg: float
    lattice_offset: float
    energy_offset_eV: float
    energy_eV: float
    reflection: str

    @property
    def negligible(self) -> bool:
        """True if |mismatch| < :data:`NEGLIGIBLE_MISMATCH_DEG`."""
        return abs(self.mismatch_deg) < NEGLIGIBLE_MISMATCH_DEG

    def summary(self) -> str:
        """One line for logs and reports."""
        return (f"{self.reflection} at {self.energy_eV:.1f} eV: measured 2θ = {self.measured_deg:.4f}°, expected "
                f"{self.expected_deg:.4f}°, mismatch {self.mismatch_deg:+.4f}° ≙ Δa/a = {self.lattice_offset:+.3e} "
                f"or ΔE = {self.energy_offset_eV:+.1f} eV")


def check_two_theta(geometry_or_two_theta_deg: BraggGeometry | float, reflection: ReflectionLike) -> TwoThetaReport:
    """Compare the measured 2θ with the reflection's 2θB; ValueError only if the mismatch is gross.

    geometry_or_two_theta_deg : a BraggGeometry (2θ between its k0 and kh, i.e. at the data's
        centre pixel, and its wavelength) or a measured 2θ in degrees (at the reflection's energy).
    reflection : :class:`dynbcdi.materials.ReflectionConstants` (wavelength_m, d_spacing_m or
        h_norm, energy_eV; material and hkl for the message if present).
    """
    if isinstance(geometry_or_two_theta_deg, BraggGeometry):
        tth_m, lam = geometry_or_two_theta_deg.two_theta_rad, geometry_or_two_theta_deg.wavelength_m
    else:
        tth_m, lam = math.radians(float(geometry_or_two_theta_deg)), float(reflection.wavelength_m)
    if not (math.isfinite(tth_m) and 0 < tth_m < math.pi):
        raise ValueError(f"measured 2θ must lie in (0°, 180°), got {math.degrees(tth_m)!r}°")
    d = 2 * math.pi / float(reflection.h_norm)
    name = f"{getattr(reflection, 'material', 'reflection')} {tuple(getattr(reflection, 'hkl', ()))}"
    if lam > 2 * d:
        raise ValueError(f"{name}: λ = {lam:.6g} m exceeds 2d = {2 * d:.6g} m, no Bragg angle")
    energy = float(reflection.energy_eV) * float(reflection.wavelength_m) / lam  # E ∝ 1/λ
    sin_b, sin_m = lam / (2 * d), math.sin(tth_m / 2)
    ratio = sin_b / sin_m - 1.0
    report = TwoThetaReport(measured_deg=math.degrees(tth_m), expected_deg=math.degrees(2 * math.asin(sin_b)),
                            mismatch_deg=math.degrees(tth_m - 2 * math.asin(sin_b)), lattice_offset=ratio,
                            energy_offset_eV=energy * ratio, energy_eV=energy, reflection=name)
    if abs(report.mismatch_deg) > GROSS_MISMATCH_DEG:
        raise ValueError(f"gross 2θ mismatch (> {GROSS_MISMATCH_DEG}°): {report.summary()}; check the reflection, "
                         "the energy and its unit, and the detector angles")
    return report


def check_h_norm_gross(geometry: BraggGeometry, h_norm: float) -> None:
    """ValueError if |kh − k0| of ``geometry`` is grossly off a reflection of |h| = ``h_norm`` (rad/m)."""
    if not (math.isfinite(h_norm) and h_norm > 0):
        raise ValueError(f"h_norm must be positive and finite, got {h_norm!r}")
    k = geometry.k_norm
    if h_norm > 2 * k:
        raise ValueError(f"h_norm = {h_norm:.6g} rad/m exceeds 2k = {2 * k:.6g} rad/m: below the Bragg cut-off")
    expected = math.degrees(2 * math.asin(h_norm / (2 * k)))
    measured = math.degrees(geometry.two_theta_rad)
    if abs(measured - expected) > GROSS_MISMATCH_DEG:
        raise ValueError(f"detector angles give 2θ = {measured:.4f}° but the reflection needs 2θB = {expected:.4f}° "
                         f"(mismatch {measured - expected:+.4f}° > {GROSS_MISMATCH_DEG}°)")
