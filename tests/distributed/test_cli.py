"""`torchrun ... dynbcdi reconstruct --distributed` on 2 CPU ranks against the plain command."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from dynbcdi.cli.main import main as cli_main

CONFIG = """epochs = 2
seed = 3
dtype = "complex128"
[optimizer]
n_batches = 3
chunk_size = 2
"""


def write_inputs(tmp_path):
    """A strained Au (200) cube, TTE data on a (8, 16, 16) grid with 9 angles; dataset, init, config."""
    from dynbcdi.forward.tte import TTEModel
    from dynbcdi.geometry import generic_geometry
    from dynbcdi.io import Dataset, save_dataset, save_result
    from dynbcdi.materials import reflection_constants

    refl = reflection_constants("Au", (2, 0, 0), 8000.0)
    shape, dx, pixel_m, n_angles = (8, 16, 16), 40e-9, 55e-6, 9
    distance_m = shape[2] * dx * pixel_m / refl.wavelength_m    # transverse voxel λD/(Xp) = dx
    step = refl.d_spacing_m / (n_angles * dx * np.cos(refl.bragg_angle_rad))
    geo = generic_geometry(refl, (np.arange(n_angles) - n_angles // 2) * step, shape[1:], pixel_m, distance_m)
    z, y, x = np.meshgrid(*(np.arange(n) - n // 2 for n in shape), indexing="ij")
    cube = (np.abs(z) < 3) & (np.abs(y) < 4) & (np.abs(x) < 4)
    truth = np.where(cube, np.exp(0.4j * np.sin(0.5 * x + 0.3 * z)), 0)
    model = TTEModel.from_geometry(geo, refl, (dx, dx, dx))
    with torch.no_grad():
        data = model(torch.as_tensor(truth), torch.as_tensor(geo.dq_grid())).numpy()
    dataset = Dataset(intensity=data * (1e8 / data.sum()), valid=np.ones(shape[1:], bool), geometry=geo,
                      reflection=refl, spacing_m=(dx, dx, dx))
    save_dataset(dataset, tmp_path / "scan.npz")
    init = np.where(cube, 0.9 * np.exp(1j * (np.angle(truth) + 0.2 * np.cos(0.6 * y))), 0)
    save_result(tmp_path / "init.npz", init, (dx, dx, dx), metadata={"frame": "grid"})
    (tmp_path / "run.toml").write_text(CONFIG)


def test_torchrun_cli_matches_single_process(tmp_path, free_port):
    from dynbcdi.io import load_result

    torch.set_num_threads(1)
    write_inputs(tmp_path)
    args = ["reconstruct", str(tmp_path / "scan.npz"), "--init", str(tmp_path / "init.npz"),
            "--config", str(tmp_path / "run.toml")]
    assert cli_main([*args, "--out", str(tmp_path / "single")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}", "-m", "dynbcdi.cli.main",
           *args, "--out", str(tmp_path / "dist"), "--distributed"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    single = load_result(tmp_path / "single" / "reconstruction.cxi")
    dist = load_result(tmp_path / "dist" / "reconstruction.cxi")
    # complex128, 6 Adam steps: only the summation order of the gradients differs (see test_parallel)
    np.testing.assert_allclose(dist.obj, single.obj, rtol=1e-10, atol=1e-12 * np.abs(single.obj).max())
    assert not np.array_equal(single.obj, load_result(tmp_path / "init.npz").obj)
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == sorted(
        p.name for p in (tmp_path / "single").iterdir())
