"""The CLI on other programs' files: `phase` on a plain PyNX/cohere-style array, `reconstruct --init` from cohere."""

from __future__ import annotations

import numpy as np
import pytest

from dynbcdi.cli.main import main
from dynbcdi.geometry import generic_geometry
from dynbcdi.io import Dataset, load_result, save_dataset
from dynbcdi.materials import reflection_constants

N = 8


def _crystal() -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(N) - N // 2] * 3, indexing="ij")
    amplitude = (np.abs(z) + np.abs(y) + np.abs(x) <= 2).astype(float)
    return amplitude * np.exp(0.5j * (x + 0.3 * y) / N)


def _intensity(obj: np.ndarray) -> np.ndarray:
    return 1e4 * np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj)))) ** 2 / np.sum(np.abs(obj) ** 2)


def test_phase_plain_array_with_separate_mask(tmp_path, capsys):
    np.save(tmp_path / "data.npy", _intensity(_crystal()))
    mask = np.zeros((N, N), np.int8)
    mask[0, 0] = 1  # nonzero = bad, as PyNX's mask=
    np.savez(tmp_path / "mask.npz", mask=mask)
    out = tmp_path / "run"
    code = main(["phase", str(tmp_path / "data.npy"), "--mask", str(tmp_path / "mask.npz"), "--out", str(out),
                 "--recipe", "shrinkwrap(start=10, every=10), (HIO**10, ER**10)**2, ER**10", "--no-progress"])
    captured = capsys.readouterr().out
    assert code == 0 and "no geometry" in captured and "grid-frame conversion needs the geometry" in captured
    assert sorted(p.name for p in out.iterdir()) == ["object_detector.npz"]
    det = load_result(out / "object_detector.npz")
    assert det.spacing_m is None and det.metadata["frame"] == "detector" and det.obj.shape == (N, N, N)
    assert det.metadata["data_format"] == "npy" and det.metadata["mask_file"].endswith("mask.npz")


@pytest.fixture
def dataset_path(tmp_path):
    refl = reflection_constants("Au", (1, 1, 1), 9000.0)
    geo = generic_geometry(refl, np.linspace(-2e-3, 2e-3, N), (N, N), 55e-6, 1.0)
    ds = Dataset(intensity=_intensity(_crystal()), valid=np.ones((N, N), bool), geometry=geo, reflection=refl,
                 spacing_m=geo.grid_spacing_m())
    return save_dataset(ds, tmp_path / "data.cxi")


def test_reconstruct_starts_from_a_cohere_image(dataset_path, tmp_path, capsys):
    image = np.transpose(np.conj(_crystal()))  # cohere's convention: (col, row, frame), conjugated
    np.save(tmp_path / "image.npy", image)
    out = tmp_path / "dyn"
    code = main(["reconstruct", str(dataset_path), "--init", str(tmp_path / "image.npy"), "--out", str(out),
                 "--epochs", "1", "--start", "as-is", "--model", "kinematic"])
    assert code == 0, capsys.readouterr().err
    assert load_result(out / "reconstruction.cxi").obj.shape[1:] == (N, N)


def test_phase_cohere_formatted_data(tmp_path, capsys):
    """cohere's data.tif holds sqrt(I), written transposed from its (col, row, frame) memory order."""
    from cohere_core.utilities.utils import save_tif

    intensity = _intensity(_crystal())
    save_tif(np.transpose(np.sqrt(intensity)), str(tmp_path / "data.tif"))
    out = tmp_path / "run"
    assert main(["phase", str(tmp_path / "data.tif"), "--amplitudes", "--out", str(out), "--recipe", "ER**5",
                 "--no-progress"]) == 0
    det = load_result(out / "object_detector.npz")
    assert det.metadata["amplitudes_squared"] is True and det.obj.shape == (N, N, N)
