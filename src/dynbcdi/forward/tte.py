"""Two-beam Takagi–Taupin forward model on an orthogonal grid (PHYSICS.md §TTE, paper Eq. 2–3).

Model solved. The crystal function ``S = s e^{iφ}`` is sampled at voxel centres
``r = ((ix - X//2)dx, (iy - Y//2)dy, (iz - Z//2)dz)`` (origin at the grid centre; the origin only
changes a global phase per angle) and is taken **piecewise constant along z inside each voxel**
(voxel iz spans ``[z_iz - dz/2, z_iz + dz/2]``); the phase factor e^{±iΔq·r} varies continuously
with z and is integrated exactly (it is moved into the equation of ``G = Eh e^{-iΔq·r}``). The
transverse drift is exact in Fourier space on the periodic (y, x) box. Entrance plane
``z_0 - dz/2``: E0 = 1, Eh = 0; exit plane ``z_{Z-1} + dz/2``. Sign convention: fields
∝ e^{+i(k·r-ωt)}, Im χ0 > 0 absorbs (xrayutilities χ).

Kinematic limit: the exact solution of this voxel model is
``i ah C χh Σ S e^{iΔq·r} dz · sinc(Δq_z dz / 2)`` (sinc x = sin x / x). The ``strang`` integrator
with one step per voxel applies the coupling at the voxel centre and gives the plain sum
(the kinematic model of :mod:`.kinematic`) instead; the two differ by (Δq_z dz)²/24 relative,
which is that integrator's O(h²) error; sub-steps or ``rk4`` converge to the voxel model.

Gradients. Strang with kh⊥ = 0 (the default orientation) uses a hand-written adjoint sweep
(:class:`.integrators.StrangAdjoint`) that keeps k = 1 (B, Y, X) field per z-step (U_t; W_t is
rebuilt backwards); otherwise k fields are kept per step (measured k ≈ 5 for Strang with kh⊥ ≠ 0
through autograd; k = 2 for RK4, whose march stores only each step's input state and re-derives the
step in the backward). When B·Y·X·k·steps complex values exceed ``ACTIVATION_BUDGET_BYTES`` (or
``checkpoint_segments`` is given) the march is split into n_seg = ⌈√steps⌉ z-segments whose inner
states are recomputed in the backward pass: memory ≈ B·Y·X·(2·n_seg + k·(b/B)·steps/n_seg)
complex values (b: angles per chunk, ``angle_chunk``) instead of B·Y·X·k·steps, for one extra
forward pass of compute. Example, complex64: 64³ × 64 angles, 23 steps: 46 MiB kept, no
segments; 128³ × 128, 47 steps: 0.73 GiB kept, no segments (1 GiB budget).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from .base import TwoBeamModel
from .integrators import (Coupling, Drift, StrangAdjoint, fourier_mul, prepare_operators, rk4_steps,
                          strang_steps)

__all__ = ["exit_waves", "TTEModel", "min_transverse_width", "INTEGRATORS"]

INTEGRATORS = {"strang": strang_steps, "rk4": rk4_steps}


def _unit(v: Any, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=float).reshape(-1)
    if a.shape != (3,) or not np.all(np.isfinite(a)) or np.linalg.norm(a) == 0:
        raise ValueError(f"{name} must be a finite non-zero 3-vector (x, y, z), got {v!r}")
    a = a / np.linalg.norm(a)
    # Transverse components at rounding level (frame rotations leave ~1e-17) mean "along ẑ": zero them
    # so that kh ∥ ẑ is recognised (no drift FFTs for Eh, the hand-written Strang adjoint). A slope of
    # 1e-12 shifts a beam by 1e-17 m across a 10 µm crystal.
    a[:2][np.abs(a[:2]) < 1e-12] = 0.0
    if a[2] <= 0:
        raise ValueError(f"{name} must travel forward in z (z component > 0), got {v!r}")
    return a


def _check_inputs(S: torch.Tensor, spacing: Any, wavelength: float, integrator: str, substeps: int
                  ) -> tuple[float, float, float]:
    if not torch.is_tensor(S) or not S.is_complex() or S.ndim != 3:
        raise ValueError(f"S must be a (Z, Y, X) complex tensor, got {type(S).__name__} "
                         f"{getattr(S, 'shape', '')} {getattr(S, 'dtype', '')}")
    sp = tuple(float(v) for v in spacing)
    if len(sp) != 3 or not all(math.isfinite(v) and v > 0 for v in sp):
        raise ValueError(f"spacing must be three positive voxel sizes (dz, dy, dx) in m, got {spacing!r}")
    if not (math.isfinite(wavelength) and wavelength > 0):
        raise ValueError(f"wavelength must be positive (m), got {wavelength!r}")
    if integrator not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {sorted(INTEGRATORS)}, got {integrator!r}")
    if int(substeps) != substeps or substeps < 1:
        raise ValueError(f"substeps must be a positive integer, got {substeps!r}")
    return sp  # type: ignore[return-value]


def refuse_non_finite(S: torch.Tensor, name: str = "S") -> None:
    """One-line ValueError with the count of NaN/Inf voxels of ``S`` (any shape, real or complex), if any.

    The forward models call it only when a cheap max over ``S`` is not finite (NaN and Inf propagate
    through max), so the count costs nothing on valid input.
    """
    with torch.no_grad():
        bad = int((~torch.isfinite(S)).sum())
    if bad:
        raise ValueError(f"{name} has {bad} NaN or infinite voxel(s) of {S.numel()}; the crystal function must be finite")


def check_finite(S: torch.Tensor, name: str = "S") -> None:
    """:func:`refuse_non_finite` after one max over |Re|, |Im| (one pass, no copy of a complex tensor)."""
    with torch.no_grad():
        peak = float(torch.view_as_real(S).abs().amax()) if S.is_complex() and S.numel() else 0.0
    if not math.isfinite(peak):
        refuse_non_finite(S, name)


def as_dq(dq: Any, device: torch.device) -> torch.Tensor:
    """``dq`` as a (B, 3) float64 tensor on ``device``; one-line ValueError for another shape or NaN/Inf."""
    dq = torch.as_tensor(dq, dtype=torch.float64, device=device)
    if dq.ndim != 2 or dq.shape[1] != 3:
        raise ValueError(f"dq must have shape (B, 3), got {tuple(dq.shape)}")
    if not bool(torch.isfinite(dq).all()):
        raise ValueError(f"dq has {int((~torch.isfinite(dq)).sum())} NaN/Inf values; rocking offsets must be finite")
    return dq


def _support_z_range(S: torch.Tensor, threshold: float) -> tuple[torch.Tensor, int, int]:
    """Boolean support (|S| > threshold·max|S|) and its first/last occupied z index (-1 if none)."""
    with torch.no_grad():
        # |S|² from real ops is ~3× faster than S.abs(); fall back to |S| where |S|² could under- or
        # overflow at the threshold level
        s2 = torch.addcmul(S.real.square(), S.imag, S.imag)
        smax2 = float(s2.max()) if s2.numel() else 0.0
        if not math.isfinite(smax2):  # a NaN/Inf voxel would otherwise give an empty support, zero patterns
            refuse_non_finite(S)
        if smax2 > 0 and math.isfinite(smax2) and threshold**2 * smax2 >= torch.finfo(s2.dtype).tiny:
            sup = s2 > threshold**2 * smax2
        else:
            s_abs = S.abs()
            smax = float(s_abs.max()) if s_abs.numel() else 0.0
            sup = s_abs > threshold * smax if smax > 0 else torch.zeros_like(s_abs, dtype=torch.bool)
    occ = torch.nonzero(sup.any(dim=(1, 2))).flatten().tolist()
    return sup, (occ[0] if occ else -1), (occ[-1] if occ else -1)


def _occupied_width(proj: np.ndarray) -> int:
    """Width (voxels) of the occupied part of a periodic axis = length minus the largest empty gap."""
    n = proj.size
    if proj.all():
        return n
    occ = np.flatnonzero(proj)
    gaps = np.diff(np.concatenate([occ, [occ[0] + n]])) - 1
    return n - int(gaps.max())


def min_transverse_width(support: torch.Tensor | np.ndarray, spacing: Any, k0_dir: Any, kh_dir: Any
                         ) -> tuple[int | None, int | None]:
    """Smallest (ny, nx) in voxels so that neither drifting wave wraps back into the crystal.

    ``support``: ``(Z, Y, X)`` bool. A wave with lateral slope t = k⊥/kz moves |t|·D sideways over
    the support's z-extent D, so an axis needs occupied width + ⌈|t|·D / d⌉ voxels. An axis the
    support spans entirely is a laterally periodic crystal by intent: ``None`` (no limit).
    """
    sup = np.asarray(support.cpu() if torch.is_tensor(support) else support, dtype=bool)
    dz, dy, dx = (float(v) for v in spacing)
    u0, uh = _unit(k0_dir, "k0_dir"), _unit(kh_dir, "kh_dir")
    occ_z = np.flatnonzero(sup.any(axis=(1, 2)))
    if occ_z.size == 0:
        return 0, 0
    depth = (occ_z[-1] - occ_z[0] + 1) * dz
    out: list[int | None] = []
    for axis, comp, d in ((1, 1, dy), (2, 0, dx)):
        proj = sup.any(axis=(0, 3 - axis))
        if proj.all():
            out.append(None)
            continue
        slope = max(abs(u0[comp] / u0[2]), abs(uh[comp] / uh[2]))
        out.append(_occupied_width(proj) + math.ceil(slope * depth / d - 1e-9))
    return out[0], out[1]


def _check_wrap(sup: torch.Tensor, spacing: Any, u0: np.ndarray, uh: np.ndarray) -> None:
    ny, nx = min_transverse_width(sup, spacing, u0, uh)
    Z, Y, X = sup.shape
    if (ny is not None and ny > Y) or (nx is not None and nx > X):
        raise ValueError(
            f"transverse grid (ny, nx) = ({Y}, {X}) is too narrow: the obliquely drifting waves would "
            f"wrap around the periodic box back into the crystal; minimum (ny, nx) = "
            f"({ny if ny is not None else Y}, {nx if nx is not None else X}) voxels (pad the grid)")


def _rocking_delta(dq: torch.Tensor, uh: np.ndarray) -> torch.Tensor:
    """δ_j = Δq_jz + th·Δq_j⊥ (rad/m), ``(B, 1, 1)`` float64."""
    return (dq[:, 2] + (uh[0] * dq[:, 0] + uh[1] * dq[:, 1]) / uh[2])[:, None, None]


def _transverse_phase(shape: tuple[int, int], spacing: tuple[float, float, float], u: np.ndarray,
                      length: float, device: torch.device) -> torch.Tensor:
    """-(t·q⊥)·length for a drift of ``length`` m with slope t = u⊥/uz: float64, fft2 order, shape
    (Y, X), or (1, X) / (Y, 1) / (1, 1) when t has no y / x / any component (then
    :func:`.integrators.fourier_mul` transforms only the axes the drift moves along)."""
    _, dy, dx = spacing
    qy = 2 * math.pi * torch.fft.fftfreq(shape[0], d=dy, dtype=torch.float64, device=device)[:, None]
    qx = 2 * math.pi * torch.fft.fftfreq(shape[1], d=dx, dtype=torch.float64, device=device)[None, :]
    phase = torch.zeros((1, 1), dtype=torch.float64, device=device)
    if u[0] != 0:
        phase = phase - length * u[0] / u[2] * qx
    if u[1] != 0:
        phase = phase - length * u[1] / u[2] * qy
    return phase


def _drift(shape: tuple[int, int], spacing: tuple[float, float, float], u0: np.ndarray,
           uh: np.ndarray, dq: torch.Tensor, h: float, cdtype: torch.dtype) -> Drift:
    """Propagators of the marching frame for step h (phases in float64: they reach ~1e3 rad)."""
    delta = _rocking_delta(dq, uh)

    def u_mult(length: float) -> torch.Tensor:  # outer product of small exponentials: exp on (B,Y,X) is slow
        return (torch.exp(1j * _transverse_phase(shape, spacing, u0, length, dq.device)).to(cdtype)
                * torch.exp(1j * length * delta).to(cdtype))

    def v_mult(length: float) -> torch.Tensor | None:
        if uh[0] == 0 and uh[1] == 0:
            return None
        return torch.exp(1j * _transverse_phase(shape, spacing, uh, length, dq.device)).to(cdtype)

    return Drift(h=h, u_half=u_mult(h / 2), u_full=u_mult(h), v_half=v_mult(h / 2), v_full=v_mult(h))


def _march(U: torch.Tensor, V: torch.Tensor, ops: tuple[torch.Tensor, ...], drift: Drift, integrator: str,
           substeps: int, segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """March one chunk of angles through all steps of ``ops``, checkpointed over ``segments``
    z-segments when a gradient is needed (0: no checkpointing). RK4, and Strang with th ≠ 0 (with
    th = 0 :class:`.integrators.StrangAdjoint` marches all chunks)."""
    step = INTEGRATORS[integrator]
    n_ops = ops[0].shape[0]  # steps (strang) or voxels (rk4) along z
    n_seg = segments if torch.is_grad_enabled() and any(o.requires_grad for o in ops) else 0
    use_ckpt = n_seg > 0
    bounds = np.linspace(0, n_ops, max(1, min(n_seg, n_ops)) + 1).round().astype(int)
    for i0, i1 in zip(bounds[:-1], bounds[1:]):
        last = bool(i1 == n_ops)
        args = (U, V, *(o[i0:i1] for o in ops))
        fn = lambda u, v, *o, _last=last: step(u, v, o, drift, substeps, _last)  # noqa: E731
        U, V = checkpoint(fn, *args, use_reentrant=False) if use_ckpt else fn(*args)
    return U, V


ACTIVATION_BUDGET_BYTES = 1 << 30
"""Without an explicit ``checkpoint_segments``, the march is checkpointed only when the tensors
autograd would keep exceed this (1 GiB); below it recomputation would only cost time."""

_SAVED_PER_STEP = {"strang": 1, "rk4": 2}  # (B, Y, X) tensors kept per step (Strang: adjoint sweep)


def _segments(requested: int | None, n_steps: int, field_bytes: int, integrator: str) -> int:
    """Number of checkpoint segments: ``requested``, or ⌈√steps⌉ when the activations of an
    un-checkpointed march would exceed :data:`ACTIVATION_BUDGET_BYTES`, else 0 (none)."""
    if requested is not None:
        if int(requested) != requested or requested < 0:
            raise ValueError(f"checkpoint_segments must be a non-negative integer, got {requested!r}")
        return int(requested)
    if field_bytes * _SAVED_PER_STEP[integrator] * n_steps <= ACTIVATION_BUDGET_BYTES:
        return 0
    return math.ceil(math.sqrt(n_steps))


def _auto_chunk(B: int, shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> int:
    """Angles per chunk: on CPU about 8 working fields in a 2 MiB cache, but at least 8 angles (per-op
    dispatch overhead); on accelerators the whole batch (largest kernels)."""
    if device.type != "cpu":
        return B
    per_angle = shape[0] * shape[1] * torch.empty((), dtype=dtype).element_size()
    return max(1, min(B, max(8, (2 << 20) // (8 * per_angle))))


def exit_waves(S: torch.Tensor, spacing: Any, wavelength: float, k0_dir: Any, kh_dir: Any,
               chi0: complex, chih: complex, chihbar: complex, polarization: float,
               dq: Any, *, integrator: str = "strang", substeps: int = 1, return_e0: bool = False,
               checkpoint_segments: int | None = None, angle_chunk: int | None = None,
               check_wrap: bool = True, support_threshold: float = 1e-6
               ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Exit waves of the two-beam Takagi–Taupin equations (low-level, plain tensors and floats).

    Parameters
    ----------
    S : (Z, Y, X) complex64/complex128 tensor, crystal function s·e^{iφ} (s = |S|), any device.
    spacing : (dz, dy, dx) voxel sizes, m. wavelength : λ, m (|k| = 2π/λ).
    k0_dir, kh_dir : incident / diffracted directions in the grid frame, components (x, y, z),
        normalised here; both need a positive z component.
    chi0, chih, chihbar : susceptibilities χ0, χh, χh̄ (xrayutilities convention, Im χ0 > 0).
    polarization : C (1 for σ, cos 2θB for π).
    dq : (B, 3) rocking offsets Δq_j, rad/m, grid frame (x, y, z).
    integrator : "strang" (2nd order, exact local 2×2 exponential) or "rk4" (Lawson RK4, 4th order).
    substeps : integration steps per voxel along z.
    return_e0 : also return E0 on the exit plane.
    checkpoint_segments : z-segments for gradient checkpointing; default: ⌈√steps⌉ when S needs
        grad and the un-checkpointed activations would exceed ACTIVATION_BUDGET_BYTES, else none.
    angle_chunk : angles marched together (default: cache-sized chunks on CPU, all on GPU);
        smaller chunks also bound the recomputation memory of the backward pass.
    check_wrap : refuse (ValueError, with the minimum width) a transverse box so narrow that a
        drifting wave wraps into the crystal; the support is |S| > support_threshold·max|S|.

    Returns
    -------
    Eh : (B, Y, X) complex (dtype of S), in units of the incident amplitude, on the exit plane;
    with ``return_e0`` the tuple (Eh, E0), E0 also (B, Y, X).
    """
    sp = _check_inputs(S, spacing, float(wavelength), integrator, substeps)
    u0, uh = _unit(k0_dir, "k0_dir"), _unit(kh_dir, "kh_dir")
    dq = as_dq(dq, S.device)
    if angle_chunk is not None and (int(angle_chunk) != angle_chunk or angle_chunk < 1):
        raise ValueError(f"angle_chunk must be a positive integer or None, got {angle_chunk!r}")
    sup, z_first, z_last = _support_z_range(S.detach(), support_threshold)
    if check_wrap:
        _check_wrap(sup, sp, u0, uh)
    chunk = angle_chunk or _auto_chunk(dq.shape[0], S.shape[1:], S.dtype, S.device)
    Eh, E0 = _solve(S, sp, float(wavelength), u0, uh, (complex(chi0), complex(chih), complex(chihbar)),
                    float(polarization), dq, integrator, int(substeps), checkpoint_segments, chunk,
                    z_first, z_last, return_e0)
    return (Eh, E0) if return_e0 else Eh


