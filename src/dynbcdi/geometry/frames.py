"""Orthonormal frames and exact rotations.

Vectors are numpy arrays of shape ``(..., 3)``. A :class:`GridFrame` holds the three grid axes
(x̂, ŷ, ẑ) expressed in the lab frame; ``to_grid`` returns components ``(x, y, z)`` (component 0
= x), as required by docs/CONVENTIONS.md. Rotations are exact (Rodrigues form through
:class:`scipy.spatial.transform.Rotation`), right-handed: a positive angle about an axis â turns
vectors counter-clockwise when â points at the viewer.

Goniometer circles are written as in xrayutilities (``"y+"`` = right-handed rotation about +y,
``"x-"`` = about −x), the notation the APS 34-ID-C beamline software (cohere-beamlines) uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

# Tolerance on unit norms / orthogonality of user-supplied directions: loose enough for values
# typed with ~8 significant digits, tight enough to catch real mistakes (a 0.01° error is 1.7e-4).
UNIT_TOL = 1e-6

_AXES = {"x": 0, "y": 1, "z": 2}


def as_vector(value: ArrayLike, name: str) -> np.ndarray:
    """Return ``value`` as a finite float64 3-vector, shape (3,); ValueError naming ``name``."""
    v = np.asarray(value, dtype=float)
    if v.shape != (3,):
        raise ValueError(f"{name} must be a 3-vector, got shape {v.shape}: {value!r}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite, got {v}")
    return v.copy()


def unit(value: ArrayLike, name: str) -> np.ndarray:
    """Return ``value`` / |value| (shape (3,)); ValueError if it is (nearly) zero."""
    v = as_vector(value, name)
    n = np.linalg.norm(v)
    if not n > 0:
        raise ValueError(f"{name} must be a non-zero vector, got {v}")
    return v / n


def check_unit(value: ArrayLike, name: str) -> np.ndarray:
    """Return ``value`` (shape (3,)) after checking |value| = 1 within :data:`UNIT_TOL`."""
    v = as_vector(value, name)
    n = np.linalg.norm(v)
    if abs(n - 1.0) > UNIT_TOL:
        raise ValueError(f"{name} must be a unit vector, got {v} with norm {n:.9g}")
    return v / n


def circle_axis(circle: str) -> np.ndarray:
    """Signed rotation axis (3,) of an xrayutilities circle string such as ``"y+"`` or ``"x-"``."""
    if not isinstance(circle, str) or len(circle) != 2 or circle[0] not in _AXES or circle[1] not in "+-":
        raise ValueError(f"circle must be one of 'x+', 'x-', 'y+', 'y-', 'z+', 'z-', got {circle!r}")
    axis = np.zeros(3)
    axis[_AXES[circle[0]]] = 1.0 if circle[1] == "+" else -1.0
    return axis


def rotation(axis: ArrayLike, angle_rad: ArrayLike) -> Rotation:
    """Exact right-handed rotation(s) by ``angle_rad`` (scalar or (N,)) about the unit ``axis`` (3,)."""
    a = unit(axis, "rotation axis")
    angles = np.asarray(angle_rad, dtype=float)
    return Rotation.from_rotvec(angles[..., None] * a)


def rotate(axis: ArrayLike, angle_rad: ArrayLike, v: ArrayLike) -> np.ndarray:
    """Rotate the 3-vector ``v`` (3,) by each angle (scalar or (N,)) about ``axis``; (3,) or (N, 3)."""
    return rotation(axis, angle_rad).apply(np.array(v, dtype=float))


def circles_rotation(circles: tuple[str, ...], angles_rad: tuple[float, ...]) -> Rotation:
    """Rotation of a stack of goniometer circles, listed outermost first (xrayutilities order).

    The innermost circle acts first on a vector attached to the sample or detector arm, so the
    composed rotation is R_outer · … · R_inner.
    """
    if len(circles) != len(angles_rad):
        raise ValueError(f"{len(circles)} circles {circles} but {len(angles_rad)} angles {angles_rad}")
    total = Rotation.identity()
    for circle, angle in zip(circles, angles_rad):
        total = total * Rotation.from_rotvec(float(angle) * circle_axis(circle))
    return total


@dataclass(frozen=True, eq=False)
class GridFrame:
    """Right-handed orthonormal grid axes expressed in the lab frame.

    Attributes
    ----------
    x, y, z : (3,) float64
        Unit vectors of the grid axes in lab coordinates; ``x × y = z``.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    def __post_init__(self) -> None:
        vecs = [check_unit(getattr(self, n), f"GridFrame.{n}") for n in ("x", "y", "z")]
        m = np.stack(vecs)
        err = np.abs(m @ m.T - np.eye(3)).max()
        if err > UNIT_TOL:
            raise ValueError(f"GridFrame axes are not orthonormal (max |MMᵀ − I| = {err:.3g})")
        det = np.linalg.det(m)
        if det < 0:
            raise ValueError(f"GridFrame axes are left-handed (det = {det:.6f}); flip one axis")
        for name, v in zip(("x", "y", "z"), vecs):
            v.setflags(write=False)
            object.__setattr__(self, name, v)

    @classmethod
    def from_z_and_x(cls, z_dir: ArrayLike, x_hint: ArrayLike) -> GridFrame:
        """Frame with ẑ ∥ ``z_dir`` and x̂ = ``x_hint`` projected ⟂ ẑ (made exactly orthonormal)."""
        z = unit(z_dir, "z direction")
        xh = as_vector(x_hint, "x direction hint")
        x = xh - (xh @ z) * z
        if np.linalg.norm(x) < 1e-8 * max(np.linalg.norm(xh), 1e-300):
            raise ValueError(f"x direction hint {xh} is parallel to z direction {z}")
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        return cls(x=x, y=y, z=z)

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) matrix whose rows are x̂, ŷ, ẑ (lab components): v_grid = M @ v_lab."""
        return np.stack([self.x, self.y, self.z])

    def to_grid(self, v_lab: ArrayLike) -> np.ndarray:
        """Lab components (..., 3) → grid components (..., 3) ordered (x, y, z)."""
        return np.asarray(v_lab, dtype=float) @ self.matrix.T

    def to_lab(self, v_grid: ArrayLike) -> np.ndarray:
        """Grid components (..., 3) ordered (x, y, z) → lab components (..., 3)."""
        return np.asarray(v_grid, dtype=float) @ self.matrix
