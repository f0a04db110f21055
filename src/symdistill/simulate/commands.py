"""CLI commands of the simulate stage: ``simulate``, ``derive`` and ``info``."""

from __future__ import annotations

import argparse
import json
import math
import time

from symdistill.errors import SymdistillError
from symdistill.limits import DEFAULT_MAX_SIZE, parse_size
from symdistill.simulate.dataset import open_dataset, simulate_to_file
from symdistill.simulate.observe import METHODS, as_estimator, derive_file
from symdistill.simulate.simulate import SimulationConfig


def add_simulation_args(p, *, n_sims_default: int | None = None) -> None:
    """Options shared by every command that simulates (defaults live in SimulationConfig)."""
    d = SimulationConfig()
    law = p.add_mutually_exclusive_group()
    law.add_argument("--system", help="spring, r1, r2, charge, damped or discontinuous")
    law.add_argument("--potential", help="pair potential in r, m1, m2, q1, q2, e.g. '(r-1)**2' "
                                         "(r is the softened distance |x1-x2| + 0.01)")
    p.add_argument("--dim", type=int, default=d.dim)
    p.add_argument("--n-bodies", type=int, default=d.n_bodies)
    p.add_argument("--n-sims", type=int, default=n_sims_default or d.n_sims)
    p.add_argument("--steps", type=int, default=d.n_steps, help="saved states per simulation")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--dt", type=float, default=None, help="time between saved states (default: the system's)")
    p.add_argument("--substeps", type=int, default=d.substeps, help="integration steps per saved state (minimum)")
    p.add_argument("--max-substeps", type=int, default=d.max_substeps,
                   help="per-simulation adaptive refinement near close encounters (1: fixed steps)")
    p.add_argument("--tolerance", type=float, default=d.tolerance,
                   help="adaptive step <= tolerance x shortest pair timescale")
    p.add_argument("--integrator", default=d.integrator, help="verlet or rk4")
    p.add_argument("--damping", type=float, default=None, help="damping coefficient c (force -c v)")
    p.add_argument("--paper-quirks", action="store_true",
                   help="reproduce the reference code's index-dependent damping and nuisance charges")


def config_from_args(args) -> SimulationConfig:
    return SimulationConfig(n_sims=args.n_sims, n_bodies=args.n_bodies, dim=args.dim,
                            n_steps=args.steps, dt=args.dt, substeps=args.substeps,
                            max_substeps=args.max_substeps, tolerance=args.tolerance,
                            integrator=args.integrator, seed=args.seed)


def law_args(args) -> tuple[str | None, str | None]:
    """(system, potential) from --system/--potential (spring when neither is given; an empty
    --system or --potential is given, and an error, not spring)."""
    if args.potential is not None:
        return None, args.potential
    return ("spring" if args.system is None else args.system), None


def _json_safe(value):
    """Attributes as strict JSON: NaN and infinities as strings, arrays as lists."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _json_safe(value.tolist())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def size_arg(text: str) -> int | None:
    """argparse type of ``--max-size`` (its error is the parser's one line)."""
    try:
        return parse_size(text)
    except SymdistillError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_size_arg(p) -> None:
    p.add_argument("--max-size", type=size_arg, default=DEFAULT_MAX_SIZE, metavar="SIZE",
                   help="refuse to write more than this, estimated before any work (default 8G; e.g. 500M, "
                        "100G; none: no size or free-space check)")


def _simulate(args) -> int:
    system, potential = law_args(args)
    config = config_from_args(args)
    t0 = time.perf_counter()
    path = simulate_to_file(args.out, system, potential=potential,
                            config=config, paper_quirks=args.paper_quirks, damping=args.damping,
                            progress=not args.quiet, file_dtype=args.file_dtype, noise=args.noise,
                            estimator=as_estimator(args.estimator, window=args.window), max_size=args.max_size)
    return _summarise(path, t0, args.quiet)


def _derive(args) -> int:
    t0 = time.perf_counter()
    path = derive_file(args.data, args.out, estimator=as_estimator(args.estimator, window=args.window),
                       max_size=args.max_size)
    return _summarise(path, t0, args.quiet)


def _summarise(path, t0: float, quiet: bool) -> int:
    """The written file's summary and the seconds since ``t0`` (nothing when quiet); exit status 0."""
    seconds = time.perf_counter() - t0
    if not quiet:
        with open_dataset(path) as ds:
            print(ds.summary())
        print(f"  wrote in {seconds:.1f} s")
    return 0


def add_estimator_args(p) -> None:
    """How vel and acc are estimated from positions (defaults live in observe.Estimator)."""
    p.add_argument("--estimator", choices=METHODS, default=None,
                   help="savgol (default: Savitzky-Golay, window chosen from the data) or spline (GCV, slower)")
    p.add_argument("--window", type=int, default=None,
                   help="savgol window in saved states (odd; default: chosen from the data)")


def _info(args) -> int:
    with open_dataset(args.file) as ds:
        if args.json:
            a = ds.attrs
            a.update(n_sims=ds.n_sims, n_steps=ds.n_steps, has_acc=ds.has_acc)
            print(json.dumps(_json_safe(a), indent=2, default=str, allow_nan=False))
        else:
            print(ds.summary())
    return 0


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulate an N-body system to an HDF5 dataset")
    add_simulation_args(p)
    p.add_argument("--out", required=True, help="output .h5 file (written atomically)")
    p.add_argument("--file-dtype", default="float64", choices=["float64", "float32"],
                   help="storage precision of pos/vel/acc (integration is float64 either way)")
    p.add_argument("--noise", type=float, default=None,
                   help="observe positions only, with Gaussian noise of this size x the position scale; "
                        "vel and acc are then estimated from them (default: exact states)")
    add_estimator_args(p)
    add_size_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(handler=_simulate)

    p = sub.add_parser("derive", help="estimate vel and acc from the positions of a dataset file")
    p.add_argument("--data", required=True, help="input .h5 with pos [n_sims, n_steps, n_bodies, dim], mass, "
                                                 "attributes dim, n_bodies, dt")
    p.add_argument("--out", required=True, help="output .h5 file (written atomically)")
    add_estimator_args(p)
    add_size_arg(p)
    p.add_argument("--quiet", action="store_true", help="no summary")
    p.set_defaults(handler=_derive)

    p = sub.add_parser("info", help="summarise a dataset file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the attributes as JSON")
    p.set_defaults(handler=_info)
