"""Loss terms of the dynamical reconstruction (paper Eq. 4, PHYSICS.md §Reconstruction).

Pure tensor kernels: no state, one code path for every device.
"""

from __future__ import annotations

import torch


def amplitude_loss(model_intensity: torch.Tensor, intensity: torch.Tensor, valid: torch.Tensor,
                   floor: float = 1e-6) -> torch.Tensor:
    """Per-pattern amplitude maximum-likelihood term ℓ_j = (1/M_j) Σ_valid (√D_j − √I_j)².

    model_intensity, intensity : (B, R, C) real, photons (D already multiplied by the scale).
    valid : (B, R, C) or (R, C) bool, True = trusted pixel; M_j = number of valid pixels of pattern j.
    floor : photons added under the square root of D, so that D = 0 has a finite gradient.
    Returns (B,) real.
    """
    valid = valid.expand_as(intensity)
    diff = torch.sqrt(model_intensity + floor) - torch.sqrt(intensity)
    total = torch.where(valid, diff * diff, torch.zeros_like(diff)).sum(dim=(-2, -1))
    return total / valid.sum(dim=(-2, -1)).clamp(min=1)


def poisson_loss(model_intensity: torch.Tensor, intensity: torch.Tensor, valid: torch.Tensor,
                 floor: float = 1e-6) -> torch.Tensor:
    """Per-pattern Poisson negative log-likelihood (1/M_j) Σ_valid (D − I ln D), constants dropped.

    Shapes and units as :func:`amplitude_loss`; ``floor`` (photons) is added to D inside the log.
    Returns (B,) real.
    """
    valid = valid.expand_as(intensity)
    nll = model_intensity - intensity * torch.log(model_intensity + floor)
    total = torch.where(valid, nll, torch.zeros_like(nll)).sum(dim=(-2, -1))
    return total / valid.sum(dim=(-2, -1)).clamp(min=1)


def atv(S: torch.Tensor, epsilon: float = 1e-8) -> torch.Tensor:
    """Adaptive total variation with p = 2, q = 1 (paper Eq. 4).

    ATV(S) = (1/Ω) Σ_r (|∇x S|² + |∇y S|² + |∇z S|² + ε)^{1/2}, forward finite differences in
    voxel units (the last plane along each axis has zero difference), Ω = number of voxels.
    S : (Z, Y, X) complex. Returns a 0-d real tensor.
    """
    sq = torch.zeros(S.shape, dtype=S.real.dtype, device=S.device)
    for dim in range(S.ndim):
        d = torch.diff(S, dim=dim)
        pad = [0, 0] * S.ndim
        pad[2 * (S.ndim - 1 - dim) + 1] = 1
        sq = sq + torch.nn.functional.pad(d.real**2 + d.imag**2, pad)
    return torch.sqrt(sq + epsilon).mean()
