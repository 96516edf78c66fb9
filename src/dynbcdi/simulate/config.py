"""Typed, validated configuration of a simulated rocking scan, and its TOML form.

A TOML file mirrors :class:`SimulationConfig`: tables ``[reflection]``, ``[geometry]``, ``[grid]``,
``[crystal]``, ``[noise]``, ``[model]`` and an array of tables ``[[deformation]]``. Required fields
have no defaults; unknown keys are errors (the message names the key and the table). Lengths are in
metres, angles in degrees (``*_deg``), energies in eV. Vectors in the grid frame are ``[x, y, z]``.

Example::

    [reflection]
    material = "Au"
    hkl = [2, 0, 0]
    energy_eV = 8000.0
    lattice_a_m = 4.07e-10

    [geometry]
    rocking_start_deg = -0.2
    rocking_stop_deg = 0.2
    rocking_step_deg = 0.001
    detector_shape = [256, 256]
    pixel_size_m = 55e-6
    distance_m = 1.09

    [grid]
    nz = 256

    [crystal]
    shape = "cube"
    size_m = [1e-6]

    [[deformation]]
    kind = "gaussian_bulge"
    amplitude_m = 5e-11
    sigma_m = 3e-7

A user's own crystal (relative file paths are taken from the TOML file's folder)::

    [crystal]
    shape = "mask"                      # a .npy (Z, Y, X) bool or [0, 1] array, index n//2 at the centre
    mask_file = "grain.npy"
    mask_spacing_m = [5e-9, 5e-9, 5e-9] # its voxel size: resampled as volume fractions onto the grid

    [[deformation]]
    kind = "array"                      # (3, Z, Y, X) u_x, u_y, u_z in m (or (Z, Y, X) u_h: component = "h")
    file = "fem_displacement.npy"
    spacing_m = [10e-9, 10e-9, 10e-9]   # cubic-spline interpolated onto the grid

    [[deformation]]
    kind = "function"                   # f(x, y, z) -> (u_x, u_y, u_z) in m; a callable through the API
    function = "mypackage.fields:twin_boundary"
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynbcdi.config import from_dict, load_toml


def _finite_positive(value: float | None, name: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _spacing(value: Any, name: str) -> None:
    if value is None:
        return
    if len(value) != 3:
        raise ValueError(f"{name} must be three voxel sizes [dz, dy, dx] in m, got {value!r}")
    for v in value:
        _finite_positive(v, name)


def _vector(value: Any, name: str) -> None:
    if value is None:
        return
    if len(value) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value):
        raise ValueError(f"{name} must be a 3-vector [x, y, z] of numbers, got {value!r}")


@dataclass(frozen=True)
class ReflectionConfig:
    """Material and reflection: built-in name or CIF path, Miller indices, photon energy (eV).

    lattice_a_m, lattice_c_m override the lattice constants (m); temperature_K sets the Debye–Waller
    temperature (None: static lattice), as in :func:`dynbcdi.materials.reflection_constants`.
    """

    material: str
    hkl: tuple[int, int, int]
    energy_eV: float
    lattice_a_m: float | None = None
    lattice_c_m: float | None = None
    temperature_K: float | None = 293.15

    def __post_init__(self) -> None:
        if len(self.hkl) != 3 or not all(isinstance(i, int) for i in self.hkl):
            raise ValueError(f"reflection.hkl must be three integers, got {self.hkl!r}")
        _finite_positive(self.energy_eV, "reflection.energy_eV")


@dataclass(frozen=True)
class GeometryConfig:
    """Rocking scan and detector.

    kind : "generic" (ideal, scattering plane ``scattering_plane``) or "34idc" (APS 34-ID-C lab frame;
        the detector sits at γ = ``gamma_deg`` and the δ that satisfies the Bragg condition).
    rocking_*_deg : rocking offsets from the Bragg position, start … stop inclusive, in steps.
    detector_shape : (rows, cols); pixel_size_m, distance_m in m.
    """

    rocking_start_deg: float
    rocking_stop_deg: float
    rocking_step_deg: float
    detector_shape: tuple[int, int]
    pixel_size_m: float
    distance_m: float
    kind: str = "generic"
    gamma_deg: float = 0.0
    scattering_plane: str = "horizontal"

    def __post_init__(self) -> None:
        if self.kind not in ("generic", "34idc"):
            raise ValueError(f"geometry.kind must be 'generic' or '34idc', got {self.kind!r}")
        _finite_positive(self.rocking_step_deg, "geometry.rocking_step_deg")
        if not self.rocking_stop_deg > self.rocking_start_deg:
            raise ValueError(
                f"geometry.rocking_stop_deg ({self.rocking_stop_deg}) must exceed rocking_start_deg "
                f"({self.rocking_start_deg})")
        if len(self.detector_shape) != 2 or min(self.detector_shape) < 2:
            raise ValueError(f"geometry.detector_shape must be [rows, cols] >= 2, got {self.detector_shape!r}")
        _finite_positive(self.pixel_size_m, "geometry.pixel_size_m")
        _finite_positive(self.distance_m, "geometry.distance_m")

    def rocking_angles_deg(self) -> list[float]:
        """Rocking offsets (deg), start … stop inclusive; the step is adjusted to divide the range."""
        n = int(round((self.rocking_stop_deg - self.rocking_start_deg) / self.rocking_step_deg)) + 1
        if n < 2:
            raise ValueError(f"rocking range holds fewer than 2 steps of {self.rocking_step_deg}°")
        step = (self.rocking_stop_deg - self.rocking_start_deg) / (n - 1)
        return [self.rocking_start_deg + j * step for j in range(n)]


@dataclass(frozen=True)
class GridConfig:
    """Grid of the TTE solver: (Z, Y, X) = (nz, rows, cols); dy, dx = λD/(N p) from the detector.

    dz_m : step along ẑ (∥ kh) in m; default the transverse dx.
    """

    nz: int
    dz_m: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.nz, int) or self.nz < 2:
            raise ValueError(f"grid.nz must be an integer >= 2, got {self.nz!r}")
        _finite_positive(self.dz_m, "grid.dz_m", allow_none=True)


CRYSTAL_SHAPES = ("cube", "parallelepiped", "sphere", "polyhedron", "mask")


@dataclass(frozen=True)
class CrystalConfig:
    """Crystal shape, its size and its orientation relative to the reflection.

    shape : "cube" (size_m = [edge]), "parallelepiped" (size_m = edge lengths along edges_uvw),
        "sphere" (size_m = [radius]), "polyhedron" (size_m = distances of the facets_hkl planes from
        the centre) or "mask" (mask_file: a .npy (Z, Y, X) bool or [0, 1] array on the axes of the
        simulation grid, i.e. already in the grid frame; size_m, edges_uvw and azimuth_deg unused).
    edges_uvw : lattice directions [uvw] of the three edges (cube, parallelepiped).
    facets_hkl : Miller indices of the polyhedron's facet planes.
    azimuth_deg : rotation of the crystal about h. At 0°, ĥ is fixed by the reflection and the edge
        least parallel to h (its part ⟂ h) points along grid ŷ, ⟂ the default scattering plane.
    smooth_m : edge width (m): the tanh surface profile of the built-in shapes, a Gaussian blur of
        σ = smooth_m for a mask; None = sharp edges.
    mask_spacing_m : (dz, dy, dx) voxel size of the mask array, m; the mask's index n // 2 sits at the
        grid origin. Given: the mask is resampled onto the simulation grid as volume fractions
        (:func:`dynbcdi.simulate.shapes.resample_mask`: trilinear, averaged over each voxel).
        None: the mask must already have the grid's shape.
    """

    shape: str
    size_m: tuple[float, ...] = ()
    edges_uvw: tuple[tuple[int, int, int], ...] = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
    facets_hkl: tuple[tuple[int, int, int], ...] = ()
    azimuth_deg: float = 0.0
    smooth_m: float | None = None
    mask_file: str | None = None
    mask_spacing_m: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.shape not in CRYSTAL_SHAPES:
            raise ValueError(f"crystal.shape must be one of {CRYSTAL_SHAPES}, got {self.shape!r}")
        needed = {"cube": 1, "sphere": 1, "parallelepiped": 3, "polyhedron": len(self.facets_hkl), "mask": 0}
        if self.shape != "mask" and len(self.size_m) != needed[self.shape]:
            raise ValueError(
                f"crystal.size_m for a {self.shape} needs {needed[self.shape]} value(s), got {list(self.size_m)}")
        for v in self.size_m:
            _finite_positive(v, "crystal.size_m")
        if len(self.edges_uvw) != 3:
            raise ValueError(f"crystal.edges_uvw needs three directions, got {self.edges_uvw!r}")
        if self.shape == "polyhedron" and len(self.facets_hkl) < 4:
            raise ValueError(f"crystal.facets_hkl needs >= 4 planes, got {len(self.facets_hkl)}")
        if self.shape == "mask" and not self.mask_file:
            raise ValueError("crystal.shape = 'mask' needs crystal.mask_file (a .npy array)")
        if self.shape != "mask" and (self.mask_file or self.mask_spacing_m):
            raise ValueError(f"crystal.mask_file/mask_spacing_m apply to shape = 'mask' only, not {self.shape!r}")
        _spacing(self.mask_spacing_m, "crystal.mask_spacing_m")
        _finite_positive(self.smooth_m, "crystal.smooth_m", allow_none=True)


# Parameters each deformation kind accepts (required, optional). "direction" and "corner_toward"
# are [x, y, z] grid vectors, or "h" / "-h" for ±ĥ.
DEFORMATION_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "uniform_strain": (("strain",), ("center_m",)),
    "gaussian_bulge": (("amplitude_m", "sigma_m"), ("center_m", "direction")),
    "point_inclusion": (("radius_m", "misfit"), ("center_m", "poisson_ratio")),
    "corner_contact": (("amplitude_m", "decay_m", "corner_toward"), ("direction",)),
    "array": (("file",), ("spacing_m", "component")),
    "function": (("function",), ("component",)),
}


@dataclass(frozen=True)
class DeformationConfig:
    """One displacement field (fields add). See :mod:`dynbcdi.simulate.displacement`.

    kind : one of :data:`DEFORMATION_KINDS`; only that kind's parameters may be given.
    strain : isotropic strain (number) or a 3×3 displacement gradient (grid frame).
    amplitude_m, sigma_m, decay_m, radius_m : m; misfit, poisson_ratio : dimensionless.
    center_m : [x, y, z] m (default the grid centre). direction, corner_toward : [x, y, z] or "h"/"-h";
    direction defaults to ĥ (gaussian_bulge) or inwards from the corner (corner_contact).
    file : a .npy displacement array ("array"), (3, Z, Y, X) = (u_x, u_y, u_z) in m (grid frame) or,
        with component = "h", (Z, Y, X) u_h along ĥ in m; spacing_m : its (dz, dy, dx) voxel size (m,
        default the simulation grid's), index n // 2 at the grid origin; cubic-spline interpolated
        (:func:`dynbcdi.simulate.displacement.from_array`).
    function : ("function") a callable f(x, y, z) of voxel positions (m, grid frame, broadcastable
        arrays) returning (u_x, u_y, u_z) in m, or u_h with component = "h"; in TOML the import path
        "package.module:name".
    component : "vector" (default) or "h".
    """

    kind: str
    strain: float | tuple[tuple[float, float, float], ...] | None = None
    amplitude_m: float | None = None
    sigma_m: float | None = None
    decay_m: float | None = None
    radius_m: float | None = None
    misfit: float | None = None
    poisson_ratio: float | None = None
    center_m: tuple[float, float, float] | None = None
    direction: str | tuple[float, float, float] | None = None
    corner_toward: str | tuple[float, float, float] | None = None
    file: str | None = None
    spacing_m: tuple[float, float, float] | None = None
    component: str | None = None
    function: Any = None

    def __post_init__(self) -> None:
        if self.kind not in DEFORMATION_KINDS:
            raise ValueError(f"deformation.kind must be one of {tuple(DEFORMATION_KINDS)}, got {self.kind!r}")
        required, optional = DEFORMATION_KINDS[self.kind]
        given = {f.name for f in dataclasses.fields(self) if f.name != "kind" and getattr(self, f.name) is not None}
        missing, extra = set(required) - given, given - set(required) - set(optional)
        if missing:
            raise ValueError(f"deformation '{self.kind}' needs {sorted(missing)}")
        if extra:
            raise ValueError(f"deformation '{self.kind}' does not take {sorted(extra)}")
        for name in ("sigma_m", "decay_m", "radius_m"):
            _finite_positive(getattr(self, name), f"deformation.{name}", allow_none=True)
        _vector(self.center_m, "deformation.center_m")
        _spacing(self.spacing_m, "deformation.spacing_m")
        if self.component not in (None, "vector", "h"):
            raise ValueError(f"deformation.component must be 'vector' or 'h', got {self.component!r}")
        if self.function is not None and not callable(self.function) and not (
                isinstance(self.function, str) and self.function.count(":") == 1):
            raise ValueError(f"deformation.function must be a callable or 'package.module:name', got {self.function!r}")
        for name in ("direction", "corner_toward"):
            value = getattr(self, name)
            if isinstance(value, str) and value not in ("h", "-h"):
                raise ValueError(f"deformation.{name} must be 'h', '-h' or [x, y, z], got {value!r}")
            if value is not None and not isinstance(value, str):
                _vector(value, f"deformation.{name}")


@dataclass(frozen=True)
class NoiseConfig:
    """Photon statistics and detector defects.

    Give total_photons (expected sum over the stack) or peak_photons (expected count in the brightest
    pixel) for Poisson counts; neither keeps the noise-free TTE patterns |F⊥Eh|² (incident
    amplitude 1). gap_rows/gap_cols: [start, stop) pixel ranges; hot_pixels: number of hot pixels.
    """

    total_photons: float | None = None
    peak_photons: float | None = None
    seed: int = 0
    gap_rows: tuple[tuple[int, int], ...] = ()
    gap_cols: tuple[tuple[int, int], ...] = ()
    hot_pixels: int = 0
    hot_counts: float = 1e6

    def __post_init__(self) -> None:
        if self.total_photons is not None and self.peak_photons is not None:
            raise ValueError("noise: give total_photons or peak_photons, not both")
        for name in ("total_photons", "peak_photons"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"noise.{name}: photon count must be > 0, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Forward-model options.

    polarization : "sigma", "pi" or an explicit factor C. batch_size : at least this many rocking
    angles per TTE call (more while the call output fits scan.STACK_CALL_BUDGET_BYTES).
    precision : "single" (complex64) or "double" (complex128).
    kinematic, refraction_kinematic : also compute these stacks (noise-free) for comparison.
    integrator : TTE integrator, "strang" (2nd order) or "rk4" (4th-order Lawson);
    substeps : integration steps per voxel along z (see :class:`dynbcdi.forward.tte.TTEModel`).
    """

    polarization: str | float = "sigma"
    batch_size: int = 8
    precision: str = "single"
    kinematic: bool = True
    refraction_kinematic: bool = False
    integrator: str = "strang"
    substeps: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"model.batch_size must be a positive integer, got {self.batch_size!r}")
        if self.precision not in ("single", "double"):
            raise ValueError(f"model.precision must be 'single' or 'double', got {self.precision!r}")
        if self.integrator not in ("strang", "rk4"):
            raise ValueError(f"model.integrator must be 'strang' or 'rk4', got {self.integrator!r}")
        if not isinstance(self.substeps, int) or self.substeps < 1:
            raise ValueError(f"model.substeps must be a positive integer, got {self.substeps!r}")


