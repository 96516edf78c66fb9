"""`load_object` on small files in PyNX, cdiutils, cohere and dynbcdi layouts; the cohere convention proof."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dynbcdi.io import load_result, save_result
from dynbcdi.io.readers.objects import load_object

SHAPE = (8, 10, 12)  # (frame, row, col), all different so that an axis mix-up shows


def _asymmetric_object(shape=SHAPE, seed: int = 0) -> np.ndarray:
    """A compact complex object with no inversion symmetry (its twin has a different pattern)."""
    rng = np.random.default_rng(seed)
    obj = np.zeros(shape, complex)
    core = tuple(slice(n // 2 - 2, n // 2 + 2) for n in shape)
    obj[core] = rng.uniform(0.5, 1.0, (4, 4, 4)) * np.exp(1j * rng.uniform(-2, 2, (4, 4, 4)))
    return obj


def dynbcdi_intensity(obj: np.ndarray) -> np.ndarray:
    """dynbcdi's detector-frame far field |fftshift(fftn(ifftshift(obj)))|² (docs/CONVENTIONS.md)."""
    return np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj)))) ** 2


def test_cohere_image_is_conjugated_and_axes_reversed(tmp_path):
    """A cohere solution of the data becomes a dynbcdi solution of the same data, and the naive reading does not.

    cohere (cohere-core 4, controller/phasing.py) holds the data in memory as (col, row, frame), shifts its
    centre to the corner, and fits |ifft(image)| (cohere's own nplib.ifft, kernel e^{+iq·r}) to it.
    """
    from cohere_core.lib.nplib import nplib

    rho = _asymmetric_object()
    intensity = dynbcdi_intensity(rho)  # the measured (frame, row, col) stack
    cohere_data = nplib.fftshift(np.transpose(intensity))  # cohere: read_tif transposes; data centre -> corner
    image = np.roll(np.transpose(np.conj(rho)), (1, -2, 3), axis=(0, 1, 2))  # a cohere solution, anywhere
    model = np.abs(nplib.ifft(image)) ** 2  # cohere's modulus constraint, norm='forward': unscaled inverse
    np.testing.assert_allclose(model, cohere_data, rtol=1e-9, atol=1e-9 * cohere_data.max())

    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "support.npy", np.abs(image) > 0)
    loaded = load_object(tmp_path / "image.npy")
    assert loaded.source_format == "cohere" and loaded.frame == "detector" and loaded.obj.shape == SHAPE
    np.testing.assert_allclose(dynbcdi_intensity(loaded.obj), intensity, rtol=1e-9, atol=1e-9 * intensity.max())
    np.testing.assert_array_equal(loaded.support, np.abs(loaded.obj) > 0)

    naive = np.transpose(image)  # axes reversed but not conjugated: the centro-symmetric (inverted) pattern
    mismatch = np.linalg.norm(dynbcdi_intensity(naive) - intensity) / np.linalg.norm(intensity)
    assert mismatch > 0.1


def test_pynx_run_cxi_cropped_object_is_padded_back(tmp_path):
    """PyNX CDI.save_obj_cxi(crop=...): entry_last, image_1/data + mask (support), iobs_shape in the config."""
    rho = _asymmetric_object()
    crop = rho[2:6, 3:7, 4:8]
    with h5py.File(tmp_path / "run.cxi", "w") as f:
        f["cxi_version"] = 150
        img = f.create_group("entry_1/image_1")
        img["data"] = crop.astype(np.complex64)
        img["mask"] = (np.abs(crop) > 0).astype(np.int8)
        img["support"] = h5py.SoftLink("/entry_1/image_1/mask")
        img["image_size"] = 1e-8 * np.array(crop.shape)
        img["process_1/program"] = "PyNX"
        img["process_1/configuration/iobs_shape"] = np.array(SHAPE)
        f["entry_1"].create_group("data_1")["data"] = h5py.SoftLink("/entry_1/image_1/data")
        f["entry_last"] = h5py.SoftLink("/entry_1")
    loaded = load_object(tmp_path / "run.cxi")
    assert loaded.source_format == "pynx" and loaded.frame == "detector" and loaded.spacing_m is None
    assert loaded.obj.shape == SHAPE and loaded.metadata["padded_from"] == crop.shape
    np.testing.assert_allclose(dynbcdi_intensity(loaded.obj), dynbcdi_intensity(rho), rtol=1e-5,
                               atol=1e-5 * dynbcdi_intensity(rho).max())  # same pattern: PyNX uses a forward FFT
    assert loaded.support.sum() == np.count_nonzero(rho)


