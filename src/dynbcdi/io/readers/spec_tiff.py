"""APS 34-ID-C layout: a spec file (motors, counters, scan command) and one TIFF per rocking step.

* spec (read with xrayutilities ``SPECFile``, the reader cohere-beamlines uses): circle positions
  from the ``#O``/``#P`` headers under the beamline's motor names, the energy from the ``Energy``
  motor (unit: :attr:`Beamline.energy_unit`, keV at 34-ID-C), the detector distance from
  ``camdist`` (mm), the rocking positions from the rocking motor's ``#L`` column, the monitor
  from its counter column, the frames' detector region from ``#UIMR5`` (areaDetector ROI
  ``minX sizeX minY sizeY``: X = TIFF column, Y = TIFF row) and the detector name from ``#UIMDET``.
* The scan command (``ascan th -0.279996 0.720004 200 0.25``) gives the rocking motor and the
  nominal start/stop/step (metadata; used only when the column is missing).
* TIFF frames are sorted by the number in their names and turned into the data frame by the
  detector's orientation ("transpose" at 34-ID-C, as cohere reads them); dark, flat and
  bad-pixel images are cut to the frames' region and turned alike.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from dynbcdi.io.readers.base import (
    RawScan,
    SourceConfig,
    circle_positions,
    cut_to_frames,
    frame_region,
    load_image,
    lookup,
    natural_key,
    rocking_motor_of,
    rocking_positions,
    scalar_quantity,
)

__all__ = ["SpecScan", "parse_scan_command", "read", "read_spec_scan"]

log = logging.getLogger(__name__)


class SpecScan:
    """One spec scan: motor positions at its start, #L columns, command and header lines."""

    def __init__(self, path: Path, number: int, command: str, motors: dict[str, float],
                 columns: dict[str, np.ndarray], header: dict[str, str]) -> None:
        self.path, self.number, self.command = path, number, command
        self.motors, self.columns, self.header = motors, columns, header


