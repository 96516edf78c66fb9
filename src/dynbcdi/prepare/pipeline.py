"""Raw scan → validated :class:`~dynbcdi.io.dataset.Dataset`: corrections, window, binning, geometry, provenance.

:func:`prepare` turns a :class:`~dynbcdi.io.readers.base.RawScan` into a dataset; :func:`prepare_dataset`
reads the source first. The returned dataset has been checked up front: its geometry builds the
real-space basis, the grid spacing and Δq (so no long computation fails on it later), and the measured
2θ has been compared with the reflection (reported, not fatal).

Geometry follows the window exactly: the prepared pixel (R, C) covers raw pixels
``start + b·R … start + b·R + b − 1``; the centre pixel (rows//2, cols//2) of the prepared frame sits
at ``(start + b·(rows//2) + (b − 1)/2 + frames_offset_px)`` raw pixel pitches from the pixel on the
nominal kh, which :func:`dynbcdi.beamlines.beamline_geometry` receives as ``centre_offset_m``; the
pixel size is b·p. A binned frame's rocking angle is the mean of its raw (uniform) angles.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from dynbcdi.prepare import corrections as corr
from dynbcdi.prepare.config import PrepareConfig, ReflectionConfig, config_summary, reflection_from_config
from dynbcdi.prepare.rocking import RockingReport, uniform_rocking_angles
from dynbcdi.prepare.window import Window, bin_stack, extract, find_peak, plan_window
from dynbcdi.provenance import as_plain, library_versions

__all__ = ["prepare", "prepare_dataset"]

log = logging.getLogger(__name__)


def prepare_dataset(source, reflection: ReflectionConfig, cfg: PrepareConfig):
    """Read ``source`` (:class:`~dynbcdi.io.readers.base.SourceConfig`), prepare and validate it.

    A beamline's files are read by its reader (:func:`~dynbcdi.io.readers.base.read_scan`); one
    array file (.npy, .npz, .tif, .cxi) by :func:`~dynbcdi.prepare.array_source.read_array_scan`
    with the geometry from ``source``.
    Returns a :class:`~dynbcdi.io.dataset.Dataset` (intensity (N, rows, cols) float64 photons,
    valid, geometry, reflection constants at the scan energy, spacing_m (dz, dy, dx) m) whose
    ``metadata["provenance"]`` also records the source settings.
    """
    from dynbcdi.io.readers.base import read_scan
    from dynbcdi.prepare.array_source import is_array_source, read_array_scan

    raw = read_array_scan(source) if is_array_source(source) else read_scan(source)
    constants = reflection_from_config(reflection, raw.energy_eV)
    dataset = prepare(raw, constants, cfg)
    dataset.metadata["provenance"]["source"] = config_summary(source)
    dataset.metadata["provenance"]["reflection_config"] = config_summary(reflection)
    return dataset


def prepare(raw, reflection, cfg: PrepareConfig):
    """Prepare a raw scan: corrections, crop/pad, binning, uniform rocking angles, geometry, checks.

    raw : :class:`~dynbcdi.io.readers.base.RawScan` (frames (N, rows, cols) counts, data orientation).
    reflection : :class:`~dynbcdi.materials.ReflectionConstants` of the measured reflection.
    cfg : :class:`PrepareConfig`. Returns a :class:`~dynbcdi.io.dataset.Dataset`; ValueError (one
    line) on inconsistent input, before any long computation downstream.
    """
    from dynbcdi.io.dataset import Dataset

    t0 = time.perf_counter()
    frames = np.asarray(raw.frames)
    if frames.ndim != 3 or min(frames.shape) < 1:
        raise ValueError(f"raw frames must be a non-empty (N, rows, cols) stack, got shape {frames.shape}")
    first, stop = _frame_range(cfg.frame_range, frames.shape[0])
    rocking = _rocking(raw, cfg)  # cheap checks first: a non-uniform scan fails before any array work
    stack, valid, report = _corrected_stack(raw, cfg, first, stop)
    window, peak = _plan(stack, valid, cfg)
    intensity, valid_w = extract(stack, valid, window.start, window.shape)
    intensity, valid_w = bin_stack(intensity, valid_w, window.bin)
    raw_j = np.array([window.raw_position((j, 0, 0))[0] for j in range(window.out_shape[0])]) + first
    zero_j = first + peak[0] if cfg.rocking_zero == "peak" else float(np.mean(raw_j))
    angles_rad = np.deg2rad(rocking.angles_deg(raw_j) - rocking.angles_deg(zero_j))
    geometry = _geometry(raw, window, rocking.angles_deg(zero_j), angles_rad)
    spacing = _validate_geometry(geometry, intensity.shape)
    centre = window.raw_position((0, intensity.shape[1] // 2, intensity.shape[2] // 2))
    peak_offset_m = tuple(raw.pixel_size_m * (p - c) for p, c in zip(peak[1:], centre[1:]))
    two_theta = _two_theta_report(geometry, reflection, peak_offset_m)
    if np.all(valid_w == valid_w[:1]):
        valid_w = valid_w[0].copy()  # one mask for every frame: keep it 2-D
    intensity = np.where(valid_w, intensity, 0.0)
    provenance = _provenance(raw, cfg, reflection, report, window, first, peak, rocking, two_theta,
                             intensity, valid_w, time.perf_counter() - t0)
    log.info("prepared %s from raw %s: %.2f %% valid, peak at raw %s", intensity.shape, frames.shape,
             100 * provenance["valid_fraction"], provenance["peak_raw"])
    return Dataset(intensity=intensity, valid=valid_w, geometry=geometry, reflection=reflection,
                   spacing_m=spacing, metadata={"provenance": provenance})


def _frame_range(frame_range: tuple[int, int] | None, n: int) -> tuple[int, int]:
    if frame_range is None:
        return 0, n
    first, stop = frame_range
    if stop > n:
        raise ValueError(f"prepare.frame_range = {list(frame_range)} exceeds the {n} frames of the scan")
    return first, stop


def _corrected_stack(raw, cfg: PrepareConfig, first: int, stop: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Frames first…stop−1 corrected; returns (stack, valid (N, rows, cols), report of what was masked)."""
    stack, bad_voxels = corr.invalid_values(np.array(raw.frames[first:stop], dtype=np.float64))
    shape2 = stack.shape[1:]
    stack, bad_dark, dark_report = corr.dark_correction(stack, raw.dark, cfg.dark_kind, cfg.bad_map_max_fraction)
    bad_given = np.zeros(shape2, bool)
    if raw.bad_pixels is not None:
        bad_given = corr.check_image(raw.bad_pixels, shape2, "bad-pixel map") != 0
    flat = raw.flat if cfg.flat else None
    stack, bad_flat, flat_median = corr.flat_correction(stack, flat, ~(bad_dark | bad_given), cfg.flat_min_relative)
    bad_seam = np.zeros(shape2, bool)
    seams = _seam_boundaries(raw) if cfg.seams == "mask" else ((), ())
    if cfg.seams == "mask":
        bad_seam = corr.seam_mask(shape2, *seams, width=cfg.seam_width_px)
    bad_px = bad_dark | bad_given | bad_flat | bad_seam
    hot = corr.hot_pixels(stack, ~bad_px, cfg.hot_pixel_threshold, cfg.max_count)
    valid = ~(bad_voxels | (bad_px | hot)[None])
    gaps = tuple(tuple(int(v) for v in g) for g in raw.metadata.get("gaps_in_frames", ()))
    stack, valid = corr.insert_gaps(stack, valid, gaps)
    aliens = corr.alien_mask(stack.shape, cfg.aliens, first)
    valid &= ~aliens
    monitor_mean = None
    if cfg.monitor:
        monitor = None if raw.monitor is None else np.asarray(raw.monitor, float)[first:stop]
        stack, monitor_mean = corr.monitor_normalisation(stack, monitor)
    stack = np.where(valid, stack, 0.0)
    if not valid.any():
        raise ValueError("every pixel is masked: check the dark/flat/bad-pixel inputs and prepare.* thresholds")
    report = {
        "invalid_values": int(bad_voxels.sum()),
        "dark": None if dark_report is None else dict(dark_report.__dict__),
        "bad_pixels_given": int(bad_given.sum()),
        "flat_masked": int(bad_flat.sum()) if flat is not None else None,
        "flat_median": flat_median,
        "seam_rows": [int(b) for b in seams[0]], "seam_cols": [int(b) for b in seams[1]],
        "seam_masked": int((bad_seam & ~(bad_dark | bad_given | bad_flat)).sum()),
        "hot_pixels": int(hot.sum()),
        "alien_voxels": int(aliens.sum()),
        "gaps_inserted": [list(g) for g in gaps],
        "masked_pixels": int((bad_px | hot).sum()),
        "monitor_mean": monitor_mean,
    }
    _log_report(report)
    return stack, valid, report


