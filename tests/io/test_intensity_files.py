"""`load_intensity` on small files in each program's layout, and on every kind of bad file."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
import tifffile

from dynbcdi.io.readers.intensity import load_intensity

SHAPE = (6, 8, 10)  # (frames, rows, cols): every axis a different length, so a transpose shows


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return np.random.default_rng(1).poisson(20.0, SHAPE).astype(np.float64)


def test_npy_is_read_as_stored(tmp_path, stack):
    np.save(tmp_path / "data.npy", stack.astype(np.float32))
    f = load_intensity(tmp_path / "data.npy")
    assert f.format == "npy" and f.valid is None and f.intensity.dtype == np.float64
    np.testing.assert_array_equal(f.intensity, stack)


def test_npz_data_key_and_pynx_mask_polarity(tmp_path, stack):
    mask = np.zeros(SHAPE[1:], np.int8)
    mask[2, 3] = 1  # PyNX/bcdi: nonzero = bad pixel
    np.savez(tmp_path / "pynx.npz", data=stack, mask=mask)
    f = load_intensity(tmp_path / "pynx.npz")
    assert f.metadata["member"] == "data"
    assert not f.valid[2, 3] and f.valid.sum() == mask.size - 1


def test_npz_several_stacks_need_data_path(tmp_path, stack):
    np.savez(tmp_path / "two.npz", a=stack, b=stack + 1)
    with pytest.raises(ValueError, match=r"two\.npz: several 3-D arrays \['a', 'b'\]; pick one with data_path"):
        load_intensity(tmp_path / "two.npz")
    np.testing.assert_array_equal(load_intensity(tmp_path / "two.npz", data_path="b").intensity, stack + 1)


def test_dynbcdi_dataset_npz_reads_its_valid(tmp_path, stack):
    valid = np.ones(SHAPE[1:], bool)
    valid[0, 0] = False
    np.savez(tmp_path / "ds.npz", intensity=stack, valid=valid, format_version=1)
    f = load_intensity(tmp_path / "ds.npz")
    assert f.metadata["member"] == "intensity" and not f.valid[0, 0] and f.valid.sum() == valid.size - 1


def test_tiff_stack_and_single_page(tmp_path, stack):
    tifffile.imwrite(tmp_path / "stack.tif", stack.astype(np.float32))
    f = load_intensity(tmp_path / "stack.tif")
    assert f.format == "tiff"
    np.testing.assert_array_equal(f.intensity, stack)
    tifffile.imwrite(tmp_path / "page.tif", stack[0].astype(np.float32))
    with pytest.raises(ValueError, match=r"page\.tif: a single \(8, 10\) image"):
        load_intensity(tmp_path / "page.tif")


def test_cohere_formatted_data_tif_and_npy(tmp_path, stack):
    """cohere keeps (col, row, frame) in memory, writes data.tif transposed, and stores amplitudes."""
    from cohere_core.utilities.utils import save_tif

    in_memory = np.transpose(np.sqrt(stack))  # cohere's data array: (x, y, z) amplitudes
    save_tif(in_memory, str(tmp_path / "data.tif"))
    f = load_intensity(tmp_path / "data.tif", amplitudes=True)
    np.testing.assert_allclose(f.intensity, stack, rtol=1e-5)  # float32 file
    np.save(tmp_path / "data.npy", in_memory)
    g = load_intensity(tmp_path / "data.npy", amplitudes=True, axes="xyz")
    np.testing.assert_allclose(g.intensity, stack, rtol=1e-12)


def test_pynx_cxi_layout(tmp_path, stack):
    """PyNX save_cdi_data_cxi: detector_1/data with the data_1 shortcut, mask nonzero = bad, energy in J."""
    with h5py.File(tmp_path / "pynx.cxi", "w") as f:
        det = f.create_group("entry_1/instrument_1/detector_1")
        det["data"] = stack
        det["mask"] = np.pad(np.ones((1, 1), np.int32), ((0, SHAPE[1] - 1), (0, SHAPE[2] - 1)))
        det["distance"], det["x_pixel_size"] = 0.5, 55e-6
        f["entry_1/instrument_1/source_1/energy"] = 9000.0 * 1.602176634e-19
        f.create_group("entry_1/data_1")["data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
    got = load_intensity(tmp_path / "pynx.cxi")
    np.testing.assert_array_equal(got.intensity, stack)
    assert not got.valid[0, 0] and got.valid.sum() == got.valid.size - 1
    assert got.metadata["energy_eV"] == pytest.approx(9000.0)
    assert got.metadata["detector_distance_m"] == 0.5 and got.metadata["pixel_size_m"] == 55e-6


def test_cdiutils_preprocessed_cxi(tmp_path, stack):
    """cdiutils S*_preprocessed_data.cxi: image_1/data + data_1 link, a 2-D mask in entry_1/detector_1."""
    with h5py.File(tmp_path / "S1_preprocessed_data.cxi", "w") as f:
        f["entry_1/image_1/data"] = stack
        f.create_group("entry_1/data_1")["data"] = h5py.SoftLink("/entry_1/image_1/data")
        f["entry_1/image_2/data"] = stack[:, :4, :4]  # the orthogonalised peak: not chosen
        f["entry_1/detector_1/mask"] = np.zeros(SHAPE[1:], np.int8)
    got = load_intensity(tmp_path / "S1_preprocessed_data.cxi")
    assert got.metadata["member"] == "entry_1/data_1/data" and got.valid.all()


def test_generic_hdf5_needs_data_path_when_ambiguous(tmp_path, stack):
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["scan/frames"] = stack
        f["scan/dark"] = np.zeros((2, 8, 10))
    with pytest.raises(ValueError, match=r"scan\.h5: several 3-D datasets"):
        load_intensity(tmp_path / "scan.h5")
    np.testing.assert_array_equal(load_intensity(tmp_path / "scan.h5", data_path="scan/frames").intensity, stack)
    with pytest.raises(ValueError, match=r"no dataset 'scan/nope'"):
        load_intensity(tmp_path / "scan.h5", data_path="scan/nope")


def _write(tmp_path, case: str, stack: np.ndarray):
    """A bad file of kind ``case``; returns (path, regex the one-line message must match)."""
    p = tmp_path / f"{case}.bin"
    if case == "missing":
        return tmp_path / "absent.npy", r"absent\.npy: no such"
    if case == "empty":
        p.write_bytes(b"")
        return p, r"empty file \(0 bytes\)"
    if case == "text":
        p.write_text("not data")
        return p, r"not a recognised intensity file"
    if case == "truncated_h5":
        with h5py.File(tmp_path / "full.h5", "w") as f:
            f.create_dataset("entry_1/data_1/data", data=stack, chunks=(1, 8, 10), compression="gzip")
        raw = (tmp_path / "full.h5").read_bytes()
        p.write_bytes(raw[: len(raw) // 2])
        return p, r"truncated or corrupt HDF5"
    if case == "truncated_npy":
        np.save(tmp_path / "full.npy", stack)
        p.write_bytes((tmp_path / "full.npy").read_bytes()[:200])
        return p, r"not a readable NumPy \.npy"
    if case == "truncated_npz":
        np.savez(tmp_path / "full.npz", data=stack)
        p.write_bytes((tmp_path / "full.npz").read_bytes()[:300])
        return p, r"not a readable NumPy \.npz"
    arrays = {"nan": np.where(stack > 25, np.nan, stack), "negative": stack - 100.0, "flat": stack[0],
              "complex": stack + 1j}
    np.save(p.with_suffix(".npy"), arrays[case])
    messages = {"nan": r"NaN/Inf", "negative": r"negative intensity", "flat": r"3-D \(frames, rows, cols\)",
                "complex": r"complex values: this is a reconstructed object"}
    return p.with_suffix(".npy"), messages[case]


@pytest.mark.parametrize("case", ["missing", "empty", "text", "truncated_h5", "truncated_npy", "truncated_npz",
                                  "nan", "negative", "flat", "complex"])
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, stack, case):
    path, message = _write(tmp_path, case, stack)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        load_intensity(path)
    text = str(info.value)
    assert text.startswith(str(path)) and "\n" not in text
    assert re.search(message, text), text


def test_wrong_mask_shape(tmp_path, stack):
    np.savez(tmp_path / "m.npz", data=stack, mask=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"m\.npz: mask .* has shape \(3, 3\), expected \(8, 10\)"):
        load_intensity(tmp_path / "m.npz")
