"""The TTE march spread over worker threads (one angle chunk each at a time, dynbcdi.runtime.map_chunks)
gives the single-thread result: the same patterns bit for bit (each chunk is computed by the same ops),
gradients to float32 rounding (the per-worker angle sums are added in another order), and the same
numbers on every run with the same thread count (a fixed chunk-to-worker assignment)."""

from __future__ import annotations

import math

import pytest
import torch

from dynbcdi import runtime
from dynbcdi.forward.tte import TTEModel

THETA_B = math.radians(22.0)


def _case(n: int = 16, b: int = 12):
    c = torch.arange(n, dtype=torch.float32) - n / 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    s = ((z.abs() < 4) & (y.abs() < 4) & (x.abs() < 4)).float()
    phi = 0.4 * torch.exp(-(x**2 + y**2 + z**2) / 18.0)
    dq = torch.zeros(b, 3, dtype=torch.float64)
    dq[:, 2] = torch.linspace(-1, 1, b, dtype=torch.float64) * 1.5e8
    dq[:, 0] = torch.linspace(-1, 1, b, dtype=torch.float64) * 1e7
    k0 = (-math.sin(2 * THETA_B), 0.0, math.cos(2 * THETA_B))
    model = TTEModel((10e-9,) * 3, 1.38e-10, k0, (0.0, 0.0, 1.0), -4.6e-5 + 4.6e-6j, (2e-5 + 1.5e-6j),
                     (2e-5 + 1.5e-6j), 1.0, angle_chunk=3)  # 4 chunks: 2 per worker with 2 threads
    return model, s, phi, dq


def _run(threads: int):
    torch.set_num_threads(threads)
    model, s, phi, dq = _case()
    s.requires_grad_()
    phi.requires_grad_()
    out = model(torch.polar(s, phi), dq)
    weights = torch.rand(out.shape, generator=torch.Generator().manual_seed(0))
    (out.abs() ** 2 * weights).sum().backward()
    return out.detach(), s.grad, phi.grad


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_threaded_march_matches_single_thread(restore_threads):
    out1, gs1, gp1 = _run(1)
    out2, gs2, gp2 = _run(2)
    assert torch.equal(out1, out2)
    # float32 sums over 12 angles in another order: a few ulp of the largest gradient
    for a, b in ((gs1, gs2), (gp1, gp2)):
        assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max())


def test_threaded_march_is_reproducible(restore_threads):
    first, again = _run(2), _run(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert torch.get_num_threads() == 2  # the workers' one-thread setting does not leak


def test_map_chunks_order_and_errors(restore_threads):
    torch.set_num_threads(2)
    assert runtime.map_chunks(lambda i: i * i, 7) == [i * i for i in range(7)]
    assert runtime.map_chunks(lambda i: i, 0) == []

    def fail(i: int) -> int:
        if i == 3:
            raise ValueError("chunk 3")
        return i

    with pytest.raises(ValueError, match="chunk 3"):
        runtime.map_chunks(fail, 5)
    assert torch.get_num_threads() == 2


def test_threaded_march_under_inference_mode(restore_threads):
    """Workers take the caller's inference mode (thread-local in torch): writing into the caller's
    inference tensors from a worker outside it would raise."""
    model, s, phi, dq = _case()
    torch.set_num_threads(1)
    expected = model(torch.polar(s, phi), dq)
    torch.set_num_threads(2)
    with torch.inference_mode():
        out = model(torch.polar(s, phi), dq)
    assert torch.equal(out, expected)
