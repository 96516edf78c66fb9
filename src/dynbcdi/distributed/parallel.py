"""Data-parallel building blocks on top of a :class:`~dynbcdi.distributed.comm.Communicator`.

The rule that makes a distributed step equal to the single-process step: every rank normalises its
partial loss by the size of the *global* mini-batch (known to all ranks, since all draw the same
permutation), so the per-rank gradients and losses are partial *sums* and their all-reduced sum is
exactly the single-process mean — whatever the (possibly unequal, possibly empty) shard sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from dynbcdi.distributed.comm import Communicator, shard_bounds

__all__ = ["broadcast_parameters", "reduce_gradients", "reduce_sums", "sharded_map"]


def reduce_sums(comm: Communicator, *values: float) -> tuple[float, ...]:
    """Sum each Python float over ranks (one float64 all-reduce); unchanged on a single process."""
    if comm.world_size == 1:
        return values
    buffer = torch.tensor(values, dtype=torch.float64, device=getattr(comm, "device", "cpu"))
    comm.all_reduce_sum([buffer])
    return tuple(buffer.tolist())


def reduce_gradients(comm: Communicator, params: Iterable[torch.Tensor], loss_sum: float) -> float:
    """Sum ``param.grad`` and the partial loss over ranks, in place; returns the global loss.

    params : tensors whose ``.grad`` holds this rank's partial gradient (already divided by the
    global batch size); those with ``requires_grad=False`` are skipped, and a missing ``.grad`` (a
    rank with an empty shard) counts as zeros. loss_sum : this rank's partial loss. One collective
    per dtype (gradients and the float64 loss). On a single process nothing happens and
    ``loss_sum`` is returned unchanged.
    """
    if comm.world_size == 1:
        return loss_sum
    grads = []
    for p in params:
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    loss = torch.tensor(loss_sum, dtype=torch.float64, device=grads[0].device if grads else "cpu")
    comm.all_reduce_sum([*grads, loss])
    return float(loss)


def broadcast_parameters(comm: Communicator, tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Make every rank start from rank ``src``'s parameters (in place; leaves may require grad)."""
    comm.broadcast(tensors, src=src)


def sharded_map(comm: Communicator, fn: Callable[[int, int], np.ndarray], n: int,
                dst: int | None = None) -> np.ndarray | None:
    """Evaluate ``fn(start, stop)`` on this rank's contiguous part of ``range(n)`` and gather.

    fn : returns the (stop − start, ...) block of rows ``start:stop`` (e.g. the diffraction patterns
    of rocking angles start … stop−1); it is called once per rank, also with an empty range, and
    must then return a (0, ...) array of the same trailing shape and dtype. dst=None: every rank gets
    the full (n, ...) array; dst=k: rank k gets it, the others None. The blocks travel through the
    communicator's device (this rank's GPU under NCCL).
    """
    if n < 1:
        raise ValueError(f"number of rows must be >= 1, got {n}")
    start, stop = shard_bounds(n, comm.rank, comm.world_size)
    block = np.asarray(fn(start, stop))
    if block.shape[:1] != (stop - start,):
        raise ValueError(f"fn({start}, {stop}) returned shape {block.shape}, expected {stop - start} rows")
    gathered = comm.gather_rows(torch.from_numpy(np.ascontiguousarray(block)), dst=dst)
    return None if gathered is None else gathered.cpu().numpy()
