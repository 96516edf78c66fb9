"""Stage cache: a stage reruns exactly when its settings or an upstream stage changed; Ctrl-C keeps finished stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from dynbcdi.workflow import RunConfig, default_stages, execute, load_run_config, plan, run_workflow
from dynbcdi.workflow.cache import MANIFEST, read_manifest
from dynbcdi.workflow.config import PhasingSettings

from .conftest import simulate_tiny, write_toml


class Counting:
    """A fake stage that writes the sum of its inputs plus its setting, and counts its runs."""

    def __init__(self, name: str, needs: tuple[str, ...], setting: str, fail: bool = False):
        self.name, self.needs, self.version, self.setting, self.fail = name, needs, 1, setting, fail
        self.runs = 0

    def settings(self, config: RunConfig) -> dict[str, Any]:
        return {"value": getattr(config.phasing, self.setting)}

    def run(self, ctx) -> list[str]:
        if self.fail:
            raise KeyboardInterrupt
        self.runs += 1
        value = getattr(ctx.config.phasing, self.setting) + sum(ctx.input(n) for n in self.needs)
        (ctx.folder / "value.json").write_text(json.dumps(value))
        return ["value.json"]

    def load(self, folder: Path) -> int:
        return json.loads((folder / "value.json").read_text())


def _chain() -> list[Counting]:
    return [Counting("a", (), "starts"), Counting("b", ("a",), "seed"), Counting("c", ("b",), "starts")]


def _config(starts: int, seed: int) -> RunConfig:
    return RunConfig(dataset="x.cxi", phasing=PhasingSettings(starts=starts, seed=seed))


def _run(stages, config, folder) -> dict[str, str]:
    planned = plan(stages, config, folder)
    execute(planned, config, folder, progress=False)
    return {p.stage.name: p.status for p in planned}


def test_only_dependent_stages_rerun(tmp_path):
    stages = _chain()
    assert _run(stages, _config(1, 10), tmp_path) == {"a": "run", "b": "run", "c": "run"}
    assert json.loads((tmp_path / "c" / "value.json").read_text()) == 1 + 10 + 1
    assert _run(stages, _config(1, 10), tmp_path) == {"a": "cached", "b": "cached", "c": "cached"}
    assert [s.runs for s in stages] == [1, 1, 1]
    # b's setting changed: a reused, b and c (which reads b) rerun
    assert _run(stages, _config(1, 20), tmp_path) == {"a": "cached", "b": "run", "c": "run"}
    assert json.loads((tmp_path / "c" / "value.json").read_text()) == 1 + 20 + 1
    # a's setting changed: everything reruns
    assert _run(stages, _config(2, 20), tmp_path) == {"a": "run", "b": "run", "c": "run"}
    assert [s.runs for s in stages] == [2, 3, 3]
    # a lost artifact is recomputed, the rest reused
    (tmp_path / "b" / "value.json").unlink()
    planned = plan(stages, _config(2, 20), tmp_path)
    assert [p.status for p in planned] == ["cached", "run", "cached"]
    assert "files missing" in planned[1].reason


def test_reasons_name_the_changed_setting(tmp_path):
    stages = _chain()
    _run(stages, _config(1, 10), tmp_path)
    planned = plan(stages, _config(1, 11), tmp_path)
    assert planned[1].reason == "settings changed: value"
    assert planned[2].reason == "inputs changed: b"


def test_interrupted_stage_leaves_finished_stages_cached(tmp_path):
    stages = _chain()
    stages[2].fail = True
    with pytest.raises(KeyboardInterrupt):
        _run(stages, _config(1, 10), tmp_path)
    assert read_manifest(tmp_path / "a") is not None and read_manifest(tmp_path / "b") is not None
    assert not (tmp_path / "c" / MANIFEST).exists()
    stages[2].fail = False
    assert _run(stages, _config(1, 10), tmp_path) == {"a": "cached", "b": "cached", "c": "run"}


def test_real_chain_reuses_upstream_stages(tmp_path, tiny_dataset):
    # The real stages (without the report, to stay fast) on the tiny simulated scan.
    stages = default_stages()[:-1]
    dataset = tmp_path / "scan.cxi"
    shutil.copy(tiny_dataset, dataset)
    toml = write_toml(tmp_path, dataset, epochs=3)
    run_dir = tmp_path / "run"
    first = run_workflow(load_run_config(toml), run_dir, progress=False, stages=stages)
    assert not any(r.reused for r in first.records)
    keys = {r.name: r.key for r in first.records}

    # A reconstruction setting changed: prepare, phase and grid are reused, the rest reruns.
    second = run_workflow(load_run_config(write_toml(tmp_path, dataset, epochs=4)), run_dir, progress=False,
                          stages=stages)
    reused = {r.name: r.reused for r in second.records}
    assert reused == {"prepare": True, "phase": True, "grid": True, "regime": True, "dynamical": False,
                      "analysis": False, "patterns": False}
    assert read_manifest(run_dir / "dynamical").settings["config"]["epochs"] == 4

    # The prepared input changed (new file content): every stage reruns.
    simulate_tiny(tmp_path / "other.cxi", seed=1).replace(dataset)
    third = run_workflow(load_run_config(toml), run_dir, progress=False, stages=stages)
    assert not any(r.reused for r in third.records)
    assert all(r.key != keys[r.name] for r in third.records if r.name in ("prepare", "phase", "grid"))


def test_phasing_init_from_another_codes_file(tmp_path, tiny_dataset):
    # A detector-frame object from a file (here dynbcdi's own phasing result, read through
    # dynbcdi.io.readers.objects.load_object) replaces phase retrieval; the grid stage is unchanged.
    import numpy as np

    from dynbcdi.io import load_result

    stages = default_stages()[:3]  # prepare, phase, grid
    first = tmp_path / "first"
    run_workflow(load_run_config(write_toml(tmp_path, tiny_dataset)), first, progress=False, stages=stages)
    init = tmp_path / "init.cxi"
    shutil.copy(first / "phase" / "phasing.cxi", init)
    toml = write_toml(tmp_path, tiny_dataset, name="from_file.toml")
    toml.write_text(toml.read_text().replace("starts = 1", 'starts = 1\ninit = "file"\ninit_file = "init.cxi"'))
    config = load_run_config(toml)
    assert config.phasing.init_file == str(init.resolve())
    summary = run_workflow(config, tmp_path / "second", progress=False, stages=stages)
    assert read_manifest(tmp_path / "second" / "phase").settings["init"] == "file"
    assert "dynbcdi" in load_result(tmp_path / "second" / "phase" / "phasing.cxi").metadata["source"]
    a = load_result(first / "grid" / "kinematic.cxi").obj
    b = load_result(tmp_path / "second" / "grid" / "kinematic.cxi").obj
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-6 * np.abs(a).max())
    assert not any(r.reused for r in summary.records)
