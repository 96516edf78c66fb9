"""File formats: simulated/measured datasets (CXI, .npz), reconstructions, VTK images.

Public functions are loaded on first use so that ``import dynbcdi.io`` stays light (no h5py,
vtk or torch at import time):

* :class:`Dataset`, :func:`save_dataset`, :func:`load_dataset` — :mod:`dynbcdi.io.dataset`
* :func:`save_result`, :func:`load_result`, :class:`ReconstructionFile` — :mod:`dynbcdi.io.results`
* :func:`write_vti`, :func:`read_vti` — :mod:`dynbcdi.io.vtk`
* :mod:`dynbcdi.io.beamline` readers, once that module exists
"""

from __future__ import annotations

import importlib
import importlib.util
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
}


def _beamline_exports() -> dict[str, str]:
    """Public names of io/beamline.py (written by another module owner), if present."""
    spec = importlib.util.find_spec(f"{__name__}.beamline")
    if spec is None:
        return {}
    module = importlib.import_module(f"{__name__}.beamline")
    return {name: "beamline" for name in getattr(module, "__all__", ())}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name) or _beamline_exports().get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_beamline_exports()})


__all__ = sorted(_EXPORTS)
