"""The twin object: the kinematic pattern cannot tell it apart (the TTE pattern can: test_pipeline)."""

from __future__ import annotations

import numpy as np
import torch

from dynbcdi.phasing import twin_image


def test_twin_has_the_same_kinematic_pattern(problem):
    truth = problem["truth"]
    twin = twin_image(truth)
    assert np.array_equal(twin_image(twin), truth)
    dq = torch.as_tensor(problem["dq"])
    d1 = problem["model"](torch.as_tensor(truth), dq)
    d2 = problem["model"](torch.as_tensor(twin), dq)
    # FT[conj S(−r)] = conj FT[S]: equal patterns up to float64 round-off
    torch.testing.assert_close(d1, d2, rtol=1e-9, atol=1e-9 * float(d1.max()))
