"""Recovery benchmark: `symdistill run` with its defaults on the development laws (the paper's six
systems, 2D and 3D) and on the held-out laws (:mod:`symdistill.simulate.catalogue`), beside two
baselines, all judged by the same strict verdict on the printed law.

    .venv/bin/python benchmarks/recovery.py --out runs/recovery                 # everything
    .venv/bin/python benchmarks/recovery.py --set held-out --models l1
    .venv/bin/python benchmarks/recovery.py --cases spring-2d r2-3d --models bottleneck
    .venv/bin/python benchmarks/recovery.py --models --out runs/baselines      # the baselines alone

Baselines (no network):
- ``sparse``: sparse regression of m_i a_i = sum_j g u_ij over a fixed library of 40 central pair
  terms (:mod:`symdistill.baselines.sparse`): the same central-force prior as the structured
  search, judged by ``verify`` (exact / fits) like our final law;
- ``sr-only``: the paper's SR-only baseline, operon on body 0's raw x acceleration from all bodies'
  features with the pipeline's search evaluations; a whole-body formula, not a pair law, so it is
  judged by its relative error on held-out states ("exact" would need < 1e-6: it never is).

Prints one row per case and writes ``recovery.json`` and ``recovery.md`` in --out.

The map of methods (issue 11): ``--map`` runs `symdistill run` with ``--method library``,
``network`` and ``auto`` on every chosen case at every ``--noise`` level (positions observed with
that relative noise, accelerations estimated from them; 0: exact accelerations) and writes
``map.json`` / ``map.md``:

    .venv/bin/python benchmarks/recovery.py --map --noise 0 0.01 0.05 --out runs/map
    .venv/bin/python benchmarks/recovery.py --map --noise 0 0.01 0.05 --network-from runs/recovery \
        --network-cases spring-2d damped-2d discontinuous-2d mass-spring-2d anharmonic-2d --out runs/map

All three methods of a (case, noise) cell read the same simulated files (simulated once; their
seconds are reported apart and left out of every method's time). ``auto`` is run for real where
the library explains the data; where it does not, ``auto`` is its library leg followed by exactly
the network run (same data, seed and counted steps/evaluations), so its row is the library run's
verdict + the network run's result and the sum of their times, not a second training
(``--real-auto`` runs it anyway).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from symdistill.baselines import fit_law
from symdistill.distill.session import DistillConfig
from symdistill.distill.sr import SymbolicRegression, evaluate
from symdistill.distill.verify import verify
from symdistill.io import write_json, write_text
from symdistill.pipeline import PipelineConfig, run_pipeline, simulate_data
from symdistill.simulate import simulate
from symdistill.simulate.catalogue import SETS, Case


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


def sr_only(case: Case, evaluations: int, seed: int = 0) -> dict:
    """SR on raw accelerations (x component of body 0) from all bodies' features."""
    law = case.law()
    tr = simulate(law, n_sims=500, n_bodies=4, dim=case.dim, n_steps=20, seed=seed)
    te = simulate(law, n_sims=200, n_bodies=4, dim=case.dim, n_steps=20, seed=seed + 1)
    flat = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731
    rep = lambda a: np.repeat(a, 20, 0)  # noqa: E731
    X = baseline_columns(flat(tr.pos), flat(tr.vel), rep(tr.mass), rep(tr.charge), case.dim)
    Xt = baseline_columns(flat(te.pos), flat(te.vel), rep(te.mass), rep(te.charge), case.dim)
    y, yt = flat(tr.acc)[:, 0, 0], flat(te.acc)[:, 0, 0]
    t0 = time.perf_counter()
    sr = SymbolicRegression(time_budget=600, max_evaluations=evaluations, seed=seed).fit(X, y, variable_names=list(X))
    pred = evaluate(sr.sympy(), Xt)
    rel = float(np.nanmean(np.abs(pred - yt)) / np.mean(np.abs(yt)))
    return {"formula": str(sr.sympy()), "relative_error": rel, "exact": bool(rel < 1e-6),
            "seconds": time.perf_counter() - t0}