def _log_report(r: dict) -> None:
    if r["dark"] is not None and r["dark"]["kind"] == "bad_pixels":
        log.info("dark image used as a bad-pixel map: %d pixels masked", r["dark"]["n_masked"])
    log.info("masked: %d hot pixels, %d flat-field pixels, %d seam pixels (boundaries rows %s cols %s), "
             "%d given bad pixels, %d alien voxels, %d invalid values", r["hot_pixels"], r["flat_masked"] or 0,
             r["seam_masked"], r["seam_rows"], r["seam_cols"], r["bad_pixels_given"], r["alien_voxels"],
             r["invalid_values"])


def _seam_boundaries(raw) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chip boundaries (rows, cols) in frame pixels: the beamline detector's gaps that touch the frames."""
    from dynbcdi.beamlines import get_beamline

    roi = raw.metadata.get("detector_roi_data")
    detector = get_beamline(raw.beamline).detector
    if roi is None:
        if tuple(raw.frames.shape[1:]) != tuple(detector.data_shape):
            log.warning("the frames' position on the detector is unknown: chip seams not masked")
            return (), ()
        roi = (0, detector.data_shape[0], 0, detector.data_shape[1])
    bounds: tuple[list[int], list[int]] = ([], [])
    lo_hi = ((roi[0], roi[1]), (roi[2], roi[3]))
    for axis, index, _width in detector.gaps:
        lo, hi = lo_hi[axis]
        if lo <= index <= hi:  # a frame ending on a chip edge still holds the edge pixels
            bounds[axis].append(int(index - lo))
    return tuple(bounds[0]), tuple(bounds[1])


