"""File formats: simulated/measured datasets (CXI, .npz), reconstructions, VTK images.

Public functions are loaded on first use so that ``import dynbcdi.io`` stays light (no h5py,
vtk or torch at import time):

* :class:`Dataset`, :func:`save_dataset`, :func:`load_dataset` — :mod:`dynbcdi.io.dataset`
* :func:`save_result`, :func:`load_result`, :class:`ReconstructionFile` — :mod:`dynbcdi.io.results`
* :func:`write_vti`, :func:`read_vti` — :mod:`dynbcdi.io.vtk`
* :class:`SourceConfig`, :class:`RawScan`, :func:`read_scan` — :mod:`dynbcdi.io.readers.base` (beamline
  files → raw frames + motor positions); the preprocessing into a :class:`Dataset` is
  :func:`dynbcdi.prepare.prepare_dataset`
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Dataset": "dataset",
    "save_dataset": "dataset",
    "load_dataset": "dataset",
    "ReconstructionFile": "results",
    "save_result": "results",
    "load_result": "results",
    "write_vti": "vtk",
    "read_vti": "vtk",
    "SourceConfig": "readers.base",
    "RawScan": "readers.base",
    "read_scan": "readers.base",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = sorted(_EXPORTS)
