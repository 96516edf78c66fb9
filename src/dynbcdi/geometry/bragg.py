"""Bragg geometry of a rocking scan: wave vectors, Δq_j, grid frame and sampling bases.

Frames
------
*Lab frame*: whatever frame k0, kh, h and the detector vectors are given in. The constructors of
this package use the APS 34-ID-C convention of the beamline software (cohere-beamlines, through
xrayutilities ``QConversion``): +z along the incident beam, +y vertical up, +x horizontal
completing the right-handed frame (x = y × z, to the left seen along the beam); see
:mod:`dynbcdi.geometry.beamlines`.

*Grid frame* (``docs/PHYSICS.md``): right-handed orthonormal (x̂, ŷ, ẑ), by default
ẑ ∥ kh (the detector normal), x̂ = detector column direction, ŷ = detector row direction, so that
``intensity[j, row, col]`` has row ↔ y and col ↔ x. Any ẑ with k0·ẑ > 0 and kh·ẑ > 0 is
accepted. :class:`BraggGeometry` insists that the detector vectors satisfy
col × row = +k̂h; a detector whose pixel axes are left-handed seen from the sample must have its
row axis reversed on reading (``intensity[:, ::-1, :]`` and ``detector_row_dir → −detector_row_dir``),
so the grid frame is never silently mirrored.

*Detector-conjugate frame*: the data index (j, row, col) maps to the 3-D momentum transfer
(relative to h, crystal frame at the scan centre)

    Q(j, row, col) = q_det(row, col) − Δq_j,

PHYSICS.md limit 1: the far field at pixel (row, col) and rocking angle θj probes
FT₃[S](q⊥ − Δq_j⊥, −Δq_jz) with the kernel e^{−iq·r}. Linearised about the scan centre this is
Q ≈ Q_c + B·(j − j_c, row − rows//2, col − cols//2) with the q-space basis
B = [−dΔq/dj, δq·row_dir, δq·col_dir], δq = 2π p/(λD) (:meth:`BraggGeometry.qspace_basis`).
The matching real-space basis R satisfies b_i·r_k = 2π δ_ik / N_k, i.e. Bᵀ R = 2π diag(1/N).

Rocking sign: h_j = R(â, θj) h with a right-handed rotation about the rocking axis â, and â is
required to satisfy â·(k0 × h) > 0, so that **a positive θ increases the glancing angle of k0 on
the diffracting planes**. The refraction shift of the dynamical rocking curve is then towards
positive θ (paper Fig. 2b).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from dynbcdi.geometry.frames import UNIT_TOL, GridFrame, as_vector, check_unit, rotate, rotation, unit

# Relative tolerance on |kh| = |k0| = 2π/λ and h = kh − k0 when a geometry is assembled by hand:
# geometries built from angles in float64 satisfy these to ~1e-15, typed values to ~1e-8.
WAVEVECTOR_RTOL = 1e-6
# A linear q-space basis needs (nearly) uniform rocking steps; motor read-backs jitter by ~1e-4.
ROCKING_STEP_RTOL = 1e-3


@runtime_checkable
class ReflectionLike(Protocol):
    """What geometry needs from :class:`dynbcdi.materials.ReflectionConstants`."""

    wavelength_m: float
    h_norm: float
    bragg_angle_rad: float
    energy_eV: float


def _positive(value: float, name: str) -> float:
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _frozen(v: np.ndarray) -> np.ndarray:
    v = np.array(v, dtype=float)
    v.setflags(write=False)
    return v


@dataclass(frozen=True, eq=False)
class BraggGeometry:
    """One Bragg reflection measured by a rocking scan, in a lab frame.

    Attributes
    ----------
    wavelength_m : float
        X-ray wavelength λ (m).
    k0, kh, h : (3,) float64, rad/m, lab frame
        Incident and diffracted wave vectors at the scan centre (|k0| = |kh| = 2π/λ) and the
        reciprocal-lattice vector at the Bragg position, h = kh − k0.
    rocking_axis : (3,) unit, lab frame
        â with â·(k0 × h) > 0 (positive angle increases the glancing angle), or â in the plane
        of k0 and h (glancing angle unchanged to first order; no 3-D detector-frame basis).
    rocking_angles_rad : (N,) float64
        Rocking offsets θj from the Bragg position (rad), in data order j = 0 … N−1.
    detector_distance_m, pixel_size_m : float
        Sample–detector distance D and (square) pixel size p (m).
    detector_shape : (rows, cols)
        Shape of one detector frame of the data.
    detector_row_dir, detector_col_dir : (3,) unit, lab frame
        Directions of increasing row and column index on the detector, ⟂ kh, with
        col × row = +k̂h. The pixel (rows//2, cols//2) sits on the kh direction.
    """

    wavelength_m: float
    k0: np.ndarray
    kh: np.ndarray
    h: np.ndarray
    rocking_axis: np.ndarray
    rocking_angles_rad: np.ndarray
    detector_distance_m: float
    pixel_size_m: float
    detector_shape: tuple[int, int]
    detector_row_dir: np.ndarray
    detector_col_dir: np.ndarray

    def __post_init__(self) -> None:
        lam = _positive(self.wavelength_m, "wavelength_m")
        set_ = partial(object.__setattr__, self)  # frozen dataclass: normalise fields once, here
        set_("wavelength_m", lam)
        set_("detector_distance_m", _positive(self.detector_distance_m, "detector_distance_m"))
        set_("pixel_size_m", _positive(self.pixel_size_m, "pixel_size_m"))
        set_("detector_shape", _detector_shape(self.detector_shape))
        set_("rocking_angles_rad", _frozen(_angles(self.rocking_angles_rad)))
        k0, kh, h = (as_vector(getattr(self, n), n) for n in ("k0", "kh", "h"))
        _check_wavevectors(lam, k0, kh, h)
        axis = check_unit(self.rocking_axis, "rocking_axis")
        _check_rocking_axis(axis, k0, h)
        khat = kh / np.linalg.norm(kh)
        row = check_unit(self.detector_row_dir, "detector_row_dir")
        col = check_unit(self.detector_col_dir, "detector_col_dir")
        _check_detector_dirs(row, col, khat)
        for name, v in (("k0", k0), ("kh", kh), ("h", h), ("rocking_axis", axis),
                        ("detector_row_dir", row), ("detector_col_dir", col)):
            set_(name, _frozen(v))

    # ------------------------------------------------------------------ basic quantities
    @property
    def k_norm(self) -> float:
        """|k| = 2π/λ (rad/m)."""
        return 2.0 * np.pi / self.wavelength_m

    @property
    def two_theta_rad(self) -> float:
        """Scattering angle 2θ between k0 and kh (rad)."""
        c = np.dot(self.k0, self.kh) / (np.linalg.norm(self.k0) * np.linalg.norm(self.kh))
        return float(np.arccos(np.clip(c, -1.0, 1.0)))

    @property
    def n_angles(self) -> int:
        """Number N of rocking angles."""
        return int(self.rocking_angles_rad.size)

    def dq_lab(self) -> np.ndarray:
        """Δq_j = R(â, θj) h − h for every rocking angle, (N, 3) lab frame, rad/m.

        Exact rotation (Rodrigues), so |h + Δq_j| = |h| and |Δq_j| = 2|h| sin(θj/2) when â ⟂ h.
        Sign: a positive θj increases the glancing angle of k0 on the planes (â·(k0 × h) > 0);
        for small θ, Δq_j ≈ θj â × h.
        """
        return rotate(self.rocking_axis, self.rocking_angles_rad, self.h) - self.h

    # ------------------------------------------------------------------ frames
    def grid_frame(self, z_dir_lab: ArrayLike | None = None) -> GridFrame:
        """Grid frame (orthonormal, right-handed) for the TTE solver.

        Default: ẑ = k̂h, x̂ = detector column direction, ŷ = detector row direction (exact,
        since col × row = +k̂h is enforced). With ``z_dir_lab`` (3,), ẑ ∥ z_dir_lab and x̂ is the
        column direction projected ⟂ ẑ; it must satisfy k0·ẑ > 0 and kh·ẑ > 0 so both waves
        march forward in z, otherwise ValueError saying which angle to change.
        """
        khat = self.kh / np.linalg.norm(self.kh)
        if z_dir_lab is None:
            return GridFrame.from_z_and_x(khat, self.detector_col_dir)
        z = unit(z_dir_lab, "z_dir_lab")
        self._check_forward(z)
        x_hint = self.detector_col_dir
        if np.linalg.norm(np.cross(z, x_hint)) < 1e-6:
            x_hint = np.cross(self.detector_row_dir, z)
        return GridFrame.from_z_and_x(z, x_hint)

    def _check_forward(self, z: np.ndarray) -> None:
        k0hat = self.k0 / np.linalg.norm(self.k0)
        khhat = self.kh / np.linalg.norm(self.kh)
        deg = np.degrees
        tilt = deg(np.arccos(np.clip(z @ khhat, -1, 1)))
        ang0 = deg(np.arccos(np.clip(z @ k0hat, -1, 1)))
        tth = deg(self.two_theta_rad)
        if z @ khhat <= 0:
            raise ValueError(
                f"kh·ẑ = {z @ khhat:.4f} ≤ 0: ẑ = {z} makes {tilt:.2f}° with the diffracted beam kh, "
                f"so the diffracted wave would travel backwards along ẑ; reduce the tilt of ẑ from kh "
                f"below 90°−2θ = {90 - tth:.2f}° (2θ = {tth:.2f}°), which also keeps k0·ẑ > 0")
        if z @ k0hat <= 0:
            raise ValueError(
                f"k0·ẑ = {z @ k0hat:.4f} ≤ 0: ẑ = {z} makes {ang0:.2f}° with the incident beam k0, "
                f"so the incident wave would travel backwards along ẑ; ẑ is tilted {tilt:.2f}° from "
                f"kh: reduce that tilt below 90°−2θ = {90 - tth:.2f}° (2θ = {tth:.2f}°), or tilt ẑ "
                f"from kh towards k0 instead")

    def _frame(self, frame: GridFrame | None) -> GridFrame:
        return self.grid_frame() if frame is None else frame

    def dq_grid(self, frame: GridFrame | None = None) -> np.ndarray:
        """Δq_j in grid components (x, y, z), (N, 3) rad/m (default frame: :meth:`grid_frame`)."""
        return self._frame(frame).to_grid(self.dq_lab())

    def beam_directions_grid(self, frame: GridFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Unit k0 and kh, each (3,) in grid components (x, y, z)."""
        f = self._frame(frame)
        return (f.to_grid(self.k0 / np.linalg.norm(self.k0)), f.to_grid(self.kh / np.linalg.norm(self.kh)))

    # ------------------------------------------------------------------ sampling
    @property
    def pixel_dq(self) -> float:
        """q step per detector pixel δq = 2π p/(λ D) (rad/m, small-angle)."""
        return 2.0 * np.pi * self.pixel_size_m / (self.wavelength_m * self.detector_distance_m)

    def transverse_spacing_m(self) -> tuple[float, float]:
        """(dy, dx) = (λD/(rows·p), λD/(cols·p)) in metres: grid steps conjugate to the detector."""
        rows, cols = self.detector_shape
        base = self.wavelength_m * self.detector_distance_m / self.pixel_size_m
        return (base / rows, base / cols)

    def grid_spacing_m(self, frame: GridFrame | None = None) -> tuple[float, float, float]:
        """Grid voxel (dz, dy, dx) in metres.

        dy, dx from :meth:`transverse_spacing_m` (the detector-conjugate transverse steps, which
        are the grid's own only in the default frame). dz = 2π / (N |b_j·ẑ|), b_j the q step per
        rocking index: N·dz is the real-space period along ẑ conjugate to the rocking scan. In the
        default frame (ẑ ∥ kh) the real-space step of the rocking index is exactly along ẑ (it is
        ⟂ to both detector q steps), so dz equals its length and the grid's z-extent equals the
        extent of the detector-conjugate field of view.
        """
        f = self._frame(frame)
        bj = self.qspace_basis(f)[:, 0]
        if abs(bj[2]) < 1e-12 * np.linalg.norm(bj):
            raise ValueError(
                "the rocking scan moves q only transversely to ẑ (b_j·ẑ = 0): "
                f"rocking axis {self.rocking_axis} gives no sampling along ẑ")
        dz = 2.0 * np.pi / (self.n_angles * abs(bj[2]))
        return (float(dz), *self.transverse_spacing_m())

    def rocking_step_rad(self) -> float:
        """Uniform rocking step dθ (rad); ValueError if N < 2 or steps differ by > 0.1 %."""
        th = self.rocking_angles_rad
        if th.size < 2:
            raise ValueError(f"need at least 2 rocking angles for a rocking step, got {th.size}")
        steps = np.diff(th)
        mean = float(np.mean(steps))
        if mean == 0 or np.max(np.abs(steps - mean)) > ROCKING_STEP_RTOL * abs(mean):
            raise ValueError(
                f"rocking angles are not uniformly spaced (steps {steps.min():.6g} … {steps.max():.6g} rad); "
                "a linear detector-frame basis needs a uniform scan")
        return mean

    def _scan_centre(self) -> tuple[float, float]:
        """(j_c, θ_c): fractional centre index and angle of the (uniform) scan."""
        th = self.rocking_angles_rad
        return (0.5 * (th.size - 1), 0.5 * float(th[0] + th[-1]))

    def qspace_basis(self, frame: GridFrame | None = None) -> np.ndarray:
        """(3, 3) grid-frame matrix B whose columns are the q step per index (j, row, col), rad/m.

        Column 0 = −dΔq/dj = −dθ · â × R(θ_c) h, linearised at the scan centre θ_c (the exact
        per-index q is :meth:`q_of_index`; the linear form errs by O(dθ²·j²)); columns 1, 2 =
        δq · row_dir and δq · col_dir, δq = 2πp/(λD) (paraxial; errs by O((p/D)²)).
        """
        f = self._frame(frame)
        _, th_c = self._scan_centre()
        h_c = rotate(self.rocking_axis, th_c, self.h)
        b_j = -self.rocking_step_rad() * np.cross(self.rocking_axis, h_c)
        lab = np.stack([b_j, self.pixel_dq * self.detector_row_dir, self.pixel_dq * self.detector_col_dir], axis=1)
        return f.matrix @ lab

    def realspace_basis(self, shape: tuple[int, int, int], frame: GridFrame | None = None) -> np.ndarray:
        """(3, 3) grid-frame matrix R, columns = real-space step (m) per detector-frame index.

        ``shape`` = (N_j, rows, cols) of the detector-frame array (may differ from the data, e.g.
        padded). R = 2π B⁻ᵀ diag(1/N), i.e. b_i·r_k = 2π δ_ik / N_k (Bᵀ R = 2π diag(1/N)), the
        sampling of an inverse DFT of the data along (j, row, col).
        """
        n = np.array(_positive_ints(shape, 3, "shape"), dtype=float)
        b = self.qspace_basis(frame)
        if abs(np.linalg.det(b)) < 1e-12 * np.prod(np.linalg.norm(b, axis=0)):
            raise ValueError("q-space basis is singular: the rocking direction lies in the detector plane")
        return 2.0 * np.pi * np.linalg.inv(b).T / n[None, :]

    def q_of_index(self, j: ArrayLike, row: ArrayLike, col: ArrayLike,
                   frame: GridFrame | None = None, linear: bool = False) -> np.ndarray:
        """3-D momentum transfer relative to h probed by data index (j, row, col), grid frame.

        Exact (``linear=False``): flat detector ⟂ kh at distance D, pixel (rows//2, cols//2) on kh;
        k' = k·unit(D k̂h + (row − rows//2) p row_dir + (col − cols//2) p col_dir), and in the
        crystal frame at the scan centre Q = R(θj)⁻¹(k' − k0) − h (= q_det − Δq_j to first order).
        ``linear=True``: Q_c + B·(j − j_c, row − rows//2, col − cols//2), B = :meth:`qspace_basis`.
        Integer arrays broadcast together; returns (..., 3) rad/m, components (x, y, z).
        """
        f = self._frame(frame)
        jj, rr, cc = np.broadcast_arrays(*(np.asarray(a) for a in (j, row, col)))
        if not all(np.issubdtype(a.dtype, np.integer) for a in (jj, rr, cc)):
            raise ValueError(f"indices must be integers, got dtypes {jj.dtype}, {rr.dtype}, {cc.dtype}")
        if jj.size and (jj.min() < 0 or jj.max() >= self.n_angles):
            raise ValueError(f"rocking index j out of range 0…{self.n_angles - 1}: {jj.min()}…{jj.max()}")
        rows, cols = self.detector_shape
        dr, dc = rr - rows // 2, cc - cols // 2
        if linear:
            j_c, th_c = self._scan_centre()
            q_c = f.to_grid(-self.dq_at(th_c))
            idx = np.stack([jj - j_c, dr, dc], axis=-1).astype(float)
            return q_c + idx @ self.qspace_basis(f).T
        khat = self.kh / np.linalg.norm(self.kh)
        in_plane = dr[..., None] * self.detector_row_dir + dc[..., None] * self.detector_col_dir
        pos = self.detector_distance_m * khat + self.pixel_size_m * in_plane
        k_out = self.k_norm * pos / np.linalg.norm(pos, axis=-1, keepdims=True)
        theta = self.rocking_angles_rad[jj]
        q = rotation(self.rocking_axis, -theta.ravel()).apply((k_out - self.k0).reshape(-1, 3)) - self.h
        return f.to_grid(q.reshape(jj.shape + (3,)))

    def dq_at(self, theta_rad: float) -> np.ndarray:
        """Δq (3,) lab frame for a single rocking offset θ (rad): R(â, θ) h − h."""
        return rotate(self.rocking_axis, theta_rad, self.h) - self.h


def _angles(value: ArrayLike) -> np.ndarray:
    a = np.atleast_1d(np.asarray(value, dtype=float))
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"rocking_angles_rad must be a non-empty 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"rocking_angles_rad must be finite, got {a}")
    if np.max(np.abs(a)) >= np.pi / 2:
        raise ValueError("rocking offsets must be below 90° in magnitude, "
                         f"got max {np.degrees(np.abs(a).max()):.3f}°")
    return a


def _positive_ints(value: ArrayLike, n: int, name: str) -> tuple[int, ...]:
    try:
        t = tuple(int(v) for v in value)
    except TypeError as exc:
        raise ValueError(f"{name} must be {n} positive integers, got {value!r}") from exc
    if len(t) != n or any(v <= 0 for v in t) or any(int(v) != v for v in value):
        raise ValueError(f"{name} must be {n} positive integers, got {value!r}")
    return t


def _detector_shape(value: ArrayLike) -> tuple[int, int]:
    return _positive_ints(value, 2, "detector_shape")  # type: ignore[return-value]


def _check_wavevectors(lam: float, k0: np.ndarray, kh: np.ndarray, h: np.ndarray) -> None:
    k = 2.0 * np.pi / lam
    for name, v in (("k0", k0), ("kh", kh)):
        n = np.linalg.norm(v)
        if abs(n - k) > WAVEVECTOR_RTOL * k:
            raise ValueError(f"|{name}| = {n:.9g} rad/m differs from 2π/λ = {k:.9g} rad/m (λ = {lam:.6g} m)")
    if np.linalg.norm(h) == 0:
        raise ValueError("h must be non-zero (kh = k0: no scattering)")
    mismatch = np.linalg.norm(h - (kh - k0))
    if mismatch > WAVEVECTOR_RTOL * np.linalg.norm(h):
        raise ValueError(f"h = {h} differs from kh − k0 = {kh - k0} by {mismatch:.4g} rad/m "
                         "(the sample must be at the Bragg position at θ = 0)")


def _check_rocking_axis(axis: np.ndarray, k0: np.ndarray, h: np.ndarray) -> None:
    s = axis @ np.cross(k0, h) / (np.linalg.norm(k0) * np.linalg.norm(h))
    # |s| ≈ 0: the axis lies in the plane of k0 and h, the glancing angle changes only at second
    # order and the sign convention is void (such a scan samples q in the detector plane only).
    if s < -1e-9:
        raise ValueError(f"rocking_axis {axis} has â·(k̂0 × ĥ) = {s:.4f} < 0: a positive angle would decrease "
                         "the glancing angle; pass −axis and negate the rocking angles (same rotations)")


def _check_detector_dirs(row: np.ndarray, col: np.ndarray, khat: np.ndarray) -> None:
    for name, v in (("detector_row_dir", row), ("detector_col_dir", col)):
        if abs(v @ khat) > UNIT_TOL:
            raise ValueError(f"{name} {v} is not ⟂ kh (dot with k̂h = {v @ khat:.3g})")
    if abs(row @ col) > UNIT_TOL:
        raise ValueError(f"detector_row_dir {row} and detector_col_dir {col} are not ⟂ (dot = {row @ col:.3g})")
    if np.cross(col, row) @ khat < 0:
        raise ValueError(
            f"detector axes are left-handed: col × row = {np.cross(col, row)} = −k̂h. Reverse the row axis "
            "of the data (intensity[:, ::-1, :]) and pass −detector_row_dir")


def generic_geometry(reflection: ReflectionLike, rocking_angles_rad: ArrayLike,
                     detector_shape: tuple[int, int], pixel_size_m: float, detector_distance_m: float,
                     scattering_plane: str = "horizontal") -> BraggGeometry:
    """Ideal geometry for simulations, in the 34-ID-C lab frame (+z beam, +y up).

    k0 = k ẑ; kh at 2θB from k0 in the ``scattering_plane`` ("horizontal": towards +x, like δ > 0,
    γ = 0 at 34-ID-C; "vertical": towards +y, like γ > 0); h = kh − k0. Detector ⟂ kh with the
    column direction in the scattering plane (towards increasing 2θ) and the row direction
    ⟂ to it (col × row = k̂h), so the default grid frame has x̂ in the scattering plane.
    Rocking axis ⟂ the scattering plane, along k0 × h (positive θ increases the glancing angle).
    """
    lam = _positive(reflection.wavelength_m, "reflection.wavelength_m")
    theta_b = float(reflection.bragg_angle_rad)
    if not (np.isfinite(theta_b) and 0 < theta_b < np.pi / 2):
        raise ValueError(f"reflection.bragg_angle_rad must lie in (0, π/2), got {theta_b!r}")
    k = 2.0 * np.pi / lam
    tth = 2.0 * theta_b
    in_plane = {"horizontal": np.array([1.0, 0.0, 0.0]), "vertical": np.array([0.0, 1.0, 0.0])}
    if scattering_plane not in in_plane:
        raise ValueError(f"scattering_plane must be 'horizontal' or 'vertical', got {scattering_plane!r}")
    e_z, e_p = np.array([0.0, 0.0, 1.0]), in_plane[scattering_plane]
    k0 = k * e_z
    kh = k * (np.cos(tth) * e_z + np.sin(tth) * e_p)
    h = kh - k0
    h_norm = _positive(reflection.h_norm, "reflection.h_norm")
    if abs(np.linalg.norm(h) - h_norm) > WAVEVECTOR_RTOL * h_norm:
        raise ValueError(f"reflection is inconsistent: 2k sin θB = {np.linalg.norm(h):.9g} rad/m but "
                         f"h_norm = {h_norm:.9g} rad/m")
    col = np.cos(tth) * e_p - np.sin(tth) * e_z
    row = np.cross(kh / k, col)
    return BraggGeometry(wavelength_m=lam, k0=k0, kh=kh, h=h, rocking_axis=unit(np.cross(k0, h), "k0 × h"),
                         rocking_angles_rad=rocking_angles_rad, detector_distance_m=detector_distance_m,
                         pixel_size_m=pixel_size_m, detector_shape=detector_shape,
                         detector_row_dir=row, detector_col_dir=col)
