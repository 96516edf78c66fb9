"""Communicators: one small interface over a single process and over ``torch.distributed``.

Data parallelism over rocking angles (the angles are independent in every forward model): each
rank holds the same parameters and the full scan, draws the same global mini-batch from the same
seeded generator, evaluates its contiguous slice (:meth:`Communicator.shard`), and the gradient and
loss *sums* are all-reduced, so every rank takes the same optimiser step as one process would, up to
the order of the floating-point summation.

:class:`SingleProcess` is the no-op communicator (world size 1; every method returns its input or
does nothing, so code written against the interface runs unchanged and bit-for-bit on one process).
:class:`TorchDistributed` wraps a ``torch.distributed`` process group initialised from the
environment that ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``): NCCL when the ranks compute on CUDA devices, gloo on CPUs.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

__all__ = ["CommStats", "Communicator", "SingleProcess", "TorchDistributed", "init_distributed",
           "shard_bounds", "shard_indices"]

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank ``rank``'s contiguous part of ``n`` items split over ``world_size`` ranks.

    The first ``n % world_size`` ranks get one item more (``torch.tensor_split`` rule); a rank gets
    an empty part when ``n < world_size``.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if n < 0:
        raise ValueError(f"number of items must be >= 0, got {n}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def shard_indices(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's contiguous slice of a 1-D tensor of (angle) indices, a view of ``indices``.

    indices : (B,) integer, the *global* mini-batch, identical on all ranks. The slices of ranks
    0 … world_size−1 concatenate to ``indices`` (no overlap, no gap); sizes differ by at most one.
    """
    if indices.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {tuple(indices.shape)}")
    start, stop = shard_bounds(indices.shape[0], rank, world_size)
    return indices[start:stop]


@dataclass
class CommStats:
    """Wall time (s) spent in collectives and the number of calls, for the scaling benchmark.

    On CUDA the timed sections synchronise the device first, so the time is that of the transfer,
    not of the kernel launch.
    """

    seconds: float = 0.0
    calls: int = 0
    bytes: int = 0

    def reset(self) -> None:
        """Zero all counters."""
        self.seconds, self.calls, self.bytes = 0.0, 0, 0


@runtime_checkable
class Communicator(Protocol):
    """What the reconstruction and the simulation need from a process group."""

    rank: int
    world_size: int
    stats: CommStats

    @property
    def is_main(self) -> bool:
        """True on the rank that logs, shows progress and writes files (rank 0)."""

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a global 1-D index tensor (:func:`shard_indices`)."""

    def all_reduce_sum(self, tensors: Sequence[torch.Tensor]) -> None:
        """Replace every tensor, in place, by its sum over ranks."""

    def broadcast(self, tensors: Sequence[torch.Tensor], src: int = 0) -> None:
        """Overwrite every tensor, in place, with rank ``src``'s values."""

    def broadcast_object(self, obj: Any, src: int = 0, device: torch.device | str = "cpu") -> Any:
        """Rank ``src``'s (torch-serialisable) object on every rank, tensors mapped onto ``device``."""

    def gather_rows(self, local: torch.Tensor, dst: int | None = 0) -> torch.Tensor | None:
        """Concatenate the ranks' (B_r, ...) blocks along dim 0, in rank order."""

    def barrier(self) -> None:
        """Wait until every rank arrives."""


class SingleProcess:
    """The communicator of a single process: rank 0 of 1, every collective is the identity."""

    rank = 0
    world_size = 1

    def __init__(self) -> None:
        self.stats = CommStats()

    @property
    def is_main(self) -> bool:
        """Always True."""
        return True

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """``indices`` itself (the whole mini-batch)."""
        return indices

    def all_reduce_sum(self, tensors: Sequence[torch.Tensor]) -> None:
        """Nothing to reduce."""

    def broadcast(self, tensors: Sequence[torch.Tensor], src: int = 0) -> None:
        """Nothing to broadcast; ``src`` must be 0."""
        _check_src(src, 1)

    def broadcast_object(self, obj: Any, src: int = 0, device: torch.device | str = "cpu") -> Any:
        """``obj`` unchanged (not copied, not moved)."""
        _check_src(src, 1)
        return obj

    def gather_rows(self, local: torch.Tensor, dst: int | None = 0) -> torch.Tensor | None:
        """``local`` unchanged."""
        if dst is not None:
            _check_src(dst, 1)
        return local

    def barrier(self) -> None:
        """Nothing to wait for."""


