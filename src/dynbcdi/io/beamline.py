"""Real beamline input: APS 34-ID-C TIFF rocking scans (+ spec metadata) and generic HDF5 stacks.

Pipeline (:func:`prepare_stack`, shared by both readers): dark subtraction → flat-field
division → detector mask → hot-pixel removal → peak search → crop/centre around the Bragg peak
→ binning. Output arrays follow docs/CONVENTIONS.md: ``intensity[j, row, col]`` (float64,
photons) and ``valid`` (True = trusted pixel). Detector-mask *files* use the usual convention
nonzero = bad; the conversion to ``valid`` happens here.

The spec file is read with xrayutilities' ``SPECFile`` (already a dependency, maintained, reads
#O/#P motor headers and #L columns), not a hand-written parser.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import tifffile
from scipy import ndimage

__all__ = ["RawScan", "SpecScanInfo", "read_spec_scan", "prepare_stack", "load_34idc_scan", "load_hdf5_stack"]

log = logging.getLogger(__name__)

#: spec motor names tried (case-insensitive) for each quantity at 34-ID-C and similar six-circles.
SPEC_MOTOR_ALIASES: dict[str, tuple[str, ...]] = {
    "delta": ("delta", "del"),
    "gamma": ("gamma", "nu", "gam"),
    "theta": ("theta", "th", "eta"),
    "energy": ("energy", "mono_energy"),
}


@dataclass
class RawScan:
    """A prepared rocking scan.

    intensity : (N, rows, cols) float64 photons ≥ 0, 0 where not valid.
    valid : (rows, cols) or (N, rows, cols) bool, True = trusted pixel.
    rocking_angles_rad : (N,) rocking-motor offsets from the frame holding the Bragg peak, rad.
    theta_rad : (N,) absolute rocking-motor positions, rad (NaN for padded frames is avoided:
        positions are extrapolated with the mean step).
    energy_eV, delta_rad, gamma_rad, detector_distance_m, pixel_size_m : scan geometry
        (pixel size after binning).
    peak_index : (frame, row, col) of the Bragg peak in the *output* arrays.
    roi : (frame0, row0, col0) position of output index (0, 0, 0) in the raw stack (negative
        where padded), before binning.
    metadata : provenance (files, spec scan, number of hot pixels, ...).
    """

    intensity: np.ndarray
    valid: np.ndarray
    rocking_angles_rad: np.ndarray
    theta_rad: np.ndarray
    energy_eV: float
    delta_rad: float
    gamma_rad: float
    detector_distance_m: float
    pixel_size_m: float
    peak_index: tuple[int, int, int]
    roi: tuple[int, int, int]
    metadata: dict[str, Any] = field(default_factory=dict)

    def geometry(self, **kwargs):
        """The :class:`dynbcdi.geometry.BraggGeometry` of this scan (``aps34idc_geometry``)."""
        from dynbcdi.geometry.beamlines import aps34idc_geometry

        return aps34idc_geometry(
            self.energy_eV, self.delta_rad, self.gamma_rad, self.rocking_angles_rad,
            self.intensity.shape[1:], self.pixel_size_m, self.detector_distance_m, **kwargs,
        )


@dataclass(frozen=True)
class SpecScanInfo:
    """Metadata of one spec scan: motor positions at scan start (deg, keV/eV as in the file) and columns."""

    number: int
    command: str
    motors: dict[str, float]
    columns: dict[str, np.ndarray]


def read_spec_scan(spec_file: str | os.PathLike, scan: int) -> SpecScanInfo:
    """Read scan ``#S scan`` of a spec file: #O/#P start positions and #L data columns."""
    from xrayutilities.io.spec import SPECFile

    spec_file = Path(spec_file)
    if not spec_file.is_file():
        raise FileNotFoundError(f"no such spec file: {spec_file}")
    with contextlib.redirect_stdout(io.StringIO()):  # xrayutilities prints progress
        sf = SPECFile(str(spec_file))
        found = [s for s in sf.scan_list if s.nr == int(scan)]
        if not found:
            numbers = [s.nr for s in sf.scan_list]
            raise ValueError(f"scan {scan} not in {spec_file} (scans there: {numbers})")
        s = found[-1]
        s.ReadData()
    motors = {k.removeprefix("INIT_MOPO_"): float(v) for k, v in s.init_motor_pos.items()}
    columns = {name: np.asarray(s.data[name], dtype=float) for name in s.data.dtype.names}
    return SpecScanInfo(number=int(scan), command=str(s.command).strip(), motors=motors, columns=columns)


