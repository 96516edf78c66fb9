"""Atomic checkpoints of a reconstruction run (parameters, optimiser, scheduler, RNG, history).

A checkpoint is one ``torch.save`` file written to ``<name>.tmp`` and moved over the target with
``os.replace``, so an interruption never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 2  # 2: measurement terms by state-dict name, history by column name


def checkpoint_path(directory: str | os.PathLike) -> Path:
    """Path of the checkpoint file inside ``directory``."""
    return Path(directory) / CHECKPOINT_NAME


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, state dicts, plain Python values) atomically; returns the path."""
    path = checkpoint_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read the checkpoint of ``directory`` onto ``device``.

    Raises ``FileNotFoundError`` when there is none and a one-line ``ValueError`` naming the file for an
    empty, truncated or corrupt file and for an unknown format.
    """
    path = checkpoint_path(directory)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as err:  # torch's are long
        raise ValueError(f"{path}: unreadable checkpoint (empty, truncated or corrupt: {type(err).__name__}); "
                         "start again with --overwrite instead of --resume") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        version = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: checkpoint format {version!r}, "
                         f"expected {FORMAT_VERSION}")
    return state
