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
U needs anyway; V needs no FFT when th = 0; a wave drifting along x only needs 1-D FFTs along
x). The coupling c does not depend on the angle: the local 2×2 exponential is computed once per
z-slice and shared by all angles. The phase factor
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

import cmath
import math
from dataclasses import dataclass

import torch

__all__ = ["Coupling", "Drift", "strang_steps", "rk4_steps", "FFTS_PER_STEP", "coupling_exponential",
           "prepare_operators", "fourier_mul"]

_SERIES_LIMIT = 1.0  # |s²κ| below which cosh(s√κ), sinh(s√κ)/(s√κ) use Taylor series

FFTS_PER_STEP = {"strang": 2, "rk4": 8}
"""Fewest 2-D FFTs (forward + inverse) of one ``(B, Y, X)`` field per step for U; V needs as
many again when th ≠ 0 and none when th = 0."""


@dataclass(frozen=True)
class Coupling:
    """Coupling constants per unit amplitude (rad/m): ``c11 = k11·s``, ``c12 = k12·S̄``,
    ``c21 = k21·S``, ``c22 = k22·s`` with ``S = s e^{iφ}`` (see module doc)."""

    k11: complex
    k12: complex
    k21: complex
    k22: complex

    def coefficients(self, S: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(c11, c12, c21, c22)``, each shaped like ``S`` (complex); ``s = |S|``."""
        return self.k11 * s, self.k12 * S.conj(), self.k21 * S, self.k22 * s


def coupling_exponential(s: torch.Tensor, S: torch.Tensor, cp: Coupling, h: float) -> tuple[torch.Tensor, ...]:
    """``exp(h [[c11, c12], [c21, c22]])`` per voxel: four complex tensors (A11, A12, A21, A22).

    With μ = (c11 + c22)/2, n = (c11 - c22)/2, w = n² + c12 c21:
    exp(hM) = e^{hμ} [cosh(h√w) I + h sinh(h√w)/(h√w) (M - μI)]. Here hμ = s·m, hn = s·n0 and
    h²w = s²·κ with complex constants m, n0, κ (c12 c21 = k12 k21 s²), so e^{hμ}cosh and
    e^{hμ}sinhc are functions of the *real* s (:class:`_ExpCoshSinhc`); only A12, A21 need S.
    ``s``: real, ``S``: complex, same shape.
    """
    m, n0 = 0.5 * h * (cp.k11 + cp.k22), 0.5 * h * (cp.k11 - cp.k22)
    ech, esc = _ExpCoshSinhc.apply(s, m, n0 * n0 + h * h * cp.k12 * cp.k21)
    ehn = esc * (n0 * s)
    return ech + ehn, esc * ((h * cp.k12) * S.conj()), esc * ((h * cp.k21) * S), ech - ehn


def _series(q: torch.Tensor, coeffs: list[complex]) -> torch.Tensor:
    """Σ_j coeffs[j] q^j for real ``q`` (Horner on the real and imaginary parts): complex."""
    re, im = torch.full_like(q, coeffs[-1].real), torch.full_like(q, coeffs[-1].imag)
    for c in reversed(coeffs[:-1]):
        re, im = re.mul_(q).add_(c.real), im.mul_(q).add_(c.imag)
    return torch.complex(re, im)


def _exp_cosh_sinhc(s: torch.Tensor, m: complex, kappa: complex, derivatives: bool
                    ) -> tuple[torch.Tensor, ...]:
    """``e^{sm}cosh(sg)``, ``e^{sm}sinh(sg)/(sg)`` (g = √κ) and, with ``derivatives``, their
    s-derivatives (else None), for real s ≥ 0.

    No autograd; real, vectorised ops. With x = s²κ: d/ds cosh(sg) = κ s sinhc(sg) and
    d/ds sinhc(sg) = κ s r with r = (cosh - sinhc)/x. Where |x| < 1 the three are Taylor series in
    s² (terms until the remainder is below the dtype's rounding: exact values and derivatives down
    to s = 0, no cancellation in r); elsewhere closed forms from real cosh, sinh, cos, sin of
    s·g = a + ib (r then loses < 1 digit).
    """
    eps = torch.finfo(s.dtype).eps
    s_max = float(s.max()) if s.numel() else 0.0
    x_ser = min(s_max**2 * abs(kappa), _SERIES_LIMIT)
    n_terms = next(j for j in range(1, 30) if x_ser**j / math.factorial(2 * j) <= eps / 8)
    q = s * s
    ch = _series(q, [kappa**j / math.factorial(2 * j) for j in range(n_terms)])
    sc = _series(q, [kappa**j / math.factorial(2 * j + 1) for j in range(n_terms)])
    r = _series(q, [kappa**j * (2 * j + 2) / math.factorial(2 * j + 3) for j in range(n_terms)]) \
        if derivatives else None
    s_lim = math.sqrt(_SERIES_LIMIT / abs(kappa)) if kappa != 0 else math.inf
    if s_max >= s_lim:
        small = s < s_lim
        g = cmath.sqrt(kappa)
        a, b = s * g.real, s * g.imag
        cosh_a, sinh_a, cos_b, sin_b = torch.cosh(a), torch.sinh(a), torch.cos(b), torch.sin(b)
        s_safe = torch.where(small, torch.ones_like(s), s)  # the series covers s → 0
        ch_big = torch.complex(cosh_a * cos_b, sinh_a * sin_b)
        sc_big = torch.complex(sinh_a * cos_b, cosh_a * sin_b) * (1 / g) / s_safe
        ch, sc = torch.where(small, ch, ch_big), torch.where(small, sc, sc_big)
        r = torch.where(small, r, (ch - sc) / (s_safe * s_safe * kappa)) if derivatives else None
    e = torch.polar(torch.exp(m.real * s), m.imag * s)
    ech, esc = e * ch, e * sc
    if not derivatives:
        return ech, esc, None, None
    ks = kappa * s
    return ech, esc, m * ech + ks * esc, m * esc + ks * (e * r)


class _ExpCoshSinhc(torch.autograd.Function):
    """``(e^{sm}cosh(s√κ), e^{sm}sinhc(s√κ))`` of real ``s`` with a hand-written derivative
    (:func:`_exp_cosh_sinhc`): autograd through the series and closed forms would cost ~4× more."""

    @staticmethod
    def forward(ctx, s, m, kappa):  # noqa: D102
        ech, esc, dech, desc = _exp_cosh_sinhc(s, m, kappa, ctx.needs_input_grad[0])
        ctx.save_for_backward(dech, desc)
        return ech, esc

    @staticmethod
    def backward(ctx, g_ech, g_esc):  # noqa: D102
        dech, desc = ctx.saved_tensors
        # real input, complex outputs: ds = Re(y'(s)·conj(g_y)) summed over the outputs
        return (dech * g_ech.conj() + desc * g_esc.conj()).real, None, None


@dataclass
class Drift:
    """Exact propagators e^{hL/2}, e^{hL} of the linear part for one step length h.

    ``u_half``, ``u_full``: ``(B, Y, X)`` Fourier multipliers for U (unshifted fft2 order),
    e^{-i t0·q⊥ h/2 + iδ_j h/2} and e^{-i t0·q⊥ h + iδ_j h}. ``v_half``, ``v_full``: ``(Y, X)``
    multipliers e^{-i th·q⊥ h/2}, e^{-i th·q⊥ h} for V, or ``None`` when th = 0. A transverse axis
    along which a wave does not drift has length 1 (see :func:`fourier_mul`).
    """

    h: float
    u_half: torch.Tensor
    u_full: torch.Tensor
    v_half: torch.Tensor | None
    v_full: torch.Tensor | None

    def angles(self, start: int, stop: int) -> "Drift":
        """The propagators of angles ``start:stop`` (views)."""
        return Drift(self.h, self.u_half[start:stop], self.u_full[start:stop], self.v_half, self.v_full)


def _drift_dims(mult: torch.Tensor) -> tuple[int, ...]:
    """Transverse axes along which the Fourier multiplier varies (the others need no transform)."""
    return tuple(d for d in (-2, -1) if mult.shape[d] > 1)


def fourier_mul(field: torch.Tensor, mult: torch.Tensor | None) -> torch.Tensor:
    """``ifft(fft(field) · mult)`` over the last two axes; identity when ``mult`` is None.

    ``mult`` is in fft order, broadcastable to ``field``; a transverse axis where it has length 1
    is constant along that frequency, so it is not transformed (a drift along x alone needs 1-D
    FFTs along x only: about half the work of fft2, same result).
    """
    if mult is None:
        return field
    dims = _drift_dims(mult)
    if not dims:
        return field * mult
    # in place on the fresh spectrum: autograd-safe (mult is a constant), saves an allocation
    return torch.fft.ifftn(torch.fft.fftn(field, dim=dims).mul_(mult), dim=dims)


def _fourier_mul_adjoint_conj(lam: torch.Tensor, mult: torch.Tensor) -> torch.Tensor:
    """``conj(F^H conj(lam))`` for ``F = fourier_mul(·, mult)``, i.e. ``fft(ifft(lam) · mult)``:
    the adjoint drift acting on a conjugated cotangent, without any conjugation pass."""
    dims = _drift_dims(mult)
    if not dims:
        return lam * mult
    return torch.fft.fftn(torch.fft.ifftn(lam, dim=dims).mul_(mult), dim=dims)


def prepare_operators(integrator: str, s: torch.Tensor, S: torch.Tensor, cp: Coupling, h: float,
                      substeps: int, diagonal_v: bool) -> tuple[torch.Tensor, ...]:
    """Angle-independent operators, computed once for the whole march (shared by all angles).

    ``s = |S|`` (real) and ``S`` (complex): ``(n_vox, Y, X)``. ``rk4``: the coefficients c. ``strang``:
    per step (``n_vox·substeps`` steps) the 2×2 exponential A = exp(h c). When V does not drift
    (``diagonal_v``: th = 0) the march carries W = V / D_t with D_t = Π_{t'≤t} A22_{t'}
    (angle-independent), which saves one (B, Y, X) product per step: returns
    (A11, A12·D_{t-1}, A21 / D_t, D_T) with D_T of shape (1, Y, X) (:class:`_ScaledOperators`);
    else (A11, A12, A21, A22).
    """
    if integrator == "rk4":
        return cp.coefficients(S, s)
    if diagonal_v:
        return _ScaledOperators.apply(s, S, cp, h, substeps)
    return tuple(a.repeat_interleave(substeps, dim=0) if substeps > 1 else a
                 for a in coupling_exponential(s, S, cp, h))


class _ScaledOperators(torch.autograd.Function):
    """(A11, A12·D_{t-1}, A21/D_t, D_T) of (s, S) for the th = 0 Strang march, with a hand-written
    gradient (autograd through the products, cumprod and division cost ~3× more).

    A11,22 = e^{sm}cosh ± n0·s·e^{sm}sinhc, A12 = h k12 e^{sm}sinhc S̄, A21 = h k21 e^{sm}sinhc S
    (:func:`coupling_exponential`); each voxel's A is repeated for its ``substeps`` steps.
    The backward works on conjugated cotangents λ = ḡ (holomorphic maps then need no conjugates):
    λD_t = λb12_{t+1} A12_{t+1} - λr21_t r21_t / D_t (+ λD_T at the end),
    λA22_t = Σ_{t'≥t} λD_t' D_t' / A22_t.
    Running products/sums along z are loops over (Y, X) slices and divisions are products with 1/D:
    torch's complex cumprod, cumsum and division are ~5× slower on CPU.
    """

    @staticmethod
    def forward(ctx, s, S, cp, h, substeps):  # noqa: D102
        m, n0 = 0.5 * h * (cp.k11 + cp.k22), 0.5 * h * (cp.k11 - cp.k22)
        grad = any(ctx.needs_input_grad[:2])
        ech, esc, dech, desc = _exp_cosh_sinhc(s, m, n0 * n0 + h * h * cp.k12 * cp.k21, grad)
        ehn = (esc * s).mul_(n0)
        c12, c21 = h * cp.k12, h * cp.k21
        a11, a22 = ech + ehn, ech - ehn
        a12, a21 = (esc * S.conj()).mul_(c12), (esc * S).mul_(c21)
        if substeps > 1:
            a11, a12, a21, a22 = (a.repeat_interleave(substeps, dim=0) for a in (a11, a12, a21, a22))
        D = a22.clone()
        for t in range(1, D.shape[0]):
            D[t] *= D[t - 1]
        D_inv = torch.reciprocal(D)
        b12 = a12.clone()
        b12[1:] *= D[:-1]
        r21 = a21 * D_inv
        if grad:
            ctx.save_for_backward(s, S, esc, dech, desc, a12, D, D_inv, r21)
            ctx.consts = (n0, c12, c21, substeps)
        return a11, b12, r21, D[-1:]

    @staticmethod
    def backward(ctx, g11, g12, g21, gDT):  # noqa: D102
        s, S, esc, dech, desc, a12, D, D_inv, r21 = ctx.saved_tensors
        n0, c12, c21, substeps = ctx.consts
        l11, l12, l21 = (torch.zeros_like(D) if g is None else g.conj_physical() for g in (g11, g12, g21))
        lA21 = l21 * D_inv
        lD = (lA21 * r21).neg_()
        lD[:-1] += l12[1:] * a12[1:]
        if gDT is not None:
            lD[-1] += gDT[0].conj()
        lA12 = l12
        lA12[1:] *= D[:-1]
        lA22 = lD.mul_(D)
        for t in range(lA22.shape[0] - 2, -1, -1):  # Σ_{t'≥t}
            lA22[t] += lA22[t + 1]
        lA22 *= D_inv
        lA22[1:] *= D[:-1]  # / A22_t = D_{t-1} / D_t
        if substeps > 1:  # sum over the steps of each voxel
            l11, lA12, lA21, lA22 = (x.unflatten(0, (-1, substeps)).sum(1) for x in (l11, lA12, lA21, lA22))
        # y(s, S): g_s = Re Σ y'(s) λ_y; holomorphic in S: g_S = conj(y'(S) λ_y); in S̄: g_S = y'(S̄) λ_y
        u12, u21 = lA12.mul_(c12), lA21.mul_(c21)
        g_s = (dech * (l11 + lA22)).add_((esc + s * desc).mul_(n0) * (l11 - lA22))
        g_s = g_s.addcmul_(desc, (S.conj() * u12).add_(S * u21)).real
        g_S = (esc * u21).conj_physical_().addcmul_(esc, u12)
        return g_s, g_S, None, None, None


def strang_steps(U: torch.Tensor, V: torch.Tensor, ops: tuple[torch.Tensor, ...], drift: Drift,
                 substeps: int, last_half: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance ``(U, V)`` through the steps whose operators (A11, A12, A21, A22) are ``ops`` (each
    ``(n_steps, Y, X)``), for a drifting Eh (th ≠ 0; with th = 0 :class:`StrangAdjoint` marches).

    On entry the state has received the leading half step of L of its first step; each step
    applies the local 2×2 exponential and then the merged full step of L. With ``last_half`` the
    final one is a half step (end of the march). ``substeps`` is already folded into ``ops``.
    """
    del substeps
    n = ops[0].shape[0]
    for t, (a11, a12, a21, a22) in enumerate(zip(*(o.unbind(0) for o in ops))):
        final = last_half and t == n - 1
        # in-place updates only on fresh products (not saved by autograd)
        U, V = (a11 * U).addcmul_(a12, V), (a22 * V).addcmul_(a21, U)
        V = fourier_mul(V, drift.v_half if final else drift.v_full)
        U = fourier_mul(U, drift.u_half if final else drift.u_full)
    return U, V


def rk4_steps(U: torch.Tensor, V: torch.Tensor, ops: tuple[torch.Tensor, ...], drift: Drift,
              substeps: int, last_half: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Lawson RK4 through the voxels whose coefficients are ``ops`` (``last_half`` is ignored).

    Each voxel takes ``substeps`` steps of :func:`_rk4_step`. When a gradient is needed the march
    is one :class:`_RK4March` (step inputs kept in one preallocated tensor, each step re-derived in
    the backward) rather than an autograd graph of ~30 nodes per step.
    """
    del last_half
    if torch.is_grad_enabled() and any(x.requires_grad for x in (U, V, *ops)):
        return _RK4March.apply(U, V, drift, substeps, *ops)
    for c in zip(*(o.unbind(0) for o in ops)):
        for _ in range(substeps):
            U, V = _rk4_step(U, V, c, drift)
    return U, V


def _rk4_step(U: torch.Tensor, V: torch.Tensor, c: tuple[torch.Tensor, ...], drift: Drift
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One Lawson RK4 step of length ``drift.h``; ``c = (c11, c12, c21, c22)``, each ``(Y, X)``.

    With Φ = e^{hL/2} and N the coupling: k1 = N u, k2 = N Φ(u + h/2 k1), k3 = N(Φu + h/2 k2),
    k4 = N Φ(Φu + h k3), u⁺ = Φ(Φu + h/6 Φk1 + h/3 (k2 + k3)) + h/6 k4: four Φ, i.e. 8 FFTs of U.
    """
    h = drift.h
    c11, c12, c21, c22 = c

    def rhs(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (c11 * a).addcmul_(c12, b), (c22 * b).addcmul_(c21, a)

    def phi(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return fourier_mul(a, drift.u_half), fourier_mul(b, drift.v_half)

    k1 = rhs(U, V)
    pu, pv = phi(torch.stack((U, k1[0])), torch.stack((V, k1[1])))
    (w0, f0), (w1, f1) = pu.unbind(0), pv.unbind(0)  # w = Φu, f = Φk1
    k2 = rhs(w0 + (h / 2) * f0, w1 + (h / 2) * f1)
    k3 = rhs(w0 + (h / 2) * k2[0], w1 + (h / 2) * k2[1])
    k4 = rhs(*phi(w0 + h * k3[0], w1 + h * k3[1]))
    y0, y1 = phi(w0 + (h / 6) * f0 + (h / 3) * (k2[0] + k3[0]),
                 w1 + (h / 6) * f1 + (h / 3) * (k2[1] + k3[1]))
    return y0 + (h / 6) * k4[0], y1 + (h / 6) * k4[1]


class _RK4March(torch.autograd.Function):
    """The RK4 march of :func:`rk4_steps` with a per-step recomputing backward.

    ``apply(U, V, drift, substeps, c11, c12, c21, c22)``: state ``(b, Y, X)`` each, coefficients
    ``(n, Y, X)``; returns the state after ``n·substeps`` steps. The forward runs without autograd
    and copies each step's input (U, V) into one preallocated ``(n·substeps, 2, b, Y, X)`` tensor;
    the backward re-runs each step under autograd from its stored input, in reverse, and pulls the
    cotangent through it. Values are those of autograd through the plain march (same operations);
    memory: 2 fields per step in one block, instead of ~8 fields and ~30 graph nodes per step
    whose small allocations, kept until the backward, fragmented the CPU heap (issue 13: RSS 4× the
    live tensors at 64³ × 64). Cost: one more forward of each step in the backward.
    """

    @staticmethod
    def forward(ctx, U, V, drift, substeps, *ops):  # noqa: D102
        n = ops[0].shape[0]
        states = U.new_empty((n * substeps, 2, *U.shape))
        for t in range(n):
            c = tuple(o[t] for o in ops)
            for k in range(substeps):
                states[t * substeps + k, 0].copy_(U)
                states[t * substeps + k, 1].copy_(V)
                U, V = _rk4_step(U, V, c, drift)
        ctx.save_for_backward(states, *ops)
        ctx.drift, ctx.substeps = drift, substeps
        return (U.clone(), V.clone()) if n == 0 else (U, V)

    @staticmethod
    def backward(ctx, gU, gV):  # noqa: D102
        states, *ops = ctx.saved_tensors
        need_ops = ctx.needs_input_grad[4:]
        grads = [torch.zeros_like(o) if need else None for o, need in zip(ops, need_ops)]
        gU = torch.zeros_like(states[0, 0]) if gU is None else gU
        gV = torch.zeros_like(states[0, 1]) if gV is None else gV
        for i in range(states.shape[0] - 1, -1, -1):
            t = i // ctx.substeps
            with torch.enable_grad():
                u, v = (x.detach().requires_grad_() for x in states[i].unbind(0))
                c = tuple(o[t].detach().requires_grad_(need) for o, need in zip(ops, need_ops))
                out = _rk4_step(u, v, c, ctx.drift)
                wrt = [u, v, *(x for x in c if x.requires_grad)]
                g = torch.autograd.grad(out, wrt, (gU, gV))
            gU, gV, g_ops = g[0], g[1], iter(g[2:])
            for acc in grads:
                if acc is not None:
                    acc[t] += next(g_ops)
        return (gU if ctx.needs_input_grad[0] else None, gV if ctx.needs_input_grad[1] else None, None, None,
                *grads)


def _strang_scaled_steps(U: torch.Tensor, W: torch.Tensor, ops: tuple[torch.Tensor, ...], u_full: torch.Tensor,
                         u_last: torch.Tensor, steps: range, keep: list | None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Strang steps ``steps`` (of ``len(ops[0])``) with th = 0 (scaled W), no autograd; updates
    ``W`` in place; appends each step's input U to ``keep`` (W is rebuilt in the adjoint sweep)."""
    a11, b12, r21 = ops
    n = a11.shape[0]
    for t in steps:
        if keep is not None:
            keep.append(U)
        U, W = (a11[t] * U).addcmul_(b12[t], W), W.addcmul_(r21[t], U)
        U = fourier_mul(U, u_last if t == n - 1 else u_full)
    return U, W


def _workers(n_chunks: int, device: torch.device, workers: int | None = None) -> int:
    """Threads for the chunks of a march: torch's intra-op count on CPU (one chunk each at a
    time, see :func:`dynbcdi.runtime.map_chunks`), 1 on accelerators (one chunk holds all angles)."""
    if device.type != "cpu":
        return 1
    return max(1, min(n_chunks, torch.get_num_threads() if workers is None else workers))


def _map_chunks(fn, n_chunks: int, device: torch.device, workers: int | None = None) -> list:
    from dynbcdi.runtime import map_chunks

    return map_chunks(fn, n_chunks, _workers(n_chunks, device, workers))


def _adjoint_sweep(ops: tuple[torch.Tensor, ...], record: list, W_end: torch.Tensor, uf: torch.Tensor,
                   ul: torch.Tensor, gU: torch.Tensor | None, gW: torch.Tensor | None, bounds: list[int],
                   store: bool, sums: list[torch.Tensor]) -> None:
    """Backward sweep of one angle chunk of :class:`StrangAdjoint`, adding its angle reductions
    Σ_b U λP, W λP, U λW per step into ``sums`` (three ``(n, Y, X)`` tensors)."""
    a11, b12, r21 = ops
    n = a11.shape[0]
    # λU = None: no cotangent on the exit U (E0 unused), so the last step has λP = 0
    lU = None if gU is None else gU.conj_physical()
    lW = torch.zeros_like(W_end) if gW is None else gW.conj_physical()
    for k in range(len(bounds) - 2, -1, -1):
        steps = range(bounds[k], bounds[k + 1])
        if store:
            states = record
        else:  # recompute the segment's step inputs from its stored input
            states = []
            _, W_end = _strang_scaled_steps(record[2 * k], record[2 * k + 1].clone(), ops, uf, ul, steps, states)
        W = W_end
        for t in reversed(steps):
            Ut = states[t - steps.start]
            # W_t from W_{t+1} (a new tensor first: W_end is saved or shared)
            W = torch.addcmul(W, r21[t], Ut, value=-1) if W is W_end else W.addcmul_(r21[t], Ut, value=-1)
            sums[2][t] += (Ut * lW).sum(0)
            if lU is None:
                lU = r21[t] * lW
                continue
            lP = _fourier_mul_adjoint_conj(lU, ul if t == n - 1 else uf)
            sums[0][t] += (Ut * lP).sum(0)
            sums[1][t] += (W * lP).sum(0)
            lU = (a11[t] * lP).addcmul_(r21[t], lW)
            lW.addcmul_(b12[t], lP)


class StrangAdjoint(torch.autograd.Function):
    """The whole Strang march with th = 0 (all angles, in chunks) and its hand-written adjoint sweep.

    ``apply(a11, b12, r21, u_full, u_last, U0, chunk, segments, need_u)``: operators ``(n, Y, X)``
    (A11, A12·D, A21/D), U multipliers ``(B, ·, ·)``, entrance state U0 ``(B, 1, 1)`` (W0 = 0).
    Returns (U, W) on the exit plane, each ``(B, Y, X)`` (U empty unless ``need_u``); gradients
    flow to the operators only.

    Memory of the backward: with ``segments`` = 0 the input U_t of every step is kept (1 field per
    step: W_t = W_{t+1} - (A21/D)_t U_t is rebuilt backwards, exactly in real arithmetic; in float32
    the rebuilt W carries ~steps·ε of its largest value); else only each segment's input (U, W) and
    the segment is recomputed per chunk in the backward. Backward per step: one FFT pair, one
    Fourier multiply, three angle reductions Σ_b x·λ, four products; it runs on the conjugated
    cotangents λ = ḡ, so that neither the operators nor the states need conjugating.
    """

    @staticmethod
    def forward(ctx, a11, b12, r21, u_full, u_last, U0, chunk, segments, need_u):  # noqa: D102
        n, (Y, X), B = a11.shape[0], a11.shape[1:], U0.shape[0]
        grad = any(ctx.needs_input_grad[:3])
        store = grad and segments == 0
        bounds = [0, n] if not grad or store else \
            sorted({round(n * k / min(segments, n)) for k in range(min(segments, n) + 1)})
        W_out = torch.empty((B, Y, X), dtype=a11.dtype, device=a11.device)
        U_out = torch.empty_like(W_out) if need_u else W_out.new_empty(0)

        def march_chunk(c: int) -> list:
            i = c * chunk
            U = U0[i:i + chunk].expand(-1, Y, X)
            W = torch.zeros((U.shape[0], Y, X), dtype=a11.dtype, device=a11.device)
            record: list = []
            for s0, s1 in zip(bounds[:-1], bounds[1:]):
                if grad and not store:
                    record += [U, W.clone()]
                U, W = _strang_scaled_steps(U, W, (a11, b12, r21), u_full[i:i + chunk], u_last[i:i + chunk],
                                            range(s0, s1), record if store else None)
            W_out[i:i + chunk] = W
            if need_u:
                U_out[i:i + chunk] = U
            return record

        with torch.no_grad():
            records = _map_chunks(march_chunk, -(-B // chunk), a11.device)
        # saved through the engine (not as ctx attributes) so that they are freed after backward
        # unless the graph is retained
        ctx.save_for_backward(a11, b12, r21, u_full, u_last, W_out, *(x for r in records for x in r))
        ctx.sizes, ctx.chunk, ctx.bounds, ctx.store = [len(r) for r in records], chunk, bounds, store
        ctx.set_materialize_grads(False)
        return U_out, W_out

    @staticmethod
    def backward(ctx, gU, gW):  # noqa: D102
        a11, b12, r21, u_full, u_last, W_out, *flat = ctx.saved_tensors
        ops, bounds = (a11, b12, r21), ctx.bounds
        offsets = [sum(ctx.sizes[:c]) for c in range(len(ctx.sizes) + 1)]
        workers = _workers(len(ctx.sizes), a11.device)
        # Σ over angles of U λP, W λP, U λW per step; one set per worker, added in worker order
        partial = [[torch.zeros_like(a11) for _ in range(3)] for _ in range(workers)]

        def sweep_chunk(c: int) -> None:
            record = flat[offsets[c]:offsets[c + 1]]
            rows = slice(c * ctx.chunk, (c + 1) * ctx.chunk)
            _adjoint_sweep(ops, record, W_out[rows], u_full[rows], u_last[rows],
                           None if gU is None else gU[rows], None if gW is None else gW[rows],
                           bounds, ctx.store, partial[c % workers])

        _map_chunks(sweep_chunk, len(ctx.sizes), a11.device, workers)
        sums = partial[0]
        for extra in partial[1:]:
            for acc, x in zip(sums, extra):
                acc += x
        return (*(torch.conj_physical_(g) for g in sums), None, None, None, None, None, None)
