"""Shared fixtures of the workflow tests: a tiny simulated scan saved as a prepared dataset, fast settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

#: Phasing and reconstruction settings that take the tiny scan through every stage in seconds.
FAST_TOML = """
dataset = "{dataset}"
threads = 1

[phasing]
recipe = "support(box=0.5), shrinkwrap(start=20, every=10), (HIO**20, ER**20)**3, ER**20"
starts = 1

[reconstruction]
epochs = {epochs}

[reconstruction.start]
twin_epochs = 0

[output]
report_frames = 3
"""


@pytest.fixture(autouse=True)
def one_thread():
    """The tests share 2 cores: one torch thread (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def simulate_tiny(path: Path, seed: int = 0) -> Path:
    """A 0.52 µm Au cube, (200) at 8 keV, 28 frames of 32 × 32 pixels with Poisson noise, saved without
    its truth (as a measured dataset would be) to ``path``."""
    from dynbcdi.io import save_dataset
    from dynbcdi.simulate import simulate_dataset
    from dynbcdi.simulate.config import SimulationConfig, from_dict
    from dynbcdi.simulate.presets import PRESETS

    base = PRESETS["au-demo"]
    cfg = dict(base, name="tiny-au",
               geometry=dict(base["geometry"], detector_shape=[32, 32], distance_m=0.57,
                             rocking_start_deg=-0.1, rocking_stop_deg=0.1, rocking_step_deg=0.0075),
               grid={"nz": 32}, crystal={"shape": "cube", "size_m": [5.2e-7]},
               noise={"peak_photons": 1e4, "seed": seed},
               deformation=[dict(base["deformation"][0], sigma_m=1.3e-7, center_m=[4e-8, 5e-8, 0.0])])
    dataset = simulate_dataset(from_dict(SimulationConfig, cfg))
    dataset.truth = None
    dataset.metadata = {"provenance": {"source": "simulate tiny-au", "seed": seed}}
    return save_dataset(dataset, path, overwrite=True)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Path of the tiny simulated dataset (.cxi), written once per session."""
    return simulate_tiny(tmp_path_factory.mktemp("data") / "tiny.cxi")


def write_toml(folder: Path, dataset: Path, epochs: int = 4, name: str = "run.toml") -> Path:
    """A run TOML in ``folder`` with the fast settings (the dataset path relative to the TOML when possible)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(FAST_TOML.format(dataset=Path(dataset).as_posix(), epochs=epochs))
    return path


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory, tiny_dataset) -> dict[str, Any]:
    """`dynbcdi run` of the tiny scan, once per session: the TOML, the run folder, exit code and output."""
    import contextlib
    import io

    from dynbcdi.cli.main import main

    folder = tmp_path_factory.mktemp("cli")
    toml = write_toml(folder, tiny_dataset, epochs=4)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", str(toml), "--out", str(folder / "run"), "--no-progress"])
    return {"toml": toml, "run_dir": folder / "run", "code": code, "stdout": out.getvalue()}
