"""Round trip of the dataset files (.cxi and .npz): data, mask, geometry, constants, truth."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from dynbcdi.geometry import aps34idc_geometry
from dynbcdi.io import Dataset, load_dataset, save_dataset
from dynbcdi.materials import reflection_constants


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    refl = reflection_constants("Au", (1, 1, 1), 9000.0)
    geo = aps34idc_geometry(9000.0, 2 * refl.bragg_angle_rad, 0.0, np.linspace(-1e-3, 1e-3, 5),
                            (6, 7), 55e-6, 1.5, h_norm=refl.h_norm)
    rng = np.random.default_rng(0)
    valid = np.ones((5, 6, 7), dtype=bool)
    valid[:, 2, 3] = False
    truth = (rng.random((4, 6, 7)) * np.exp(1j * rng.random((4, 6, 7)))).astype(np.complex64)
    return Dataset(
        intensity=rng.poisson(5.0, (5, 6, 7)).astype(np.float64), valid=valid, geometry=geo,
        reflection=refl, spacing_m=(3e-8, 2e-8, 1e-8), truth=truth,
        metadata={"preset": "test", "n": 3, "stack": np.arange(6.0).reshape(2, 3)},
    )


def _assert_same(a: Dataset, b: Dataset) -> None:
    for name in ("intensity", "valid", "truth"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y)
    assert b.spacing_m == a.spacing_m
    # Every geometry/reflection field comes back bit-identical (floats stored as float64).
    for obj_a, obj_b in ((a.geometry, b.geometry), (a.reflection, b.reflection)):
        assert type(obj_a) is type(obj_b)
        for f in dataclasses.fields(obj_a):
            va, vb = getattr(obj_a, f.name), getattr(obj_b, f.name)
            if isinstance(va, np.ndarray):
                np.testing.assert_array_equal(va, vb)
            else:
                assert va == vb, f.name
                for kind in (str, int, float, complex, tuple):  # np.float64 counts as float
                    assert isinstance(va, kind) == isinstance(vb, kind), (f.name, kind)
    assert b.metadata["preset"] == "test" and b.metadata["n"] == 3
    np.testing.assert_array_equal(b.metadata["stack"], a.metadata["stack"])
    np.testing.assert_array_equal(b.geometry.dq_lab(), a.geometry.dq_lab())


@pytest.mark.parametrize("suffix", [".cxi", ".npz"])
def test_round_trip(tmp_path, dataset, suffix):
    path = save_dataset(dataset, tmp_path / f"scan{suffix}")
    _assert_same(dataset, load_dataset(path))
    with pytest.raises(FileExistsError):
        save_dataset(dataset, path)
    save_dataset(dataset, path, overwrite=True)


def test_cxi_layout(tmp_path, dataset):
    path = save_dataset(dataset, tmp_path / "scan.cxi")
    with h5py.File(path, "r") as f:
        assert f["cxi_version"][()] == 150
        assert f["entry_1/data_1/data"].shape == (5, 6, 7)
        det = f["entry_1/instrument_1/detector_1"]
        assert det["distance"][()] == 1.5 and det["x_pixel_size"][()] == 55e-6
        # CXI mask convention: nonzero = bad pixel.
        np.testing.assert_array_equal(det["mask"][()] != 0, ~dataset.valid)
        energy_j = f["entry_1/instrument_1/source_1/energy"][()]
        assert energy_j == pytest.approx(9000.0 * 1.602176634e-19, rel=1e-12)
        assert f["entry_1/dynbcdi/reflection/chih"].dtype.kind == "c"


def test_bad_paths(tmp_path, dataset):
    with pytest.raises(ValueError, match=".cxi or .npz"):
        save_dataset(dataset, tmp_path / "scan.h5")
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "missing.cxi")
    with pytest.raises(ValueError, match="valid shape"):
        Dataset(np.zeros((2, 3, 4)), np.ones((3, 3), bool), dataset.geometry, dataset.reflection, (1, 1, 1))