@pytest.mark.parametrize("writer", ["cdiutils", "pynx-analysis"])
def test_mode_files_give_the_first_mode(tmp_path, writer):
    """cdiutils' S*_pynx_reconstruction_mode.cxi and PyNX's mode.h5: (modes, Z, Y, X), data_1 -> image_1."""
    modes = np.stack([_asymmetric_object(seed=1), _asymmetric_object(seed=2)]).astype(np.complex64)
    with h5py.File(tmp_path / "modes.cxi", "w") as f:
        if writer == "cdiutils":
            f.attrs["creator"] = "CdiUtils"
        f["entry_1/image_1/data"] = modes
        f.create_group("entry_1/data_1")["data"] = h5py.SoftLink("/entry_1/image_1/data")
        f["entry_1/data_2/data"] = np.array([0.9, 0.1])
    loaded = load_object(tmp_path / "modes.cxi")
    assert loaded.source_format == {"cdiutils": "cdiutils-modes", "pynx-analysis": "pynx-modes"}[writer]
    assert loaded.metadata["modes"] == 2 and loaded.frame == "detector"
    np.testing.assert_array_equal(loaded.obj, modes[0])


@pytest.mark.parametrize("suffix", [".cxi", ".npz"])
def test_dynbcdi_result_keeps_frame_and_spacing(tmp_path, suffix):
    rho = _asymmetric_object()
    path = save_result(tmp_path / f"r{suffix}", rho, (1e-8, 2e-8, 3e-8), np.abs(rho) > 0, {"frame": "grid"})
    loaded = load_object(path)
    assert loaded.source_format == "dynbcdi" and loaded.frame == "grid" and loaded.spacing_m == (1e-8, 2e-8, 3e-8)
    np.testing.assert_array_equal(loaded.obj, rho)


def test_result_cxi_has_the_layout_cdiutils_reads(tmp_path):
    """cdiutils' post-processing reads cxi['entry_1/data_1/data'][0] (BcdiPipeline._load_reconstruction)."""
    rho = _asymmetric_object()
    path = save_result(tmp_path / "r.cxi", rho, (1e-8, 1e-8, 1e-8), np.abs(rho) > 0)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["entry_1/data_1/data"][0], rho)
        np.testing.assert_array_equal(f["entry_last/image_1/data"][()], rho)
        np.testing.assert_array_equal(f["entry_1/image_1/mask"][()], np.abs(rho) > 0)
        np.testing.assert_allclose(f["entry_1/image_1/image_size"][()], 1e-8 * np.array(SHAPE))
        assert f["entry_1"].attrs["default"] == "data_1"


def test_old_result_layout_still_reads(tmp_path):
    """A result written before data_1/entry_last existed (image_1 + process_1 only)."""
    rho = _asymmetric_object()
    with h5py.File(tmp_path / "old.cxi", "w") as f:
        img = f.create_group("entry_1/image_1")
        img["data"], img["spacing_m"] = rho, np.array([1e-8, 1e-8, 1e-8])
        img["process_1/program"] = "dynbcdi"
    np.testing.assert_array_equal(load_result(tmp_path / "old.cxi").obj, rho)
    assert load_object(tmp_path / "old.cxi").source_format == "dynbcdi"


def test_result_without_voxel_size(tmp_path):
    rho = _asymmetric_object()
    for suffix in (".cxi", ".npz"):
        path = save_result(tmp_path / f"nospacing{suffix}", rho, None, metadata={"frame": "detector"})
        assert load_result(path).spacing_m is None and load_object(path).frame == "detector"


def test_generic_npz_object(tmp_path):
    rho = _asymmetric_object()
    np.savez(tmp_path / "obj.npz", obj=rho, support=np.abs(rho) > 0)
    loaded = load_object(tmp_path / "obj.npz")
    assert loaded.source_format == "npz" and loaded.frame is None and loaded.support.sum() == np.count_nonzero(rho)


@pytest.mark.parametrize("case, message", [
    ("missing", r"no such object file"),
    ("empty", r"empty file \(0 bytes\)"),
    ("text", r"not a recognised object file"),
    ("truncated", r"truncated or corrupt HDF5"),
    ("real", r"real-valued float64 array: an intensity or amplitude"),
    ("flat", r"must be a 3-D array"),
    ("nan", r"NaN/Inf values in the object"),
    ("support", r"support\.npy: support shape \(2, 2, 2\) differs"),
    ("dataset", r"no object: neither entry_1/image_1/data nor entry_1/data_1/data"),
])
def test_bad_object_files(tmp_path, case, message):
    rho = _asymmetric_object()
    path = tmp_path / "image.npy"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello")
    elif case in ("real", "flat", "nan", "support"):
        array = {"real": np.abs(rho), "flat": rho[0], "nan": np.where(np.abs(rho) > 0.9, np.nan, rho),
                 "support": rho}[case]
        np.save(path, array)
        if case == "support":
            np.save(tmp_path / "support.npy", np.ones((2, 2, 2)))
    elif case in ("truncated", "dataset"):
        path = tmp_path / "f.cxi"
        with h5py.File(path, "w") as f:
            f.create_dataset("entry_1/instrument_1/detector_1/data", data=np.abs(rho), chunks=(1, 10, 12),
                             compression="gzip")
        if case == "truncated":
            path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
        load_object(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(tmp_path)), text