class TorchDistributed:
    """A communicator over the default ``torch.distributed`` process group.

    Build it with :func:`init_distributed` (from the torchrun environment). ``device`` is the
    device this rank computes on; collectives move data through it (CUDA tensors for NCCL).
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise ValueError("torch.distributed is not initialised; use init_distributed()")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = torch.device(device)
        self.backend = dist.get_backend()
        self.stats = CommStats()

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of the global 1-D index tensor ``indices``."""
        return shard_indices(indices, self.rank, self.world_size)

    @contextmanager
    def _timed(self, nbytes: int) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stats.seconds += time.perf_counter() - t0
        self.stats.calls += 1
        self.stats.bytes += nbytes

    def all_reduce_sum(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum over ranks in place; tensors of one dtype travel as one flat buffer (one collective).

        Tensors may require grad (e.g. ``param.grad`` or leaves): the copy back is done without
        autograd. All ranks must pass tensors of the same shapes and dtypes in the same order.
        """
        for group in _by_dtype(tensors).values():
            flat = torch.cat([t.detach().reshape(-1).to(self.device) for t in group])
            with self._timed(flat.numel() * flat.element_size()):
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            _unflatten_into(flat, group)

    def broadcast(self, tensors: Sequence[torch.Tensor], src: int = 0) -> None:
        """Rank ``src``'s values into every tensor, in place (bool tensors travel as uint8)."""
        _check_src(src, self.world_size)
        for group in _by_dtype(tensors).values():
            flat = torch.cat([_wire(t).reshape(-1).to(self.device) for t in group])
            with self._timed(flat.numel() * flat.element_size()):
                dist.broadcast(flat, src=src)
            _unflatten_into(flat, group)

    def broadcast_object(self, obj: Any, src: int = 0, device: torch.device | str = "cpu") -> Any:
        """Rank ``src``'s object on every rank, serialised with ``torch.save``.

        Non-source ranks load it with ``map_location=device`` and ``weights_only=True`` (tensors,
        containers and plain values, as in a checkpoint); the source rank returns ``obj`` itself.
        """
        _check_src(src, self.world_size)
        payload = [None]
        if self.rank == src:
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            payload = [buffer.getvalue()]
        with self._timed(len(payload[0]) if payload[0] is not None else 0):
            dist.broadcast_object_list(payload, src=src, device=self._object_device())
        if self.rank == src:
            return obj
        return torch.load(io.BytesIO(payload[0]), map_location=device, weights_only=True)

    def gather_rows(self, local: torch.Tensor, dst: int | None = 0) -> torch.Tensor | None:
        """Concatenate the ranks' ``(B_r, ...)`` blocks along dim 0 in rank order.

        ``dst=None``: every rank gets the result (all-gather); ``dst=k``: rank k gets it, the others
        None. Block sizes B_r may differ (blocks are padded to the largest on the wire); the trailing
        shape and dtype must agree. The result is on this rank's device.
        """
        if dst is not None:
            _check_src(dst, self.world_size)
        local = local.detach().to(self.device)
        sizes = torch.tensor([local.shape[0]], device=self.device)
        all_sizes = [torch.zeros_like(sizes) for _ in range(self.world_size)]
        dist.all_gather(all_sizes, sizes)
        counts = [int(s) for s in all_sizes]
        padded = local.new_zeros((max(counts), *local.shape[1:]))
        padded[:local.shape[0]] = local
        wire = _wire(padded)
        blocks = [torch.empty_like(wire) for _ in range(self.world_size)]
        with self._timed(wire.numel() * wire.element_size() * self.world_size):
            if dst is None:
                dist.all_gather(blocks, wire)
            elif self.rank == dst:
                dist.gather(wire, gather_list=blocks, dst=dst)
            else:
                dist.gather(wire, gather_list=None, dst=dst)
        if dst is not None and self.rank != dst:
            return None
        return torch.cat([b[:c] for b, c in zip(blocks, counts)]).to(local.dtype)

    def barrier(self) -> None:
        """``torch.distributed.barrier`` (on this rank's CUDA device under NCCL)."""
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    def _object_device(self) -> torch.device | None:
        return self.device if self.backend == "nccl" else None

    def close(self) -> None:
        """Destroy the default process group (call once at the end of a run)."""
        if dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str = "auto", backend: str | None = None,
                     timeout_s: float = 1800.0) -> TorchDistributed:
    """Join the process group described by the torchrun environment and return its communicator.

    device : "auto" (``cuda:LOCAL_RANK`` when CUDA is available, else "cpu"), "cuda" (then
    ``cuda:LOCAL_RANK``), "cpu", or an explicit "cuda:k". backend : "nccl" or "gloo"; default NCCL
    for CUDA devices, gloo for CPU. timeout_s : how long a collective may wait for the slowest rank.
    Raises ``ValueError`` when a torchrun variable is missing or the backend does not fit the device.
    """
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise ValueError(f"environment variable(s) {missing} not set: launch with torchrun "
                         f"(e.g. torchrun --standalone --nproc_per_node=2 -m dynbcdi.cli.main ...)")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _rank_device(device, local_rank)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"backend must be 'nccl' or 'gloo', got {backend!r}")
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError(f"the NCCL backend needs CUDA devices, got device {dev}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        kwargs = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s), **kwargs)
    comm = TorchDistributed(dev)
    log.info("rank %d of %d on %s (%s backend)", comm.rank, comm.world_size, dev, backend)
    return comm


def _rank_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:k]', got {device!r}")
    return dev


def _check_src(src: int, world_size: int) -> None:
    if not 0 <= src < world_size:
        raise ValueError(f"source/destination rank must be in [0, {world_size}), got {src}")


def _wire(t: torch.Tensor) -> torch.Tensor:
    """Bool tensors as uint8 (not every backend reduces or broadcasts bool)."""
    t = t.detach()
    return t.to(torch.uint8) if t.dtype == torch.bool else t


def _by_dtype(tensors: Sequence[torch.Tensor]) -> dict[torch.dtype, list[torch.Tensor]]:
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault(t.dtype, []).append(t)
    return groups


@torch.no_grad()
def _unflatten_into(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view(t.shape).to(t.dtype))
        offset += n
