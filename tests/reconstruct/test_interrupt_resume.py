"""Ctrl-C and --resume: the resumed run is bit-for-bit the uninterrupted one, wherever the Ctrl-C
lands (mid-epoch, between epochs, a second Ctrl-C, an interrupt inside an update); damaged
checkpoints are one-line errors. Library tests use the tiny kinematic problem of conftest.py and
press Ctrl-C with ``signal.raise_signal``; one subprocess test sends SIGINT to ``dynbcdi reconstruct``."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import dynbcdi
from dynbcdi.reconstruct import default_config, reconstruct
from dynbcdi.reconstruct.checkpoint import FORMAT_VERSION, checkpoint_path, load_checkpoint, save_checkpoint
from dynbcdi.reconstruct.interrupt import stop_on_sigint

# ReduceLROnPlateau as in default_config but with patience 1, so that the lr drops within the few
# epochs of a test (the scheduler state must survive the interruption); and a constant lr.
SCHEDULES = {"plateau": {"plateau_patience": 1}, "constant": {"plateau_patience": 10**6}}
EPOCHS, STOP_AFTER = 8, 3  # interrupted in epoch 4 of 8
BATCHES = 5  # default_config: 5 mini-batches of the 16 angles, each one model call (chunks of 16)


pytestmark = pytest.mark.usefixtures("python_sigint")  # tests/reconstruct/conftest.py


def _config(schedule: str, **kw):
    cfg = default_config(epochs=EPOCHS)  # min_epochs 30: never "converged" here
    return cfg.replace(optimizer=dataclasses.replace(cfg.optimizer, **SCHEDULES[schedule]), **kw)


class CtrlC(torch.nn.Module):
    """The model, pressing Ctrl-C (SIGINT to this process) ``presses`` times during forward call ``at``."""

    def __init__(self, model: torch.nn.Module, at: int, presses: int = 1):
        super().__init__()
        self.model, self.at, self.presses, self.calls = model, at, presses, 0

    def forward(self, S: torch.Tensor, dq: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at:
            for _ in range(self.presses):
                signal.raise_signal(signal.SIGINT)
        return self.model(S, dq)


def _call_in(epoch: int, batch: int) -> int:
    """Number of the model call of mini-batch ``batch`` (0-based) of epoch ``epoch`` (0-based): one
    call estimates the intensity scale, then one per mini-batch."""
    return 1 + epoch * BATCHES + batch + 1


def _args(p: dict) -> tuple:
    init = 0.9 * np.abs(p["truth"]) * np.exp(1j * (np.angle(p["truth"]) + 0.3))
    return p["intensity"], p["valid"], p["dq"], init


def _assert_identical(straight, resumed) -> None:
    assert resumed.epochs == straight.epochs == EPOCHS and resumed.stopped_reason == "max_epochs"
    for name in ("S", "support", "offsets"):
        assert np.array_equal(getattr(straight, name), getattr(resumed, name)), name
    assert straight.scale == resumed.scale
    assert np.array_equal(straight.history.loss, resumed.history.loss)
    assert [r.lr for r in straight.history.records] == [r.lr for r in resumed.history.records]


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("point", ["mid-epoch", "between-epochs"])
def test_ctrl_c_then_resume_is_bit_identical(problem, tmp_path, schedule, point):
    intensity, valid, dq, init = _args(problem)
    cfg = _config(schedule, checkpoint_every=100)  # the only checkpoint is the one Ctrl-C writes
    straight = reconstruct(intensity, valid, dq, problem["model"], init, cfg)
    lrs = [r.lr for r in straight.history.records]
    assert (min(lrs) < lrs[0]) == (schedule == "plateau")  # the scheduler did act (or not)

    model, progress = problem["model"], None
    if point == "mid-epoch":  # during mini-batch 2 of epoch 4: that step completes, then it stops
        model = CtrlC(problem["model"], at=_call_in(STOP_AFTER, 1))
    else:
        def progress(record):
            if record.epoch == STOP_AFTER:
                signal.raise_signal(signal.SIGINT)
    first = reconstruct(intensity, valid, dq, model, init, cfg, checkpoint_dir=tmp_path, progress=progress)
    assert first.interrupted and first.epochs == STOP_AFTER
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    position = load_checkpoint(tmp_path)["position"]
    if point == "mid-epoch":
        assert position["next_batch"] == 2 and len(position["losses"]) == 2
    else:
        assert position is None

    resumed = reconstruct(intensity, valid, dq, problem["model"], init, cfg, checkpoint_dir=tmp_path, resume=True)
    _assert_identical(straight, resumed)


def test_second_ctrl_c_raises_at_once_and_keeps_a_resumable_state(problem, tmp_path):
    intensity, valid, dq, init = _args(problem)
    cfg = _config("plateau", checkpoint_every=100)
    straight = reconstruct(intensity, valid, dq, problem["model"], init, cfg)
    model = CtrlC(problem["model"], at=_call_in(STOP_AFTER, 1), presses=2)
    with pytest.raises(KeyboardInterrupt):
        reconstruct(intensity, valid, dq, model, init, cfg, checkpoint_dir=tmp_path)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # raised while the model ran: parameters untouched, the state before that mini-batch is saved
    assert load_checkpoint(tmp_path)["position"]["next_batch"] == 1
    resumed = reconstruct(intensity, valid, dq, problem["model"], init, cfg, checkpoint_dir=tmp_path, resume=True)
    _assert_identical(straight, resumed)


def test_interrupt_inside_an_update_keeps_the_last_checkpoint(problem, tmp_path):
    """A KeyboardInterrupt inside ``optimizer.step()`` (parameters half updated) writes nothing:
    resuming from the previous checkpoint (every epoch here) is still bit-identical."""
    intensity, valid, dq, init = _args(problem)
    cfg = _config("plateau", checkpoint_every=1)
    straight = reconstruct(intensity, valid, dq, problem["model"], init, cfg)
    steps = 0

    def interrupt_step(optimizer, args, kwargs):
        nonlocal steps
        steps += 1
        if steps == STOP_AFTER * BATCHES + 3:
            raise KeyboardInterrupt

    hook = register_optimizer_step_pre_hook(interrupt_step)
    try:
        with pytest.raises(KeyboardInterrupt):
            reconstruct(intensity, valid, dq, problem["model"], init, cfg, checkpoint_dir=tmp_path)
    finally:
        hook.remove()
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == STOP_AFTER and state["position"] is None  # the end-of-epoch checkpoint
    resumed = reconstruct(intensity, valid, dq, problem["model"], init, cfg, checkpoint_dir=tmp_path, resume=True)
    _assert_identical(straight, resumed)


def test_stop_on_sigint_nests_restores_and_tolerates_threads():
    with stop_on_sigint() as outer:
        with stop_on_sigint() as inner:
            assert inner is outer  # one Ctrl-C, one request for the start search and its trials
            signal.raise_signal(signal.SIGINT)
        assert outer.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # the second press
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seen = []

    def in_thread():
        with stop_on_sigint() as request:  # no handler can be installed here: no error either
            seen.append(request.requested)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [False] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _damage(raw: bytes, kind: str) -> bytes:
    if kind == "empty":
        return b""
    if kind == "truncated":
        return raw[: len(raw) // 2]
    flipped = bytearray(raw)  # one bit in the middle: inside the tensor data, which torch loads unchecked
    flipped[len(raw) // 2] ^= 0x01
    return bytes(flipped)


@pytest.mark.parametrize("kind", ["empty", "truncated", "corrupted"])
def test_damaged_checkpoint_is_a_one_line_error(tmp_path, kind):
    path = save_checkpoint(tmp_path, {"x": torch.arange(8192, dtype=torch.float64), "epoch": 3})
    assert load_checkpoint(tmp_path)["epoch"] == 3
    path.write_bytes(_damage(path.read_bytes(), kind))
    with pytest.raises(ValueError, match="unreadable") as err:
        load_checkpoint(tmp_path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("content", ["old-format", "not-a-checkpoint"])
def test_foreign_checkpoint_is_a_one_line_error(tmp_path, content):
    path = checkpoint_path(tmp_path)
    torch.save({"format_version": FORMAT_VERSION - 1} if content == "old-format" else torch.zeros(3), path)
    with pytest.raises(ValueError, match="format 2 was written by an older" if content == "old-format"
                       else "not a dynbcdi checkpoint") as err:
        load_checkpoint(tmp_path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def tiny_scan(tiny_scan_files, tmp_path_factory) -> dict[str, str]:
    """The 16³ scan and initial object of ``tiny_scan_files`` and a TOML asking for a checkpoint
    every epoch."""
    config = tmp_path_factory.mktemp("tiny_config") / "run.toml"
    config.write_text("checkpoint_every = 1\n")
    return {**tiny_scan_files, "config": str(config)}


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python then installs its handler, even under nohup


def test_cli_ctrl_c_then_resume_is_bit_identical(tiny_scan, tmp_path):
    from dynbcdi.cli.main import main
    from dynbcdi.io import load_result

    args = ["reconstruct", tiny_scan["scan"], "--init", tiny_scan["init"], "--config", tiny_scan["config"],
            "--start", "as-is", "--model", "kinematic", "--epochs", "40", "--no-progress"]
    src = str(Path(dynbcdi.__file__).resolve().parents[1])  # this checkout, not an installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "dynbcdi.cli.main", *args, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not checkpoint_path(out / "checkpoint").is_file():  # after epoch 1: the loop is running
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "continue with --resume" in stdout and "Traceback" not in stderr
    assert not (out / "reconstruction.cxi").exists()

    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    resumed, straight = (load_result(tmp_path / d / "reconstruction.cxi") for d in ("interrupted", "straight"))
    assert straight.metadata["epochs"] == resumed.metadata["epochs"]
    assert np.array_equal(straight.obj, resumed.obj)


def test_cli_seed_and_no_progress(tiny_scan, tmp_path, capsys):
    from dynbcdi.cli.main import main
    from dynbcdi.io import load_result

    args = ["reconstruct", tiny_scan["scan"], "--init", tiny_scan["init"], "--start", "as-is", "--model",
            "kinematic", "--epochs", "2"]
    assert main([*args, "--out", str(tmp_path / "seed3"), "--seed", "3", "--no-progress"]) == 0
    quiet = capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "seed0")]) == 0
    assert "reconstruct:" in capsys.readouterr().err and "reconstruct:" not in quiet  # the tqdm bar
    seeded, default = (load_result(tmp_path / d / "reconstruction.cxi") for d in ("seed3", "seed0"))
    assert seeded.metadata["config"]["seed"] == 3 and default.metadata["config"]["seed"] == 0
    assert not np.array_equal(seeded.obj, default.obj)  # another mini-batch order
    with pytest.raises(SystemExit) as exit_code:
        main([*args, "--out", str(tmp_path / "bad"), "--seed", "-1"])
    assert exit_code.value.code == 2 and "--seed: must be ≥ 0" in capsys.readouterr().err