def read_spec_scan(spec_file: str | Path, scan: int) -> SpecScan:
    """Scan ``#S scan`` of a spec file (the last one if the number repeats)."""
    from xrayutilities.io.spec import SPECFile

    path = Path(spec_file)
    if not path.is_file():
        raise FileNotFoundError(f"spec file not found: {path}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # xrayutilities prints progress
            sf = SPECFile(str(path))
            found = [s for s in sf.scan_list if s.nr == int(scan)]
            if not found:
                raise ValueError(f"{path}: no scan {scan} (scans there: {[s.nr for s in sf.scan_list][:20]}…)")
            s = found[-1]
            s.ReadData()
    except (OSError, UnicodeDecodeError, IndexError) as err:
        raise ValueError(f"{path}: cannot read spec scan {scan} ({err})") from None
    motors = {k.removeprefix("INIT_MOPO_"): float(v) for k, v in s.init_motor_pos.items()}
    names = s.data.dtype.names if s.data is not None and s.data.dtype.names else ()
    columns = {n: np.asarray(s.data[n], dtype=float) for n in names}
    header = {}
    for key in ("UIMR5", "UIMDET"):
        with contextlib.suppress(Exception):  # optional header lines: absent → an exception or []
            value = s.getheader_element(key)
            if isinstance(value, str) and value.strip():
                header[key] = value.strip()
    return SpecScan(path, int(scan), " ".join(str(s.command).split()), motors, columns, header)


def parse_scan_command(command: str) -> dict[str, Any]:
    """``ascan mot start stop intervals time`` → dict(motor, start, stop, intervals, step); {} otherwise."""
    parts = command.split()
    if len(parts) >= 5 and parts[0] in ("ascan", "dscan", "lup"):
        try:
            start, stop, intervals = float(parts[2]), float(parts[3]), int(parts[4])
        except ValueError:
            return {}
        if intervals > 0:
            return {"type": parts[0], "motor": parts[1], "start": start, "stop": stop, "intervals": intervals,
                    "step": (stop - start) / intervals}
    return {}


def _tiff_frames(folder: Path) -> tuple[np.ndarray, list[str]]:
    if not folder.is_dir():
        raise FileNotFoundError(f"TIFF folder not found: {folder}")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff")), key=natural_key)
    if not files:
        raise ValueError(f"{folder}: no .tif/.tiff frames")
    try:
        stack = np.asarray(tifffile.imread([str(p) for p in files]), dtype=np.float64)
    except (OSError, ValueError, tifffile.TiffFileError) as err:
        raise ValueError(f"{folder}: cannot read the TIFF frames ({err})") from None
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise ValueError(f"{folder}: frames must be 2-D images of one shape, got a stack of shape {stack.shape}")
    return stack, [p.name for p in files]


def _spec_roi(spec: SpecScan) -> tuple[int, int, int, int] | None:
    """File-frame (row0, row1, col0, col1) from ``#UIMR5`` = minX sizeX minY sizeY (X: TIFF column)."""
    text = spec.header.get("UIMR5")
    if not text:
        return None
    try:
        min_x, size_x, min_y, size_y = (int(v) for v in text.split()[:4])
    except ValueError:
        raise ValueError(f"{spec.path}: scan {spec.number}: cannot read #UIMR5 {text!r}") from None
    return (min_y, min_y + size_y, min_x, min_x + size_x)


def read(source: SourceConfig) -> RawScan:
    """Read a 34-ID-C-style scan (``source.path`` = TIFF folder, ``source.spec_file`` + ``source.scan``)."""
    bl = source.beamline_entry
    det = bl.detector
    folder = Path(source.path)
    frames_file, names = _tiff_frames(folder)
    n = frames_file.shape[0]
    spec = None
    if source.spec_file is not None:
        if source.scan is None:
            raise ValueError(f"{source.spec_file}: give source.scan, the spec scan number of {folder}")
        spec = read_spec_scan(source.spec_file, source.scan)
    where = f"{spec.path} scan {spec.number}" if spec else str(folder)
    command = parse_scan_command(spec.command) if spec else {}
    rm = rocking_motor_of(bl, source, command)
    column = lookup(spec.columns, bl.motors[rm]) if spec else None
    nominal = (command["start"], command["step"]) if command else None
    rocking, how = rocking_positions(source, rm, n, column[1] if column else None, nominal, where)
    motors = {}
    for name in bl.circle_names:
        hit = lookup(spec.motors, bl.motors[name]) if spec else None
        if hit is not None:
            motors[name] = hit[1]
    positions = circle_positions(bl, source, motors, rm, rocking, where)
    energy = lookup(spec.motors, bl.motors["energy"]) if spec else None
    distance = lookup(spec.motors, bl.motors["detector_distance"]) if spec else None
    energy_eV = scalar_quantity(source.energy_eV, energy and energy[1], bl.energy_to_eV, "energy_eV", where,
                                f"spec motor {list(bl.motors['energy'])} in {bl.energy_unit}")
    distance_m = scalar_quantity(source.detector_distance_m, distance and distance[1], bl.distance_to_m,
                                 "detector_distance_m", where,
                                 f"spec motor {list(bl.motors['detector_distance'])} in {bl.distance_unit}")
    monitor = lookup(spec.columns, bl.monitor) if spec and bl.monitor else None
    roi_file = source.detector_roi or (_spec_roi(spec) if spec else None)
    frame_shape = frames_file.shape[1:]
    roi_data, region = frame_region(det, roi_file, frame_shape, where)
    images = {}
    for what in ("dark", "flat", "bad_pixels"):
        path = getattr(source, what)
        if path is not None:
            images[what] = cut_to_frames(load_image(path, what), det, region["detector_roi_file"], frame_shape,
                                         path, what)
    if "bad_pixels" in images:
        images["bad_pixels"] = images["bad_pixels"] != 0
    metadata = {"reader": "spec_tiff", "folder": str(folder), "n_files": len(names), "first_file": names[0],
                "last_file": names[-1], **region, **how, "rocking_motor_file": column[0] if column else None,
                "overrides": {k: v for k, v in (("energy_eV", source.energy_eV),
                                                ("detector_distance_m", source.detector_distance_m),
                                                ("positions_deg", source.positions_deg or None)) if v is not None}}
    if spec is not None:
        metadata.update(spec_file=str(spec.path), scan=spec.number, command=spec.command, command_parsed=command,
                        spec_detector=spec.header.get("UIMDET", "").rstrip(":") or None,
                        monitor_column=monitor[0] if monitor else None)
        if metadata["spec_detector"] and metadata["spec_detector"] != det.name:
            log.warning("%s: spec names detector %s, the %s entry describes %s", where, metadata["spec_detector"],
                        bl.name, det.name)
    if command and how.get("rocking_step_overridden"):
        log.info("%s: rocking step %.6g° from source.rocking_step_deg (scan command: %.6g°)", where,
                 how["rocking_step_deg"], command["step"])
    return RawScan(frames=det.to_data(frames_file), beamline=bl.name, positions_deg=positions, rocking_motor=rm,
                   energy_eV=energy_eV, detector_distance_m=distance_m,
                   pixel_size_m=source.pixel_size_m or det.pixel_size_m,
                   frames_offset_px=det.frames_offset_px(roi_data), monitor=monitor[1] if monitor else None,
                   dark=images.get("dark"), flat=images.get("flat"), bad_pixels=images.get("bad_pixels"),
                   metadata=metadata)
