"""The RK4 march with its recomputing backward (integrators._RK4March) against autograd through the
plain step loop: same values and gradients, bit for bit (same operations in the same order)."""

from __future__ import annotations

import pytest
import torch

from dynbcdi.forward.integrators import Drift, _rk4_step, _RK4March


@pytest.mark.parametrize("substeps", [1, 2])
def test_rk4_march_matches_autograd(substeps):
    gen = torch.Generator().manual_seed(0)
    b, Y, X, n = 3, 8, 8, 4

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.complex128, generator=gen)

    def phase(*shape):
        return torch.exp(1j * torch.randn(*shape, dtype=torch.float64, generator=gen))

    drift = Drift(0.3, phase(b, 1, X), phase(b, 1, X), phase(1, X), None)
    ops = [(0.5 * rand(n, Y, X)).requires_grad_() for _ in range(4)]
    U0, V0, w1, w2 = rand(b, Y, X).requires_grad_(), rand(b, Y, X), rand(b, Y, X), rand(b, Y, X)
    U, V = U0, V0
    for t in range(n):
        for _ in range(substeps):
            U, V = _rk4_step(U, V, tuple(o[t] for o in ops), drift)
    ref = torch.autograd.grad((U * w1).abs().sum() + (V * w2).abs().sum(), [U0, *ops])
    U2, V2 = _RK4March.apply(U0, V0, drift, substeps, *ops)
    assert torch.equal(U2, U) and torch.equal(V2, V)
    got = torch.autograd.grad((U2 * w1).abs().sum() + (V2 * w2).abs().sum(), [U0, *ops])
    for a, g in zip(ref, got):
        assert torch.equal(a, g)
