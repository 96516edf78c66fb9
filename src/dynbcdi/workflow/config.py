"""`RunConfig`: the settings of `dynbcdi run`, one TOML file with one section per stage.

Layout (every section optional except the input; unknown keys are errors naming the dotted key)::

    threads = 1                    # torch CPU threads (default: dynbcdi.runtime.choose_threads)
    dataset = "scan.cxi"           # a prepared dataset file, instead of [source]/[reflection]/[prepare]

    [source]        # dynbcdi.io.readers.SourceConfig: beamline, path, scan, spec_file, dark, flat, ...
    [reflection]    # dynbcdi.prepare.ReflectionConfig: material, hkl, lattice_a_m, debye_waller
    [prepare]       # dynbcdi.prepare.PrepareConfig: crop, binning, masks, frame range, ...
    [phasing]       # PhasingSettings: recipe, starts, seed, device, init = "phase" | "file", init_file
    [reconstruction]            # dynbcdi.reconstruct.ReconstructionConfig, on top of default_config()
    [reconstruction.start]      # dynbcdi.reconstruct.StartConfig
    [output]        # OutputSettings: dir, report frames, support threshold, ramp removal, VTK

Relative file paths in the TOML (``dataset``, ``source.path``, ``source.spec_file``, ``source.dark``,
``source.flat``, ``source.bad_pixels``, ``phasing.init_file``, ``output.dir``) are resolved against
the folder of the TOML file itself, not the working directory, so that an example such as
``examples/aps34idc-scan54.toml`` (``path = "../../shared/data/..."``) runs from anywhere.

``[reconstruction]`` keys override the pipeline's tuned settings for measured scans
(:func:`dynbcdi.reconstruct.default_config` with ``measured=True``, :meth:`StartConfig.measured`),
not ``ReconstructionConfig()``: a TOML with only ``epochs = 40`` changes only the number of epochs. The ``source``/``reflection``/``prepare`` classes are imported when those
sections are present (they belong to the readers and prepare modules).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dynbcdi.config import deep_merge, from_dict, load_toml
from dynbcdi.provenance import as_plain
from dynbcdi.io.readers.base import resolve_source_paths

__all__ = ["OutputSettings", "PhasingSettings", "ReconstructionSettings", "RunConfig", "load_run_config",
           "run_config_from_dict"]

#: section → (module, class) of the dataclass it is parsed into (imported only when present).
EXTERNAL_SECTIONS: dict[str, tuple[str, str]] = {
    "source": ("dynbcdi.io.readers", "SourceConfig"),
    "reflection": ("dynbcdi.prepare", "ReflectionConfig"),
    "prepare": ("dynbcdi.prepare", "PrepareConfig"),
}
#: keys of [source] that name files (resolved against the TOML's folder); data_path is inside a file.

@dataclass(frozen=True)
class PhasingSettings:
    """Kinematic phasing stage (:func:`dynbcdi.phasing.phase_retrieval`).

    recipe: recipe text or preset name ("paper" = 1800 HIO/ER iterations with shrink-wrap).
    starts: random starts; the lowest final Fourier error is kept. seed: seed of the first start.
    device: torch device ("cpu", "cuda", "cuda:1"); not part of the cache key.
    init: "phase" (run phase retrieval) or "file" (take another code's result from ``init_file``:
        PyNX / cdiutils CXI, cohere ``image.npy``, a dynbcdi result; ``dynbcdi.io.readers.objects``).
    """

    recipe: str = "paper"
    starts: int = 4
    seed: int = 0
    device: str = "cpu"
    init: Literal["phase", "file"] = "phase"
    init_file: str | None = None

    def __post_init__(self) -> None:
        if self.starts < 1:
            raise ValueError(f"phasing.starts must be >= 1, got {self.starts}")
        if (self.init == "file") != (self.init_file is not None):
            raise ValueError("phasing.init = \"file\" needs phasing.init_file (and init_file needs init = \"file\"), "
                             f"got init={self.init!r}, init_file={self.init_file!r}")


@dataclass(frozen=True)
class ReconstructionSettings:
    """Dynamical stage: the reconstruction settings, the start search and the forward model.

    config: :class:`dynbcdi.reconstruct.ReconstructionConfig` (TOML keys of ``[reconstruction]``
        override :func:`measured_defaults`). start: :class:`dynbcdi.reconstruct.StartConfig`
        (``[reconstruction.start]``, on top of the measured-data start search). model: "tte" (the
        dynamical model) or "kinematic" (the same optimiser with the kinematic model, for comparison).
    repeats: reconstructions from independent starts (``[reconstruction] repeats = N``); with N > 1
        the dynamical stage also writes the per-voxel mean and spread of displacement and strain
        (:mod:`dynbcdi.reconstruct.uncertainty`). In the workflow the repeats share the cached
        kinematic result, so they differ by the mini-batch order (``config.seed`` + k).
    """

    config: Any
    start: Any
    model: Literal["tte", "kinematic"] = "tte"
    repeats: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.repeats, int) or isinstance(self.repeats, bool) or self.repeats < 1:
            raise ValueError(f"config key 'reconstruction.repeats' must be an integer >= 1, got {self.repeats!r}")


@dataclass(frozen=True)
class OutputSettings:
    """What the analysis and report stages write.

    dir: run folder (relative: to the TOML's folder); the CLI's ``--out`` wins.
    report_frames: rocking frames shown as data vs model images in the report (>= 1).
    support_threshold: the crystal support for strain and figures is the smoothed amplitude above
        this fraction of its maximum (:func:`dynbcdi.analysis.support_from_amplitude`).
    remove_ramp: remove the least-squares phase ramp before displacement and strain (for measured
        data the kinematic ramp only reflects where the Bragg peak sits on the detector; the
        refraction ramp that the dynamical model removes is then removed from both alike).
    vti: write ParaView .vti files of amplitude, phase, displacement and strain.
    pattern_chunk: rocking angles per forward-model call when computing model patterns (memory).
    """

    dir: str | None = None
    report_frames: int = 5
    support_threshold: float = 0.3
    remove_ramp: bool = True
    vti: bool = True
    pattern_chunk: int = 16

    def __post_init__(self) -> None:
        if self.report_frames < 1 or self.pattern_chunk < 1:
            raise ValueError(f"output.report_frames and output.pattern_chunk must be >= 1, got "
                             f"{self.report_frames}, {self.pattern_chunk}")
        if not 0.0 < self.support_threshold < 1.0:
            raise ValueError(f"output.support_threshold must be in (0, 1), got {self.support_threshold}")


@dataclass(frozen=True)
class RunConfig:
    """Everything `dynbcdi run` does, parsed from one TOML file (see the module docstring).

    source / reflection / prepare: the readers' and prepare module's configs (None without a
    ``[source]`` section). dataset: a prepared dataset file (.cxi/.npz) used instead of them.
    threads: torch CPU threads (None: :func:`dynbcdi.runtime.choose_threads`, the usable CPUs that
    other processes leave idle). base_dir: folder of the TOML file (relative paths were resolved
    against it). Exactly one of ``source`` and ``dataset`` is set.
    """

    source: Any = None
    reflection: Any = None
    prepare: Any = None
    dataset: str | None = None
    phasing: PhasingSettings = field(default_factory=PhasingSettings)
    reconstruction: ReconstructionSettings = field(default_factory=lambda: _reconstruction({}))
    output: OutputSettings = field(default_factory=OutputSettings)
    threads: int | None = None
    base_dir: str = "."

    def __post_init__(self) -> None:
        if (self.source is None) == (self.dataset is None):
            raise ValueError("give either a [source] section (with [reflection]) or a top-level "
                             "dataset = \"file.cxi\", not both or neither")
        if self.source is not None and self.reflection is None:
            raise ValueError("a [source] section needs a [reflection] section (material, hkl)")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    def replace(self, **changes: Any) -> RunConfig:
        """Copy with top-level fields replaced."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of every setting (for the report, the manifests and the cache keys)."""
        return as_plain(self)


def _reconstruction(data: dict[str, Any]) -> ReconstructionSettings:
    from dynbcdi.reconstruct import StartConfig
    from dynbcdi.reconstruct.config import config_from_dict

    data = dict(data)
    config_base, start_base = measured_defaults()
    start = from_dict(StartConfig, deep_merge(start_base, data.pop("start", {})), "reconstruction.start")
    model = data.pop("model", "tte")
    if model not in ("tte", "kinematic"):
        raise ValueError(f"config key 'reconstruction.model' must be 'tte' or 'kinematic', got {model!r}")
    repeats = data.pop("repeats", 1)
    config = config_from_dict(data, config_base, "reconstruction")
    return ReconstructionSettings(config=config, start=start, model=model, repeats=repeats)


def measured_defaults() -> tuple[Any, dict[str, Any]]:
    """The pipeline's settings for measured scans: ``default_config(measured=True)`` (fitted rocking
    offset, frame scales and detector blur, free pixels, smoothed stopping) and, as a dict,
    ``StartConfig.measured()`` (the kinematic result as the start unless a flat one trials better)."""
    from dynbcdi.reconstruct import StartConfig, default_config

    return default_config(measured=True), dataclasses.asdict(StartConfig.measured())


def _external(section: str, data: Any) -> Any:
    module, name = EXTERNAL_SECTIONS[section]
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ValueError(f"section [{section}] needs {module}.{name}, which this dynbcdi does not have") from None
    return from_dict(cls, data, section)


def _resolve(value: Any, base: Path) -> Any:
    if value is None or not isinstance(value, str):
        return value
    p = Path(value).expanduser()
    return os.fspath(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    if "dataset" in data:
        data["dataset"] = _resolve(data["dataset"], base)
    if isinstance(data.get("source"), dict):
        data["source"] = resolve_source_paths(data["source"], base)
    for section, keys in (("phasing", ("init_file",)), ("output", ("dir",))):
        if isinstance(data.get(section), dict):
            for key in keys:
                if key in data[section]:
                    data[section][key] = _resolve(data[section][key], base)
    return data


def run_config_from_dict(data: dict[str, Any], base_dir: str | os.PathLike = ".") -> RunConfig:
    """Build a :class:`RunConfig` from a nested dict (a parsed TOML); relative paths against ``base_dir``.

    Unknown sections or keys raise ``ValueError`` naming them (one line).
    """
    if not isinstance(data, dict):
        raise ValueError(f"run configuration must be a table, got {data!r}")
    allowed = {"threads", "dataset", "source", "reflection", "prepare", "phasing", "reconstruction", "output"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; allowed at the top level: {sorted(allowed)}")
    base = Path(base_dir).resolve()
    data = _resolve_paths(data, base)
    for section in ("phasing", "reconstruction", "output"):
        if section in data and not isinstance(data[section], dict):
            raise ValueError(f"config section [{section}] must be a table, got {data[section]!r}")
    kwargs: dict[str, Any] = {section: _external(section, data[section]) for section in EXTERNAL_SECTIONS
                              if section in data}
    if "source" in data and "prepare" not in data:  # the prepare module's defaults
        kwargs["prepare"] = _external("prepare", {})
    kwargs["phasing"] = from_dict(PhasingSettings, data.get("phasing", {}), "phasing")
    kwargs["reconstruction"] = _reconstruction(data.get("reconstruction", {}))
    kwargs["output"] = from_dict(OutputSettings, data.get("output", {}), "output")
    for key, kind in (("threads", int), ("dataset", str)):
        if key in data:
            if not isinstance(data[key], kind) or isinstance(data[key], bool):
                raise ValueError(f"config key {key!r} must be {kind.__name__}, got {data[key]!r}")
            kwargs[key] = data[key]
    if "prepare" in data and "source" not in data:
        raise ValueError("a [prepare] section needs a [source] section (a prepared dataset is used as it is)")
    return RunConfig(**kwargs, base_dir=os.fspath(base))


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read a run TOML file; relative paths in it are resolved against the file's own folder."""
    path = Path(path)
    try:
        return run_config_from_dict(load_toml(path), base_dir=path.resolve().parent)
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: {err}") from None
