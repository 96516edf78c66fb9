"""z-marching kernels for the two-beam Takagi–Taupin equations (used by :mod:`.tte`).

Marching frame. With ``δ_j = Δq_jz + th·Δq_j⊥`` the state is ``(U, V)``,

    U = E0·e^{iδ_j (z - z_s)},     V = Eh·e^{-iΔq_j·r}·e^{iδ_j (z - z_s)}    (z_s: entrance plane),

each ``(B, Y, X)`` complex. Both carry the same per-angle phase, which is uniform across (y, x)
and so keeps the fields periodic on the transverse box (Eh e^{-iΔq⊥·r⊥} is periodic because Eh
vanishes at the box edges; E0 e^{iΔq⊥·r⊥} would not be). The equations become

    ∂z U = (-t0·∇⊥ + iδ_j) U + c11 U + c12 V
    ∂z V = (-th·∇⊥) V        + c21 U + c22 V

with ``t = k⊥/kz`` and, per voxel, ``c11 = i a0 χ0 s``, ``c12 = i a0 C χh̄ S̄``,
``c21 = i ah C χh S``, ``c22 = i ah χ0 s`` (``a = k²/(2 kz)``). The linear part L is diagonal in
transverse Fourier space and applied exactly (the rocking phase rides on the FFT multiplier that
U needs anyway; V needs no FFT when th = 0). The coupling c does not depend on the angle: the
local 2×2 exponential is computed once per z-slice and shared by all angles. The phase factor
e^{±iΔq·r} of PHYSICS.md is carried exactly by L, i.e. evaluated at every stage position.

Integrators (one step of length h):

- ``strang``: Strang splitting: half step of L, exact 2×2 exponential of the local coupling
  (closed form), half step of L; consecutive half steps are merged, so a step costs one FFT pair
  per drifting field. Second order. Conserves the flux exactly for real χ. The coupling acts at
  the step centre: with one step per voxel the weak-coupling limit is exactly the kinematic sum
  Σ_z S e^{iΔq·r} dz (midpoint rule in z).
- ``rk4``: Lawson (integrating-factor) RK4, L in the integrating factor e^{hL/2}, the coupling in
  the stages. Fourth order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Coefficients", "Drift", "strang_steps", "rk4_steps", "FFTS_PER_STEP", "cosh_sinhc",
           "coupling_exponential", "prepare_operators", "fourier_mul"]

_SERIES_LIMIT = 0.02  # |x| below which cosh(√x), sinh(√x)/√x use their Taylor series

FFTS_PER_STEP = {"strang": 2, "rk4": 8}
"""Fewest 2-D FFTs (forward + inverse) of one ``(B, Y, X)`` field per step for U; V needs as
many again when th ≠ 0 and none when th = 0."""


def cosh_sinhc(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cosh(√x), sinh(√x)/√x)`` for complex ``x`` of any shape, entire in x.

    A 6-term Taylor series is used for ``|x| < 0.02`` (truncation < 1e-17) so that values and
    gradients stay exact at ``x → 0``, where √x has an infinite derivative.
    """
    small = x.abs() < _SERIES_LIMIT
    ch = 1 + x * (1 / 2 + x * (1 / 24 + x * (1 / 720 + x * (1 / 40320 + x / 3628800))))
    sc = 1 + x * (1 / 6 + x * (1 / 120 + x * (1 / 5040 + x * (1 / 362880 + x / 39916800))))
    if bool(small.all()):
        return ch, sc
    r = torch.sqrt(torch.where(small, torch.ones_like(x), x))
    return torch.where(small, ch, torch.cosh(r)), torch.where(small, sc, torch.sinh(r) / r)


def coupling_exponential(c11: torch.Tensor, c12: torch.Tensor, c21: torch.Tensor, c22: torch.Tensor,
                         h: float) -> tuple[torch.Tensor, ...]:
    """Closed-form ``exp(h [[c11, c12], [c21, c22]])`` elementwise: four tensors (A11, A12, A21, A22).

    With μ = (c11 + c22)/2, n = (c11 - c22)/2, w = n² + c12 c21:
    exp(hM) = e^{hμ} [cosh(h√w) I + h sinh(h√w)/(h√w) (M - μI)].
    """
    hn = (0.5 * h) * (c11 - c22)
    ch, sc = cosh_sinhc(hn * hn + (h * h) * (c12 * c21))
    e = torch.exp((0.5 * h) * (c11 + c22))
    ech, esc = e * ch, e * sc
    ehn = esc * hn
    return ech + ehn, (h * esc) * c12, (h * esc) * c21, ech - ehn


