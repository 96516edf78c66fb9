"""One-line errors for files that cannot be read: missing, empty, truncated, of another format.

Every reader of :mod:`dynbcdi.io` goes through these helpers so that a bad file ends in one
``FileNotFoundError`` or ``ValueError`` whose message starts with the path and says what is wrong
(the CLI prints it as one line). The format is recognised from the first bytes of the file, not
from its name:

- HDF5 (CXI, NeXus, .h5): the 8-byte signature ``\\x89HDF\\r\\n\\x1a\\n`` at offset 0 (or after a
  user block, which ``h5py.is_hdf5`` checks);
- NumPy ``.npy``: ``\\x93NUMPY``; ``.npz``: a ZIP archive (``PK\\x03\\x04``);
- TIFF: ``II*\\0`` / ``MM\\0*`` (classic) or ``II+\\0`` / ``MM\\0+`` (BigTIFF).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["check_input_file", "sniff_format", "open_hdf5", "load_npy", "load_npz", "check_output_path",
           "check_new_output"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def check_input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path after checking it is an existing, non-empty regular file.

    FileNotFoundError if absent; ValueError for a directory or an empty (0-byte) file.
    ``what`` names the role in the message ("dataset file", "initial object", ...).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such {what}")
    if p.is_dir():
        raise ValueError(f"{p}: is a directory, expected a {what}")
    if p.stat().st_size == 0:
        raise ValueError(f"{p}: empty file (0 bytes), expected a {what}")
    return p


def sniff_format(path: Path) -> str:
    """"hdf5", "npy", "npz", "tiff" or "unknown", from the file's first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    import h5py

    try:  # an HDF5 file may start after a user block (512, 1024, ... bytes)
        return "hdf5" if h5py.is_hdf5(path) else "unknown"
    except OSError:
        return "unknown"


@contextmanager
def open_hdf5(path: Path, what: str = "HDF5 file") -> Iterator[Any]:
    """Open ``path`` read-only with h5py; errors inside the block become one-line ValueErrors.

    A file that is not HDF5, a truncated or corrupt one (h5py raises OSError on open or when a
    chunk is read) and a missing member (KeyError) all name the file.
    """
    import h5py

    if sniff_format(path) != "hdf5":
        raise ValueError(f"{path}: not an HDF5/CXI file (no HDF5 signature), expected a {what}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: truncated or corrupt HDF5 file ({_first_line(err)})") from None
    try:
        yield f
    except OSError as err:
        raise ValueError(f"{path}: truncated or corrupt HDF5 file ({_first_line(err)})") from None
    except KeyError as err:
        raise ValueError(f"{path}: missing HDF5 member ({_first_line(err)})") from None
    finally:
        f.close()


def load_npy(path: Path, what: str = "NumPy .npy file") -> np.ndarray:
    """The array of a ``.npy`` file (no pickles); ValueError naming the file if truncated or foreign."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable {what} (truncated or not NumPy format: {_first_line(err)})") from None


def load_npz(path: Path, what: str = "NumPy .npz archive") -> dict[str, np.ndarray]:
    """All arrays of a ``.npz`` archive (no pickles); ValueError naming the file if it is broken."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{path}: not a readable {what} (truncated or corrupt: {_first_line(err)})") from None


def check_output_path(path: str | os.PathLike, what: str = "output file", *, directory: bool = False) -> Path:
    """Check that ``path`` can be created: no existing file in the way of a directory.

    ``directory=True``: ``path`` itself must be a directory or not exist. In both cases every
    existing ancestor must be a directory (an output "under an existing file" is refused).
    Raises ValueError naming the path; existing outputs are the caller's business (FileExistsError).
    """
    p = Path(path)
    if directory and p.exists() and not p.is_dir():
        raise ValueError(f"{p}: exists and is a file, expected an output directory")
    if not directory and p.is_dir():
        raise ValueError(f"{p}: is a directory, expected an {what}")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{p}: cannot create the {what}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK):
                raise ValueError(f"{p}: cannot create the {what}: no write permission in {parent}")
            break
    return p


def check_new_output(path: str | os.PathLike, what: str = "output file", *, directory: bool = False,
                     overwrite: bool = False, remedy: str = "pass --overwrite to replace it") -> Path:
    """:func:`check_output_path`, and no silent overwrite: an existing file (``directory=False``) or a
    non-empty existing folder (``directory=True``) is refused with a one-line FileExistsError unless
    ``overwrite``. ``remedy`` ends the message: how the user allows it ("pass --overwrite ...").

    The one no-overwrite check of the CLI commands, the dataset and result writers and the demo.
    """
    p = check_output_path(path, what, directory=directory)
    if overwrite:
        return p
    if directory and p.is_dir() and any(p.iterdir()):
        raise FileExistsError(f"{what} {p} is not empty; {remedy}")
    if not directory and p.exists():
        raise FileExistsError(f"{p} exists; {remedy}")
    return p


def _first_line(err: BaseException) -> str:
    text = str(err).strip().strip("'\"") or type(err).__name__
    return text.splitlines()[0]
