"""`dynbcdi reconstruct-multi MANIFEST --out DIR`: joint dynamical reconstruction of several reflections.

Example::

    dynbcdi simulate --preset au-111-multi-32 --out multi/
    dynbcdi reconstruct-multi multi/manifest.json --out joint/ --epochs 40

Reads the manifest of ``dynbcdi simulate --preset au-111-multi…`` (:func:`dynbcdi.simulate.multi.load_manifest`,
which refuses datasets of another crystal or mounting and unreachable reflections; fewer than three
non-coplanar reflections are refused too), builds the truth-free start
(:func:`dynbcdi.reconstruct.multi_start.phased_start`: each reflection phased kinematically, aligned
in the sample frame, twins by TTE trial epochs; the support from the mean aligned amplitude, with
u = 0 (``--start flat``, the default: it ends closer to the truth on au-111-multi-32) or u by least
squares from the kinematic phases (``--start phased``)), fits s and u to all reflections with the TTE model
(:func:`dynbcdi.reconstruct.multi.joint_reconstruct`) and writes into DIR ``field.vti`` (s, support,
u vector, strain tensor for ParaView) and ``strain_tensor.png``
(:func:`dynbcdi.reconstruct.multi_output.write_joint_result`) and ``summary.json`` (loss per epoch,
scales, twins, shifts, options). A non-empty DIR is refused unless ``--overwrite``.

Ctrl-C during the fit stops it at the next mini-batch boundary and writes the field reached so far
(``summary.json`` says ``"interrupted": true``, exit 130); a second Ctrl-C, or one during the start,
stops at once and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

__all__ = ["add_parser", "run", "SUMMARY_NAME"]

SUMMARY_NAME = "summary.json"
EXIT_INTERRUPTED = 130


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `reconstruct-multi` on the `dynbcdi` sub-command parser."""
    parser = subparsers.add_parser(
        "reconstruct-multi", help="joint dynamical reconstruction of u and the strain tensor from several reflections",
        description="Fit the shape s and the displacement vector u of one crystal to all reflections of a "
                    "multi-reflection manifest at once (TTE model), from a truth-free start.")
    parser.add_argument("manifest", help="manifest.json written by `dynbcdi simulate --preset au-111-multi…`")
    parser.add_argument("--out", required=True, help="output directory (field.vti, strain_tensor.png, summary.json)")
    parser.add_argument("--start", choices=("flat", "phased"), default="flat",
                        help="both phase each reflection kinematically and align the results for the support; "
                             "flat (default): u = 0 on it; phased: u by least squares from the kinematic phases "
                             "(on au-111-multi-32 flat ends closer to the truth: 2.0-2.3 pm against 2.5-2.8 pm "
                             "after 80 epochs, benchmarks/RESULTS.md)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs of the joint fit (default 40)")
    parser.add_argument("--batch", type=int, default=25,
                        help="(reflection, angle) pairs per Adam step, mixing all reflections (default 25)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the phasing starts and the batch order (default 0)")
    parser.add_argument("--phasing-starts", type=int, default=2, metavar="N",
                        help="random phasing starts per reflection, the lowest Fourier error kept (default 2)")
    parser.add_argument("--twin-epochs", type=int, default=3, metavar="N",
                        help="trial epochs of each reflection's TTE fit from its phased object and from its twin, "
                             "the lower loss kept (default 3); 0: by amplitude overlap with the first reflection "
                             "(unreliable for centrosymmetric crystals)")
    parser.add_argument("--model", choices=("tte", "kinematic"), default="tte",
                        help="forward model of the joint fit (kinematic: for comparison; the start's twins are "
                             "always chosen with the TTE model)")
    parser.add_argument("--shrinkwrap", type=int, default=0, metavar="EVERY",
                        help="shrink-wrap the support every EVERY epochs from epoch 10 (default 0: the start's "
                             "support is kept; it only shrinks, so use it from a start support that is too large)")
    parser.add_argument("--shrinkwrap-threshold", type=float, default=0.2, metavar="F",
                        help="shrink-wrap keeps the blurred s above F times its maximum (default 0.2; 0.3 cut "
                             "crystal voxels on au-111-multi-32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty DIR and replace its results")
    parser.set_defaults(func=run)
    return parser


def _check_options(args: argparse.Namespace) -> None:
    """One-line ValueError for an option out of range, before anything is read or computed."""
    for name, low in (("epochs", 0), ("batch", 1), ("seed", 0), ("phasing_starts", 1), ("twin_epochs", 0),
                      ("shrinkwrap", 0)):
        value = getattr(args, name)
        if value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value}")
    if not 0.0 < args.shrinkwrap_threshold < 1.0:
        raise ValueError(f"--shrinkwrap-threshold must be in (0, 1), got {args.shrinkwrap_threshold}")


def _problems(datasets, physics: str):
    from dynbcdi.reconstruct.multi import ReflectionProblem

    return [ReflectionProblem.from_dataset(ds, physics) for ds in datasets]


