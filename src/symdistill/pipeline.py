"""End-to-end commands. ``demo``: the self-contained main job on built-in data.

For now the demo simulates a small spring system, prints its summary and writes a trajectory plot;
it grows into the full simulate -> train -> distill pipeline.
"""

from __future__ import annotations

import time
from pathlib import Path

from symdistill.io import write_json
from symdistill.report.trajectories import plot_trajectories
from symdistill.simulate import SimulationConfig, open_dataset, simulate_to_file
from symdistill.versions import versions


def demo(out, *, seed: int = 0, progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
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


def _demo(args) -> int:
    demo(args.out, seed=args.seed, progress=not args.quiet)
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job on built-in data (a small spring system)")
    p.add_argument("--out", default="runs/demo", help="run folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=_demo)