def sparse(case: Case, seed: int = 0) -> dict:
    """The sparse pair-regression baseline, judged by the strict verdict."""
    model, seconds = fit_law(case.law(), case.dim, seed=seed)
    v = verify(model.force_formulas(case.dim), case.law(), case.dim, scalar=model.scalar_)
    return {"formula": str(model.scalar_), "exact": v.exact, "fits": v.fits, "seconds": seconds,
            "summary": v.summary()}


def network(case: Case, model: str, out: Path) -> dict:
    """`symdistill run --method network` with its defaults (the network path alone, never the library)."""
    t0 = time.perf_counter()
    config = PipelineConfig(system=case.system, potential=case.potential, dim=case.dim, model=model,
                            method="network")
    try:
        r = run_pipeline(out / f"{case.name}-{model}", config, progress=False, log=lambda *x, **k: None)
        err = None
    except Exception as e:  # a failed case is a result, not the end of the benchmark
        r, err = {}, f"{type(e).__name__}: {e}"
    return {"exact": bool(r.get("recovered")), "fits": r.get("fits"), "formula": r.get("formula"),
            "search_formula": r.get("search_formula"), "force_r2": r.get("force_r2"), "error": err,
            "seconds": time.perf_counter() - t0, "comparison": r.get("comparison")}


def _noise_tag(noise: float) -> str:
    return "exact" if noise == 0 else f"noise{noise:g}"


def map_cell(case: Case, noise: float, out: Path, *, real_auto: bool = False, model: str | None = None,
             network_row: dict | None = None, run_network: bool = True) -> dict:
    """One (case, noise) cell of the map: library, network and auto, on shared data. ``network_row``:
    a network result measured before on the same data and defaults (``--network-from``), used instead
    of a new run; ``run_network`` False: the network column is "not run"."""
    import os

    tag = f"{case.name}-{_noise_tag(noise)}"
    base = dict(system=case.system, potential=case.potential, dim=case.dim, noise=None if noise == 0 else noise,
                **({"model": model} if model else {}))
    data = out / "data" / tag
    t0 = time.perf_counter()
    simulate_data(PipelineConfig(**base), data)  # once, with the pipeline's own sizes and seeds
    simulate_seconds = time.perf_counter() - t0
    cell = {"case": case.name, "dim": case.dim, "noise": noise, "simulate_seconds": simulate_seconds}

    def one(method: str) -> dict:
        folder = out / f"{tag}-{method}"
        if (folder / "result.json").exists():
            import json

            r = json.loads((folder / "result.json").read_text())
            return {"exact": bool(r.get("recovered")), "found_by": r.get("found_by"), "formula": r.get("formula"),
                    "seconds": r.get("seconds"), "error": None, "reused": True}
        (folder / "data").mkdir(parents=True, exist_ok=True)
        for f in ("train.h5", "test.h5"):
            if not (folder / "data" / f).exists():
                os.link(data / f, folder / "data" / f)
        try:
            r = run_pipeline(folder, PipelineConfig(**base, method=method), progress=False, log=lambda *x, **k: None)
            err = None
        except Exception as e:  # noqa: BLE001 - a failed case is a result, not the end of the benchmark
            r, err = {}, f"{type(e).__name__}: {e}"
        return {"exact": bool(r.get("recovered")), "found_by": r.get("found_by"), "formula": r.get("formula"),
                "seconds": r.get("seconds"), "error": err,
                "library_reason": (r.get("library") or {}).get("reason")}

    cell["library"] = one("library")
    if network_row is not None:
        # (not corrected by this map's own simulation time, measured under a different load)
        cell["network"] = {**network_row, "reused_from": "--network-from"}
    elif run_network:
        cell["network"] = one("network")
    else:
        cell["network"] = {"exact": False, "not_run": True, "seconds": None, "formula": None, "error": None}
    lib_explains = cell["library"]["found_by"] == "library"
    if lib_explains or real_auto:
        cell["auto"] = one("auto")
    elif cell["network"].get("not_run"):
        cell["auto"] = {"exact": False, "not_run": True, "seconds": None, "formula": None, "error": None}
    else:
        lib, net = cell["library"], cell["network"]
        cell["auto"] = {"exact": net["exact"], "found_by": "network", "formula": net["formula"],
                        "seconds": (lib["seconds"] or 0) + (net["seconds"] or 0), "error": net["error"],
                        "composed": True}
    return cell


