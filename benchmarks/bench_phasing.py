"""Kinematic phasing benchmark: dynbcdi.phasing against cohere-core on the same data and machine.

Timing: the minimum over alternating repeats of a run of HIO iterations with shrink-wrap every 10
(the loaded 2-core CI machine makes single timings unreliable). Accuracy: both run the same recipe (HIO β = 0.9 / ER blocks of 50, Gaussian shrink-wrap σ = 1 voxel,
threshold 0.15, from iteration 100 every 10; initial support a centred box of half the array) on
the noise-free kinematic intensity of a strained faceted crystal (flattened octahedron, ≈1/3 of the
box, phase bump 1.5 rad). Reported per size: seconds per iteration, and for the final object of
each code the *same* metrics computed here: the Fourier amplitude error ‖s|F| − A‖/‖A‖ (best scale
s, either twin) and, after twin/translation/phase alignment, the phase RMS (|truth| > 0.5) and the
amplitude error against the truth. cohere-core's own ``errs`` is ‖·‖²/‖·‖² (a squared ratio), so
it is not used for the comparison.

    .venv/bin/python benchmarks/bench_phasing.py     # timing 64³ and 128³; accuracy 64³, 4 seeds
    .venv/bin/python benchmarks/bench_phasing.py --device cuda --accuracy-max-size 128
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dynbcdi.analysis import twin
from dynbcdi.phasing import phase_retrieval


def crystal(n: int) -> np.ndarray:
    """(n, n, n) complex test crystal: octahedron |z|+|y|+0.8|x| ≤ n/5.3 with a 1.5 rad phase bump."""
    z, y, x = np.meshgrid(*[np.arange(n) - n // 2] * 3, indexing="ij")
    radius = n / 5.3
    amplitude = np.clip(radius + 0.5 - (np.abs(z) + np.abs(y) + 0.8 * np.abs(x)), 0.0, 1.0)
    width = n / 10.0
    phase = 1.5 * (np.exp(-((z - n / 16) ** 2 + (y + n / 32) ** 2 + x**2) / (2 * width**2)) + 0.02 * x * y * (32 / n) ** 2)
    return amplitude * np.exp(1j * phase)


def recipes(n_iter: int) -> tuple[str, str]:
    """Same schedule in both languages: blocks of 50 HIO + 50 ER, the rest ER (≥ 100 iterations)."""
    blocks = max((n_iter - 100) // 100, 0)
    final = n_iter - 100 * blocks
    head = "support(box=0.5), shrinkwrap(start=100, every=10, threshold=0.15, sigma=1), "
    ours = head + (f"(HIO(beta=0.9)**50, ER**50)**{blocks}, " if blocks else "") + f"ER**{final}"
    theirs = (f"{blocks}*(50*HIO+50*ER)+" if blocks else "") + f"{final}*ER"
    return ours, theirs


def fourier_error(obj: np.ndarray, amplitude_centred: np.ndarray) -> float:
    """min over (obj, conj obj) of ‖s|FFT obj| − A‖/‖A‖, least-squares scale s (shift-invariant).

    conj covers codes whose forward transform is the inverse FFT (cohere-core): |FFT conj o|(q) = |FFT o|(−q).
    """
    target = np.fft.ifftshift(amplitude_centred)
    best = np.inf
    for candidate in (obj, np.conj(obj)):
        model = np.abs(np.fft.fftn(candidate))
        scale = np.sum(model * target) / np.sum(model**2)
        best = min(best, np.linalg.norm(scale * model - target) / np.linalg.norm(target))
    return float(best)


def truth_errors(obj: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(phase RMS rad on |truth| > 0.5, relative amplitude error) after the best of obj/twin/conj/flip."""
    best = None
    for candidate in (obj, twin(obj), np.conj(obj), obj[::-1, ::-1, ::-1]):
        corr = np.fft.ifftn(np.fft.fftn(candidate) * np.conj(np.fft.fftn(truth)))
        peak = np.max(np.abs(corr))
        if best is None or peak > best[0]:
            best = (peak, candidate, np.unravel_index(np.argmax(np.abs(corr)), corr.shape))
    _, candidate, shift = best
    aligned = np.roll(candidate, [-s for s in shift], axis=(0, 1, 2))
    aligned = aligned * np.vdot(aligned, truth) / np.vdot(aligned, aligned)  # complex least-squares scale
    inside = np.abs(truth) > 0.5
    phase_rms = np.sqrt(np.mean(np.angle(aligned[inside] * np.conj(truth[inside])) ** 2))
    amp_err = np.linalg.norm(np.abs(aligned) - np.abs(truth)) / np.linalg.norm(truth)
    return float(phase_rms), float(amp_err)


