"""CLI command of the distill stage: ``distill --run RUN``."""

from __future__ import annotations

import json
import sys


def _distill(args):
    from symdistill.distill.session import DistillConfig, distill_run
    from symdistill.report.run_report import write_report

    names = ("search", "backend", "sr_budget", "seed", "select", "trim_closest", "trim_largest")
    fields = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if args.sr_evaluations is not None:  # as `run --sr-evaluations`: node searches a quarter each
        fields.update(sr_evaluations=args.sr_evaluations, node_evaluations=max(1, args.sr_evaluations // 4))
    quiet = args.json
    result = distill_run(args.run, DistillConfig(**fields), replace=args.replace,
                         log=(lambda *a, **k: None) if quiet else print)
    _, html = write_report(args.run)
    if args.json:
        json.dump({k: result.get(k) for k in ("formula", "truth", "recovered", "fits", "seconds", "force_r2",
                                              "edge_formulas", "node_formulas", "comparison")}, sys.stdout, indent=2)
        print()
    else:
        verdict = {True: "yes (exact)", False: "no", None: "unknown (no ground truth)"}[result["recovered"]]
        print(f"  discovered: {result['formula']}\n  truth:      {result['truth']}\n"
              f"  recovered:  {verdict}\n  report: {html}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("distill", help="symbolic regression on a trained run's messages, verified")
    p.add_argument("--run", required=True, help="run folder written by `symdistill train`")
    p.add_argument("--search", help="structured (default) or plain")
    p.add_argument("--backend", help="operon (default), pysr or gplearn")
    p.add_argument("--sr-budget", type=float,
                   help="cap on the seconds of the edge formula search (default 60; 100,000 evaluations decide)")
    p.add_argument("--sr-evaluations", type=int,
                   help="evaluations of the edge search (default 100000; node searches: a quarter each)")
    p.add_argument("--select", help="refit (default: the Pareto candidate whose refitted symbolic model "
                   "predicts held-out raw data best, simplest within 1.1x) or paper (the paper's rule)")
    p.add_argument("--trim-closest", type=float,
                   help="fraction of edges with the smallest r left out of the search (default 0.02)")
    p.add_argument("--trim-largest", type=float,
                   help="fraction of edges with the largest scalar |g| left out of the search (default 0.01)")
    p.add_argument("--seed", type=int)
    p.add_argument("--replace", action="store_true",
                   help="replace an earlier distillation of this run made with other options (default: refuse)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_distill)