def _plan(stack: np.ndarray, valid: np.ndarray, cfg: PrepareConfig) -> tuple[Window, tuple[int, int, int]]:
    """Window and peak (frame, row, col) in stack coordinates (frame 0 = first frame of frame_range).

    Pixels outside ``cfg.roi`` are masked in ``valid`` (in place): a crop centred on the peak may
    reach beyond the roi, and what lies there was not kept.
    """
    r0, r1, c0, c1 = cfg.roi if cfg.roi is not None else (0, stack.shape[1], 0, stack.shape[2])
    if r1 > stack.shape[1] or c1 > stack.shape[2]:
        raise ValueError(f"prepare.roi = {list(cfg.roi)} exceeds the frames "
                         f"({stack.shape[1]} rows, {stack.shape[2]} cols)")
    inside = np.zeros(stack.shape[1:], bool)
    inside[r0:r1, c0:c1] = True
    valid &= inside
    if cfg.peak is not None:
        peak = (cfg.peak[0] - (cfg.frame_range or (0, 0))[0], cfg.peak[1], cfg.peak[2])
        if not all(0 <= p < n for p, n in zip(peak, stack.shape)):
            raise ValueError(f"prepare.peak = {list(cfg.peak)} is outside the frames kept {stack.shape}")
    else:
        pj, pr, pc = find_peak(stack[:, r0:r1, c0:c1], valid[:, r0:r1, c0:c1])
        peak = (pj, pr + r0, pc + c0)
    window = plan_window(stack.shape[0], stack.shape[1:], peak, cfg.roi, cfg.crop_shape, cfg.n_frames, cfg.bin)
    return window, peak


def _rocking(raw, cfg: PrepareConfig) -> RockingReport:
    angles = np.asarray(raw.positions_deg[raw.rocking_motor], dtype=float)
    if angles.shape != (raw.frames.shape[0],):
        raise ValueError(f"{angles.size} rocking angles ({raw.rocking_motor}) for {raw.frames.shape[0]} frames")
    nominal = _nominal_step(raw)
    report = uniform_rocking_angles(angles, nominal, cfg.rocking_step, cfg.max_rocking_deviation)
    log.info("rocking %s: step %.6g° (%s), read-backs off the uniform grid by %.3g° RMS (%.3g %% of a step), "
             "steps differ by up to %.3g %%", raw.rocking_motor, report.step_deg, report.method,
             report.rms_deviation_deg, 100 * report.rms_deviation_deg / abs(report.step_deg),
             100 * report.max_step_deviation)
    return report


def _nominal_step(raw) -> float | None:
    """The commanded rocking step (deg): a source override, else the scan command's step when the
    positions are the file's read-backs of the commanded motor; None if unknown."""
    meta = raw.metadata
    if meta.get("rocking_step_deg") is not None:
        return float(meta["rocking_step_deg"])
    command = meta.get("command_parsed") or {}
    if not command.get("step") or meta.get("rocking_positions") != "file":
        return None
    from dynbcdi.beamlines import get_beamline

    aliases = {a.lower() for a in get_beamline(raw.beamline).motors.get(raw.rocking_motor, ())}
    return float(command["step"]) if str(command.get("motor", "")).lower() in aliases else None


