"""`dynbcdi prepare`: a raw rocking scan → a dataset file (.cxi) with intensity, mask, geometry, provenance.

Examples::

    dynbcdi prepare scan54.toml --out scan54.cxi
    dynbcdi prepare --beamline 34idc --spec example.spec --scan 54 --frames exp_data/Staff20-1a_S0054 \\
        --dark dark.tif --flat whitefield.tif --detector-roi 0 256 0 256 --material Au --hkl 1 1 1 \\
        --crop 128 128 --out scan54.cxi

The TOML file holds the tables ``[source]`` (:class:`~dynbcdi.io.readers.base.SourceConfig`),
``[reflection]`` (:class:`~dynbcdi.prepare.ReflectionConfig`) and ``[prepare]``
(:class:`~dynbcdi.prepare.PrepareConfig`); other top-level tables of a run file (``[phasing]``,
``[reconstruction]``, ``[output]`` ...) are ignored, unknown keys inside these three are errors.
Relative paths in ``[source]`` are taken relative to the TOML file's folder; paths given as flags
relative to the working directory. Flags override the TOML values. The output path is checked
before anything is read, and an existing file is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

SECTIONS = ("source", "reflection", "prepare")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `prepare` on the `dynbcdi` sub-command parser."""
    parser = subparsers.add_parser(
        "prepare",
        help="raw scan (spec + TIFF, HDF5/NeXus, array file) → dataset .cxi with mask, geometry, provenance",
        description="Read a rocking scan, correct it (dark or bad-pixel map, flat field, hot pixels, chip "
        "seams, aliens), crop/pad around the Bragg peak, bin, build and check its geometry, and save a "
        "dataset file. Settings from the [source], [reflection] and [prepare] tables of CONFIG and/or flags.",
    )
    parser.add_argument("config", nargs="?", type=Path, help="run TOML file ([source] [reflection] [prepare])")
    parser.add_argument("--out", type=Path, required=True, help="output dataset file (.cxi or .npz)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    src = parser.add_argument_group("source (override [source])")
    src.add_argument("--beamline", help="registry name: 34idc, id01, p10")
    src.add_argument("--frames", "--path", dest="path", help="TIFF folder, HDF5/NeXus file or array file")
    src.add_argument("--spec", dest="spec_file", help="spec file (34-ID-C)")
    src.add_argument("--scan", type=int, help="scan number")
    src.add_argument("--data-path", help="HDF5 dataset of the frames")
    src.add_argument("--dark", help="dark image (or bad-pixel map) of the full detector")
    src.add_argument("--flat", help="flat (white) field of the full detector")
    src.add_argument("--bad-pixels", help="bad-pixel map of the full detector (nonzero = bad)")
    src.add_argument("--detector-roi", nargs=4, type=int, metavar=("ROW0", "ROW1", "COL0", "COL1"),
                     help="position of the frames on the full detector (file frame)")
    src.add_argument("--energy-eV", dest="energy_eV", type=float, help="photon energy (eV)")
    src.add_argument("--distance-m", dest="detector_distance_m", type=float, help="detector distance (m)")
    src.add_argument("--rocking-step-deg", type=float, help="rocking step (deg), overriding the file's")
    refl = parser.add_argument_group("reflection (override [reflection])")
    refl.add_argument("--material", help="built-in material (Au, Si, ...) or CIF file")
    refl.add_argument("--hkl", nargs=3, type=int, metavar=("H", "K", "L"), help="Miller indices")
    prep = parser.add_argument_group("prepare (override [prepare])")
    prep.add_argument("--crop", dest="crop_shape", nargs=2, type=int, metavar=("ROWS", "COLS"),
                      help="window (raw pixels) centred on the Bragg peak")
    prep.add_argument("--n-frames", type=int, help="frames centred on the peak frame (padded if needed)")
    prep.add_argument("--frame-range", dest="frame_range", nargs=2, type=int, metavar=("FIRST", "STOP"),
                      help="raw frames kept, half-open")
    prep.add_argument("--bin", nargs=3, type=int, metavar=("FRAMES", "ROWS", "COLS"), help="binning factors")
    prep.add_argument("--dark-kind", choices=("auto", "dark", "bad_pixels", "ignore"), help="use of the dark image")
    prep.add_argument("--monitor", action="store_true", default=None, help="normalise by the monitor counter")
    parser.set_defaults(func=run)
    return parser


def check_output(path: Path, overwrite: bool) -> Path:
    """One-line errors for an output path that cannot be written; called before anything is read."""
    from dynbcdi.io.dataset import check_dataset_target

    return check_dataset_target(path, overwrite, how="--overwrite")


def config_tables(config: Path | None, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The three tables from the TOML file (paths resolved) with the flags laid over them."""
    from dynbcdi.config import load_toml
    from dynbcdi.io.readers.base import resolve_source_paths

    tables: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    if config is not None:
        data = load_toml(config)
        for name in SECTIONS:
            value = data.get(name, {})
            if not isinstance(value, dict):
                raise ValueError(f"{config}: [{name}] must be a table")
            tables[name] = dict(value)
        tables["source"] = resolve_source_paths(tables["source"], config.parent)
    flags = {"source": ("beamline", "path", "spec_file", "scan", "data_path", "dark", "flat", "bad_pixels",
                        "detector_roi", "energy_eV", "detector_distance_m", "rocking_step_deg"),
             "reflection": ("material", "hkl"),
             "prepare": ("crop_shape", "n_frames", "frame_range", "bin", "dark_kind", "monitor")}
    for section, keys in flags.items():
        for key in keys:
            value = getattr(args, key, None)
            if value is not None:
                tables[section][key] = list(value) if isinstance(value, (list, tuple)) else value
    return tables



def load_settings(tables: dict[str, dict[str, Any]]):
    """(SourceConfig, ReflectionConfig, PrepareConfig) from the tables; one-line ValueError if incomplete."""
    from dynbcdi.config import from_dict
    from dynbcdi.io.readers.base import SourceConfig
    from dynbcdi.prepare import PrepareConfig, ReflectionConfig

    for name, needs in (("source", "--beamline and --frames"), ("reflection", "--material and --hkl")):
        if not tables[name]:
            raise ValueError(f"no [{name}] settings: give a TOML file with a [{name}] table or {needs}")
    return (from_dict(SourceConfig, tables["source"], "source"),
            from_dict(ReflectionConfig, tables["reflection"], "reflection"),
            from_dict(PrepareConfig, tables["prepare"], "prepare"))


def run(args: argparse.Namespace) -> int:
    """Run the command; returns 0."""
    from dynbcdi.io import save_dataset
    from dynbcdi.prepare import prepare_dataset

    out = check_output(args.out, args.overwrite)
    source, reflection, cfg = load_settings(config_tables(args.config, args))
    dataset = prepare_dataset(source, reflection, cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = save_dataset(dataset, out, overwrite=args.overwrite)
    print_summary(dataset, path)
    return 0


def print_summary(dataset, path: Path) -> None:
    """One screen: shape, mask, peak, rocking grid, 2θ check, output path."""
    prov = dataset.metadata["provenance"]
    c, rock, window = prov["corrections"], prov["rocking"], prov["window_raw"]
    n, rows, cols = dataset.intensity.shape
    print(f"prepared {prov['beamline']} scan: {n} frames × {rows} × {cols} pixels "
          f"(raw {' × '.join(map(str, prov['raw']['shape']))}), {prov['photons']:.4g} photons")
    print(f"  raw window: frames {window['start'][0]}…{window['stop'][0] - 1}, rows {window['start'][1]}…"
          f"{window['stop'][1] - 1}, cols {window['start'][2]}…{window['stop'][2] - 1}, bin {window['bin']}; "
          f"Bragg peak at raw {prov['peak_raw']}")
    dark = c["dark"]
    dark_text = "none" if dark is None else (f"bad-pixel map ({dark['n_masked']} px)" if dark["kind"] == "bad_pixels"
                                             else dark["kind"])
    print(f"  valid {100 * prov['valid_fraction']:.2f} %: dark {dark_text}, {c['hot_pixels']} hot, "
          f"{c['flat_masked'] or 0} flat-field, {c['seam_masked']} seam px, {c['alien_voxels']} alien voxels")
    print(f"  rocking step {rock['step_deg']:.6g}° ({rock['method']}), read-back jitter "
          f"{rock['rms_deviation_deg']:.2g}° RMS, steps within {100 * rock['max_step_deviation']:.3g} %; "
          f"θ = 0 at {rock['zero']}")
    print(f"  2θ check: {two_theta_line(prov['two_theta'])}")
    sp = dataset.spacing_m
    print(f"  grid voxel (dz, dy, dx) = ({sp[0] * 1e9:.2f}, {sp[1] * 1e9:.2f}, {sp[2] * 1e9:.2f}) nm")
    from dynbcdi.workflow.regime import lengths_line

    print(f"  {lengths_line(dataset.reflection)}")
    print(f"  written {path}")


def two_theta_line(report: dict[str, Any]) -> str:
    """The 2θ report in one line (whatever fields the report carries)."""
    if "summary" in report:
        return f"{report['summary']} (at the Bragg peak's pixel)"
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items())
