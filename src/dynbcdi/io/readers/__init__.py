"""Readers of beamline and other codes' files.

* :mod:`~dynbcdi.io.readers.base` — :class:`SourceConfig`, :class:`RawScan`, :func:`read_scan`;
* one module per beamline format, each with ``read(source) -> RawScan``:
  :mod:`~dynbcdi.io.readers.spec_tiff` (APS 34-ID-C spec + TIFF), :mod:`~dynbcdi.io.readers.id01`
  (ESRF ID01 BLISS HDF5), :mod:`~dynbcdi.io.readers.p10` (PETRA III P10 .fio + Eiger HDF5),
  :mod:`~dynbcdi.io.readers.nexus` (any HDF5/NeXus stack, paths given).
* other programs' files: :mod:`~dynbcdi.io.readers.intensity` (intensity stacks) and
  :mod:`~dynbcdi.io.readers.objects` (reconstructed objects).
"""

from dynbcdi.io.readers.base import RawScan, SourceConfig, read_scan

__all__ = ["RawScan", "SourceConfig", "read_scan"]
