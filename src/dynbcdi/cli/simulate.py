"""`dynbcdi simulate`: simulate a BCDI rocking scan under dynamical diffraction and save it.

Examples::

    dynbcdi simulate --preset au-cube-200 --out au.cxi                 # CPU: reduced size (64³)
    dynbcdi simulate --preset au-cube-200 --device cuda --out au.cxi   # GPU: full 256³, 401 angles
    dynbcdi simulate --config run.toml --out run.npz --figures
    dynbcdi simulate --preset au-111-multi-test --out multi/         # 3 reflections + manifest.json
    dynbcdi simulate --list-presets
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from dynbcdi.distributed import Communicator


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `simulate` on the `dynbcdi` sub-command parser."""
    from dynbcdi.simulate.multi import MULTI_PRESETS
    from dynbcdi.simulate.presets import CPU_SIZES, PRESETS

    parser = subparsers.add_parser(
        "simulate",
        help="simulate a rocking scan (Takagi-Taupin) and save it as CXI or .npz",
        description=("Simulate the dynamical-diffraction intensity stack I[j, row, col] of a crystal, with the "
                     "kinematic stacks for comparison, photon noise and detector defects; save it with the "
                     "ground truth, geometry and constants. Presets: "
                     + ", ".join(f"{k} (CPU default size {CPU_SIZES[k]})" for k in PRESETS) + "; several "
                     "reflections of one crystal (--out DIR/, one dataset per reflection and a manifest): "
                     + ", ".join(MULTI_PRESETS) + "."),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", choices=sorted(PRESETS) + list(MULTI_PRESETS), help="paper preset by name")
    source.add_argument("--config", type=Path, help="TOML configuration (see dynbcdi.simulate.config)")
    source.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    parser.add_argument("--out", type=Path, help="output file, .cxi or .npz (a folder for a multi-reflection preset)")
    parser.add_argument("--size", type=int, help="points per direction (same field of view); presets on CPU "
                        "default to their reduced CPU size, on CUDA to full size")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default cpu)")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("--total-photons", type=float, help="Poisson noise at this total photon count")
    noise.add_argument("--peak-photons", type=float, help="Poisson noise at this count in the brightest pixel")
    parser.add_argument("--seed", type=int, help="random seed of the noise and hot pixels")
    parser.add_argument("--figures", action="store_true", help="also write rocking-curve and ground-truth PNGs")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--distributed", action="store_true",
                        help="split the angles over the ranks of torchrun (NCCL with --device cuda, else "
                             "gloo); rank 0 writes the file, see docs/distributed.md")
    parser.set_defaults(func=run)
    return parser


def format_presets() -> str:
    """Plain-text list of the presets: per preset its name, reflection, crystal, scan and purpose."""
    import textwrap

    from dynbcdi.simulate.presets import CPU_SIZES, PRESET_PURPOSE, PRESETS, preset

    blocks = []
    for name in PRESETS:
        c = preset(name)
        r, g, x = c.reflection, c.geometry, c.crystal
        lattice = f", a = {r.lattice_a_m * 1e10:g} Å" if r.lattice_a_m else ""
        size = " × ".join(f"{v * 1e6:g}" for v in x.size_m) + " µm" if x.size_m else "from a mask"
        edges = f", {x.smooth_m * 1e9:g} nm smooth edges" if x.smooth_m else ""
        angles = g.rocking_angles_deg()
        where = ("generic horizontal geometry" if g.kind == "generic"
                 else f"APS 34-ID-C geometry, gamma {g.gamma_deg:g}°")
        lines = [
            name,
            f"  reflection  {r.material} ({' '.join(map(str, r.hkl))}) at {r.energy_eV / 1e3:g} keV{lattice}",
            f"  crystal     {x.shape}, {size}{edges}",
            f"  scan        {len(angles)} angles, {angles[0]:+g}° … {angles[-1]:+g}°; detector "
            f"{g.detector_shape[0]} × {g.detector_shape[1]} × {g.pixel_size_m * 1e6:g} µm at {g.distance_m:g} m; "
            f"{where}",
            f"  grid        {g.detector_shape[1]} points per direction (CPU default {CPU_SIZES[name]}, --size)",
        ]
        lines += textwrap.wrap(PRESET_PURPOSE[name], width=100, initial_indent="  for         ",
                               subsequent_indent=" " * 14)
        blocks.append("\n".join(lines))
    from dynbcdi.cli.simulate_multi import format_multi_presets

    return "\n\n".join([*blocks, format_multi_presets()])