@dataclass(frozen=True)
class SimulationConfig:
    """Everything :func:`dynbcdi.simulate.simulate_dataset` needs."""

    reflection: ReflectionConfig
    geometry: GeometryConfig
    grid: GridConfig
    crystal: CrystalConfig
    deformation: tuple[DeformationConfig, ...] = ()
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    name: str = "custom"


# --- dict / TOML -----------------------------------------------------------------------------


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (JSON/TOML-able, tuples as lists, None values left out) of a config."""

    def clean(value: Any) -> Any:
        if callable(value):  # a deformation function given through the API: record its import path
            return f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', repr(value))}"
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(config))


def load_config(path: str | os.PathLike) -> SimulationConfig:
    """Read a :class:`SimulationConfig` from a TOML file (see the module docstring).

    Relative ``crystal.mask_file`` and ``deformation.file`` paths are taken from the TOML file's folder.
    """
    data = load_toml(path)
    folder = Path(path).parent

    def resolve(table: Any, key: str) -> None:
        if isinstance(table, dict) and isinstance(table.get(key), str) and not Path(table[key]).is_absolute():
            table[key] = os.fspath(folder / table[key])

    resolve(data.get("crystal"), "mask_file")
    for d in data.get("deformation", []) if isinstance(data.get("deformation"), list) else []:
        resolve(d, "file")
    return from_dict(SimulationConfig, data)
