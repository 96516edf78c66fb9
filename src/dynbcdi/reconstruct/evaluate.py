"""Goodness of fit of a reconstruction: loss, Poisson deviance and their noise floors, on the fitted
and on the held-out ("free") pixels.

The *floor* of a statistic is its expected value if the fitted model were the truth and the data
Poisson samples of it: E[(√(D + f) − √I)²] and E[2(I ln(I/D) − (I − D))], I ~ Poisson(D), per
pixel (:func:`dynbcdi.reconstruct.loss.expected_poisson_terms`), averaged exactly like the loss
(mean over a frame's pixels, then mean over frames). A fit at its floor has explained everything
but the counting noise; a free-pixel statistic well above the fitted one shows over-fitting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dynbcdi.distributed.comm import Communicator, SingleProcess
from dynbcdi.reconstruct.loss import amplitude_loss, expected_poisson_terms, poisson_deviance

__all__ = ["FitStatistics", "fit_statistics", "free_pixel_mask"]

_COLUMNS = ("loss_fit", "floor_fit", "deviance_fit", "deviance_floor_fit",
            "loss_free", "floor_free", "deviance_free", "deviance_floor_free", "pixels_fit", "pixels_free")


@dataclass(frozen=True)
class FitStatistics:
    """Fit quality of a model on the scan (per pixel, averaged like the loss).

    loss_*: amplitude loss (√D − √I)²; floor_*: its Poisson floor; deviance_*: Poisson deviance;
    deviance_floor_*: its floor (≈ 1 for large counts); *_fit on the fitted pixels, *_free on the
    held-out ones (NaN without free pixels). per_frame: each column as an (N,) array (NaN where a
    frame has no such pixel).
    """

    loss_fit: float
    floor_fit: float
    deviance_fit: float
    deviance_floor_fit: float
    loss_free: float
    floor_free: float
    deviance_free: float
    deviance_floor_free: float
    per_frame: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Fitted amplitude loss / its Poisson floor (1 = fitted down to the counting noise)."""
        return self.loss_fit / self.floor_fit

    def as_dict(self) -> dict[str, float]:
        """The scalar statistics and the ratio by name."""
        names = ("loss_fit", "floor_fit", "deviance_fit", "deviance_floor_fit", "loss_free", "floor_free",
                 "deviance_free", "deviance_floor_free")
        return {**{n: getattr(self, n) for n in names}, "ratio": self.ratio}


def free_pixel_mask(valid: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A random ``fraction`` of the valid (frame, row, col) data points, (N, R, C) bool (seeded)."""
    if fraction <= 0:
        return np.zeros(valid.shape, bool)
    draw = np.random.default_rng(seed).random(valid.shape)
    return valid & (draw < fraction)


@torch.no_grad()
def fit_statistics(model, S: torch.Tensor, intensity: torch.Tensor, fit_valid: torch.Tensor,
                   free_valid: torch.Tensor, chunk_size: int, sqrt_floor: float = 1e-6,
                   comm: Communicator | None = None) -> FitStatistics:
    """Evaluate ``model(S, idx)`` (expected photons, (B, R, C)) on all frames in chunks.

    intensity : (N, R, C) photons; fit_valid, free_valid : (N, R, C) bool. comm: each rank does its
    shard of the frames, the per-frame table is all-reduced.
    """
    comm = comm if comm is not None else SingleProcess()
    n = intensity.shape[0]
    table = torch.zeros((n, len(_COLUMNS)), dtype=torch.float64, device=intensity.device)
    local = comm.shard(torch.arange(n, device=intensity.device))
    for idx in torch.split(local, chunk_size) if local.numel() else ():
        D = model(S, idx)
        amp_e, dev_e = expected_poisson_terms(D, sqrt_floor)
        I = intensity[idx]
        cols = []
        for mask in (fit_valid[idx], free_valid[idx]):
            count = mask.sum(dim=(-2, -1)).clamp(min=1)
            cols += [amplitude_loss(D, I, mask, sqrt_floor),
                     torch.where(mask, amp_e, 0).sum(dim=(-2, -1)) / count,
                     poisson_deviance(D, I, mask, sqrt_floor),
                     torch.where(mask, dev_e, 0).sum(dim=(-2, -1)) / count]
        cols += [fit_valid[idx].sum(dim=(-2, -1)), free_valid[idx].sum(dim=(-2, -1))]
        table[idx] = torch.stack([c.to(torch.float64) for c in cols], dim=1)
    if comm.world_size > 1:
        comm.all_reduce_sum([table])
    t = table.cpu().numpy()
    per_frame = {}
    for j, name in enumerate(_COLUMNS[:8]):
        pixels = t[:, 8] if name.endswith("fit") else t[:, 9]
        per_frame[name] = np.where(pixels > 0, t[:, j], np.nan)
    means = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in per_frame.items()}
    return FitStatistics(**means, per_frame=per_frame)
