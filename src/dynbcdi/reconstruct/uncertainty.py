"""Per-voxel uncertainty of a dynamical reconstruction from repeats with independent starts.

A single reconstruction gives no error bar. :func:`repeat_dynamical` runs the truth-free chain
several times with independent seeds — the kinematic phasing's random starts (``rephase``), hence
the start candidates built from it, and the mini-batch order of the dynamical fit — and
:func:`uncertainty_map` aligns the results onto the first (translation, twin, global phase,
:func:`dynbcdi.analysis.align_to`) and returns, per voxel, the mean and the standard deviation
over the repeats of the displacement u_h = −φ/|h| and of the strain ε_h = ĥ·∇u_h.

The phase of repeat k is the first one's unwrapped phase plus the wrapped difference
angle(S_k · conj(S_1)) (|difference| < π), so repeats agreeing to within a fraction of a radian are
not split by a 2π unwrapping ambiguity. The spread measures how well the data and the optimiser
fix each voxel (the reproducibility of the chain); it is not the error against the truth, but the
test (tests/reconstruct/test_uncertainty.py) shows it is largest where that error is largest.

Arrays are indexed (z, y, x); ``spacing_m = (dz, dy, dx)`` m; ĥ as (x, y, z) grid-frame components.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dynbcdi.analysis import align_to, displacement, strain, unwrap_phase
from dynbcdi.analysis.strain import check_support

__all__ = ["UncertaintyMap", "repeat_dynamical", "repeat_uncertainty", "uncertainty_map"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UncertaintyMap:
    """Mean and spread over repeated reconstructions, NaN outside ``support``.

    displacement_mean_m, displacement_std_m : (Z, Y, X) u_h and its standard deviation, m.
    strain_mean, strain_std : (Z, Y, X) ε_h and its standard deviation (NaN where the strain
        stencil leaves the support).
    amplitude_mean : (Z, Y, X) mean |S| of the aligned repeats (arbitrary units).
    support : (Z, Y, X) bool, the first repeat's support (where the maps are defined).
    shifts_vox : (R, 3) translations (z, y, x) applied to each repeat (the first: zeros);
    twins : (R,) bool, repeats replaced by their twin; correlations : (R,) complex correlation with
        the first after alignment, in [0, 1].
    """

    displacement_mean_m: np.ndarray
    displacement_std_m: np.ndarray
    strain_mean: np.ndarray
    strain_std: np.ndarray
    amplitude_mean: np.ndarray
    support: np.ndarray
    shifts_vox: np.ndarray
    twins: np.ndarray
    correlations: np.ndarray

    @property
    def repeats(self) -> int:
        """Number of reconstructions combined."""
        return int(self.twins.size)

    def as_maps(self) -> dict[str, np.ndarray]:
        """The four (Z, Y, X) maps by name (for :func:`dynbcdi.io.save_result`'s ``maps``)."""
        return {"displacement_mean_m": self.displacement_mean_m, "displacement_std_m": self.displacement_std_m,
                "strain_mean": self.strain_mean, "strain_std": self.strain_std}

    def summary(self) -> dict[str, float]:
        """Repeats, median spreads inside the support (displacement in pm, strain) and the lowest
        correlation of a repeat with the first; for logs and reports."""
        inside = self.support
        return {"repeats": self.repeats,
                "displacement_std_median_pm": float(np.nanmedian(self.displacement_std_m[inside]) * 1e12),
                "strain_std_median": float(np.nanmedian(self.strain_std[inside])),
                "min_correlation": float(np.min(self.correlations))}


def uncertainty_map(objects: Sequence[np.ndarray], h_norm: float, spacing_m: Any, h_dir_grid: Any,
                    support: np.ndarray | None = None) -> UncertaintyMap:
    """Align ``objects`` onto the first and return the per-voxel mean and spread (module docstring).

    objects : ≥ 2 (Z, Y, X) complex crystal functions of the same crystal (same grid).
    h_norm : |h| rad/m. spacing_m : (dz, dy, dx) m. h_dir_grid : ĥ (x, y, z), grid frame.
    support : (Z, Y, X) bool where the maps are defined (default: |S_1| > 0.1 max|S_1|).
    The standard deviation uses ddof = 1 (the sample estimate over the repeats).
    """
    if len(objects) < 2:
        raise ValueError(f"an uncertainty map needs at least 2 reconstructions, got {len(objects)}")
    ref = np.asarray(objects[0]).astype(np.complex128)
    if ref.ndim != 3:
        raise ValueError(f"objects must be (Z, Y, X) complex arrays, got shape {ref.shape}")
    amp = np.abs(ref)
    support = amp > 0.1 * amp.max() if support is None else check_support(support, ref.shape)
    if not support.any():
        raise ValueError("the support of the first reconstruction is empty")
    aligned, shifts, twins, corrs = [ref], [np.zeros(3)], [False], [1.0]
    for obj in objects[1:]:
        if np.shape(obj) != ref.shape:
            raise ValueError(f"all objects must have the shape {ref.shape}, got {np.shape(obj)}")
        al = align_to(np.asarray(obj).astype(np.complex128), ref, support=support)
        aligned.append(al.obj)
        shifts.append(np.asarray(al.shift_vox, float))
        twins.append(al.twin)
        corrs.append(al.correlation)
    phase0 = unwrap_phase(np.angle(ref), support)
    phases = np.stack([phase0 + np.angle(o * np.conj(ref)) for o in aligned])
    u = np.stack([displacement(p, h_norm) for p in phases])
    eps = np.stack([strain(np.where(support, uk, 0.0), spacing_m, h_dir_grid, support) for uk in u])
    out = np.where(support, 1.0, np.nan)
    return UncertaintyMap(
        displacement_mean_m=u.mean(axis=0) * out, displacement_std_m=u.std(axis=0, ddof=1) * out,
        strain_mean=eps.mean(axis=0), strain_std=eps.std(axis=0, ddof=1),
        amplitude_mean=np.mean([np.abs(o) for o in aligned], axis=0), support=support,
        shifts_vox=np.array(shifts), twins=np.array(twins), correlations=np.array(corrs))


def repeat_dynamical(dataset: Any, repeats: int, *, seed: int = 0, config: Any = None,
                     kinematic_grid: np.ndarray | None = None, start: Any = None, recipe: str = "paper",
                     n_starts: int = 4, device: str = "cpu", model: Any = None, callback: Any = None,
                     on_repeat: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``repeats`` truth-free dynamical reconstructions of ``dataset`` with seeds seed, seed+1, ….

    Repeat k seeds the dynamical mini-batch order (``config.seed``) and, unless ``kinematic_grid``
    is given (then every repeat starts from that kinematic result), the kinematic phasing
    (:func:`dynbcdi.phasing.phase_retrieval`, ``n_starts`` random starts, ``recipe``), so the start
    candidates differ too. start : :class:`~dynbcdi.reconstruct.pipeline.StartConfig` of the start
    search, or "as-is" (each repeat starts from ``kinematic_grid`` itself, no search).
    config : :class:`ReconstructionConfig` (default :func:`~dynbcdi.reconstruct.pipeline.default_config`
    for the dataset). model : forward model
    (default the dataset's TTE model). callback : as :func:`dynbcdi.reconstruct.reconstruct`; a
    repeat that it stops (or Ctrl-C interrupts) ends the series and is left out. on_repeat(k, result) is
    called after each repeat (progress, saving). Returns the
    :class:`~dynbcdi.reconstruct.ReconstructionResult` of each repeat, in order.
    """
    from dynbcdi.phasing import phase_retrieval
    from dynbcdi.reconstruct.optimizer import reconstruct
    from dynbcdi.reconstruct.pipeline import (default_config, dynamical_from_kinematic, forward_model,
                                              kinematic_on_grid, rocking_step_rad)

    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    config = config or default_config(measured=dataset.truth is None, device=device)
    model = model or forward_model(dataset)
    results = []
    for k in range(repeats):
        kin = kinematic_grid
        if kin is None:
            phasing = phase_retrieval(dataset.intensity, dataset.valid, recipe=recipe, n_starts=n_starts,
                                      seed=seed + k, device=device)
            kin = kinematic_on_grid(dataset, phasing)
        if start == "as-is":  # every repeat from the given object itself: only the mini-batch order differs
            res = reconstruct(dataset.intensity, dataset.valid, dataset.geometry.dq_grid(), model, kin,
                              config.replace(seed=seed + k), callback=callback,
                              rocking_step_rad=rocking_step_rad(dataset.geometry))
        else:
            res = dynamical_from_kinematic(dataset, kin, config.replace(seed=seed + k), model=model, start=start,
                                           callback=callback)
        log.info("uncertainty repeat %d/%d: %d epochs, final loss %.4g", k + 1, repeats, res.epochs,
                 res.history.loss[-1])
        if res.interrupted or res.stopped_reason == "callback":
            break
        results.append(res)
        if on_repeat is not None:
            on_repeat(k, res)
    return results


def repeat_uncertainty(dataset: Any, first: Any, kinematic_grid: np.ndarray, config: Any, repeats: int, *,
                       model: Any, start: Any = None, callback: Any = None,
                       on_repeat: Callable[[int, Any], None] | None = None) -> UncertaintyMap:
    """The uncertainty map over a finished reconstruction and ``repeats`` − 1 more from independent starts.

    first : the :class:`~dynbcdi.reconstruct.ReconstructionResult` of ``config`` (seed s) started from
    ``kinematic_grid`` ((Z, Y, X) complex, grid frame); the further runs are :func:`repeat_dynamical`'s
    with seeds s + 1, … and the same ``start`` (a StartConfig, None for the dataset's default, or
    "as-is"), ``model`` and ``callback``. The map is defined on ``first.support`` and aligned onto
    ``first`` (:func:`uncertainty_map`). A repeat that is interrupted (Ctrl-C, or stopped by ``callback``)
    raises KeyboardInterrupt: a map over fewer runs than asked is not returned.
    """
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 2:
        raise ValueError(f"an uncertainty map needs repeats >= 2, got {repeats!r}")
    more = repeat_dynamical(dataset, repeats - 1, seed=config.seed + 1, config=config, kinematic_grid=kinematic_grid,
                            start=start, model=model, callback=callback, on_repeat=on_repeat)
    if len(more) < repeats - 1:
        raise KeyboardInterrupt(f"repeat {len(more) + 2} of {repeats} was interrupted")
    h = dataset.geometry.grid_frame().to_grid(dataset.geometry.h)
    return uncertainty_map([first.S] + [m.S for m in more], dataset.reflection.h_norm, dataset.spacing_m,
                           h / np.linalg.norm(h), support=first.support)
