"""End-to-end commands.

``run``: simulate -> library fit -> (if the library does not explain the data) train -> distill ->
verify -> report, in one run folder (the main job; ``make demo`` runs it for spring-2D). ``--method``
chooses the path: ``auto`` (default: the library fit first, :mod:`symdistill.library`, the network
only when the library does not explain the data), ``library`` or ``network``. ``demo`` is kept as
the quick simulation-only look at a system.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from symdistill.errors import SymdistillError, check_dim, check_positive, check_seed
from symdistill.io import check_output_folder, read_json, write_json
from symdistill.limits import DEFAULT_MAX_SIZE
from symdistill.runfolder import claim
from symdistill.simulate import SimulationConfig, get_law, open_dataset, simulate_to_file
from symdistill.simulate.dataset import check_simulation_size
from symdistill.train.config import RunConfig
from symdistill.versions import versions
# The stages below import sympy, operon, scikit-learn and matplotlib: loaded when a run needs them,
# so that every command of the CLI starts without them.


#: Default training steps per spatial dimension: results then do not depend on how fast or how
#: loaded the machine is (docs/benchmarks.md, "End-to-end recovery", for how they were chosen, on
#: the development laws only).
TRAIN_STEPS = {2: 1500, 3: 3000}
#: Default cap on the seconds of training per dimension: reached only on a slow or busy machine (the
#: steps above took 19-28 s in 2D and ~45 s in 3D on 2 quiet cores, 2026-12-01); then fewer steps are run, and said.
TRAIN_CAP_SECONDS = {2: 300.0, 3: 600.0}


#: What ``--model hamiltonian`` changes in the training config (docs/benchmarks.md, "Issue 14", for how
#: they were chosen): a smooth activation (the model is trained through its gradient), and a smaller
#: network (its double backward pass costs ~3x a message model's step).
HAMILTONIAN_DEFAULTS = {"hamiltonian": {"model.activation": "softplus", "model.hidden": 64}}


#: Options added after run folders were first written, with the value that reproduces those folders
#: (a folder without them is compared as if it had them: the same command continues it).
ADDED_OPTIONS = {"device": "cpu"}


@dataclass(frozen=True)
class PipelineConfig:
    """The main job. Defaults are sized for a laptop CPU (about a minute on 2 cores in 2D, two in 3D).

    What decides the result is counted, not timed: ``train_steps`` training steps (default
    :data:`TRAIN_STEPS`) and ``sr_evaluations`` search evaluations (default: DistillConfig's, node
    searches a quarter each); ``time_budget``, ``sr_budget`` and ``node_budget`` are wall-clock caps."""

    system: str | None = "spring"
    potential: str | None = None
    dim: int = 2
    n_bodies: int = 4
    n_sims: int = 2000
    n_steps: int = 100
    test_sims: int = 200
    step_stride: int = 1
    model: str = "bottleneck"
    edge_inputs: str = "relative"
    train_steps: int | None = None     # None: TRAIN_STEPS[dim]
    time_budget: float | None = None   # cap on training seconds; None: TRAIN_CAP_SECONDS[dim]
    sr_evaluations: int | None = None  # None: DistillConfig's default
    sr_patience: int | None = None     # stop each search after this many rounds without a better front
    sr_budget: float | None = None     # cap on the seconds of the edge search (None: DistillConfig's)
    node_budget: float | None = None   # cap on the seconds of each node-model search
    seed: int = 0
    method: str = "auto"               # auto, library or network (module docstring)
    library_terms: tuple[str, ...] = ()  # the user's extra library terms of g, formula strings
    noise: float | None = None         # observe positions only, with this relative noise (None: exact data)
    device: str = "cpu"                # training device: cpu, cuda, cuda:N or auto (CUDA when present)

    def __post_init__(self):
        object.__setattr__(self, "library_terms", tuple(self.library_terms))
        from symdistill.library import LibraryConfig, check_method

        check_method(self.method)
        LibraryConfig(terms=self.library_terms)  # a bad term fails before any simulation
        if self.noise is not None and not self.noise >= 0:
            raise SymdistillError(f"`noise` must be >= 0, a fraction of the position scale (got {self.noise})")
        for name in ("n_sims", "n_steps", "test_sims", "step_stride"):
            check_positive(name, getattr(self, name))
        for name in ("time_budget", "train_steps", "sr_evaluations", "sr_budget", "node_budget", "sr_patience"):
            check_positive(name, getattr(self, name), optional=True)
        check_dim(self.dim)
        check_seed("seed", self.seed)
        from symdistill.models.network import ModelConfig
        from symdistill.train.config import TrainConfig
        ModelConfig(variant=self.model, edge_inputs=self.edge_inputs)  # a bad name fails before any simulation
        TrainConfig(device=self.device)
        if self.model == "hamiltonian" and self.potential is None and self.system == "damped":
            from symdistill.train.loop import not_hamiltonian
            raise SymdistillError(not_hamiltonian("damped", "--model hamiltonian"))

    @property
    def steps(self) -> int:
        return TRAIN_STEPS[self.dim] if self.train_steps is None else self.train_steps

    @property
    def train_seconds(self) -> float:
        """The cap on training: ``time_budget``, or the default for ``dim``."""
        return TRAIN_CAP_SECONDS[self.dim] if self.time_budget is None else self.time_budget


def _simulations(c: PipelineConfig, data: Path) -> tuple[tuple[Path, SimulationConfig], ...]:
    sim = dict(n_bodies=c.n_bodies, dim=c.dim, n_steps=c.n_steps)
    return ((data / "train.h5", SimulationConfig(n_sims=c.n_sims, seed=c.seed, **sim)),
            (data / "test.h5", SimulationConfig(n_sims=c.test_sims, seed=c.seed + 1, **sim)))


def simulate_data(c: PipelineConfig, data: Path, law=None, *, progress: bool = False,
                  max_size: int | None = DEFAULT_MAX_SIZE) -> tuple[Path, Path]:
    """The run's training and test files in the folder ``data`` (simulated unless already there: a
    resumed run reuses its data); returns their paths."""
    law = law or get_law(c.system if c.potential is None else None, potential=c.potential)
    observe = {} if c.noise is None else {"noise": c.noise}  # positions only, derivatives estimated
    for path, sim in _simulations(c, data):
        if not path.exists():
            simulate_to_file(path, law, config=sim, progress=progress, max_size=max_size, **observe)
    return data / "train.h5", data / "test.h5"


def _has_results(out: Path) -> bool:
    """Whether a run folder holds results of its recorded config (its data, at least)."""
    return any((out / p).exists() for p in ("data/train.h5", "data/test.h5", "train", "library", "result.json"))


def run_pipeline(out, config: PipelineConfig | None = None, *, progress: bool = True, log=print,
                 max_size: int | None = DEFAULT_MAX_SIZE) -> dict:
    """The main job in the run folder ``out`` (module docstring); returns what ``result.json`` holds.

    The folder is a record (:mod:`symdistill.runfolder`): the config is stored on creation and a
    later call must give the same one, which continues an interrupted run (its data, its training
    checkpoint) or returns the finished result; another config is refused with the differences.
    Sizes are checked before anything is simulated (``max_size``: :mod:`symdistill.limits`)."""
    c = config or PipelineConfig()
    out = Path(out)
    law = get_law(c.system if c.potential is None else None, potential=c.potential)
    request = asdict(c)
    if c.method != "library":  # a GPU asked for and absent: said before anything is simulated
        from symdistill.train.steps import resolve_device
        resolve_device(c.device)
    check_output_folder(out)
    for path, sim in _simulations(c, out / "data"):
        if not path.exists():
            check_simulation_size(sim, path, observed=c.noise is not None, max_size=max_size)
    with claim(out, "run", request, record="pipeline.json", key="config", log=log, results=_has_results,
               extra={"versions": versions(), "stage_seconds": {}},
               upgrade=lambda saved: {**ADDED_OPTIONS, **saved}) as existing:
        if existing and (out / "result.json").exists():
            log(f"{out} already holds this run, finished: its result is shown")
            return read_json(out / "result.json", "result")
        if existing:
            log(f"{out} holds this run, unfinished: continuing it")
        return _run_pipeline(out, c, law, progress, log, max_size)


def _run_pipeline(out: Path, c: PipelineConfig, law, progress: bool, log, max_size) -> dict:
    from symdistill.distill.session import NODE_SHARE, DistillConfig, distill_run
    from symdistill.library import LibraryConfig, fit_library, write_library_run
    from symdistill.report.run_report import write_report
    from symdistill.train.loop import train

    t0 = time.perf_counter()
    record = out / "pipeline.json"
    save_record = lambda stages: write_json(record, {"config": asdict(c), "versions": versions(),  # noqa: E731
                                                     "stage_seconds": stages})
    fresh = not all((out / "data" / f).exists() for f in ("train.h5", "test.h5"))
    train_file, test_file = simulate_data(c, out / "data", law, progress=progress, max_size=max_size)
    simulate_seconds = time.perf_counter() - t0
    log(f"simulated {law.describe()} ({simulate_seconds:.0f} s)")
    if fresh:  # the report's header shows it (a resumed run reused its data and keeps its record)
        save_record({"simulate": round(simulate_seconds, 2)})
    library = None
    if c.model == "hamiltonian" and c.method == "auto":
        log("--model hamiltonian learns the energy: the network path runs (the library fits pair forces)")
    elif c.method in ("auto", "library"):
        library = fit_library(train_file, test_file, LibraryConfig(terms=c.library_terms, seed=c.seed),
                              law=law, dim=c.dim)
        _, library_png = write_library_run(out / "library", library, law=law)
        log(f"library fit ({library.seconds:.1f} s): {library.formula}"
            + ("" if library.explains else f" does not explain the data: {library.reason}"))
        if c.method == "library" or library.explains:
            result = _library_result(library, law, c, out, library_png, time.perf_counter() - t0)
            write_json(out / "result.json", result)
            return result
        log("the library does not explain the data: the network path runs")
    run_dir = out / "train"
    rc = network_config(c, train_file, test_file)
    if not (run_dir / "model.pt").exists():
        train(rc, run_dir, progress=progress, log=log)  # the same config again continues the run
    dc = DistillConfig(seed=c.seed, **{k: v for k, v in (("sr_budget", c.sr_budget), ("node_budget", c.node_budget))
                                        if v is not None})
    if c.sr_evaluations is not None:
        dc = replace(dc, sr_evaluations=c.sr_evaluations, node_evaluations=max(1, c.sr_evaluations // NODE_SHARE))
    if c.sr_patience is not None:
        dc = replace(dc, sr_patience=c.sr_patience)
    result = distill_run(run_dir, dc, log=log)
    md, html = write_report(run_dir)
    search = result.get("search") or {}
    result = {"method": c.method, "model": c.model, "found_by": "network",
              "library": None if library is None else library.to_dict(),
              "formula": result["formula"], "truth": result.get("truth"), "recovered": result.get("recovered"),
              "fits": result.get("fits"), "seconds": time.perf_counter() - t0, "force_r2": result.get("force_r2"),
              "summary": (result.get("verification") or {}).get("summary"),
              "edge_formulas": result["edge_formulas"], "node_formulas": result["node_formulas"],
              "comparison": result["comparison"], "report": str(html), "run": str(out),
              "search_formula": search.get("formula"),
              "search_exact": (search.get("verification") or {}).get("exact"),
              "snapped": [f"{x['value']:g} -> {x['to']}" for x in (result.get("final") or {}).get("snaps", [])
                          if x["kept"]]}
    write_json(out / "result.json", result)
    return result


def network_config(c: PipelineConfig, train_file, test_file, model: str | None = None) -> RunConfig:
    """The training config of the network path (``model``: another model on the same schedule, as the
    benchmarks train beside it): a fixed number of steps and ten checkpoints; the time budget only
    caps it (``train.max_steps``)."""
    model = model or c.model
    schedule = {"train.time_budget": c.train_seconds, "train.max_steps": c.steps,
                "train.steps_per_epoch": max(1, c.steps // 10)}
    return RunConfig().replace(**{
        "data.path": str(train_file), "data.test_path": str(test_file), "data.step_stride": c.step_stride,
        "model.variant": model, "model.edge_inputs": c.edge_inputs, "train.seed": c.seed,
        "train.device": c.device, **schedule, **HAMILTONIAN_DEFAULTS.get(model, {})})


def _library_result(library, law, c: PipelineConfig, out: Path, png: Path, seconds: float) -> dict:
    """result.json of a run that stops at the library path."""
    from symdistill.distill.snap import truth_textbook

    v = library.verification or {}
    return {"method": c.method, "found_by": "library" if library.explains else None,
            "library": library.to_dict(), "formula": library.formula,
            "truth": truth_textbook(law) if law is not None and law.has_truth else None,
            "recovered": library.recovered, "fits": v.get("fits"), "seconds": seconds, "summary": v.get("summary"),
            "edge_formulas": [str(e) for e in library.force_formulas(c.dim)],
            "node_formulas": library.node_terms, "comparison": {}, "report": str(png), "run": str(out),
            "search_formula": library.searched, "search_exact": None,
            "snapped": [f"{x['value']:g} -> {x['to']}" for x in library.snaps if x["kept"]]}


def demo(out, *, seed: int = 0, progress: bool = True) -> dict:
    """Simulate a small spring system, print its summary and plot trajectories."""
    from symdistill.report.trajectories import plot_trajectories

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
                                           "sr_budget", "seed", "train_steps", "sr_evaluations", "method", "noise",
                                           "sr_patience", "device")
              if getattr(args, k) is not None}
    if args.library_term:
        fields["library_terms"] = tuple(args.library_term)
    if args.potential is not None:
        fields.update(system=None, potential=args.potential)
    elif args.system is not None:
        fields["system"] = args.system
    c = PipelineConfig(**fields)
    quiet = args.json or args.quiet
    result = run_pipeline(args.out, c, progress=not quiet, log=(lambda *a, **k: None) if quiet else print,
                          max_size=args.max_size)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print()
    print(f"  discovered: {result['formula']}")
    print(f"  truth:      {result['truth']}")
    verdict = {True: "yes (exact: the law's form, up to what the method cannot identify)",
               False: "no" + (" (it fits the data, but is not the law)" if result.get("fits") else ""),
               None: "unknown (no ground truth)"}[result["recovered"]]
    print(f"  recovered:  {verdict}   ({result['seconds']:.0f} s)")
    lib = result.get("library")
    if result.get("found_by") == "library":
        print(f"  found by:   the library path (sparse pair-force regression, {lib['seconds']:.1f} s): {lib['reason']}")
    elif lib is not None:
        print(f"  library:    {lib['formula']}   (not the answer: {lib['reason']})")
        if result.get("found_by") == "network":
            print("  found by:   the network path")
        else:
            print("              try --method auto or network")
    if result["recovered"] is not None and not result["recovered"] and result.get("summary"):
        print(f"              {result['summary']}")
    if result.get("search_formula"):
        by_library = result.get("found_by") == "library" or c.method == "library"
        label = "fitted:     g = " if by_library else "searched:   " if c.model == "hamiltonian" else "searched:   F = "
        print(f"  {label}{result['search_formula']}"
              + (f"   (snapped: {', '.join(result['snapped'])})" if result.get("snapped") else ""))
    for k, v in (result.get("comparison") or {}).items():
        print(f"  MAE {k:22s} network {v['network']:.4g}   formula {v['formula']:.4g}")
    print(f"  report: {result['report']}")
    return 0


def _demo(args) -> int:
    demo(args.out, seed=args.seed, progress=not args.quiet)
    return 0


def register(sub) -> None:
    from symdistill.simulate.commands import add_size_arg

    p = sub.add_parser("run", help="simulate -> train -> distill -> verify -> report (the main job)")
    law = p.add_mutually_exclusive_group()
    law.add_argument("--system", help="spring, r1, r2, charge, damped or discontinuous (default spring)")
    law.add_argument("--potential", help="pair potential in r, m1, m2, q1, q2, e.g. '(r-1)**2'")
    p.add_argument("--dim", type=int)
    p.add_argument("--n-bodies", type=int)
    p.add_argument("--n-sims", type=int)
    p.add_argument("--model", help="standard, bottleneck, l1, kl (default bottleneck), or hamiltonian (learns the "
                                   "energy: the pair potential and the kinetic energy are distilled)")
    p.add_argument("--edge-inputs", help="relative (default) or paper")
    p.add_argument("--time-budget", type=float,
                   help="cap on the seconds of training (default 300 in 2D, 600 in 3D): fewer steps if reached")
    p.add_argument("--sr-budget", type=float, help="cap on the seconds of the edge formula search (default 60)")
    p.add_argument("--seed", type=int)
    p.add_argument("--train-steps", type=int, help="training steps (default 1500 in 2D, 3000 in 3D)")
    p.add_argument("--sr-patience", type=int,
                   help="stop each search once its Pareto front has not improved for this many rounds of "
                        "10,000 evaluations (default: off; the evaluations stay the cap)")
    p.add_argument("--sr-evaluations", type=int,
                   help="evaluations of the edge search (default 100000; node searches: a quarter each)")
    p.add_argument("--method", help="auto (default: the library fit first, the network where it fails), "
                                    "library or network")
    p.add_argument("--library-term", action="append", metavar="TERM",
                   help="an extra candidate term of the pair law g(r, m1, m2, q1, q2), e.g. 'q1*q2*exp(-r)/r' "
                        "(repeatable; parsed as a formula, never run as code)")
    p.add_argument("--noise", type=float,
                   help="observe positions only, with Gaussian noise of this size relative to the position "
                        "scale (e.g. 0.01); accelerations are then estimated from them")
    p.add_argument("--device", help="training device: cpu (default), cuda, cuda:N, or auto (CUDA when present)")
    p.add_argument("--out", required=True, help="run folder")
    add_size_arg(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=_run)

    p = sub.add_parser("demo", help="simulate a small spring system and plot its trajectories")
    p.add_argument("--out", default="runs/demo-sim", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=_demo)
