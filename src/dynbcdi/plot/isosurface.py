"""Off-screen 3-D isosurfaces (scikit-image marching cubes + matplotlib mplot3d), paper Fig. 3c–e."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection
from scipy import ndimage
from skimage.measure import marching_cubes

from dynbcdi.analysis.strain import check_spacing

__all__ = ["diffraction_isosurface", "crystal_isosurface"]


def _step(shape, max_cells: int) -> int:
    # marching-cubes step so that no axis has more than max_cells cells: keeps the mesh drawable.
    return max(1, int(np.ceil(max(shape) / max_cells)))


def _zoom(verts_list: list[np.ndarray], margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    # Common bounding box of all meshes (x, y, z) with a margin: the object fills the view.
    lo = np.min([v.min(axis=0) for v in verts_list], axis=0)
    hi = np.max([v.max(axis=0) for v in verts_list], axis=0)
    pad = margin * np.maximum(hi - lo, 1e-12)
    return lo - pad, hi + pad


def _finish_3d(ax, lo, hi, labels) -> None:
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), zlim=(lo[2], hi[2]))
    ax.set_box_aspect(tuple(hi - lo))
    for setter, lab in zip((ax.set_xlabel, ax.set_ylabel, ax.set_zlabel), labels):
        setter(lab, fontsize=8)
    ax.tick_params(labelsize=6)


def diffraction_isosurface(
    intensity: np.ndarray,
    levels: tuple[float, ...] | None = None,
    max_cells: int = 64,
) -> Figure:
    """Isosurfaces of log10 intensity of a detector-frame stack (N, rows, cols).

    levels : log10(intensity) iso-values; default four levels evenly spaced between 10 % and
    70 % of the way from log10(max) − 4 to log10(max) (clipped at the data). Axes: col, row,
    rocking-angle index (detector frame, paper Fig. 3c). Returns a Figure with one 3-D axes.
    """
    data = np.asarray(intensity, float)
    if data.ndim != 3 or min(data.shape) < 2:
        raise ValueError(f"intensity must be (N, rows, cols) with >= 2 per axis, got {data.shape}")
    if not np.any(data > 0):
        raise ValueError("intensity has no positive value")
    log_i = np.log10(np.clip(data, data[data > 0].min(), None))
    hi, lo = float(log_i.max()), max(float(log_i.min()), float(log_i.max()) - 4)
    if levels is None:
        levels = tuple(lo + f * (hi - lo) for f in (0.1, 0.3, 0.5, 0.7))
    bad = [lv for lv in levels if not log_i.min() < lv < hi]
    if bad:
        raise ValueError(f"levels {bad} outside the log10 intensity range ({log_i.min():.2f}, {hi:.2f})")
    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    cmap = colormaps["viridis"]
    step = _step(data.shape, max_cells)
    all_verts = []
    for i, lv in enumerate(sorted(levels)):
        verts, faces, _, _ = marching_cubes(log_i, level=lv, step_size=step)
        verts = verts[:, ::-1]  # (j, row, col) → plot (col, row, j)
        all_verts.append(verts)
        colour = cmap(i / max(len(levels) - 1, 1))
        alpha = 0.15 + 0.6 * i / max(len(levels) - 1, 1)  # outer shells transparent
        ax.add_collection3d(Poly3DCollection(verts[faces], facecolor=colour, alpha=alpha, edgecolor="none",
                                             linewidth=0, label=f"10^{lv:.1f}"))
    _finish_3d(ax, *_zoom(all_verts), ("column (pixel)", "row (pixel)", "rocking index"))
    ax.legend(title="log$_{10}$ I", fontsize=7, title_fontsize=7, loc="upper left")
    return fig


def _surface_phase(obj: np.ndarray, verts_idx: np.ndarray) -> np.ndarray:
    # Interpolate real and imaginary parts, not the wrapped phase, to avoid 2π jumps.
    coords = verts_idx.T
    re = ndimage.map_coordinates(obj.real, coords, order=1, mode="nearest")
    im = ndimage.map_coordinates(obj.imag, coords, order=1, mode="nearest")
    return np.angle(re + 1j * im)


def crystal_isosurface(
    objects: np.ndarray | dict[str, np.ndarray],
    spacing_m,
    level: float = 0.5,
    max_cells: int = 64,
) -> Figure:
    """Amplitude isosurface(s) of complex crystal(s) coloured by the phase on the surface.

    objects : (Z, Y, X) complex, or label → (Z, Y, X) complex (e.g. kinematic, dynamical; paper
    Fig. 3d–e), shown side by side with one shared phase colour scale (rad).
    spacing_m : (dz, dy, dx) m (axes in nm, x, y, z). level : fraction of each object's max amplitude.
    Returns a Figure with one 3-D axes per object + 1 colour-bar axes.
    """
    objs = {"": objects} if isinstance(objects, np.ndarray) else dict(objects)
    if not objs:
        raise ValueError("objects is empty")
    if not 0 < level < 1:
        raise ValueError(f"level must be a fraction of the maximum amplitude in (0, 1), got {level!r}")
    spacing = np.asarray(check_spacing(spacing_m)) * 1e9
    meshes = []
    for label, obj in objs.items():
        obj = np.asarray(obj)
        if obj.ndim != 3 or not np.iscomplexobj(obj):
            raise ValueError(f"object {label!r} must be a complex (Z, Y, X) array, got {obj.dtype} {obj.shape}")
        amp = np.abs(obj)
        verts, faces, _, _ = marching_cubes(amp, level=level * amp.max(), step_size=_step(obj.shape, max_cells))
        phase = _surface_phase(obj, verts)[faces].mean(axis=1)  # phase per triangle
        meshes.append((label, (verts * spacing)[:, ::-1], faces, phase))
    lim = max(float(np.abs(m[3]).max()) for m in meshes) or np.pi
    norm, cmap = Normalize(-lim, lim), colormaps["jet"]
    fig = Figure(figsize=(5 * len(meshes) + 1, 5), layout="constrained")
    lo, hi = _zoom([m[1] for m in meshes])
    for i, (label, verts, faces, phase) in enumerate(meshes):
        ax = fig.add_subplot(1, len(meshes), i + 1, projection="3d")
        ax.add_collection3d(Poly3DCollection(verts[faces], facecolor=cmap(norm(phase)), edgecolor="none",
                                             linewidth=0, antialiased=False))
        ax.set_title(label)
        _finish_3d(ax, lo, hi, ("x (nm)", "y (nm)", "z (nm)"))
    fig.colorbar(ScalarMappable(norm, cmap), ax=fig.axes, label="surface phase (rad)", shrink=0.6)
    return fig
