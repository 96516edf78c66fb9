"""Every file-level bad input to the CLI ends in exit code 2 and one line naming the file; nothing is overwritten.

The commands run in-process (``dynbcdi.cli.main.main``) except two subprocess runs that check the real
stderr of the console script. Each case keeps a sentinel file where the command would write, passes
``--overwrite``, and checks the sentinel afterwards: a bad input must fail before any output is touched.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from dynbcdi.cli.main import main
from dynbcdi.geometry import generic_geometry
from dynbcdi.io import Dataset, save_dataset
from dynbcdi.materials import reflection_constants

N = 8
SENTINEL = b"previous result, must survive"


def _dataset(angles: np.ndarray, spacing_m=(1e-8, 1e-8, 1e-8)) -> Dataset:
    refl = reflection_constants("Au", (1, 1, 1), 9000.0)
    geo = generic_geometry(refl, angles, (N, N), 55e-6, 1.0)
    intensity = np.random.default_rng(0).poisson(5.0, (N, N, N)).astype(float)
    return Dataset(intensity=intensity, valid=np.ones((N, N), bool), geometry=geo, reflection=refl,
                   spacing_m=spacing_m)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("good")
    ds = _dataset(np.linspace(-2e-3, 2e-3, N))
    return {"cxi": save_dataset(ds, root / "data.cxi"), "npz": save_dataset(ds, root / "data.npz"), "root": root}


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def _edit_cxi(good: dict, tmp: Path, edit) -> Path:
    path = _copy(good["cxi"], tmp / "edited.cxi")
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _replace(f, key: str, value: np.ndarray) -> None:
    del f[key]
    f[key] = value


def _bad_data(case: str, good: dict, tmp: Path) -> tuple[Path, str]:
    """(path of a bad data/dataset file, text the one-line error must contain)."""
    det = "entry_1/instrument_1/detector_1"
    builders = {
        "missing": lambda: (tmp / "absent.cxi", "no such"),
        "directory": lambda: (tmp, "is a directory"),
        "empty": lambda: (_touch(tmp / "empty.cxi"), "empty file (0 bytes)"),
        "not_hdf5": lambda: (_text(tmp / "text.cxi"), "not"),
        "truncated_cxi": lambda: (_truncate(good["cxi"], tmp / "trunc.cxi"), "truncated or corrupt HDF5"),
        "truncated_npz": lambda: (_truncate(good["npz"], tmp / "trunc.npz"), "truncated or corrupt"),
        "no_mask": lambda: (_edit_cxi(good, tmp, lambda f: f.__delitem__(f"{det}/mask")), "mask"),
        "no_geometry": lambda: (_edit_cxi(good, tmp, lambda f: f.__delitem__("entry_1/dynbcdi/geometry")),
                                "geometry"),
        "no_field": lambda: (_edit_cxi(good, tmp, lambda f: f.__delitem__("entry_1/dynbcdi/geometry/k0")),
                             "fields missing from the file: ['k0']"),
        "mask_shape": lambda: (_edit_cxi(good, tmp, lambda f: _replace(f, f"{det}/mask", np.zeros((3, 3), np.uint32))),
                               "valid shape (3, 3)"),
        "intensity_shape": lambda: (_edit_cxi(good, tmp, lambda f: _replace(f, f"{det}/data", np.ones((5, N, N)))),
                                    "5 frame(s) but the geometry has 8 rocking angles"),
    }
    return builders[case]()


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _text(path: Path) -> Path:
    path.write_text("# not a data file\n")
    return path


def _truncate(src: Path, dst: Path) -> Path:
    raw = src.read_bytes()
    dst.write_bytes(raw[: len(raw) // 2])
    return dst


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _assert_one_line(code: int, err: str, names: str | None, contains: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and contains in lines[0], lines[0]
    if names is not None:
        assert names in lines[0], lines[0]


def _sentinel(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(SENTINEL)
    return path


DATASET_CASES = ["missing", "directory", "empty", "not_hdf5", "truncated_cxi", "truncated_npz", "no_mask",
                 "no_geometry", "no_field", "mask_shape", "intensity_shape"]


@pytest.fixture
def tmp_in(tmp_path) -> Path:
    (tmp_path / "in").mkdir()
    return tmp_path


@pytest.mark.parametrize("case", DATASET_CASES)
def test_phase_bad_data_file(case, good, tmp_in, capsys):
    path, contains = _bad_data(case, good, tmp_in / "in")
    out = tmp_in / "out"
    keep = _sentinel(out, "object_detector.npz")
    code, err = _run(["phase", str(path), "--out", str(out), "--recipe", "ER**2", "--overwrite", "--no-progress"],
                     capsys)
    _assert_one_line(code, err, str(path), contains)
    assert keep.read_bytes() == SENTINEL


@pytest.mark.parametrize("case", DATASET_CASES)
def test_reconstruct_bad_dataset(case, good, tmp_in, capsys):
    path, contains = _bad_data(case, good, tmp_in / "in")
    init = tmp_in / "init.npy"
    np.save(init, np.ones((N, N, N), complex))
    out = tmp_in / "out"
    keep = _sentinel(out, "reconstruction.cxi")
    code, err = _run(["reconstruct", str(path), "--init", str(init), "--out", str(out), "--overwrite",
                      "--epochs", "1"], capsys)
    _assert_one_line(code, err, str(path), contains)
    assert keep.read_bytes() == SENTINEL


def test_reconstruct_rejects_a_plain_cxi_as_dataset(good, tmp_path, capsys):
    path = tmp_path / "plain.cxi"
    with h5py.File(path, "w") as f:
        f["entry_1/data_1/data"] = np.ones((N, N, N))
    code, err = _run(["reconstruct", str(path), "--init", str(path), "--out", str(tmp_path / "o")], capsys)
    _assert_one_line(code, err, str(path), "not a dynbcdi dataset; for a plain intensity file use `dynbcdi prepare`")


def test_reconstruct_rejects_a_foreign_npz_as_dataset(tmp_path, capsys):
    path = tmp_path / "foreign.npz"
    np.savez(path, data=np.ones((N, N, N)))  # the KeyError: 'valid' case
    code, err = _run(["reconstruct", str(path), "--init", str(path), "--out", str(tmp_path / "o")], capsys)
    _assert_one_line(code, err, str(path), "not a dynbcdi dataset")


def _bad_init(case: str, good: dict, tmp: Path) -> tuple[Path, str]:
    path = tmp / "image.npy"
    if case == "missing":
        return tmp / "absent.cxi", "no such"
    if case == "empty":
        return _touch(tmp / "empty.cxi"), "empty file"
    if case == "truncated":
        return _truncate(good["cxi"], tmp / "trunc.cxi"), "truncated or corrupt HDF5"
    if case == "real":
        np.save(path, np.ones((N, N, N)))
        return path, "real-valued"
    if case == "wrong_shape":
        np.save(path, np.ones((N, N, N + 2), complex))
        return path, "a detector-frame object must have the data shape (8, 8, 8)"
    if case == "dataset":
        return good["cxi"], "not a complex object"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "real", "wrong_shape", "dataset"])
def test_reconstruct_bad_init(case, good, tmp_path, capsys):
    init, contains = _bad_init(case, good, tmp_path)
    out = tmp_path / "out"
    keep = _sentinel(out, "reconstruction.cxi")
    code, err = _run(["reconstruct", str(good["cxi"]), "--init", str(init), "--out", str(out), "--overwrite",
                      "--epochs", "1", "--start", "as-is"], capsys)
    _assert_one_line(code, err, str(init), contains)
    assert keep.read_bytes() == SENTINEL


@pytest.mark.parametrize("array, contains", [
    (np.full((N, N, N), np.nan), "NaN/Inf"), (-np.ones((N, N, N)), "negative"), (np.ones((N, N)), "3-D"),
    (np.ones((N, N, N), complex), "complex values"), (np.zeros((N, N, N)), "zero on every valid pixel"),
])
def test_phase_bad_plain_arrays(array, contains, tmp_path, capsys):
    path = tmp_path / "data.npy"
    np.save(path, array)
    code, err = _run(["phase", str(path), "--out", str(tmp_path / "o"), "--recipe", "ER**2", "--no-progress"], capsys)
    _assert_one_line(code, err, str(path), contains)
    assert not (tmp_path / "o").exists()


def test_phase_checks_the_geometry_before_phasing(tmp_path, capsys):
    """A rocking scan whose steps jitter by 1 % fails before the 1800 iterations, not when writing."""
    angles = np.linspace(-2e-3, 2e-3, N) + np.r_[0, 5e-6, 0, 0, -5e-6, 0, 0, 0]
    path = save_dataset(_dataset(angles), tmp_path / "jitter.cxi")
    code, err = _run(["phase", str(path), "--out", str(tmp_path / "o"), "--recipe", "HIO**100000", "--no-progress"],
                     capsys)
    _assert_one_line(code, err, str(path), "geometry cannot give the grid frame")
    assert not (tmp_path / "o").exists()


def test_outputs_under_an_existing_file(good, tmp_path, capsys):
    blocker = tmp_path / "results.txt"
    blocker.write_bytes(SENTINEL)
    init = tmp_path / "init.npy"
    np.save(init, np.ones((N, N, N), complex))
    runs = {
        "phase into a file": ["phase", str(good["cxi"]), "--out", str(blocker), "--recipe", "ER**2"],
        "phase under a file": ["phase", str(good["cxi"]), "--out", str(blocker / "run"), "--recipe", "ER**2"],
        "reconstruct under a file": ["reconstruct", str(good["cxi"]), "--init", str(init), "--out",
                                     str(blocker / "run"), "--epochs", "1"],
        "simulate under a file": ["simulate", "--preset", "au-demo", "--out", str(blocker / "sim.cxi")],
        "demo into a file": ["demo", "--out", str(blocker)],
    }
    for name, argv in runs.items():
        code, err = _run(argv, capsys)
        _assert_one_line(code, err, str(blocker), "is a file")
    assert blocker.read_bytes() == SENTINEL


COMMANDS_WITH_DEVICE = {
    "phase": lambda good, tmp: ["phase", str(good["cxi"]), "--out", str(tmp / "o"), "--recipe", "ER**2"],
    "reconstruct": lambda good, tmp: ["reconstruct", str(good["cxi"]), "--init", str(good["cxi"]), "--out",
                                      str(tmp / "o")],
    "simulate": lambda good, tmp: ["simulate", "--preset", "au-demo", "--out", str(tmp / "s.cxi")],
    "demo": lambda good, tmp: ["demo", "--out", str(tmp / "o")],
}


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_DEVICE))
def test_misspelt_device(command, good, tmp_path, capsys):
    code, err = _run(COMMANDS_WITH_DEVICE[command](good, tmp_path) + ["--device", "gpu"], capsys)
    _assert_one_line(code, err, None, "unknown device 'gpu': use cpu, cuda or cuda:N")
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_DEVICE))
def test_cuda_without_cuda(command, good, tmp_path, capsys):
    code, err = _run(COMMANDS_WITH_DEVICE[command](good, tmp_path) + ["--device", "cuda"], capsys)
    _assert_one_line(code, err, None, "CUDA is not available on this machine")
    assert not any(tmp_path.iterdir())


def test_cuda_index_beyond_the_devices(good, tmp_path, capsys):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    code, err = _run(COMMANDS_WITH_DEVICE["phase"](good, tmp_path) + ["--device", f"cuda:{count}"], capsys)
    _assert_one_line(code, err, None, "CUDA is not available" if count == 0 else "does not exist")


def test_oserror_is_one_line(good, tmp_path, capsys, monkeypatch):
    """An OSError the checks did not foresee (here: permission denied while writing) is printed as one line."""
    import dynbcdi.io.results as results

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "o" / "object_grid.npz"))

    monkeypatch.setattr(results, "save_result", denied)
    code, err = _run(["phase", str(good["cxi"]), "--out", str(tmp_path / "o"), "--recipe", "ER**2",
                      "--no-progress"], capsys)
    _assert_one_line(code, err, "object_grid.npz", "Permission denied")


@pytest.mark.parametrize("argv_tail, contains", [
    (["--device", "cuda:99"], "cuda:99"),
    (None, "truncated or corrupt HDF5"),
])
def test_console_stderr_has_no_traceback(good, tmp_path, argv_tail, contains):
    """The real console entry point (a subprocess): one stderr line, exit code 2."""
    data = good["cxi"] if argv_tail else _truncate(good["cxi"], tmp_path / "t.cxi")
    argv = [sys.executable, "-m", "dynbcdi.cli.main", "phase", str(data), "--out", str(tmp_path / "o"),
            "--recipe", "ER**2", *(argv_tail or [])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "OMP_NUM_THREADS": "1",
                               "PATH": "/usr/bin:/bin"})
    _assert_one_line(proc.returncode, proc.stderr, None, contains)


@pytest.mark.parametrize("mask, contains", [(None, "no such mask file"), (np.zeros((3, 3)), "has shape (3, 3)")])
def test_phase_bad_mask_file(mask, contains, tmp_path, capsys):
    data, path = tmp_path / "data.npy", tmp_path / "mask.npy"
    np.save(data, np.ones((N, N, N)))
    if mask is not None:
        np.save(path, mask)
    code, err = _run(["phase", str(data), "--mask", str(path), "--out", str(tmp_path / "o"), "--recipe", "ER**2"],
                     capsys)
    _assert_one_line(code, err, str(path), contains)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("grid_z", ["0", "-3", "1"])
def test_reconstruct_grid_too_small_for_the_crystal(grid_z, good, tmp_path, capsys):
    """`--grid-z 0` used to mean "auto" and a too-small grid cropped the crystal silently (issue 15)."""
    init = tmp_path / "image.npy"
    obj = np.zeros((N, N, N), complex)
    obj[2:6, 2:6, 2:6] = 1.0
    np.save(init, obj)
    code, err = _run(["reconstruct", str(good["cxi"]), "--init", str(init), "--out", str(tmp_path / "o"),
                      "--epochs", "1", "--start", "as-is", "--grid-z", grid_z], capsys)
    _assert_one_line(code, err, None, f"--grid-z {grid_z} is too small")
    assert not (tmp_path / "o").exists()
