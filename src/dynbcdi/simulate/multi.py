"""Several reflections of one crystal: goniometer settings, per-reflection TTE scans, a manifest.

Frames (all right-handed, vectors as (x, y, z)):

* *crystal frame*: the xrayutilities Cartesian frame of the material (``Crystal.Q(hkl)``);
* *sample frame*: attached to the innermost sample circle; it equals the lab frame of
  :mod:`dynbcdi.geometry.beamlines` (34-ID-C: +z along the beam, +y up) when all sample circles
  are at zero. ``orientation`` U (3, 3) maps crystal → sample: h_sample = U ĥ_crystal |h|;
* *lab frame*: h_lab = R_gonio(θ, χ, φ) h_sample, with the 34-ID-C sample circles θ (y+), χ (z−),
  φ (y+), outermost first;
* each reflection's *TTE grid frame* (ẑ ∥ kh, x̂ = detector column, ŷ = detector row), given in
  the sample frame as a :class:`~dynbcdi.geometry.resample.GridSpec` (rows = axes).

One mounting (U, χ, φ) is common to every reflection; each reflection reaches its Bragg condition
by the rocking circle θ alone, and the detector (δ, γ) is placed on kh = k0 + h_lab. A reflection
is *reachable* when such a θ exists and δ, γ lie inside the arm limits of the config
(:attr:`MultiConfig.delta_limits_deg`, :attr:`MultiConfig.gamma_limits_deg`).

The truth is a cube with tanh edges and an Eshelby point inclusion, whose u has all three
components. ``truth_source="analytic"`` evaluates it on every grid (the sample grid and each TTE
grid), so the data carry no interpolation error; ``"sample_grid"`` evaluates it on the sample grid
and maps it onto each TTE grid with :class:`~dynbcdi.reconstruct.crystal.CrystalField`, the
reconstruction's own forward model (noise-free data that the model can fit exactly, as the
one-reflection presets are simulated on the reconstruction grid).

The sample grid's spacing should not be finer than the TTE voxels: a finer u has components
between the TTE grid points that no reflection sees (a null space of the joint fit).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from dynbcdi.geometry import DIFFRACTOMETERS, BraggGeometry, aps34idc_geometry, wavelength_from_energy
from dynbcdi.geometry.frames import circles_rotation
from dynbcdi.geometry.resample import GridSpec
from dynbcdi.io.dataset import Dataset, load_dataset, save_dataset
from dynbcdi.io.filecheck import check_output_path
from dynbcdi.simulate import displacement as disp
from dynbcdi.simulate import shapes
from dynbcdi.simulate.scan import check_sampling, compute_stack

__all__ = ["MULTI_PRESETS", "MultiConfig", "ReflectionSetting", "MultiDataset", "reflection_setting",
           "non_coplanarity", "truth_on", "simulate_multi", "write_multi", "load_manifest", "MANIFEST_VERSION"]

MANIFEST_VERSION = 1
SAMPLE_CIRCLES = DIFFRACTOMETERS["34idc"].sample_circles  # θ (y+), χ (z−), φ (y+), outermost first
# |det| of the unit h vectors below which three reflections count as coplanar: 0.1 is a ~6° tilt
# of the third vector out of the plane of the other two (111, -111, 1-11: 0.77; 111, -111, 200: 0).
COPLANAR_DET = 0.1
# s below this fraction is outside the crystal (the tanh tails): the support of a CrystalField truth.
SUPPORT_FLOOR = 1e-3
# A dataset's stored lab h must match U, the mounting and its θ to this relative precision.
H_CONSISTENCY_RTOL = 1e-6


@dataclass(frozen=True)
class MultiConfig:
    """A multi-reflection simulation. Lengths in m, angles in degrees, energy in eV.

    hkls : Miller indices of the reflections (≥ 1; ≥ 3 non-coplanar for a full u).
    orientation_euler_deg : U as scipy ``Rotation.from_euler("xyz", ...)`` (extrinsic x, y, z).
    chi_deg, phi_deg : the common mounting. edge_m, smooth_m : cube edge (along the crystal axes)
    and tanh edge width. inclusion_* : Eshelby inclusion (centre in the sample frame, radius, misfit).
    detector_shape (rows, cols), pixel_size_m, distance_m : TTE grid (dy, dx) = λD/(N p); nz and dz_m
    (None: dz = dx) the depth. rocking_half_range_deg, rocking_step_deg : θ offsets.
    sample_shape, sample_spacing_m : the sample-frame grid of the unknowns (Z, Y, X), (dz, dy, dx).
    delta_limits_deg, gamma_limits_deg : detector-arm limits for the reachability check (assumed
    values, not from a beamline drawing: set them from the instrument). peak_photons : Poisson
    noise with this many photons in the brightest pixel of each reflection (None: noise-free).
    """

    name: str
    hkls: tuple[tuple[int, int, int], ...]
    detector_shape: tuple[int, int]
    pixel_size_m: float
    distance_m: float
    nz: int
    edge_m: float
    sample_shape: tuple[int, int, int]
    sample_spacing_m: tuple[float, float, float]
    rocking_half_range_deg: float
    rocking_step_deg: float
    material: str = "Au"
    energy_eV: float = 9000.0
    orientation_euler_deg: tuple[float, float, float] = (-90.0, 0.0, 0.0)
    chi_deg: float = 0.0
    phi_deg: float = 0.0
    smooth_m: float = 1e-8
    dz_m: float | None = None
    inclusion_center_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    inclusion_radius_m: float = 5e-8
    inclusion_misfit: float = 1e-3
    delta_limits_deg: tuple[float, float] = (-10.0, 120.0)
    gamma_limits_deg: tuple[float, float] = (-10.0, 90.0)
    peak_photons: float | None = None
    truth_source: str = "analytic"
    seed: int = 0
    polarization: str = "sigma"

    def __post_init__(self) -> None:
        if self.truth_source not in ("analytic", "sample_grid"):
            raise ValueError(f"truth_source must be 'analytic' or 'sample_grid', got {self.truth_source!r}")
        if not self.hkls or any(len(h) != 3 or not any(h) for h in self.hkls):
            raise ValueError(f"hkls must be non-zero Miller triples, got {self.hkls!r}")
        for name in ("pixel_size_m", "distance_m", "edge_m", "rocking_half_range_deg", "rocking_step_deg",
                     "energy_eV", "inclusion_radius_m"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    @property
    def orientation(self) -> np.ndarray:
        """U (3, 3): crystal-Cartesian → sample frame."""
        return Rotation.from_euler("xyz", self.orientation_euler_deg, degrees=True).as_matrix()

    def rocking_angles_rad(self) -> np.ndarray:
        """θ offsets (N,) rad, symmetric about 0."""
        n = int(round(self.rocking_half_range_deg / self.rocking_step_deg))
        return np.radians(np.arange(-n, n + 1) * self.rocking_step_deg)

    def sample_grid(self) -> GridSpec:
        """The sample-frame grid of the unknowns (frame = identity)."""
        return GridSpec(self.sample_shape, self.sample_spacing_m)


@dataclass(frozen=True)
class ReflectionSetting:
    """Goniometer and detector of one reflection at its Bragg position (angles in rad).

    h_sample : (3,) rad/m in the sample frame; sample_to_lab : R_gonio (3, 3), v_lab = R v_sample.
    """

    hkl: tuple[int, int, int]
    theta_rad: float
    chi_rad: float
    phi_rad: float
    delta_rad: float
    gamma_rad: float
    h_sample: np.ndarray
    sample_to_lab: np.ndarray


def _reflection(cfg: MultiConfig, hkl):
    from dynbcdi.materials import reflection_constants

    return reflection_constants(cfg.material, tuple(hkl), cfg.energy_eV)


def h_sample_of(cfg: MultiConfig, hkl) -> np.ndarray:
    """Reciprocal-lattice vector of ``hkl`` in the sample frame, (3,) rad/m."""
    from dynbcdi.materials import load_crystal

    q = np.asarray(load_crystal(cfg.material).Q(*hkl), dtype=float)
    return cfg.orientation @ (q / np.linalg.norm(q)) * _reflection(cfg, hkl).h_norm


def reflection_setting(cfg: MultiConfig, hkl) -> ReflectionSetting:
    """θ, δ, γ that put ``hkl`` in Bragg condition with the common mounting; ValueError if unreachable.

    Condition: the lab h has k0·h = −|h|²/2, i.e. h_lab,z = −|h| sin θB (k0 ∥ +z). θ turns the
    mounted vector v about +y: h_z(θ) = ρ cos(θ + α), ρ = √(v_x² + v_z²), α = atan2(v_x, v_z). Of
    the two roots the one with the smaller |θ| whose δ, γ lie within the arm limits is taken.
    """
    refl = _reflection(cfg, hkl)
    chi, phi = math.radians(cfg.chi_deg), math.radians(cfg.phi_deg)
    h_s = h_sample_of(cfg, hkl)
    v = circles_rotation(SAMPLE_CIRCLES[1:], (chi, phi)).apply(h_s)
    rho, alpha = math.hypot(v[0], v[2]), math.atan2(v[0], v[2])
    target = -refl.h_norm * math.sin(refl.bragg_angle_rad)
    if rho < abs(target):
        raise ValueError(f"reflection {tuple(hkl)} is unreachable with this mounting: rotating θ about the vertical "
                         f"never brings it into Bragg condition (in-plane part {rho / refl.h_norm:.3f}|h| < "
                         f"sin θB = {abs(target) / refl.h_norm:.3f}); change chi/phi or the orientation")
    k = 2 * math.pi / wavelength_from_energy(cfg.energy_eV)
    tried = []
    for root in sorted((math.acos(target / rho) - alpha, -math.acos(target / rho) - alpha),
                       key=lambda t: abs(math.remainder(t, 2 * math.pi))):
        theta = math.remainder(root, 2 * math.pi)
        rot = circles_rotation(SAMPLE_CIRCLES, (theta, chi, phi))
        kh = np.array([0.0, 0.0, k]) + rot.apply(h_s)
        delta, gamma = math.atan2(kh[0], kh[2]), math.asin(np.clip(kh[1] / k, -1, 1))
        tried.append((math.degrees(theta), math.degrees(delta), math.degrees(gamma)))
        if _within(math.degrees(delta), cfg.delta_limits_deg) and _within(math.degrees(gamma), cfg.gamma_limits_deg):
            return ReflectionSetting(tuple(int(i) for i in hkl), theta, chi, phi, delta, gamma, h_s, rot.as_matrix())
    raise ValueError(f"reflection {tuple(hkl)} is unreachable: the Bragg settings (θ, δ, γ) = "
                     + ", ".join(f"({t:.2f}°, {d:.2f}°, {g:.2f}°)" for t, d, g in tried)
                     + f" put the detector outside δ ∈ {cfg.delta_limits_deg}°, γ ∈ {cfg.gamma_limits_deg}°")


def _within(value: float, limits: tuple[float, float]) -> bool:
    return limits[0] <= value <= limits[1]


def non_coplanarity(h_vectors: np.ndarray) -> float:
    """Largest |det| of three unit h vectors among ``h_vectors`` (M, 3): 0 = all coplanar, 1 = orthogonal."""
    h = np.asarray(h_vectors, dtype=float)
    h = h / np.linalg.norm(h, axis=1, keepdims=True)
    best = 0.0
    for i in range(len(h)):
        for j in range(i + 1, len(h)):
            for m in range(j + 1, len(h)):
                best = max(best, abs(float(np.linalg.det(h[[i, j, m]]))))
    return best


def check_non_coplanar(h_vectors: np.ndarray) -> None:
    """ValueError unless some three of the h vectors (M, 3) are non-coplanar (|det| ≥ :data:`COPLANAR_DET`)."""
    det = non_coplanarity(h_vectors)
    if len(h_vectors) < 3 or det < COPLANAR_DET:
        raise ValueError(f"the reflections do not determine the full displacement vector: no three of them are "
                         f"non-coplanar (largest |det| of unit h = {det:.3f} < {COPLANAR_DET})")


def geometry_of(cfg: MultiConfig, setting: ReflectionSetting) -> BraggGeometry:
    """The 34-ID-C rocking scan of one reflection (θ rocking, detector at δ, γ)."""
    refl = _reflection(cfg, setting.hkl)
    return aps34idc_geometry(cfg.energy_eV, setting.delta_rad, setting.gamma_rad, cfg.rocking_angles_rad(),
                             tuple(cfg.detector_shape), cfg.pixel_size_m, cfg.distance_m, h_norm=refl.h_norm,
                             rocking_circle="theta",
                             sample_angles_rad={"theta": setting.theta_rad, "chi": setting.chi_rad,
                                                "phi": setting.phi_rad})


def tte_grid(cfg: MultiConfig, geometry: BraggGeometry, setting: ReflectionSetting) -> GridSpec:
    """The reflection's TTE grid (ẑ ∥ kh, detector-matched dy, dx) expressed in the sample frame."""
    dy, dx = geometry.transverse_spacing_m()
    return GridSpec.from_grid_frame((cfg.nz, *geometry.detector_shape), (cfg.dz_m or dx, dy, dx),
                                    geometry.grid_frame(), setting.sample_to_lab)


