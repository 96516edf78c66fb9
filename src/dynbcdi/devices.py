"""Check a ``--device`` name before any computation: one-line errors instead of torch tracebacks."""

from __future__ import annotations

import re

import torch

__all__ = ["resolve_device"]

_PATTERN = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device named ``name`` ("cpu", "cuda" or "cuda:N"), checked against this machine.

    Raises ValueError (one line) for a misspelt name, for CUDA on a machine without a usable CUDA
    device, and for an index beyond the number of devices.
    """
    text = str(name).strip().lower()
    match = _PATTERN.match(text)
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise ValueError(f"unknown device {str(name)!r}: use cpu, cuda or cuda:N")
    if match.group(1) == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA device is visible"
        raise ValueError(f"device {text!r} requested but CUDA is not available on this machine ({build}); "
                         "use --device cpu")
    count = torch.cuda.device_count()
    index = int(match.group(2)) if match.group(2) is not None else None
    if index is not None and index >= count:
        raise ValueError(f"device {text!r} does not exist: this machine has {count} CUDA device(s), "
                         f"cuda:0 to cuda:{count - 1}")
    return torch.device(text)
