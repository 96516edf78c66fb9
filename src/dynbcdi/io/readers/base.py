"""What every beamline reader takes (:class:`SourceConfig`) and returns (:class:`RawScan`).

A reader turns a beamline's own files into raw frames in the beamline's *data* orientation
(:attr:`dynbcdi.beamlines.DetectorSpec.orientation`) with absolute motor positions under the
beamline's canonical circle names. No correction happens here: dark, flat and bad-pixel images are
only cut to the frames' detector region and oriented like them; ``dynbcdi.prepare`` applies them.
:func:`read_scan` picks the reader from the beamline entry (a table lookup, no if-chain).
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dynbcdi.beamlines.registry import READERS, Beamline, DetectorSpec, get_beamline
from dynbcdi.io.filecheck import load_npy

__all__ = ["RawScan", "SourceConfig", "read_scan"]


@dataclass(frozen=True)
class SourceConfig:
    """Where a scan's files are and what to take from them (TOML section ``[source]``).

    Attributes
    ----------
    beamline : str
        Registry name (:data:`dynbcdi.beamlines.BEAMLINES`), sets the geometry and the reader.
    path : str
        TIFF folder (34-ID-C), BLISS HDF5 file (ID01), scan folder or ``.fio`` file (P10), HDF5 /
        NeXus file (generic reader).
    scan : int | None
        Scan number (spec ``#S``, BLISS ``<scan>.1``, P10 ``<sample>_<scan:05d>``).
    spec_file : str | None
        spec file (34-ID-C).
    data_path : str | None
        HDF5 dataset of the frames (generic reader; ID01/P10 override of the default path).
    motor_paths : dict canonical name → HDF5 path
        Generic reader: dataset of each circle (deg; scalar or (N,)), of "energy" and
        "detector_distance" (in the beamline's units), and optionally "monitor".
    dark, flat, bad_pixels : str | None
        Images (TIFF, .npy, HDF5 ``file.h5:/path``) of the full detector or of the frames' region,
        file frame. bad_pixels: nonzero = bad.
    detector_roi : (row0, row1, col0, col1) | None
        Region of the frames on the full detector, file frame (34-ID-C: else spec ``#UIMR5``).
    energy_eV, detector_distance_m, pixel_size_m : float | None
        Overrides of the file values (SI units).
    positions_deg : dict canonical name → deg
        Overrides of circle positions (absolute, deg); for the rocking motor, its position at the
        first frame (the step then comes from the file or ``rocking_step_deg``).
    rocking_motor : str | None
        Rocking circle (canonical name); default: the scan command's motor, else the beamline's.
    rocking_step_deg : float | None
        Override of the rocking step: positions become start + step·j (start from the file).
    reader : str | None
        Override of the beamline's reader (e.g. "nexus" for a generic HDF5 stack measured there).
    detector : str | None
        Detector name in the files (ID01 ``measurement/<detector>``, P10 folder), default: the
        beamline's detector.
    """

    beamline: str
    path: str
    scan: int | None = None
    spec_file: str | None = None
    data_path: str | None = None
    motor_paths: dict[str, str] = field(default_factory=dict)
    dark: str | None = None
    flat: str | None = None
    bad_pixels: str | None = None
    detector_roi: tuple[int, int, int, int] | None = None
    energy_eV: float | None = None
    detector_distance_m: float | None = None
    pixel_size_m: float | None = None
    positions_deg: dict[str, float] = field(default_factory=dict)
    rocking_motor: str | None = None
    rocking_step_deg: float | None = None
    reader: str | None = None
    detector: str | None = None

    def __post_init__(self) -> None:
        bl = get_beamline(self.beamline)
        if self.reader is not None and self.reader not in READERS:
            raise ValueError(f"source.reader {self.reader!r} is not one of {READERS}")
        for name in ("energy_eV", "detector_distance_m", "pixel_size_m"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"source.{name} must be positive, got {v!r}")
        if self.rocking_step_deg is not None and not (math.isfinite(self.rocking_step_deg) and self.rocking_step_deg):
            raise ValueError(f"source.rocking_step_deg must be finite and non-zero, got {self.rocking_step_deg!r}")
        unknown = sorted(set(self.positions_deg) - set(bl.circle_names))
        if unknown:
            raise ValueError(f"source.positions_deg: unknown circles {unknown}; {bl.name} has {bl.circle_names}")
        if self.rocking_motor is not None and self.rocking_motor not in bl.diffractometer.sample_names:
            raise ValueError(f"source.rocking_motor {self.rocking_motor!r} is not a sample circle of {bl.name}: "
                             f"{bl.diffractometer.sample_names}")
        allowed = set(bl.circle_names) | {"energy", "detector_distance", "monitor"}
        unknown = sorted(set(self.motor_paths) - allowed)
        if unknown:
            raise ValueError(f"source.motor_paths: unknown names {unknown}; allowed {sorted(allowed)}")
        if self.detector_roi is not None:
            r0, r1, c0, c1 = self.detector_roi
            if not (0 <= r0 < r1 and 0 <= c0 < c1):
                raise ValueError(f"source.detector_roi must be (row0, row1, col0, col1) with row0 < row1, col0 < col1, "
                                 f"got {self.detector_roi!r}")

    @property
    def beamline_entry(self) -> Beamline:
        """The registry entry of :attr:`beamline`."""
        return get_beamline(self.beamline)


@dataclass
class RawScan:
    """A rocking scan as read from a beamline's files (no corrections applied).

    Attributes
    ----------
    frames : (N, rows, cols) float64
        Counts, data orientation of the beamline's detector.
    beamline : str
        Registry name.
    positions_deg : dict canonical circle → float or (N,) float64
        Absolute positions (deg); the rocking motor's entry is (N,), one per frame.
    rocking_motor : str
        Canonical name of the rocking circle.
    energy_eV, detector_distance_m, pixel_size_m : float
        Photon energy (eV), sample–detector distance (m), unbinned pixel pitch (m).
    frames_offset_px : (row, col)
        Frame pixel (0, 0) relative to the detector pixel on the nominal kh (data orientation,
        unbinned pixel pitches, detector gaps included).
    monitor : (N,) float64 | None
        Beam monitor counts per frame.
    dark, flat, bad_pixels : (rows, cols) | None
        Cut to the frames' region and oriented like them (bad_pixels: bool, True = bad).
    metadata : dict
        Provenance: files, scan, command, nominal step, ROI, gaps inside the frames, overrides.
    """

    frames: np.ndarray
    beamline: str
    positions_deg: dict[str, Any]
    rocking_motor: str
    energy_eV: float
    detector_distance_m: float
    pixel_size_m: float
    frames_offset_px: tuple[float, float]
    monitor: np.ndarray | None = None
    dark: np.ndarray | None = None
    flat: np.ndarray | None = None
    bad_pixels: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.float64)
        if self.frames.ndim != 3 or self.frames.shape[0] < 1:
            raise ValueError(f"frames must be (N, rows, cols), got shape {self.frames.shape}")
        n, shape = self.frames.shape[0], self.frames.shape[1:]
        rock = np.asarray(self.positions_deg.get(self.rocking_motor, np.nan), dtype=float)
        if rock.shape != (n,) or not np.all(np.isfinite(rock)):
            raise ValueError(f"positions_deg[{self.rocking_motor!r}] must be {n} finite angles (one per frame), "
                             f"got shape {rock.shape}")
        for name in ("dark", "flat", "bad_pixels"):
            v = getattr(self, name)
            if v is not None and np.shape(v) != shape:
                raise ValueError(f"{name} has shape {np.shape(v)}, the frames {shape}")
        if self.monitor is not None:
            self.monitor = np.asarray(self.monitor, dtype=float)
            if self.monitor.shape != (n,):
                raise ValueError(f"monitor has shape {self.monitor.shape}, expected ({n},)")
        for name in ("energy_eV", "detector_distance_m", "pixel_size_m"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be positive, got {v!r}")

    @property
    def rocking_positions_deg(self) -> np.ndarray:
        """(N,) absolute positions of the rocking motor (deg)."""
        return np.asarray(self.positions_deg[self.rocking_motor], dtype=float)


def read_scan(source: SourceConfig) -> RawScan:
    """Read the scan described by ``source`` with its beamline's reader (or ``source.reader``)."""
    reader = source.reader or get_beamline(source.beamline).reader
    module = importlib.import_module(f"dynbcdi.io.readers.{reader}")
    return module.read(source)


# ---------------------------------------------------------------------------- helpers shared by the readers

#: [source] keys holding file paths (taken relative to the folder of the TOML file that names them).
SOURCE_PATH_KEYS = ("path", "spec_file", "dark", "flat", "bad_pixels")


def resolve_source_paths(source: dict[str, Any], base: str | Path) -> dict[str, Any]:
    """A ``[source]`` table with its file paths (:data:`SOURCE_PATH_KEYS`, ``~`` expanded) made absolute
    relative to ``base`` (the TOML file's folder); other keys unchanged."""
    out = dict(source)
    for key in SOURCE_PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value:
            p = Path(value).expanduser()
            out[key] = str(p if p.is_absolute() else (Path(base) / p).resolve())
    return out

def load_image(path: str, what: str) -> np.ndarray:
    """A 2-D detector image from a TIFF, .npy or ``file.h5:/dataset`` (float64, file frame)."""
    import h5py
    import tifffile

    file, _, dataset = str(path).partition(".h5:") if ".h5:" in str(path) else (str(path), "", "")
    file = file + ".h5" if dataset else file
    p = Path(file)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {p}")
    try:
        if dataset:
            with h5py.File(p, "r") as f:
                if dataset not in f:
                    raise ValueError(f"{p}: no dataset {dataset!r} for the {what} image")
                image = np.asarray(f[dataset][()], dtype=np.float64)
        elif p.suffix.lower() == ".npy":
            image = load_npy(p, f"{what} image")
            if np.iscomplexobj(image):
                raise ValueError(f"{p}: the {what} image is complex; a detector image must be real")
            image = image.astype(np.float64)
        else:
            image = np.asarray(tifffile.imread(p), dtype=np.float64)
    except (OSError, ValueError, EOFError, tifffile.TiffFileError) as err:
        raise ValueError(f"{p}: cannot read the {what} image ({err})") from None
    if image.ndim != 2:
        raise ValueError(f"{p}: the {what} image must be 2-D (rows, cols), got shape {image.shape}")
    return image


def cut_to_frames(image: np.ndarray, detector: DetectorSpec, roi_file: tuple[int, int, int, int] | None,
                  frame_shape_file: tuple[int, int], path: str, what: str) -> np.ndarray:
    """Cut a full-detector image to the frames' region (file frame), then orient it like the frames.

    An image already of the frames' shape is taken as is. Returns (rows, cols) in the data frame.
    """
    if image.shape == tuple(frame_shape_file):
        return np.ascontiguousarray(detector.to_data(image))
    if image.shape != tuple(detector.shape):
        raise ValueError(f"{path}: {what} image has shape {image.shape}; expected the full {detector.name} "
                         f"detector {detector.shape} or the frames' {tuple(frame_shape_file)}")
    if roi_file is None:
        raise ValueError(f"{path}: {what} image covers the full detector {detector.shape} but the frames' "
                         f"region on it is unknown; give source.detector_roi = [row0, row1, col0, col1]")
    r0, r1, c0, c1 = roi_file
    return np.ascontiguousarray(detector.to_data(image[r0:r1, c0:c1]))


def frame_region(detector: DetectorSpec, roi_file: tuple[int, int, int, int] | None,
                 frame_shape_file: tuple[int, int], where: str) -> tuple[tuple[int, int, int, int], dict[str, Any]]:
    """(data-frame ROI, metadata) of frames of ``frame_shape_file`` cut at ``roi_file`` (file frame).

    Without a ROI the frames must cover the full detector. The metadata records both ROIs and the
    detector gaps that fall inside the frames (pixels there are not equally spaced).
    """
    if roi_file is None:
        if tuple(frame_shape_file) != tuple(detector.shape):
            raise ValueError(f"{where}: frames of shape {tuple(frame_shape_file)} are a region of the {detector.name} "
                             f"detector {detector.shape}, but the region is unknown; give source.detector_roi = "
                             "[row0, row1, col0, col1]")
        roi_file = (0, detector.shape[0], 0, detector.shape[1])
    r0, r1, c0, c1 = roi_file
    if (r1 - r0, c1 - c0) != tuple(frame_shape_file):
        raise ValueError(f"{where}: detector ROI {tuple(roi_file)} is {r1 - r0}×{c1 - c0} pixels but the frames are "
                         f"{frame_shape_file[0]}×{frame_shape_file[1]}")
    roi_data = detector.roi_to_data(roi_file)
    meta = {"detector": detector.name, "detector_roi_file": tuple(roi_file), "detector_roi_data": roi_data,
            "gaps_in_frames": detector.gaps_inside(roi_data), "orientation": detector.orientation}
    return roi_data, meta


def natural_key(path: Path) -> list:
    """Sort key that puts frame_9 before frame_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def rocking_motor_of(bl: Beamline, source: SourceConfig, command: dict[str, Any] | None) -> str:
    """The canonical sample circle the scan rocks: ``source.rocking_motor`` if given, else the one
    whose file name is the motor of the parsed scan ``command``, else the beamline's default."""
    if source.rocking_motor is not None:
        return source.rocking_motor
    motor = (command or {}).get("motor")
    return next((name for name in bl.diffractometer.sample_names
                 if motor is not None and lookup({motor: 0}, bl.motors[name])), bl.rocking_motor)


def lookup(values: dict[str, Any], aliases: tuple[str, ...]) -> tuple[str, Any] | None:
    """(file name, value) of the first alias present in ``values`` (case-insensitive), else None."""
    lower = {k.lower(): k for k in values}
    for alias in aliases:
        if alias.lower() in lower:
            key = lower[alias.lower()]
            return key, values[key]
    return None


def rocking_positions(source: SourceConfig, rocking_motor: str, n_frames: int, from_file: np.ndarray | None,
                      nominal: tuple[float, float] | None, where: str) -> tuple[np.ndarray, dict[str, Any]]:
    """(N,) absolute rocking positions (deg) and how they were obtained.

    from_file : (N,) positions read from the file, or None. nominal : (start, step) from the scan
    command, or None. ``source.rocking_step_deg`` overrides the step (start: ``positions_deg`` of
    the rocking motor, else the file's first position, else the command's start).
    """
    rm = rocking_motor
    start_override = source.positions_deg.get(rm) if rm else None
    if from_file is not None:
        from_file = np.asarray(from_file, dtype=float).ravel()
        if from_file.shape != (n_frames,):
            raise ValueError(f"{where}: {from_file.size} rocking positions for {n_frames} frames")
    if source.rocking_step_deg is None and start_override is None and from_file is not None:
        return from_file, {"rocking_positions": "file"}
    step = source.rocking_step_deg if source.rocking_step_deg is not None else (
        float(np.mean(np.diff(from_file))) if from_file is not None and n_frames > 1 else
        nominal[1] if nominal is not None else None)
    start = start_override if start_override is not None else (
        float(from_file[0]) if from_file is not None else nominal[0] if nominal is not None else None)
    if step is None or start is None:
        raise ValueError(f"{where}: no positions of the rocking motor {rm!r}; give source.rocking_step_deg and "
                         f"source.positions_deg.{rm} (start, deg)")
    how = {"rocking_positions": "start + step·j", "rocking_start_deg": float(start), "rocking_step_deg": float(step),
           "rocking_step_overridden": source.rocking_step_deg is not None}
    return float(start) + float(step) * np.arange(n_frames), how


def circle_positions(beamline: Beamline, source: SourceConfig, from_file: dict[str, float],
                     rocking_motor: str, rocking: np.ndarray, where: str) -> dict[str, Any]:
    """Absolute positions (deg) of every circle: file values, overridden by ``source.positions_deg``."""
    positions: dict[str, Any] = {}
    missing = []
    for name in beamline.circle_names:
        if name == rocking_motor:
            positions[name] = rocking
        elif name in source.positions_deg:
            positions[name] = float(source.positions_deg[name])
        elif name in from_file:
            positions[name] = float(from_file[name])
        else:
            missing.append(f"{name} (file names {list(beamline.motors[name])})")
    if missing:
        raise ValueError(f"{where}: no position for {', '.join(missing)}; give source.positions_deg")
    return positions


def scalar_quantity(override: float | None, file_value: Any, convert, name: str, where: str, how: str) -> float:
    """An SI value: the override, else the converted file value, else a one-line ValueError."""
    if override is not None:
        return float(override)
    if file_value is None:
        raise ValueError(f"{where}: no {name} ({how}); give source.{name}")
    value = convert(float(np.asarray(file_value).ravel()[0]))
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {name} read as {value!r}; give source.{name}")
    return value
