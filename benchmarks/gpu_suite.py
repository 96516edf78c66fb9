"""The prepared GPU check of issue 13 (item 5): one run, one Markdown table for benchmarks/RESULTS.md.

Stages, each timed with ``torch.cuda.synchronize()`` around the clock on a GPU:

1. the CUDA tests (``pytest -m gpu``; on a machine without CUDA they are collected and skipped);
2. the TTE forward model (:mod:`bench_tte`: Strang, complex64, strained Au cube): forward and
   forward+backward time, peak memory of forward+backward, and the ratio to the FFT floor measured
   in the same process (the fewest 2-D FFTs the march needs on the same batch);
3. kinematic phasing (HIO with shrink-wrap every 10 iterations on the :mod:`bench_phasing` test
   crystal): ms per iteration from the difference of a long and a short run (set-up cancels),
   against the floor of one 3-D FFT + inverse FFT pair of the same complex64 array;
4. the ``au-cube-200`` pipeline: simulation (three models), kinematic phasing (the paper's 1800
   iterations, one start), a single truth-free start (no start search: it would take the whole
   budget at 256³), then dynamical epochs until the time budget is spent; phase error against the
   truth at the end.

Sizes: ``--size full`` (GPU: TTE 128³ × 128 and 256³ × 401, phasing 256³, pipeline at 256) or
``--size tiny`` (the same stages in seconds on a CPU, for the test suite; its pipeline runs the
au-demo preset at 32 points with a short phasing recipe); ``--device`` defaults to cuda when
available. A stage that fails or does not fit the ``--budget-s`` time budget still gets its row
(with the reason); the exit status is 1 when any stage failed. Peak memory: on a GPU
``torch.cuda.max_memory_allocated`` per stage; on a CPU the process's RSS high-water mark.

    python benchmarks/gpu_suite.py --size full --device cuda --budget-s 420
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class SuiteSizes:
    """Problem sizes of one suite run."""

    tte_cases: tuple[tuple[int, int], ...]  # (N, angles): N³ grid
    phasing_n: int
    phasing_iterations: tuple[int, int]  # short and long run; per iteration = Δt / Δiterations
    pipeline_preset: str
    pipeline_size: int
    pipeline_recipe: str
    pipeline_epochs: int
    repeat: int


SIZES = {
    "full": SuiteSizes(((128, 128), (256, 401)), 256, (20, 120), "au-cube-200", 256, "paper", 60, 3),
    # au-demo: au-cube-200 needs >= 40 points and a long phasing run for a start that fits its box
    "tiny": SuiteSizes(((16, 8), (24, 12)), 24, (4, 12), "au-demo", 32,
                       "support(box=0.5), shrinkwrap(start=20, every=10, threshold=0.15, sigma=1), "
                       "HIO(beta=0.9)**40, ER**30", 1, 1),
}


@dataclass
class Row:
    """One line of the table; time and floor in seconds, memory in bytes (None: not measured)."""

    check: str
    case: str
    time_s: float | None = None
    floor_s: float | None = None
    memory: int | None = None
    note: str = ""
    failed: bool = False

    def markdown(self) -> str:
        """The table line."""
        return "| " + " | ".join(self.cells()) + " |"

    def cells(self) -> list[str]:
        """The Markdown cells: check, case, time, floor, ratio, peak memory, note."""
        def sec(x: float | None) -> str:
            return "–" if x is None else (f"{x * 1e3:.2f} ms" if x < 1 else f"{x:.2f} s")

        ratio = "–" if self.time_s is None or not self.floor_s else f"{self.time_s / self.floor_s:.1f}"
        mem = "–" if self.memory is None else f"{self.memory / 2**30:.2f} GiB"
        return [self.check, self.case, sec(self.time_s), sec(self.floor_s), ratio, mem, self.note]


@dataclass
class Clock:
    """The suite's time budget (s, from construction)."""

    budget_s: float
    t0: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        """Seconds left in the budget."""
        return self.budget_s - (time.perf_counter() - self.t0)


