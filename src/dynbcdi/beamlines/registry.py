"""Beamlines as data: detector, diffractometer, motor names and file reader of each beamline.

A beamline entry (:class:`Beamline`) is plain data: adding a beamline means adding one entry (in
Python below, or a TOML file read by :func:`load_beamline`) plus at most one reader in
:mod:`dynbcdi.io.readers`. Nothing here branches on a beamline's name.

Frames (docs/CONVENTIONS.md): the *file frame* is a detector image as stored (numpy (row, col) of
the TIFF/HDF5 array); the *data frame* is what dynbcdi works in, obtained by
:attr:`DetectorSpec.orientation` ("transpose" at APS 34-ID-C, as cohere reads it). Diffractometer
pixel directions (:class:`~dynbcdi.geometry.beamlines.DiffractometerPreset`) refer to the data
frame, in which col × row = +k̂h (right-handed seen from the sample).

:func:`beamline_geometry` builds the :class:`~dynbcdi.geometry.BraggGeometry` of a (cropped,
binned) data set: its kh points at the centre pixel of the data, not at the nominal kh of the
detector angles, so the geometry follows every crop exactly (``centre_offset_m``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from dynbcdi.beamlines.twotheta import check_h_norm_gross
from dynbcdi.config import from_dict, load_toml
from dynbcdi.geometry.beamlines import (
    DIFFRACTOMETERS,
    DiffractometerPreset,
    diffractometer_geometry,
)
from dynbcdi.geometry.bragg import BraggGeometry

__all__ = [
    "BEAMLINES", "Beamline", "DetectorSpec", "ORIENTATIONS", "beamline_from_dict", "beamline_geometry",
    "beamline_to_dict", "beamline_to_toml", "centre_offset_m", "get_beamline", "load_beamline",
]

#: File-to-data transforms of a 2-D detector image (applied to the last two axes).
ORIENTATIONS: tuple[str, ...] = ("none", "transpose", "flip_rows", "flip_cols", "rot180")

#: Units a beamline's files may use for the energy and the detector distance (factor to SI).
ENERGY_UNITS: dict[str, float] = {"eV": 1.0, "keV": 1e3}
DISTANCE_UNITS: dict[str, float] = {"m": 1.0, "mm": 1e-3}

#: Readers known to :func:`dynbcdi.io.readers.read_scan` (module of :mod:`dynbcdi.io.readers`).
READERS: tuple[str, ...] = ("spec_tiff", "id01", "p10", "nexus")


@dataclass(frozen=True)
class DetectorSpec:
    """An area detector as stored in its files.

    Attributes
    ----------
    name : str
        Detector name (e.g. "34idcTIM2").
    pixel_size_m : float
        Square pixel pitch (m).
    shape : (rows, cols)
        Full detector image as stored in files (file frame).
    orientation : str
        File-to-data transform, one of :data:`ORIENTATIONS`; applied by the readers to frames,
        dark, flat, bad pixels and the region of interest alike.
    centre_px : (row, col)
        Detector pixel (data frame, full detector, stored-pixel index) that the nominal kh of the
        detector angles points at (xrayutilities ``cch1, cch2``).
    gaps : tuple of (axis, index, width_px)
        Physical gaps (data frame): along ``axis`` (0 = rows, 1 = cols) a gap ``width_px`` pixels
        wide lies just before stored index ``index`` (e.g. the Timepix quad seam).
    """

    name: str
    pixel_size_m: float
    shape: tuple[int, int]
    orientation: str = "none"
    centre_px: tuple[float, float] | None = None
    gaps: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pixel_size_m) and self.pixel_size_m > 0):
            raise ValueError(f"detector {self.name!r}: pixel_size_m must be positive, got {self.pixel_size_m!r}")
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"detector {self.name!r}: shape must be (rows, cols) > 0, got {self.shape!r}")
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"detector {self.name!r}: orientation {self.orientation!r} is not one of {ORIENTATIONS}")
        for gap in self.gaps:
            if len(gap) != 3 or gap[0] not in (0, 1) or gap[2] < 0:
                raise ValueError(f"detector {self.name!r}: gaps must be (axis 0|1, index, width ≥ 0), got {gap!r}")

    @property
    def data_shape(self) -> tuple[int, int]:
        """Full detector shape (rows, cols) in the data frame."""
        r, c = self.shape
        return (c, r) if self.orientation == "transpose" else (r, c)

    def to_data(self, image: np.ndarray) -> np.ndarray:
        """File frame → data frame on the last two axes of ``image`` (..., rows, cols); a view."""
        a = np.asarray(image)
        ops = {"none": lambda x: x, "transpose": lambda x: np.swapaxes(x, -1, -2),
               "flip_rows": lambda x: x[..., ::-1, :], "flip_cols": lambda x: x[..., :, ::-1],
               "rot180": lambda x: x[..., ::-1, ::-1]}
        return ops[self.orientation](a)

    def roi_to_data(self, roi: Sequence[int]) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1) on the full detector, file frame → data frame."""
        r0, r1, c0, c1 = (int(v) for v in roi)
        rows, cols = self.shape
        if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
            raise ValueError(f"detector ROI {tuple(roi)} (row0, row1, col0, col1) is not inside the "
                             f"{self.name} detector {self.shape}")
        flipped_r, flipped_c = (rows - r1, rows - r0), (cols - c1, cols - c0)
        return {"none": (r0, r1, c0, c1), "transpose": (c0, c1, r0, r1),
                "flip_rows": (*flipped_r, c0, c1), "flip_cols": (r0, r1, *flipped_c),
                "rot180": (*flipped_r, *flipped_c)}[self.orientation]

    def physical_px(self, axis: int, index: float) -> float:
        """Position (in pixel pitches) of stored pixel ``index`` along data ``axis``, gaps included."""
        return float(index) + sum(w for a, i, w in self.gaps if a == axis and index >= i)

    def frames_offset_px(self, roi_data: Sequence[int]) -> tuple[float, float]:
        """(row, col) of frame pixel (0, 0) relative to :attr:`centre_px`, pixel pitches, data frame."""
        if self.centre_px is None:
            raise ValueError(f"detector {self.name!r} has no centre_px: the pixel on the nominal kh is unknown")
        r0, _, c0, _ = roi_data
        return (self.physical_px(0, r0) - self.physical_px(0, self.centre_px[0]),
                self.physical_px(1, c0) - self.physical_px(1, self.centre_px[1]))

    def gaps_inside(self, roi_data: Sequence[int]) -> tuple[tuple[int, int, int], ...]:
        """Gaps that fall strictly inside a data-frame ROI, as (axis, index within the ROI, width)."""
        r0, r1, c0, c1 = roi_data
        lo_hi = ((r0, r1), (c0, c1))
        return tuple((a, i - lo_hi[a][0], w) for a, i, w in self.gaps if lo_hi[a][0] < i < lo_hi[a][1] and w > 0)


