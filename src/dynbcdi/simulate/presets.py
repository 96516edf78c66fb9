"""Paper presets (data, in the TOML form of :mod:`dynbcdi.simulate.config`) and resizing.

* ``au-cube-200`` — paper Fig. 2 / Methods: 1 µm Au cube (a = 4.07 Å), (200) at 8 keV, generic
  horizontal geometry, rocking −0.2° … +0.2° in 0.001° (401 angles), 256 points per direction.
  Detector 256 × 256 × 55 µm at 1.0 m: voxel λD/(Np) = 11.0 nm, field of view 2.82 µm — the
  smallest round distance for which the cube (1.31 µm wide in the grid frame, rotated by θB) plus
  the lateral drift of k0 across it (1.3 µm) fits the periodic box. Deformed along h by a
  Gaussian bulge (amplitude 0.4 Å, σ = 250 nm, off-centre): |φ| ≤ 1.24 rad. Noise-free.
* ``sr2iro4-116`` — paper Fig. 3–4: 1.5 µm Sr2IrO4 parallelepiped (edges along a, b, c), (116) at
  10 keV, APS 34-ID-C geometry (γ = 3°, δ from the Bragg condition), Timepix 256 × 256 × 55 µm at
  2.5 m (voxel 22.0 nm), rocking ±0.15° in 0.003° (101 angles), contact strain at the corner
  furthest along −h (amplitude 1 Å, decay 300 nm), 10 nm smooth edges, Poisson noise with 5·10⁴
  photons in the brightest pixel and 2 hot pixels.
* ``au-cube-2um`` — the 2 µm end of the paper's size range (issue 12): the au-cube-200 crystal,
  reflection and deformation kind at twice the edge. 2 µm = 7.8 Bragg extinction lengths (256 nm at
  8 keV). Detector 256 × 256 × 55 µm at 2.2 m: voxel λD/(Np) = 24.2 nm, field of view 6.20 µm — the
  cube is 2.61 µm wide in the grid frame (rotated by θB) and the lateral drift of k0 across it adds
  about 2.6 µm (twice au-cube-200's 1.3 µm), which leaves ≈ 0.5 µm on each side for a start support
  larger than the crystal (2.0 m, 5.64 µm, would leave 0.2 µm). Rocking ±0.1° in 0.002° (101 angles):
  the fringe period of a 2 µm crystal is ≈ 0.0058°, so 0.002° keeps a rocking oversampling ≈ 2.9, and
  ±0.1° resolves ≈ 60 nm along z, finer than a CPU voxel (a reduced size narrows it further, see
  benchmarks/bench_accuracy.py). Gaussian bulge along h scaled with the crystal (0.4 Å, σ = 500 nm,
  off-centre by (0.3, 0.2, 0) µm). Dynamical patterns only (the kinematic stacks cost time and the
  benchmarks do not use them), noise-free.
* ``au-demo`` — the CPU demonstration of the paper's method (``dynbcdi demo``, issue 6 benchmark):
  0.6 µm Au cube, (200) at 8 keV, stored at 256³ like the paper presets and run at its CPU size 64³
  (:func:`resize`; the numbers below are those of 64³). Every number has a reason:
  0.6 µm edge = 2.3 Bragg extinction lengths (256 nm), the smallest round size clearly in the
  dynamical regime (≥ 2), 0.78 µm wide in the grid frame (rotated by θB = 22.3°);
  detector 55 µm pixels at 0.8 m, 64 × 64 of them: voxel λD/(Np) = 35.2 nm (7 voxels per extinction
  length for the TTE march; 8.8 nm at 256), field of view 2.25 µm = 64 voxels, of which the
  crystal plus the lateral drift of k0 across it (slope tan 2θB ≈ 1) needs 42, leaving 11 voxels
  on each side for a start support larger than the crystal and for the E0 drift;
  oversampling 3.0 along x, 3.8 along y; rocking ±0.15° = 84 % of the z Nyquist limit
  max|Δq_z| dz < π at 35 nm, in 0.004° steps: 76 angles, rocking oversampling 4.5;
  Gaussian bulge along h scaled with the crystal (0.4 Å, σ = 150 nm, off-centre): |φ| ≤ 1.2 rad;
  dynamical patterns only (no kinematic comparison stacks: they cost time and the demo does not
  show them), noise-free (the benchmark adds Poisson noise).

:func:`resize` changes the number of points per direction at a fixed field of view (same distance,
pixel and crystal; coarser voxels), e.g. 64 for a CPU run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dynbcdi.simulate.config import SimulationConfig, from_dict

PRESETS: dict[str, dict[str, Any]] = {
    "au-cube-200": {
        "name": "au-cube-200",
        "reflection": {"material": "Au", "hkl": [2, 0, 0], "energy_eV": 8000.0, "lattice_a_m": 4.07e-10},
        "geometry": {"kind": "generic", "rocking_start_deg": -0.2, "rocking_stop_deg": 0.2,
                     "rocking_step_deg": 0.001, "detector_shape": [256, 256], "pixel_size_m": 55e-6,
                     "distance_m": 1.0},
        "grid": {"nz": 256},
        "crystal": {"shape": "cube", "size_m": [1e-6]},
        "deformation": [{"kind": "gaussian_bulge", "amplitude_m": 4e-11, "sigma_m": 2.5e-7,
                         "center_m": [1.5e-7, 1e-7, 0.0], "direction": "h"}],
        "model": {"kinematic": True, "refraction_kinematic": True, "batch_size": 8},
    },
    "sr2iro4-116": {
        "name": "sr2iro4-116",
        "reflection": {"material": "Sr2IrO4", "hkl": [1, 1, 6], "energy_eV": 10000.0},
        "geometry": {"kind": "34idc", "gamma_deg": 3.0, "rocking_start_deg": -0.15, "rocking_stop_deg": 0.15,
                     "rocking_step_deg": 0.003, "detector_shape": [256, 256], "pixel_size_m": 55e-6,
                     "distance_m": 2.5},
        "grid": {"nz": 256},
        "crystal": {"shape": "parallelepiped", "size_m": [1.5e-6, 1.5e-6, 1.5e-6], "smooth_m": 1e-8},
        "deformation": [{"kind": "corner_contact", "amplitude_m": 1e-10, "decay_m": 3e-7, "corner_toward": "-h"}],
        "noise": {"peak_photons": 5e4, "seed": 0, "hot_pixels": 2},
        "model": {"kinematic": True, "batch_size": 8},
    },
    "au-cube-2um": {
        "name": "au-cube-2um",
        "reflection": {"material": "Au", "hkl": [2, 0, 0], "energy_eV": 8000.0, "lattice_a_m": 4.07e-10},
        "geometry": {"kind": "generic", "rocking_start_deg": -0.1, "rocking_stop_deg": 0.1,
                     "rocking_step_deg": 0.002, "detector_shape": [256, 256], "pixel_size_m": 55e-6,
                     "distance_m": 2.2},
        "grid": {"nz": 256},
        "crystal": {"shape": "cube", "size_m": [2e-6]},
        "deformation": [{"kind": "gaussian_bulge", "amplitude_m": 4e-11, "sigma_m": 5e-7,
                         "center_m": [3e-7, 2e-7, 0.0], "direction": "h"}],
        "model": {"kinematic": False, "refraction_kinematic": False, "batch_size": 8},
    },
    "au-demo": {
        "name": "au-demo",
        "reflection": {"material": "Au", "hkl": [2, 0, 0], "energy_eV": 8000.0, "lattice_a_m": 4.07e-10},
        "geometry": {"kind": "generic", "rocking_start_deg": -0.15, "rocking_stop_deg": 0.15,
                     "rocking_step_deg": 0.004, "detector_shape": [256, 256], "pixel_size_m": 55e-6,
                     "distance_m": 0.8},
        "grid": {"nz": 256},
        "crystal": {"shape": "cube", "size_m": [6e-7]},
        "deformation": [{"kind": "gaussian_bulge", "amplitude_m": 4e-11, "sigma_m": 1.5e-7,
                         "center_m": [9e-8, 6e-8, 0.0], "direction": "h"}],
        "model": {"kinematic": False, "refraction_kinematic": False, "batch_size": 8},
    },
}

# What each preset is for, in plain text (`dynbcdi simulate --list-presets`; details in the module doc).
PRESET_PURPOSE: dict[str, str] = {
    "au-cube-200": "the paper's Fig. 2 / Methods crystal: dynamical vs kinematic rocking curves and "
                   "reconstructions of a 1 µm (≈ 4 extinction lengths) Au cube with a Gaussian bulge",
    "sr2iro4-116": "the paper's Fig. 3-4 experiment: a 1.5 µm Sr2IrO4 crystal with contact strain at a "
                   "corner, APS 34-ID-C geometry (gamma = 3°), Poisson noise and hot pixels",
    "au-cube-2um": "the 2 µm end of the paper's size range: a 2 µm (≈ 8 extinction lengths) Au (200) cube "
                   "with a Gaussian bulge, for the accuracy benchmark (issue 12)",
    "au-demo": "the CPU demonstration (dynbcdi demo, benchmarks): a 0.6 µm Au cube (2.3 extinction "
               "lengths), the smallest round size clearly in the dynamical regime, noise-free",
}

# Points per direction for a CPU run of each preset (a few minutes at most on 2 cores).
CPU_SIZES: dict[str, int] = {"au-cube-200": 64, "sr2iro4-116": 64, "au-demo": 64, "au-cube-2um": 48}


def preset(name: str, size: int | None = None) -> SimulationConfig:
    """The named preset as a :class:`SimulationConfig`, optionally resized to ``size`` points per direction."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    config = from_dict(SimulationConfig, PRESETS[name], where=name)
    return config if size is None else resize(config, size)


