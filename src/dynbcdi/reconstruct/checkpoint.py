"""Atomic checkpoints of a reconstruction run (parameters, optimiser, scheduler, RNG, history,
position inside the epoch).

A checkpoint is one ``torch.save`` file written to ``<name>.tmp``, flushed to disk and moved over
the target with ``os.replace``, so an interruption never leaves a truncated checkpoint behind. A
file that is damaged anyway (copied in part, edited, disk trouble) is reported as unreadable in one
line, not with torch's unpickling message.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import BinaryIO
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"
# 2: measurement terms by state-dict name, history by column name;
# 3: position inside the epoch (permutation, next mini-batch, losses so far) for Ctrl-C + resume
FORMAT_VERSION = 3


def checkpoint_path(directory: str | os.PathLike) -> Path:
    """Path of the checkpoint file inside ``directory``."""
    return Path(directory) / CHECKPOINT_NAME


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, state dicts, plain Python values) atomically; returns the path."""
    path = checkpoint_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save({"format_version": FORMAT_VERSION, **state}, fh)
        fh.flush()
        os.fsync(fh.fileno())  # the rename must not reach the disk before the data
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read the checkpoint of ``directory`` onto ``device``.

    Raises ``FileNotFoundError`` when there is none, ``ValueError`` (one line naming the file) when
    it is unreadable (empty, truncated, corrupted, not a checkpoint) or of another format version;
    ``OSError`` (e.g. no permission) as raised.
    """
    path = checkpoint_path(directory)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path}")
    with open(path, "rb") as fh:  # OSError (no permission ...) as raised
        try:
            _check_crc(fh)
            fh.seek(0)
            state = torch.load(fh, map_location=device, weights_only=True)
        except Exception as err:  # UnpicklingError, EOFError, RuntimeError, OSError(EINVAL) ... from torch
            raise ValueError(f"{path}: unreadable checkpoint (empty, truncated or corrupted: "
                             f"{_one_line(err)}); it cannot be resumed: start again with --overwrite "
                             "instead of --resume") from err
    version = state.get("format_version") if isinstance(state, dict) else None
    if version is None:
        raise ValueError(f"{path}: not a dynbcdi checkpoint (no checkpoint format recorded); it cannot be "
                         "resumed: start again with --overwrite instead of --resume")
    if version != FORMAT_VERSION:
        age = "an older" if isinstance(version, int) and version < FORMAT_VERSION else "another"
        raise ValueError(f"{path}: checkpoint format {version!r} was written by {age} dynbcdi version; this one "
                         f"reads format {FORMAT_VERSION}, it cannot be resumed: start again with --overwrite "
                         "instead of --resume")
    return state


def _check_crc(fh: BinaryIO) -> None:
    """Raise unless every record of the torch zip file matches its CRC-32: torch's reader does not
    check them, and a flipped byte in tensor data would load as a silently different state."""
    with zipfile.ZipFile(fh) as archive:
        bad = archive.testzip()
    if bad is not None:
        raise ValueError(f"record {bad} fails its CRC-32 check")


def _one_line(err: BaseException) -> str:
    """The zip layer's and our own short messages; for torch's (long, "file a PyTorch issue") the type."""
    text = " ".join(str(err).split())
    return text if isinstance(err, (zipfile.BadZipFile, ValueError)) and text else type(err).__name__
