"""Physics limits of the TTE solver (PHYSICS.md 'Limits the solver must reproduce')."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from dynbcdi.forward.kinematic import KinematicModel, RefractionKinematicModel, kinematic_exit_waves
from dynbcdi.forward.tte import TTEModel, exit_waves

# Au (200) at 8 keV, σ polarization; realistic χ in the PHYSICS.md convention (Im χ0 > 0, Re χ0 < 0).
WAVELENGTH = 12398.42e-10 / 8000.0  # m
THETA_B = math.asin(WAVELENGTH / 4.07e-10)  # λ / (2 d200), d200 = a/2
CHI0 = -2.96e-5 + 2.97e-6j
CHIH = -1.9e-5 + 2.8e-6j
K = 2 * math.pi / WAVELENGTH
H_NORM = 2 * math.pi / (4.07e-10 / 2)


def bragg_dirs():
    """Default grid orientation: ẑ ∥ kh, k0 in the x–z plane at 2θB from kh."""
    return (-math.sin(2 * THETA_B), 0.0, math.cos(2 * THETA_B)), (0.0, 0.0, 1.0)


def strained_crystal(dtype=torch.complex128) -> torch.Tensor:
    """(12, 8, 24) box crystal with a quadratic + shear phase (sharp support, fits the wrap check)."""
    z, y, x = torch.meshgrid(torch.arange(12.0), torch.arange(8.0), torch.arange(24.0), indexing="ij")
    S = torch.exp(1j * (0.02 * (x - 8) ** 2 + 0.05 * (z - 5) * (y - 3))).to(dtype)
    mask = (z >= 2) & (z < 10) & (y >= 2) & (y < 6) & (x >= 4) & (x < 12)
    return S * mask


def kinematic_dq(qz_dz_max: float, d: float, B: int = 9) -> torch.Tensor:
    """(B, 3) rocking offsets with Δq_z dz in ±qz_dz_max and transverse components (rad/m)."""
    dq = torch.zeros(B, 3, dtype=torch.float64)
    dq[:, 2] = torch.linspace(-qz_dz_max, qz_dz_max, B) / d
    dq[:, 0] = torch.linspace(-2e7, 3e7, B)
    dq[:, 1] = torch.linspace(1e7, -1e7, B)
    return dq


def test_kinematic_limit_strang():
    """χh × 1e-4, χ0 = 0, strained crystal: TTE (Strang, one step per voxel) → kinematic sum.

    The issue asks for 1e-3; Strang applies the coupling at voxel centres, so the limits agree up
    to O(χh²) ~ 1e-9 even over a wide rocking range (Δq_z dz up to ±1.2): tolerance 1e-6.
    """
    d, (k0, kh) = 10e-9, bragg_dirs()
    S, chih = strained_crystal(), CHIH * 1e-4
    dq = kinematic_dq(1.2, d)
    tte = TTEModel((d, d, d), WAVELENGTH, k0, kh, 0.0, chih, chih, 1.0)
    kin = KinematicModel((d, d, d), WAVELENGTH, k0, kh, 0.0, chih, chih, 1.0)
    It, Ik = tte(S, dq), kin(S, dq)
    assert ((It - Ik).norm() / Ik.norm()).item() < 1e-6
    Et, Ek = tte.exit_waves(S, dq), kin.exit_waves(S, dq)
    assert ((Et - Ek).norm() / Ek.norm()).item() < 1e-6  # phases (origin convention) agree too


def test_kinematic_limit_rk4():
    """Same limit with Lawson RK4, which converges to the piecewise-constant voxel model.

    Against the plain sum the voxel model differs by sinc(Δq_z dz/2) - 1 ≈ -(Δq_z dz)²/24: with
    |Δq_z| dz ≤ 0.12 that is < 6e-4 -> the issue's tolerance 1e-3. Against the sum with the voxel
    form factor: RK4 truncation (h δ)^4 with δ dz = 1.2 and 3 substeps ≈ 2e-6 -> tolerance 1e-5.
    """
    d, (k0, kh) = 10e-9, bragg_dirs()
    S, chih = strained_crystal(), CHIH * 1e-4
    tte = TTEModel((d, d, d), WAVELENGTH, k0, kh, 0.0, chih, chih, 1.0, integrator="rk4", substeps=3)
    kin = KinematicModel((d, d, d), WAVELENGTH, k0, kh, 0.0, chih, chih, 1.0)
    dq = kinematic_dq(0.12, d)
    It, Ik = tte(S, dq), kin(S, dq)
    assert ((It - Ik).norm() / Ik.norm()).item() < 1e-3
    dq = kinematic_dq(1.2, d)
    Et = tte.exit_waves(S, dq)
    Ek = kinematic_exit_waves(S, (d, d, d), WAVELENGTH, kh, chih, 1.0, dq, voxel_form_factor=True)
    assert ((Et - Ek).norm() / Ek.norm()).item() < 1e-5


def laue_reference(thickness, dqz, C=1.0):
    """Exact symmetric-Laue plate (PHYSICS.md limit 2): Eh at the exit, in the solver's phase origin."""
    a = K / (2 * math.cos(THETA_B))
    out = []
    for q in dqz:
        M = 1j * np.array([[a * CHI0, a * C * CHIH], [a * C * CHIH, a * CHI0 - q]])
        e0, g = scipy.linalg.expm(M * thickness) @ np.array([1.0, 0.0])
        out.append((g, e0))
    return np.array(out)