@dataclass(frozen=True)
class Beamline:
    """One beamline as data.

    Attributes
    ----------
    name : str
        Registry key ("34idc", "id01", "p10").
    diffractometer : DiffractometerPreset
        Circles, incident direction and data-frame pixel directions.
    detector : DetectorSpec
        The default area detector.
    motors : dict canonical name → tuple of file names
        File motor/counter names (tried in order, case-insensitive) of every diffractometer circle
        and of "energy" and "detector_distance".
    reader : str
        Reader of this beamline's files, one of :data:`READERS`.
    energy_unit, distance_unit : str
        Units of the energy ("eV" | "keV") and detector distance ("m" | "mm") in the files.
    rocking_motor : str
        Default rocking circle (canonical name).
    monitor : tuple of str
        Counter names of the beam monitor (first found is used); empty if none.
    source : str
        Where the conventions come from.
    """

    name: str
    diffractometer: DiffractometerPreset
    detector: DetectorSpec
    motors: dict[str, tuple[str, ...]]
    reader: str
    energy_unit: str
    distance_unit: str
    rocking_motor: str
    monitor: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        where = f"beamline {self.name!r}"
        if self.reader not in READERS:
            raise ValueError(f"{where}: reader {self.reader!r} is not one of {READERS}")
        if self.energy_unit not in ENERGY_UNITS:
            raise ValueError(f"{where}: energy_unit {self.energy_unit!r} is not one of {sorted(ENERGY_UNITS)}")
        if self.distance_unit not in DISTANCE_UNITS:
            raise ValueError(f"{where}: distance_unit {self.distance_unit!r} is not one of {sorted(DISTANCE_UNITS)}")
        if self.rocking_motor not in self.diffractometer.sample_names:
            raise ValueError(f"{where}: rocking_motor {self.rocking_motor!r} is not a sample circle "
                             f"{self.diffractometer.sample_names}")
        needed = set(self.circle_names) | {"energy", "detector_distance"}
        missing, unknown = sorted(needed - set(self.motors)), sorted(set(self.motors) - needed)
        if missing or unknown:
            raise ValueError(f"{where}: motors must name exactly {sorted(needed)} "
                             f"(missing {missing}, unknown {unknown})")
        if any(not aliases for aliases in self.motors.values()):
            raise ValueError(f"{where}: every motor needs at least one file name")

    @property
    def circle_names(self) -> tuple[str, ...]:
        """Canonical names of all diffractometer circles (sample, then detector)."""
        return self.diffractometer.sample_names + self.diffractometer.detector_names

    def energy_to_eV(self, value: float) -> float:
        """Energy as stored in this beamline's files → eV."""
        return float(value) * ENERGY_UNITS[self.energy_unit]

    def distance_to_m(self, value: float) -> float:
        """Detector distance as stored in this beamline's files → m."""
        return float(value) * DISTANCE_UNITS[self.distance_unit]


