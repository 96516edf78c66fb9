"""`dynbcdi info`: print the two-beam constants of a reflection as a table (like X0h's page).

Example: ``dynbcdi info --material Au --hkl 2 0 0 --energy 8keV --lattice-a 4.07A``.
With ``--size-um 1.0`` (a cube) or ``--support mask.npy --voxel-nm 10`` it also prints the regime
diagnosis (:mod:`dynbcdi.analysis.regime`): does a crystal of that size and shape need the
dynamical model?
"""

from __future__ import annotations

import argparse
import math
import re
import unicodedata
from pathlib import Path

from dynbcdi.materials import BUILTIN_MATERIALS, ROOM_TEMPERATURE_K, ReflectionConstants, reflection_constants

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_ENERGY_UNITS_EV = {"": 1.0, "ev": 1.0, "kev": 1e3}
_LENGTH_UNITS_M = {"": 1e-10, "a": 1e-10, "å": 1e-10, "angstrom": 1e-10, "nm": 1e-9, "um": 1e-6, "m": 1.0}


def _parse_quantity(text: str, units: dict[str, float], what: str) -> float:
    match = re.fullmatch(_NUMBER + r"\s*([A-Za-zÅ]*)", str(text).strip())
    unit = match.group(2).lower() if match else None
    if match is None or unit not in units:
        raise ValueError(f"cannot read {what} {text!r}; use a number with one of the units {sorted(units)}")
    return float(match.group(1)) * units[unit]


def parse_energy_eV(text: str) -> float:
    """Photon energy in eV from "8keV", "8 keV", "8000eV" or "8000" (bare numbers are eV)."""
    return _parse_quantity(text, _ENERGY_UNITS_EV, "energy")


def parse_length_m(text: str) -> float:
    """Length in metres from "4.07A", "4.07Å", "0.407nm", "4.07e-10m" or "4.07" (bare: Å)."""
    return _parse_quantity(text, _LENGTH_UNITS_M, "length")


def _display_width(text: str) -> int:
    # combining marks (the bar of χh̄) take no column
    return sum(1 for ch in text if not unicodedata.combining(ch))


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `info` on the `dynbcdi` sub-command parser."""
    parser = subparsers.add_parser(
        "info",
        help="susceptibilities, Bragg angle and extinction lengths of a reflection",
        description=(
            "Print d, |h|, Bragg angle, chi_0, chi_h, chi_hbar (PHYSICS.md convention: Im chi_0 > 0), "
            "polarization factors and characteristic lengths (X0h definitions) of one reflection."
        ),
    )
    parser.add_argument(
        "--material", required=True,
        help=f"built-in name ({', '.join(BUILTIN_MATERIALS)}) or path of a CIF file",
    )
    parser.add_argument("--hkl", required=True, nargs=3, type=int, metavar=("H", "K", "L"))
    parser.add_argument("--energy", required=True, help="photon energy: 8keV, 8000eV or 8000 (eV)")
    parser.add_argument("--lattice-a", help="override lattice constant a: 4.07A, 0.407nm (bare number: Å)")
    parser.add_argument("--lattice-c", help="override lattice constant c (tetragonal/hexagonal)")
    parser.add_argument(
        "--temperature", type=float, default=ROOM_TEMPERATURE_K,
        help=f"Debye-Waller temperature in K (default {ROOM_TEMPERATURE_K})",
    )
    parser.add_argument("--static", action="store_true", help="no Debye-Waller factor (static lattice)")
    regime = parser.add_argument_group(
        "regime diagnosis", "thickness / extinction and absorption lengths, refraction shift and the phase error "
        "a kinematic reconstruction would show (coarse TTE simulation, < 1 s), with a verdict")
    shape = regime.add_mutually_exclusive_group()
    shape.add_argument("--size-um", type=float, metavar="EDGE",
                       help="a cube of this edge in µm, faces ⟂ the crystal axes (one ⟂ h for (h00))")
    shape.add_argument("--support", type=Path, metavar="MASK.npy",
                       help="crystal support, (z, y, x) .npy mask on the grid frame (z ∥ kh, x in the "
                            "horizontal scattering plane, as dynbcdi simulate's grid)")
    regime.add_argument("--voxel-nm", type=float, nargs="+", metavar="D",
                        help="voxel size of --support in nm: one value (cubic) or three (dz dy dx)")
    regime.add_argument("--threshold-rad", type=float, default=None,
                        help="phase-error criterion of the verdict (default 0.1 rad)")
    parser.set_defaults(func=run)
    return parser


def format_table(r: ReflectionConstants) -> str:
    """Plain-text table of `r` with units (one quantity per line)."""
    deg = 180.0 / math.pi
    c_pi = r.polarization_pi
    pi_bragg = f"{r.extinction_length_bragg('pi') * 1e9:.1f}" if c_pi != 0 else "inf"
    pi_laue = f"{r.pendellosung_length_laue('pi') * 1e9:.1f}" if c_pi != 0 else "inf"
    dw = "static lattice" if r.temperature_K is None else f"Debye-Waller at {r.temperature_K:g} K"
    rows = [
        ("photon energy", f"{r.energy_eV / 1e3:.4f}", "keV"),
        ("wavelength", f"{r.wavelength_m * 1e10:.6f}", "Å"),
        ("d-spacing", f"{r.d_spacing_m * 1e10:.6f}", "Å"),
        ("|h| = 2π/d", f"{r.h_norm * 1e-10:.6f}", "Å⁻¹"),
        ("Bragg angle θB", f"{r.bragg_angle_rad * deg:.4f}", "deg"),
        ("2θB", f"{2 * r.bragg_angle_rad * deg:.4f}", "deg"),
        ("Re χ0", f"{r.chi0.real:.5e}", ""),
        ("Im χ0", f"{r.chi0.imag:.5e}", ""),
        ("Re χh", f"{r.chih.real:.5e}", ""),
        ("Im χh", f"{r.chih.imag:.5e}", ""),
        ("Re χh̄", f"{r.chihbar.real:.5e}", ""),
        ("Im χh̄", f"{r.chihbar.imag:.5e}", ""),
        ("|χh|", f"{abs(r.chih):.5e}", ""),
        ("C σ / π", f"{r.polarization_sigma:.4f} / {c_pi:.4f}", ""),
        ("extinction length, sym. Bragg σ / π", f"{r.extinction_length_bragg_m * 1e9:.1f} / {pi_bragg}", "nm"),
        ("Pendellösung distance, sym. Laue σ / π", f"{r.pendellosung_length_laue_m * 1e9:.1f} / {pi_laue}", "nm"),
        ("absorption length 1/μ", f"{r.absorption_length_m * 1e6:.4f}", "µm"),
    ]
    h, k, l = r.hkl  # noqa: E741
    width = max(_display_width(name) for name, _, _ in rows)
    lines = [f"{r.material} ({h} {k} {l}) at {r.energy_eV:g} eV, {dw}", ""]
    lines += [
        f"{name}{' ' * (width - _display_width(name))}  {value:>22}  {unit}".rstrip()
        for name, value, unit in rows
    ]
    lines += ["", "χ convention: fields ∝ exp(+i(k·r−ωt)), Im χ0 > 0; lengths as defined by X0h."]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Compute and print the table; returns the exit code."""
    reflection = reflection_constants(
        args.material,
        tuple(args.hkl),
        parse_energy_eV(args.energy),
        lattice_a_m=parse_length_m(args.lattice_a) if args.lattice_a else None,
        lattice_c_m=parse_length_m(args.lattice_c) if args.lattice_c else None,
        temperature_K=None if args.static else args.temperature,
    )
    shape = _regime_shape(args)  # checked before any printing
    print(format_table(reflection))
    if shape is not None:
        print()
        print(_regime_report(args, reflection, shape))
    return 0


