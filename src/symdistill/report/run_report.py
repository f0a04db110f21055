"""The report of a run folder: training, messages vs forces, Pareto fronts, discovered vs true law,
network vs formula in and out of distribution. Markdown + self-contained HTML + PNG figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from symdistill.report import figures
from symdistill.report.page import Report
from symdistill.train.metrics import BULK_LEFT_OUT


def _history(run: Path) -> dict[str, list[float]]:
    path = run / "history.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    out: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            try:
                out.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                pass
    return out


def write_report(run_dir) -> tuple[Path, Path]:
    run = Path(run_dir)
    figs = run / "figures"
    d = json.loads((run / "distill.json").read_text()) if (run / "distill.json").exists() else None
    rep = Report(f"symdistill run: {run.name}")
    if d is not None:
        rep.heading("Discovered law")
        search = d.get("search") or {}
        rows = [["discovered (final: refitted on raw data, constants snapped)", d["formula"]],
                ["truth", d.get("truth") or "unknown"]]
        if search.get("formula"):
            rows.append(["as searched, before the refit", f"F = {search['formula']}"])
        rep.table(["", "force on the receiver (r̂: unit vector from sender to receiver)"], rows)
        verdict = d.get("verification") or {}
        if d.get("recovered") is not None:
            fits = "it fits the data" if d.get("fits") else "it does not fit the data"
            rep.text(f"Verdict on the final law: {'exact' if d['recovered'] else 'not exact'} ({fits}). "
                     f"{verdict.get('summary', '')}")
        if d.get("data_use"):
            rep.text(f"Data: {d['data_use']}.")
        rep.code("\n".join(f"phi_{k} = {e}" for k, e in enumerate(d["edge_formulas"]))
                 + "\n" + "\n".join(f"a_{k} = {e}" for k, e in enumerate(d["node_formulas"])))
    hist = _history(run)
    if hist:
        rep.heading("Training")
        key = next((k for k in hist if "active" in k), None)
        rep.figure(figures.training_curves(hist, figs / "training.png", sparsity_key=key),
                   "losses per epoch and active message components")
    if d is not None:
        rep.heading("Messages against forces")
        if d.get("force_r2") is not None:
            rep.text("R² of each top message component fitted by an affine function of the true forces: "
                     + ", ".join(f"{x:.4f}" for x in d["force_r2"])
                     + ("" if d.get("force_r2_bulk") is None else f"; without {BULK_LEFT_OUT} "
                        "(near-collisions): " + ", ".join(f"{x:.4f}" for x in d["force_r2_bulk"])))
        if (run / "messages.npz").exists():
            with np.load(run / "messages.npz", allow_pickle=False) as z:
                msgs, forces = z["messages"], z["forces"]
            design = np.column_stack([forces, np.ones(len(forces))])
            coef, *_ = np.linalg.lstsq(design, msgs, rcond=None)
            rep.figure(figures.messages_vs_forces(msgs, design @ coef, d["force_r2"] or [np.nan] * msgs.shape[1],
                                                  figs / "messages_vs_forces.png"),
                       "top messages against the best linear combination of true forces")
        rep.heading("Pareto fronts")
        for k, table in enumerate(d.get("pareto", [])):
            if not table:
                continue
            sel = next((i for i, row in enumerate(table) if row.get("selected")), None)
            rep.figure(figures.pareto_front([row["complexity"] for row in table], [row["loss"] for row in table],
                                            sel, figs / f"pareto_{k}.png", title=f"edge search {k}"),
                       f"edge search {k}: the paper's rule selects "
                       f"{table[sel]['equation'] if sel is not None else '-'}")
        selection = d.get("selection")
        if selection:
            tolerance = selection.get("tolerance", 1.1)  # distill.json files before it was recorded used 1.1
            rep.text("Chosen by the refitted error of the composed symbolic model on held-out raw data "
                     f"(the simplest within {tolerance:g}x of the lowest):")
            rep.table(["complexity", "g(r, m, q)", "held-out MAE", "paper's rule", "chosen"],
                      [[c["complexity"], c["scalar"], "failed" if c["held_out_mae"] is None else c["held_out_mae"], "yes" if c["paper_rule"] else "",
                        "yes" if k == selection["chosen"] else ""] for k, c in enumerate(selection["candidates"])])
        rep.heading("Network vs formula")
        comp = d.get("comparison", {})
        rep.table(["data", "network MAE", "formula MAE"],
                  [[k, v["network"], v["formula"]] for k, v in comp.items()])
        if comp:
            rep.figure(figures.error_comparison(comp, figs / "network_vs_formula.png"),
                       "mean absolute error of accelerations, in and out of distribution")
    return rep.write(run)
