"""End-to-end demonstration: simulate → kinematic HIO/ER → dynamical (TTE) reconstruction → analysis.

This is the README's main job (`dynbcdi demo`). It simulates a strained Au (200) crystal thicker than
the Bragg extinction length under dynamical diffraction (preset ``au-demo`` by default), phases it the
traditional way, refines it with the Takagi–Taupin model in the loop, compares both with the ground
truth and writes data, results, ParaView files and the paper's figures into one new folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dynbcdi.analysis import ComparisonMetrics, align_to, metrics_of, strain_analysis
from dynbcdi.io import save_dataset, save_result, write_vti
from dynbcdi.io.dataset import Dataset

if TYPE_CHECKING:
    from dynbcdi.reconstruct.config import ReconstructionConfig
    from dynbcdi.simulate.config import SimulationConfig

logger = logging.getLogger(__name__)

# Voxels with |S| above this fraction of the maximum form the support used for figures and metrics.
SUPPORT_FRACTION = 0.5


@dataclass(frozen=True)
class DemoOptions:
    """Settings of :func:`run_demo`.

    out_dir : new folder for every output (must not exist, or be empty, unless ``overwrite``).
    preset : simulation preset (``dynbcdi.simulate.presets.PRESETS``); ``au-cube-200`` at size 256
        with ``device="cuda"`` is the paper's full simulation.
    size : points per direction; None = the preset's CPU size on CPU, its full size on a GPU.
    device : torch device for simulation, phasing and reconstruction ("cpu", "cuda", "cuda:1").
    n_starts : random starts of the kinematic phasing (the best by Fourier error is kept).
    epochs : maximum epochs of the dynamical reconstruction; None = the pipeline's default.
    seed : seeds phasing starts and mini-batch order. progress : show tqdm bars.
    attempts : whole phasing → dynamical chains with disjoint seeds, the lowest final loss kept
        (``run_pipeline(attempts=...)``; truth-free).
    """

    out_dir: Path
    preset: str = "au-demo"
    size: int | None = None
    device: str = "cpu"
    n_starts: int = 4
    epochs: int | None = None
    seed: int = 0
    progress: bool = True
    overwrite: bool = False
    attempts: int = 1


@dataclass
class DemoSummary:
    """What :func:`run_demo` produced: metrics against the truth, written files, wall times (s), peak memory."""

    out_dir: Path
    metrics: dict[str, ComparisonMetrics]
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: float = float("nan")

    def table(self) -> str:
        """Markdown table of the errors of each method against the ground truth."""
        rows = ["| method | phase RMS (rad) | displacement RMS (pm) | strain RMS | amplitude error |",
                "|---|---|---|---|---|"]
        for label, m in self.metrics.items():
            rows.append(f"| {label} | {m.phase_rms_rad:.3f} | {m.displacement_rms_pm:.1f} | "
                        f"{m.strain_rms:.2e} | {m.amplitude_rel_error:.3f} |")
        return "\n".join(rows)


def prepare_out_dir(path: Path, overwrite: bool) -> Path:
    """Create ``path``; refuse a non-empty existing folder unless ``overwrite`` (no lost results)."""
    from dynbcdi.io.filecheck import check_new_output

    path = check_new_output(path, "output folder", directory=True, overwrite=overwrite,
                            remedy="choose another --out or pass --overwrite")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class DemoPlan:
    """The checked settings of a demo run: simulation and reconstruction configurations."""

    simulation: SimulationConfig
    reconstruction: ReconstructionConfig


def plan_demo(options: DemoOptions) -> DemoPlan:
    """Check every option and build the configurations, before any folder is made or anything computed.

    One-line ValueErrors for an unknown preset, a size, epoch or start count out of range, a bad device.
    """
    from dynbcdi.devices import resolve_device
    from dynbcdi.reconstruct.pipeline import default_config
    from dynbcdi.simulate.presets import sized_preset

    resolve_device(options.device)
    if options.n_starts < 1:
        raise ValueError(f"--starts must be >= 1 (random starts of the kinematic phasing), got {options.n_starts}")
    if options.epochs is not None and options.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {options.epochs}")
    if options.attempts < 1:
        raise ValueError(f"--attempts must be >= 1, got {options.attempts}")
    simulation = sized_preset(options.preset, options.size, options.device)
    simulation = dataclasses.replace(simulation, model=dataclasses.replace(simulation.model, kinematic=True,
                                                                           refraction_kinematic=True))
    reconstruction = default_config().replace(device=options.device, seed=options.seed)
    if options.epochs is not None:
        reconstruction = reconstruction.replace(epochs=options.epochs)
    return DemoPlan(simulation, reconstruction)


def simulate(options: DemoOptions, plan: DemoPlan) -> Dataset:
    """The demo dataset: the preset at the requested size, with kinematic stacks for Fig. 2b."""
    from dynbcdi.simulate import simulate_dataset

    return simulate_dataset(plan.simulation, device=options.device, progress=options.progress)


def reconstruct_both(dataset: Dataset, options: DemoOptions, plan: DemoPlan):
    """Kinematic phasing and dynamical refinement of ``dataset`` (``run_pipeline``), with progress bars."""
    from dynbcdi.reconstruct.pipeline import run_pipeline

    config = plan.reconstruction
    bars = _ProgressBars(options.progress, options.n_starts, config.epochs)
    try:
        return run_pipeline(dataset, n_starts=options.n_starts, seed=options.seed, config=config,
                            device=options.device, attempts=options.attempts, phasing_progress=bars.phasing,
                            progress=bars.epoch)
    finally:
        bars.close()


class _ProgressBars:
    """tqdm bars for the phasing iterations and the dynamical epochs (no-ops when disabled)."""

    def __init__(self, enabled: bool, n_starts: int, epochs: int) -> None:
        self.enabled, self.n_starts, self.epochs = enabled, n_starts, epochs
        self._phase = self._epoch = None

    def phasing(self, info) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        if self._phase is None:
            self._phase = tqdm(total=info.n_iterations * info.n_starts, desc="kinematic HIO/ER", unit="it")
        self._phase.update(info.start * info.n_iterations + info.iteration - self._phase.n)
        self._phase.set_postfix(start=f"{info.start + 1}/{info.n_starts}", error=f"{info.error:.3g}")
        if self._phase.n >= self._phase.total:  # done: close before the dynamical stage logs its start choice
            self._phase.close()

    def epoch(self, record) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        if self._epoch is None:
            self._epoch = tqdm(total=self.epochs, desc="dynamical (TTE)", unit="epoch")
        self._epoch.update(record.epoch - self._epoch.n)
        self._epoch.set_postfix(loss=f"{record.loss:.4g}", lr=f"{record.lr:.3g}")

    def close(self) -> None:
        for bar in (self._phase, self._epoch):
            if bar is not None:
                bar.close()


def evaluate(dataset: Dataset, objects: dict[str, np.ndarray]) -> tuple[dict[str, ComparisonMetrics], dict]:
    """Metrics of each reconstruction against the truth, and the objects aligned onto it.

    Alignment (sub-voxel translation, twin, global phase) is done once per object and shared by the
    metrics (as in :func:`dynbcdi.analysis.compare`); no phase ramp is removed, so refraction ramps
    count as error.
    """
    truth, support = dataset.truth, true_support(dataset)
    kw = dict(h_norm=dataset.reflection.h_norm, spacing_m=dataset.spacing_m, h_dir_grid=h_direction(dataset))
    alignments = {label: align_to(obj, truth, support=support) for label, obj in objects.items()}
    metrics = {label: metrics_of(al, truth, support, **kw) for label, al in alignments.items()}
    return metrics, {label: al.obj for label, al in alignments.items()}


def h_direction(dataset: Dataset) -> np.ndarray:
    """Unit vector ĥ in the grid frame, components (x, y, z)."""
    h = dataset.geometry.grid_frame().to_grid(dataset.geometry.h)
    return h / np.linalg.norm(h)


def analyse(dataset: Dataset, aligned: dict[str, np.ndarray]) -> dict:
    """Phase, displacement and strain of each aligned object inside the true support (no ramp removed)."""
    support = true_support(dataset)
    return {label: strain_analysis(obj, support, dataset.reflection.h_norm, dataset.spacing_m,
                                   h_direction(dataset), remove_ramp=False)
            for label, obj in aligned.items()}


def true_support(dataset: Dataset) -> np.ndarray:
    """(Z, Y, X) bool: voxels of the ground truth above SUPPORT_FRACTION of its maximum amplitude."""
    return np.abs(dataset.truth) > SUPPORT_FRACTION * np.abs(dataset.truth).max()


def write_outputs(dataset: Dataset, pipeline, aligned: dict[str, np.ndarray], analysed: dict,
                  out: Path, overwrite: bool = False) -> list[Path]:
    """Results (CXI), ParaView files (VTI: amplitude, phase, displacement, strain) and a NumPy archive;
    existing files are replaced only with ``overwrite`` (the demo's ``--overwrite``)."""
    files = []
    histories = {"kinematic": {"fourier_error": np.asarray(pipeline.phasing.error)},
                 "dynamical": {"loss": np.asarray(pipeline.dynamical.history.loss)}}
    for label, obj in aligned.items():
        name = label.replace(" ", "_")
        own_support = np.abs(obj) > SUPPORT_FRACTION * np.abs(obj).max()
        files.append(out / f"{name}.cxi")
        save_result(files[-1], obj, dataset.spacing_m, support=own_support, history=histories.get(label),
                    metadata={"method": label, "frame": "grid"}, overwrite=overwrite)
        a = analysed[label]
        files.append(out / f"{name}.vti")
        write_vti(files[-1], {"amplitude": np.abs(obj), "phase": a.phase,
                              "displacement_pm": a.displacement_m * 1e12, "strain": a.strain},
                  dataset.spacing_m, overwrite=overwrite)
    files.append(out / "objects.npz")
    np.savez_compressed(files[-1], spacing_m=np.asarray(dataset.spacing_m),
                        **{label.replace(" ", "_"): obj for label, obj in aligned.items()})
    return files


def write_figures(dataset: Dataset, pipeline, aligned: dict[str, np.ndarray], analysed: dict,
                  out: Path) -> list[Path]:
    """Paper figures: rocking curves (2b), HSV slices (2c–k), strain (4), isosurfaces (3c–e), convergence."""
    from dynbcdi import plot
    from dynbcdi.simulate.figures import rocking_curve_figure

    support = true_support(dataset)
    figures = {
        "rocking_curves": lambda: rocking_curve_figure(dataset),
        "complex_slices": lambda: plot.complex_slices(aligned, dataset.spacing_m),
        "strain": lambda: plot.strain_figure(
            {k: (a.phase, a.displacement_m * 1e12, a.strain) for k, a in analysed.items()},
            support, dataset.spacing_m),
        "diffraction_isosurface": lambda: plot.diffraction_isosurface(dataset.intensity),
        "crystal_isosurface": lambda: plot.crystal_isosurface(
            {k: v for k, v in aligned.items() if k != "ground truth"}, dataset.spacing_m),
        "convergence": lambda: plot.convergence(
            {"kinematic HIO/ER Fourier error (per iteration)": pipeline.phasing.error,
             "dynamical loss (per epoch)": pipeline.dynamical.history.loss}, xlabel="iteration / epoch"),
    }
    paths = []
    for name, make in figures.items():
        path = out / f"{name}.png"
        make().savefig(path, dpi=110)
        paths.append(path)
    return paths


def run_demo(options: DemoOptions) -> DemoSummary:
    """Run the whole demonstration; returns the metrics table, the written files and timings."""
    plan = plan_demo(options)  # every check first: a failure leaves no folder and no dataset behind
    out = prepare_out_dir(options.out_dir, options.overwrite)
    timings = {}
    t0 = time.perf_counter()
    dataset = simulate(options, plan)
    timings["simulation_s"] = time.perf_counter() - t0
    files = [out / "dataset.cxi"]
    save_dataset(dataset, files[0], overwrite=options.overwrite)
    pipeline = reconstruct_both(dataset, options, plan)
    timings.update(phasing_s=pipeline.timings["phasing"], dynamical_s=pipeline.timings["dynamical"])
    objects = {"kinematic": pipeline.kinematic_grid, "dynamical": pipeline.dynamical.S}
    metrics, aligned = evaluate(dataset, objects)
    aligned = {"ground truth": dataset.truth, **aligned}
    analysed = analyse(dataset, aligned)
    files += write_outputs(dataset, pipeline, aligned, analysed, out, options.overwrite)
    t1 = time.perf_counter()
    files += write_figures(dataset, pipeline, aligned, analysed, out)
    timings["figures_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    summary = DemoSummary(out, metrics, files, timings, pipeline.timings["peak_rss_mib"])
    (out / "errors.md").write_text(summary.table() + "\n")
    (out / "summary.json").write_text(json.dumps(
        {"options": {k: str(v) for k, v in dataclasses.asdict(options).items()},
         "grid": list(dataset.truth.shape), "angles": int(dataset.intensity.shape[0]),
         "spacing_m": list(dataset.spacing_m), "metrics": {k: m.as_dict() for k, m in metrics.items()},
         "timings_s": timings, "peak_rss_mib": summary.peak_rss_mib}, indent=1, default=float))
    summary.files += [out / "errors.md", out / "summary.json"]
    return summary
