"""Starting objects: kinematic start, twin, truth-free twin choice."""

from __future__ import annotations

import numpy as np
import torch

from dynbcdi.reconstruct import start_from_kinematic, start_losses, twin_object


def test_twin_has_the_same_kinematic_pattern(problem):
    truth = problem["truth"]
    twin = twin_object(truth)
    assert np.array_equal(twin_object(twin), truth)
    dq = torch.as_tensor(problem["dq"])
    d1 = problem["model"](torch.as_tensor(truth), dq)
    d2 = problem["model"](torch.as_tensor(twin), dq)
    # FT[conj S(−r)] = conj FT[S]: equal patterns up to float64 round-off
    torch.testing.assert_close(d1, d2, rtol=1e-9, atol=1e-9 * float(d1.max()))
    losses = start_losses(problem["model"], [truth, twin, 0.5 * truth + 0.5], problem["intensity"],
                          problem["valid"], problem["dq"])
    # both twins fit the kinematic data (float32 loss ~1e-6 of the data), a wrong object does not
    assert max(losses[:2]) < 1e-3 * losses[2]


def test_kinematic_start_encloses_and_keeps_phase(problem):
    truth = problem["truth"]
    holed = truth.copy()
    holed[8, 6:10, 6:10] = 0  # a kinematic result that lost part of the crystal
    start = start_from_kinematic(holed, threshold=0.1)
    sup = np.abs(truth) > 0
    np.testing.assert_allclose(np.abs(start[sup]), 1.0, rtol=1e-12)  # the convex hull refills the hole
    kept = np.abs(holed) > 0
    d = np.angle(start[kept] * np.conj(truth[kept]))
    assert np.abs(d - d.mean()).max() < 1e-9  # phase unwrapped, up to a global 2πk

    flat = start_from_kinematic(holed, keep_phase=False)
    assert np.array_equal(flat, (np.abs(start) > 0).astype(complex))