def _config(args: argparse.Namespace):
    """The simulation settings from the preset or TOML and the flags (every range checked here)."""
    from dynbcdi.simulate.config import load_config
    from dynbcdi.simulate.presets import CPU_SIZES, resize, sized_preset
    from dynbcdi.simulate.scan import fit_z_sampling

    if args.preset:
        if args.size is None and not str(args.device).startswith("cuda"):
            print(f"CPU run: {args.preset} reduced to {CPU_SIZES[args.preset]} points per direction (--size to change)")
        config = sized_preset(args.preset, args.size, args.device)
    else:
        config = load_config(args.config)
        if args.size is not None:
            config = fit_z_sampling(resize(config, args.size))
    dz = f", dz = {config.grid.dz_m * 1e9:.2f} nm" if config.grid.dz_m else ""
    print(f"grid: {config.grid.nz} × {config.geometry.detector_shape[0]} × {config.geometry.detector_shape[1]}{dz}")
    noise = config.noise
    if args.total_photons is not None or args.peak_photons is not None:
        noise = dataclasses.replace(noise, total_photons=args.total_photons, peak_photons=args.peak_photons)
    if args.seed is not None:
        if args.seed < 0:  # numpy's generator would refuse it only after the simulation
            raise ValueError(f"--seed must be a non-negative integer, got {args.seed}")
        noise = dataclasses.replace(noise, seed=args.seed)
    return dataclasses.replace(config, noise=noise)


def _summary(dataset, path: Path) -> str:
    from dynbcdi.plot import peak_position
    from dynbcdi.simulate.scan import rocking_curve

    md = dataset.metadata
    th = dataset.geometry.rocking_angles_rad
    lines = [f"dataset        {path}",
             f"intensity      {dataset.intensity.shape} (angles, rows, cols), total {dataset.intensity.sum():.4g}",
             f"valid pixels   {int(dataset.valid.sum())} of {dataset.valid.size}",
             f"grid           {dataset.truth.shape} (z, y, x), voxel "
             + " × ".join(f"{d * 1e9:.2f}" for d in dataset.spacing_m) + " nm",
             f"oversampling   rocking {md['rocking_oversampling']:.2f}, y {md['oversampling_y']:.2f}, "
             f"x {md['oversampling_x']:.2f}"]
    peaks = {k: peak_position(th, rocking_curve(np.asarray(md[f"intensity_{k}"], float)))
             for k in ("kinematic", "refraction_kinematic", "dynamical") if f"intensity_{k}" in md}
    for key, value in peaks.items():
        lines.append(f"peak {key:<22s} {value * 1e6:+9.1f} µrad   ({md.get(f'time_{key}_s', 0):.1f} s)")
    if md.get("predicted_refraction_shift_rad") is not None:
        lines.append(f"predicted refraction shift    {md['predicted_refraction_shift_rad'] * 1e6:+9.1f} µrad")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Simulate, save, print a summary table; returns the exit code."""
    if args.list_presets:
        print(format_presets())
        return 0
    from dynbcdi.cli.simulate_multi import is_multi_preset, run_multi

    if is_multi_preset(args.preset):
        return run_multi(args)
    from dynbcdi.devices import resolve_device
    from dynbcdi.io.dataset import check_dataset_target
    from dynbcdi.io.filecheck import check_new_output
    from dynbcdi.simulate.figures import figure_paths

    if args.out is None:
        raise ValueError("--out FILE (.cxi or .npz) is required")
    check_dataset_target(args.out, args.overwrite, how="--overwrite")
    for path in figure_paths(args.out.with_suffix("")).values() if args.figures else ():
        check_new_output(path, "figure", overwrite=args.overwrite, remedy="pass --overwrite to replace it")
    resolve_device(args.device)
    config = _config(args)  # preset, size, TOML and noise options: one-line errors before simulating
    if not args.distributed:
        return _simulate(args, config, None)
    from dynbcdi.distributed import init_distributed

    comm = init_distributed(device=args.device)
    try:
        return _simulate(args, config, comm)
    finally:
        comm.close()


def _simulate(args: argparse.Namespace, config, comm: Communicator | None) -> int:
    """Simulate (angles split over ``comm``'s ranks unless None), save and summarise on rank 0."""
    from dynbcdi.io.dataset import save_dataset
    from dynbcdi.simulate.scan import simulate_dataset

    main = comm is None or comm.is_main
    device = args.device if comm is None else comm.device
    try:
        dataset = simulate_dataset(config, device=device, progress=not args.no_progress and main, comm=comm)
    except KeyboardInterrupt:
        if main:
            print(f"\ninterrupted during the simulation; nothing was written to {args.out}")
        return 130
    if not main:
        return 0
    path = save_dataset(dataset, args.out, overwrite=args.overwrite)
    print(_summary(dataset, path))
    if args.figures:
        from dynbcdi.simulate.figures import write_figures

        for fig_path in write_figures(dataset, args.out.with_suffix(""), overwrite=args.overwrite):
            print(f"figure         {fig_path}")
    return 0
