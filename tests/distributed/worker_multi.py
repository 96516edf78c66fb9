"""Worker of the 2-process joint multi-reflection test: ``python worker_multi.py OUTDIR`` under
torchrun-style environment variables (tests/distributed/conftest.py ``launch``).

Runs :func:`dynbcdi.reconstruct.multi.joint_reconstruct` sharded over (reflection, angle) pairs and
saves this rank's final field to ``OUTDIR/rank<r>.npz``; importable by the test (by file path) for
the one-process reference, so both runs share one setup.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import sys
from pathlib import Path

import numpy as np
import torch

from dynbcdi.distributed import Communicator, init_distributed
from dynbcdi.reconstruct.config import ShrinkWrapConfig
from dynbcdi.reconstruct.crystal import CrystalField
from dynbcdi.reconstruct.multi import JointConfig, ReflectionProblem, joint_reconstruct
from dynbcdi.simulate.multi import MULTI_PRESETS, simulate_multi, truth_on

EPOCHS = 2
# 39 pairs (3 reflections × 13 angles) in mini-batches of 11: shards of 6 + 5 pairs that cut
# through reflections; ATV, s refinement and a shrink-wrap after every epoch
CONFIG = JointConfig(epochs=EPOCHS, batch_size=11, chunk_size=4, lr_s=0.02, atv_weight=0.05, refine_s=True,
                     shrinkwrap=ShrinkWrapConfig(every=1, start=1, threshold=0.3))


CFG = dataclasses.replace(MULTI_PRESETS["au-111-multi-test"], truth_source="sample_grid")


@functools.cache
def _datasets() -> tuple:
    return tuple(simulate_multi(CFG))  # simulated once per process (fresh problems from it each run)


def setup(physics: str = "kinematic") -> tuple[CrystalField, list[ReflectionProblem]]:
    """The test preset's three reflections (noise-free) and a start: true shape, u = 0."""
    cfg = CFG
    problems = [ReflectionProblem.from_dataset(ds, physics) for ds in _datasets()]
    grid = cfg.sample_grid()
    s, u = truth_on(cfg, grid)
    return CrystalField(grid, s, np.zeros_like(u), support=s > 1e-3), problems


def run(comm: Communicator | None, config: JointConfig = CONFIG, ctrl_c_call: int | None = None) -> dict[str, np.ndarray]:
    """The joint fit; final s, u, support, losses, scales, steps. ctrl_c_call: raise SIGINT in this
    process during that forward call of the last reflection's measurement model."""
    field, problems = setup()
    calls = 0

    def hook(module, args):
        nonlocal calls
        calls += 1
        if calls == ctrl_c_call:
            signal.raise_signal(signal.SIGINT)

    problems[-1].measure.register_forward_pre_hook(hook)
    res = joint_reconstruct(field, problems, config, comm=comm)
    return {"s": field.s.detach().numpy(), "u": field.u.detach().numpy(), "support": field.support.numpy(),
            "loss": np.array(res.loss), "scales": np.array(res.scales), "steps": np.array(res.steps),
            "epochs": np.array(res.epochs), "interrupted": np.array(res.interrupted)}


def main(out: Path) -> None:
    """Run the joint fit, then an interrupted one, on this rank; save ``out/rank<r>.npz``."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the launcher's SIGINT is ignored
    comm = init_distributed(device="cpu")
    try:
        result = run(comm)
        # Ctrl-C on rank 1 alone, in its 3rd forward call of the last reflection (the first is the
        # scale estimate, then one per chunk of it in rank 1's shards): both ranks must stop together
        stopped = run(comm, dataclasses.replace(CONFIG, epochs=3), ctrl_c_call=3 if comm.rank == 1 else None)
        result |= {f"stopped_{k}": v for k, v in stopped.items()}
        np.savez(out / f"rank{comm.rank}.npz", **result)
    finally:
        comm.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
