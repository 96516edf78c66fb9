"""Regime diagnosis: does a crystal of this size and shape need the dynamical model?

Given a crystal shape (a support on the grid frame of a Bragg geometry) and the two-beam constants
of the reflection, :func:`diagnose_regime` returns, before any reconstruction:

* the crystal thickness along ĥ divided by the symmetric-Bragg extinction length t_B and by the
  absorption length 1/μ (:class:`dynbcdi.materials.ReflectionConstants`);
* the predicted refraction shift of the rocking-curve peak, Δθ = Re χ0 (n̂·ĥ)/(2 γ0 cos θB) per
  entrance face, volume-averaged over the voxels with the face each one is lit through
  (:mod:`dynbcdi.simulate.refraction`; here the faces are found on the voxel mask);
* the phase error a kinematic reconstruction would show, and the verdict.

Estimator of the kinematic phase error (cheap, < 1 s at the default 32³). The shape is resampled
onto a coarse isotropic grid (≤ ``max_points`` per axis, wide enough for the drift of the beams)
and its rocking scan is simulated with the TTE model (:func:`dynbcdi.forward.tte.exit_waves`,
Strang, one step per voxel) at N ≥ Z angles whose Δq_z fill the z Nyquist band [−π/dz, π/dz)
uniformly. Then the *kinematic inversion* of the complex TTE exit waves is computed: the object O
on the true support whose kinematic exit waves (:func:`dynbcdi.forward.kinematic.kinematic_exit_waves`)
are closest, in least squares, to the TTE ones. With ẑ ∥ kh the kinematic model is, per detector-
conjugate column (y, x), Eh_j = i ah C χh dz e^{iΔq_j⊥·r⊥} Σ_z O(z) e^{iΔq_jz z}, so the inversion is
one small least-squares problem per column (a pseudo-inverse per distinct column support). By
Parseval this is also the object whose kinematic far field best matches the complex dynamical
far field: it is what a kinematic phase retrieval converges to when it finds the measured phases and
the true support — the best case of kinematic phasing, so the error is a lower bound. In the weak-
coupling limit the default TTE march equals the kinematic sum exactly, so O = S and the error is 0
by construction; refraction (χ0), absorption, extinction and multiple scattering (χh χh̄) produce
the error. The phase error is the RMS of arg O inside the support (true object: unstrained, phase
0) after the global phase and the linear ramp are removed; the ramp is the one that centres the
Bragg peak of O (the maximum of |Σ O e^{−ig·r}|), as phase retrieval of measured data does,
since the absolute Bragg angle of a measured scan is not known to the kinematic model. The same
inversion of the TTE without the back-coupling χh̄ (:class:`~dynbcdi.forward.kinematic.RefractionKinematicModel`)
gives the part due to refraction and absorption alone.

The phase of the TTE inversion *relative to* that of the refraction-only model, arg(O·Ō_refr),
is the part that no refraction/absorption correction of a kinematic result (an optical-path
correction computed on its support) removes: extinction and multiple scattering.

Criterion (``threshold_rad``, default 0.1 rad, ≈ 3 pm of displacement along h for Au (200)):
"kinematic is enough" when the predicted kinematic phase error (Bragg peak centred) is below it,
else "dynamical needed". For Au (200) cubes at 9 keV (t_B = 260 nm) the error grows about linearly
with the edge (0.065 rad at 0.15 µm, 0.125 rad at 0.3 µm, 0.32 rad at 1 µm), so the default
threshold is crossed near 0.24 µm ≈ 0.9 t_B: the textbook rule "dynamical effects matter once the
crystal is about one extinction length thick", now with a number for the user's own shape. The
threshold is the user's choice: the dynamical reconstructions of this project aim at ≤ 0.05 rad
(issue 12), and at that level a 0.15 µm Au cube already needs a refraction correction. Up to
~1 µm almost all of the error of a cube with a face ⟂ h is refraction: most of it is lit through
the side faces in Laue geometry, where the relevant coupling length is the Laue Pendellösung
distance (2.3 µm at 9 keV), not t_B (docs/PHYSICS.md §Regime diagnosis).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage
import scipy.optimize
import torch

from dynbcdi.geometry import BraggGeometry, GridFrame, generic_geometry
from dynbcdi.geometry.frames import rotate

DEFAULT_THRESHOLD_RAD = 0.1
_MARGIN = 2  # empty voxels on each side of the coarse grid


@dataclass(frozen=True)
class RegimeDiagnosis:
    """Result of :func:`diagnose_regime` (SI units; phases in rad RMS inside the support)."""

    size_m: float                      # crystal thickness along ĥ
    extinction_length_m: float         # symmetric-Bragg t_B for the polarization used
    absorption_length_m: float         # 1/μ
    refraction_shift_rad: float        # predicted shift of the rocking-curve peak (> 0: larger angle)
    phase_error_rad: float             # kinematic phase error, Bragg peak centred (linear ramp removed)
    phase_error_no_ramp_rad: float     # the same with the ramp of the true Bragg angle kept
    refraction_phase_error_rad: float  # the same for the refraction/absorption-only model (χh̄ = 0)
    beyond_refraction_phase_error_rad: float  # RMS arg(O·Ō_refr): extinction and multiple scattering
    amplitude_error: float             # ‖c|O| − s‖/‖s‖ inside the support, best scale c
    threshold_rad: float
    grid_shape: tuple[int, int, int]   # coarse simulation grid (z, y, x)
    voxel_m: float
    n_angles: int
    seconds: float

    @property
    def size_over_extinction(self) -> float:
        """Thickness along ĥ / extinction length."""
        return self.size_m / self.extinction_length_m

    @property
    def size_over_absorption(self) -> float:
        """Thickness along ĥ / absorption length."""
        return self.size_m / self.absorption_length_m

    @property
    def kinematic_enough(self) -> bool:
        """True when the predicted kinematic phase error is below ``threshold_rad``."""
        return self.phase_error_rad < self.threshold_rad

    @property
    def verdict(self) -> str:
        """"kinematic is enough" or "dynamical needed"."""
        return "kinematic is enough" if self.kinematic_enough else "dynamical needed"

    def report(self) -> str:
        """Plain-text table, one quantity per line, ending with the verdict line."""
        shift = self.refraction_shift_rad
        z, y, x = self.grid_shape
        rows = [
            ("crystal thickness along h", f"{self.size_m * 1e6:.3f} µm"),
            ("thickness / extinction length", f"{self.size_over_extinction:.2f}"
             f"   (t_B = {self.extinction_length_m * 1e9:.1f} nm)"),
            ("thickness / absorption length", f"{self.size_over_absorption:.3f}"
             f"   (1/μ = {self.absorption_length_m * 1e6:.3f} µm)"),
            ("predicted refraction shift", f"{shift * 1e6:+.1f} µrad = {math.degrees(shift):+.5f}°"),
            ("kinematic phase error", f"{self.phase_error_rad:.3f} rad RMS (Bragg peak centred)"),
            ("  with the true Bragg angle", f"{self.phase_error_no_ramp_rad:.3f} rad RMS (no ramp removed)"),
            ("  refraction/absorption alone", f"{self.refraction_phase_error_rad:.3f} rad RMS"),
            ("  beyond refraction", f"{self.beyond_refraction_phase_error_rad:.3f} rad RMS "
                                    "(extinction, multiple scattering)"),
            ("kinematic amplitude error", f"{self.amplitude_error:.3f}"),
            ("estimated on", f"{z}×{y}×{x} grid, {self.voxel_m * 1e9:.1f} nm voxels, {self.n_angles} angles, "
                             f"{self.seconds:.2f} s"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
        op = "<" if self.kinematic_enough else "≥"
        lines.append(f"verdict: {self.verdict} (predicted kinematic phase error {self.phase_error_rad:.3f} rad "
                     f"{op} {self.threshold_rad:g} rad)")
        return "\n".join(lines)


def _centres(shape: Sequence[int], spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates (x, y, z) in m, broadcastable to (Z, Y, X), origin at index n//2."""
    (nz, ny, nx), (dz, dy, dx) = shape, spacing
    return (((np.arange(nx) - nx // 2) * dx)[None, None, :], ((np.arange(ny) - ny // 2) * dy)[None, :, None],
            ((np.arange(nz) - nz // 2) * dz)[:, None, None])


def _check_support(support: np.ndarray, spacing_m: Sequence[float]) -> tuple[np.ndarray, tuple[float, float, float]]:
    s = np.asarray(support)
    if s.ndim != 3:
        raise ValueError(f"support must be a 3-D (Z, Y, X) array, got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.number) and s.dtype != bool:
        raise ValueError(f"support must be a boolean or numeric mask, got dtype {s.dtype}")
    s = s.astype(float)
    if not np.all(np.isfinite(s)):
        raise ValueError("support has NaN or infinite values")
    inside = s > 0.5 * s.max() if s.max() > 0 else np.zeros(s.shape, bool)
    if not inside.any():
        raise ValueError("support is empty: no voxel above half its maximum")
    sp = tuple(float(v) for v in spacing_m)
    if len(sp) != 3 or not all(math.isfinite(v) and v > 0 for v in sp):
        raise ValueError(f"spacing_m must be three positive voxel sizes (dz, dy, dx) in m, got {spacing_m!r}")
    return inside, sp  # type: ignore[return-value]


def coarse_support(support: np.ndarray, spacing_m: Sequence[float], k0_dir: np.ndarray, kh_dir: np.ndarray,
                   max_points: int = 32) -> tuple[np.ndarray, float]:
    """Resample a support onto an isotropic grid of at most ``max_points`` per axis.

    support : (Z, Y, X) bool or float mask on the grid frame, voxel ``spacing_m`` (dz, dy, dx) m.
    k0_dir, kh_dir : (3,) beam directions (x, y, z) in that frame, both with a positive z component.
    The voxel d is chosen so that the crystal plus the lateral drift of the beams across its depth
    (|k⊥/kz| · depth) plus two empty voxels each side fit in ``max_points``; the crystal is centred.
    Returns (coarse bool (Zc, Yc, Xc), d in m). Linear interpolation of the mask, threshold 0.5.
    """
    inside, sp = _check_support(support, spacing_m)
    if max_points < 8:
        raise ValueError(f"max_points must be >= 8, got {max_points}")
    x, y, z = (np.broadcast_to(c, inside.shape)[inside] for c in _centres(inside.shape, sp))
    lo = np.array([x.min(), y.min(), z.min()]) - 0.5 * np.array(sp[::-1])
    hi = np.array([x.max(), y.max(), z.max()]) + 0.5 * np.array(sp[::-1])
    ext = hi - lo
    u0, uh = np.asarray(k0_dir, float), np.asarray(kh_dir, float)
    slope = [max(abs(u0[a] / u0[2]), abs(uh[a] / uh[2])) for a in (0, 1)]
    need = np.array([ext[0] + slope[0] * ext[2], ext[1] + slope[1] * ext[2], ext[2]])  # x, y, z
    d = float(need.max() / (max_points - 2 * _MARGIN - 1))
    n_xyz = [min(max_points, int(math.ceil(n / d)) + 2 * _MARGIN + 1) for n in need]
    shape = (n_xyz[2], n_xyz[1], n_xyz[0])
    cx, cy, cz = _centres(shape, (d, d, d))
    centre = 0.5 * (lo + hi)
    fine = [((c + centre[a]) / sp[2 - a]) + inside.shape[2 - a] // 2 for a, c in enumerate((cx, cy, cz))]
    coords = np.array(np.broadcast_arrays(fine[2], fine[1], fine[0]))
    values = scipy.ndimage.map_coordinates(inside.astype(float), coords, order=1, mode="constant", cval=0.0)
    coarse = values >= 0.5
    if coarse.sum() < 8:
        raise ValueError(f"the crystal covers fewer than 8 voxels of the {shape} diagnosis grid")
    return coarse, d


def band_angles(geometry: BraggGeometry, frame: GridFrame, dz_m: float, n_angles: int) -> tuple[np.ndarray, np.ndarray]:
    """Rocking angles (N,) rad whose Δq_z fill [−π/dz, π/dz) in N equal steps, and their exact Δq
    (N, 3) rad/m in ``frame`` (x, y, z). ValueError when rocking does not move q along ẑ."""
    rate = frame.to_grid(np.cross(geometry.rocking_axis, geometry.h))[2]  # dΔq_z/dθ at θ = 0
    if abs(rate) < 1e-9 * geometry.k_norm:
        raise ValueError("the rocking axis moves q only transversely to ẑ: no sampling along the beam")
    qz = 2 * np.pi / (n_angles * dz_m) * (np.arange(n_angles) - n_angles // 2)
    theta = qz / rate
    dq = frame.to_grid(rotate(geometry.rocking_axis, theta, geometry.h) - geometry.h)
    return theta, dq


def kinematic_inversion(Eh: np.ndarray, dq: np.ndarray, support: np.ndarray, d_m: float, wavelength_m: float,
                        kh_dir: np.ndarray, coupling: complex) -> np.ndarray:
    """Least-squares object O on ``support`` whose kinematic exit waves match ``Eh``.

    Eh : (N, Y, X) complex exit waves (incident amplitude 1); dq : (N, 3) rad/m (x, y, z);
    support : (Z, Y, X) bool on an isotropic grid of voxel ``d_m``; kh_dir (3,) with kh ∥ ẑ
    (kinematic exit waves of different columns are then independent); coupling = C χh.
    Returns O (Z, Y, X) complex, 0 outside the support (module docstring).
    """
    uh = np.asarray(kh_dir, float) / np.linalg.norm(kh_dir)
    if abs(uh[0]) > 1e-9 or abs(uh[1]) > 1e-9:
        raise ValueError(f"kinematic_inversion needs kh along ẑ, got kh_dir = {kh_dir}")
    Z, Y, X = support.shape
    x, y, z = (c.ravel() for c in _centres(support.shape, (d_m,) * 3))
    ah = (2 * np.pi / wavelength_m) / 2
    transverse = np.exp(-1j * (dq[:, 0, None, None] * x + dq[:, 1, None, None] * y[:, None]))
    G = (Eh * transverse / (1j * ah * coupling * d_m)).reshape(len(dq), -1)
    A = np.exp(1j * dq[:, 2, None] * z)  # (N, Z): Σ_z O(z) e^{iΔq_z z}, voxel-centre sum (Strang limit)
    cols = support.reshape(Z, -1)
    O = np.zeros((Z, Y * X), complex)
    keys, groups = np.unique(np.packbits(cols.T, axis=1), axis=0, return_inverse=True)
    groups = groups.ravel()
    for g in range(keys.shape[0]):
        members = np.flatnonzero(groups == g)
        zi = np.flatnonzero(cols[:, members[0]])
        if zi.size:
            O[np.ix_(zi, members)] = np.linalg.pinv(A[:, zi]) @ G[:, members]
    return O.reshape(Z, Y, X)


def _peak_ramp(O: np.ndarray, support: np.ndarray, d_m: float) -> np.ndarray:
    """g (3,) rad/m (x, y, z) maximising |Σ_support O e^{−ig·r}|: the Bragg-peak position of O.

    Start at the maximum of a 4× zero-padded FFT, then L-BFGS on the exact |F(g)|²."""
    pad = [4 * n for n in O.shape]
    spec = np.abs(np.fft.fftn(np.where(support, O, 0), s=pad, axes=(0, 1, 2)))
    peak = np.unravel_index(int(np.argmax(spec)), spec.shape)
    g0 = np.array([2 * np.pi * np.fft.fftfreq(n, d_m)[i] for n, i in zip(pad, peak)])[::-1]
    x, y, z = (np.broadcast_to(c, O.shape)[support] for c in _centres(O.shape, (d_m,) * 3))
    r, o = np.stack([x, y, z], axis=1), O[support]

    def cost(g: np.ndarray) -> tuple[float, np.ndarray]:
        w = o * np.exp(-1j * (r @ g))
        F = w.sum()
        grad = 2 * np.real(np.conj(F) * (-1j) * (r * w[:, None]).sum(0))
        return -abs(F) ** 2 / abs(o).sum() ** 2, -grad / abs(o).sum() ** 2

    res = scipy.optimize.minimize(cost, g0, jac=True, method="L-BFGS-B")
    return res.x if -res.fun >= -cost(g0)[0] else g0


def phase_errors(O: np.ndarray, support: np.ndarray, d_m: float) -> tuple[float, float, float]:
    """(phase RMS with the Bragg peak centred, phase RMS without ramp removal, amplitude error).

    O : (Z, Y, X) complex apparent object, support (Z, Y, X) bool, isotropic voxel d_m. The true
    object is the unstrained shape (amplitude 1, phase 0 on the support); each phase RMS is taken
    after removing the global phase, the amplitude error after the best scale.
    """
    def rms(obj: np.ndarray) -> float:
        o = obj[support]
        return float(np.sqrt(np.mean(np.angle(o * np.exp(-1j * np.angle(o.sum()))) ** 2)))

    g = _peak_ramp(O, support, d_m)
    x, y, z = _centres(O.shape, (d_m,) * 3)
    centred = O * np.exp(-1j * (g[0] * x + g[1] * y + g[2] * z))
    a = np.abs(O[support])
    amp = float(np.linalg.norm(a * a.sum() / (a @ a) - 1) / math.sqrt(a.size))
    return rms(centred), rms(O), amp


def refraction_shift_of_mask(support: np.ndarray, d_m: float, k0: np.ndarray, h: np.ndarray,
                             rocking_axis: np.ndarray, chi0: complex) -> float:
    """Predicted refraction shift (rad) of the rocking-curve peak of a crystal given as a voxel mask.

    support : (Z, Y, X) bool, isotropic voxel d_m; k0 (3,) rad/m, h (3,) rad/m, rocking_axis (3,)
    unit, all grid frame (x, y, z). Each voxel is lit through the surface point where its backward
    ray −k̂0 leaves the mask (marched in 0.25-voxel steps); the inward normal there is the gradient
    of the mask smoothed by a 1-voxel Gaussian. The shift of that face,
    Δθ = −δ0 (n̂·h)/(k0·(â × h)) with δ0 = k Re χ0/(2γ0)
    (:func:`dynbcdi.simulate.refraction.face_shift_rad`),
    is averaged over the voxels. Voxels whose entrance face is grazing (γ0 < 0.05, only at edges of
    a voxelised surface) are left out: the formula diverges there while their share of the
    intensity does not.
    """
    k = float(np.linalg.norm(k0))
    u = np.asarray(k0, float) / k
    grad = np.stack([np.gradient(scipy.ndimage.gaussian_filter(support.astype(float), 1.0), d_m, axis=a)
                     for a in (2, 1, 0)], axis=-1)  # (Z, Y, X, 3) components (x, y, z)
    idx = np.argwhere(support).astype(float)  # (V, 3) as (iz, iy, ix)
    step = 0.25 * u[::-1]  # backward ray in index units (z, y, x), reversed below
    last = idx.copy()
    pos = idx.copy()
    alive = np.ones(len(idx), bool)
    for _ in range(4 * sum(support.shape)):
        pos[alive] -= step
        ijk = np.rint(pos).astype(int)
        ok = np.all((ijk >= 0) & (ijk < np.array(support.shape)), axis=1)
        still = np.zeros(len(idx), bool)
        still[ok] = support[tuple(ijk[ok].T)]
        alive &= still
        last[alive] = pos[alive]
        if not alive.any():
            break
    near = tuple(np.rint(last).astype(int).T)
    n = grad[near]
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    gamma0 = n @ u
    keep = gamma0 >= 0.05
    if not keep.any():
        raise ValueError("no voxel of the support has an entrance face the beam can enter")
    delta0 = k * np.real(chi0) / (2 * gamma0[keep])
    shifts = -delta0 * (n[keep] @ h) / float(np.dot(k0, np.cross(rocking_axis, h)))
    return float(shifts.mean())


def _tte_exit_waves(support: np.ndarray, d_m: float, wavelength_m: float, k0_dir: np.ndarray, kh_dir: np.ndarray,
                    chis: tuple[complex, complex, complex], C: float, dq: np.ndarray) -> np.ndarray:
    """(N, Y, X) complex TTE exit waves of the unstrained shape (complex128, Strang, 1 step/voxel)."""
    from dynbcdi.forward.tte import exit_waves

    S = torch.as_tensor(support.astype(np.complex128))
    with torch.no_grad():
        Eh = exit_waves(S, (d_m,) * 3, wavelength_m, k0_dir, kh_dir, *chis, C, torch.as_tensor(dq))
    return Eh.numpy()


def diagnose_regime(support: np.ndarray, spacing_m: Sequence[float], geometry: BraggGeometry, reflection,
                    polarization: str | float = "sigma", max_points: int = 32,
                    threshold_rad: float = DEFAULT_THRESHOLD_RAD) -> RegimeDiagnosis:
    """Diagnose whether kinematic phasing suffices for this crystal (module docstring).

    support : (Z, Y, X) bool or float mask of the crystal on the default grid frame of ``geometry``
        (``geometry.grid_frame()``: ẑ ∥ kh, x̂ = detector columns, ŷ = rows), voxel ``spacing_m``
        (dz, dy, dx) in m; e.g. the support of a kinematic reconstruction converted to the grid.
    reflection : :class:`dynbcdi.materials.ReflectionConstants` of the measured reflection.
    polarization : "sigma", "pi" or C. max_points : coarse-grid points per axis (cost ∝ max_points⁴).
    threshold_rad : the criterion on the predicted kinematic phase error.
    Returns a :class:`RegimeDiagnosis`; ``.report()`` formats it.
    """
    t0 = time.perf_counter()
    if not (math.isfinite(threshold_rad) and threshold_rad > 0):
        raise ValueError(f"threshold_rad must be > 0, got {threshold_rad!r}")
    from dynbcdi.simulate.shapes import extent_along

    f = geometry.grid_frame()  # ẑ ∥ kh: the kinematic inversion needs it
    inside, sp = _check_support(support, spacing_m)
    h_grid = f.to_grid(geometry.h)
    size = extent_along(inside.astype(float), sp, h_grid)
    k0_dir, kh_dir = geometry.beam_directions_grid(f)
    coarse, d = coarse_support(inside, sp, k0_dir, kh_dir, max_points)
    n_angles = max(coarse.shape[0], 16)
    _, dq = band_angles(geometry, f, d, n_angles)
    C = reflection.polarization(polarization)
    lam = reflection.wavelength_m
    chis = (reflection.chi0, reflection.chih, reflection.chihbar)
    objects = [kinematic_inversion(_tte_exit_waves(coarse, d, lam, k0_dir, kh_dir, chi, C, dq), dq, coarse, d, lam,
                                   kh_dir, C * chis[1])
               for chi in (chis, (chis[0], chis[1], 0j))]  # full TTE, then refraction/absorption only
    errors = [phase_errors(o, coarse, d) for o in objects]
    beyond = phase_errors(objects[0] * np.exp(-1j * np.angle(objects[1])), coarse, d)[0]
    shift = refraction_shift_of_mask(coarse, d, k0_dir * geometry.k_norm, h_grid, f.to_grid(geometry.rocking_axis),
                                     reflection.chi0)
    return RegimeDiagnosis(
        size_m=size, extinction_length_m=reflection.extinction_length_bragg(polarization),
        absorption_length_m=reflection.absorption_length_m, refraction_shift_rad=shift,
        phase_error_rad=errors[0][0], phase_error_no_ramp_rad=errors[0][1], refraction_phase_error_rad=errors[1][0],
        beyond_refraction_phase_error_rad=beyond,
        amplitude_error=errors[0][2], threshold_rad=float(threshold_rad), grid_shape=tuple(coarse.shape),
        voxel_m=d, n_angles=n_angles, seconds=time.perf_counter() - t0)


def reference_geometry(reflection) -> BraggGeometry:
    """Generic horizontal Bragg geometry of ``reflection`` (k0 along +z of the lab, rocking axis
    along k0 × h, :func:`dynbcdi.geometry.generic_geometry`): the frame of :func:`cube_support`."""
    return generic_geometry(reflection, [0.0], (64, 64), 55e-6, 1.0)


def cube_support(material: str, hkl: Sequence[int], edge_m: float, geometry: BraggGeometry,
                 points: int = 96, lattice_a_m: float | None = None, lattice_c_m: float | None = None
                 ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A cube of edge ``edge_m`` (m) with faces ⟂ the crystal axes a, b, c (the paper's Au cube: one
    face ⟂ h for (h00)), on ``points``³ voxels of the default grid frame of ``geometry``.

    Returns (support (Z, Y, X) bool, spacing (dz, dy, dx) m); the voxel is the cube's largest
    extent in the grid frame over ``points − 4``.
    """
    from dynbcdi.materials import load_crystal
    from dynbcdi.simulate import shapes
    from dynbcdi.simulate.sample import crystal_rotation

    if not (math.isfinite(edge_m) and edge_m > 0):
        raise ValueError(f"cube edge must be a positive length in m, got {edge_m!r}")
    crystal = load_crystal(material, lattice_a_m=lattice_a_m, lattice_c_m=lattice_c_m)
    h_grid = geometry.grid_frame().to_grid(geometry.h)
    axes = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
    rotation = crystal_rotation(crystal, hkl, h_grid, axes)
    dirs = np.array([crystal.lattice.GetPoint(*uvw) for uvw in axes], dtype=float)
    edges = edge_m * (dirs / np.linalg.norm(dirs, axis=1)[:, None]) @ rotation.T
    normals, distances = shapes.parallelepiped_facets(edges)
    corners = np.array([[i, j, k] for i in (-.5, .5) for j in (-.5, .5) for k in (-.5, .5)]) @ edges
    d = float((corners.max(0) - corners.min(0)).max() / (points - 4))
    s = shapes.polyhedron((points,) * 3, (d,) * 3, normals, distances)
    return s > 0.5, (d, d, d)