def _geometry(raw, window: Window, zero_deg: float, angles_rad: np.ndarray):
    """Geometry of the prepared array: centre pixel, binned pixel size, rocking motor at its zero (deg)."""
    from dynbcdi.beamlines import beamline_geometry, centre_offset_m

    _, rows, cols = window.out_shape
    offset = centre_offset_m(raw.frames_offset_px, window.start[1:], (rows, cols), window.bin[1:], raw.pixel_size_m)
    positions = {k: (float(zero_deg) if k == raw.rocking_motor else v) for k, v in raw.positions_deg.items()}
    return beamline_geometry(raw.beamline, raw.energy_eV, positions, raw.rocking_motor, angles_rad,
                             (rows, cols), raw.pixel_size_m * window.bin[1], raw.detector_distance_m,
                             centre_offset_m=offset)


def _validate_geometry(geometry, shape: tuple[int, int, int]) -> tuple[float, float, float]:
    """Build what every later stage needs from the geometry; one-line ValueError if it cannot."""
    try:
        geometry.realspace_basis(shape)
        spacing = geometry.grid_spacing_m()
        geometry.dq_grid()
    except ValueError as err:
        raise ValueError(f"the prepared scan's geometry is unusable: {err}") from None
    return spacing


def _two_theta_report(geometry, reflection, peak_offset_m: tuple[float, float]) -> dict[str, Any]:
    """The 2θ check at the Bragg peak's pixel, ``peak_offset_m`` (along row, along col, m) from the data's
    centre pixel (the geometry's kh): without a crop centred on the peak the two can be degrees apart."""
    from dynbcdi.beamlines import check_two_theta

    khat = geometry.kh / np.linalg.norm(geometry.kh)
    pixel = (geometry.detector_distance_m * khat + peak_offset_m[0] * geometry.detector_row_dir
             + peak_offset_m[1] * geometry.detector_col_dir)
    cos_tth = pixel @ geometry.k0 / (np.linalg.norm(pixel) * np.linalg.norm(geometry.k0))
    report = check_two_theta(float(np.degrees(np.arccos(np.clip(cos_tth, -1.0, 1.0)))), reflection)
    if report.negligible:
        log.info("2θ check: %s", report.summary())
    else:
        log.warning("2θ check: %s", report.summary())
    return {**as_plain(report), "summary": report.summary()}


def _provenance(raw, cfg, reflection, report, window: Window, first: int, peak, rocking: RockingReport,
                two_theta, intensity, valid, seconds: float) -> dict[str, Any]:
    import datetime

    valid_full = np.broadcast_to(valid, intensity.shape)
    peak_raw = (first + peak[0], peak[1], peak[2])
    window_raw = window.as_dict()
    window_raw["start"][0] += first
    window_raw["stop"][0] += first
    return as_plain({
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "beamline": raw.beamline,
        "raw": {"shape": list(raw.frames.shape), "energy_eV": raw.energy_eV,
                "detector_distance_m": raw.detector_distance_m, "pixel_size_m": raw.pixel_size_m,
                "frames_offset_px": list(raw.frames_offset_px), "rocking_motor": raw.rocking_motor,
                "positions_deg": {k: v for k, v in raw.positions_deg.items() if np.ndim(v) == 0},
                "metadata": {k: v for k, v in raw.metadata.items() if not isinstance(v, np.ndarray)}},
        "prepare": config_summary(cfg),
        "reflection": {"material": reflection.material, "hkl": list(reflection.hkl),
                       "energy_eV": reflection.energy_eV, "d_spacing_m": reflection.d_spacing_m,
                       "bragg_angle_deg": float(np.degrees(reflection.bragg_angle_rad))},
        "corrections": report,
        "peak_raw": list(peak_raw),
        "window_raw": window_raw,
        "rocking": {**rocking.__dict__, "zero": cfg.rocking_zero,
                    "zero_note": ("θ = 0 at the rocking-curve maximum, which contains the refraction shift; "
                                  "fit a global rocking offset to recover the kinematic Bragg position")
                    if cfg.rocking_zero == "peak" else "θ = 0 at the middle prepared frame"},
        "two_theta": two_theta,
        "shape": list(intensity.shape),
        "valid_fraction": float(valid_full.mean()),
        "photons": float(intensity.sum()),
        "seconds": round(seconds, 3),
    })
