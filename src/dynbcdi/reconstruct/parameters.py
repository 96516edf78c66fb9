"""The optimised variables of the dynamical reconstruction and their initialisation.

Parametrisation (documented choices):

- amplitude s(r) ≥ 0 is a plain tensor kept non-negative by *projection* (clamped to 0 after each
  Adam step) rather than a softplus: a softplus cannot represent s = 0 exactly, and the support
  (where s is allowed to be non-zero) is applied as a hard mask, s = 0 and frozen outside it;
- phase φ(r) = −h·u in rad is optimised directly (not Re/Im of S), so it stays continuous and never
  wraps; S = s·e^{iφ};
- the intensity scale, rocking offsets and the other measurement terms are parameters of
  :class:`dynbcdi.forward.measurement.MeasurementModel` (see :mod:`dynbcdi.forward.terms`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dynbcdi.analysis import unwrap_phase
from dynbcdi.distributed.comm import Communicator, SingleProcess
from dynbcdi.distributed.parallel import reduce_sums

ForwardFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class CrystalParameters:
    """Leaf tensors of the crystal (all on one device); the measurement terms (scale, rocking
    offsets, ...) live in :class:`dynbcdi.forward.measurement.MeasurementModel`.

    s : (Z, Y, X) real, amplitude (≥ 0, normalised to max 1 at initialisation).
    phase : (Z, Y, X) real, rad, continuous.
    support : (Z, Y, X) bool, not optimised; s is 0 and frozen where False.
    """

    s: torch.Tensor
    phase: torch.Tensor
    support: torch.Tensor

    def crystal(self) -> torch.Tensor:
        """S = s·e^{iφ} on the support, (Z, Y, X) complex (differentiable)."""
        s = torch.where(self.support, self.s, torch.zeros_like(self.s))
        return torch.polar(s, self.phase)

    def leaves(self) -> dict[str, torch.Tensor]:
        """Optimised tensors by name."""
        return {"phase": self.phase, "s": self.s}

    @torch.no_grad()
    def project(self) -> None:
        """Enforce s ≥ 0 and s = 0 outside the support (in place)."""
        self.s.clamp_(min=0.0)
        self.s.masked_fill_(~self.support, 0.0)

    def snapshot(self) -> dict[str, torch.Tensor]:
        """Detached copies of all tensors (for roll-back and checkpoints)."""
        out = {k: v.detach().clone() for k, v in self.leaves().items()}
        out["support"] = self.support.clone()
        return out

    @torch.no_grad()
    def restore(self, snap: dict[str, torch.Tensor]) -> None:
        """Copy a :meth:`snapshot` back in place (optimiser references stay valid)."""
        for name, tensor in self.leaves().items():
            tensor.copy_(snap[name])
        self.support.copy_(snap["support"])


def initial_support(init: np.ndarray, threshold: float) -> np.ndarray:
    """Support of an initial object: |init| > threshold · max|init|. init (Z, Y, X) -> bool."""
    amp = np.abs(init)
    return amp > threshold * amp.max()


def unwrapped_phase(init: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Continuous phase (rad) of ``init`` on ``support`` (skimage 3-D unwrapping), 0 outside.

    init : (Z, Y, X) complex; support : (Z, Y, X) bool. The 2π·k offset of the result is arbitrary
    and harmless (the diffraction pattern does not depend on it).
    """
    return np.where(support, unwrap_phase(np.angle(init), support), 0.0)


def init_parameters(init: np.ndarray, support_threshold: float,
                    device: torch.device, real_dtype: torch.dtype) -> CrystalParameters:
    """Parameters from an initial complex object on the grid (kinematic result or user object).

    init : (Z, Y, X) complex. Amplitude normalised to max 1 (the scale absorbs the rest), phase
    unwrapped on the support.
    """
    support = initial_support(init, support_threshold)
    amp = np.where(support, np.abs(init), 0.0)
    amp = amp / amp.max()
    phase = unwrapped_phase(init, support)

    def leaf(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=real_dtype, device=device, requires_grad=True)

    return CrystalParameters(s=leaf(amp), phase=leaf(phase), support=torch.tensor(support, device=device))


@torch.no_grad()
def estimate_log_scale(model: ForwardFn, S: torch.Tensor, n_angles: int, intensity: torch.Tensor,
                       valid: torch.Tensor, chunk_size: int, background: float = 0.0,
                       comm: Communicator | None = None) -> float:
    """ln(Σ_valid (I − b) / Σ_valid D) over the scan, D = ``model(S, idx)`` the unscaled model
    intensity, b the background (photons/pixel), in chunks of angle indices.

    S : (Z, Y, X) complex; intensity : (N, R, C); valid : (N, R, C) bool. Raises ``ValueError``
    when the initial model gives no intensity on the valid pixels. comm : sums over this rank's
    shard of the angles, all-reduced (None = one process, all angles).
    """
    model_sum, data_sum, count = 0.0, 0.0, 0.0
    comm = comm if comm is not None else SingleProcess()
    local = comm.shard(torch.arange(n_angles, device=intensity.device))
    for idx in torch.split(local, chunk_size) if local.numel() else ():
        D = model(S, idx)
        model_sum += float(torch.where(valid[idx], D, torch.zeros_like(D)).sum())
        data_sum += float(torch.where(valid[idx], intensity[idx], torch.zeros_like(D)).sum())
        count += float(valid[idx].sum())
    model_sum, data_sum, count = reduce_sums(comm, model_sum, data_sum, count)
    if not np.isfinite(model_sum) or model_sum <= 0:
        raise ValueError(f"initial object gives model intensity {model_sum} on the valid pixels")
    signal = data_sum - background * count
    if signal <= 0:
        raise ValueError(f"background {background} photons/pixel exceeds the mean valid intensity")
    return float(np.log(signal / model_sum))