def _entry_34idc() -> Beamline:
    return Beamline(
        name="34idc",
        diffractometer=DIFFRACTOMETERS["34idc"],
        detector=DetectorSpec(name="34idcTIM2", pixel_size_m=55e-6, shape=(512, 512), orientation="transpose",
                              centre_px=(256.0, 256.0), gaps=((0, 256, 4), (1, 256, 5))),
        motors={"theta": ("Theta", "th"), "chi": ("Chi",), "phi": ("Phi",), "delta": ("Delta",),
                "gamma": ("Gamma",), "energy": ("Energy",), "detector_distance": ("camdist",)},
        reader="spec_tiff", energy_unit="keV", distance_unit="mm", rocking_motor="theta", monitor=("Monitor",),
        source="cohere-beamlines src/cohere_beamlines/aps_34idc: diffractometers.py (circles, spec motor names "
               "Theta/Chi/Phi/Delta/Gamma, camdist in mm, Energy in keV), detectors.py Detector_34idcTIM2 (512×512, "
               "55 µm, frames read transposed by cohere_core read_tif, pixelorientation ('x+','y-'), beam_zero = "
               "dims//2 = (256, 256), seamsize (4, 5) inserted at 256), instrument.py (ROI from spec #UIMR5: "
               "minX sizeX minY sizeY)",
    )


def _entry_id01() -> Beamline:
    return Beamline(
        name="id01",
        diffractometer=DIFFRACTOMETERS["id01"],
        detector=DetectorSpec(name="mpxgaas", pixel_size_m=55e-6, shape=(516, 516), orientation="transpose",
                              centre_px=(258.0, 258.0)),
        motors={"mu": ("mu",), "eta": ("eta",), "phi": ("phi",), "nu": ("nu",), "delta": ("delta",),
                "energy": ("instrument/monochromator/Energy", "energy"),
                "detector_distance": ("instrument/{detector}/distance", "distance")},
        reader="id01", energy_unit="keV", distance_unit="m", rocking_motor="eta", monitor=("mon", "monitor"),
        source="cohere-beamlines src/cohere_beamlines/esrf_id01: diffractometers.py Diffractometer_id01 (BLISS "
               "paths <scan>.1/instrument/positioners/<motor>, instrument/<detector>/distance in m, "
               "instrument/monochromator/Energy in keV), detectors.py Detector_mpxgaas (516×516, 55 µm, frames "
               "<scan>.1/measurement/<detector>, beam_zero dims//2); pixel orientation from bcdi BeamlineID01 / "
               "cdiutils Geometry ID01 (file columns outboard, rows down → transposed data frame)",
    )


def _entry_p10() -> Beamline:
    return Beamline(
        name="p10",
        diffractometer=DIFFRACTOMETERS["p10"],
        detector=DetectorSpec(name="e4m", pixel_size_m=75e-6, shape=(2167, 2070), orientation="none",
                              centre_px=(1080.0, 1035.0)),
        motors={"mu": ("mu",), "om": ("om",), "chi": ("chi",), "phi": ("phi",), "gam": ("gam",), "del": ("del",),
                "energy": ("fmbenergy",), "detector_distance": ("_distance",)},
        reader="p10", energy_unit="eV", distance_unit="mm", rocking_motor="om", monitor=("ipetra", "curpetra"),
        source="cohere-beamlines src/cohere_beamlines/Petra3_P10: diffractometers.py Diffractometer_P10sixc "
               "(.fio motor names mu/om/chi/phi/gam/del, _distance in mm, fmbenergy in eV), detectors.py "
               "Detector_e4m (Eiger 4M, 75 µm, <scan>/e4m/<sample>_<scan>_data_*.h5 entry/data/data, beam_zero "
               "(x 1035, y 1080)); pixel orientation from bcdi BeamlineP10 / cdiutils Geometry P10 (file columns "
               "inboard, rows down: the file frame is the data frame)",
    )


