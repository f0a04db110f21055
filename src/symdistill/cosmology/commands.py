"""CLI of the cosmology stage: ``symdistill cosmology simulate|info|train|distill|run``.

Each handler calls one library function (:mod:`symdistill.cosmology.generate`,
:mod:`symdistill.cosmology.halos`, :mod:`symdistill.cosmology.pipeline`).
"""

from __future__ import annotations

import json
import sys
import time

from symdistill.errors import SymdistillError


def _config(args):
    from symdistill.cosmology.generate import GeneratorConfig
    over = {k: getattr(args, k) for k in ("seed", "n_steps", "smoothing", "mesh_factor") if getattr(args, k) is not None}
    c = GeneratorConfig.of_size(args.size, **over)
    if args.box_size is not None:
        c = c.with_(box_size=args.box_size)
    if args.n_side is not None:
        c = c.with_(n_side=args.n_side)
    return c


def _simulate(args) -> int:
    from symdistill.cosmology.generate import generate
    from symdistill.cosmology.halos import write_halos
    from symdistill.io import check_output_file
    out = check_output_file(args.out, what="the halo file")
    t0 = time.perf_counter()
    cat = generate(_config(args), progress=not args.quiet)
    write_halos(out, cat)
    if not args.quiet:
        print(cat.summary())
        print(f"  smoothing radius {cat.meta['smoothing_radius']:.2f} Mpc/h; wrote {out} in "
              f"{time.perf_counter() - t0:.1f} s")
    return 0


def _info(args) -> int:
    from symdistill.cosmology.halos import load_catalogue
    cat = load_catalogue(args.file, snapnum=args.snapnum, box_size=args.box_size)
    if args.json:
        d = {"n_halos": len(cat), "box_size": cat.box_size, "redshift": cat.redshift, "cosmology": cat.cosmology,
             "has_delta": cat.has_delta, "meta": cat.meta}
        if len(cat):
            d.update(mass_min=float(cat.mass.min()), mass_max=float(cat.mass.max()))
        print(json.dumps(d, indent=2, default=str))
    else:
        print(cat.summary())
    return 0


def _pipeline_config(args, **extra):
    from symdistill.cosmology.pipeline import CosmologyConfig
    fields = {k: getattr(args, k) for k in ("size", "seed", "preset", "epochs", "time_budget", "sr_budget",
                                            "sr_evaluations", "radius", "device", "threads")
              if getattr(args, k, None) is not None}
    if getattr(args, "catalogue", None):
        fields["catalogue"] = str(args.catalogue)
    if getattr(args, "snapshot", None):
        fields["snapshot"] = str(args.snapshot)
    if getattr(args, "no_ood", False):
        fields["ood"] = False
    if getattr(args, "velocity", False):
        fields["velocity"] = True
    fields.update(extra)
    return CosmologyConfig(**fields)


def _train(args) -> int:
    from symdistill.cosmology.pipeline import train_stage
    result = train_stage(args.out, _pipeline_config(args), progress=not args.quiet,
                         log=_log(args))
    print(json.dumps(result, indent=2) if args.json else f"  network: held-out MAE {result['test_mae']:.4f}")
    return 0


def _distill(args) -> int:
    from symdistill.cosmology.pipeline import distill_stage
    result = distill_stage(args.run, progress=not args.quiet, log=_log(args))
    _print(result, args)
    return 0


def _run(args) -> int:
    from symdistill.cosmology.pipeline import run_cosmology
    result = run_cosmology(args.out, _pipeline_config(args), progress=not (args.quiet or args.json),
                           log=_log(args))
    _print(result, args)
    return 0


def _log(args):
    return (lambda *a, **k: None) if (args.quiet or getattr(args, "json", False)) else print


def _print(result: dict, args) -> None:
    if args.json:
        json.dump(result, sys.stdout, indent=2, default=str)
        print()
        return
    from symdistill.cosmology.pipeline import format_table
    print()
    print(format_table(result))
    if result.get("report"):
        print(f"  report: {result['report']}")


