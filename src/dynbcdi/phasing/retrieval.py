"""Kinematic phase retrieval of a detector-frame Bragg CDI data set (several random starts).

Array conventions (docs/CONVENTIONS.md): ``intensity[j, row, col]`` is centred (zero frequency at
index N//2 of each axis, ``fftshift`` order). The returned object is centred too: real-space
origin at index N//2, and ``|fftshift(fftn(ifftshift(obj)))|² ≈ intensity`` (kernel e^{-i q·r},
no normalisation), i.e. it lives in the real-space frame conjugate to the detector frame (a
sheared frame; see :mod:`dynbcdi.phasing.frames`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dynbcdi.phasing import operators as ops
from dynbcdi.phasing.postprocess import center_support, remove_phase_offset
from dynbcdi.phasing.recipes import Recipe, parse_recipe

logger = logging.getLogger(__name__)

_DIMS = (-3, -2, -1)


@dataclass(frozen=True)
class ProgressInfo:
    """Passed to the ``progress`` callback; return True from it to stop the run early."""

    start: int
    n_starts: int
    iteration: int
    n_iterations: int
    error: float


@dataclass
class PhasingResult:
    """Outcome of :func:`phase_retrieval` (the best start).

    Attributes
    ----------
    obj : (N, rows, cols) complex ndarray, centred, support centre of mass at the array centre,
        amplitude-weighted mean phase 0.
    support : (N, rows, cols) bool ndarray, final support (same centring as ``obj``).
    error : (n_iterations,) float ndarray, normalised Fourier amplitude error per iteration.
    final_error : amplitude error of the returned (support-projected) object.
    llk : Poisson deviance per valid pixel of the returned object (≈ 0.5–1 for Poisson noise).
    recipe : the recipe text that was run.
    seeds : seeds of every start, in order.
    start_errors : final error of every start (the minimum was kept).
    interrupted : True when the progress callback stopped the run (partial result).
    """

    obj: np.ndarray
    support: np.ndarray
    error: np.ndarray
    final_error: float
    llk: float
    recipe: str
    seeds: tuple[int, ...]
    start_errors: tuple[float, ...]
    interrupted: bool = False


def validate_data(intensity: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Check intensity (N, rows, cols) and valid ((rows, cols) or (N, rows, cols)); return arrays.

    Raises ValueError for non-3-D or non-finite/negative intensity, all-zero data, a mask that
    hides every pixel or a mask shape that does not match.
    """
    intensity = np.asarray(intensity)
    if intensity.ndim != 3 or min(intensity.shape) < 2:
        raise ValueError(f"intensity must have shape (N, rows, cols) with every size >= 2, got {intensity.shape}")
    if np.iscomplexobj(intensity) or not np.all(np.isfinite(intensity)):
        raise ValueError("intensity must be real and finite (found NaN/inf or complex values)")
    if intensity.min() < 0:
        raise ValueError(f"intensity must be >= 0, minimum is {intensity.min()}")
    valid = np.ones(intensity.shape[1:], bool) if valid is None else np.asarray(valid)
    if valid.dtype != bool:
        raise ValueError(f"valid must be a bool array, got dtype {valid.dtype}")
    if valid.shape not in (intensity.shape, intensity.shape[1:]):
        raise ValueError(f"valid shape {valid.shape} matches neither {intensity.shape} nor {intensity.shape[1:]}")
    valid3 = np.broadcast_to(valid, intensity.shape)
    if not valid3.any():
        raise ValueError("valid hides every pixel")
    if not np.any(intensity[valid3] > 0):
        raise ValueError("intensity is zero on every valid pixel")
    return intensity, valid


def phase_retrieval(
    intensity: np.ndarray,
    valid: np.ndarray | None = None,
    recipe: str | Recipe = "paper",
    n_starts: int = 1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.complex64,
    progress: Callable[[ProgressInfo], bool | None] | None = None,
    progress_every: int = 10,
) -> PhasingResult:
    """Recover the complex object from a Bragg CDI intensity by projection algorithms.

    Parameters
    ----------
    intensity : (N, rows, cols) float ≥ 0, photons, centred (zero frequency at index N//2).
    valid : (rows, cols) or (N, rows, cols) bool, False = unmeasured (floats freely); None = all.
    recipe : recipe text or preset name (see :mod:`dynbcdi.phasing.recipes`), default the paper's.
    n_starts : independent random starts; the one with the lowest final error is returned.
    seed : start k uses seed + k (torch CPU generator, so results do not depend on the device).
    device, dtype : where and in which complex precision to iterate.
    progress : called every ``progress_every`` iterations with a :class:`ProgressInfo`; a truthy
        return value stops the run and the best iterate so far is returned with ``interrupted``.
    """
    intensity, valid = validate_data(intensity, valid)
    if n_starts < 1:
        raise ValueError(f"n_starts must be >= 1, got {n_starts}")
    if dtype not in (torch.complex64, torch.complex128):
        raise ValueError(f"dtype must be torch.complex64 or torch.complex128, got {dtype}")
    parsed = recipe if isinstance(recipe, Recipe) else parse_recipe(recipe)
    real_dtype = torch.float32 if dtype == torch.complex64 else torch.float64
    data = torch.as_tensor(np.fft.ifftshift(intensity, axes=_DIMS).copy(), dtype=real_dtype, device=device)
    mask = torch.as_tensor(np.fft.ifftshift(valid, axes=tuple(range(valid.ndim))).copy(), device=device)

    best: tuple[float, ops.PhasingState] | None = None
    seeds, finals, interrupted = [], [], False
    for k in range(n_starts):
        state = _initial_state(data, mask, parsed, seed + k, dtype)
        interrupted = _run(state, parsed, _callback(progress, k, n_starts, parsed), progress_every)
        final = float(_final_metrics(state)[0])
        seeds.append(seed + k)
        finals.append(final)
        logger.info("start %d (seed %d): final amplitude error %.4g", k, seed + k, final)
        if best is None or final < best[0]:
            best = (final, state)
        if interrupted:
            break
    assert best is not None
    return _result(best[1], parsed, tuple(seeds), tuple(finals), interrupted)


