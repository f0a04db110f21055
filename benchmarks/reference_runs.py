"""Reference runs for refactors: does a change alter any arithmetic? Run it on two commits and compare.

Three small runs on one thread (spring-2D ``l1``, r2-3D ``kl``, charge-2D ``bottleneck``: 60
simulations of 4 bodies x 50 steps, 2 epochs of a 3 x 32 network, then ``distill_run`` with 3,000
edge and 2,000 node evaluations). For each it records the SHA-256 of every weight tensor, the loss
per epoch, the searched scalar, the printed law, the node formulas and the force R^2.

    .venv/bin/python benchmarks/reference_runs.py --out /tmp/ref-new
    git worktree add /tmp/old 018a40d
    (cd /tmp/old && PYTHONPATH=src ../main/.venv/bin/python ../main/benchmarks/reference_runs.py --out /tmp/ref-old)
    .venv/bin/python benchmarks/reference_runs.py --compare /tmp/ref-old/ref.json /tmp/ref-new/ref.json

Issue 13 (docs/benchmarks.md): identical weights, losses and formulas; force R^2 equal to 15 digits.
About 15 s per commit on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

CASES = (("spring", 2, "l1"), ("r2", 3, "kl"), ("charge", 2, "bottleneck"))


def run(out: Path) -> dict:
    from symdistill.distill.session import DistillConfig, distill_run
    from symdistill.simulate import SimulationConfig, simulate_to_file
    from symdistill.train import RunConfig, load_run, train

    out.mkdir(parents=True, exist_ok=True)
    result = {}
    quiet = lambda *a, **k: None  # noqa: E731
    for system, dim, variant in CASES:
        data = out / f"{system}{dim}.h5"
        if not data.exists():
            simulate_to_file(data, system, config=SimulationConfig(dim=dim, n_sims=60, n_bodies=4, n_steps=50, seed=1))
        cfg = RunConfig().replace(**{"data.path": str(data), "model.variant": variant, "model.hidden": 32,
                                     "model.message_dim": 16, "train.epochs": 2, "train.batch_size": 64,
                                     "train.threads": 1})
        folder = out / f"run-{system}{dim}-{variant}"
        train(cfg, folder, progress=False, log=quiet)
        loaded = load_run(folder)
        weights = hashlib.sha256(b"".join(v.numpy().tobytes() for v in loaded.model.state_dict().values())).hexdigest()
        d = distill_run(folder, DistillConfig(sr_evaluations=3000, node_evaluations=2000, max_edges=3000,
                                              max_graphs=300, refit_steps=20), log=quiet)
        result[folder.name] = {"weights": weights, "history": [row["train_loss"] for row in loaded.history],
                               "formula": d.get("formula"), "search": d["search"]["scalar"],
                               "node": d["node_formulas"], "force_r2": d["force_r2"]}
    (out / "ref.json").write_text(json.dumps(result, indent=1))
    return result


def compare(a: dict, b: dict) -> bool:
    same = True
    for case in a:
        for key in a[case]:
            x, y = a[case][key], b.get(case, {}).get(key)
            if key == "force_r2" and x is not None and y is not None:
                diff = max(abs(p - q) for p, q in zip(x, y))
                print(f"{case:26s} {key:9s} largest difference {diff:.1e}")
                continue
            print(f"{case:26s} {key:9s} {'same' if x == y else f'DIFFERENT: {x} vs {y}'}")
            same &= x == y
    return same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="folder for the data, the runs and ref.json")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"), help="two ref.json files")
    args = ap.parse_args()
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        return 0 if compare(a, b) else 1
    if not args.out:
        ap.error("give --out FOLDER (to run) or --compare OLD NEW")
    print(json.dumps(run(args.out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
