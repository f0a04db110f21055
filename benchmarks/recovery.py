"""Recovery benchmark: `symdistill run` on every system in 2D and 3D, with `l1` and `bottleneck`,
beside an SR-only baseline that searches the raw accelerations directly (no network) with the same
engine and the same total search time.

    .venv/bin/python benchmarks/recovery.py --out runs/recovery           # all 24 cases (~45 min)
    .venv/bin/python benchmarks/recovery.py --systems spring --dims 2 --models l1
    .venv/bin/python benchmarks/recovery.py --out runs/sr-only --models      # the baseline alone

Prints one row per case and writes ``recovery.json`` in --out. The baseline's formula is a law
for a whole body (its acceleration from the positions, masses and charges of all others), so it
is judged by its relative error on held-out states: "exact" when below 1% (no pair law to verify).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from symdistill.distill.sr import SymbolicRegression, evaluate
from symdistill.io import write_json
from symdistill.pipeline import PipelineConfig, run_pipeline
from symdistill.simulate import SYSTEMS, simulate


def baseline_columns(pos, vel, mass, charge, dim, receiver=0):
    """Features of body ``receiver`` and of every other body, relative to it."""
    ax = "xyz"[:dim]
    cols = {"m0": mass[:, receiver], "q0": charge[:, receiver]}
    cols |= {f"v{a}0": vel[:, receiver, k] for k, a in enumerate(ax)}
    for j in range(pos.shape[1]):
        if j == receiver:
            continue
        d = pos[:, receiver] - pos[:, j]
        cols |= {f"d{a}{j}": d[:, k] for k, a in enumerate(ax)}
        cols[f"r{j}"] = np.linalg.norm(d, axis=1) + 0.01
        cols[f"m{j}"], cols[f"q{j}"] = mass[:, j], charge[:, j]
    return {k: v for k, v in cols.items() if np.ptp(v) > 0}


def sr_only(system, dim, n_bodies, budget, seed=0):
    """SR on raw accelerations (x component of body 0) from all bodies' features."""
    tr = simulate(system, n_sims=500, n_bodies=n_bodies, dim=dim, n_steps=20, seed=seed)
    te = simulate(system, n_sims=200, n_bodies=n_bodies, dim=dim, n_steps=20, seed=seed + 1)
    flat = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731
    rep = lambda a: np.repeat(a, 20, 0)  # noqa: E731
    X = baseline_columns(flat(tr.pos), flat(tr.vel), rep(tr.mass), rep(tr.charge), dim)
    Xt = baseline_columns(flat(te.pos), flat(te.vel), rep(te.mass), rep(te.charge), dim)
    y, yt = flat(tr.acc)[:, 0, 0], flat(te.acc)[:, 0, 0]
    t0 = time.perf_counter()
    sr = SymbolicRegression(time_budget=budget, seed=seed).fit(X, y, variable_names=list(X))
    pred = evaluate(sr.sympy(), Xt)
    rel = float(np.nanmean(np.abs(pred - yt)) / np.mean(np.abs(yt)))
    return {"formula": str(sr.sympy()), "relative_error": rel, "exact": bool(rel < 0.01),
            "seconds": time.perf_counter() - t0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/recovery")
    ap.add_argument("--systems", nargs="*", default=list(SYSTEMS))
    ap.add_argument("--dims", nargs="*", type=int, default=[2, 3])
    ap.add_argument("--models", nargs="*", default=["l1", "bottleneck"])
    ap.add_argument("--no-baseline", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    rows = []
    c0 = PipelineConfig()
    budget = c0.sr_budget + c0.dim * c0.node_budget  # the pipeline's total search time
    print(f"{'system':14s} {'dim':>3s} {'model':10s} {'recovered':>9s} {'R2':>15s} {'seconds':>7s} | "
          f"{'SR-only':>8s} {'rel.err':>8s} {'seconds':>7s}")
    for system in a.systems:
        for dim in a.dims:
            base = None if a.no_baseline else sr_only(system, dim, 4, budget)
            if not a.models and base:  # `--models` with no names: the baseline alone
                rows.append({"system": system, "dim": dim, "model": None, "recovered": None, "baseline": base})
                print(f"{system:14s} {dim:3d} {'-':10s} {'-':>9s} {'':>15s} {'':>7s} | {str(base['exact']):>8s} "
                      f"{base['relative_error']:8.3f} {base['seconds']:7.0f}", flush=True)
                write_json(out / "recovery.json", rows)
            for model in a.models:
                t0 = time.perf_counter()
                try:
                    r = run_pipeline(out / f"{system}-{dim}d-{model}",
                                     PipelineConfig(system=system, dim=dim, model=model),
                                     progress=False, log=lambda *x, **k: None)
                    err = None
                except Exception as e:  # a failed case is a result, not the end of the benchmark
                    r, err = {"recovered": False, "force_r2": None}, f"{type(e).__name__}: {e}"
                row = {"system": system, "dim": dim, "model": model, "recovered": r["recovered"],
                       "force_r2": r.get("force_r2"), "formula": r.get("formula"), "error": err,
                       "seconds": time.perf_counter() - t0, "baseline": base,
                       "comparison": r.get("comparison")}
                rows.append(row)
                r2 = "" if not row["force_r2"] else "/".join(f"{x:.3f}" for x in row["force_r2"][:3])
                b = base or {}
                print(f"{system:14s} {dim:3d} {model:10s} {str(row['recovered']):>9s} {r2:>15s} "
                      f"{row['seconds']:7.0f} | {str(b.get('exact', '-')):>8s} "
                      f"{b.get('relative_error', float('nan')):8.3f} {b.get('seconds', float('nan')):7.0f}",
                      flush=True)
                write_json(out / "recovery.json", rows)
    n = len(rows)
    print(f"recovered {sum(bool(r['recovered']) for r in rows)}/{n}; "
          f"SR-only exact {sum(bool(r['baseline'] and r['baseline']['exact']) for r in rows)}/{n}")


if __name__ == "__main__":
    main()