def map_markdown(cells: list[dict]) -> str:
    lines = ["| case | noise | library | s | network | s | auto | s | auto's law |", "|---|---|---|---|---|---|---|---|---|"]
    yes = lambda r: ("not run" if r.get("not_run") else "exact" if r["exact"]  # noqa: E731
                     else "error" if r.get("error") else "no")
    for c in cells:
        lib, net, auto = c["library"], c["network"], c["auto"]
        sec = lambda r: "" if r.get("seconds") is None else f"{r['seconds']:.0f}"  # noqa: E731
        lines.append(f"| {c['case']} | {c['noise']:g} | {yes(lib)} | {sec(lib)} | {yes(net)} | {sec(net)} | "
                     f"{yes(auto)} ({auto.get('found_by') or '-'}{', composed' if auto.get('composed') else ''}) | "
                     f"{sec(auto)} | `{auto.get('formula')}` |")
    lines += ["", "| noise | library exact | network exact | auto exact | cells |", "|---|---|---|---|---|"]
    for noise in sorted({c["noise"] for c in cells}):
        sel = [c for c in cells if c["noise"] == noise]
        count = lambda m: sum(c[m]["exact"] for c in sel)  # noqa: E731
        lines.append(f"| {noise:g} | {count('library')} | {count('network')} | {count('auto')} | {len(sel)} |")
    return "\n".join(lines) + "\n"


def run_map(a) -> None:
    out = Path(a.out)
    sets = ["development", "held-out"] if a.set == "all" else [a.set]
    cases = [c for name in sets for c in SETS[name] if not a.cases or c.name in a.cases]
    previous = {}
    if a.network_from:
        import json

        for r in json.loads((Path(a.network_from) / "recovery.json").read_text()):
            if r.get("model") == PipelineConfig().model and r.get("network"):
                n = r["network"]
                record = Path(a.network_from) / f"{r['case']}-{r['model']}" / "pipeline.json"
                # its seconds were end to end: its simulation is left out, as for the other columns,
                # where pipeline.json recorded it (newer runs); otherwise the row says it is included
                sim = (json.loads(record.read_text()).get("stage_seconds") or {}).get("simulate")
                previous[r["case"]] = {"exact": n["exact"], "found_by": "network", "formula": n["formula"],
                                       "seconds": n["seconds"] - (sim or 0.0), "error": n.get("error"),
                                       "includes_simulation": sim is None}
    cells = []
    print(f"{'case':18s} {'noise':>6s} | {'library':>7s} {'s':>4s} | {'network':>7s} {'s':>4s} | {'auto':>7s} {'s':>4s}")
    for noise in a.noise:
        for case in cases:
            c = map_cell(case, noise, out, real_auto=a.real_auto,
                         network_row=previous.get(case.name) if noise == 0 else None,
                         run_network=noise == 0 or not a.network_cases or case.name in a.network_cases)
            cells.append(c)
            row = " | ".join(f"{('-' if c[m].get('not_run') else 'exact' if c[m]['exact'] else 'no'):>7s} "
                             f"{c[m]['seconds'] or float('nan'):4.0f}"
                             for m in ("library", "network", "auto"))
            print(f"{case.name:18s} {noise:6g} | {row}   {c['auto'].get('formula')}", flush=True)
            write_json(out / "map.json", cells)
            write_text(out / "map.md", map_markdown(cells))


def _cell(row: dict | None) -> str:
    if not row:
        return "-"
    return "exact" if row["exact"] else ("fits" if row.get("fits") else "no")


