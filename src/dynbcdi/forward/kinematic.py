"""Kinematic forward models in the detector frame of the TTE solver (PHYSICS.md limit 1).

- :class:`KinematicModel`: ``Eh = i ah C χh Σ_z S e^{iΔq·r} dz`` with ``ah = k²/(2 khz)``, the weak-
  scattering limit of the Takagi–Taupin equations (no refraction, absorption, drift or depletion).
  It is exactly the weak-coupling limit of the default TTE solver (Strang, one step per voxel,
  coupling at the voxel centres). With ``voxel_form_factor=True`` the sum is multiplied by
  sinc(Δq_z dz/2) (sinc x = sin x / x): the exact limit of the piecewise-constant voxel model, to
  which the TTE solver converges with sub-steps or ``integrator="rk4"``.
- :class:`RefractionKinematicModel`: the TTE with the back-coupling χh̄ term removed. E0 sees only χ0
  (refraction, absorption) and its drift, no depletion; Eh is first order in χh and is also
  refracted, absorbed and drifted on its way to the exit.

Positions ``r`` use the voxel-centre grid of :mod:`.tte` (origin at index ``(Z//2, Y//2, X//2)``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import TwoBeamModel
from .tte import TTEModel, _check_inputs, _unit, as_dq, check_finite

__all__ = ["KinematicModel", "RefractionKinematicModel", "kinematic_exit_waves"]


def kinematic_exit_waves(S: torch.Tensor, spacing: Any, wavelength: float, kh_dir: Any, chih: complex,
                         polarization: float, dq: Any, voxel_form_factor: bool = False) -> torch.Tensor:
    """Kinematic exit waves ``(B, Y, X)`` complex (dtype of S).

    ``S`` (Z, Y, X) complex; ``spacing`` (dz, dy, dx) m; ``wavelength`` m; ``kh_dir`` grid-frame
    (x, y, z) direction of kh; ``chih`` χh; ``polarization`` C; ``dq`` (B, 3) rad/m (x, y, z).
    Cost: one (B, Z)×(Z, Y·X) matrix product. A NaN/Inf voxel of S is a ValueError (as in the TTE).
    """
    sp = _check_inputs(S, spacing, float(wavelength), "strang", 1)
    check_finite(S)  # as the TTE model: a NaN voxel must not turn into NaN patterns silently
    uh = _unit(kh_dir, "kh_dir")
    dq = as_dq(dq, S.device)
    dz, dy, dx = sp
    Z, Y, X = S.shape
    ah = (2 * math.pi / wavelength) / (2 * uh[2])

    def coord(n: int, d: float) -> torch.Tensor:
        return (torch.arange(n, dtype=torch.float64, device=S.device) - n // 2) * d

    pz = torch.exp(1j * dq[:, 2:3] * coord(Z, dz))  # (B, Z)
    if voxel_form_factor:
        pz = pz * torch.sinc(dq[:, 2:3] * dz / (2 * math.pi))  # torch.sinc(x) = sin(πx)/(πx)
    amp = (1j * ah * polarization * complex(chih) * dz) * pz.to(S.dtype)
    Eh = (amp @ S.reshape(Z, Y * X)).reshape(-1, Y, X)
    pxy = dq[:, 0, None, None] * coord(X, dx) + dq[:, 1, None, None] * coord(Y, dy)[:, None]
    return Eh * torch.exp(1j * pxy).to(S.dtype)


class KinematicModel(TwoBeamModel):
    """Kinematic model with the TTEModel constructor (unused arguments are accepted for symmetry).

    ``voxel_form_factor`` (default False): multiply by sinc(Δq_z dz/2), see the module doc.
    """

    def __init__(self, spacing_m: Any, wavelength_m: float, k0_dir: Any, kh_dir: Any, chi0: complex,
                 chih: complex, chihbar: complex, polarization: float, voxel_form_factor: bool = False,
                 **unused: Any) -> None:
        super().__init__()
        self._tte = TTEModel(spacing_m, wavelength_m, k0_dir, kh_dir, chi0, chih, chihbar, polarization)
        self.voxel_form_factor = bool(voxel_form_factor)

    def exit_waves(self, S: torch.Tensor, dq: torch.Tensor) -> torch.Tensor:
        """Kinematic ``Eh`` (B, Y, X) complex; S (Z, Y, X) complex, dq (B, 3) rad/m."""
        t = self._tte
        return kinematic_exit_waves(S, t.spacing_m, t.wavelength_m, t.kh_dir, t.chih, t.polarization, dq,
                                    self.voxel_form_factor)


class RefractionKinematicModel(TTEModel):
    """Kinematic + refraction/absorption: :class:`TTEModel` with χh̄ set to 0 (no back-coupling).

    Same constructor and options as :class:`TTEModel`; the given ``chihbar`` is kept in
    ``self.chihbar_ignored`` for reference only.
    """

    def __init__(self, spacing_m: Any, wavelength_m: float, k0_dir: Any, kh_dir: Any, chi0: complex,
                 chih: complex, chihbar: complex, polarization: float, **kw: Any) -> None:
        super().__init__(spacing_m, wavelength_m, k0_dir, kh_dir, chi0, chih, 0j, polarization, **kw)
        self.chihbar_ignored = complex(chihbar)
