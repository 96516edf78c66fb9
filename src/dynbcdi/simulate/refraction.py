"""Predicted refraction shift of the rocking-curve peak (paper Fig. 2b).

Derivation (PHYSICS.md convention, n = 1 + χ0/2 with Re χ0 < 0). A plane wave k0 entering a
crystal face with inward unit normal n̂ keeps its tangential component; inside,
|k0'|² = k²(1 + Re χ0) gives k0' = k0 + δ0 n̂ with δ0 = k Re χ0 / (2 γ0), γ0 = k̂0·n̂ > 0.
The integrated intensity over the detector is largest when the *internal* wave satisfies the Bragg
condition for the rocked lattice vector h(θ) = R(θ) h: 2 k0'·h(θ) + h² = 0. With 2 k0·h + h² = 0
at θ = 0 and h(θ) ≈ h + θ dΔq/dθ, dΔq/dθ = â × h:

    Δθ_refr = −δ0 (n̂·h) / (k0 · (â × h))

Only the entrance face matters (the exit face deflects the diffracted beam on the detector but does
not change the integrated intensity). For â ⟂ the scattering plane, k0·(â × h) = −k|h| cos θB and

    Δθ_refr = Re χ0 (n̂·ĥ) / (2 γ0 cos θB),

which for the symmetric Bragg case (entrance face ⟂ h, n̂ = −ĥ, γ0 = sin θB) is the textbook
Δθ = −Re χ0 / sin 2θB (Authier, *Dynamical Theory of X-ray Diffraction*, §4.5: centre of the Bragg
reflection domain; Als-Nielsen & McMorrow, *Elements of Modern X-ray Physics*, §6.4). For the
asymmetric Bragg case it reproduces −Re χ0 (1 + 1/|b|)/(2 sin 2θB), b = γ0/γh, and it is 0 for a
face parallel to h (Laue entrance through a side face). It is positive since Re χ0 < 0 and
n̂·ĥ < 0 for a face the beam enters at a glancing angle to the diffracting planes.

For a finite convex crystal, each voxel is lit through the face its backward ray −k̂0 crosses; the
predicted shift of the rocking-curve centroid is the volume-weighted mean over voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dynbcdi.simulate.shapes import grid_coordinates


def symmetric_bragg_shift_rad(chi0: complex, bragg_angle_rad: float) -> float:
    """Δθ = −Re χ0 / sin 2θB (rad): refraction shift for an entrance face ⟂ h."""
    return float(-np.real(chi0) / np.sin(2 * bragg_angle_rad))


def face_shift_rad(inward_normal: np.ndarray, k0: np.ndarray, h: np.ndarray, rocking_axis: np.ndarray,
                   chi0: complex) -> float:
    """Δθ_refr = −δ0 (n̂·h) / (k0·(â × h)) (rad) for an entrance face of inward normal n̂.

    All vectors (3,) in one frame: k0 (rad/m), h (rad/m), n̂ and â unit. ValueError if the beam
    does not enter through that face (k̂0·n̂ <= 0).
    """
    n = np.asarray(inward_normal, float) / np.linalg.norm(inward_normal)
    k = np.linalg.norm(k0)
    gamma0 = float(np.dot(k0, n) / k)
    if gamma0 <= 0:
        raise ValueError(f"the incident beam does not enter through a face of inward normal {n} (γ0 = {gamma0:.3g})")
    delta0 = k * np.real(chi0) / (2 * gamma0)
    return float(-delta0 * np.dot(n, h) / np.dot(k0, np.cross(rocking_axis, h)))


def entrance_faces(normals: np.ndarray, distances_m: Sequence[float], s: np.ndarray, spacing_m: Sequence[float],
                   k0_dir: np.ndarray) -> np.ndarray:
    """Index of the entrance facet of each voxel of a convex polyhedron, (Z, Y, X) int (−1 outside).

    normals : (F, 3) outward unit normals, distances_m : (F,) plane distances from the grid origin,
    k0_dir : (3,) incident direction; all in the grid frame (x, y, z). The backward ray r − t k̂0
    leaves the crystal through the lit facet (n·k̂0 < 0) with the smallest t.
    """
    n = np.asarray(normals, float)
    d = np.asarray(distances_m, float)
    u = np.asarray(k0_dir, float) / np.linalg.norm(k0_dir)
    x, y, z = np.broadcast_arrays(*grid_coordinates(s.shape, spacing_m))
    t = np.full((n.shape[0], *s.shape), np.inf)
    for i, (ni, di) in enumerate(zip(n, d)):
        rate = -float(ni @ u)
        if rate > 0:
            t[i] = (di - (ni[0] * x + ni[1] * y + ni[2] * z)) / rate
    face = np.argmin(t, axis=0)
    return np.where(s > 0.5, face, -1)


def predicted_shift_rad(normals: np.ndarray, distances_m: Sequence[float], s: np.ndarray,
                        spacing_m: Sequence[float], k0: np.ndarray, h: np.ndarray, rocking_axis: np.ndarray,
                        chi0: complex) -> tuple[float, dict[int, tuple[float, float]]]:
    """Volume-weighted refraction shift (rad) of a convex polyhedral crystal, grid frame.

    Returns (mean Δθ, {facet index: (volume fraction lit through it, its Δθ)}).
    k0, h (3,) rad/m and rocking_axis (3,) unit, all grid-frame components.
    """
    faces = entrance_faces(normals, distances_m, s, spacing_m, k0)
    weights = np.where(faces >= 0, s, 0.0)
    total = weights.sum()
    if total <= 0:
        raise ValueError("the crystal shape is empty")
    table: dict[int, tuple[float, float]] = {}
    for i in np.unique(faces[faces >= 0]):
        frac = float(weights[faces == i].sum() / total)
        table[int(i)] = (frac, face_shift_rad(-np.asarray(normals[i]), k0, h, rocking_axis, chi0))
    return float(sum(f * dt for f, dt in table.values())), table
