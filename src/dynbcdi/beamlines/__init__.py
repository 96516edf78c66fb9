"""Beamlines as data (:mod:`~dynbcdi.beamlines.registry`) and the 2θ check (:mod:`~dynbcdi.beamlines.twotheta`).

* :data:`BEAMLINES`, :func:`get_beamline`, :class:`Beamline`, :class:`DetectorSpec`,
  :func:`load_beamline` / :func:`beamline_to_toml` (TOML entries);
* :func:`beamline_geometry` — BraggGeometry of a cropped, binned scan, kh on the data's centre pixel;
* :func:`check_two_theta` → :class:`TwoThetaReport` (mismatch as Δa/a and ΔE).
"""

from dynbcdi.beamlines.registry import (
    BEAMLINES,
    ORIENTATIONS,
    Beamline,
    DetectorSpec,
    beamline_from_dict,
    beamline_geometry,
    beamline_to_dict,
    beamline_to_toml,
    centre_offset_m,
    get_beamline,
    load_beamline,
)
from dynbcdi.beamlines.twotheta import GROSS_MISMATCH_DEG, TwoThetaReport, check_two_theta

__all__ = [
    "BEAMLINES", "GROSS_MISMATCH_DEG", "ORIENTATIONS", "Beamline", "DetectorSpec", "TwoThetaReport",
    "beamline_from_dict", "beamline_geometry", "beamline_to_dict", "beamline_to_toml", "centre_offset_m",
    "check_two_theta", "get_beamline", "load_beamline",
]
