"""Shared fixtures of the reconstruction tests: a 3-line kinematic forward model and a small crystal."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch


class TinyKinematic(torch.nn.Module):
    """Kinematic BCDI model D_j = |F⊥ Σ_z S e^{iΔq_j·r}|² (PHYSICS.md limit 1), fftshifted."""

    def __init__(self, shape: tuple[int, int, int], spacing_m: float):
        super().__init__()
        self.grid_shape = shape
        axes = [(torch.arange(n, dtype=torch.float64) - n // 2) * spacing_m for n in shape]
        z, y, x = torch.meshgrid(*axes, indexing="ij")
        self.register_buffer("r", torch.stack([x, y, z], dim=-1))  # (Z, Y, X, 3) grid (x, y, z)

    def forward(self, S: torch.Tensor, dq: torch.Tensor) -> torch.Tensor:
        ramp = torch.polar(torch.ones((), dtype=self.r.dtype, device=S.device),
                           torch.einsum("zyxc,bc->bzyx", self.r, dq.to(self.r.dtype)))
        exit_wave = (S[None] * ramp.to(S.dtype)).sum(dim=1)
        return torch.fft.fftshift(torch.fft.fft2(exit_wave), dim=(-2, -1)).abs() ** 2


SPACING_M = 10e-9


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler during a test, also where the runner inherited an ignored SIGINT
    (a background job of a non-interactive shell): the Ctrl-C tests raise a real SIGINT."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def one_thread():
    """The tests run on 2 shared cores: one torch thread avoids oversubscription (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_crystal(n: int = 16) -> np.ndarray:
    """(n, n, n) complex: a truncated octahedron half the grid wide with a smooth ~1 rad phase.

    Neither support nor phase is separable in (x, y, z): a separable object would have the
    non-unique 1-D phase problem along each axis, and no algorithm could be asked to recover it.
    """
    idx = np.arange(n) - n // 2 + 0.5
    z, y, x = np.meshgrid(idx, idx, idx, indexing="ij")
    r = n / 4
    support = (np.abs(x) < r) & (np.abs(y) < r) & (np.abs(z) < r) & (np.abs(x + y + z) < 1.6 * r)
    phase = 0.8 * np.sin(2 * np.pi * (x + 0.5 * y) / n) * np.cos(2 * np.pi * z / n) + 1.5 * x * y / n**2
    return np.where(support, np.exp(1j * phase), 0)


def rocking_dq(n_angles: int, n: int) -> np.ndarray:
    """(N, 3) Δq sampling q_z at the Nyquist step 2π/(n dz), with a small x tilt like a real rocking axis."""
    t = 2 * np.pi * (np.arange(n_angles) - n_angles // 2) / (n * SPACING_M)
    return np.stack([0.2 * t, np.zeros_like(t), t], axis=-1)


@pytest.fixture
def problem():
    """Truth, kinematic model, noise-free data, dq, mask for a 16³ crystal and 16 angles."""
    n = 16
    truth = small_crystal(n)
    model = TinyKinematic((n, n, n), SPACING_M)
    dq = rocking_dq(n, n)
    with torch.no_grad():
        data = model(torch.as_tensor(truth, dtype=torch.complex128), torch.as_tensor(dq)).numpy()
    data *= 1e6 / data.sum()
    valid = np.ones(data.shape[1:], dtype=bool)
    return {"truth": truth, "model": model, "dq": dq, "intensity": data, "valid": valid}


@pytest.fixture(scope="session")
def au200_plate():
    """Strained Au (200) plate at 8 keV on a (16, 16, 32) grid of 36 nm voxels, TTE data.

    The crystal is 15 × 9 × 15 voxels (540 × 324 × 540 nm, x × y × z): the beams, which travel
    in the x–z plane, cross ≥ 0.5 µm of gold, i.e. ≥ 2 Bragg extinction lengths (252 nm); y is
    kept thin so that the detector rows oversample it twice at a test-sized grid. A Gaussian bulge
    along h (60 pm, σ 150 nm) gives phases down to −1.8 rad. Rocking Δq_z step 2π/(N dz).
    """
    from dynbcdi.forward.tte import TTEModel
    from dynbcdi.geometry import generic_geometry
    from dynbcdi.materials import reflection_constants
    from dynbcdi.simulate import displacement, shapes

    n_angles = 24
    refl = reflection_constants("Au", (2, 0, 0), 8000.0, lattice_a_m=4.07e-10)
    shape, dx, pixel_m = (16, 16, 32), 36e-9, 55e-6
    distance_m = shape[2] * dx * pixel_m / refl.wavelength_m  # transverse voxel λD/(Xp) = dx
    step = refl.d_spacing_m / (n_angles * dx * np.cos(refl.bragg_angle_rad))
    geo = generic_geometry(refl, (np.arange(n_angles) - n_angles // 2) * step, shape[1:], pixel_m, distance_m)
    spacing = (dx, dx, dx)
    s = shapes.parallelepiped(shape, spacing, np.diag([14 * dx, 8 * dx, 14 * dx]))
    h = geo.grid_frame().to_grid(geo.h)
    u = displacement.gaussian_bulge(shape, spacing, 6e-11, 150e-9, h / np.linalg.norm(h),
                                    center_m=(60e-9, -40e-9, 30e-9))
    truth = displacement.crystal_function(s, displacement.phase_from_displacement(u, h), np.complex128)
    model = TTEModel.from_geometry(geo, refl, spacing)
    dq = geo.dq_grid()
    with torch.no_grad():
        data = model(torch.as_tensor(truth), torch.as_tensor(dq)).numpy()
    return {"truth": truth, "model": model, "dq": dq, "intensity": data * (1e9 / data.sum()),
            "valid": np.ones(shape[1:], bool), "reflection": refl, "spacing": spacing, "geometry": geo,
            "h_dir": h / np.linalg.norm(h)}


def tiny_au_dataset(rocking_step_deg: float = 0.005):
    """au-demo scaled down: 0.52 µm Au cube (2.0 Bragg extinction lengths of 256 nm), (200) at 8 keV,
    32³ grid of 50 nm voxels (detector 32 × 55 µm at 0.57 m), angles over ±0.1° (41 at the default
    step: 79 % of the z Nyquist limit; rocking oversampling ≈ 4, transverse ≈ 2.5), Gaussian bulge
    |φ| ≤ 1.2 rad (σ = 130 nm, centre (40, 50, 0) nm), noise-free."""
    from dynbcdi.simulate import simulate_dataset
    from dynbcdi.simulate.config import SimulationConfig, from_dict
    from dynbcdi.simulate.presets import PRESETS

    base = PRESETS["au-demo"]
    cfg = dict(base, name="tiny-au",
               geometry=dict(base["geometry"], detector_shape=[32, 32], distance_m=0.57,
                             rocking_start_deg=-0.1, rocking_stop_deg=0.1, rocking_step_deg=rocking_step_deg),
               grid={"nz": 32}, crystal={"shape": "cube", "size_m": [5.2e-7]},
               deformation=[dict(base["deformation"][0], sigma_m=1.3e-7, center_m=[4e-8, 5e-8, 0.0])])
    return simulate_dataset(from_dict(SimulationConfig, cfg))


@pytest.fixture(scope="session")
def tiny_au_factory():
    """:func:`tiny_au_dataset` itself, for tests that need another rocking step."""
    return tiny_au_dataset


@pytest.fixture(scope="session")
def tiny_au():
    """:func:`tiny_au_dataset` at its default step (41 angles), simulated once per session."""
    return tiny_au_dataset()


@pytest.fixture(scope="session")
def tiny_scan_files(tmp_path_factory) -> dict[str, str]:
    """A 16³ au-demo scan (0.25 µm Au cube, 11 angles over ±0.1°, noise-free) saved as ``scan.npz``
    and its truth with a 0.3 rad phase offset as the initial object ``init.npz`` (grid frame), for
    the command-line tests: {"scan": path, "init": path}. Read-only: tests write into their own folders."""
    from dynbcdi.io import save_dataset, save_result
    from dynbcdi.simulate import simulate_dataset
    from dynbcdi.simulate.config import SimulationConfig, from_dict
    from dynbcdi.simulate.presets import PRESETS

    base = PRESETS["au-demo"]
    cfg = dict(base, name="tiny", grid={"nz": 16}, crystal={"shape": "cube", "size_m": [2.5e-7]},
               geometry=dict(base["geometry"], detector_shape=[16, 16], distance_m=0.29,
                             rocking_start_deg=-0.1, rocking_stop_deg=0.1, rocking_step_deg=0.02),
               deformation=[dict(base["deformation"][0], sigma_m=8e-8, center_m=[2e-8, 2e-8, 0.0])])
    folder = tmp_path_factory.mktemp("tiny_scan")
    with pytest.warns(UserWarning):  # the rocking curve is undersampled for phasing, not for this
        ds = simulate_dataset(from_dict(SimulationConfig, cfg))
    init = ds.truth * np.exp(0.3j * (np.abs(ds.truth) > 0))
    return {"scan": str(save_dataset(ds, folder / "scan.npz")),
            "init": str(save_result(folder / "init.npz", init, ds.spacing_m, metadata={"frame": "grid"}))}
