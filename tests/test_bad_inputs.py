"""Issue 15's bad inputs, tried as a new user would: every one ends in a clear one-line error (exit 2,
no traceback) before anything is computed or written, never in a silent wrong answer or lost work.

The cases of the issue's table and its "checks come late" paragraph, except Ctrl-C + ``--resume`` of
the optimiser and of the start selection (tests/reconstruct/test_interrupt_resume.py and
test_start_search.py), plus file-level cases (missing, empty, truncated, corrupt dataset and
checkpoint files, wrong shapes). Commands run in-process (``dynbcdi.cli.main.main``); one case runs
the real console entry point as a subprocess to check its stderr. tests/cli/test_bad_files.py holds
more file-format cases of the readers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from dynbcdi.reconstruct.checkpoint import FORMAT_VERSION
from dynbcdi.cli.main import main
from dynbcdi.geometry import generic_geometry
from dynbcdi.io import Dataset, save_dataset
from dynbcdi.materials import reflection_constants

N = 8
KEEP = b"an earlier result that must survive"
CKPT = ("checkpoint", "checkpoint.pt")
SIM = ["simulate", "--preset", "au-demo", "--size", "24", "--no-progress"]
DEMO = ["demo", "--size", "24", "--epochs", "1", "--starts", "1", "--no-progress"]


def _dataset(n_frames: int = N, n_angles: int = N) -> Dataset:
    refl = reflection_constants("Au", (1, 1, 1), 9000.0)
    geo = generic_geometry(refl, np.linspace(-2e-3, 2e-3, n_angles), (N, N), 55e-6, 1.0)
    intensity = np.random.default_rng(0).poisson(5.0, (n_frames, N, N)).astype(float)
    return Dataset(intensity=intensity, valid=np.ones((N, N), bool), geometry=geo, reflection=refl,
                   spacing_m=(1e-8, 1e-8, 1e-8))


def _with_intensity(src: Path, dst: Path, intensity: np.ndarray) -> Path:
    """A copy of the dataset file ``src`` whose stored intensity is replaced (shape or values)."""
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        key = "entry_1/instrument_1/detector_1/data"
        del f[key]
        f[key] = intensity
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Tiny inputs, made once: datasets (good, 1 frame for 76 angles, NaN, Inf), objects, checkpoints."""
    root = tmp_path_factory.mktemp("inputs")
    good = save_dataset(_dataset(), root / "data.cxi")
    many = save_dataset(_dataset(76, 76), root / "a76.cxi")
    bad = np.ones((N, N, N))
    bad[0, 1, 2] = np.nan
    inf = np.ones((N, N, N))
    inf[3, 3, 3] = np.inf
    obj = np.zeros((N, N, N), complex)
    obj[2:6, 2:6, 2:6] = 1.0
    np.save(root / "init.npy", obj)
    obj[3, 3, 3] = np.nan
    np.save(root / "init_nan.npy", obj)
    np.save(root / "plain_nan.npy", bad)
    torch.save({"format_version": 2, "S": torch.zeros(4096)}, root / "whole.pt")
    whole = (root / "whole.pt").read_bytes()
    checkpoints = {"empty": b"", "garbage": b"not a checkpoint\n" * 64, "truncated": whole[: len(whole) // 2]}
    for name, raw in checkpoints.items():
        (root / f"{name}.pt").write_bytes(raw)
    torch.save({"S": torch.zeros(3)}, root / "unversioned.pt")
    return {"root": root, "good": good, "init": root / "init.npy", "init_nan": root / "init_nan.npy",
            "one_frame": _with_intensity(many, root / "one_frame.cxi", np.ones((1, N, N))),
            "nan_cxi": _with_intensity(good, root / "nan.cxi", bad),
            "inf_cxi": _with_intensity(good, root / "inf.cxi", inf),
            "plain_nan": root / "plain_nan.npy", "truncated_cxi": _truncated(good, root / "trunc.cxi"),
            "garbage_cxi": _text(root / "garbage.cxi"), "empty_cxi": _text(root / "empty.cxi", "")}


def _truncated(src: Path, dst: Path) -> Path:
    raw = src.read_bytes()
    dst.write_bytes(raw[: len(raw) // 2])
    return dst


def _text(path: Path, text: str = "# not a data file\n") -> Path:
    path.write_text(text)
    return path


def _call(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _one_line(code: int, err: str, *phrases: str) -> str:
    """Assert exit code 2, one stderr line without a traceback, holding every phrase; return the line."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def _recon(files, out: Path, *extra: str, data: str = "good", init: str = "init") -> list[str]:
    return ["reconstruct", str(files[data]), "--init", str(files[init]), "--out", str(out), "--start", "as-is",
            "--epochs", "1", *extra]


def _phase(data: Path, out: Path, *extra: str) -> list[str]:
    return ["phase", str(data), "--out", str(out), "--recipe", "ER**2", "--no-progress", *extra]


# --- options out of range: refused before any output folder or computation -----------------------------

RANGE_CASES = {
    "reconstruct --grid-z 0": (lambda f, o: _recon(f, o, "--grid-z", "0"), "--grid-z 0 is too small"),
    "reconstruct --grid-z -3": (lambda f, o: _recon(f, o, "--grid-z", "-3"), "--grid-z -3 is too small"),
    "reconstruct --grid-z 5 (crops)": (lambda f, o: _recon(f, o, "--grid-z", "5"), "--grid-z 5 is too small"),
    "reconstruct --epochs 0": (lambda f, o: _recon(f, o, "--epochs", "0"), "epochs must be > 0"),
    "reconstruct --epochs -1": (lambda f, o: _recon(f, o, "--epochs", "-1"), "epochs must be > 0"),
    "reconstruct --device gpu": (lambda f, o: _recon(f, o, "--device", "gpu"), "unknown device 'gpu'"),
    "phase --grid-z 0": (lambda f, o: _phase(f["good"], o, "--grid-z", "0"), "--grid-z 0 is too small"),
    "phase --grid-z -3": (lambda f, o: _phase(f["good"], o, "--grid-z", "-3"), "--grid-z -3 is too small"),
    "phase --starts 0": (lambda f, o: _phase(f["good"], o, "--starts", "0"), "--starts must be >= 1"),
    "phase --recipe ER**0": (lambda f, o: _phase(f["good"], o, "--recipe", "ER**0"), "expected a positive integer"),
    "phase --threads 0": (lambda f, o: _phase(f["good"], o, "--threads", "0"), "threads must be a positive"),
    "phase --device gpu": (lambda f, o: _phase(f["good"], o, "--device", "gpu"), "unknown device 'gpu'"),
    "demo --starts 0": (lambda f, o: DEMO[:-3] + ["--starts", "0", "--out", str(o)], "--starts must be >= 1"),
    "demo --attempts 0": (lambda f, o: DEMO[:-3] + ["--attempts", "0", "--out", str(o)], "--attempts must be >= 1"),
    "demo --epochs 0": (lambda f, o: ["demo", "--epochs", "0", "--out", str(o)], "--epochs must be >= 1"),
    "demo --epochs -1": (lambda f, o: ["demo", "--epochs", "-1", "--out", str(o)], "--epochs must be >= 1"),
    "demo --size 0": (lambda f, o: ["demo", "--size", "0", "--out", str(o)], "size must be an integer >= 8"),
    "demo --size -4": (lambda f, o: ["demo", "--size", "-4", "--out", str(o)], "size must be an integer >= 8"),
    "demo --preset unknown": (lambda f, o: ["demo", "--preset", "xx", "--out", str(o)], "unknown preset 'xx'"),
    "demo --device gpu": (lambda f, o: DEMO + ["--device", "gpu", "--out", str(o)], "unknown device 'gpu'"),
    "simulate --size 0": (lambda f, o: SIM[:3] + ["--size", "0", "--out", str(o)], "size must be an integer >= 8"),
    "simulate --size -4": (lambda f, o: SIM[:3] + ["--size", "-4", "--out", str(o)], "size must be an integer >= 8"),
    "simulate --total-photons -5": (lambda f, o: SIM + ["--total-photons", "-5", "--out", str(o)],
                                    "photon count must be > 0"),
    "simulate --peak-photons 0": (lambda f, o: SIM + ["--peak-photons", "0", "--out", str(o)],
                                  "photon count must be > 0"),
    "simulate --seed -1": (lambda f, o: SIM + ["--seed", "-1", "--out", str(o)], "--seed must be a non-negative"),
    "simulate --out x.txt": (lambda f, o: SIM + ["--out", str(o) + ".txt"], "must end in .cxi or .npz"),
    "simulate --device gpu": (lambda f, o: SIM + ["--device", "gpu", "--out", str(o)], "unknown device 'gpu'"),
}


@pytest.mark.parametrize("case", sorted(RANGE_CASES))
def test_option_out_of_range(case, files, tmp_path, capsys):
    build, phrase = RANGE_CASES[case]
    out = tmp_path / ("out.cxi" if case.startswith("simulate") else "out")
    _one_line(*_call(build(files, out), capsys), phrase)
    assert not any(tmp_path.iterdir()), "nothing may be written when an option is refused"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["reconstruct", "phase", "simulate", "demo"])
def test_cuda_without_a_gpu(command, files, tmp_path, capsys):
    argv = {"reconstruct": _recon(files, tmp_path / "o"), "phase": _phase(files["good"], tmp_path / "o"),
            "simulate": SIM + ["--out", str(tmp_path / "o.cxi")], "demo": DEMO + ["--out", str(tmp_path / "o")]}
    _one_line(*_call(argv[command] + ["--device", "cuda"], capsys), "CUDA is not available")
    assert not any(tmp_path.iterdir())


def test_reconstruct_grid_z_with_a_grid_frame_init_is_not_ignored(files, tmp_path, capsys):
    from dynbcdi.io import save_result

    init = save_result(tmp_path / "grid.npz", np.ones((6, N, N), complex), (1e-8,) * 3, metadata={"frame": "grid"})
    argv = ["reconstruct", str(files["good"]), "--init", str(init), "--init-frame", "grid", "--grid-z", "10",
            "--out", str(tmp_path / "o"), "--start", "as-is", "--epochs", "1"]
    _one_line(*_call(argv, capsys), "--grid-z 10", "has 6 z planes already")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("earlier", [False, True])
def test_phase_grid_z_too_small_for_the_phased_crystal_keeps_the_detector_object(earlier, files, tmp_path, capsys):
    """The phased support is known only after phasing: the detector-frame object is saved, the crop refused;
    with --overwrite over an earlier run its grid-frame object does not stay beside the new detector one."""
    out = tmp_path / "o"
    extra = ["--overwrite"] if earlier else []
    if earlier:
        _occupied(out, "object_grid.npz")
    line = _one_line(*_call(_phase(files["good"], out, "--grid-z", "1", *extra), capsys), "--grid-z 1 is too small",
                     "phased crystal spans", "object_detector.npz")
    assert "no grid-frame object" in line
    assert sorted(p.name for p in out.iterdir()) == ["object_detector.npz"]


# --- no silent overwrite ---------------------------------------------------------------------------------

def _occupied(folder: Path, *parts: str) -> Path:
    path = folder.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(KEEP)
    return path


@pytest.mark.parametrize("command, content, phrases", [
    ("reconstruct", CKPT, ("not empty", "--resume", "--overwrite")),  # the lost epoch-64 checkpoint
    ("reconstruct", ("notes.txt",), ("not empty", "--resume", "--overwrite")),
    ("reconstruct", ("reconstruction.cxi",), ("not empty", "--resume", "--overwrite")),
    ("phase", ("object_detector.npz",), ("not empty", "--overwrite")),
    ("phase", ("notes.txt",), ("not empty", "--overwrite")),
    ("demo", ("dataset.cxi",), ("not empty", "--overwrite")),
])
def test_existing_run_folder_is_refused(command, content, phrases, files, tmp_path, capsys):
    out = tmp_path / "run"
    kept = _occupied(out, *content)
    argv = {"reconstruct": _recon(files, out), "phase": _phase(files["good"], out),
            "demo": DEMO + ["--out", str(out)]}[command]
    _one_line(*_call(argv, capsys), str(out), *phrases)
    assert kept.read_bytes() == KEEP and [p.name for p in out.iterdir()] == [content[0]]


@pytest.mark.parametrize("name", ["out.cxi", "out_rocking_curves.png"])
def test_simulate_refuses_an_existing_file_before_simulating(name, tmp_path, capsys):
    kept = _occupied(tmp_path, name)
    _one_line(*_call(SIM + ["--figures", "--out", str(tmp_path / "out.cxi")], capsys), name, "--overwrite")
    assert kept.read_bytes() == KEEP and len(list(tmp_path.iterdir())) == 1


def test_run_refuses_a_folder_that_is_not_a_run(files, tmp_path, capsys):
    toml = _text(tmp_path / "run.toml", f'dataset = "{files["good"].as_posix()}"\n')
    kept = _occupied(tmp_path / "run", "notes.txt")
    _one_line(*_call(["run", str(toml), "--out", str(tmp_path / "run"), "--no-progress"], capsys),
              "not a dynbcdi run", "--overwrite")
    assert kept.read_bytes() == KEEP


def test_resume_without_checkpoint_creates_nothing(files, tmp_path, capsys):
    _one_line(*_call(_recon(files, tmp_path / "run", "--resume"), capsys), "no checkpoint to resume from")
    assert not (tmp_path / "run").exists()


def test_resume_of_a_finished_run_needs_overwrite(files, tmp_path, capsys):
    out = tmp_path / "run"
    ckpt = tmp_path / "ck.pt"
    torch.save({"format_version": FORMAT_VERSION}, ckpt)  # readable; the finished result is what is protected here
    _occupied(out, *CKPT).write_bytes(ckpt.read_bytes())
    kept = _occupied(out, "reconstruction.cxi")
    _one_line(*_call(_recon(files, out, "--resume"), capsys), "reconstruction.cxi exists", "--overwrite")
    assert kept.read_bytes() == KEEP


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "unversioned", "directory"])
def test_unreadable_checkpoint_is_one_line_naming_it(kind, files, tmp_path, capsys):
    out = tmp_path / "run"
    path = out.joinpath(*CKPT)
    if kind == "directory":
        path.mkdir(parents=True)
        phrase = "no checkpoint to resume from"
    else:
        _occupied(out, *CKPT).write_bytes((files["root"] / f"{kind}.pt").read_bytes())
        phrase = "checkpoint format" if kind == "unversioned" else "unreadable checkpoint"
    _one_line(*_call(_recon(files, out, "--resume"), capsys), str(path), phrase)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint"]


# --- output paths ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["reconstruct", "phase", "simulate", "demo", "prepare", "run"])
def test_output_under_an_existing_file(command, files, tmp_path, capsys):
    blocker = _occupied(tmp_path, "results.txt")
    toml = _text(tmp_path / "run.toml", f'dataset = "{files["good"].as_posix()}"\n')
    under = blocker / "x"
    argv = {"reconstruct": _recon(files, under), "phase": _phase(files["good"], under),
            "simulate": SIM + ["--out", str(under) + ".cxi"], "demo": DEMO + ["--out", str(under)],
            "prepare": ["prepare", "--out", str(under) + ".cxi"],
            "run": ["run", str(toml), "--out", str(under), "--no-progress"]}[command]
    _one_line(*_call(argv, capsys), str(blocker), "is a file")
    assert blocker.read_bytes() == KEEP


@pytest.mark.parametrize("command", ["reconstruct", "phase", "simulate", "demo", "prepare"])
def test_output_in_a_read_only_folder(command, files, tmp_path, capsys, monkeypatch):
    """A folder without write permission (os.access is asked, so the test holds when run as root too)."""
    import dynbcdi.io.filecheck as filecheck

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(filecheck.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    argv = {"reconstruct": _recon(files, locked / "o"), "phase": _phase(files["good"], locked / "o"),
            "simulate": SIM + ["--out", str(locked / "o.cxi")], "demo": DEMO + ["--out", str(locked / "o")],
            "prepare": ["prepare", "--out", str(locked / "o.cxi")]}
    _one_line(*_call(argv[command], capsys), str(locked), "no write permission")
    assert not any(locked.iterdir())


# --- files: wrong shapes, unreadable, NaN/Inf ------------------------------------------------------------

FILE_CASES: dict[str, str | dict[str, str]] = {  # input file key: phrase of the one-line error (per command)
    "one_frame": "1 frame(s) but the geometry has 76 rocking angles",
    "nan_cxi": "intensity has 1 NaN/Inf values",
    "inf_cxi": "intensity has 1 NaN/Inf values",
    "truncated_cxi": "truncated or corrupt HDF5",
    "garbage_cxi": {"reconstruct": "neither HDF5/CXI nor .npz", "phase": "not a recognised intensity file"},
    "empty_cxi": "empty file (0 bytes)",
}


@pytest.mark.parametrize("key", sorted(FILE_CASES))
@pytest.mark.parametrize("command", ["reconstruct", "phase"])
def test_bad_dataset_file(command, key, files, tmp_path, capsys):
    argv = _recon(files, tmp_path / "o", data=key) if command == "reconstruct" else _phase(files[key], tmp_path / "o")
    phrase = FILE_CASES[key] if isinstance(FILE_CASES[key], str) else FILE_CASES[key][command]
    _one_line(*_call(argv, capsys), str(files[key]), phrase)
    assert not (tmp_path / "o").exists()


def test_missing_dataset_file(files, tmp_path, capsys):
    _one_line(*_call(_phase(tmp_path / "absent.cxi", tmp_path / "o"), capsys), "absent.cxi", "no such")


@pytest.mark.parametrize("argv, phrase", [
    (lambda f, o: _recon(f, o, init="init_nan"), "1 NaN/Inf values in the object"),
    (lambda f, o: _phase(f["plain_nan"], o), "1 NaN/Inf intensity values"),
])
def test_nan_in_an_input_array_file(argv, phrase, files, tmp_path, capsys):
    _one_line(*_call(argv(files, tmp_path / "o"), capsys), phrase)
    assert not (tmp_path / "o").exists()


MASK_TOML = """
name = "tiny"
[reflection]
material = "Au"
hkl = [1, 1, 1]
energy_eV = 9000
[geometry]
rocking_start_deg = -0.3
rocking_stop_deg = 0.3
rocking_step_deg = 0.05
detector_shape = [24, 24]
pixel_size_m = 55e-6
distance_m = 0.2
[grid]
nz = 12
[crystal]
shape = "mask"
mask_file = "{mask}"
"""


def test_simulate_crystal_mask_with_nan(tmp_path, capsys):
    mask = np.zeros((12, 24, 24))
    mask[4:8, 8:16, 8:16] = 1.0
    mask[5, 10, 10] = np.nan
    np.save(tmp_path / "mask.npy", mask)
    toml = _text(tmp_path / "sim.toml", MASK_TOML.format(mask=(tmp_path / "mask.npy").as_posix()))
    _one_line(*_call(["simulate", "--config", str(toml), "--out", str(tmp_path / "s.npz"), "--no-progress"], capsys),
              "mask.npy", "1 NaN/Inf values")
    assert not (tmp_path / "s.npz").exists()


def test_dataset_refuses_a_frame_count_other_than_the_angles():
    with pytest.raises(ValueError, match=r"1 frame\(s\) but the geometry has 76 rocking angles"):
        _dataset(1, 76)


@pytest.mark.parametrize("model", ["KinematicModel", "TTEModel", "RefractionKinematicModel"])
@pytest.mark.parametrize("where", ["S", "dq"])
def test_forward_models_refuse_nan(model, where):
    import dynbcdi.forward as forward

    refl = reflection_constants("Au", (1, 1, 1), 9000.0)
    m = getattr(forward, model)((1e-8,) * 3, refl.wavelength_m, (0, 0.1, 1), (0, -0.1, 1), refl.chi0, refl.chih,
                                refl.chihbar, 1.0)
    S = torch.ones(4, N, N, dtype=torch.complex128)
    dq = torch.zeros(2, 3, dtype=torch.float64)
    (S if where == "S" else dq).view(-1)[1] = float("nan")
    with pytest.raises(ValueError, match=f"{where} has 1 NaN"):
        m(S, dq)


# --- settings and interruption ---------------------------------------------------------------------------

def test_toml_with_one_key_changes_only_that_key(files, tmp_path):
    """`reconstruct --config` with only `epochs = 100`: every other setting stays the tuned default."""
    import argparse

    from dynbcdi.cli.reconstruct import _config
    from dynbcdi.reconstruct import default_config

    toml = _text(tmp_path / "r.toml", "epochs = 100\n")
    args = argparse.Namespace(config=str(toml), device=None, epochs=None, seed=None)
    for measured in (False, True):
        assert _config(args, measured) == default_config(measured=measured).replace(epochs=100)


def test_ctrl_c_in_simulate_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import dynbcdi.simulate.scan as scan

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scan, "simulate_dataset", interrupted)
    code = main(SIM + ["--out", str(tmp_path / "s.cxi")])
    captured = capsys.readouterr()
    assert code == 130 and "Traceback" not in captured.err
    assert "interrupted during the simulation; nothing was written" in captured.out
    assert not (tmp_path / "s.cxi").exists()


def test_ctrl_c_elsewhere_is_one_line(files, tmp_path, capsys, monkeypatch):
    """A command that keeps no partial work (here prepare's reading) ends with one line and exit code 130."""
    import dynbcdi.prepare as prepare

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "prepare_dataset", interrupted)
    code = main(["prepare", "--beamline", "34idc", "--frames", str(tmp_path), "--material", "Au", "--hkl", "1", "1",
                 "1", "--out", str(tmp_path / "p.cxi")])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted (Ctrl-C)" in err and "Traceback" not in err


# --- the real console entry point ------------------------------------------------------------------------

def test_console_prints_one_line(files, tmp_path):
    """The real console entry point (a subprocess) on the issue's torch-traceback case: a truncated checkpoint."""
    out = tmp_path / "run"
    _occupied(out, *CKPT).write_bytes((files["root"] / "truncated.pt").read_bytes())
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run([sys.executable, "-m", "dynbcdi.cli.main", *_recon(files, out, "--resume")],
                          capture_output=True, text=True, timeout=120, env=env)
    _one_line(proc.returncode, proc.stderr, "checkpoint.pt: unreadable checkpoint")
