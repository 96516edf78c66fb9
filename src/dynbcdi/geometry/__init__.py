"""Diffraction geometry: lab and grid frames, Δq of a rocking scan, detector-frame sampling.

* :mod:`~dynbcdi.geometry.frames` — :class:`GridFrame`, exact rotations, goniometer circles.
* :mod:`~dynbcdi.geometry.bragg` — :class:`BraggGeometry` and :func:`generic_geometry`.
* :mod:`~dynbcdi.geometry.beamlines` — diffractometer circle presets (:data:`DIFFRACTOMETERS`) and
  :func:`aps34idc_geometry` (APS 34-ID-C lab frame of the beamline software).
"""

from dynbcdi.geometry.beamlines import (
    DIFFRACTOMETERS,
    DiffractometerPreset,
    aps34idc_geometry,
    diffractometer_geometry,
    wavelength_from_energy,
)
from dynbcdi.geometry.bragg import BraggGeometry, ReflectionLike, generic_geometry
from dynbcdi.geometry.frames import GridFrame

__all__ = [
    "DIFFRACTOMETERS",
    "BraggGeometry",
    "DiffractometerPreset",
    "GridFrame",
    "ReflectionLike",
    "aps34idc_geometry",
    "diffractometer_geometry",
    "generic_geometry",
    "wavelength_from_energy",
]