def run_dynbcdi(intensity: np.ndarray, recipe: str, device: str, seed: int) -> tuple[np.ndarray, float]:
    """Final object and wall time (s) of one dynbcdi start."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = phase_retrieval(intensity, None, recipe=recipe, seed=seed, device=device)
    return result.obj, time.perf_counter() - start


def run_cohere(intensity: np.ndarray, sequence: str, device: str, seed: int, sw_start: int = 100) -> tuple[np.ndarray, float]:
    """Final object and wall time (s) of ``Rec.iterate`` for one cohere-core start (torch backend)."""
    import cohere_core.controller.phasing as cohere_phasing

    params = {
        "algorithm_sequence": sequence, "hio_beta": 0.9, "shrink_wrap_trigger": [sw_start, 10],
        "shrink_wrap_type": "GAUSS", "shrink_wrap_threshold": 0.15, "shrink_wrap_gauss_sigma": 1.0,
        "initial_support_area": (0.5, 0.5, 0.5),
    }
    torch.manual_seed(seed)  # cohere's random start uses torch's global generator
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "data.npy")
        np.save(path, np.sqrt(intensity).astype(np.float32))  # cohere phases amplitudes (√I), centred
        with contextlib.redirect_stdout(io.StringIO()):
            rec = cohere_phasing.create_rec(params, path, "torch", 0 if device.startswith("cuda") else -1, debug=True)
            start = time.perf_counter()
            rec.iterate()
            elapsed = time.perf_counter() - start
    return rec.get_image().cpu().numpy(), elapsed


def time_per_iteration(intensity: np.ndarray, n_iter: int, repeats: int, device: str, cohere: bool) -> dict[str, float]:
    """Min over ``repeats`` alternating runs of ``n_iter`` HIO iterations with shrink-wrap every 10."""
    ours = f"shrinkwrap(start=0, every=10, threshold=0.15, sigma=1), HIO(beta=0.9)**{n_iter}"
    best = {"dynbcdi": np.inf, "cohere-core": np.inf}
    for _ in range(repeats):
        best["dynbcdi"] = min(best["dynbcdi"], run_dynbcdi(intensity, ours, device, 0)[1] / n_iter)
        if cohere:
            elapsed = run_cohere(intensity, f"{n_iter}*HIO", device, 0, sw_start=0)[1]
            best["cohere-core"] = min(best["cohere-core"], elapsed / n_iter)
    return best


def accuracy(intensity: np.ndarray, truth: np.ndarray, n_iter: int, seeds: int, device: str, cohere: bool) -> dict:
    """Per code: Fourier errors of every seed, and truth errors of the seed with the lowest one."""
    ours, theirs = recipes(n_iter)
    runners = {"dynbcdi": lambda s: run_dynbcdi(intensity, ours, device, s)}
    if cohere:
        runners["cohere-core"] = lambda s: run_cohere(intensity, theirs, device, s)
    report = {}
    for name, runner in runners.items():
        runs = [runner(seed)[0] for seed in range(seeds)]
        errors = [fourier_error(obj, np.sqrt(intensity)) for obj in runs]
        report[name] = (errors, truth_errors(runs[int(np.argmin(errors))], truth))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--timing-iterations", type=int, default=50, help="HIO iterations per timing run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timing runs (the minimum is kept)")
    parser.add_argument("--iterations", type=int, default=1800, help="accuracy runs (paper schedule length)")
    parser.add_argument("--seeds", type=int, default=4, help="random starts per code for accuracy")
    parser.add_argument("--accuracy-max-size", type=int, default=64, help="skip accuracy runs above this size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-cohere", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cohere = not args.skip_cohere
    print(f"device {args.device}, torch {torch.__version__}, {args.threads} threads")
    for n in args.sizes:
        truth = crystal(n)
        intensity = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(truth)))) ** 2
        phase_retrieval(intensity, None, recipe="ER**2", device=args.device)  # warm-up (threads, plans)
        for name, seconds in time_per_iteration(intensity, args.timing_iterations, args.repeats, args.device, cohere).items():
            if np.isfinite(seconds):
                print(f"timing | {name} | {n}³ | {seconds * 1e3:.1f} ms/iteration", flush=True)
        if n > args.accuracy_max_size:
            continue
        for name, (errors, (phase_rms, amp_err)) in accuracy(intensity, truth, args.iterations, args.seeds,
                                                              args.device, cohere).items():
            print(f"accuracy | {name} | {n}³ | {args.iterations} it | Fourier error per seed "
                  f"{', '.join(f'{e:.4f}' for e in errors)} | best seed: phase RMS {phase_rms:.4f} rad, "
                  f"amplitude error {amp_err:.4f}", flush=True)


if __name__ == "__main__":
    main()