def run(args: argparse.Namespace) -> int:
    """Check, load, start, fit, write; returns the exit code (0, or 130 after Ctrl-C)."""
    from dynbcdi.io.filecheck import check_new_output
    from dynbcdi.reconstruct.multi_output import JOINT_OUTPUTS
    from dynbcdi.simulate.multi import check_non_coplanar, load_manifest

    _check_options(args)
    out = check_new_output(args.out, "output directory", directory=True, overwrite=args.overwrite)
    for name in (*JOINT_OUTPUTS.values(), SUMMARY_NAME):  # a file where the folder should be is refused too
        check_new_output(out / name, "joint result", overwrite=args.overwrite)
    try:
        multi = load_manifest(args.manifest)
    except (KeyError, TypeError) as err:  # a hand-edited manifest lacking a key or holding a null
        raise ValueError(f"{args.manifest}: malformed manifest ({type(err).__name__}: {err}); write it with "
                         "`dynbcdi simulate --preset au-111-multi…`") from None
    h = np.stack([np.asarray(ds.metadata["h_sample"], dtype=float) for ds in multi.datasets])
    check_non_coplanar(h)
    tte = _problems(multi.datasets, "tte")
    print(f"{args.manifest}: {len(multi.datasets)} reflections, sample grid "
          + " × ".join(map(str, multi.sample_grid.shape)))
    try:
        start = _start(args, multi, tte)
    except KeyboardInterrupt:
        print(f"\ninterrupted while building the start; nothing was written to {out}")
        return EXIT_INTERRUPTED
    problems = tte if args.model == "tte" else _problems(multi.datasets, args.model)
    field = start.field()
    try:
        result, done, interrupted = _fit(args, field, problems)
    except KeyboardInterrupt:  # the second Ctrl-C: at once, mid-step, the field is not consistent
        print(f"\ninterrupted at once; nothing was written to {out}")
        return EXIT_INTERRUPTED
    return _write(args, out, field, start, result, done, interrupted, multi)


def _start(args: argparse.Namespace, multi, tte):
    from dynbcdi.reconstruct.multi_start import MultiStartConfig, flat_start, phased_start

    config = MultiStartConfig(n_starts=args.phasing_starts, seed=args.seed, twin_epochs=args.twin_epochs)
    with tqdm(total=len(multi.datasets), unit="reflection", desc="phasing", disable=args.no_progress) as bar:
        start = phased_start(multi.datasets, multi.sample_grid, config, problems=tte,
                             on_reflection=lambda i: bar.update())
    for ds, twin, shift in zip(multi.datasets, start.twins, start.shifts):
        print(f"  {tuple(int(i) for i in ds.reflection.hkl)}: {'twin' if twin else 'as phased'}, shifted by "
              + ", ".join(f"{v:+.2f}" for v in shift) + " voxel (z, y, x)")
    print(f"start: support {int(start.support.sum())} voxels" + (", u = 0 (flat)" if args.start == "flat" else ""))
    if args.start == "flat":
        flat = flat_start(start.objects, multi.sample_grid, config.threshold)
        flat.twins, flat.shifts, flat.twin_losses = start.twins, start.shifts, start.twin_losses
        return flat
    return start


def _fit(args: argparse.Namespace, field, problems):
    """joint_reconstruct with a progress bar: (result, epochs done, interrupted). The fit itself turns the
    first Ctrl-C into a stop at the next mini-batch boundary (``field`` then holds the state after the
    last complete Adam step); a second Ctrl-C raises KeyboardInterrupt."""
    from dynbcdi.reconstruct.config import ShrinkWrapConfig
    from dynbcdi.reconstruct.multi import JointConfig, joint_reconstruct

    shrinkwrap = ShrinkWrapConfig(every=args.shrinkwrap, threshold=args.shrinkwrap_threshold)
    config = JointConfig(epochs=args.epochs, batch_size=args.batch, seed=args.seed, shrinkwrap=shrinkwrap)
    with tqdm(total=args.epochs, unit="epoch", desc="joint fit", disable=args.no_progress) as bar:
        def progress(epoch) -> None:
            bar.update()
            bar.set_postfix(loss=f"{epoch.loss:.4g}", support=epoch.support_voxels)

        result = joint_reconstruct(field, problems, config, progress=progress)
    return result, result.epochs, result.interrupted


def _write(args: argparse.Namespace, out: Path, field, start, result, done: int, interrupted: bool, multi) -> int:
    from dynbcdi.reconstruct.multi_output import write_joint_result

    paths = write_joint_result(field, out, overwrite=args.overwrite)
    summary = {"manifest": os.fspath(args.manifest), "start": args.start, "model": args.model, "epochs": args.epochs,
               "batch": args.batch, "seed": args.seed, "phasing_starts": args.phasing_starts,
               "twin_epochs": args.twin_epochs, "twin_losses": [list(x) for x in start.twin_losses],
               "shrinkwrap": args.shrinkwrap, "shrinkwrap_threshold": args.shrinkwrap_threshold,
               "interrupted": interrupted, "epochs_done": done, "steps": result.steps, "loss": result.loss,
               "scales": result.scales,
               "reflections": [{"hkl": list(map(int, ds.reflection.hkl)), "twin": bool(t),
                                "shift_vox": np.asarray(sh, dtype=float).tolist()}
                               for ds, t, sh in zip(multi.datasets, start.twins, start.shifts)],
               "support_voxels": int(field.support.sum())}
    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=1))
    if interrupted:
        print(f"interrupted (Ctrl-C) after {result.steps} Adam steps: that field was written to {out}")
    elif result.loss:
        print(f"{len(result.loss)} epochs, loss {result.loss[0]:.4g} → {result.loss[-1]:.4g}")
    print(f"result:  {paths['vti']}\nfigure:  {paths['figure']}\nsummary: {out / SUMMARY_NAME}")
    return EXIT_INTERRUPTED if interrupted else 0
