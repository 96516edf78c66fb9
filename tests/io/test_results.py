"""Reconstruction result files: CXI/HDF5 and .npz round trips."""

import h5py
import numpy as np
import pytest

from dynbcdi.io.results import load_result, save_result


def _payload():
    rng = np.random.default_rng(1)
    obj = (rng.normal(size=(3, 4, 5)) + 1j * rng.normal(size=(3, 4, 5))).astype(np.complex64)
    support = np.abs(obj) > 1
    metadata = {"material": "Au", "hkl": [2, 0, 0], "energy_eV": 8000.0, "h_dir_grid": np.array([0.0, 0.6, 0.8])}
    history = {"loss": [3.0, 2.0, 1.5], "error": np.array([0.5, 0.2, 0.1])}
    return obj, support, metadata, history


@pytest.mark.parametrize("suffix", [".cxi", ".h5", ".npz"])
def test_result_round_trip(tmp_path, suffix):
    obj, support, metadata, history = _payload()
    path = save_result(tmp_path / f"r{suffix}", obj, (3e-9, 2e-9, 1e-9), support, metadata, history)
    res = load_result(path)
    assert res.obj.dtype == np.complex64 and res.obj.shape == (3, 4, 5)
    np.testing.assert_array_equal(res.obj, obj)
    np.testing.assert_array_equal(res.support, support)
    assert res.spacing_m == (3e-9, 2e-9, 1e-9)
    assert res.metadata["material"] == "Au" and res.metadata["hkl"] == [2, 0, 0]
    assert res.metadata["energy_eV"] == 8000.0
    np.testing.assert_array_equal(res.metadata["h_dir_grid"], [0.0, 0.6, 0.8])
    np.testing.assert_array_equal(res.history["loss"], [3.0, 2.0, 1.5])
    with pytest.raises(FileExistsError):
        save_result(path, obj, (1, 1, 1))
    save_result(path, obj * 2, (1, 1, 1), overwrite=True)
    np.testing.assert_array_equal(load_result(path).obj, obj * 2)


def test_cxi_layout(tmp_path):
    obj, support, metadata, history = _payload()
    path = save_result(tmp_path / "r.cxi", obj, (3e-9, 2e-9, 1e-9), support, metadata, history)
    with h5py.File(path, "r") as f:
        assert f["cxi_version"][()] == 150
        assert f["entry_1/image_1/data"].shape == (3, 4, 5)
        assert f["entry_1/image_1/x_pixel_size"][()] == 1e-9
        assert f["entry_1/image_1/process_1/program"][()] == b"dynbcdi"


def test_result_bad_input(tmp_path):
    obj, *_ = _payload()
    with pytest.raises(ValueError, match="complex"):
        save_result(tmp_path / "a.cxi", obj.real, (1, 1, 1))
    with pytest.raises(ValueError, match="must end"):
        save_result(tmp_path / "a.txt", obj, (1, 1, 1))
    with pytest.raises(ValueError, match="support shape"):
        save_result(tmp_path / "a.npz", obj, (1, 1, 1), support=np.ones((2, 2, 2), bool))
