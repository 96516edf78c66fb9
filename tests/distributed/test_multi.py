"""Joint multi-reflection fit on 2 processes (gloo, CPU) against one process with the same seed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from dynbcdi.distributed import SingleProcess

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def multi_worker():
    """worker_multi.py imported by path (the test modules run under --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location("_dist_worker_multi", HERE / "worker_multi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def two_ranks(launcher, tmp_path_factory):
    """Run worker_multi.py on 2 ranks once; the directory with rank0.npz and rank1.npz."""
    out = tmp_path_factory.mktemp("multi_two_ranks")
    launcher(HERE / "worker_multi.py", [str(out)])
    return out


def test_joint_fit_on_two_ranks_matches_one_process(two_ranks, multi_worker):
    torch.set_num_threads(1)
    ref = multi_worker.run(SingleProcess())
    ranks = [np.load(two_ranks / f"rank{r}.npz") for r in range(2)]
    for key in ("s", "u", "support", "loss", "scales"):
        # the same all-reduced gradients and the same Adam on each rank: bit-equal states
        assert np.array_equal(ranks[0][key], ranks[1][key]), key
    assert np.array_equal(ranks[0]["support"], ref["support"])
    assert ref["support"].sum() < multi_worker.setup()[0].support.sum()  # the shrink-wrap acted
    # float64, 8 Adam steps: the gradient sums differ from the one-process sums only in their
    # order (two partial sums + all-reduce), ~1e-16 relative per step. 1e-7 relative is float32
    # rounding, the brief's bound; measured agreement is far tighter (see the RESULTS section).
    scale = {"s": 1.0, "u": float(np.abs(ref["u"]).max())}
    for key in ("s", "u"):
        np.testing.assert_allclose(ranks[0][key], ref[key], rtol=0, atol=1e-7 * scale[key], err_msg=key)
    for key in ("loss", "scales"):
        np.testing.assert_allclose(ranks[0][key], ref[key], rtol=1e-7, err_msg=key)
    assert ref["loss"][-1] < 0.8 * ref["loss"][0]  # the fit did something (measured 0.71)


def test_ctrl_c_on_one_rank_stops_both_at_the_same_step(two_ranks):
    ranks = [np.load(two_ranks / f"rank{r}.npz") for r in range(2)]
    for r in ranks:
        assert r["stopped_interrupted"] and 0 < int(r["stopped_steps"]) < 3 * 4
    assert int(ranks[0]["stopped_steps"]) == int(ranks[1]["stopped_steps"])
    for key in ("s", "u", "support"):
        assert np.array_equal(ranks[0][f"stopped_{key}"], ranks[1][f"stopped_{key}"]), key
