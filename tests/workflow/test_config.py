"""RunConfig from TOML: sections, defaults on top of the tuned pipeline settings, paths, one-line errors."""

from __future__ import annotations

import dataclasses

import pytest

from dynbcdi.config import from_dict
from dynbcdi.reconstruct import ReconstructionConfig, StartConfig
from dynbcdi.workflow import load_run_config, run_config_from_dict
from dynbcdi.workflow.config import measured_defaults


def test_sections_and_defaults(tmp_path):
    (tmp_path / "data").mkdir()
    toml = tmp_path / "cfg" / "run.toml"
    toml.parent.mkdir()
    toml.write_text('dataset = "../data/scan.cxi"\nthreads = 2\n[phasing]\nstarts = 2\nrecipe = "paper"\n'
                    '[reconstruction]\nepochs = 7\n[reconstruction.optimizer]\nlr = 0.05\n'
                    '[reconstruction.start]\ntwin_epochs = 3\n[output]\ndir = "out"\nreport_frames = 2\n')
    cfg = load_run_config(toml)
    # relative paths are taken from the TOML's own folder, not the working directory
    assert cfg.dataset == str((tmp_path / "data" / "scan.cxi").resolve())
    assert cfg.output.dir == str((tmp_path / "cfg" / "out").resolve())
    assert cfg.threads == 2 and cfg.phasing.starts == 2 and cfg.output.report_frames == 2
    # keys not given keep the pipeline's defaults for measured scans, not ReconstructionConfig()'s
    defaults, start = measured_defaults()
    assert cfg.reconstruction.start == from_dict(StartConfig, {**start, "twin_epochs": 3})
    expected = defaults.replace(epochs=7)
    expected = dataclasses.replace(expected, optimizer=dataclasses.replace(expected.optimizer, lr=0.05))
    assert cfg.reconstruction.config == expected
    terms = cfg.reconstruction.config.terms  # measured data: rocking offset and frame scales fitted
    assert terms.rocking.refine and terms.frame_scale.refine and terms.free_fraction > 0
    assert cfg.reconstruction.start.kinematic_amplitude


@pytest.mark.parametrize("text, key", [
    ('dataset = "a.cxi"\nthread = 1\n', "thread"),
    ('dataset = "a.cxi"\n[phasing]\nstart = 2\n', "phasing.start"),
    ('dataset = "a.cxi"\n[reconstruction.optimizer]\nlearning_rate = 0.1\n', "reconstruction.optimizer.learning_rate"),
    ('dataset = "a.cxi"\n[reconstruction.start]\nthreshold_x = 0.1\n', "reconstruction.start.threshold_x"),
    ('dataset = "a.cxi"\n[output]\nformat = "png"\n', "output.format"),
    ('dataset = "a.cxi"\n[report]\n', "report"),
])
def test_unknown_key_is_a_one_line_error_naming_it(tmp_path, text, key):
    toml = tmp_path / "run.toml"
    toml.write_text(text)
    with pytest.raises(ValueError) as err:
        load_run_config(toml)
    message = str(err.value)
    assert key in message and "\n" not in message and str(toml) in message


@pytest.mark.parametrize("data, match", [
    ({}, "either a \\[source\\]"),
    ({"dataset": "a.cxi", "phasing": {"starts": 0}}, "starts"),
    ({"dataset": "a.cxi", "phasing": {"init": "file"}}, "init_file"),
    ({"dataset": "a.cxi", "phasing": {"init": "guess"}}, "phasing.init"),
    ({"dataset": "a.cxi", "threads": 0}, "threads"),
    ({"dataset": "a.cxi", "threads": "two"}, "threads"),
    ({"dataset": "a.cxi", "reconstruction": {"model": "tt"}}, "reconstruction.model"),
    ({"dataset": "a.cxi", "reconstruction": {"epochs": "many"}}, "reconstruction.epochs"),
    ({"dataset": "a.cxi", "output": {"support_threshold": 1.5}}, "support_threshold"),
])
def test_bad_values_are_errors(data, match):
    with pytest.raises(ValueError, match=match):
        run_config_from_dict(data)


def test_missing_file_and_invalid_toml(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_run_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("dataset = \n")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_run_config(bad)
