"""Thread choice (dynbcdi.runtime) and the `--threads` option of every command."""

from __future__ import annotations

import contextlib
import io
import os

import pytest
import torch

from dynbcdi import runtime
from dynbcdi.cli.main import COMMANDS, build_parser, main

INFO = ["--material", "Au", "--hkl", "1", "1", "1", "--energy", "8keV"]


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_usable_cpus_within_affinity():
    assert 1 <= runtime.usable_cpus() <= len(os.sched_getaffinity(0))


def test_cgroup_quota_parsing(tmp_path):
    path = tmp_path / "cpu.max"
    for text, cpus in (("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000", 1), ("garbage", None)):
        path.write_text(text)
        assert runtime._cgroup_cpus(path) == cpus
    assert runtime._cgroup_cpus(tmp_path / "missing") is None


def test_explicit_request_honoured_and_capped(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 4)
    assert runtime.choose_threads(1) == 1
    assert runtime.choose_threads(3) == 3
    assert runtime.choose_threads(64) == 4


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="positive integer") as err:
        runtime.choose_threads(bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("load", "expected"), [(0.0, 2), (0.7, 1), (1.2, 1), (9.0, 1)])
def test_default_leaves_busy_cpus(monkeypatch, load, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(runtime, "busy_cpus", lambda: load)
    assert runtime.choose_threads(None) == expected


def test_default_never_exceeds_usable(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(runtime, "busy_cpus", lambda: 0.0)
    assert runtime.choose_threads(None) == 1


def test_default_honours_omp_num_threads(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 2)
    monkeypatch.setattr(runtime, "busy_cpus", lambda: 9.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert runtime.choose_threads(None) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert runtime.choose_threads(None) == 2
    assert runtime.choose_threads(1) == 1


def test_configure_threads(restore_threads):
    assert runtime.configure_threads(1) == 1
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError):
        runtime.configure_threads(0)


def test_passive_wait_never_overrides_user(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert runtime.prefer_passive_wait() is False
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_threads(command):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert "--threads" in out.getvalue()


def test_threads_option_applied(restore_threads, capsys):
    assert main(["info", "--threads", "1", *INFO]) == 0
    assert torch.get_num_threads() == 1
    assert capsys.readouterr().out.strip()


def test_threads_zero_is_one_line_error(capsys):
    assert main(["info", "--threads", "0", *INFO]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dynbcdi info: error:") and "positive integer" in err and "\n" not in err