BEAMLINES: dict[str, Beamline] = {b.name: b for b in (_entry_34idc(), _entry_id01(), _entry_p10())}


def get_beamline(name: str | Beamline) -> Beamline:
    """The registry entry ``name`` (a :class:`Beamline` passes through); one-line ValueError if unknown."""
    if isinstance(name, Beamline):
        return name
    if name not in BEAMLINES:
        raise ValueError(f"unknown beamline {name!r}; known: {sorted(BEAMLINES)} (or load one with load_beamline)")
    return BEAMLINES[name]


# ---------------------------------------------------------------------------- TOML round trip
def beamline_to_dict(beamline: Beamline) -> dict[str, Any]:
    """The entry as nested plain dicts/lists (the TOML layout of :func:`load_beamline`; TOML has no
    None, so unset detector fields are left out)."""
    from dynbcdi.provenance import as_plain

    d = as_plain(beamline)
    d["detector"] = {k: v for k, v in d["detector"].items() if v is not None}
    return d


def beamline_from_dict(data: Mapping[str, Any], where: str = "beamline") -> Beamline:
    """A :class:`Beamline` from nested dicts (TOML tables); unknown or missing keys are ValueErrors."""
    return from_dict(Beamline, data, where)


def load_beamline(path: str | os.PathLike) -> Beamline:
    """Read a beamline entry from a TOML file (layout of :func:`beamline_to_toml`)."""
    try:
        return beamline_from_dict(load_toml(path), where=f"{Path(path).name}")
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ValueError(f"cannot write {v!r} to TOML")


