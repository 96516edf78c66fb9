"""The start search (choose_start): the quick ranking against the exhaustive one, progress,
interrupt and resume (bit-identical), the trial epochs bounded by the run's epochs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dynbcdi.analysis import fourier_shift
from dynbcdi.reconstruct import StartConfig, choose_start, default_config
from dynbcdi.reconstruct import start as start_module
from dynbcdi.reconstruct.start import frame_stride, trial_loss

# one threshold, no hull: 2 candidates at the kinematic position, then the 7 half-voxel translations;
# no soft-edge stage (test_start_soft.py), so that the chosen support is the sharp truth's
SEARCH = StartConfig(extra_thresholds=(), hull_flat=False, twin_epochs=5, quick_epochs=2, soft_edges=())


@pytest.fixture(scope="module")
def tiny(tiny_au_factory):
    """A 0.52 µm Au cube (2 Bragg extinction lengths), (200) at 8 keV, 32³ grid of 50 nm voxels, 51 angles
    (rocking oversampling ≈ 5), Gaussian bulge |φ| ≤ 1.2 rad, noise-free TTE data; its "kinematic result"
    is the truth moved by half a voxel along z and x, so the right start is known: the truth's support
    (up to a whole-voxel translation), not its twin."""
    from dynbcdi.reconstruct.pipeline import forward_model

    dataset = tiny_au_factory(rocking_step_deg=0.004)
    kin = fourier_shift(dataset.truth.astype(np.complex128), (0.5, 0.0, 0.5))
    return {"dataset": dataset, "kin": kin, "model": forward_model(dataset)}


@pytest.fixture(scope="module")
def quick(tiny, tmp_path_factory):
    """An uninterrupted quick search: (chosen start, progress records, state file)."""
    records = []
    state = tmp_path_factory.mktemp("quick") / "start_search.json"
    chosen = choose_start(tiny["dataset"], tiny["kin"], default_config(20), model=tiny["model"], start=SEARCH,
                          progress=records.append, state_path=state)
    return chosen, records, state


def _is_true_start(chosen: np.ndarray, truth: np.ndarray) -> bool:
    true_support = np.abs(truth) > 0.5
    shifts = [tuple(int(v) for v in s) for s in np.argwhere(np.ones((3, 3, 3), bool)) - 1]
    return any(np.array_equal(np.roll(chosen != 0, s, axis=(0, 1, 2)), true_support) for s in shifts)


def test_quick_ranking_picks_the_exhaustive_choice(tiny, quick):
    from dynbcdi.analysis import compare

    chosen, records, state = quick
    exhaustive = choose_start(tiny["dataset"], tiny["kin"], default_config(20), model=tiny["model"],
                              start=StartConfig(**{**SEARCH.__dict__, "ranking": "exhaustive"}))
    np.testing.assert_array_equal(chosen, exhaustive)
    truth = tiny["dataset"].truth
    assert _is_true_start(chosen, truth)  # the half-voxel offset undone
    h = tiny["dataset"].geometry.grid_frame().to_grid(tiny["dataset"].geometry.h)
    metric = compare(chosen, truth.astype(np.complex128), support=np.abs(truth) > 0.5,
                     h_norm=tiny["dataset"].reflection.h_norm, spacing_m=tiny["dataset"].spacing_m,
                     h_dir_grid=h / np.linalg.norm(h))
    assert metric.twin is False
    # the quick trials: 2 epochs on every 2nd frame (oversampling ≈ 4 along the rocking direction)
    stored = json.loads(state.read_text())
    assert stored["trial_epochs"] == 2 and stored["frame_stride"] == 2
    assert len(stored["trials"]) == 9 and all(len(t["losses"]) == 2 for t in stored["trials"].values())
    assert [r.done for r in records] == list(range(10)) and records[-1].total == 9
    assert records[-1].best_loss == min(r.loss for r in records[1:])


def test_pruned_search_without_third_stage(tiny, tmp_path):
    # twin_once + rethreshold=False: the twin decided at 0.4 (2 trials), 0.3 tried in the chosen phase
    # only, the 7 translations of the best recipe, no third stage; it still finds the truth's support
    # (not its twin) and undoes the half-voxel offset along z and x
    state = tmp_path / "start_search.json"
    start = StartConfig(**{**SEARCH.__dict__, "extra_thresholds": (0.3,), "twin_once": True, "rethreshold": False})
    records = []
    chosen = choose_start(tiny["dataset"], tiny["kin"], default_config(20), model=tiny["model"], start=start,
                          state_path=state, progress=records.append)
    assert _is_true_start(chosen, tiny["dataset"].truth)
    trials = json.loads(state.read_text())["trials"]
    assert len(trials) == 3 + 7 and records[-1].total == 10
    assert "((0.0, 0.0, 0.0), (0.3, 'twin'))" not in trials and "((0.0, 0.0, 0.0), (0.3, 'kinematic'))" in trials


def test_interrupted_search_resumes_bit_for_bit(tiny, quick, tmp_path):
    chosen, records, _ = quick
    state = tmp_path / "start_search.json"

    def stop_at_4(p):
        if p.done == 4:
            raise KeyboardInterrupt

    args = (tiny["dataset"], tiny["kin"], default_config(20))
    with pytest.raises(KeyboardInterrupt):
        choose_start(*args, model=tiny["model"], start=SEARCH, progress=stop_at_4, state_path=state)
    assert len(json.loads(state.read_text())["trials"]) == 4
    seen = []
    resumed = choose_start(*args, model=tiny["model"], start=SEARCH, progress=seen.append, state_path=state,
                           resume=True)
    np.testing.assert_array_equal(resumed, chosen)  # bit-identical start
    assert [r.cached for r in seen[1:]] == [True] * 4 + [False] * 5
    assert [r.loss for r in seen[1:]] == [r.loss for r in records[1:]]
    # another search's state is refused, not silently reused
    with pytest.raises(ValueError, match="other data or settings"):
        choose_start(*args, model=tiny["model"], start=StartConfig(**{**SEARCH.__dict__, "quick_epochs": 1}),
                     state_path=state, resume=True)


def test_interrupted_trial_is_not_ranked(tiny, tmp_path, monkeypatch):
    # Ctrl-C inside a trial: reconstruct returns a partial result marked "interrupted"; the search
    # must raise KeyboardInterrupt, not rank that partial trial (before issue 15 it was ranked, exit 0)
    real = start_module.reconstruct

    def interrupted_run(*args, **kwargs):
        run = real(*args, **kwargs)
        run.stopped_reason = "interrupted"
        return run

    monkeypatch.setattr(start_module, "reconstruct", interrupted_run)
    state = tmp_path / "start_search.json"
    with pytest.raises(KeyboardInterrupt):
        choose_start(tiny["dataset"], tiny["kin"], default_config(1), model=tiny["model"], start=SEARCH,
                     state_path=state)
    assert json.loads(state.read_text())["trials"] == {}


def test_run_epochs_bound_the_trials(tiny, tmp_path):
    state = tmp_path / "start_search.json"
    start = StartConfig(**{**SEARCH.__dict__, "ranking": "exhaustive", "subvoxel_shifts": (0.0,)})
    choose_start(tiny["dataset"], tiny["kin"], default_config(1), model=tiny["model"], start=start,
                 state_path=state)
    stored = json.loads(state.read_text())
    assert stored["trial_epochs"] == 1 and stored["frame_stride"] == 1
    assert [len(t["losses"]) for t in stored["trials"].values()] == [1, 1]


def test_frame_stride_keeps_twofold_oversampling():
    # steps of δq = 2π/(8 µm) along z; a crystal 1.1 µm deep (11 planes of 100 nm): k δq L ≤ π allows
    # k ≤ 8 µm / (2 × 1.1 µm) = 3.6 → 3; capped by max_stride and by keeping at least 16 frames
    spacing = (1e-7, 1e-7, 1e-7)
    support = np.zeros((32, 8, 8), bool)
    support[5:16, 2:6, 2:6] = True
    dq = np.zeros((101, 3))
    dq[:, 2] = (np.arange(101) - 50) * 2 * np.pi / 8e-6
    assert frame_stride(dq, support, spacing, max_stride=8) == 3
    assert frame_stride(dq, support, spacing, max_stride=2) == 2
    assert frame_stride(dq[:40], support, spacing, max_stride=8) == 2  # 40 frames: ≥ 16 kept
    assert frame_stride(dq, support, spacing, max_stride=1) == 1
    assert trial_loss([4.0, 3.0, 2.0, 1.0]) == 1.0 and trial_loss(list(range(10, 0, -1))) == 2.0


def test_cli_start_search_interrupt_and_resume(tmp_path, au200_plate, monkeypatch, capsys):
    """`dynbcdi reconstruct`: Ctrl-C in the start search exits 130 and keeps the finished trials;
    --resume finishes the search and gives the uninterrupted run's result bit-for-bit; --epochs 1
    bounds the trials to one epoch."""
    from dynbcdi.cli.main import main
    from dynbcdi.io import Dataset, load_result, save_dataset, save_result

    p = au200_plate
    ds = Dataset(intensity=p["intensity"], valid=p["valid"], geometry=p["geometry"], reflection=p["reflection"],
                 spacing_m=p["spacing"], truth=p["truth"])
    data = str(save_dataset(ds, tmp_path / "scan.npz"))
    init = str(save_result(tmp_path / "init.npz", fourier_shift(p["truth"], (0.5, 0.0, 0.0)), p["spacing"],
                           metadata={"frame": "grid"}))

    def args(out):
        return ["reconstruct", data, "--init", init, "--out", str(tmp_path / out), "--epochs", "1"]

    assert main(args("whole")) == 0
    state = json.loads((tmp_path / "whole" / "checkpoint" / "start_search.json").read_text())
    assert state["trial_epochs"] == 1 and all(len(t["losses"]) <= 1 for t in state["trials"].values())
    assert main(args("cut") + ["--resume"]) == 2 and "no checkpoint" in capsys.readouterr().err

    real, calls = start_module.TrialProblem.run, []

    def ctrl_c_at_third(self, obj):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, obj)

    monkeypatch.setattr(start_module.TrialProblem, "run", ctrl_c_at_third)
    assert main(args("cut")) == 130
    assert "--resume" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "cut" / "checkpoint" / "start_search.json").read_text())["trials"]) == 2
    monkeypatch.setattr(start_module.TrialProblem, "run", real)
    assert main(args("cut") + ["--resume"]) == 0
    whole, cut = (load_result(tmp_path / run / "reconstruction.cxi") for run in ("whole", "cut"))
    np.testing.assert_array_equal(cut.obj, whole.obj)