def truth_on(cfg: MultiConfig, grid: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """Analytic truth at the voxel centres of ``grid``: s (Z, Y, X) and u (3, Z, Y, X) in m, sample components."""
    m = grid.frame  # rows: grid axes in the sample frame, so v_grid = m v_sample
    normals = np.concatenate([cfg.orientation.T, -cfg.orientation.T]) @ m.T  # ±U e_i in grid components
    s = shapes.polyhedron(grid.shape, grid.spacing_m, normals, [cfg.edge_m / 2] * 6, smooth_m=cfg.smooth_m)
    centre = m @ np.asarray(cfg.inclusion_center_m, dtype=float)
    u_grid = disp.point_inclusion(grid.shape, grid.spacing_m, cfg.inclusion_radius_m, cfg.inclusion_misfit, centre)
    return s, np.tensordot(m.T, u_grid, axes=1)


def _simulate_one(cfg: MultiConfig, setting: ReflectionSetting, device: str, progress) -> Dataset:
    from dynbcdi.forward.tte import TTEModel
    from dynbcdi.simulate import noise as noise_mod

    refl = _reflection(cfg, setting.hkl)
    geometry = geometry_of(cfg, setting)
    grid = tte_grid(cfg, geometry, setting)
    frame = geometry.grid_frame()
    s, u = truth_on(cfg, grid)
    ratios = check_sampling(geometry, frame, s, grid.spacing_m)
    if cfg.truth_source == "analytic":
        truth = disp.crystal_function(s, disp.phase_from_displacement(u, setting.h_sample), np.complex128)
    else:
        truth = _resampled_truth(cfg, grid, setting.h_sample)
    model = TTEModel.from_geometry(geometry, refl, grid.spacing_m, polarization=cfg.polarization, frame=frame)
    dq = geometry.dq_grid(frame)
    stack = compute_stack(model, torch.as_tensor(truth, device=device), dq, 8, progress, label=str(setting.hkl))
    intensity = stack
    if cfg.peak_photons is not None:
        rng = np.random.default_rng(cfg.seed + sum(abs(i) * 10**n for n, i in enumerate(setting.hkl)))
        intensity = noise_mod.poisson_noise(stack, None, cfg.peak_photons, rng)
    metadata = {"name": f"{cfg.name}-{''.join(str(i) for i in setting.hkl)}", "hkl": list(setting.hkl),
                "h_sample": setting.h_sample, "sample_to_lab": setting.sample_to_lab,
                "grid_frame_sample": grid.frame, "grid_shape": list(grid.shape), "theta_rad": setting.theta_rad,
                "chi_rad": setting.chi_rad,
                "phi_rad": setting.phi_rad, "delta_rad": setting.delta_rad, "gamma_rad": setting.gamma_rad,
                "intensity_dynamical": stack.astype(np.float32), **ratios}
    return Dataset(intensity=intensity, valid=np.ones(geometry.detector_shape, bool), geometry=geometry,
                   reflection=refl, spacing_m=grid.spacing_m, truth=truth.astype(np.complex64), metadata=metadata)


def _resampled_truth(cfg: MultiConfig, grid: GridSpec, h_sample: np.ndarray) -> np.ndarray:
    from types import SimpleNamespace

    from dynbcdi.reconstruct.crystal import CrystalField

    sample = cfg.sample_grid()
    s, u = truth_on(cfg, sample)
    field = CrystalField(sample, s, u, support=s > SUPPORT_FLOOR)
    with torch.no_grad():
        return field.on(SimpleNamespace(grid=grid, h_sample=h_sample)).numpy()


def simulate_multi(cfg: MultiConfig, device: str = "cpu", progress=None) -> list[Dataset]:
    """One TTE dataset per reflection of ``cfg`` (order of ``cfg.hkls``); checks reachability of every
    reflection and, for ≥ 3 reflections, their non-coplanarity, before any computation."""
    settings = [reflection_setting(cfg, hkl) for hkl in cfg.hkls]
    if len(settings) >= 3:
        check_non_coplanar(np.stack([st.h_sample for st in settings]))
    return [_simulate_one(cfg, st, device, progress) for st in settings]


def write_multi(cfg: MultiConfig, datasets: list[Dataset], directory: str | os.PathLike,
                overwrite: bool = False) -> Path:
    """Write ``<dir>/<hkl>.npz`` per reflection, ``truth.npz`` (s, u on the sample grid) and
    ``manifest.json`` (config, files, hkl, the common orientation U, χ, φ); returns the manifest path."""
    out = check_output_path(directory, "output directory", directory=True)
    names = ["refl_" + "_".join(str(i) for i in ds.metadata["hkl"]) + ".npz" for ds in datasets]
    for target in [out / "manifest.json", out / "truth.npz", *(out / n for n in names)]:
        if target.exists() and not overwrite:  # checked before anything is written: no half-written run
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for ds, name in zip(datasets, names):
        save_dataset(ds, out / name, overwrite=overwrite)
        entries.append({"file": name, "hkl": ds.metadata["hkl"], "theta_deg": math.degrees(ds.metadata["theta_rad"]),
                        "delta_deg": math.degrees(ds.metadata["delta_rad"]),
                        "gamma_deg": math.degrees(ds.metadata["gamma_rad"])})
    grid = cfg.sample_grid()
    s, u = truth_on(cfg, grid)
    np.savez_compressed(out / "truth.npz", s=s, u=u, spacing_m=np.array(grid.spacing_m))
    manifest = {"version": MANIFEST_VERSION, "material": cfg.material, "energy_eV": cfg.energy_eV,
                "orientation": cfg.orientation.tolist(), "chi_deg": cfg.chi_deg, "phi_deg": cfg.phi_deg,
                "sample_grid": {"shape": list(grid.shape), "spacing_m": list(grid.spacing_m)},
                "truth": "truth.npz", "reflections": entries, "config": _config_dict(cfg)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out / "manifest.json"


def _config_dict(cfg: MultiConfig) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


@dataclass
class MultiDataset:
    """A loaded manifest: the datasets (in manifest order), U, the sample grid and the truth if stored."""

    datasets: list[Dataset]
    orientation: np.ndarray
    sample_grid: GridSpec
    truth: dict[str, np.ndarray] | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


def load_manifest(path: str | os.PathLike) -> MultiDataset:
    """Read ``manifest.json`` and its datasets, checking that they are one crystal in one mounting.

    Refused (ValueError naming the file): a dataset of another material or energy, a file whose hkl
    differs from the manifest's, a stored lab h that does not equal R_gonio(θ, χ, φ)·U·h_crystal
    (another crystal or another mounting), and an hkl that is unreachable with the mounting.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such manifest: {path}")
    try:
        man = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if man.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {man.get('version')!r}, this dynbcdi reads {MANIFEST_VERSION}")
    cfg = MultiConfig(**{k: (tuple(map(tuple, v)) if k == "hkls" else tuple(v) if isinstance(v, list) else v)
                         for k, v in man["config"].items()})
    if not np.allclose(cfg.orientation, np.asarray(man["orientation"]), atol=1e-9):
        raise ValueError(f"{path}: the orientation matrix disagrees with config.orientation_euler_deg")
    datasets = [_checked_dataset(path.parent / e["file"], e, cfg) for e in man["reflections"]]
    truth = None
    if man.get("truth") and (path.parent / man["truth"]).is_file():
        with np.load(path.parent / man["truth"]) as f:
            truth = {k: f[k] for k in f.files}
    return MultiDataset(datasets, cfg.orientation, cfg.sample_grid(), truth, man)


def _checked_dataset(file: Path, entry: dict[str, Any], cfg: MultiConfig) -> Dataset:
    ds = load_dataset(file)
    hkl = tuple(int(i) for i in entry["hkl"])
    refl = ds.reflection
    if refl.material != cfg.material or abs(refl.energy_eV - cfg.energy_eV) > 1e-6 * cfg.energy_eV:
        raise ValueError(f"{file}: {refl.material} at {refl.energy_eV} eV, the manifest's crystal is "
                         f"{cfg.material} at {cfg.energy_eV} eV")
    if tuple(refl.hkl) != hkl:
        raise ValueError(f"{file} holds reflection {tuple(refl.hkl)}, the manifest says {hkl}")
    setting = reflection_setting(cfg, hkl)  # unreachable hkl: ValueError
    theta = math.radians(entry["theta_deg"])
    rot = circles_rotation(SAMPLE_CIRCLES, (theta, setting.chi_rad, setting.phi_rad))
    expected = rot.apply(setting.h_sample)
    err = np.linalg.norm(ds.geometry.h - expected) / np.linalg.norm(expected)
    if err > H_CONSISTENCY_RTOL:
        raise ValueError(f"{file}: its h (lab) differs from the common orientation's by {err:.2e} relative: "
                         "another crystal or another mounting")
    return ds


def _preset(name: str, n: int, distance_m: float, edge_m: float, half_range_deg: float, step_deg: float,
            sample_n: int, sample_d_m: float, misfit: float, smooth_m: float) -> MultiConfig:
    return MultiConfig(name=name, hkls=((1, 1, 1), (-1, 1, 1), (1, -1, 1)), detector_shape=(n, n), pixel_size_m=55e-6,
                       distance_m=distance_m, nz=n, edge_m=edge_m, sample_shape=(sample_n,) * 3,
                       sample_spacing_m=(sample_d_m,) * 3, rocking_half_range_deg=half_range_deg,
                       rocking_step_deg=step_deg, inclusion_center_m=(0.15 * edge_m, -0.1 * edge_m, 0.05 * edge_m),
                       inclusion_radius_m=0.22 * edge_m, inclusion_misfit=misfit, smooth_m=smooth_m)


#: Au 111, −111, 1−11 at 9 keV (non-coplanar, |det| = 0.77), crystal [001] vertical (U = R_x(−90°)),
#: χ = φ = 0: all three reach 2θB = 34.0° with the detector at δ = 28.3°, γ = 19.7° and θ = −24.0°,
#: −114.0°, 66.0°. A cube with an Eshelby inclusion (radius 0.22 edge, off-centre; max |h·u| ≈ 2 rad).
#:
#: * ``au-111-multi``: 0.5 µm edge = 2.3 Bragg extinction lengths (214 nm), 64³ TTE grids of 31.3 nm
#:   (detector 64 × 55 µm at 0.8 m), rocking ±0.12° in 0.0075° (33 angles), misfit 1e-3, 10 nm edges,
#:   sample grid 48³ × 35 nm.
#: * ``au-111-multi-32``: the same crystal on 32³ grids of 58.7 nm (0.75 m), ±0.12° in 0.01° (25 angles),
#:   sample grid 26³ × 60 nm, 20 nm edges: the CPU size of the acceptance run.
#: * ``au-111-multi-test``: the same crystal scaled to 0.2 µm (20 nm tanh edges) on 24³ TTE grids of
#:   52.2 nm (detector at 0.5 m), ±0.09° in 0.015° (13 angles), misfit 2e-3, sample grid 16³ × 50 nm,
#:   for tests.
MULTI_PRESETS: dict[str, MultiConfig] = {
    "au-111-multi": _preset("au-111-multi", 64, 0.8, 5e-7, 0.12, 0.0075, 48, 3.5e-8, 1e-3, 1e-8),
    "au-111-multi-32": _preset("au-111-multi-32", 32, 0.75, 5e-7, 0.12, 0.01, 26, 6e-8, 1e-3, 2e-8),
    "au-111-multi-test": _preset("au-111-multi-test", 24, 0.5, 2e-7, 0.09, 0.015, 16, 5e-8, 2e-3, 2e-8),
}
