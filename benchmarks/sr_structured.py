"""Structured vs plain SR on synthetic messages A F + b (no network), and verification.

    .venv/bin/python benchmarks/sr_structured.py 5 0,1,2     # budget (s), seeds; ~12 min

Prints one JSON line per case: the scalar law found and whether `verify` accepts each search.
"""
import json, sys, time

import numpy as np

from symdistill.distill import SymbolicRegression, force_dataset, plain_search, structured_search, verify

budget = float(sys.argv[1]) if len(sys.argv) > 1 else 5
seeds = [int(s) for s in sys.argv[2].split(",")] if len(sys.argv) > 2 else [0]
for seed in seeds:
    for law in ("spring", "r1", "r2", "charge", "discontinuous"):
        for dim in (2, 3):
            s, F = force_dataset(law, dim, 3000, seed=seed)
            rng = np.random.default_rng(seed + 100)
            A, b = rng.normal(size=(dim, dim)), rng.normal(size=dim)
            Y = F @ A.T + b
            sr = SymbolicRegression(time_budget=budget, seed=seed)
            t = time.perf_counter(); res = structured_search(s, Y, dim, sr); ts = time.perf_counter() - t
            t = time.perf_counter(); fits = plain_search(s, Y, dim, sr); tp = time.perf_counter() - t
            print(json.dumps(dict(
                seed=seed, law=law, dim=dim, scalar=str(res.scalar), threshold=res.threshold,
                structured=verify(res.expressions, law, dim).recovered, structured_s=round(ts, 1),
                plain=verify([f.sympy() for f in fits], law, dim).recovered, plain_s=round(tp, 1))), flush=True)