def _callback(
    progress: Callable[[ProgressInfo], bool | None] | None, start: int, n_starts: int, recipe: Recipe
) -> Callable[[int, float], bool | None] | None:
    """Adapt the user's ``progress`` to the loop's (iteration, error) signature."""
    if progress is None:
        return None
    return lambda it, err: progress(ProgressInfo(start, n_starts, it, recipe.n_iterations, err))


def _initial_state(
    data: torch.Tensor, mask: torch.Tensor, recipe: Recipe, seed: int, dtype: torch.dtype
) -> ops.PhasingState:
    """Centred box support and ψ0 = P_S F⁻¹[√I e^{iφ}] with uniform random phases φ."""
    shape = data.shape
    box = torch.zeros(shape, dtype=torch.bool)
    half = [max(int(round(n * recipe.support_box)) // 2, 1) for n in shape]
    box[tuple(slice(n // 2 - h, n // 2 + h) for n, h in zip(shape, half))] = True
    support = torch.fft.ifftshift(box, dim=_DIMS).to(data.device)
    generator = torch.Generator().manual_seed(seed)
    phases = (2 * torch.pi) * torch.rand(shape, generator=generator, dtype=data.dtype).to(data.device)
    amplitude = torch.sqrt(data)
    farfield = torch.polar(torch.where(mask, amplitude, 0.0), phases).to(dtype)
    psi = torch.where(support, torch.fft.ifftn(farfield, dim=_DIMS), 0)
    errors = torch.zeros(recipe.n_iterations, dtype=dtype.to_real(), device=data.device)
    return ops.PhasingState(psi=psi, support=support, amplitude=amplitude.to(dtype.to_real()), valid=mask,
                            intensity=data, errors=errors)


def _run(
    state: ops.PhasingState, recipe: Recipe, callback: Callable[[int, float], bool | None] | None, progress_every: int
) -> bool:
    """Run every step of the recipe on ``state``; return True when the callback asked to stop."""
    n_total = recipe.n_iterations
    for step in recipe.steps:
        params = dict(step.params)
        axis = int(params.get("detwin_axis", -1))
        for _ in range(step.count):
            full_support = state.support
            if axis >= 0:
                state.support = ops.half_support(full_support, axis)
            if step.name == "er":
                ops.er_step(state)
            elif step.name == "hio":
                ops.hio_step(state, params["beta"])
            elif step.name == "raar":
                ops.raar_step(state, params["beta"])
            else:
                ops.ml_step(state)
            if axis >= 0:
                state.support = full_support
            it = state.iteration - 1
            sw = recipe.shrinkwrap
            if sw is not None and sw.applies_after(it):
                ops.shrink_wrap(state, sw.sigma_at(it, n_total), sw.threshold)
            if callback is not None and (state.iteration % progress_every == 0 or state.iteration == n_total):
                if callback(state.iteration, float(state.error_history()[-1])):
                    logger.warning("phase retrieval stopped at iteration %d of %d", state.iteration, n_total)
                    return True
        if step.name != "ml":
            state.ml_direction = state.ml_gradient = None
    return False


def _final_metrics(state: ops.PhasingState) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitude error and Poisson deviance of P_S ψ (what is returned)."""
    farfield = torch.fft.fftn(torch.where(state.support, state.psi, 0), dim=_DIMS)
    return ops.amplitude_error(farfield, state), ops.poisson_nll(farfield, state)


def _result(
    state: ops.PhasingState, recipe: Recipe, seeds: tuple[int, ...], finals: tuple[float, ...], interrupted: bool
) -> PhasingResult:
    error, llk = _final_metrics(state)
    obj = torch.fft.fftshift(torch.where(state.support, state.psi, 0), dim=_DIMS).cpu().numpy()
    support = torch.fft.fftshift(state.support, dim=_DIMS).cpu().numpy()
    obj, support = center_support(obj, support)
    history = state.error_history().cpu().numpy()
    return PhasingResult(
        obj=remove_phase_offset(obj, support),
        support=support,
        error=history.astype(np.float64),
        final_error=float(error),
        llk=float(llk),
        recipe=recipe.text,
        seeds=seeds,
        start_errors=finals,
        interrupted=interrupted,
    )
