"""End-to-end commands.

``run``: simulate -> train -> distill -> verify -> report in one run folder (the main job; ``make
demo`` runs it for spring-2D). ``demo`` is kept as the quick simulation-only look at a system.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from symdistill.distill.session import DistillConfig, distill_run
from symdistill.errors import SymdistillError, check_dim, check_positive
from symdistill.io import write_json
from symdistill.report.run_report import write_report
from symdistill.report.trajectories import plot_trajectories
from symdistill.simulate import SimulationConfig, get_law, open_dataset, simulate_to_file
from symdistill.train.config import RunConfig
from symdistill.train.loop import train
from symdistill.versions import versions


#: Default seconds of training per spatial dimension. 3D gets twice 2D's: after 60 s its messages were
#: less force-like (l1: r2-3D not recovered, r1-3D only after the refit); with 120 s all six 3D
#: systems were recovered (docs/benchmarks.md, "End-to-end recovery").
TRAIN_SECONDS = {2: 60.0, 3: 120.0}


@dataclass(frozen=True)
class PipelineConfig:
    """The main job. Defaults are sized for a laptop CPU (about two minutes on 2 cores in 2D, three in 3D)."""

    system: str | None = "spring"
    potential: str | None = None
    dim: int = 2
    n_bodies: int = 4
    n_sims: int = 2000
    n_steps: int = 100
    test_sims: int = 200
    step_stride: int = 1
    model: str = "l1"
    edge_inputs: str = "relative"
    time_budget: float | None = None  # seconds of training; None: TRAIN_SECONDS per dim (60 s in 2D, 120 in 3D)
    sr_budget: float = 20.0        # seconds of the edge search
    node_budget: float = 6.0       # seconds per node-model search
    seed: int = 0
    # Reproducible mode: a fixed number of training steps and of SR evaluations instead of time
    # budgets, so the result does not depend on how fast (or how loaded) the machine is.
    train_steps: int | None = None
    sr_evaluations: int | None = None

    def __post_init__(self):
        for name in ("n_sims", "n_steps", "test_sims", "step_stride", "sr_budget", "node_budget"):
            check_positive(name, getattr(self, name))
        for name in ("time_budget", "train_steps", "sr_evaluations"):
            check_positive(name, getattr(self, name), optional=True)
        check_dim(self.dim)

    @property
    def train_seconds(self) -> float:
        """The training budget: ``time_budget``, or the default for ``dim``."""
        return TRAIN_SECONDS[self.dim] if self.time_budget is None else self.time_budget


def run_pipeline(out, config: PipelineConfig | None = None, *, progress: bool = True, log=print) -> dict:
    c = config or PipelineConfig()
    out = Path(out)
    if (out / "result.json").exists():
        raise SymdistillError(f"{out} already holds a finished run: choose another --out")
    t0 = time.perf_counter()
    law = get_law(c.system if c.potential is None else None, potential=c.potential)
    write_json(out / "pipeline.json", {"config": asdict(c), "versions": versions()})
    data = out / "data"
    sim = dict(n_bodies=c.n_bodies, dim=c.dim, n_steps=c.n_steps)
    train_file, test_file = data / "train.h5", data / "test.h5"
    if not train_file.exists():  # a resumed run reuses its data
        simulate_to_file(train_file, law, config=SimulationConfig(n_sims=c.n_sims, seed=c.seed, **sim), progress=progress)
    if not test_file.exists():
        simulate_to_file(test_file, law, config=SimulationConfig(n_sims=c.test_sims, seed=c.seed + 1, **sim),
                         progress=progress)
    log(f"simulated {law.describe()} ({time.perf_counter() - t0:.0f} s)")
    run_dir = out / "train"
    schedule = {"train.time_budget": c.train_seconds}
    if c.train_steps is not None:  # ten epochs of a fixed length: the same steps on any machine
        schedule = {"train.time_budget": None, "train.epochs": 10,
                    "train.steps_per_epoch": max(1, c.train_steps // 10)}
    rc = RunConfig().replace(**{
        "data.path": str(train_file), "data.test_path": str(test_file), "data.step_stride": c.step_stride,
        "model.variant": c.model, "model.edge_inputs": c.edge_inputs, "train.seed": c.seed, **schedule})
    if not (run_dir / "model.pt").exists():
        train(rc, run_dir, resume=(run_dir / "config.json").exists(), progress=progress, log=log)
    dc = DistillConfig(sr_budget=c.sr_budget, node_budget=c.node_budget, seed=c.seed,
                       sr_evaluations=c.sr_evaluations,
                       node_evaluations=None if c.sr_evaluations is None else max(1, c.sr_evaluations // 4))
    result = distill_run(run_dir, dc, log=log)
    md, html = write_report(run_dir)
    result = {"formula": result["formula"], "truth": result.get("truth"), "recovered": result.get("recovered"),
              "seconds": time.perf_counter() - t0, "force_r2": result.get("force_r2"),
              "edge_formulas": result["edge_formulas"], "node_formulas": result["node_formulas"],
              "comparison": result["comparison"], "report": str(html), "run": str(out),
              "recovered_by_search": result.get("recovered_by_search"),
              "recovered_after_refit": result.get("recovered_after_refit"),
              "refitted_edge_formulas": result["symbolic_model"]["edge"]}
    write_json(out / "result.json", result)
    return result


def demo(out, *, seed: int = 0, progress: bool = True) -> dict:
    """Simulate a small spring system, print its summary and plot trajectories."""
    out = Path(out)
    config = SimulationConfig(n_sims=200, n_bodies=4, dim=2, n_steps=500, seed=seed)
    t0 = time.perf_counter()
    data = simulate_to_file(out / "spring2d.h5", "spring", config=config, progress=progress)
    with open_dataset(data) as ds:
        summary = ds.summary()
        sel = ds.read(slice(0, 4), fields=("pos",))
        law = ds.law()
    plot = plot_trajectories(sel["pos"], sel["mass"], out / "trajectories.png",
                             title=f"spring 2D: U(r) = {law.energy}")
    result = {"data": str(data), "plot": str(plot), "seconds": time.perf_counter() - t0,
              "config": config.to_dict(), "versions": versions()}
    write_json(out / "demo.json", result)
    print(summary)
    print(f"  trajectory plot: {plot}")
    return result


def _run(args) -> int:
    fields = {k: getattr(args, k) for k in ("dim", "n_bodies", "n_sims", "model", "edge_inputs", "time_budget",
                                           "sr_budget", "seed", "train_steps", "sr_evaluations")
              if getattr(args, k) is not None}
    if args.potential:
        fields.update(system=None, potential=args.potential)
    elif args.system:
        fields["system"] = args.system
    c = PipelineConfig(**fields)
    quiet = args.json or args.quiet
    result = run_pipeline(args.out, c, progress=not quiet, log=(lambda *a, **k: None) if quiet else print)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print()
    print(f"  discovered: F = {result['formula']}")
    print(f"  truth:      F = {result['truth']}")
    print(f"  recovered:  {'yes' if result['recovered'] else 'no' if result['recovered'] is not None else 'unknown'}"
          f"   ({result['seconds']:.0f} s)")
    if result["recovered"] and result.get("recovered_by_search") is False:
        print(f"  (only after refitting its constants on raw data: phi_0 = {result['refitted_edge_formulas'][0]})")
    for k, v in result["comparison"].items():
        print(f"  MAE {k:22s} network {v['network']:.4g}   formula {v['formula']:.4g}")
    print(f"  report: {result['report']}")
    return 0


def _demo(args) -> int:
    demo(args.out, seed=args.seed, progress=not args.quiet)
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="simulate -> train -> distill -> verify -> report (the main job)")
    law = p.add_mutually_exclusive_group()
    law.add_argument("--system", help="spring, r1, r2, charge, damped or discontinuous (default spring)")
    law.add_argument("--potential", help="pair potential in r, m1, m2, q1, q2, e.g. '(r-1)**2'")
    p.add_argument("--dim", type=int)
    p.add_argument("--n-bodies", type=int)
    p.add_argument("--n-sims", type=int)
    p.add_argument("--model", help="standard, bottleneck, l1 or kl (default l1)")
    p.add_argument("--edge-inputs", help="relative (default) or paper")
    p.add_argument("--time-budget", type=float, help="seconds of training (default 60 in 2D, 120 in 3D)")
    p.add_argument("--sr-budget", type=float, help="seconds of the edge formula search (default 20)")
    p.add_argument("--seed", type=int)
    p.add_argument("--train-steps", type=int,
                   help="train for this many steps instead of --time-budget (reproducible on any machine)")
    p.add_argument("--sr-evaluations", type=int,
                   help="stop the edge search after this many evaluations (node searches: a quarter)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=_run)

    p = sub.add_parser("demo", help="simulate a small spring system and plot its trajectories")
    p.add_argument("--out", default="runs/demo-sim", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=_demo)
