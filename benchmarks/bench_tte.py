"""Benchmark of the Takagi–Taupin forward model (issue 3).

For each case (grid N³, B rocking angles, integrator) it measures, each in a fresh subprocess:

- ``fwd``: forward time of ``TTEModel(S, dq)`` (patterns, no grad);
- ``floor``: time of the fewest 2-D FFTs the method needs on the same (B, N, N) batch, measured
  in the same process: ``FFTS_PER_STEP × steps + 1`` (the +1 is the far-field transform; kh⊥ = 0
  here, so Eh needs none), taking the faster of whole-batch and cache-sized-chunk batching;
- ``fwd+bwd``: forward + backward time (S = s e^{iφ} = ``torch.polar(s, φ)`` with s, φ leaf
  tensors, as ``dynbcdi.reconstruct`` builds it; weighted sum of the patterns as loss; default
  z-checkpointing rule);
- ``peak``: peak memory of fwd+bwd: resident-set high-water mark (``ru_maxrss``) above the
  baseline after the inputs are built and a tiny warm-up (CPU), or
  ``torch.cuda.max_memory_allocated`` (GPU). On CPU it is measured twice: with the default glibc
  allocator (which retains freed heap blocks: fragmentation) and with ``MALLOC_MMAP_THRESHOLD_``
  = 64 KiB (large blocks returned at once, so the high-water mark follows the live tensors).

Timings are the minimum of ``--repeat`` runs (the CPU is shared: minima are the most stable).
The crystal is a strained Au (200) cube of 3N/8 voxels (10 nm voxels, 8 keV), so the marched
z-range is 3N/8 steps and the obliquely drifting E0 does not wrap around the periodic box.

Usage::

    .venv/bin/python benchmarks/bench_tte.py                     # 64³×64 and 128³×128, CPU
    .venv/bin/python benchmarks/bench_tte.py --cases 256:401 --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch

WAVELENGTH = 12398.42e-10 / 8000.0
THETA_B = math.asin(WAVELENGTH / 4.07e-10)
CHI0, CHIH = -2.96e-5 + 2.97e-6j, -1.9e-5 + 2.8e-6j


def _inputs(n: int, b: int, device: str, dtype: torch.dtype):
    c = torch.arange(n, dtype=torch.float64, device=device) - n / 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    half = 3 * n / 16
    s = ((z.abs() < half) & (y.abs() < half) & ((x - n / 8).abs() < half)).to(torch.float64)
    phi = 0.5 * torch.exp(-(x**2 + y**2 + z**2) / (2 * (n / 8) ** 2))
    dq = torch.zeros(b, 3, dtype=torch.float64, device=device)
    dq[:, 2] = torch.linspace(-1, 1, b, dtype=torch.float64) * 2 * math.pi / (2 * 10e-9) * 0.5
    dq[:, 0] = torch.linspace(-1, 1, b, dtype=torch.float64) * 1e7
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    return s.to(real), phi.to(real), dq


def _model(integrator: str, chunk: int | None):
    from dynbcdi.forward.tte import TTEModel

    k0 = (-math.sin(2 * THETA_B), 0.0, math.cos(2 * THETA_B))
    return TTEModel((10e-9,) * 3, WAVELENGTH, k0, (0.0, 0.0, 1.0), CHI0, CHIH, CHIH, 1.0,
                    integrator=integrator, angle_chunk=chunk)


def _is_cuda(device: str) -> bool:
    return torch.device(device).type == "cuda"  # also "cuda:1"


def _sync(device: str) -> None:
    if _is_cuda(device):
        torch.cuda.synchronize()


def _floor(n_fft_pairs: float, field: torch.Tensor, chunk: int, device: str) -> float:
    """Time of n_fft_pairs (fft2 + ifft2) of the whole (B, N, N) field, best of two batchings."""
    best = math.inf
    for c in sorted({field.shape[0], chunk}):
        parts = list(field.split(c))
        _sync(device)
        t = time.perf_counter()
        for _ in range(int(n_fft_pairs)):
            parts = [torch.fft.ifft2(torch.fft.fft2(p)) for p in parts]
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def run_case(n: int, b: int, integrator: str, device: str, mode: str, repeat: int, dtype: torch.dtype) -> dict:
    """One measurement in this process; mode 'fwd' (fwd + floor) or 'bwd' (fwd+bwd + peak)."""
    from dynbcdi.forward.integrators import FFTS_PER_STEP
    from dynbcdi.forward.tte import _auto_chunk

    torch.set_num_threads(torch.get_num_threads())
    s, phi, dq = _inputs(n, b, device, dtype)
    model = _model(integrator, None)
    chunk = _auto_chunk(b, (n, n), dtype, torch.device(device))
    steps = int((s.abs().sum(dim=(1, 2)) > 0).sum())
    out: dict = {"N": n, "B": b, "integrator": integrator, "device": device, "steps": steps, "chunk": chunk}
    if mode == "fwd":
        S = (s * torch.exp(1j * phi)).to(dtype)
        field = torch.randn(b, n, n, dtype=dtype, device=device)
        n_pairs = (FFTS_PER_STEP[integrator] * steps + 1) / 2
        fwd, floor = math.inf, math.inf
        for _ in range(repeat):
            with torch.no_grad():
                _sync(device)
                t = time.perf_counter()
                model(S, dq)
                _sync(device)
                fwd = min(fwd, time.perf_counter() - t)
            floor = min(floor, _floor(n_pairs, field, chunk, device))
        out.update(fwd_s=fwd, floor_s=floor, ffts=2 * n_pairs)
        return out
    s0, p0, dq0 = _inputs(16, 4, device, dtype)  # warm-up: load FFT/autograd code before the baseline
    s0.requires_grad_()
    model(torch.polar(s0, p0), dq0).sum().backward()
    s.requires_grad_()
    phi.requires_grad_()
    weights = torch.rand(b, n, n, device=device, dtype=s.dtype)
    if _is_cuda(device):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    best = math.inf
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        loss = (model(torch.polar(s, phi), dq) * weights).sum()
        loss.backward()
        _sync(device)
        best = min(best, time.perf_counter() - t)
        s.grad = phi.grad = None
    peak = (torch.cuda.max_memory_allocated() if _is_cuda(device)
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - base
    out.update(fwdbwd_s=best, peak_bytes=int(peak))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=["64:64", "128:128"], help="N:B grid sizes and angle counts")
    p.add_argument("--integrators", nargs="+", default=["strang", "rk4"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="complex64", choices=["complex64", "complex128"])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--_child", nargs=4, metavar=("N", "B", "INTEGRATOR", "MODE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    if a._child:
        n, b, integ, mode = a._child
        print(json.dumps(run_case(int(n), int(b), integ, a.device, mode, a.repeat, dtype)))
        return
    rows = []
    for case in a.cases:
        n, b = (int(v) for v in case.split(":"))
        for integ in a.integrators:
            res: dict = {}
            for mode in ("fwd", "bwd", "live"):
                cmd = [sys.executable, __file__, "--device", a.device, "--dtype", a.dtype, "--repeat",
                       str(a.repeat if mode != "live" else 1), "--threads", str(a.threads),
                       "--_child", str(n), str(b), integ, "bwd" if mode == "live" else mode]
                # 'live': glibc's dynamic mmap threshold off, so freed blocks leave the RSS and the
                # high-water mark shows live tensors rather than allocator retention
                env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536") if mode == "live" else None
                r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
                if mode == "live":
                    res["live_bytes"] = r["peak_bytes"]
                else:
                    res.update(r)
            rows.append(res)
            print(json.dumps(res), file=sys.stderr)
    print(f"| grid × angles | integrator | z-steps | 2-D FFTs (floor) | floor (s) | forward (s) | fwd / floor "
          f"| fwd+bwd (s) | fwd+bwd / fwd | peak fwd+bwd ({'GPU' if a.device == 'cuda' else 'RSS'}) "
          f"| peak, mmap threshold 64 KiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['N']}³ × {r['B']} | {r['integrator']} | {r['steps']} | {r['ffts']:.0f} | {r['floor_s']:.3f} "
              f"| {r['fwd_s']:.3f} | {r['fwd_s'] / r['floor_s']:.1f} | {r['fwdbwd_s']:.3f} "
              f"| {r['fwdbwd_s'] / r['fwd_s']:.1f} | {r['peak_bytes'] / 2**20:.0f} MiB "
              f"| {r['live_bytes'] / 2**20:.0f} MiB |")


if __name__ == "__main__":
    main()