def _lookup(names: dict[str, Any], quantity: str) -> tuple[str, Any] | None:
    lower = {k.lower(): k for k in names}
    for alias in SPEC_MOTOR_ALIASES[quantity]:
        if alias in lower:
            return lower[alias], names[lower[alias]]
    return None


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _read_tiff_stack(tiff_dir_or_files) -> tuple[np.ndarray, list[str]]:
    if isinstance(tiff_dir_or_files, (str, os.PathLike)) and Path(tiff_dir_or_files).is_dir():
        files = [p for p in Path(tiff_dir_or_files).iterdir() if p.suffix.lower() in (".tif", ".tiff")]
        if not files:
            raise ValueError(f"no .tif/.tiff files in {tiff_dir_or_files}")
        files.sort(key=_natural_key)  # frame_9 before frame_10
    elif isinstance(tiff_dir_or_files, (str, os.PathLike)):
        files = [Path(tiff_dir_or_files)]  # one multi-page TIFF
    else:
        files = [Path(p) for p in tiff_dir_or_files]
    for p in files:
        if not p.is_file():
            raise FileNotFoundError(f"no such TIFF file: {p}")
    stack = tifffile.imread([str(p) for p in files]) if len(files) > 1 else tifffile.imread(str(files[0]))
    stack = np.asarray(stack, dtype=np.float64)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise ValueError(f"TIFF frames must be 2-D images; got a stack of shape {stack.shape}")
    return stack, [str(p) for p in files]