def _solve(S: torch.Tensor, sp: tuple[float, float, float], lam: float,
           u0: np.ndarray, uh: np.ndarray, chis: tuple[complex, complex, complex], C: float, dq: torch.Tensor, integrator: str,
           substeps: int, segments: int | None, chunk: int, z_first: int, z_last: int, need_e0: bool
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """March all angles (in chunks) through the occupied z-range; free propagation elsewhere."""
    chi0, chih, chihbar = chis
    Z, Y, X = S.shape
    dz, B, cdtype, device = sp[0], dq.shape[0], S.dtype, S.device
    delta = _rocking_delta(dq, uh)
    if z_first < 0:  # no crystal
        E0 = torch.ones((B, Y, X), dtype=cdtype, device=device)
        return torch.zeros_like(E0), E0
    h = dz / substeps
    drift = _drift((Y, X), sp, u0, uh, dq, h, cdtype)
    k = 2 * math.pi / lam
    a0, ah = k / (2 * u0[2]), k / (2 * uh[2])
    Sc = S[z_first:z_last + 1]
    cp = Coupling(k11=1j * a0 * chi0, k12=1j * a0 * C * chihbar, k21=1j * ah * C * chih, k22=1j * ah * chi0)
    scaled = integrator == "strang" and drift.v_full is None
    ops = prepare_operators(integrator, Sc.abs(), Sc, cp, h, substeps, scaled)
    n_steps = (z_last - z_first + 1) * substeps
    segments = _segments(segments, n_steps, B * Y * X * S.element_size(), integrator)
    # entrance: E0 = 1 (uniform: the transverse half drift is trivial), Eh = 0
    lead = (torch.exp(0.5j * h * delta) if integrator == "strang" else torch.ones_like(delta)).to(cdtype)
    if scaled:  # hand-written adjoint sweep over all chunks; V = D_T W
        U, W = StrangAdjoint.apply(*ops[:3], drift.u_full, drift.u_half, lead, chunk, segments, need_e0)
        V = W * ops[3][-1]
    else:
        Us, Vs = [], []
        for i in range(0, B, chunk):
            U = lead[i:i + chunk].expand(-1, Y, X).contiguous()
            U, V = _march(U, torch.zeros_like(U), ops, drift.angles(i, i + chunk), integrator, substeps, segments)
            Us.append(U)
            Vs.append(V)
        U, V = (torch.cat(Us) if need_e0 else Us[0]), torch.cat(Vs)
    # back from the marching frame at the crystal's end, then free flight to the exit plane
    thick, tail = (z_last - z_first + 1) * dz, (Z - 1 - z_last) * dz
    G, E0 = V, U  # G = Eh e^{-iΔq·r} e^{iδ(thick + tail)} on the exit plane
    if tail > 0 and (uh[0] != 0 or uh[1] != 0):
        G = fourier_mul(G, torch.exp(1j * _transverse_phase((Y, X), sp, uh, tail, device)).to(cdtype))
    if need_e0:
        E0 = U * torch.exp(-1j * thick * delta).to(cdtype)
        if tail > 0:
            E0 = fourier_mul(E0, torch.exp(1j * _transverse_phase((Y, X), sp, u0, tail, device)).to(cdtype))
    py, px = _exit_phase(dq, (Y, X), sp, Z, cdtype, -(thick + tail) * delta[:, 0, 0])
    # G is a fresh tensor that no backward formula keeps: multiplied in place, the (B, Y, X) phase
    # is never built
    return G.mul_(py[:, :, None]).mul_(px[:, None, :]), E0


def _exit_phase(dq: torch.Tensor, shape: tuple[int, int], sp: tuple[float, float, float], Z: int,
                cdtype: torch.dtype, extra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """e^{iΔq·r + i·extra_j} on the exit plane as factors (B, Y) and (B, X) whose outer product per
    angle converts the marching frame back to Eh (``extra``: (B,) float64 per-angle phase; all
    phases in float64)."""
    dz, dy, dx = sp
    Y, X = shape
    y = (torch.arange(Y, dtype=torch.float64, device=dq.device) - Y // 2) * dy
    x = (torch.arange(X, dtype=torch.float64, device=dq.device) - X // 2) * dx
    z_exit = (Z - 1 - Z // 2 + 0.5) * dz
    px = torch.exp(1j * (dq[:, 0, None] * x + (dq[:, 2] * z_exit + extra)[:, None])).to(cdtype)  # (B, X)
    py = torch.exp(1j * dq[:, 1, None] * y).to(cdtype)  # (B, Y)
    return py, px


class TTEModel(TwoBeamModel):
    """Takagi–Taupin forward model (see :func:`exit_waves` for the physics and arguments).

    ``spacing_m`` (dz, dy, dx) m; ``wavelength_m`` m; ``k0_dir``, ``kh_dir`` grid-frame (x, y, z)
    directions; ``chi0``, ``chih``, ``chihbar`` complex; ``polarization`` C. Extra keyword
    arguments (``integrator``, ``substeps``, ``checkpoint_segments``, ``angle_chunk``,
    ``check_wrap``) are passed to :func:`exit_waves`.
    """

    def __init__(self, spacing_m: Any, wavelength_m: float, k0_dir: Any, kh_dir: Any, chi0: complex,
                 chih: complex, chihbar: complex, polarization: float, integrator: str = "strang",
                 substeps: int = 1, **options: Any) -> None:
        super().__init__()
        dummy = torch.zeros((1, 1, 1), dtype=torch.complex64)
        _check_inputs(dummy, spacing_m, float(wavelength_m), integrator, substeps)
        self.spacing_m = tuple(float(v) for v in spacing_m)
        self.wavelength_m = float(wavelength_m)
        self.k0_dir, self.kh_dir = _unit(k0_dir, "k0_dir"), _unit(kh_dir, "kh_dir")
        self.chi0, self.chih, self.chihbar = complex(chi0), complex(chih), complex(chihbar)
        self.polarization = float(polarization)
        self.integrator, self.substeps, self.options = integrator, int(substeps), dict(options)

    def _kwargs(self) -> dict[str, Any]:
        return dict(spacing=self.spacing_m, wavelength=self.wavelength_m, k0_dir=self.k0_dir,
                    kh_dir=self.kh_dir, chi0=self.chi0, chih=self.chih, chihbar=self.chihbar,
                    polarization=self.polarization)

    def exit_waves(self, S: torch.Tensor, dq: torch.Tensor) -> torch.Tensor:
        """``Eh`` on the exit plane, ``(B, Y, X)`` complex; S ``(Z, Y, X)``, dq ``(B, 3)`` rad/m."""
        return exit_waves(S, dq=dq, integrator=self.integrator, substeps=self.substeps,
                          **self._kwargs(), **self.options)

    def exit_fields(self, S: torch.Tensor, dq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Eh, E0)`` on the exit plane, each ``(B, Y, X)`` complex (E0 for flux checks)."""
        return exit_waves(S, dq=dq, integrator=self.integrator, substeps=self.substeps,
                          return_e0=True, **self._kwargs(), **self.options)
