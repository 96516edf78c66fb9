"""Settings of `dynbcdi prepare`: the reflection measured and every preprocessing option.

:class:`PrepareConfig` is the only owner of the preprocessing options (TOML table ``[prepare]``);
:class:`ReflectionConfig` names the reflection (TOML ``[reflection]``). Both are frozen dataclasses
loaded with :func:`dynbcdi.config.from_dict`: unknown keys and wrong types are one-line errors.

Coordinates used by the options (all integer indices, half-open intervals ``[start, stop)``):

* *raw frame index* j: position of a frame in the scan as read (0 = first frame of the scan);
* *raw pixel* (row, col): pixel of the frames as read, in the data orientation of the beamline
  (after the reader's transpose/flip), before any crop or binning. Where a physical detector gap
  lies inside the frames, its width is inserted as masked pixels first (so pixels are equally
  spaced) and raw pixels count those too; without such a gap (APS 34-ID-C scan 54: its 256 × 256
  region ends on the chip boundary) they are exactly the pixels as read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from dynbcdi.config import from_dict

__all__ = ["ReflectionConfig", "PrepareConfig", "reflection_from_config"]


@dataclass(frozen=True)
class ReflectionConfig:
    """The Bragg reflection of the scan (TOML ``[reflection]``).

    material : built-in material name (``dynbcdi.materials.BUILTIN_MATERIALS``, e.g. "Au") or a CIF path.
    hkl : Miller indices of the reflection.
    lattice_a_m : lattice constant a in metres replacing the material's default; None keeps it.
    debye_waller : apply the room-temperature Debye–Waller factor to the structure factors.
    """

    material: str
    hkl: tuple[int, int, int]
    lattice_a_m: float | None = None
    debye_waller: bool = True


def reflection_from_config(cfg: ReflectionConfig, energy_eV: float):
    """The :class:`~dynbcdi.materials.ReflectionConstants` of ``cfg`` at ``energy_eV`` (eV)."""
    from dynbcdi.materials import reflection_constants
    from dynbcdi.materials.susceptibility import ROOM_TEMPERATURE_K

    return reflection_constants(cfg.material, cfg.hkl, energy_eV, lattice_a_m=cfg.lattice_a_m,
                                temperature_K=ROOM_TEMPERATURE_K if cfg.debye_waller else None)


Alien = tuple[int, int, int, int, int, int]


@dataclass(frozen=True)
class PrepareConfig:
    """Preprocessing of a raw rocking scan into a dataset (TOML ``[prepare]``).

    Order of the steps: frame_range → invalid values → dark → flat → bad pixels → seams → hot
    pixels → detector gaps inserted → aliens → monitor → peak search → crop/pad → binning. Masked
    pixels are never filled with invented counts: they carry 0 and ``valid = False``.

    dark_kind : how the reader's dark image is used. "dark": subtracted (counts, clipped at 0);
        "bad_pixels": its nonzero pixels are masked and nothing is subtracted; "auto": a bad-pixel map
        when under ``bad_map_max_fraction`` of its pixels are nonzero (a photon-counting detector's
        dark has a few noisy pixels and zeros elsewhere, so subtracting it only hides those pixels),
        else a dark; "ignore": not used.
    bad_map_max_fraction : fraction (0–1) of nonzero pixels below which "auto" takes the dark for a
        bad-pixel map.
    flat : divide by the reader's flat (white) field, normalised to its median over trusted pixels.
    flat_min_relative : flat-field pixels below this fraction of the median are masked (their
        correction would amplify noise more than 1/flat_min_relative times).
    hot_pixel_threshold : a pixel whose sum over frames exceeds this many times the largest sum of its
        8 neighbours (at least 1 photon) is masked; None disables. Speckles span ≥ 2 pixels, a hot pixel one.
    max_count : any single-frame value above this (counts, e.g. saturation) masks the pixel; None disables.
    seams : "mask" masks the pixels on both sides of every chip boundary of the detector (Timepix
        edge pixels are larger and read more counts); "keep" leaves them.
    seam_width_px : pixels masked on each side of a chip boundary (raw pixels).
    aliens : boxes (frame0, frame1, row0, row1, col0, col1) in raw frame and raw pixel indices,
        half-open, masked in those frames only.
    frame_range : (first, stop) raw frames kept, half-open; None keeps all. Applied first, so a padded
        or broken frame at the scan ends does not spoil a binned frame.
    roi : (row0, row1, col0, col1) raw pixels kept (the peak is searched there, pixels outside are
        masked if a crop reaches them); None keeps the whole frame.
    crop_shape : (rows, cols) in raw pixels of a window centred on the Bragg peak, padded with
        invalid zeros where it leaves the frames; None keeps the roi.
    n_frames : frames of a window centred on the peak frame (padded with invalid frames); None keeps
        every frame of frame_range.
    peak : (raw frame, raw row, raw col) to centre on; None finds it (maximum of the summed stack).
    bin : summing factors (frames, rows, cols); rows and cols equal (square pixels). A binned pixel
        with any masked raw pixel is masked; frames left over at the end are dropped.
    monitor : divide each frame by monitor_j / mean(monitor) (the reader's monitor counter).
    rocking_step : "nominal" uses the step of the scan command (falls back to "fit" when the reader
        has none); "fit" a least-squares line through the read-back angles. Either way the geometry
        gets uniform angles and the read-back jitter is recorded.
    max_rocking_deviation : largest |read-back − uniform| allowed, in rocking steps; beyond it the scan
        is grossly non-uniform and refused.
    rocking_zero : "peak": θ = 0 at the frame of the rocking-curve maximum (it contains the refraction
        shift, which a global rocking offset of the model absorbs); "centre": at the middle frame.
    """

    dark_kind: Literal["auto", "dark", "bad_pixels", "ignore"] = "auto"
    bad_map_max_fraction: float = 0.01
    flat: bool = True
    flat_min_relative: float = 0.25
    hot_pixel_threshold: float | None = 20.0
    max_count: float | None = None
    seams: Literal["mask", "keep"] = "mask"
    seam_width_px: int = 1
    aliens: tuple[Alien, ...] = ()
    frame_range: tuple[int, int] | None = None
    roi: tuple[int, int, int, int] | None = None
    crop_shape: tuple[int, int] | None = None
    n_frames: int | None = None
    peak: tuple[int, int, int] | None = None
    bin: tuple[int, int, int] = (1, 1, 1)
    monitor: bool = False
    rocking_step: Literal["nominal", "fit"] = "nominal"
    max_rocking_deviation: float = 0.25
    rocking_zero: Literal["peak", "centre"] = "peak"

    def __post_init__(self) -> None:
        _check_fraction(self.bad_map_max_fraction, "bad_map_max_fraction")
        _check_fraction(self.flat_min_relative, "flat_min_relative")
        for name in ("hot_pixel_threshold", "max_count"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"prepare.{name} must be positive or absent, got {value!r}")
        if self.seam_width_px < 1:
            raise ValueError(f"prepare.seam_width_px must be ≥ 1, got {self.seam_width_px}")
        for k, box in enumerate(self.aliens):
            if not all(lo < hi for lo, hi in zip(box[::2], box[1::2])) or min(box) < 0:
                raise ValueError(f"prepare.aliens[{k}] = {box} must be (frame0, frame1, row0, row1, col0, col1) "
                                 "with 0 ≤ start < stop on each axis")
        if self.frame_range is not None and not 0 <= self.frame_range[0] < self.frame_range[1]:
            raise ValueError(f"prepare.frame_range = {self.frame_range} must be (first, stop) with 0 ≤ first < stop")
        if self.roi is not None and not (0 <= self.roi[0] < self.roi[1] and 0 <= self.roi[2] < self.roi[3]):
            raise ValueError(f"prepare.roi = {self.roi} must be (row0, row1, col0, col1) with 0 ≤ start < stop")
        if self.crop_shape is not None and min(self.crop_shape) < 1:
            raise ValueError(f"prepare.crop_shape = {self.crop_shape} must be positive (rows, cols)")
        if self.n_frames is not None and self.n_frames < 1:
            raise ValueError(f"prepare.n_frames = {self.n_frames} must be positive")
        if min(self.bin) < 1 or self.bin[1] != self.bin[2]:
            raise ValueError(f"prepare.bin = {self.bin} must be positive (frames, rows, cols) with rows == cols "
                             "(the geometry has square pixels)")
        if self.crop_shape is not None and any(n % self.bin[1] for n in self.crop_shape):
            raise ValueError(f"prepare.crop_shape = {self.crop_shape} is not a multiple of the pixel binning "
                             f"{self.bin[1]}")
        if self.n_frames is not None and self.n_frames % self.bin[0]:
            raise ValueError(f"prepare.n_frames = {self.n_frames} is not a multiple of the frame binning {self.bin[0]}")
        if not self.max_rocking_deviation > 0:
            raise ValueError(f"prepare.max_rocking_deviation must be positive, got {self.max_rocking_deviation}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "prepare") -> PrepareConfig:
        """Build from a TOML table (ValueError naming the key on unknown keys or wrong types)."""
        return from_dict(cls, data, where)


def _check_fraction(value: float, name: str) -> None:
    if not 0 < value < 1:
        raise ValueError(f"prepare.{name} must lie in (0, 1), got {value!r}")


def config_summary(cfg: Any) -> dict[str, Any]:
    """Every field of a config dataclass as JSON-able values (:func:`dynbcdi.provenance.as_plain`)."""
    from dynbcdi.provenance import as_plain

    return as_plain(cfg)