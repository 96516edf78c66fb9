"""Loss terms of the dynamical reconstruction (paper Eq. 4, PHYSICS.md §Reconstruction).

Pure tensor kernels: no state, one code path for every device.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.special
import scipy.stats
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


def poisson_deviance(model_intensity: torch.Tensor, intensity: torch.Tensor, valid: torch.Tensor,
                     floor: float = 1e-6) -> torch.Tensor:
    """Per-pattern Poisson deviance per pixel (1/M_j) Σ_valid 2[I ln(I/D) − (I − D)] (0·ln 0 = 0).

    Shapes and units as :func:`amplitude_loss`. For a correct model and large counts its expected
    value is 1 per pixel (:func:`expected_poisson_terms` gives it for any D). Returns (B,) real.
    """
    valid = valid.expand_as(intensity)
    D = model_intensity + floor
    dev = 2 * (torch.xlogy(intensity, intensity) - torch.xlogy(intensity, D) - (intensity - D))
    total = torch.where(valid, dev, torch.zeros_like(dev)).sum(dim=(-2, -1))
    return total / valid.sum(dim=(-2, -1)).clamp(min=1)


_TABLE_MAX, _TABLE_STEP = 50.0, 0.005  # exact Poisson sums below, asymptotic series above


@functools.lru_cache(maxsize=1)
def _poisson_tables() -> tuple[np.ndarray, np.ndarray]:
    """E[√I] and E[I ln I] for I ~ Poisson(λ) on λ = 0, 0.005, …, 50 (exact sums to λ + 40√λ + 50)."""
    lam = np.arange(0.0, _TABLE_MAX + _TABLE_STEP / 2, _TABLE_STEP)
    k = np.arange(0, int(_TABLE_MAX + 40 * np.sqrt(_TABLE_MAX) + 50))
    pmf = scipy.stats.poisson.pmf(k[None, :], lam[:, None])
    return pmf @ np.sqrt(k), pmf @ scipy.special.xlogy(k, k)


def _lookup(table: np.ndarray, lam: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(table, dtype=lam.dtype, device=lam.device)
    x = (lam.clamp(0, _TABLE_MAX) / _TABLE_STEP)
    i0 = x.floor().long().clamp(max=t.numel() - 2)
    w = x - i0
    return t[i0] * (1 - w) + t[i0 + 1] * w


def expected_poisson_terms(model_intensity: torch.Tensor, floor: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel expected amplitude loss and Poisson deviance if the model were the truth.

    E[(√(D + floor) − √I)²] and E[2(I ln(I/D) − (I − D))] with I ~ Poisson(D): exact Poisson sums
    (tabulated on D ≤ 50 photons, linear interpolation, error < 1e-6) and above 50 photons the
    asymptotic series E√I = √D (1 − 1/8D − 7/128D² − 19/1024D³) and E[dev] = 1 + 1/6D + 1/6D²
    (error < 5e-5). The amplitude loss tends to 1/4 and the deviance to 1 per pixel for large D,
    and both to 0 for D → 0. model_intensity : any shape, photons ≥ 0. Returns two tensors of its shape.
    """
    D = model_intensity.detach().clamp(min=0)
    sqrt_mean, xlogx_mean = _poisson_tables()
    big = D > _TABLE_MAX
    Dl = torch.where(big, D, torch.ones_like(D))  # series only evaluated where valid
    series_sqrt = torch.sqrt(Dl) * (1 - 1 / (8 * Dl) - 7 / (128 * Dl**2) - 19 / (1024 * Dl**3))
    e_sqrt = torch.where(big, series_sqrt, _lookup(sqrt_mean, D))
    amp = (D + floor) + D - 2 * torch.sqrt(D + floor) * e_sqrt
    dev_small = 2 * (_lookup(xlogx_mean, D) - torch.xlogy(D, D))
    dev = torch.where(big, 1 + 1 / (6 * Dl) + 1 / (6 * Dl**2), dev_small)
    return amp, dev
