"""PETRA III P10: a scan folder ``<sample>_<scan:05d>/`` with a ``.fio`` file and Eiger HDF5 files.

Layout (as read by cohere-beamlines ``Petra3_P10``): the ``.fio`` file (DESY SPECTRA format, read
with xrayutilities ``SPECTRAFile``) holds the scan command (first line of the ``%c`` section,
e.g. ``ascan om 10 11 50 1``), the motor positions at the start (``%p``: ``name = value``; ``del``,
``gam``, ``om``, ``mu``, ``chi``, ``phi``, ``fmbenergy`` in eV, ``_distance`` in mm) and the scan
columns (``%d``); the frames are in ``<detector>/<sample>_<scan:05d>_master.h5`` under
``entry/data/data_000001``, ``data_000002``, … (external links to the data files), concatenated in
order. File rows run down (−y) and columns inboard (−x) at zero angles (bcdi ``BeamlineP10``,
cdiutils ``Geometry``: detector seen from upstream), right-handed: the frames are used as stored.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from dynbcdi.io.readers.base import RawScan, SourceConfig, lookup, rocking_motor_of
from dynbcdi.io.readers.nexus import open_h5, read_frames, scan_from_parts
from dynbcdi.io.readers.spec_tiff import parse_scan_command

__all__ = ["read", "read_fio"]


def _fio_path(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"P10 scan folder or .fio file not found: {path}")
    named = path / f"{path.name}.fio"
    if named.is_file():
        return named
    found = sorted(path.glob("*.fio"))
    if len(found) != 1:
        raise ValueError(f"{path}: expected one .fio file, found {[p.name for p in found]}")
    return found[0]


def read_fio(path: Path) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """(scan command, %p parameters, %d columns) of a .fio file."""
    from xrayutilities.io.spectra import SPECTRAFile

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # xrayutilities prints unparsable lines
            fio = SPECTRAFile(str(path))
    except (OSError, ValueError, KeyError, IndexError) as err:
        raise ValueError(f"{path}: cannot read the .fio file ({err})") from None
    data = fio.data.data
    columns = {n: np.asarray(data[n], dtype=float) for n in data.dtype.names} if data is not None else {}
    command, in_comments = "", False
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("%"):
            in_comments = line.startswith("%c")
            continue
        if in_comments and line.strip() and not line.startswith("!"):
            command = " ".join(line.split())
            break
    return command, dict(fio.params), columns


def _frames(folder: Path, source: SourceConfig, detector: str) -> tuple[np.ndarray, str]:
    master = folder / detector / f"{folder.name}_master.h5"
    with open_h5(master) as f:
        where = str(master)
        if source.data_path is not None:
            return read_frames(f, source.data_path, where), str(master)
        if "entry/data" not in f:
            raise ValueError(f"{master}: no group 'entry/data' with the frames")
        names = sorted(n for n in f["entry/data"] if n.startswith("data_"))
        if not names:
            raise ValueError(f"{master}: no 'entry/data/data_000001' frames dataset")
        return np.concatenate([read_frames(f, f"entry/data/{n}", where) for n in names]), str(master)


def read(source: SourceConfig) -> RawScan:
    """Read the P10 scan at ``source.path`` (scan folder or its .fio file)."""
    bl = source.beamline_entry
    fio = _fio_path(Path(source.path))
    folder = fio.parent
    where = str(fio)
    command_text, params, columns = read_fio(fio)
    command = parse_scan_command(command_text)
    frames, master = _frames(folder, source, source.detector or bl.detector.name)
    values: dict[str, Any] = {}
    for name, aliases in bl.motors.items():
        hit = lookup(params, aliases)
        if hit is not None:
            values[name] = hit[1]
    rm = rocking_motor_of(bl, source, command)
    column = lookup(columns, bl.motors[rm])
    if column is not None:
        values[rm] = column[1]
    monitor = lookup(columns, bl.monitor) if bl.monitor else None
    if monitor is not None:
        values["monitor"] = monitor[1]
    nominal = (command["start"], command["step"]) if command else None
    metadata = {"reader": "p10", "fio": str(fio), "master": master, "command": command_text or None,
                "command_parsed": command, "monitor_column": monitor[0] if monitor else None}
    return scan_from_parts(bl, source, frames, values, rm, nominal, where, metadata)