def _load(name: str):
    """A sibling benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def sync(device: str) -> None:
    """Wait for the device's queued kernels (timings on a GPU are otherwise launch times)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    """Start a new peak-memory window (GPU; the CPU high-water mark cannot be reset per stage)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_bytes(device: str) -> int:
    """GPU: max allocated since :func:`reset_peak`; CPU: the process's resident-set high-water mark."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cuda_tests(tests: str, timeout_s: float) -> Row:
    """``pytest -m gpu`` on ``tests`` in a subprocess; exit status 5 (nothing collected) is no failure."""
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(timeout_s, 1))
    except subprocess.TimeoutExpired:
        return Row("CUDA tests", "pytest -m gpu", time.perf_counter() - t0, note="timed out", failed=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1].strip("= ") if lines else proc.stderr.strip()[-200:]
    return Row("CUDA tests", "pytest -m gpu", time.perf_counter() - t0, note=summary,
               failed=proc.returncode not in (0, 5))


def tte_rows(n: int, b: int, device: str, repeat: int) -> list[Row]:
    """Forward and forward+backward of the TTE model at n³ × b angles (bench_tte, in this process)."""
    bench = _load("bench_tte")
    case = f"{n}³ × {b}, strang"
    fwd = bench.run_case(n, b, "strang", device, "fwd", repeat, torch.complex64)
    reset_peak(device)
    bwd = bench.run_case(n, b, "strang", device, "bwd", repeat, torch.complex64)
    note = f"{fwd['steps']} z-steps, {fwd['ffts']:.0f} 2-D FFTs in the floor"
    return [Row("TTE forward", case, fwd["fwd_s"], fwd["floor_s"], note=note),
            Row("TTE forward+backward", case, bwd["fwdbwd_s"], fwd["floor_s"], bwd["peak_bytes"],
                note=f"{bwd['fwdbwd_s'] / fwd['fwd_s']:.1f}× forward; memory above the inputs")]


def fft3_pair_s(n: int, device: str, repeat: int, pairs: int = 10) -> float:
    """Seconds for one 3-D FFT + inverse FFT of an n³ complex64 array (min over ``repeat``)."""
    x = torch.randn(n, n, n, dtype=torch.complex64, device=device)
    torch.fft.ifftn(torch.fft.fftn(x))  # plan / warm-up
    best = math.inf
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        for _ in range(pairs):
            x = torch.fft.ifftn(torch.fft.fftn(x))
        sync(device)
        best = min(best, (time.perf_counter() - t) / pairs)
    return best


def phasing_row(n: int, iterations: tuple[int, int], device: str, repeat: int) -> Row:
    """HIO + shrink-wrap every 10 at n³: time per iteration against the 3-D FFT pair floor."""
    from dynbcdi.phasing import phase_retrieval

    truth = _load("bench_phasing").crystal(n)
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(truth)))) ** 2
    phase_retrieval(intensity, None, recipe="ER**2", device=device)  # warm-up (plans, kernels)
    reset_peak(device)

    def run(k: int) -> float:
        sync(device)
        t = time.perf_counter()
        phase_retrieval(intensity, None, recipe=f"shrinkwrap(start=0, every=10, threshold=0.15, sigma=1), "
                        f"HIO(beta=0.9)**{k}", device=device)
        sync(device)
        return time.perf_counter() - t

    short, long = iterations
    times = [(run(short), run(long)) for _ in range(repeat)]  # alternating: load changes hit both
    per_it = max(min(t[1] for t in times) - min(t[0] for t in times), 0.0) / (long - short)
    floor = fft3_pair_s(n, device, repeat)
    return Row("phasing (HIO, shrink-wrap/10)", f"{n}³", per_it, floor, peak_bytes(device),
               note="per iteration; floor: one 3-D FFT + inverse")


def _dynamical(ds, kin, sizes: SuiteSizes, device: str, clock: Clock, reserve_s: float) -> Row:
    """Dynamical epochs from a single truth-free start until the budget (minus ``reserve_s``) is spent."""
    from dynbcdi.analysis import compare
    from dynbcdi.reconstruct import StartConfig, default_config, reconstruct, rocking_step_rad
    from dynbcdi.reconstruct.pipeline import forward_model, start_object

    k0, kh = ds.geometry.beam_directions_grid()
    init = start_object(kin, ds.spacing_m, k0, kh, StartConfig())
    reset_peak(device)
    t0 = time.perf_counter()

    def out_of_time(epoch: int, params) -> bool:
        sync(device)
        spent = time.perf_counter() - t0
        return clock.left() - reserve_s < spent / epoch  # another epoch would overrun

    res = reconstruct(ds.intensity, ds.valid, ds.geometry.dq_grid(), forward_model(ds), init,
                      default_config(sizes.pipeline_epochs, device=device), callback=out_of_time,
                      rocking_step_rad=rocking_step_rad(ds.geometry), evaluate=False)
    sync(device)
    wall = time.perf_counter() - t0
    times = np.diff([0.0, *(r.time_s for r in res.history.records)])
    truth = ds.truth.astype(np.complex128)
    h = ds.geometry.grid_frame().to_grid(ds.geometry.h)
    err = compare(res.S.astype(np.complex128), truth, support=np.abs(truth) > 0.5, h_norm=ds.reflection.h_norm,
                  spacing_m=ds.spacing_m, h_dir_grid=h / np.linalg.norm(h))
    return Row("pipeline: dynamical", f"{sizes.pipeline_preset} {sizes.pipeline_size}", float(np.median(times)),
               memory=peak_bytes(device),
               note=f"per epoch; {res.epochs} epochs ({res.stopped_reason}) in {wall:.0f} s, "
                    f"phase RMS {err.phase_rms_rad:.3f} rad (single start, no start search)")


def pipeline_rows(rows: list[Row], sizes: SuiteSizes, device: str, clock: Clock, reserve_s: float) -> None:
    """``sizes.pipeline_preset`` at ``sizes.pipeline_size``: simulate, phase, then dynamical epochs
    within the budget; appends one row per step to ``rows`` as soon as the step is done."""
    from dynbcdi.phasing import phase_retrieval
    from dynbcdi.reconstruct.pipeline import kinematic_on_grid
    from dynbcdi.simulate import simulate_dataset
    from dynbcdi.simulate.presets import sized_preset

    case = f"{sizes.pipeline_preset} {sizes.pipeline_size}"
    reset_peak(device)
    t0 = time.perf_counter()
    ds = simulate_dataset(sized_preset(sizes.pipeline_preset, sizes.pipeline_size, device), device=device)
    sync(device)
    shape = "×".join(map(str, ds.truth.shape))
    models = ", ".join(k[len("intensity_"):] for k in ds.metadata if k.startswith("intensity_"))
    rows.append(Row("pipeline: simulate", case, time.perf_counter() - t0, memory=peak_bytes(device),
                    note=f"grid {shape}, {ds.intensity.shape[0]} angles; {models}"))
    reset_peak(device)
    t0 = time.perf_counter()
    phasing = phase_retrieval(ds.intensity, ds.valid, recipe=sizes.pipeline_recipe, n_starts=1, device=device)
    sync(device)
    rows.append(Row("pipeline: kinematic phasing", case, time.perf_counter() - t0, memory=peak_bytes(device),
                    note=f"recipe {'paper (1800 it.)' if sizes.pipeline_recipe == 'paper' else 'short'}, 1 start, "
                         f"error {phasing.start_errors[0]:.3g}"))
    kin = kinematic_on_grid(ds, phasing)
    if clock.left() - reserve_s <= 0:
        rows.append(Row("pipeline: dynamical", case, note="skipped: time budget spent"))
    else:
        rows.append(_dynamical(ds, kin, sizes, device, clock, reserve_s))


def _stage(rows: list[Row], checks: list[tuple[str, str]], clock: Clock,
           fn: Callable[[list[Row]], None], emit: Callable[[str], None] | None = None) -> None:
    """Run one stage, which appends its rows to ``rows`` as it goes; on an error or an exhausted
    budget, the expected rows it has not written say so (failed=True). ``emit`` gets each new
    table line at the end of the stage (so that a run killed later keeps what it measured)."""
    first = len(rows)
    why = None
    if clock.left() <= 0:
        why = "skipped: time budget spent"
    else:
        try:
            fn(rows)
        except Exception as err:  # noqa: BLE001 - a failed stage must not lose the others' numbers
            why = f"error: {type(err).__name__}: {err}".replace("|", "/").replace("\n", " ")[:200]
    if why is not None:
        done = {(r.check, r.case) for r in rows[first:]}
        rows.extend(Row(c, case, note=why, failed=True) for c, case in checks if (c, case) not in done)
    for row in rows[first:] if emit is not None else ():
        emit(row.markdown())


def suite(sizes: SuiteSizes, device: str, budget_s: float, tests: str,
          emit: Callable[[str], None] | None = None) -> list[Row]:
    """All stages in order; always one row per expected check (see :func:`expected_checks`);
    ``emit`` receives each table line as soon as its stage ends."""
    clock = Clock(budget_s)
    rows: list[Row] = []
    _stage(rows, [("CUDA tests", "pytest -m gpu")], clock,
           lambda out: out.append(cuda_tests(tests, 0.25 * budget_s)), emit)
    for n, b in sizes.tte_cases:
        checks = [(c, f"{n}³ × {b}, strang") for c in ("TTE forward", "TTE forward+backward")]
        _stage(rows, checks, clock, lambda out, n=n, b=b: out.extend(tte_rows(n, b, device, sizes.repeat)), emit)
    n = sizes.phasing_n
    _stage(rows, [("phasing (HIO, shrink-wrap/10)", f"{n}³")], clock,
           lambda out: out.append(phasing_row(n, sizes.phasing_iterations, device, sizes.repeat)), emit)
    case = f"{sizes.pipeline_preset} {sizes.pipeline_size}"
    _stage(rows, [(c, case) for c in ("pipeline: simulate", "pipeline: kinematic phasing",
                                      "pipeline: dynamical")],
           clock, lambda out: pipeline_rows(out, sizes, device, clock, reserve_s=0.05 * budget_s), emit)
    return rows


def expected_checks(sizes: SuiteSizes) -> list[str]:
    """The check names of a complete table, in order."""
    tte = [c for _ in sizes.tte_cases for c in ("TTE forward", "TTE forward+backward")]
    return ["CUDA tests", *tte, "phasing (HIO, shrink-wrap/10)", "pipeline: simulate",
            "pipeline: kinematic phasing", "pipeline: dynamical"]


def describe(device: str) -> str:
    """Device, library versions and threads, one line."""
    if torch.device(device).type == "cuda":
        name = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        name = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)"
    return f"{name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"


HEADER = ("| check | case | time | floor | ratio | peak memory | note |\n"
          "|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: prints the table line by line; exit status 1 when a stage failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget-s", type=float, default=420.0, help="time budget of the whole suite, s")
    parser.add_argument("--tests", default="tests", help="where pytest looks for the gpu-marked tests")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from dynbcdi.devices import resolve_device

    device = str(resolve_device(args.device))
    print(f"GPU suite ({args.size}) on {describe(device)}:\n\n{HEADER}", flush=True)
    rows = suite(SIZES[args.size], device, args.budget_s, args.tests, emit=lambda line: print(line, flush=True))
    failed = [f"{r.check} ({r.case})" for r in rows if r.failed]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks done"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
