"""Data-parallel scale-out over rocking angles with ``torch.distributed`` (launched by torchrun).

Every rank holds the parameters and the scan; a global mini-batch of angles (the same on all ranks)
is split into contiguous shards, partial loss and gradient sums are all-reduced, and all ranks take
the same step. See docs/distributed.md for launching on one or several nodes.
"""

from dynbcdi.distributed.comm import (CommStats, Communicator, SingleProcess, TorchDistributed,
                                      init_distributed, shard_bounds, shard_indices)
from dynbcdi.distributed.parallel import (broadcast_parameters, reduce_gradients, reduce_sums,
                                          sharded_map)

__all__ = [
    "CommStats", "Communicator", "SingleProcess", "TorchDistributed", "broadcast_parameters",
    "init_distributed", "reduce_gradients", "reduce_sums", "shard_bounds", "shard_indices", "sharded_map",
]
