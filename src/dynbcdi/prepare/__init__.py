"""Raw rocking scan → validated dataset (`dynbcdi prepare`).

* :class:`ReflectionConfig` (TOML ``[reflection]``) and :class:`PrepareConfig` (TOML ``[prepare]``):
  :mod:`dynbcdi.prepare.config`.
* :func:`prepare` (RawScan → Dataset) and :func:`prepare_dataset` (SourceConfig → Dataset):
  :mod:`dynbcdi.prepare.pipeline`.
* The steps themselves: :mod:`~dynbcdi.prepare.corrections` (dark, flat, bad pixels, seams, hot pixels,
  aliens, monitor), :mod:`~dynbcdi.prepare.window` (peak, crop/pad, binning),
  :mod:`~dynbcdi.prepare.rocking` (uniform rocking angles).
"""

from dynbcdi.prepare.config import PrepareConfig, ReflectionConfig, reflection_from_config
from dynbcdi.prepare.pipeline import prepare, prepare_dataset

__all__ = ["PrepareConfig", "ReflectionConfig", "prepare", "prepare_dataset", "reflection_from_config"]
