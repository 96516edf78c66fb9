"""The optimised variables of the dynamical reconstruction and their initialisation.

Parametrisation (documented choices):

- amplitude s(r) ≥ 0 is a plain tensor kept non-negative by *projection* (clamped to 0 after each
  Adam step) rather than a softplus: a softplus cannot represent s = 0 exactly, and the support
  (where s is allowed to be non-zero) is applied as a hard mask, s = 0 and frozen outside it;
- phase φ(r) = −h·u in rad is optimised directly (not Re/Im of S), so it stays continuous and never
  wraps; S = s·e^{iφ};
- the intensity scale is optimised as its natural logarithm (positive, scale-free steps);
- optional per-angle rocking offsets δ_j are in units of the local rocking step: the effective
  momentum transfer is Δq_j + δ_j·(∂Δq/∂j), with ∂Δq/∂j the central difference of the scan (N ≥ 2).
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
    """Leaf tensors of the optimisation (all on one device).

    s : (Z, Y, X) real, amplitude (≥ 0, normalised to max 1 at initialisation).
    phase : (Z, Y, X) real, rad, continuous.
    log_scale : 0-d real, ln of the photons-per-model-unit intensity scale.
    offsets : (N,) real, rocking offsets in rocking steps (zeros unless refined).
    support : (Z, Y, X) bool, not optimised; s is 0 and frozen where False.
    """

    s: torch.Tensor
    phase: torch.Tensor
    log_scale: torch.Tensor
    offsets: torch.Tensor
    support: torch.Tensor

    def crystal(self) -> torch.Tensor:
        """S = s·e^{iφ} on the support, (Z, Y, X) complex (differentiable)."""
        s = torch.where(self.support, self.s, torch.zeros_like(self.s))
        return torch.polar(s, self.phase)

    def leaves(self) -> dict[str, torch.Tensor]:
        """Optimised tensors by name (the order of the Adam parameter groups)."""
        return {"phase": self.phase, "s": self.s, "log_scale": self.log_scale, "offsets": self.offsets}

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


def effective_dq(dq: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Δq_j + δ_j·∂Δq/∂j. dq : (N, 3) rad/m grid frame, offsets : (N,) rocking steps -> (N, 3)."""
    if dq.shape[0] < 2:
        return dq
    step = torch.gradient(dq, dim=0)[0]
    return dq + offsets[:, None].to(dq.dtype) * step


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


def init_parameters(init: np.ndarray, n_angles: int, support_threshold: float,
                    device: torch.device, real_dtype: torch.dtype) -> CrystalParameters:
    """Parameters from an initial complex object on the grid (kinematic result or user object).

    init : (Z, Y, X) complex. Amplitude normalised to max 1 (the scale absorbs the rest), phase
    unwrapped on the support, log_scale = 0 (set later by :func:`estimate_log_scale`).
    """
    support = initial_support(init, support_threshold)
    amp = np.where(support, np.abs(init), 0.0)
    amp = amp / amp.max()
    phase = unwrapped_phase(init, support)

    def leaf(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=real_dtype, device=device, requires_grad=True)

    return CrystalParameters(
        s=leaf(amp), phase=leaf(phase), log_scale=leaf(np.zeros(())),
        offsets=leaf(np.zeros(n_angles)),
        support=torch.tensor(support, device=device))


@torch.no_grad()
def estimate_log_scale(model: ForwardFn, params: CrystalParameters, dq: torch.Tensor,
                       intensity: torch.Tensor, valid: torch.Tensor, chunk_size: int,
                       comm: Communicator | None = None) -> float:
    """ln(Σ_valid I / Σ_valid D) over the scan, D the unscaled model intensity, in chunks.

    dq : (N, 3) rad/m; intensity : (N, R, C); valid : (N, R, C) bool. Raises ``ValueError`` when the
    initial model gives no intensity on the valid pixels. comm : sums over this rank's shard of the
    angles, all-reduced (None = one process, all angles).
    """
    S = params.crystal()
    model_sum, data_sum = 0.0, 0.0
    comm = comm if comm is not None else SingleProcess()
    local = comm.shard(torch.arange(dq.shape[0], device=dq.device))
    for idx in torch.split(local, chunk_size) if local.numel() else ():
        D = model(S, dq[idx])
        model_sum += float(torch.where(valid[idx], D, torch.zeros_like(D)).sum())
        data_sum += float(torch.where(valid[idx], intensity[idx], torch.zeros_like(D)).sum())
    model_sum, data_sum = reduce_sums(comm, model_sum, data_sum)
    if not np.isfinite(model_sum) or model_sum <= 0:
        raise ValueError(f"initial object gives model intensity {model_sum} on the valid pixels")
    return float(np.log(data_sum / model_sum))