@dataclass
class Coefficients:
    """Per-voxel coupling coefficients, each ``(Z, Y, X)`` complex (rad/m); see module doc."""

    c11: torch.Tensor
    c12: torch.Tensor
    c21: torch.Tensor
    c22: torch.Tensor

    def astuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c11, c12, c21, c22)``."""
        return self.c11, self.c12, self.c21, self.c22


@dataclass
class Drift:
    """Exact propagators e^{hL/2}, e^{hL} of the linear part for one step length h.

    ``u_half``, ``u_full``: ``(B, Y, X)`` Fourier multipliers for U (unshifted fft2 order),
    e^{-i t0·q⊥ h/2 + iδ_j h/2} and e^{-i t0·q⊥ h + iδ_j h}. ``v_half``, ``v_full``: ``(Y, X)``
    multipliers e^{-i th·q⊥ h/2}, e^{-i th·q⊥ h} for V, or ``None`` when th = 0.
    """

    h: float
    u_half: torch.Tensor
    u_full: torch.Tensor
    v_half: torch.Tensor | None
    v_full: torch.Tensor | None

    def angles(self, start: int, stop: int) -> "Drift":
        """The propagators of angles ``start:stop`` (views)."""
        return Drift(self.h, self.u_half[start:stop], self.u_full[start:stop], self.v_half, self.v_full)


def fourier_mul(field: torch.Tensor, mult: torch.Tensor | None) -> torch.Tensor:
    """``ifft2(fft2(field) · mult)`` over the last two axes; identity when ``mult`` is None."""
    if mult is None:
        return field
    # in place on the fresh spectrum: autograd-safe (mult is a constant), saves an allocation
    return torch.fft.ifft2(torch.fft.fft2(field).mul_(mult))


def prepare_operators(integrator: str, coef: tuple[torch.Tensor, ...], h: float, substeps: int,
                      diagonal_v: bool) -> tuple[torch.Tensor, ...]:
    """Angle-independent operators, computed once for the whole march (shared by all angles).

    ``rk4``: the coefficients c, each ``(n_vox, Y, X)``. ``strang``: per step (``n_vox·substeps``
    steps) the 2×2 exponential A = exp(h c). When V does not drift (``diagonal_v``: th = 0) the
    march carries W = V / D_t with D_t = Π_{t'≤t} A22_{t'} (angle-independent), which saves one
    (B, Y, X) product per step: returns (A11, A12·D_{t-1}, A21 / D_t, D_t); else (A11, A12, A21, A22).
    """
    if integrator == "rk4":
        return tuple(coef)
    a11, a12, a21, a22 = (a.repeat_interleave(substeps, dim=0) if substeps > 1 else a
                          for a in coupling_exponential(*coef, h=h))
    if not diagonal_v:
        return a11, a12, a21, a22
    D = torch.cumprod(a22, dim=0)
    D_prev = torch.cat((torch.ones_like(D[:1]), D[:-1]))
    return a11, a12 * D_prev, a21 / D, D


def strang_steps(U: torch.Tensor, V: torch.Tensor, ops: tuple[torch.Tensor, ...], drift: Drift,
                 substeps: int, last_half: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance ``(U, V)`` through the steps whose operators are ``ops`` (see :func:`prepare_operators`;
    each ``(n_steps, Y, X)``; with th = 0, V is the scaled W and ``ops[3]`` is unused here).

    On entry the state has received the leading half step of L of its first step; each step
    applies the local 2×2 exponential and then the merged full step of L. With ``last_half`` the
    final one is a half step (end of the march). ``substeps`` is already folded into ``ops``.
    """
    del substeps
    n = ops[0].shape[0]
    scaled = drift.v_full is None
    for t, (a11, a12, a21, a22) in enumerate(zip(*(o.unbind(0) for o in ops))):
        final = last_half and t == n - 1
        # in-place updates only on fresh products (not saved by autograd)
        if scaled:  # W⁺ = W + (A21/D_t) U, U⁺ = A11 U + (A12 D_{t-1}) W
            U, V = (a11 * U).addcmul_(a12, V), torch.addcmul(V, a21, U)
        else:
            U, V = (a11 * U).addcmul_(a12, V), (a22 * V).addcmul_(a21, U)
            V = fourier_mul(V, drift.v_half if final else drift.v_full)
        U = fourier_mul(U, drift.u_half if final else drift.u_full)
    return U, V


