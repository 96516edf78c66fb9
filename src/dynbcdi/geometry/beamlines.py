"""Diffractometers as data: circle presets in :data:`DIFFRACTOMETERS`, geometry from angles.

All presets share one lab frame, the xrayutilities ``QConversion`` frame used by the APS beamline
software (cohere-beamlines, ``common/diff.py``): +z along the incident beam
(``incidentaxis = (0, 0, 1)``), +y vertical up, +x horizontal, x = y × z (to the left seen along
the beam). Circles are written as in xrayutilities (``'y+'``: right-handed about +y), outermost
first. Beamline entries (detector, motor names, file reader) live in
:mod:`dynbcdi.beamlines.registry`; this module only turns circle angles into a BraggGeometry.

APS 34-ID-C (cohere-beamlines ``aps_34idc/diffractometers.py``, ``detectors.py``):

* Detector circles δ about +y (in-plane: δ > 0 swings kh towards +x), then γ about −x
  (out-of-plane: γ > 0 raises kh towards +y), so k̂h = (sin δ cos γ, sin γ, cos δ cos γ).
* Sample circles θ about +y (the usual rocking motor), χ about −z, φ about +y.
* Detector pixels (Timepix 34idcTIM1/TIM2, 55 µm): cohere reads every TIFF frame transposed
  (``cohere_core.utilities.read_tif`` returns ``tifffile.imread(f).transpose()``) and gives that
  transposed frame ``pixelorientation = ('x+', 'y-')``. ``pixel_directions`` here refer to the
  same *data* frame, i.e. after the detector's file-to-data orientation
  (:class:`dynbcdi.beamlines.DetectorSpec`, "transpose" at 34-ID-C): data rows along +x, data
  columns along −y at δ = γ = 0. col × row = +k̂h; the raw TIFF frame itself is left-handed.
  bcdi (``Beamline34ID``: TIFF columns outboard, rows down) says the same of the file frame.

ESRF ID01 and PETRA III P10: circles as in cohere-beamlines and bcdi (they agree); detector pixel
directions from bcdi and cdiutils, whose horizontal sign is opposite to cohere-beamlines' for
these two beamlines (sources in each preset).

Rocking sign: :class:`~dynbcdi.geometry.bragg.BraggGeometry` wants a positive angle to increase the
glancing angle. Where the motor's positive sense does the opposite (e.g. δ < 0 with θ about +y),
the geometry stores the axis −â and the negated motor offsets: the same physical rotations, the
same data order j.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import constants

from dynbcdi.geometry.bragg import BraggGeometry
from dynbcdi.geometry.frames import circle_axis, circles_rotation

logger = logging.getLogger(__name__)

# |kh − k0| from the detector angles must match the reflection's |h| to this relative precision:
# 1e-3 ≈ 0.05° in 2θ at 2θ = 45°, coarser than any real angle read-back error.
H_NORM_RTOL = 1e-3


@dataclass(frozen=True)
class DiffractometerPreset:
    """A diffractometer described in xrayutilities circle notation.

    Attributes
    ----------
    name : str
        Registry key.
    incident_dir : (3,) tuple
        Incident-beam direction in the lab frame.
    sample_circles, detector_circles : tuple of str
        Circles ``'x+'`` … ``'z-'``, outermost first (right-handed about the signed axis).
    sample_names, detector_names : tuple of str
        Motor names matching the circles.
    pixel_directions : (str, str)
        Lab directions of increasing (row, col) index of the *data* frame (after the detector's
        file-to-data orientation) at zero detector angles, e.g. ``('x+', 'y-')``.
    source : str
        Where the convention comes from.
    """

    name: str
    incident_dir: tuple[float, float, float]
    sample_circles: tuple[str, ...]
    sample_names: tuple[str, ...]
    detector_circles: tuple[str, ...]
    detector_names: tuple[str, ...]
    pixel_directions: tuple[str, str]
    source: str

    def __post_init__(self) -> None:
        for circle in self.sample_circles + self.detector_circles + tuple(self.pixel_directions):
            circle_axis(circle)
        pairs = ((self.sample_circles, self.sample_names), (self.detector_circles, self.detector_names))
        if any(len(circles) != len(names) for circles, names in pairs):
            raise ValueError(f"preset {self.name!r}: every circle needs exactly one name")


DIFFRACTOMETERS: dict[str, DiffractometerPreset] = {
    "34idc": DiffractometerPreset(
        name="34idc",
        incident_dir=(0.0, 0.0, 1.0),
        sample_circles=("y+", "z-", "y+"),
        sample_names=("theta", "chi", "phi"),
        detector_circles=("y+", "x-"),
        detector_names=("delta", "gamma"),
        pixel_directions=("x+", "y-"),
        source="cohere-beamlines src/cohere_beamlines/aps_34idc/diffractometers.py Diffractometer_34idc "
               "(sampleaxes ('y+','z-','y+') Theta/Chi/Phi, detectoraxes ('y+','x-') Delta/Gamma, incidentaxis "
               "(0,0,1)); detectors.py Detector_34idcTIM2 pixelorientation ('x+','y-') of the transposed frame "
               "(cohere_core.utilities.read_tif transposes); bcdi bcdi/experiment/beamline.py Beamline34ID agrees (detector_hor "
               "'x+', detector_ver 'y-' for the file frame: TIFF columns outboard, rows down)",
    ),
    "id01": DiffractometerPreset(
        name="id01",
        incident_dir=(0.0, 0.0, 1.0),
        sample_circles=("y-", "x-", "y-"),
        sample_names=("mu", "eta", "phi"),
        detector_circles=("y-", "x-"),
        detector_names=("nu", "delta"),
        pixel_directions=("x+", "y-"),
        source="circles: cohere-beamlines src/cohere_beamlines/esrf_id01/diffractometers.py (sampleaxes "
               "('y-','x-','y-') mu/eta/phi, detectoraxes ('y-','x-') nu/delta, incidentaxis (0,0,1)) = bcdi "
               "bcdi/experiment/diffractometer.py ID01; pixels: bcdi bcdi/experiment/beamline.py BeamlineID01 "
               "(detector_hor 'x+', detector_ver 'y-': file columns outboard, rows down) and cdiutils Geometry "
               "ID01 (axis0 'y-', axis1 'x+'); data frame = transposed file frame. cohere's Detector_mpxgaas "
               "('x-','y-' of the transposed frame) has the opposite horizontal sign",
    ),
    "p10": DiffractometerPreset(
        name="p10",
        incident_dir=(0.0, 0.0, 1.0),
        sample_circles=("y+", "x-", "z+", "y-"),
        sample_names=("mu", "om", "chi", "phi"),
        detector_circles=("y+", "x-"),
        detector_names=("gam", "del"),
        pixel_directions=("y-", "x-"),
        source="circles: cohere-beamlines src/cohere_beamlines/Petra3_P10/diffractometers.py (sampleaxes "
               "('y+','x-','z+','y-') mu/om/chi/phi, detectoraxes ('y+','x-') gam/del, incidentaxis (0,0,1)) = bcdi "
               "diffractometer P10; pixels: bcdi bcdi/experiment/beamline.py BeamlineP10 (detector_hor 'x-', "
               "detector_ver 'y-': detector seen from upstream, file columns inboard, rows down) and cdiutils "
               "Geometry P10 (axis0 'y-', axis1 'x-'); data frame = file frame. cohere's Detector_e4m ('x+','y-' "
               "of the transposed frame) has the opposite horizontal sign",
    ),
}


def wavelength_from_energy(energy_eV: float) -> float:
    """λ = hc/E in metres for a photon energy in eV (CODATA constants from scipy)."""
    e = float(energy_eV)
    if not np.isfinite(e) or e <= 0:
        raise ValueError(f"energy_eV must be a positive finite number, got {energy_eV!r}")
    return constants.h * constants.c / (e * constants.e)


def _ordered_angles(names: tuple[str, ...], given: Mapping[str, float], what: str) -> tuple[float, ...]:
    unknown = set(given) - set(names)
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; this diffractometer has {names}")
    missing = [n for n in names if n not in given]
    if missing:
        raise ValueError(f"missing {what} {missing} (needed: {names})")
    values = tuple(float(given[n]) for n in names)
    if not all(np.isfinite(values)):
        raise ValueError(f"{what} must be finite, got {dict(given)}")
    return values


def _rocking_axis(preset: DiffractometerPreset, rocking_circle: str,
                  sample_angles_rad: Mapping[str, float] | None) -> np.ndarray:
    """Lab axis of ``rocking_circle``: its own axis turned by the circles outside it."""
    if rocking_circle not in preset.sample_names:
        raise ValueError(f"rocking_circle {rocking_circle!r} is not a sample circle of {preset.name}: "
                         f"{preset.sample_names}")
    i = preset.sample_names.index(rocking_circle)
    outer = preset.sample_names[:i]
    given = {k: v for k, v in (sample_angles_rad or {}).items() if k in outer}
    angles = _ordered_angles(outer, given, "outer sample angles (rad)")
    return circles_rotation(preset.sample_circles[:i], angles).apply(circle_axis(preset.sample_circles[i]))


def _check_h_norm(h: np.ndarray, h_norm: float, k: float) -> None:
    if not np.isfinite(h_norm) or h_norm <= 0:
        raise ValueError(f"h_norm must be positive and finite, got {h_norm!r}")
    measured = np.linalg.norm(h)
    if abs(measured - h_norm) <= H_NORM_RTOL * h_norm:
        return
    tth = np.degrees(2 * np.arcsin(min(measured / (2 * k), 1.0)))
    if h_norm > 2 * k:
        raise ValueError(f"h_norm = {h_norm:.6g} rad/m exceeds 2k = {2 * k:.6g} rad/m: below the Bragg cut-off")
    tth_b = np.degrees(2 * np.arcsin(h_norm / (2 * k)))
    raise ValueError(f"detector angles give 2θ = {tth:.4f}° (|kh − k0| = {measured:.6g} rad/m) but the reflection "
                     f"needs 2θB = {tth_b:.4f}° (|h| = {h_norm:.6g} rad/m): mismatch {tth - tth_b:+.4f}°")


def diffractometer_geometry(preset: DiffractometerPreset | str, energy_eV: float,
                            detector_angles_rad: Mapping[str, float], rocking_angles_rad: ArrayLike,
                            detector_shape: tuple[int, int], pixel_size_m: float, detector_distance_m: float,
                            rocking_circle: str | None = None,
                            sample_angles_rad: Mapping[str, float] | None = None,
                            h_norm: float | None = None) -> BraggGeometry:
    """BraggGeometry of a rocking scan on a preset diffractometer (lab frame of the preset).

    The sample is at the Bragg position at the scan centre, so h = kh − k0 with
    kh = k·R_det(angles)·incident_dir. ``rocking_angles_rad`` (N,) are motor offsets of
    ``rocking_circle`` (default: outermost sample circle) from that position; for an inner circle
    the outer sample angles (rad) are needed in ``sample_angles_rad``. If ``h_norm`` (rad/m) is
    given, |kh − k0| must match it to 1e-3 relative, else ValueError with the 2θ mismatch.
    """
    p = DIFFRACTOMETERS[preset] if isinstance(preset, str) and preset in DIFFRACTOMETERS else preset
    if not isinstance(p, DiffractometerPreset):
        raise ValueError(f"unknown diffractometer {preset!r}; known: {sorted(DIFFRACTOMETERS)}")
    lam = wavelength_from_energy(energy_eV)
    k = 2.0 * np.pi / lam
    r_det = circles_rotation(p.detector_circles, _ordered_angles(p.detector_names, detector_angles_rad,
                                                                 "detector angles (rad)"))
    incident = np.asarray(p.incident_dir, dtype=float)
    k0, kh = k * incident, k * r_det.apply(incident)
    h = kh - k0
    if np.linalg.norm(h) < 1e-9 * k:
        raise ValueError(f"detector angles {dict(detector_angles_rad)} put the detector in the direct beam (h = 0)")
    if h_norm is not None:
        _check_h_norm(h, float(h_norm), k)
    axis = _rocking_axis(p, rocking_circle or p.sample_names[0], sample_angles_rad)
    angles = np.asarray(rocking_angles_rad, dtype=float)
    if axis @ np.cross(k0, h) < -1e-9 * k * np.linalg.norm(h):
        logger.debug("%s: positive %s decreases the glancing angle; storing −axis and −angles",
                     p.name, rocking_circle or p.sample_names[0])
        axis, angles = -axis, -angles
    row, col = (r_det.apply(circle_axis(d)) for d in p.pixel_directions)
    logger.debug("%s geometry at %.1f eV: k̂h = %s", p.name, float(energy_eV), kh / k)
    return BraggGeometry(wavelength_m=lam, k0=k0, kh=kh, h=h, rocking_axis=axis, rocking_angles_rad=angles,
                         detector_distance_m=detector_distance_m, pixel_size_m=pixel_size_m,
                         detector_shape=detector_shape, detector_row_dir=row, detector_col_dir=col)


def aps34idc_geometry(energy_eV: float, delta_rad: float, gamma_rad: float, rocking_angles_rad: ArrayLike,
                      detector_shape: tuple[int, int], pixel_size_m: float, detector_distance_m: float,
                      h_norm: float | None = None, rocking_circle: str = "theta",
                      sample_angles_rad: Mapping[str, float] | None = None) -> BraggGeometry:
    """APS 34-ID-C rocking scan (lab frame and circles: module docstring, preset ``DIFFRACTOMETERS['34idc']``).

    ``delta_rad`` (in-plane, about +y) and ``gamma_rad`` (out-of-plane, about −x) place the
    detector; ``rocking_angles_rad`` (N,) are θ-motor offsets (rocking about vertical +y) from the
    Bragg position unless another ``rocking_circle`` ('chi', 'phi') is named. ``pixel_size_m``
    55e-6 for the Timepix detectors; data rows follow +x, columns −y at δ = γ = 0, where the data
    frame is the *transposed* TIFF frame (read through :mod:`dynbcdi.io.readers.spec_tiff`).
    """
    return diffractometer_geometry("34idc", energy_eV, {"delta": delta_rad, "gamma": gamma_rad},
                                   rocking_angles_rad, detector_shape, pixel_size_m, detector_distance_m,
                                   rocking_circle=rocking_circle, sample_angles_rad=sample_angles_rad,
                                   h_norm=h_norm)