def sized_preset(name: str, size: int | None = None, device: str = "cpu") -> SimulationConfig:
    """The named preset ready to simulate on ``device``: at ``size`` points per direction (default: its
    CPU size on a CPU, its full size on a GPU), dz refined only where the reduced size would alias
    the rocking range (:func:`dynbcdi.simulate.scan.fit_z_sampling`)."""
    from dynbcdi.simulate.scan import fit_z_sampling

    config = preset(name)  # an unknown name: one-line ValueError, before CPU_SIZES is looked up
    if size is None and not str(device).startswith("cuda"):
        size = CPU_SIZES[name]
    return config if size is None else fit_z_sampling(resize(config, size))


def resize(config: SimulationConfig, size: int) -> SimulationConfig:
    """Same scan with ``size`` points along the detector columns (others scaled alike), same field of view.

    The detector keeps its distance and pixel size, so the voxel λD/(Np) grows as the point count falls;
    nz and dz scale so that the z extent stays the same.
    """
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8 points per direction, got {size!r}")
    rows, cols = config.geometry.detector_shape
    scale = size / cols
    geometry = dataclasses.replace(config.geometry, detector_shape=(max(2, round(rows * scale)), size))
    grid = dataclasses.replace(config.grid, nz=max(2, round(config.grid.nz * scale)),
                               dz_m=None if config.grid.dz_m is None else config.grid.dz_m / scale)
    return dataclasses.replace(config, geometry=geometry, grid=grid)
