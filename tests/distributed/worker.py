"""Worker of the 2-process tests: run as ``python worker.py OUTDIR`` under torchrun-style env vars.

Checks the collectives (asserting inside the worker: a failed assertion gives a non-zero exit code
that the test reports with the worker's stderr) and runs the data-parallel loops whose final
parameters the test compares with a single-process run. Also importable by the tests (by file path)
for the single-process references, so both runs share one implementation of the loop.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np
import torch

from dynbcdi.distributed import (Communicator, broadcast_parameters, init_distributed, reduce_gradients,
                                 sharded_map)

N_GRID = 8
N_ANGLES = 11          # odd, and mini-batches of 3 or 4 angles: shards of unequal size
N_BATCHES = 3
EPOCHS = 3
SEED = 7


def tiny_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(truth S (8, 8, 8) complex128, dq (N, 3), data (N, 8, 8)): a kinematic rocking scan.

    dq is in rad per voxel (only its z component is used): the test model has no physical units.
    """
    idx = torch.arange(N_GRID, dtype=torch.float64) - N_GRID // 2
    z, y, x = torch.meshgrid(idx, idx, idx, indexing="ij")
    support = (x.abs() < 2.5) & (y.abs() < 2.5) & (z.abs() < 2.5) & ((x + y + z).abs() < 4)
    truth = torch.polar(support.double(), 0.5 * torch.sin(0.7 * x + 0.3 * z) + 0.1 * x * y)
    qz = 2 * torch.pi * (torch.arange(N_ANGLES, dtype=torch.float64) - N_ANGLES // 2) / (1.5 * N_GRID)
    dq = torch.stack([0.1 * qz, torch.zeros_like(qz), qz], dim=-1)
    return truth, dq, tiny_model(truth, dq).detach()


def tiny_model(S: torch.Tensor, dq: torch.Tensor) -> torch.Tensor:
    """D_j = |fft2(Σ_z S e^{i dq_jz z})|², (B, Y, X): the kinematic limit, enough to test the plumbing."""
    z = torch.arange(S.shape[0], dtype=torch.float64) - S.shape[0] // 2
    ramp = torch.polar(torch.ones_like(z), dq[:, 2:3].double() * z[None])      # (B, Z)
    exit_wave = torch.einsum("bz,zyx->byx", ramp.to(S.dtype), S)
    return torch.fft.fft2(exit_wave).abs() ** 2


def gradient_descent(comm: Communicator) -> dict[str, np.ndarray]:
    """Adam on (amplitude, phase) with random mini-batches sharded over ``comm``; final parameters."""
    truth, dq, data = tiny_problem()
    gen = torch.Generator().manual_seed(SEED)
    start = 0.8 * truth.abs() + 0.05 * torch.rand(truth.shape, generator=gen, dtype=torch.float64)
    amp = start.clone().requires_grad_(True)
    phase = (0.3 * torch.rand(truth.shape, generator=gen, dtype=torch.float64)).requires_grad_(True)
    if comm.rank != 0:  # ranks start from garbage: the broadcast must make them agree
        with torch.no_grad():
            amp.mul_(3.0)
            phase.add_(1.0)
    broadcast_parameters(comm, [amp, phase])
    opt = torch.optim.Adam([amp, phase], lr=0.02)
    losses = []
    for _ in range(EPOCHS):
        perm = torch.randperm(N_ANGLES, generator=gen)
        for batch in torch.tensor_split(perm, N_BATCHES):
            opt.zero_grad(set_to_none=True)
            local = comm.shard(batch)
            total = 0.0
            for idx in torch.split(local, 2):   # gradient accumulation over chunks of 2 angles
                D = tiny_model(torch.polar(amp, phase), dq[idx])
                loss = ((D.sqrt() - data[idx].sqrt()) ** 2).mean(dim=(1, 2)).sum() / batch.numel()
                loss.backward()
                total += float(loss.detach())
            losses.append(reduce_gradients(comm, [amp, phase], total))
            opt.step()
    return {"amp": amp.detach().numpy(), "phase": phase.detach().numpy(), "loss": np.array(losses)}


def recon_config(epochs: int):
    """complex128, odd-sized mini-batches, offsets refined, ATV on, shrink-wrap every 2 epochs."""
    from dynbcdi.reconstruct import LossConfig, OptimizerConfig, ReconstructionConfig, ShrinkWrapConfig

    return ReconstructionConfig(
        epochs=epochs, seed=SEED, dtype="complex128", checkpoint_every=1,
        optimizer=OptimizerConfig(n_batches=N_BATCHES, chunk_size=2, refine_offsets=True),
        loss=LossConfig(atv_weight=1e-3), shrinkwrap=ShrinkWrapConfig(every=2, start=2, threshold=0.05))


def run_reconstruct(comm: Communicator | None, epochs: int, checkpoint_dir: Path | None = None,
                    resume: bool = False, ctrl_c_call: int | None = None) -> dict[str, np.ndarray]:
    """dynbcdi.reconstruct on the tiny problem from a perturbed start; final S, offsets, losses.
    ctrl_c_call: press Ctrl-C (SIGINT to this process) during that model call."""
    from dynbcdi.reconstruct import reconstruct

    calls = 0

    def model(S: torch.Tensor, dq: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == ctrl_c_call:
            signal.raise_signal(signal.SIGINT)
        return tiny_model(S, dq)

    truth, dq, data = tiny_problem()
    idx = torch.arange(N_GRID, dtype=torch.float64) - N_GRID // 2
    z, y, x = torch.meshgrid(idx, idx, idx, indexing="ij")
    init = 0.9 * truth * torch.polar(torch.ones_like(x), 0.3 * torch.cos(0.5 * y) + 0.02 * x * z)
    res = reconstruct(data.numpy(), np.ones(data.shape[1:], bool), dq.numpy(), model, init.numpy(),
                      recon_config(epochs), checkpoint_dir=checkpoint_dir, resume=resume, comm=comm)
    return {"S": res.S, "offsets": res.offsets, "loss": res.history.loss, "scale": np.array(res.scale),
            "support": res.support, "interrupted": np.array(res.interrupted), "epochs": np.array(res.epochs)}


def simulate_small(comm: Communicator | None) -> dict[str, np.ndarray]:
    """dynbcdi.simulate on a 60 nm Au cube, 24² detector, 13 angles (split 7 + 6), with Poisson noise."""
    from dynbcdi.simulate.config import (CrystalConfig, GeometryConfig, GridConfig, ModelConfig, NoiseConfig,
                                         ReflectionConfig, SimulationConfig)
    from dynbcdi.simulate.scan import simulate_dataset

    n, dx = 24, 10e-9
    wavelength_m = 12398.419843320026 / 8000 * 1e-10
    geometry = GeometryConfig(-0.3, 0.3, 0.05, (n, n), 55e-6, dx * n * 55e-6 / wavelength_m)
    cfg = SimulationConfig(ReflectionConfig("Au", (2, 0, 0), 8000.0), geometry, GridConfig(nz=12),
                           CrystalConfig("cube", (60e-9,)),
                           model=ModelConfig(precision="double", batch_size=4, kinematic=True),
                           noise=NoiseConfig(total_photons=1e6, seed=5))
    ds = simulate_dataset(cfg, comm=comm)
    return {"intensity": ds.intensity, "valid": ds.valid, "dynamical": ds.metadata["intensity_dynamical"],
            "kinematic": ds.metadata["intensity_kinematic"]}


def check_collectives(comm: Communicator) -> None:
    """Assert the collectives' results on 2 ranks (rank r contributes r + 1, r + 1 rows, ...)."""
    r, w = comm.rank, comm.world_size
    a = torch.full((3,), float(r + 1), dtype=torch.float64)
    b = torch.full((2, 2), r + 1, dtype=torch.float32)
    comm.all_reduce_sum([a, b])
    assert torch.equal(a, torch.full((3,), w * (w + 1) / 2, dtype=torch.float64)), a
    assert torch.equal(b, torch.full((2, 2), w * (w + 1) / 2)), b
    mask = torch.tensor([True, False, True]) if r == 0 else torch.zeros(3, dtype=torch.bool)
    val = torch.tensor([1.5, 2.5]) if r == 0 else torch.zeros(2)
    comm.broadcast([mask, val])
    assert mask.tolist() == [True, False, True] and val.tolist() == [1.5, 2.5]
    obj = comm.broadcast_object({"epoch": 4, "t": torch.arange(3)} if r == 0 else None)
    assert obj["epoch"] == 4 and obj["t"].tolist() == [0, 1, 2]
    rows = torch.full((r + 1, 2), float(r))           # unequal blocks: 1 row, 2 rows
    expected = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    everywhere = comm.gather_rows(rows, dst=None)
    assert torch.equal(everywhere, expected), everywhere
    at_root = comm.gather_rows(rows, dst=0)
    assert (at_root is None) == (r != 0) and (r != 0 or torch.equal(at_root, expected))
    # 5 rows over 2 ranks: rank 0 computes rows 0-2, rank 1 rows 3-4
    stack = sharded_map(comm, lambda i, j: np.arange(i, j, dtype=np.float64)[:, None] * np.ones((1, 4)), 5)
    assert np.array_equal(stack, np.arange(5.0)[:, None] * np.ones((1, 4))), stack
    comm.barrier()
    assert comm.stats.calls >= 6 and comm.stats.seconds > 0


def main(out: Path) -> None:
    """Run every 2-process scenario and save this rank's results to ``out/rank<r>.npz``."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the launcher's SIGINT is ignored
    comm = init_distributed(device="cpu")
    try:
        check_collectives(comm)
        result = {f"gd_{k}": v for k, v in gradient_descent(comm).items()}
        result |= {f"rec_{k}": v for k, v in run_reconstruct(comm, 3).items()}
        result |= {f"sim_{k}": v for k, v in simulate_small(comm).items()}
        # each rank gets its own directory: only rank 0's may receive a checkpoint, and the
        # resume must reach rank 1 by broadcast (no shared file needed)
        # Ctrl-C reaches rank 1 alone, mid-epoch (3 calls estimate the scale, then 1 per mini-batch):
        # both ranks must stop at the same mini-batch boundary
        ckpt = out / f"ckpt_rank{comm.rank}"
        ctrl_c_call = 3 + N_BATCHES + 2 if comm.rank == 1 else None
        stopped = run_reconstruct(comm, 4, checkpoint_dir=ckpt, ctrl_c_call=ctrl_c_call)
        result |= {"stopped_interrupted": stopped["interrupted"], "stopped_epochs": stopped["epochs"]}
        if comm.rank == 0:
            from dynbcdi.reconstruct.checkpoint import load_checkpoint

            result["stopped_next_batch"] = np.array(load_checkpoint(ckpt)["position"]["next_batch"])
        result |= {f"resumed_{k}": v for k, v in run_reconstruct(comm, 4, ckpt, resume=True).items()}
        np.savez(out / f"rank{comm.rank}.npz", **result)
    finally:
        comm.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