def _regime_shape(args: argparse.Namespace) -> tuple[str, object] | None:
    """("cube", edge m) or ("mask", (support, spacing m)) from the options, or None; ValueError
    for a bad size, missing or malformed mask or voxel size."""
    if args.voxel_nm is not None and args.support is None:
        raise ValueError("--voxel-nm needs --support")
    if args.threshold_rad is not None and not (math.isfinite(args.threshold_rad) and args.threshold_rad > 0):
        raise ValueError(f"--threshold-rad must be > 0, got {args.threshold_rad}")
    if args.size_um is not None:
        if not (math.isfinite(args.size_um) and args.size_um > 0):
            raise ValueError(f"--size-um must be a positive edge length in µm, got {args.size_um}")
        return "cube", args.size_um * 1e-6
    if args.support is None:
        return None
    if args.voxel_nm is None or len(args.voxel_nm) not in (1, 3):
        raise ValueError("--support needs --voxel-nm with one value (cubic voxels) or three (dz dy dx)")
    if not all(math.isfinite(v) and v > 0 for v in args.voxel_nm):
        raise ValueError(f"--voxel-nm must be positive, got {args.voxel_nm}")
    spacing = tuple(v * 1e-9 for v in (args.voxel_nm * 3 if len(args.voxel_nm) == 1 else args.voxel_nm))
    from dynbcdi.io.filecheck import check_input_file, load_npy

    support = load_npy(check_input_file(args.support, "support mask (.npy)"), "support mask (.npy)")
    if support.ndim != 3:
        raise ValueError(f"{args.support}: the support must be a 3-D (z, y, x) array, got shape "
                         f"{getattr(support, 'shape', None)}")
    return "mask", (support, spacing)


def _regime_report(args: argparse.Namespace, reflection: ReflectionConstants, shape: tuple[str, object]) -> str:
    from dynbcdi.analysis.regime import DEFAULT_THRESHOLD_RAD, cube_support, diagnose_regime, reference_geometry

    geometry = reference_geometry(reflection)
    kind, value = shape
    if kind == "cube":
        support, spacing = cube_support(args.material, reflection.hkl, float(value), geometry,
                                        lattice_a_m=parse_length_m(args.lattice_a) if args.lattice_a else None,
                                        lattice_c_m=parse_length_m(args.lattice_c) if args.lattice_c else None)
        what = f"a {float(value) * 1e6:g} µm cube"
    else:
        support, spacing = value  # type: ignore[misc]
        what = f"the support {args.support}"
    threshold = DEFAULT_THRESHOLD_RAD if args.threshold_rad is None else args.threshold_rad
    diagnosis = diagnose_regime(support, spacing, geometry, reflection, threshold_rad=threshold)
    title = f"regime diagnosis for {what} (σ polarization, generic horizontal geometry, grid z ∥ kh)"
    return title + "\n" + diagnosis.report()