def _missing(args) -> int:
    raise SymdistillError("give a cosmology command: simulate, info, train, distill or run "
                          "(see `symdistill cosmology --help`)")


def _add_generator_args(p) -> None:
    p.add_argument("--size", default="default", help="tiny (125 Mpc/h, 64^3), default (250 Mpc/h, 128^3) or "
                                                     "large (500 Mpc/h, 256^3)")
    p.add_argument("--seed", type=int, help="random seed of the initial conditions (independent boxes by seed)")
    p.add_argument("--box-size", type=float, help="box side in Mpc/h (overrides --size)")
    p.add_argument("--n-side", type=int, help="particles per side (overrides --size)")
    p.add_argument("--n-steps", type=int, help="PM steps from z = 9 to 0 (default 20)")
    p.add_argument("--mesh-factor", type=int, help="PM mesh cells per particle per side (default 2)")
    p.add_argument("--smoothing", type=float,
                   help="Gaussian radius of the target delta in Mpc/h (default: calibrated to median 0.415)")


def _add_run_args(p) -> None:
    p.add_argument("--catalogue", help="a halo file (HDF5, from `cosmology simulate`) or a Quijote FoF folder "
                                       "groups_NNN (then delta must be in it or the run is refused)")
    p.add_argument("--snapshot", help="the catalogue's Gadget HDF5 snapshot (a Quijote snapdir_NNN folder): delta "
                                      "is painted from its particles, smoothed and calibrated as the generator's")
    p.add_argument("--size", help="generate a box of this size when no --catalogue is given (default default)")
    p.add_argument("--seed", type=int)
    p.add_argument("--preset", help="fast (default: measured, docs/benchmarks.md) or paper (2 x 500, message 100)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    p.add_argument("--time-budget", type=float, help="cap on the seconds of each training (fewer epochs if reached)")
    p.add_argument("--sr-budget", type=float, help="cap on the seconds of each formula search (default 120)")
    p.add_argument("--sr-evaluations", type=int, help="evaluations of each formula search (default 200000)")
    p.add_argument("--radius", type=float, help="edge radius in Mpc/h (default 50)")
    p.add_argument("--velocity", action="store_true", help="the node model also reads each halo's speed |v_i|")
    p.add_argument("--no-ood", action="store_true", help="skip the out-of-distribution split (delta > 1 held out)")
    p.add_argument("--device", help="cpu (default), cuda or auto")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def register(sub) -> None:
    top = sub.add_parser("cosmology", help="halo catalogues: simulate, train a halo network, distil its formula")
    cs = top.add_subparsers(dest="cosmology_command", metavar="COMMAND", parser_class=type(top))
    top.set_defaults(handler=_missing)

    p = cs.add_parser("simulate", help="generate a halo catalogue offline (2LPT + particle mesh + FoF)")
    _add_generator_args(p)
    p.add_argument("--out", required=True, help="output halo file (.h5, written atomically)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=_simulate)

    p = cs.add_parser("info", help="summarise a halo file or a Quijote FoF catalogue")
    p.add_argument("file", help="halo .h5 file, or a Quijote groups_NNN folder or group_tab file")
    p.add_argument("--snapnum", type=int, help="Quijote snapshot number (4 = z 0) when FILE is the parent folder")
    p.add_argument("--box-size", type=float, help="Quijote box side in Mpc/h (default 1000)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_info)

    for name, handler, text in (("train", _train, "train the halo network (in distribution) into a run folder"),
                                ("run", _run, "catalogue -> network -> formulas -> table, in and out of "
                                              "distribution, report")):
        p = cs.add_parser(name, help=text)
        _add_run_args(p)
        p.add_argument("--out", required=True, help="run folder")
        p.set_defaults(handler=handler)

    p = cs.add_parser("distill", help="formulas from a trained run folder: SR, baselines, the table")
    p.add_argument("run", help="run folder of `cosmology train`")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_distill)