def _as_image(value, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        p = Path(value)
        value = np.load(p) if p.suffix == ".npy" else tifffile.imread(str(p))
    arr = np.asarray(value)
    if arr.shape not in (shape[1:], shape):
        raise ValueError(f"{name} has shape {arr.shape}; expected {shape[1:]} (rows, cols) or {shape}")
    return arr


def _hot_pixels(stack: np.ndarray, valid: np.ndarray, threshold: float | None, max_count: float | None) -> np.ndarray:
    hot = np.zeros(stack.shape[1:], bool)
    summed = np.where(valid.all(axis=0) if valid.ndim == 3 else valid, stack.sum(axis=0), 0.0)
    if threshold is not None:
        # Speckles span >= 2 pixels (oversampling), a hot pixel only one: compare with the 3×3
        # median; the floor of 1 photon keeps isolated counts in dark regions from being flagged.
        med = ndimage.median_filter(summed, size=3, mode="nearest")
        hot |= summed > threshold * np.maximum(med, 1.0)
    if max_count is not None:
        hot |= (stack > max_count).any(axis=0)
    return hot


def _window(stack: np.ndarray, valid: np.ndarray, start: Sequence[int], size: Sequence[int]):
    """Crop ``size`` voxels from ``start`` (may lie outside the stack: zero, invalid padding)."""
    out = np.zeros(tuple(size), stack.dtype)
    out_valid = np.zeros(tuple(size), bool)
    src, dst = [], []
    for s0, n, total in zip(start, size, stack.shape):
        lo, hi = max(s0, 0), min(s0 + n, total)
        if hi <= lo:
            raise ValueError(f"crop window start {tuple(start)} size {tuple(size)} misses the data {stack.shape}")
        src.append(slice(lo, hi))
        dst.append(slice(lo - s0, hi - s0))
    out[tuple(dst)] = stack[tuple(src)]
    full_valid = np.broadcast_to(valid, stack.shape)
    out_valid[tuple(dst)] = full_valid[tuple(src)]
    return out, out_valid


def _bin(stack: np.ndarray, valid: np.ndarray, factors: tuple[int, int, int]):
    if factors == (1, 1, 1):
        return stack, valid
    shape = tuple(n // f * f for n, f in zip(stack.shape, factors))
    blocks = tuple(x for n, f in zip(shape, factors) for x in (n // f, f))
    trimmed = tuple(slice(0, n) for n in shape)
    summed = (stack[trimmed] * valid[trimmed]).reshape(blocks).sum(axis=(1, 3, 5))
    # A block with any untrusted pixel is untrusted: its sum would be biased low.
    all_valid = valid[trimmed].reshape(blocks).all(axis=(1, 3, 5))
    return np.where(all_valid, summed, 0.0), all_valid


def _corrections(stack, dark, flat, mask, hot_threshold, hot_max_count) -> tuple[np.ndarray, np.ndarray, int]:
    """Dark, flat, detector mask and hot pixels; returns (stack, valid (rows, cols), n_hot)."""
    valid = np.ones(stack.shape[1:], bool)
    dark_arr = _as_image(dark, "dark", stack.shape)
    if dark_arr is not None:
        stack = np.clip(stack - dark_arr, 0.0, None)
    flat_arr = _as_image(flat, "flat", stack.shape)
    if flat_arr is not None:
        flat_arr = np.asarray(flat_arr, float)
        good = flat_arr > 0
        valid = valid & (good.all(axis=0) if good.ndim == 3 else good)
        stack = np.where(good, stack / np.where(good, flat_arr / np.median(flat_arr[good]), 1.0), 0.0)
    mask_arr = _as_image(mask, "mask", stack.shape)
    if mask_arr is not None:
        valid = valid & (mask_arr == 0)
    hot = _hot_pixels(stack, valid, hot_threshold, hot_max_count)
    valid = valid & ~hot
    stack = stack * valid
    return stack, valid, int(hot.sum())


def prepare_stack(
    stack: np.ndarray,
    theta_deg: np.ndarray,
    *,
    dark=None,
    flat=None,
    mask=None,
    hot_pixel_threshold: float | None = 20.0,
    hot_pixel_max_count: float | None = None,
    roi: None | str | tuple[int, int, int, int] = "auto",
    roi_size: tuple[int, int] = (256, 256),
    bin: tuple[int, int, int] = (1, 1, 1),
    centre: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int], tuple[int, int, int], int]:
    """Correct, clean, crop, centre and bin a raw detector stack.

    stack : (N, rows, cols) counts. theta_deg : (N,) absolute rocking-motor positions, deg.
    dark : (rows, cols) or (N, rows, cols) counts (array, .tif or .npy path), subtracted, clipped at 0.
    flat : (rows, cols) relative efficiency; data are divided by flat/median(flat); flat ≤ 0 → bad.
    mask : (rows, cols) or (N, rows, cols), nonzero = bad pixel (file convention).
    hot_pixel_threshold : a pixel whose stack sum exceeds this × the 3×3 median of stack sums
        (at least 1 photon) is bad; None disables. hot_pixel_max_count : any single frame value
        above it marks the pixel bad (e.g. saturation); None disables.
    roi : None (whole detector), "auto" (``roi_size`` window centred on the peak) or explicit
        (row0, row1, col0, col1) in raw pixels. centre : put the Bragg peak at (N//2, rows//2,
        cols//2) of the output, padding with zero, invalid frames/pixels where needed (an explicit
        roi is kept as given on the detector axes). bin : (frames, rows, cols) summing factors,
        rows and cols equal.
    Returns (intensity, valid, theta_deg_out, peak_index_out, roi_start, n_hot).
    """
    stack = np.array(stack, dtype=np.float64)
    if stack.ndim != 3:
        raise ValueError(f"stack must be (N, rows, cols), got shape {stack.shape}")
    theta = np.asarray(theta_deg, dtype=float)
    if theta.shape != stack.shape[:1]:
        raise ValueError(f"{theta.size} rocking angles for {stack.shape[0]} frames")
    factors = tuple(int(b) for b in bin)
    if len(factors) != 3 or min(factors) < 1 or factors[1] != factors[2]:
        raise ValueError(f"bin must be (frames, rows, cols) positive ints with rows == cols, got {bin!r}")

    stack, valid, n_hot = _corrections(stack, dark, flat, mask, hot_pixel_threshold, hot_pixel_max_count)
    rows_cols = stack.sum(axis=0)
    prow, pcol = np.unravel_index(int(np.argmax(rows_cols)), rows_cols.shape)
    pframe = int(np.argmax(stack.sum(axis=(1, 2))))
    n = stack.shape[0]
    if roi is None:
        size_rc = stack.shape[1:]
        start_rc = (prow - size_rc[0] // 2, pcol - size_rc[1] // 2) if centre else (0, 0)
    elif isinstance(roi, str):
        if roi != "auto":
            raise ValueError(f"roi must be None, 'auto' or (row0, row1, col0, col1), got {roi!r}")
        size_rc = (min(int(roi_size[0]), stack.shape[1]), min(int(roi_size[1]), stack.shape[2]))
        start_rc = (prow - size_rc[0] // 2, pcol - size_rc[1] // 2)
    else:
        r0, r1, c0, c1 = (int(v) for v in roi)
        if not (0 <= r0 < r1 <= stack.shape[1] and 0 <= c0 < c1 <= stack.shape[2]):
            raise ValueError(f"roi {roi!r} is not inside the detector {stack.shape[1:]}")
        size_rc, start_rc = (r1 - r0, c1 - c0), (r0, c0)
    start = (pframe - n // 2 if centre else 0, *start_rc)
    out, out_valid = _window(stack, np.broadcast_to(valid, stack.shape), start, (n, *size_rc))
    step = float(np.mean(np.diff(theta))) if n > 1 else 0.0
    theta_out = theta[0] + step * (np.arange(n) + start[0])
    theta_out[max(-start[0], 0):min(n - start[0], n)] = theta[max(start[0], 0):min(start[0] + n, n)]
    out, out_valid = _bin(out, out_valid, factors)
    nb = out.shape[0]
    theta_out = theta_out[: nb * factors[0]].reshape(nb, factors[0]).mean(axis=1)
    peak = tuple(int((p - s) // f) for p, s, f in zip((pframe, prow, pcol), start, factors))
    start = tuple(int(s) for s in start)
    if np.all(out_valid == out_valid[0]):  # same mask in every frame: keep it 2-D
        out_valid = out_valid[0].copy()
    return out, out_valid, theta_out, peak, start, n_hot  # type: ignore[return-value]


def _resolve_metadata(n_frames: int, given: dict[str, Any], spec: SpecScanInfo | None) -> dict[str, Any]:
    """Combine explicit arguments (priority) with spec values; ValueError listing what is missing."""
    meta = dict(given)
    if spec is not None:
        for quantity, key in (("delta", "delta_deg"), ("gamma", "gamma_deg")):
            hit = _lookup(spec.motors, quantity)
            if meta.get(key) is None and hit is not None:
                meta[key] = hit[1]
        hit = _lookup(spec.motors, "energy")
        if meta.get("energy_eV") is None and hit is not None:
            # spec at 34-ID-C stores the mono energy in keV; values above 1000 are taken as eV.
            meta["energy_eV"] = hit[1] * 1e3 if hit[1] < 1000 else hit[1]
        hit = _lookup(spec.columns, "theta")
        if meta.get("theta_deg") is None and hit is not None:
            meta["theta_deg"] = hit[1]
    if meta.get("theta_deg") is None and meta.get("theta_step_deg") is not None:
        start = meta.get("theta_start_deg") or 0.0
        meta["theta_deg"] = start + meta["theta_step_deg"] * np.arange(n_frames)
    how = {
        "energy_eV": "energy_eV=... (or an 'Energy' motor in the spec #O/#P header)",
        "delta_deg": "delta_deg=... (or a 'Delta' motor in the spec header)",
        "gamma_deg": "gamma_deg=... (or a 'Gamma' motor in the spec header)",
        "theta_deg": "theta_deg=[...] or theta_step_deg=... (or a theta/th/eta column in the spec #L line)",
        "detector_distance_m": "detector_distance_m=... (the spec file does not record it at 34-ID-C)",
    }
    missing = [f"{k}: pass {v}" for k, v in how.items() if meta.get(k) is None]
    if missing:
        raise ValueError("missing scan metadata:\n  " + "\n  ".join(missing))
    theta = np.asarray(meta["theta_deg"], dtype=float)
    if theta.shape != (n_frames,):
        raise ValueError(f"{theta.size} rocking angles (theta_deg) for {n_frames} detector frames")
    meta["theta_deg"] = theta
    for key in ("energy_eV", "detector_distance_m", "pixel_size_m"):
        if not np.isfinite(meta[key]) or meta[key] <= 0:
            raise ValueError(f"{key} must be positive, got {meta[key]!r}")
    return meta


def _build_scan(stack, meta, processing: dict[str, Any], provenance: dict[str, Any]) -> RawScan:
    intensity, valid, theta_out, peak, start, n_hot = prepare_stack(stack, meta["theta_deg"], **processing)
    theta_rad = np.deg2rad(theta_out)
    factors = tuple(processing.get("bin", (1, 1, 1)))
    log.info("prepared scan %s: %d hot pixels, peak at %s", intensity.shape, n_hot, peak)
    return RawScan(
        intensity=intensity,
        valid=valid,
        rocking_angles_rad=theta_rad - theta_rad[min(peak[0], len(theta_rad) - 1)],
        theta_rad=theta_rad,
        energy_eV=float(meta["energy_eV"]),
        delta_rad=float(np.deg2rad(meta["delta_deg"])),
        gamma_rad=float(np.deg2rad(meta["gamma_deg"])),
        detector_distance_m=float(meta["detector_distance_m"]),
        pixel_size_m=float(meta["pixel_size_m"]) * factors[1],
        peak_index=peak,
        roi=start,
        metadata={**provenance, "n_hot_pixels": n_hot, "raw_shape": tuple(stack.shape)},
    )


def load_34idc_scan(
    tiff_dir_or_files: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    spec_file: str | os.PathLike | None = None,
    scan: int | None = None,
    energy_eV: float | None = None,
    delta_deg: float | None = None,
    gamma_deg: float | None = None,
    theta_deg: Sequence[float] | None = None,
    theta_step_deg: float | None = None,
    theta_start_deg: float | None = None,
    detector_distance_m: float | None = None,
    pixel_size_m: float = 55e-6,
    dark=None,
    flat=None,
    mask=None,
    hot_pixel_threshold: float | None = 20.0,
    hot_pixel_max_count: float | None = None,
    roi: None | str | tuple[int, int, int, int] = "auto",
    roi_size: tuple[int, int] = (256, 256),
    bin: tuple[int, int, int] = (1, 1, 1),
    centre: bool = True,
) -> RawScan:
    """Load an APS 34-ID-C rocking scan: one TIFF per rocking angle (or one multi-page TIFF).

    tiff_dir_or_files : a folder (frames sorted by the numbers in their names), a list of files,
        or one multi-page TIFF. Frames are (rows, cols) detector images (Timepix, 55 µm pixels).
    spec_file, scan : spec file and scan number; δ, γ (deg) and the energy (keV in the file) come
        from the #O/#P motor header, the rocking angles (deg) from the theta/th/eta #L column.
        Explicit arguments override spec values. Without spec, give energy_eV, delta_deg,
        gamma_deg and theta_deg (N,) or theta_step_deg (+ theta_start_deg).
    detector_distance_m : sample–detector distance, m (not in the spec file: always needed).
    Other arguments: see :func:`prepare_stack`. Returns a :class:`RawScan`.
    """
    if (spec_file is None) != (scan is None):
        raise ValueError(f"give both spec_file and scan, or neither (got spec_file={spec_file!r}, scan={scan!r})")
    stack, files = _read_tiff_stack(tiff_dir_or_files)
    spec = read_spec_scan(spec_file, scan) if spec_file is not None else None
    given = dict(energy_eV=energy_eV, delta_deg=delta_deg, gamma_deg=gamma_deg, theta_deg=theta_deg,
                 theta_step_deg=theta_step_deg, theta_start_deg=theta_start_deg,
                 detector_distance_m=detector_distance_m, pixel_size_m=pixel_size_m)
    meta = _resolve_metadata(stack.shape[0], given, spec)
    processing = dict(dark=dark, flat=flat, mask=mask, hot_pixel_threshold=hot_pixel_threshold,
                      hot_pixel_max_count=hot_pixel_max_count, roi=roi, roi_size=roi_size, bin=bin, centre=centre)
    provenance = {"beamline": "34idc", "files": files}
    if spec is not None:
        provenance.update(spec_file=str(spec_file), scan=spec.number, spec_command=spec.command)
    return _build_scan(stack, meta, processing, provenance)


def load_hdf5_stack(
    path: str | os.PathLike,
    dataset_path: str,
    *,
    metadata_paths: dict[str, str] | None = None,
    energy_eV: float | None = None,
    delta_deg: float | None = None,
    gamma_deg: float | None = None,
    theta_deg: Sequence[float] | None = None,
    theta_step_deg: float | None = None,
    theta_start_deg: float | None = None,
    detector_distance_m: float | None = None,
    pixel_size_m: float | None = None,
    **processing: Any,
) -> RawScan:
    """Load a rocking scan stored as one (N, rows, cols) HDF5/NeXus dataset (e.g. ``/entry/data/data``).

    metadata_paths : maps any of energy_eV, delta_deg, gamma_deg, theta_deg, detector_distance_m,
        pixel_size_m (default 55e-6 m when given nowhere) to a dataset path in the same file (values in those units; explicit keyword
        arguments take priority). processing : keyword arguments of :func:`prepare_stack`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such HDF5 file: {path}")
    given = dict(energy_eV=energy_eV, delta_deg=delta_deg, gamma_deg=gamma_deg, theta_deg=theta_deg,
                 theta_step_deg=theta_step_deg, theta_start_deg=theta_start_deg,
                 detector_distance_m=detector_distance_m, pixel_size_m=pixel_size_m)
    unknown = set(metadata_paths or {}) - set(given)
    if unknown:
        raise ValueError(f"unknown metadata_paths keys {sorted(unknown)}; allowed: {sorted(given)}")
    with h5py.File(path, "r") as f:
        if dataset_path not in f:
            raise ValueError(f"{path} has no dataset {dataset_path!r}")
        stack = np.asarray(f[dataset_path][()], dtype=np.float64)
        for key, ds_path in (metadata_paths or {}).items():
            if given.get(key) is None:
                if ds_path not in f:
                    raise ValueError(f"{path} has no dataset {ds_path!r} (metadata_paths[{key!r}])")
                value = f[ds_path][()]
                given[key] = np.asarray(value, float) if key == "theta_deg" else float(np.asarray(value).ravel()[0])
    if stack.ndim != 3:
        raise ValueError(f"{dataset_path!r} must be (N, rows, cols), got shape {stack.shape}")
    if given["pixel_size_m"] is None:
        given["pixel_size_m"] = 55e-6  # Timepix/Medipix pitch, the 34-ID-C default
    meta = _resolve_metadata(stack.shape[0], given, None)
    return _build_scan(stack, meta, processing, {"file": str(path), "dataset_path": dataset_path})