def markdown(rows: list[dict]) -> str:
    lines = ["| set | case | model | ours | s | printed law | sparse | sparse law | SR-only rel. err. |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        net, sp_, so = r.get("network") or {}, r.get("sparse") or {}, r.get("sr_only") or {}
        seconds = f"{net['seconds']:.0f}" if net else ""
        law = f"`{net.get('formula')}`" if net else ""
        sparse_law = f"`{sp_['formula']}`" if sp_ else ""
        rel = f"{so['relative_error']:.3g}" if so else ""
        lines.append(f"| {r['set']} | {r['case']} | {r['model'] or '-'} | {_cell(net)} | {seconds} | {law} | "
                     f"{_cell(sp_)} | {sparse_law} | {rel} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/recovery")
    ap.add_argument("--set", choices=["development", "held-out", "all"], default="all")
    ap.add_argument("--cases", nargs="*", help="case names (e.g. spring-2d yukawa-2d); default: the whole set")
    ap.add_argument("--models", nargs="*", default=["l1", "bottleneck"])
    ap.add_argument("--held-out-models", nargs="*", default=[PipelineConfig().model],
                    help="models run on the held-out set (default: the pipeline's default model)")
    ap.add_argument("--baselines", nargs="*", default=["sparse", "sr-only"])
    ap.add_argument("--map", action="store_true", help="the map of methods (library, network, auto) by noise")
    ap.add_argument("--noise", nargs="*", type=float, default=[0.0, 0.01, 0.05],
                    help="--map: relative position noise levels (0: exact accelerations)")
    ap.add_argument("--network-from", help="--map: take the network column at noise 0 from this folder's "
                                           "recovery.json (same defaults), instead of running it again")
    ap.add_argument("--network-cases", nargs="*",
                    help="--map: at noise > 0 run the network only on these cases (others: not run)")
    ap.add_argument("--real-auto", action="store_true", help="--map: run auto for real even where it is composed")
    a = ap.parse_args()
    if a.map:
        run_map(a)
        return
    out = Path(a.out)
    sets = ["development", "held-out"] if a.set == "all" else [a.set]
    evaluations = DistillConfig().sr_evaluations
    rows = []
    print(f"{'set':11s} {'case':18s} {'model':10s} {'ours':>5s} {'s':>4s} | {'sparse':>6s} | {'SR-only':>8s}  printed law")
    for name in sets:
        for case in SETS[name]:
            if a.cases and case.name not in a.cases:
                continue
            base = {"sparse": sparse(case) if "sparse" in a.baselines else None,
                    "sr_only": sr_only(case, evaluations) if "sr-only" in a.baselines else None}
            models = a.models if name == "development" else a.held_out_models
            for model in models or [None]:
                net = network(case, model, out) if model else None
                row = {"set": name, "case": case.name, "dim": case.dim, "model": model, "network": net, **base}
                rows.append(row)
                so = base["sr_only"]
                print(f"{name:11s} {case.name:18s} {model or '-':10s} {_cell(net):>5s} "
                      f"{net['seconds'] if net else float('nan'):4.0f} | {_cell(base['sparse']):>6s} | "
                      f"{so['relative_error'] if so else float('nan'):8.3g}  {(net or {}).get('formula') or ''}", flush=True)
                write_json(out / "recovery.json", rows)
                write_text(out / "recovery.md", markdown(rows))
    for name in sets:
        for model in sorted({r["model"] for r in rows if r["set"] == name and r["model"]}):
            sel = [r for r in rows if r["set"] == name and r["model"] == model]
            print(f"{name} {model}: exact {sum(r['network']['exact'] for r in sel)}/{len(sel)}")
        cases = {r["case"]: r for r in rows if r["set"] == name}.values()
        if "sparse" in a.baselines:
            print(f"{name} sparse baseline: exact {sum(r['sparse']['exact'] for r in cases)}/{len(cases)}")


if __name__ == "__main__":
    main()
