"""Unit tests of the sharding rule and of the single-process communicator (no process group)."""

from __future__ import annotations

import pytest
import torch

from dynbcdi.distributed import (Communicator, SingleProcess, init_distributed, reduce_gradients,
                                 shard_bounds, shard_indices, sharded_map)


@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (11, 3), (3, 5), (0, 2), (401, 8)])
def test_shards_partition_the_batch(n, world):
    batch = torch.randperm(max(n, 1), generator=torch.Generator().manual_seed(1))[:n]
    parts = [shard_indices(batch, r, world) for r in range(world)]
    # union = the global batch, in order, no overlap
    assert torch.equal(torch.cat(parts), batch)
    sizes = [p.numel() for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert sum(sizes) == n


def test_shard_bounds_of_unequal_split():
    assert [shard_bounds(11, r, 3) for r in range(3)] == [(0, 4), (4, 8), (8, 11)]
    assert [shard_bounds(2, r, 4) for r in range(4)] == [(0, 1), (1, 2), (2, 2), (2, 2)]


@pytest.mark.parametrize("args, word", [((5, 2, 2), "rank"), ((5, -1, 2), "rank"), ((5, 0, 0), "world_size"),
                                        ((-1, 0, 1), "items")])
def test_shard_bounds_rejects_bad_input(args, word):
    with pytest.raises(ValueError, match=word):
        shard_bounds(*args)


def test_shard_indices_rejects_2d():
    with pytest.raises(ValueError, match="1-D"):
        shard_indices(torch.zeros(2, 2, dtype=torch.long), 0, 1)


def test_single_process_is_the_identity():
    comm = SingleProcess()
    assert isinstance(comm, Communicator) and comm.is_main and comm.world_size == 1
    batch = torch.arange(7)
    assert comm.shard(batch) is batch
    t = torch.ones(3, requires_grad=True)
    t.grad = torch.full((3,), 2.0)
    assert reduce_gradients(comm, [t], 1.25) == 1.25 and torch.equal(t.grad, torch.full((3,), 2.0))
    obj = {"a": 1}
    assert comm.broadcast_object(obj) is obj
    assert sharded_map(comm, lambda i, j: torch.arange(i, j).numpy(), 4).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="rank"):
        comm.broadcast([t], src=1)


def test_sharded_map_checks_block_shape():
    with pytest.raises(ValueError, match="rows"):
        sharded_map(SingleProcess(), lambda i, j: torch.zeros(j - i + 1).numpy(), 4)


def test_init_without_torchrun_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        init_distributed()


def test_init_rejects_nccl_on_cpu(monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="NCCL"):
        init_distributed(device="cpu", backend="nccl")
    with pytest.raises(ValueError, match="backend"):
        init_distributed(device="cpu", backend="mpi")
