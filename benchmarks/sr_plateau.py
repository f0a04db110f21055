"""Plateau stopping against the fixed evaluation budget, on trained development runs: is distillation
faster without losing an exact law?

    nice -n 19 .venv/bin/python benchmarks/sr_plateau.py                       # 4 cases, patience 2
    nice -n 19 .venv/bin/python benchmarks/sr_plateau.py --patience 2 3 --round 5000 10000 --seeds 0 1 2

Each case's trained run folder ``runs/recovery/<case>/train`` is copied to a temporary folder (distill
writes into its run folder; the recovery runs stay untouched) and distilled with ``sr_patience=None``
(today: every search to its evaluation budget) and with each (patience, round size), alternating in
one process so that both see the same machine load; ``--seeds`` repeats it with other distillation
seeds (the SR seeds and the sampled graphs and edges). Per distillation it prints the strict verdict,
the printed law, the seconds of the edge and node searches (wall, from ``stage_seconds``; and the CPU
seconds of the SR fits, which another process on the machine disturbs less), the evaluations used and
the rounds run (edge + node searches); then per case and setting the ratio of search seconds against
the fixed budget. Development laws only (the held-out laws stay unseen).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from symdistill.distill import sr as sr_module
from symdistill.distill.session import DistillConfig, distill_run

ROOT = Path(__file__).resolve().parents[1]
CASES = ("spring-2d-bottleneck", "r2-3d-bottleneck", "charge-3d-bottleneck", "r1-2d-bottleneck")
_fit = sr_module.SymbolicRegression.fit
CPU: list[float] = []


def timed_fit(self, *args, **kwargs):
    """SymbolicRegression.fit, adding its CPU seconds to CPU."""
    t = time.process_time()
    out = _fit(self, *args, **kwargs)
    CPU.append(time.process_time() - t)
    return out


def distil(case: str, config: DistillConfig) -> dict:
    CPU.clear()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "train"
        shutil.copytree(ROOT / "runs" / "recovery" / case / "train", run)
        r = distill_run(run, config, log=lambda *a, **k: None)
    runs = r["search_runs"]["edge"] + r["search_runs"]["node"]
    return dict(case=case, seed=config.seed, patience=config.sr_patience,
                round=config.sr_round_evaluations if config.sr_patience else None,
                exact=r["recovered"], formula=r["formula"],
                wall=r["stage_seconds"]["edge search"] + r["stage_seconds"]["node search"], cpu=sum(CPU),
                evaluations=sum(s["evaluations"] or 0 for s in runs),
                rounds="+".join(str(s["rounds"]) for s in runs),
                stopped="/".join(sorted({s["stopped"] or "?" for s in runs})))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=list(CASES))
    p.add_argument("--patience", nargs="+", type=int, default=[2])
    p.add_argument("--round", nargs="+", type=int, default=[10_000], help="evaluations per round")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--json", help="also write the rows to this file")
    a = p.parse_args()
    os.chdir(ROOT)  # the run configs name their data files relative to the repository
    sr_module.SymbolicRegression.fit = timed_fit
    settings = [(None, None)] + [(k, n) for k in a.patience for n in a.round]
    rows = []
    print(f"{'case':22} {'seed':>4} {'patience':>8} {'round':>6} {'exact':>5} {'search s':>8} {'cpu s':>6} "
          f"{'evals':>7} {'rounds':>12} {'stopped':>20}  law")
    for case in a.cases:
        for seed in a.seeds:
            for patience, size in settings:
                plateau = {} if patience is None else dict(sr_patience=patience, sr_round_evaluations=size)
                row = distil(case, DistillConfig(seed=seed, **plateau))
                rows.append(row)
                print(f"{case:22} {seed:4d} {str(patience):>8} {str(size or '-'):>6} {str(row['exact']):>5} "
                      f"{row['wall']:8.1f} {row['cpu']:6.1f} {row['evaluations']:7d} {row['rounds']:>12} "
                      f"{row['stopped']:>20}  {row['formula']}", flush=True)
    print("\nratio of search seconds, plateau / fixed (summed over seeds), and exact laws")
    for case in [*a.cases, "all"]:
        fixed = [r for r in rows if case in ("all", r["case"]) and r["patience"] is None]
        for patience, size in settings[1:]:
            mine = [r for r in rows if case in ("all", r["case"])
                    and (r["patience"], r["round"]) == (patience, size)]
            wall = sum(r["wall"] for r in mine) / sum(r["wall"] for r in fixed)
            cpu = sum(r["cpu"] for r in mine) / sum(r["cpu"] for r in fixed)
            print(f"{case:22} patience {patience} round {size:>6}: wall {wall:.2f}, cpu {cpu:.2f}; exact "
                  f"{sum(bool(r['exact']) for r in mine)}/{len(mine)} (fixed "
                  f"{sum(bool(r['exact']) for r in fixed)}/{len(fixed)})")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
