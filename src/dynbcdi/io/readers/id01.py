"""ESRF ID01 BLISS HDF5: one file per sample/dataset, one ``<scan>.1`` group per scan.

Layout (as read by cohere-beamlines ``esrf_id01``): ``<scan>.1/title`` holds the scan command
(``ascan eta 10 11 50 0.1``), ``<scan>.1/measurement/<detector>`` the (N, rows, cols) frames,
``<scan>.1/instrument/positioners/<motor>`` each motor (scalar, or (N,) for the scanned one),
``<scan>.1/instrument/<detector>/distance`` the detector distance (m) and
``<scan>.1/instrument/monochromator/Energy`` the energy (keV). File rows run down (−y) and
columns outboard (+x) at zero angles (bcdi ``BeamlineID01``, cdiutils ``Geometry``), a
left-handed view from the sample: the frames are transposed into the data frame.
``source.data_path`` overrides the frames' path, ``source.motor_paths`` any
motor's path (relative to the file root).
"""

from __future__ import annotations

from typing import Any

from dynbcdi.io.readers.base import RawScan, SourceConfig, lookup, rocking_motor_of
from dynbcdi.io.readers.nexus import open_h5, read_frames, read_value, scan_from_parts
from dynbcdi.io.readers.spec_tiff import parse_scan_command

__all__ = ["read"]


def _motor_path(group: str, alias: str, detector: str) -> str:
    """File path of a motor alias: a plain name is a positioner, a name with '/' a path in the scan group."""
    if "/" in alias:
        return f"{group}/{alias.format(detector=detector)}"
    return f"{group}/instrument/positioners/{alias}"


def read(source: SourceConfig) -> RawScan:
    """Read scan ``source.scan`` of the BLISS file ``source.path``."""
    bl = source.beamline_entry
    if source.scan is None:
        raise ValueError(f"{source.path}: give source.scan, the BLISS scan number (group '<scan>.1')")
    detector = source.detector or bl.detector.name
    group = f"{source.scan}.1"
    where = f"{source.path} scan {group}"
    with open_h5(source.path) as f:
        if group not in f:
            raise ValueError(f"{source.path}: no scan group {group!r} (groups: {sorted(f)[:10]})")
        title = f[f"{group}/title"][()] if f"{group}/title" in f else b""
        command = parse_scan_command(title.decode() if isinstance(title, bytes) else str(title))
        frames = read_frames(f, source.data_path or f"{group}/measurement/{detector}", where)
        values: dict[str, Any] = {}
        for name, aliases in bl.motors.items():
            if name in source.motor_paths:
                values[name] = read_value(f, source.motor_paths[name], name, where)
                continue
            paths = [_motor_path(group, a, detector) for a in aliases]
            found = next((p for p in paths if p in f), None)
            if found is not None:
                values[name] = read_value(f, found, name, where)
        counters = {k: k for k in f[f"{group}/measurement"]} if f"{group}/measurement" in f else {}
        monitor = lookup(counters, bl.monitor) if bl.monitor else None
        if monitor is not None:
            values["monitor"] = read_value(f, f"{group}/measurement/{monitor[0]}", "monitor", where)
    rm = rocking_motor_of(bl, source, command)
    nominal = (command["start"], command["step"]) if command else None
    metadata = {"reader": "id01", "file": str(source.path), "scan": source.scan, "command_parsed": command or None,
                "detector_name": detector}
    return scan_from_parts(bl, source, frames, values, rm, nominal, where, metadata)
