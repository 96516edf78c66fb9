"""Angles per forward-model call in simulate_dataset (issue 13 item 3): larger calls, same numbers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dynbcdi.simulate import scan
from dynbcdi.simulate.presets import sized_preset


def test_batch_size_follows_the_budget_within_bounds():
    per_angle_64 = 256 * 256 * (2 * 8 + 3 * 4)  # complex64 exit waves and far field, 3 float32 fields
    assert scan.stack_batch_size(8, 401, (256, 256), torch.complex64) == scan.STACK_CALL_BUDGET_BYTES // per_angle_64
    assert scan.stack_batch_size(8, 401, (256, 256), torch.complex128) < scan.stack_batch_size(
        8, 401, (256, 256), torch.complex64)
    assert scan.stack_batch_size(8, 401, (40, 40), torch.complex64) == 401  # all angles in one call
    assert scan.stack_batch_size(500, 401, (4096, 4096), torch.complex64) == 401  # never more than the angles
    assert scan.stack_batch_size(8, 401, (4096, 4096), torch.complex64) == 8  # the configured minimum


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stacks_identical_to_calls_of_the_configured_batch():
    config = sized_preset("au-cube-200", 40)  # 401 angles, three models
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = scan.simulate_dataset(config)
        p = scan.prepare_scan(config)
    assert scan.stack_batch_size(config.model.batch_size, 401, (40, 40), torch.complex64) == 401
    S = torch.as_tensor(dataset.truth)
    dq = p.geometry.dq_grid(p.frame)
    for name, model in scan._models(config, p.geometry, p.reflection, p.spacing_m, p.frame).items():
        small = scan.compute_stack(model, S, dq, config.model.batch_size)  # the old calls of 8 angles
        stored = dataset.metadata[f"intensity_{name}"]
        if name == "kinematic":  # one (B, Z) × (Z, Y·X) product: BLAS blocks by B, round-off differs
            np.testing.assert_allclose(stored, small, rtol=0, atol=1e-7 * small.max())
        else:  # the TTE march: each angle alone, bit for bit
            assert np.array_equal(stored, small.astype(np.float32)), name
    assert np.array_equal(dataset.intensity, scan.compute_stack(  # noise-free: the stack itself
        scan._models(config, p.geometry, p.reflection, p.spacing_m, p.frame)["dynamical"], S, dq, 8))
