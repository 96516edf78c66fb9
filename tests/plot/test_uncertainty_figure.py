"""Uncertainty figure: one row per quantity, one colour scale per row, signed means and non-negative spreads."""

from __future__ import annotations

import numpy as np
import pytest

from dynbcdi.plot import uncertainty_figure


def _maps(strain: bool) -> dict[str, np.ndarray]:
    z, y, x = np.meshgrid(*(np.arange(8) - 4.0,) * 3, indexing="ij")
    inside = x**2 + y**2 + z**2 < 9
    maps = {"displacement_mean_m": np.where(inside, 1e-11 * x, np.nan),
            "displacement_std_m": np.where(inside, 1e-12 * (1 + np.abs(z)), np.nan)}
    if strain:
        maps.update(strain_mean=np.where(inside, 1e-4 * y, np.nan), strain_std=np.where(inside, 2e-5, np.nan))
    return maps


@pytest.mark.parametrize("strain", [True, False])
def test_rows_and_shared_scales(strain):
    fig = uncertainty_figure(_maps(strain), (5e-9, 5e-9, 5e-9), percentile=100)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3 * (4 if strain else 2)
    rows = [images[i:i + 3] for i in range(0, len(images), 3)]
    for row in rows:
        assert len({im.get_clim() for im in row}) == 1  # one scale per quantity over its three cuts
    assert rows[0][0].get_clim() == pytest.approx((-20.0, 20.0))  # mean u: ±max |u| inside, 2 voxels × 10 pm
    assert rows[1][0].get_clim() == pytest.approx((0.0, 3.0))  # spread: from 0, in pm (1 + |z|, |z| ≤ 2 inside)


def test_missing_displacement_maps_are_refused():
    with pytest.raises(ValueError, match="displacement_std_m"):
        uncertainty_figure({"displacement_mean_m": np.zeros((4, 4, 4))})
    with pytest.raises(ValueError, match="shape"):
        uncertainty_figure({"displacement_mean_m": np.zeros((4, 4, 4)), "displacement_std_m": np.zeros((4, 4))})
