"""The six-component strain-tensor figure and the joint-result writer, on an analytic linear u field."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from matplotlib.image import imread

from dynbcdi.analysis.strain import strain_tensor
from dynbcdi.geometry.resample import GridSpec
from dynbcdi.io.vtk import read_vti
from dynbcdi.plot.strain_tensor_figure import STRAIN_COMPONENTS, component_means, strain_tensor_figure
from dynbcdi.reconstruct.crystal import CrystalField
from dynbcdi.reconstruct.multi_output import write_joint_result

matplotlib.use("Agg")

N, D = 12, 5e-9  # 12³ grid of 5 nm voxels
# Displacement gradient G[j, i] = ∂_i u_j (i, j over x, y, z), all entries distinct, ~1e-4.
G = np.array([[1.0, 0.4, -0.3], [-0.2, -2.0, 0.7], [0.5, 0.1, 3.0]]) * 1e-4
EXPECTED = {"xx": 1.0e-4, "yy": -2.0e-4, "zz": 3.0e-4, "xy": 0.1e-4, "xz": 0.1e-4, "yz": 0.4e-4}  # ½(G + Gᵀ)


def linear_field():
    """u(r) = G r on a centred N³ grid: (3, Z, Y, X) m with components (x, y, z), the support a ball."""
    c = (np.arange(N) - N // 2) * D
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    r = np.stack([x, y, z])
    u = np.tensordot(G, r, axes=1)
    support = x**2 + y**2 + z**2 < (0.45 * N * D) ** 2
    return u, support


def test_strain_tensor_of_linear_u_is_the_symmetric_gradient():
    u, support = linear_field()
    eps = strain_tensor(u, (D,) * 3, support)
    means = component_means(eps, support)
    for label, i, j in STRAIN_COMPONENTS:
        assert means[label] == pytest.approx(EXPECTED[label], rel=1e-9, abs=1e-15), label
        inside = eps[i, j][np.isfinite(eps[i, j])]
        assert inside.size > 100 and np.allclose(inside, EXPECTED[label], rtol=1e-9, atol=1e-15)


def test_figure_shows_the_six_components_on_one_scale(tmp_path):
    u, support = linear_field()
    eps = strain_tensor(u, (D,) * 3, support)
    fig = strain_tensor_figure(eps, support, (D,) * 3, cuts=("xy",))
    assert len(fig.axes) == 7  # six components + the colour bar
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 6
    lims = {ax.images[0].get_clim() for ax in images}
    assert len(lims) == 1  # one shared symmetric scale, in units of 1e-4, covering the largest component
    lo, hi = lims.pop()
    assert lo == -hi and hi == pytest.approx(3.0, rel=1e-6)
    for ax, (label, _, _) in zip(images, STRAIN_COMPONENTS):
        assert f"varepsilon_{{{label}}}" in ax.get_title()
        shown = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
        shown = shown[np.isfinite(shown)]
        assert shown.size > 20 and np.allclose(shown, EXPECTED[label] / 1e-4, rtol=1e-6), label
        assert f"{EXPECTED[label] / 1e-4:.3g}" in ax.get_title()
    assert any("10$^{-4}$" in ax.get_ylabel() for ax in fig.axes)  # the colour bar states the unit
    fig.savefig(tmp_path / "six.png", dpi=60)
    assert imread(tmp_path / "six.png").shape[2] in (3, 4)


def test_figure_three_cuts_and_bad_input():
    u, support = linear_field()
    eps = strain_tensor(u, (D,) * 3, support)
    fig = strain_tensor_figure(eps, support, (D,) * 3)
    assert sum(1 for ax in fig.axes if ax.images) == 3 * 6 and len(fig.axes) == 3 * 6 + 1
    with pytest.raises(ValueError, match="cuts"):
        strain_tensor_figure(eps, support, cuts=("xw",))
    with pytest.raises(ValueError, match="3, 3"):
        strain_tensor_figure(eps[0], support)
    with pytest.raises(ValueError, match="support shape"):
        strain_tensor_figure(eps, support[1:])


def test_write_joint_result_vti_and_png(tmp_path):
    u, support = linear_field()
    field = CrystalField(GridSpec((N,) * 3, (D,) * 3), support.astype(float), u, support=support)
    paths = write_joint_result(field, tmp_path / "joint")
    assert imread(paths["figure"]).ndim == 3
    arrays, spacing = read_vti(paths["vti"])
    assert np.allclose(spacing, (D,) * 3)
    assert arrays["u"].shape == (N, N, N, 3) and arrays["strain"].shape == (N, N, N, 9)
    strain = arrays["strain"].reshape(N, N, N, 3, 3)
    for label, i, j in STRAIN_COMPONENTS:
        vals = strain[..., i, j][np.isfinite(strain[..., i, j])]
        assert vals.size > 100 and np.allclose(vals, EXPECTED[label], rtol=1e-5), label
    with pytest.raises(FileExistsError, match="exists"):
        write_joint_result(field, tmp_path / "joint")
    write_joint_result(field, tmp_path / "joint", overwrite=True)