def beamline_to_toml(beamline: Beamline) -> str:
    """TOML text of the entry (scalars first, then [diffractometer], [detector], [motors])."""
    d = beamline_to_dict(beamline)
    tables = {k: d.pop(k) for k in ("diffractometer", "detector", "motors")}
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]"] + [f'"{k}" = {_toml_value(v)}' for k, v in table.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- geometry
def centre_offset_m(frames_offset_px: Sequence[float], start_px: Sequence[int], shape: Sequence[int],
                    binning: Sequence[int], pixel_size_m: float) -> tuple[float, float]:
    """``centre_offset_m`` of :func:`beamline_geometry` for a crop of the frames.

    frames_offset_px : (row, col) of frame pixel (0, 0) relative to the pixel on the nominal kh
        (:attr:`dynbcdi.io.readers.RawScan.frames_offset_px`, unbinned pixels, data frame).
    start_px : (row, col) of the crop's first unbinned pixel in the frames (may be negative when
        padded). shape : (rows, cols) of the binned data. binning : (row, col) factors.
    pixel_size_m : unbinned pixel pitch (m). Returns (along row, along col) in metres of the
    centre of binned pixel (rows//2, cols//2).
    """
    out = []
    for off, start, n, b in zip(frames_offset_px, start_px, shape, binning):
        centre = start + b * (int(n) // 2) + 0.5 * (b - 1)  # middle of the unbinned block
        out.append((float(off) + centre) * float(pixel_size_m))
    return (out[0], out[1])


def _angles_rad(positions_deg: Mapping[str, Any], names: Sequence[str], what: str, skip: str = "") -> dict[str, float]:
    out = {}
    for n in names:
        if n == skip:
            continue
        if n not in positions_deg:
            raise ValueError(f"missing {what} position {n!r} (deg); given: {sorted(positions_deg)}")
        v = np.asarray(positions_deg[n], dtype=float)
        if v.ndim != 0 or not np.isfinite(v):
            raise ValueError(f"{what} position {n!r} must be one finite angle in degrees, got {positions_deg[n]!r}")
        out[n] = math.radians(float(v))
    return out


def beamline_geometry(beamline: str | Beamline, energy_eV: float, positions_deg: Mapping[str, Any],
                      rocking_motor: str, rocking_angles_rad: ArrayLike, detector_shape: tuple[int, int],
                      pixel_size_m: float, detector_distance_m: float,
                      centre_offset_m: tuple[float, float] = (0.0, 0.0),
                      h_norm: float | None = None) -> BraggGeometry:
    """BraggGeometry of a (cropped, binned) rocking scan on a registered beamline.

    positions_deg : absolute circle positions (deg) by canonical name; the detector circles and
        the sample circles outside ``rocking_motor`` are needed (the rocking motor's own entry,
        possibly an (N,) array, is not used). rocking_angles_rad : (N,) offsets of
        ``rocking_motor`` from the Bragg position (rad), in data order. detector_shape : (rows,
        cols) of the data; pixel_size_m : its (binned) pitch (m); detector_distance_m : sample to
        the point where the nominal kh meets the detector (m).
    centre_offset_m : (along row, along col) position (m) on the detector of the data's centre
        pixel (rows//2, cols//2) relative to where the nominal kh(detector angles) meets it (see
        :func:`centre_offset_m`). The returned kh points at that centre pixel; the detector plane,
        perpendicular to the nominal kh, is turned with it by the smallest rotation, so rows and
        columns stay ⟂ kh, and D becomes the distance to the centre pixel. The flat detector is
        thereby tilted by α ≈ |offset|/D: a pixel u from the centre is seen off by ≈ α (u/D)² rad,
        i.e. α n² p/D pixel at n pixels (5e-3 pixel for n = 64, p = 55 µm, D = 0.5 m, α = 0.6°).
    h_norm : if given (rad/m), the 2θ of kh − k0 must be within
        :data:`dynbcdi.beamlines.twotheta.GROSS_MISMATCH_DEG` of the reflection's 2θB, else
        ValueError with the mismatch; smaller mismatches are for :func:`check_two_theta` to report.
    """
    bl = get_beamline(beamline)
    p = bl.diffractometer
    if rocking_motor not in p.sample_names:
        raise ValueError(f"rocking_motor {rocking_motor!r} is not a sample circle of {bl.name}: {p.sample_names}")
    outer = p.sample_names[:p.sample_names.index(rocking_motor)]
    nominal = diffractometer_geometry(
        p, energy_eV, _angles_rad(positions_deg, p.detector_names, "detector circle"), rocking_angles_rad,
        detector_shape, pixel_size_m, detector_distance_m, rocking_circle=rocking_motor,
        sample_angles_rad=_angles_rad(positions_deg, outer, "outer sample circle"))
    geometry = _shift_to_centre(nominal, centre_offset_m)
    if h_norm is not None:
        check_h_norm_gross(geometry, float(h_norm))
    return geometry


def _shift_to_centre(g: BraggGeometry, offset_m: Sequence[float]) -> BraggGeometry:
    """``g`` with kh turned to the detector point ``offset_m`` (row, col) metres from the nominal kh."""
    o_r, o_c = (float(v) for v in offset_m)
    if not (math.isfinite(o_r) and math.isfinite(o_c)):
        raise ValueError(f"centre_offset_m must be finite, got {tuple(offset_m)!r}")
    if o_r == 0.0 and o_c == 0.0:
        return g
    k = g.k_norm
    khat0 = g.kh / k
    pos = g.detector_distance_m * khat0 + o_r * g.detector_row_dir + o_c * g.detector_col_dir
    distance = float(np.linalg.norm(pos))
    khat = pos / distance
    axis = np.cross(khat0, khat)
    turn = Rotation.from_rotvec(axis / np.linalg.norm(axis) * math.atan2(np.linalg.norm(axis), khat0 @ khat))
    kh = k * khat
    h = kh - g.k0
    rocking_axis, angles = g.rocking_axis, g.rocking_angles_rad
    if rocking_axis @ np.cross(g.k0, h) < 0:  # keep "+θ raises the glancing angle" after the turn
        rocking_axis, angles = -rocking_axis, -angles
    return BraggGeometry(wavelength_m=g.wavelength_m, k0=g.k0, kh=kh, h=h, rocking_axis=rocking_axis,
                         rocking_angles_rad=angles, detector_distance_m=distance, pixel_size_m=g.pixel_size_m,
                         detector_shape=g.detector_shape, detector_row_dir=turn.apply(np.array(g.detector_row_dir)),
                         detector_col_dir=turn.apply(np.array(g.detector_col_dir)))

