"""Simulate a BCDI rocking scan under dynamical diffraction: :func:`simulate_dataset`.

Grid: (Z, Y, X) = (nz, rows, cols) in the default grid frame of the geometry (ẑ ∥ kh, x̂ = detector
column direction, ŷ = row direction), transverse voxel (dy, dx) = λD/(N p) so that the far field of
the exit wave lands pixel-for-pixel on the detector: the TTE pattern (B, Y, X) is the detector frame
I[j, row, col]. dz defaults to dx.

Sampling checks, before any computation (all numbers in the messages):

* the crystal must not touch the grid border (crystal larger than the field of view), and the
  transverse box must hold the crystal plus the lateral drift of the oblique beams across it
  (otherwise the periodic TTE solver would wrap E0/Eh back into the crystal): ValueError;
* transverse oversampling (field of view / crystal width) < 2: warning (phase retrieval needs 2);
* rocking oversampling σ = 2π / (|Δq step| · crystal width along Δq step) < 2: warning, < 1: the
  fringes are not sampled at all: ValueError;
* rocking range within the grid's Nyquist limits, max_j |Δq_j,a| d_a < π for a = x, y, z: beyond it
  the Bragg peak leaves the detector (x, y) and wraps around the periodic box, or the phase
  e^{iΔq_z z} is not resolved by dz (z) and the rocking curve shows aliased replica peaks:
  ValueError (:func:`fit_z_sampling` picks a fine enough dz).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dynbcdi.distributed import Communicator, sharded_map
from dynbcdi.geometry import BraggGeometry, GridFrame, aps34idc_geometry, generic_geometry
from dynbcdi.io.dataset import Dataset
from dynbcdi.simulate import noise as noise_mod
from dynbcdi.simulate import refraction, shapes
from dynbcdi.simulate.config import GeometryConfig, SimulationConfig, to_dict
from dynbcdi.simulate.sample import Sample, build_sample

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def build_geometry(cfg: GeometryConfig, reflection) -> BraggGeometry:
    """BraggGeometry of the configured scan for ``reflection`` (ReflectionConstants)."""
    angles = np.radians(cfg.rocking_angles_deg())
    shape = tuple(int(n) for n in cfg.detector_shape)
    if cfg.kind == "generic":
        return generic_geometry(reflection, angles, shape, cfg.pixel_size_m, cfg.distance_m,
                                scattering_plane=cfg.scattering_plane)
    gamma = math.radians(cfg.gamma_deg)
    cos_delta = math.cos(2 * reflection.bragg_angle_rad) / math.cos(gamma)
    if not -1 <= cos_delta <= 1:
        raise ValueError(f"geometry.gamma_deg = {cfg.gamma_deg} exceeds 2θB = "
                         f"{math.degrees(2 * reflection.bragg_angle_rad):.3f}°: no δ reaches the Bragg condition")
    delta = math.acos(cos_delta)
    return aps34idc_geometry(reflection.energy_eV, delta, gamma, angles, shape, cfg.pixel_size_m,
                             cfg.distance_m, h_norm=reflection.h_norm)


def rocking_oversampling(geometry: BraggGeometry, frame: GridFrame, s: np.ndarray,
                         spacing_m: tuple[float, float, float]) -> float:
    """σ = 2π / (|Δq step| · crystal width along the Δq step direction) (dimensionless)."""
    dq = geometry.dq_grid(frame)
    step = np.median(np.diff(dq, axis=0), axis=0)
    width = shapes.extent_along(s, spacing_m, step)
    return float(2 * np.pi / (np.linalg.norm(step) * width))


def nyquist_fractions(geometry: BraggGeometry, frame: GridFrame,
                      spacing_m: tuple[float, float, float]) -> np.ndarray:
    """max_j |Δq_j,a| d_a / π for a = (x, y, z): must stay below 1 (dimensionless, (3,))."""
    dz, dy, dx = spacing_m
    return np.abs(geometry.dq_grid(frame)).max(axis=0) * np.array([dx, dy, dz]) / np.pi


def _check_nyquist(geometry: BraggGeometry, frame: GridFrame, spacing_m: tuple[float, float, float]) -> None:
    frac = nyquist_fractions(geometry, frame, spacing_m)
    widest = float(np.degrees(np.abs(geometry.rocking_angles_rad).max()))
    for name, f in zip("xy", frac[:2]):
        if f >= 1:
            raise ValueError(
                f"rocking range too wide for the detector: at ±{widest:.4g}° the Bragg peak moves {f / 2:.2f} "
                f"detector widths along {name} and would wrap around the periodic grid; reduce the range or use "
                "more pixels")
    if frac[2] >= 1:
        raise ValueError(
            f"dz too coarse for the rocking range: max |Δq_z| dz = {frac[2]:.2f} π > π at ±{widest:.4g}° (the "
            "rocking curve would show aliased replica peaks); set grid.dz_m <= "
            f"{spacing_m[0] / frac[2]:.3g} m (fit_z_sampling does this) or reduce the range")


def fit_z_sampling(config: SimulationConfig, fraction: float = 0.8) -> SimulationConfig:
    """``config`` with dz reduced (and nz raised, same z extent) to max |Δq_z| dz = fraction·π.

    Unchanged when the rocking range is already unaliased (max |Δq_z| dz <= π), so a preset at its
    designed size stays exactly as designed. Used for reduced-size runs of the presets, whose coarse
    transverse voxels would otherwise set a too coarse dz; ``fraction`` keeps a margin below π.
    """
    from dynbcdi.materials import reflection_constants

    rc = config.reflection
    refl = reflection_constants(rc.material, rc.hkl, rc.energy_eV, lattice_a_m=rc.lattice_a_m,
                                lattice_c_m=rc.lattice_c_m, temperature_K=rc.temperature_K)
    geometry = build_geometry(config.geometry, refl)
    frame = geometry.grid_frame()
    dz = config.grid.dz_m or geometry.transverse_spacing_m()[1]
    qz = float(np.abs(geometry.dq_grid(frame)[:, 2]).max())
    if qz * dz <= np.pi:
        return config
    new_dz = fraction * np.pi / qz
    nz = int(math.ceil(config.grid.nz * dz / new_dz))
    return dataclasses.replace(config, grid=dataclasses.replace(config.grid, nz=nz, dz_m=new_dz))


def check_sampling(geometry: BraggGeometry, frame: GridFrame, s: np.ndarray,
                   spacing_m: tuple[float, float, float]) -> dict[str, float]:
    """Apply the sampling checks of the module docstring; return the oversampling ratios."""
    from dynbcdi.forward.tte import min_transverse_width

    inside = s > 1e-6
    for axis, name in ((0, "z"), (1, "y"), (2, "x")):
        border = np.take(inside, [0, -1], axis=axis)
        if border.any():
            fov = s.shape[axis] * spacing_m[axis]
            raise ValueError(f"crystal larger than the field of view: it reaches the grid border along {name} "
                             f"(field of view {fov * 1e9:.0f} nm = {s.shape[axis]} × {spacing_m[axis] * 1e9:.2f} nm)")
    k0, kh = geometry.beam_directions_grid(frame)
    ny, nx = min_transverse_width(inside, spacing_m, k0, kh)
    _, rows, cols = s.shape
    if (ny or 0) > rows or (nx or 0) > cols:
        raise ValueError(
            f"crystal too large for the transverse field of view: crystal width plus the lateral drift of "
            f"the beams across it needs (rows, cols) >= ({ny}, {nx}) pixels, the detector has ({rows}, {cols}); "
            "increase the detector size or the distance, or use a smaller crystal")
    _check_nyquist(geometry, frame, spacing_m)
    ratios = {"rocking_oversampling": rocking_oversampling(geometry, frame, s, spacing_m)}
    for axis, name, d in ((1, "y", spacing_m[1]), (2, "x", spacing_m[2])):
        width = shapes.extent_along(s, spacing_m, np.eye(3)[2 - axis])
        ratios[f"oversampling_{name}"] = float(s.shape[axis] * d / width)
    sigma = ratios["rocking_oversampling"]
    if sigma < 1:
        raise ValueError(f"rocking step too coarse: oversampling ratio along the rocking direction is {sigma:.2f} "
                         "< 1, the crystal's fringes are not sampled; reduce the rocking step")
    for key, value in ratios.items():
        if value < 2:
            msg = f"{key} = {value:.2f} < 2: the fringes are undersampled for phase retrieval"
            logger.warning(msg)
            warnings.warn(msg, stacklevel=3)
    return ratios


STACK_CALL_BUDGET_BYTES = 128 << 20
"""Per-angle fields of one forward-model call in :func:`simulate_dataset` (exit waves, their far
field, the patterns): calls take as many angles as fit in it (:func:`stack_batch_size`)."""


def stack_batch_size(minimum: int, n_angles: int, plane: tuple[int, int], dtype: torch.dtype) -> int:
    """Rocking angles per forward-model call: as many as keep the call's output within
    :data:`STACK_CALL_BUDGET_BYTES`, at least ``minimum`` (the configured batch size), at most ``n_angles``.

    plane : (rows, cols) of the patterns; dtype : complex dtype of S. Per angle a call holds two
    complex fields (exit waves, far field) and three real ones (|far field|², a temporary, the
    shifted patterns). Larger calls cost no accuracy: the TTE model marches the angles of a call in
    its own cache-sized chunks and gives the same numbers; they save its per-call set-up (the
    crystal's step operators): the 128³ au-cube-200 stack (401 angles) took 9.5 s in one call
    against 24 s in calls of 8 on one loaded core.
    """
    complex_bytes = torch.empty((), dtype=dtype).element_size()
    per_angle = plane[0] * plane[1] * (2 * complex_bytes + 3 * complex_bytes // 2)
    return int(min(max(n_angles, 1), max(minimum, STACK_CALL_BUDGET_BYTES // per_angle)))


def compute_stack(model: torch.nn.Module, S: torch.Tensor, dq: np.ndarray, batch_size: int,
                  progress: Progress | bool | None = None, label: str = "TTE") -> np.ndarray:
    """Patterns of ``model`` for every Δq_j in batches: (N, Y, X) float64 numpy array.

    S : (Z, Y, X) complex tensor (its device and precision are used); dq : (N, 3) rad/m, grid frame.
    progress : True for a tqdm bar, a callable (done, total), or None.
    """
    n = dq.shape[0]
    dq_t = torch.as_tensor(dq, dtype=torch.float64, device=S.device)
    out = np.empty((n, S.shape[1], S.shape[2]))
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=label, unit="angle")
    with torch.no_grad():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            out[start:stop] = model(S, dq_t[start:stop]).cpu().numpy()  # cast to float64 here: no copy
            if bar is not None:
                bar.update(stop - start)
            elif callable(progress):
                progress(stop, n)
    if bar is not None:
        bar.close()
    return out


def sharded_stack(comm: Communicator, model: torch.nn.Module, S: torch.Tensor, dq: np.ndarray, batch_size: int,
                  progress: Progress | bool | None = None, label: str = "TTE") -> np.ndarray:
    """:func:`compute_stack` with the angles split over the ranks of ``comm`` (contiguous shards).

    Every rank computes its shard and receives the full (N, Y, X) float64 stack (all-gather), so
    that noise drawn afterwards from the same seed is identical on all ranks. Rank 0 shows progress.
    """
    def block(start: int, stop: int) -> np.ndarray:
        return compute_stack(model, S, dq[start:stop], batch_size, progress if comm.is_main else None, label)

    return sharded_map(comm, block, dq.shape[0])


def _models(config: SimulationConfig, geometry, reflection, spacing, frame) -> dict[str, torch.nn.Module]:
    from dynbcdi.forward.kinematic import KinematicModel, RefractionKinematicModel
    from dynbcdi.forward.tte import TTEModel

    mc = config.model
    tte = dict(polarization=mc.polarization, frame=frame, integrator=mc.integrator, substeps=mc.substeps)
    models: dict[str, torch.nn.Module] = {"dynamical": TTEModel.from_geometry(geometry, reflection, spacing, **tte)}
    if mc.kinematic:
        # The weak-scattering limit of the TTE march: one Strang step per voxel samples S at the voxel
        # centre (the plain sum Σ S e^{iΔq·r} dz); finer steps integrate the piecewise-constant voxel
        # and add its sinc form factor.
        voxel_model = mc.integrator != "strang" or mc.substeps > 1
        models["kinematic"] = KinematicModel.from_geometry(geometry, reflection, spacing, polarization=mc.polarization,
                                                           frame=frame, voxel_form_factor=voxel_model)
    if mc.refraction_kinematic:
        models["refraction_kinematic"] = RefractionKinematicModel.from_geometry(geometry, reflection, spacing, **tte)
    return models


def _predicted_shift(sample: Sample, spacing, geometry: BraggGeometry, frame: GridFrame, reflection) -> float | None:
    if sample.facet_normals is None:
        return None
    k0, _ = geometry.beam_directions_grid(frame)
    shift, _ = refraction.predicted_shift_rad(
        sample.facet_normals, sample.facet_distances_m, sample.s, spacing, k0 * geometry.k_norm,
        frame.to_grid(geometry.h), frame.to_grid(geometry.rocking_axis), reflection.chi0)
    return shift


def _apply_noise(config: SimulationConfig, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intensity, valid (rows, cols), hot-pixel map) from the noise-free stack."""
    nc = config.noise
    rng = np.random.default_rng(nc.seed)
    if nc.total_photons is not None or nc.peak_photons is not None:
        counts = noise_mod.poisson_noise(stack, nc.total_photons, nc.peak_photons, rng)
    else:
        counts = stack.copy()
    defects = noise_mod.DetectorDefects(tuple(map(tuple, nc.gap_rows)), tuple(map(tuple, nc.gap_cols)),
                                        nc.hot_pixels, nc.hot_counts)
    valid, hot = noise_mod.detector_valid(stack.shape[1:], defects, rng)
    return noise_mod.apply_defects(counts, valid, hot, nc.hot_counts), valid, hot


@dataclass(frozen=True)
class PreparedScan:
    """Everything of a configured scan except the patterns (see :func:`prepare_scan`)."""

    reflection: object
    geometry: BraggGeometry
    frame: GridFrame
    spacing_m: tuple[float, float, float]
    sample: Sample
    oversampling: dict[str, float]


def prepare_scan(config: SimulationConfig) -> PreparedScan:
    """Reflection constants, geometry, grid, sample and sampling checks of ``config`` (no TTE yet)."""
    from dynbcdi.materials import load_crystal, reflection_constants

    rc = config.reflection
    refl = reflection_constants(rc.material, rc.hkl, rc.energy_eV, lattice_a_m=rc.lattice_a_m,
                                lattice_c_m=rc.lattice_c_m, temperature_K=rc.temperature_K)
    crystal = load_crystal(rc.material, lattice_a_m=rc.lattice_a_m, lattice_c_m=rc.lattice_c_m)
    geometry = build_geometry(config.geometry, refl)
    frame = geometry.grid_frame()
    dy, dx = geometry.transverse_spacing_m()
    spacing = (config.grid.dz_m or dx, dy, dx)
    grid_shape = (config.grid.nz, *geometry.detector_shape)
    sample = build_sample(config.crystal, config.deformation, crystal, rc.hkl, frame.to_grid(geometry.h),
                          grid_shape, spacing)
    ratios = check_sampling(geometry, frame, sample.s, spacing)
    return PreparedScan(refl, geometry, frame, spacing, sample, ratios)


def simulate_dataset(config: SimulationConfig, device: str | torch.device = "cpu",
                     progress: Progress | bool | None = None, comm: Communicator | None = None) -> Dataset:
    """Simulate the configured rocking scan; returns a :class:`~dynbcdi.io.Dataset`.

    intensity (N, rows, cols): Poisson photon counts (integer-valued floats) if the noise config sets
    a photon count, else the noise-free TTE patterns |F⊥Eh|² (incident amplitude 1). Defective pixels
    are flagged in ``valid`` (rows, cols). truth: S (Z, Y, X) complex on the grid. metadata: the
    config, oversampling ratios, predicted refraction shift (rad, polyhedral crystals), timing, the
    hot-pixel map and the noise-free stacks ``intensity_<model>`` (float32) of the dynamical and the
    requested kinematic models. progress: True for tqdm bars, or a callable (done, total).
    comm: split the angles over the ranks of a :mod:`dynbcdi.distributed` communicator (every rank
    returns the same dataset; None = one process).
    """
    p = prepare_scan(config)
    cdtype = np.complex64 if config.model.precision == "single" else np.complex128
    truth = p.sample.crystal_function(cdtype)
    S = torch.as_tensor(truth, device=torch.device(device))
    dq = p.geometry.dq_grid(p.frame)
    logger.info("simulating %s: grid %s, spacing %s nm, %d angles on %s", config.name, truth.shape,
                tuple(round(d * 1e9, 3) for d in p.spacing_m), dq.shape[0], device)
    stacks, timings = {}, {}
    batch = stack_batch_size(config.model.batch_size, dq.shape[0], S.shape[1:], S.dtype)
    for name, model in _models(config, p.geometry, p.reflection, p.spacing_m, p.frame).items():
        t0 = time.perf_counter()
        if comm is None:
            stacks[name] = compute_stack(model, S, dq, batch, progress, label=name)
        else:
            stacks[name] = sharded_stack(comm, model, S, dq, batch, progress, label=name)
        timings[f"time_{name}_s"] = time.perf_counter() - t0
    intensity, valid, hot = _apply_noise(config, stacks["dynamical"])
    shift = _predicted_shift(p.sample, p.spacing_m, p.geometry, p.frame, p.reflection)
    metadata = {"name": config.name, "config": to_dict(config), "device": str(device), **p.oversampling,
                **timings, "predicted_refraction_shift_rad": shift, "hot_pixels": hot}
    metadata.update({f"intensity_{k}": v.astype(np.float32) for k, v in stacks.items()})
    return Dataset(intensity=intensity, valid=valid, geometry=p.geometry, reflection=p.reflection,
                   spacing_m=p.spacing_m, truth=truth, metadata=metadata)


def rocking_curve(stack: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Total intensity per rocking angle, (N,), summed over the (valid) pixels of a (N, rows, cols) stack."""
    if valid is None:
        return stack.sum(axis=(1, 2))
    return np.where(valid, stack, 0.0).sum(axis=(1, 2))