def rk4_steps(U: torch.Tensor, V: torch.Tensor, ops: tuple[torch.Tensor, ...], drift: Drift,
              substeps: int, last_half: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Lawson RK4 through the voxels whose coefficients are ``ops`` (``last_half`` is ignored).

    With Φ = e^{hL/2} and N the coupling: k1 = N u, k2 = N Φ(u + h/2 k1), k3 = N(Φu + h/2 k2),
    k4 = N Φ(Φu + h k3), u⁺ = Φ(Φu + h/6 Φk1 + h/3 (k2 + k3)) + h/6 k4: four Φ, i.e. 8 FFTs of U.
    """
    del last_half
    h = drift.h

    def phi(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return fourier_mul(a, drift.u_half), fourier_mul(b, drift.v_half)

    for c11, c12, c21, c22 in zip(*(o.unbind(0) for o in ops)):

        def rhs(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return (c11 * a).addcmul_(c12, b), (c22 * b).addcmul_(c21, a)

        for _ in range(substeps):
            k1 = rhs(U, V)
            pu, pv = phi(torch.stack((U, k1[0])), torch.stack((V, k1[1])))
            (w0, f0), (w1, f1) = pu.unbind(0), pv.unbind(0)  # w = Φu, f = Φk1
            k2 = rhs(w0 + (h / 2) * f0, w1 + (h / 2) * f1)
            k3 = rhs(w0 + (h / 2) * k2[0], w1 + (h / 2) * k2[1])
            k4 = rhs(*phi(w0 + h * k3[0], w1 + h * k3[1]))
            y0, y1 = phi(w0 + (h / 6) * f0 + (h / 3) * (k2[0] + k3[0]),
                         w1 + (h / 6) * f1 + (h / 3) * (k2[1] + k3[1]))
            U, V = y0 + (h / 6) * k4[0], y1 + (h / 6) * k4[1]
    return U, V


def _strang_scaled_forward(U: torch.Tensor, V: torch.Tensor, a11: torch.Tensor, b12: torch.Tensor,
                           r21: torch.Tensor, u_full: torch.Tensor, u_last: torch.Tensor,
                           keep: list | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Strang steps with th = 0 (scaled V), no autograd; appends each step's input to ``keep``."""
    n = a11.shape[0]
    for t in range(n):
        if keep is not None:
            keep.append((U, V))
        U, V = (a11[t] * U).addcmul_(b12[t], V), torch.addcmul(V, r21[t], U)
        U = fourier_mul(U, u_last if t == n - 1 else u_full)
    return U, V


class StrangAdjoint(torch.autograd.Function):
    """Strang steps with th = 0 and a hand-written adjoint sweep (gradient w.r.t. U, V, A11,
    A12·D, A21/D). Saves the step inputs (2 fields per step) when ``store`` is True, else only the
    segment input and recomputes them in the backward (checkpoint-like). Backward per step: one FFT
    pair, one Fourier multiply, three angle reductions Σ_b conj(x)·g (``linalg.vecdot``), three
    products: cheaper than autograd's graph of the same step."""

    @staticmethod
    def forward(ctx, U, V, a11, b12, r21, u_full, u_last, store):  # noqa: D102
        keep: list | None = [] if store else None
        with torch.no_grad():
            U_out, V_out = _strang_scaled_forward(U, V, a11, b12, r21, u_full, u_last, keep)
        ctx.save_for_backward(U, V, a11, b12, r21, u_full, u_last)
        ctx.keep = keep
        return U_out, V_out

    @staticmethod
    def backward(ctx, gU, gV):  # noqa: D102
        U, V, a11, b12, r21, u_full, u_last = ctx.saved_tensors
        states = ctx.keep
        if states is None:
            states = []
            with torch.no_grad():
                _strang_scaled_forward(U, V, a11, b12, r21, u_full, u_last, states)
        gU = torch.zeros_like(U) if gU is None else gU
        gV = torch.zeros_like(V) if gV is None else gV
        n = a11.shape[0]
        ga11, gb12, gr21 = torch.empty_like(a11), torch.empty_like(b12), torch.empty_like(r21)
        cu_full, cu_last = u_full.conj(), u_last.conj()
        for t in range(n - 1, -1, -1):
            Ut, Vt = states[t]
            gP = fourier_mul(gU, cu_last if t == n - 1 else cu_full)
            ga11[t] = torch.linalg.vecdot(Ut, gP, dim=0)
            gb12[t] = torch.linalg.vecdot(Vt, gP, dim=0)
            gr21[t] = torch.linalg.vecdot(Ut, gV, dim=0)
            gU = (a11[t].conj() * gP).addcmul_(r21[t].conj(), gV)
            gV = torch.addcmul(gV, b12[t].conj(), gP)
        ctx.keep = None
        return gU, gV, ga11, gb12, gr21, None, None, None
