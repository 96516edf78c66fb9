"""`dynbcdi run`: plan and summary printed, results of another measurement never replaced without --overwrite."""

from __future__ import annotations

import shutil

import pytest
import torch

from dynbcdi.cli.main import main

from .conftest import write_toml


def test_run_prints_plan_summary_and_report(cli_run):
    out = cli_run["stdout"]
    assert cli_run["code"] == 0
    assert "stage plan:" in out and "dynamical  to run" in out
    assert "report: " in out and out.strip().endswith("report.html")


def test_second_run_is_all_cached(cli_run, capsys):
    assert main(["run", str(cli_run["toml"]), "--out", str(cli_run["run_dir"]), "--plan"]) == 0
    plan = capsys.readouterr().out
    assert plan.count("cached") == 8 and "to run" not in plan


def test_refuses_another_measurement_then_overwrite_works(cli_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(cli_run["run_dir"], run_dir)
    other = tmp_path / "other.cxi"
    shutil.copy(cli_run["run_dir"] / "prepare" / "dataset.cxi", other)
    toml = write_toml(tmp_path / "cfg", other, epochs=2)
    before = (run_dir / "dynamical" / "dynamical.cxi").read_bytes()
    assert main(["run", str(toml), "--out", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "another measurement" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (run_dir / "dynamical" / "dynamical.cxi").read_bytes() == before  # nothing replaced
    assert main(["run", str(toml), "--out", str(run_dir), "--no-progress", "--overwrite"]) == 0
    assert "another" not in capsys.readouterr().err
    assert (run_dir / "report" / "report.html").is_file()


def test_refuses_a_folder_that_is_not_a_run(tmp_path, tiny_dataset, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    toml = write_toml(tmp_path, tiny_dataset)
    assert main(["run", str(toml), "--out", str(tmp_path / "run")]) == 2
    assert "not a dynbcdi run" in capsys.readouterr().err
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("args, match", [
    (["--threads", "0"], "threads must be a positive integer"),
    (["--device", "cuda"], "CUDA"),
])
def test_bad_options_are_one_line_errors(tmp_path, tiny_dataset, capsys, args, match):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    toml = write_toml(tmp_path, tiny_dataset)
    assert main(["run", str(toml), "--out", str(tmp_path / "run"), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before anything was computed or written


def test_missing_input_is_reported_before_anything_runs(tmp_path, capsys):
    toml = write_toml(tmp_path, tmp_path / "absent.cxi")
    assert main(["run", str(toml), "--out", str(tmp_path / "run")]) == 2
    assert "absent.cxi" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_ctrl_c_keeps_finished_stages(cli_run, tmp_path, monkeypatch, capsys):
    # Ctrl-C during the dynamical stage (simulated by the stage raising KeyboardInterrupt, as the
    # SIGINT handler of the stages does): exit 130, the stages before it stay cached, it has no result.
    from dynbcdi.workflow.stages import DynamicalStage

    run_dir = tmp_path / "run"
    shutil.copytree(cli_run["run_dir"], run_dir)
    toml = write_toml(tmp_path, cli_run["toml"].read_text().split('"')[1], epochs=3)

    def interrupted(self, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(DynamicalStage, "run", interrupted)
    assert main(["run", str(toml), "--out", str(run_dir), "--no-progress"]) == 130
    assert "interrupted during stage dynamical" in capsys.readouterr().out
    monkeypatch.undo()
    assert main(["run", str(toml), "--out", str(run_dir), "--plan"]) == 0
    plan = capsys.readouterr().out
    for stage in ("prepare", "phase", "grid"):
        assert f"{stage:<10} cached" in plan
    assert "dynamical  to run  no result yet" in plan


def test_sigint_handler_flags_and_raises():
    import os
    import signal

    from dynbcdi.workflow.stages import InterruptGuard

    before = signal.getsignal(signal.SIGINT)
    with InterruptGuard() as guard:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert guard.requested and guard.callback(3, None) is True
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back


def test_refuses_a_folder_another_run_is_writing_into(cli_run, tmp_path, capsys):
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    shutil.copytree(cli_run["run_dir"], run_dir)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / "run.lock").write_text(str(other.pid))
        assert main(["run", str(cli_run["toml"]), "--out", str(run_dir), "--no-progress"]) == 2
        assert f"in use by another dynbcdi run (process {other.pid})" in capsys.readouterr().err
    finally:
        other.kill()
        other.wait()
    # the writer is gone: its stale lock is taken over, and everything is cached
    assert main(["run", str(cli_run["toml"]), "--out", str(run_dir), "--no-progress"]) == 0
    assert not (run_dir / "run.lock").exists()
