"""What a result file records about how it was made: settings as JSON-able values, library versions.

Shared by ``dynbcdi prepare`` (dataset provenance), the beamline registry (TOML round trip) and the
workflow (cache keys, manifests, the report), so that every file writes settings the same way.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
from typing import Any

__all__ = ["as_plain", "library_versions"]

#: Distributions whose versions shape the numbers of a run.
LIBRARIES: tuple[str, ...] = ("dynbcdi", "torch", "numpy", "scipy", "xrayutilities", "h5py", "tifffile",
                              "matplotlib")


def as_plain(value: Any) -> Any:
    """Dataclasses → dicts, tuples → lists, paths → strings, numpy values → Python ones, recursively
    (JSON-able)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return value


def library_versions() -> dict[str, str]:
    """Versions of Python, dynbcdi and the libraries in :data:`LIBRARIES` ("not installed" if absent)."""
    out = {"python": platform.python_version()}
    for dist in LIBRARIES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    if out["dynbcdi"] == "not installed":  # run from a source tree without installation
        import dynbcdi

        out["dynbcdi"] = getattr(dynbcdi, "__version__", "unknown")
    return out