@pytest.mark.parametrize("integrator,substeps", [("strang", 256), ("rk4", 16)])
def test_symmetric_laue_plate(integrator, substeps):
    """3-D solver on a plate filling the periodic box (ny = 1) vs the 2×2 matrix exponential.

    Complex χ, thickness 0.5, 1.7 and 3 Pendellösung distances, ±5 Darwin widths; relative error
    < 1e-4 (issue). The plate has 12 voxels of up to Λ/4; the sub-steps bring the splitting error
    (measured at 3 Λ: Strang 2.2e-4 at 64 sub-steps, order 2; RK4 1.6e-4 at 8, order 4) below the
    tolerance; thinner plates use proportionally fewer sub-steps (same step length).
    """
    a = K / (2 * math.cos(THETA_B))
    pendellosung = math.pi / (a * abs(CHIH))
    darwin = 2 * a * abs(CHIH)  # half-width of the rocking curve in δ = Δq_z units
    dqz = np.linspace(-5, 5, 41) * darwin
    k0 = (-math.sin(THETA_B), 0.0, math.cos(THETA_B))
    kh = (math.sin(THETA_B), 0.0, math.cos(THETA_B))
    nz = 12
    dq = torch.zeros(len(dqz), 3, dtype=torch.float64)
    dq[:, 2] = torch.from_numpy(dqz)
    for n_pend in (0.5, 1.7, 3.0):
        T = n_pend * pendellosung
        S = torch.ones((nz, 1, 3), dtype=torch.complex128)
        Eh, E0 = exit_waves(S, (T / nz, 1e-7, 1e-7), WAVELENGTH, k0, kh, CHI0, CHIH, CHIH, 1.0, dq,
                            integrator=integrator, substeps=math.ceil(substeps * n_pend / 3),
                            return_e0=True)
        assert torch.equal(Eh, Eh[:, :, :1].expand_as(Eh))  # laterally uniform, as it must be
        ref = laue_reference(T, dqz)
        z_exit = (nz - 1 - nz // 2 + 0.5) * T / nz  # solver's phase origin: grid centre
        eh_ref = ref[:, 0] * np.exp(1j * dqz * z_exit)
        err = np.linalg.norm(Eh[:, 0, 0].numpy() - eh_ref) / np.linalg.norm(eh_ref)
        assert err < 1e-4, (n_pend, err)
        assert np.linalg.norm(E0[:, 0, 0].numpy() - ref[:, 1]) / np.linalg.norm(ref[:, 1]) < 1e-4


@pytest.mark.parametrize("integrator,scale,substeps", [("strang", 30.0, 1), ("rk4", 3.0, 8)])
def test_flux_conservation(integrator, scale, substeps):
    """Real χ, χh̄ = χh*: Σ_xy (k0z|E0|² + khz|Eh|²) is the same on entrance and exit planes.

    Tolerance 1e-8 (issue, float64). Strang is exactly unitary in the flux norm (drift unitary,
    2×2 step = exp of i × a flux-Hermitian matrix): rounding only, so χ is scaled ×30 to make the
    scattering strong. RK4 is not exactly conservative (truncation ∝ (h a χ)(h δ)^4 per step,
    measured 7e-6 with one step per voxel): χ ×3 and 8 sub-steps bring it to ~2e-9.
    """
    d, (k0, kh) = 20e-9, bragg_dirs()
    chih = complex(-1.9e-5, 0.8e-5)
    S = strained_crystal()
    dq = torch.zeros(5, 3, dtype=torch.float64)
    dq[:, 2] = torch.linspace(-4e7, 4e7, 5)
    Eh, E0 = exit_waves(S, (d, d, d), WAVELENGTH, k0, kh, CHI0.real * scale, chih * scale,
                         chih.conjugate() * scale,
                        1.0, dq, integrator=integrator, substeps=substeps, return_e0=True)
    assert Eh.abs().max() > 0.01 * scale / 3  # appreciable scattering: not a trivial check
    flux_in = k0[2] * S.shape[1] * S.shape[2]
    flux_out = (k0[2] * E0.abs() ** 2 + kh[2] * Eh.abs() ** 2).sum(dim=(1, 2))
    assert ((flux_out - flux_in).abs() / flux_in).max().item() < 1e-8


def test_absorption_and_refraction_of_E0():
    """Unstrained plate filling the box, far from Bragg: E0 = exp(i a0 χ0 T) exactly (tol 1e-12,
    rounding); |E0| falls with depth (absorption: Im χ0 > 0)."""
    k0, kh = bragg_dirs()
    dq = torch.tensor([[0.0, 0.0, 5e8]], dtype=torch.float64)  # ~100 Darwin widths off Bragg
    a0 = K / (2 * k0[2])
    prev = 1.0
    for nz in (4, 8, 16):
        T = nz * 50e-9
        S = torch.ones((nz, 1, 4), dtype=torch.complex128)
        _, E0 = exit_waves(S, (50e-9, 1e-7, 1e-7), WAVELENGTH, k0, kh, CHI0, 0.0, 0.0, 1.0, dq, return_e0=True)
        assert torch.allclose(E0, torch.full_like(E0, complex(np.exp(1j * a0 * CHI0 * T))), rtol=0, atol=1e-12)
        _, E0 = exit_waves(S, (50e-9, 1e-7, 1e-7), WAVELENGTH, k0, kh, CHI0, CHIH, CHIH, 1.0, dq, return_e0=True)
        assert E0.abs().max().item() < prev
        prev = E0.abs().max().item()


def test_bragg_case_peak_shifts_to_larger_glancing_angle():
    """A 3 µm slab with a symmetric-Bragg face (outward normal ∥ h: k0 enters and kh leaves through
    it): the integrated dynamical rocking curve peaks at Δθ > 0 (refraction, n < 1), the kinematic
    one at Δθ = 0 (PHYSICS.md sign check). A semi-infinite crystal would shift by
    -Re χ0 / sin 2θB ≈ 4.2e-5 rad; this finite slab shows part of it (measured: peak +1e-5,
    centroid +1.6e-5), so the test asserts a positive peak and a centroid above 0.2 × that value."""
    k0, kh = bragg_dirs()
    d, T, Z = 60e-9, 3e-6, 64
    width = T / math.cos(THETA_B) + Z * d * (math.tan(THETA_B) + math.tan(2 * THETA_B))
    X = int(width / d) + 8
    offset = int(T / math.cos(THETA_B) / d) + 2
    z, x = torch.meshgrid(torch.arange(Z) * d, (torch.arange(X) - X + offset) * d, indexing="ij")
    depth = -(x * math.cos(THETA_B) + (z - Z * d / 2) * math.sin(THETA_B))  # below the Bragg face
    S = ((depth >= 0) & (depth < T)).to(torch.complex128)[:, None, :]
    theta = torch.linspace(-2e-4, 2e-4, 41, dtype=torch.float64)
    direction = torch.tensor([math.sin(THETA_B), 0.0, -math.cos(THETA_B)], dtype=torch.float64)
    dq = theta[:, None] * H_NORM * direction  # Δθ > 0 ↔ larger glancing angle (k0·Δq < 0)
    args = ((d, 1e-7, d), WAVELENGTH, k0, kh, CHI0, CHIH, CHIH, 1.0)
    dyn = TTEModel(*args)(S, dq).sum(dim=(1, 2))
    kin = KinematicModel(*args)(S, dq).sum(dim=(1, 2))
    assert abs(theta[kin.argmax()].item()) < 1e-9
    assert abs(((kin * theta).sum() / kin.sum()).item()) < 1e-9  # symmetric kinematic curve
    assert theta[dyn.argmax()].item() > 0
    expected = -CHI0.real / math.sin(2 * THETA_B)
    assert ((dyn * theta).sum() / dyn.sum()).item() > 0.2 * expected


def test_refraction_kinematic_between_kinematic_and_dynamical():
    """With χ0 = 0 the refraction variant is first order in χh with no depletion: it equals the
    kinematic sum (Strang, one step per voxel) to rounding (tol 1e-12); with χ0 it differs."""
    d, (k0, kh) = 10e-9, bragg_dirs()
    S = strained_crystal()
    dq = torch.zeros(3, 3, dtype=torch.float64)
    dq[:, 2] = torch.tensor([-5e7, 0.0, 5e7])
    rk = RefractionKinematicModel((d, d, d), WAVELENGTH, k0, kh, 0.0, CHIH, CHIH, 1.0)
    kin = KinematicModel((d, d, d), WAVELENGTH, k0, kh, 0.0, CHIH, CHIH, 1.0)
    Er, Ek = rk.exit_waves(S, dq), kin.exit_waves(S, dq)
    assert ((Er - Ek).norm() / Ek.norm()).item() < 1e-12
    rk2 = RefractionKinematicModel((d, d, d), WAVELENGTH, k0, kh, CHI0, CHIH, CHIH, 1.0)
    assert ((rk2.exit_waves(S, dq) - Ek).norm() / Ek.norm()).item() > 1e-3  # χ0 matters
