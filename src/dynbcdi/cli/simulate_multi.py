"""`dynbcdi simulate --preset au-111-multi --out DIR/`: several reflections of one crystal.

One dataset file per reflection, ``truth.npz`` and ``manifest.json`` are written into DIR by
:func:`dynbcdi.simulate.multi.write_multi` (read back with :func:`~dynbcdi.simulate.multi.load_manifest`).
The multi presets have fixed sizes (``au-111-multi`` 64³, ``-32``, ``-test``): ``--size`` is refused,
as are the options that only mean something for one reflection (``--config``-style noise by total
photons, ``--figures``, ``--distributed``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import textwrap

import numpy as np

__all__ = ["is_multi_preset", "format_multi_presets", "run_multi"]

# Purpose lines of ``--list-presets`` (sizes and geometry are printed from the config itself).
_PURPOSE = {
    "au-111-multi": "the issue-16 acceptance crystal (2.3 Bragg extinction lengths): joint dynamical vs kinematic "
                    "reconstruction of u and the strain tensor on 64³ TTE grids",
    "au-111-multi-32": "the same crystal on 32³ grids: the CPU size of the acceptance run",
    "au-111-multi-test": "a 0.2 µm crystal on 24³ grids, seconds on a CPU: tests and trying the joint fit",
}
# Options of the single-reflection path that a multi preset cannot honour: (attribute, flag, why).
_REFUSED = (("size", "--size", "the multi presets have fixed sizes; use au-111-multi-32 or au-111-multi-test "
                               "for a smaller grid"),
            ("total_photons", "--total-photons", "noise is set per reflection by --peak-photons"),
            ("figures", "--figures", "no rocking-curve figures for multi-reflection datasets yet"),
            ("distributed", "--distributed", "multi-reflection simulation runs in one process"))


def is_multi_preset(name: str | None) -> bool:
    """True if ``name`` is one of :data:`dynbcdi.simulate.multi.MULTI_PRESETS`."""
    from dynbcdi.simulate.multi import MULTI_PRESETS

    return name in MULTI_PRESETS


def format_multi_presets() -> str:
    """Plain-text blocks of the multi-reflection presets, in the layout of the single-reflection ones."""
    from dynbcdi.simulate.multi import MULTI_PRESETS

    blocks = []
    for name, c in MULTI_PRESETS.items():
        hkls = ", ".join("(" + " ".join(map(str, h)) + ")" for h in c.hkls)
        n_angles = len(c.rocking_angles_rad())
        lines = [
            name,
            f"  reflection  {c.material} {hkls} at {c.energy_eV / 1e3:g} keV, one crystal in one mounting "
            f"(χ {c.chi_deg:g}°, φ {c.phi_deg:g}°)",
            f"  crystal     cube, {c.edge_m * 1e6:g} µm edge, {c.smooth_m * 1e9:g} nm smooth edges, point inclusion "
            f"(radius {c.inclusion_radius_m * 1e9:g} nm, misfit {c.inclusion_misfit:g})",
            f"  scan        per reflection {n_angles} angles, ±{c.rocking_half_range_deg:g}° in θ; detector "
            f"{c.detector_shape[0]} × {c.detector_shape[1]} × {c.pixel_size_m * 1e6:g} µm at {c.distance_m:g} m; "
            "APS 34-ID-C geometry",
            f"  grid        TTE {c.nz} × {c.detector_shape[0]} × {c.detector_shape[1]} per reflection; sample grid "
            + " × ".join(map(str, c.sample_shape)) + f" × {c.sample_spacing_m[0] * 1e9:g} nm (fixed size)",
            "  output      --out DIR/: one dataset per reflection, truth.npz and manifest.json",
        ]
        lines += textwrap.wrap(_PURPOSE.get(name, "multi-reflection preset"), width=100,
                               initial_indent="  for         ", subsequent_indent=" " * 14)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _multi_config(args: argparse.Namespace):
    """The preset with the noise options, every option checked (one-line ValueError) before any computation."""
    from dynbcdi.simulate.multi import MULTI_PRESETS

    for attr, flag, why in _REFUSED:
        if getattr(args, attr, None) not in (None, False):
            raise ValueError(f"{flag} is not available with the multi-reflection preset {args.preset}: {why}")
    cfg = MULTI_PRESETS[args.preset]
    if args.peak_photons is not None:
        if not (math.isfinite(args.peak_photons) and args.peak_photons > 0):
            raise ValueError(f"--peak-photons must be a positive number, got {args.peak_photons}")
        cfg = dataclasses.replace(cfg, peak_photons=args.peak_photons)
    if args.seed is not None:
        if args.seed < 0:
            raise ValueError(f"--seed must be a non-negative integer, got {args.seed}")
        cfg = dataclasses.replace(cfg, seed=args.seed)
    return cfg


def run_multi(args: argparse.Namespace) -> int:
    """Check the options and DIR, simulate every reflection, write DIR, print one line per reflection."""
    from dynbcdi.devices import resolve_device
    from dynbcdi.io.filecheck import check_new_output
    from dynbcdi.simulate.multi import non_coplanarity, reflection_setting, simulate_multi, write_multi

    if args.out is None:
        raise ValueError(f"--out DIR is required: {args.preset} writes one dataset per reflection and a manifest")
    if args.out.suffix.lower() in (".cxi", ".npz", ".h5"):
        raise ValueError(f"--out {args.out}: {args.preset} writes a folder (one dataset per reflection), "
                         "not a single file; give a directory such as run/")
    out = check_new_output(args.out, "output directory", directory=True, overwrite=args.overwrite)
    cfg = _multi_config(args)
    resolve_device(args.device)
    settings = [reflection_setting(cfg, hkl) for hkl in cfg.hkls]  # unreachable hkl: one line, nothing run
    print(f"{cfg.name}: {len(settings)} reflections of {cfg.material} at {cfg.energy_eV / 1e3:g} keV")
    try:
        datasets = simulate_multi(cfg, device=args.device, progress=None if args.no_progress else True)
    except KeyboardInterrupt:
        print(f"\ninterrupted during the simulation; nothing was written to {out}")
        return 130
    manifest = write_multi(cfg, datasets, out, overwrite=args.overwrite)
    entries = json.loads(manifest.read_text())["reflections"]  # the file names write_multi chose
    print(f"{'hkl':<12s} {'θ (°)':>9s} {'δ (°)':>8s} {'γ (°)':>8s}  file")
    for st, entry in zip(settings, entries):
        file = out / entry["file"]
        print(f"{' '.join(f'{i:2d}' for i in st.hkl):<12s} {math.degrees(st.theta_rad):9.3f} "
              f"{math.degrees(st.delta_rad):8.3f} {math.degrees(st.gamma_rad):8.3f}  {file}")
    det = non_coplanarity(np.stack([st.h_sample for st in settings]))
    print(f"non-coplanarity |det| of unit h: {det:.3f} (0 coplanar, 1 orthogonal)")
    print(f"manifest       {manifest}")
    return 0
