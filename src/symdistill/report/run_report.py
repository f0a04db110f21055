"""The report of a run folder: the verdict and the run's facts, the law drawn, training curves,
messages vs forces, Pareto fronts, network vs formula in and out of distribution.
Markdown + one self-contained HTML page + PNG figures, each figure captioned with what to look for."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from symdistill.errors import SymdistillError
from symdistill.expr import INTERNAL_LIMITS, parse_formula
from symdistill.io import read_json
from symdistill.report import figures
from symdistill.report.energy_report import energy_sections
from symdistill.report.header import RunFacts, run_facts, title, write_header
from symdistill.report.law_figure import VARIABLES, law_figure
from symdistill.report.page import Report
from symdistill.train.metrics import BULK_LEFT_OUT

STEP_HISTORY = "history_steps.csv"  # symdistill.train.loop.STEP_HISTORY (not imported: report reads files only)


def read_csv_columns(path: Path) -> dict[str, list]:
    """Columns of a history file: numbers as floats, ``force_r2`` as one list of floats per row."""
    if not path.exists():
        return {}
    try:
        with path.open() as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error):
        return {}  # a damaged history: the report goes without its curves
    out: dict[str, list] = {}
    for row in rows:
        for k, v in row.items():
            try:
                out.setdefault(k, []).append([float(x) for x in v.split()] if k == "force_r2" else float(v))
            except (TypeError, ValueError, AttributeError):
                return {}  # a damaged history: the report goes without its curves
    return out


def write_report(run_dir, out=None) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``figures/`` for the run in ``run_dir`` into ``out``
    (default: the run folder itself); returns the paths of the two pages."""
    run = Path(run_dir)
    out = run if out is None else Path(out)
    figs = out / "figures"
    d = read_json(run / "distill.json", "distillation") if (run / "distill.json").exists() else None
    hist = read_csv_columns(run / "history.csv")
    facts = run_facts(run, d, hist)
    rep = Report(title(facts, d))
    write_header(rep, facts, d)
    energy = d is not None and d.get("model") == "hamiltonian"
    if d is not None and not energy:
        _law_section(rep, run, d, facts, figs)
    if hist:
        _training_section(rep, hist, read_csv_columns(run / STEP_HISTORY), figs)
    if energy:
        energy_sections(rep, run, d, facts.law, figs)
        _comparison_section(rep, d, figs)
    elif d is not None:
        _messages_section(rep, run, d, figs)
        _pareto_section(rep, d, figs)
        _comparison_section(rep, d, figs)
        _formulas_section(rep, d)
    return rep.write(out)


def _discovered_scalar(d: dict):
    """The final g (constant included) as sympy, else the searched one, else None."""
    final, search = d.get("final") or {}, d.get("search") or {}
    text = final.get("scalar") or search.get("scalar")
    if not text:
        return None
    expr = parse_formula(text, VARIABLES, what="discovered law", limits=INTERNAL_LIMITS)
    return expr * float(final["k"]) if final.get("scalar") and final.get("k") is not None else expr


def _law_section(rep: Report, run: Path, d: dict, facts: RunFacts, figs: Path) -> None:
    rep.heading("The law")
    search = d.get("search") or {}
    rows = [["discovered (refitted on raw data, constants snapped)", d["formula"]], ["truth", d.get("truth") or "unknown"]]
    if search.get("formula"):
        rows.append(["as searched, before the refit", f"F = {search['formula']}"])
    if d.get("threshold") is not None:
        rows.append(["threshold found on r", f"{d['threshold']:.4g}"])
    rep.table(["", "force on the receiver (r̂: unit vector from sender to receiver)"], rows)
    if d.get("data_use"):
        rep.text(f"Data: {d['data_use']}.")
    samples = _edge_sample(run)
    g_expr = _discovered_scalar(d)
    if samples is None or g_expr is None or not np.isfinite(samples.get("g", np.nan)).any():
        rep.text("No figure of g(r): the recorded messages hold no scalar g (a messages.npz written before "
                 "it was recorded, or a search without a common map); re-run `symdistill distill --run RUN`.")
        return
    truth = facts.law.force_magnitude_expr() if facts.law is not None and facts.law.has_truth else None
    try:
        path = law_figure(samples, g_expr, truth, figs / "law.png", threshold=d.get("threshold"))
    except (ValueError, SymdistillError) as e:
        rep.text(f"No figure of g(r): {e}.")
        return
    laws = "discovered (solid) and true (dashed) laws, each" if truth is not None else "discovered law (solid)"
    rep.figure(path, f"The scalar force g(r) read off the messages (dots, coloured by the pair product) and the {laws} "
               "times one least-squares factor (the messages fix g only up to a constant); grey: beyond the "
               "training data" + ("; dotted: the threshold" if d.get("threshold") is not None else "")
               + ". Look for: the curves on the dots" + (" and on each other past the data" if truth is not None else "")
               + ", and residuals without structure in r.")


def _edge_sample(run: Path) -> dict | None:
    path = run / "messages.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays if "r" in arrays and "g" in arrays else None


def _training_section(rep: Report, hist: dict, steps: dict, figs: Path) -> None:
    rep.heading("Training")
    every = "" if len(steps.get("step", [])) < 2 else f" (training loss every {steps['step'][1] - steps['step'][0]:g} steps)"
    last = hist.get("force_r2", [[]])[-1]
    heavy = bool(last) and min(last) < 0.9  # R² over all edges: a few near-collisions can dominate it
    rep.figure(figures.training_curves(hist, figs / "training.png", steps=steps or None),
               f"Loss, active message components and 1 − R² of messages vs forces against the step{every}. "
               "Look for: the loss levelling off, the active components settling at the dimension, "
               "1 − R² falling by orders of magnitude"
               + (" (here R² over all edges is dominated by near-collisions: see the bulk R² below)." if heavy else "."))


def _messages_section(rep: Report, run: Path, d: dict, figs: Path) -> None:
    rep.heading("Messages against forces")
    if d.get("force_r2") is not None:
        rep.text("R² of each top message component fitted by an affine function of the true forces: "
                 + ", ".join(f"{x:.4f}" for x in d["force_r2"])
                 + ("" if d.get("force_r2_bulk") is None else f"; without {BULK_LEFT_OUT} "
                    "(near-collisions): " + ", ".join(f"{x:.4f}" for x in d["force_r2_bulk"])))
    if not (run / "messages.npz").exists():
        return
    with np.load(run / "messages.npz", allow_pickle=False) as z:
        if "forces" not in z.files:
            rep.text("The law is unknown, so there are no true forces to compare the messages with.")
            return
        msgs, forces = z["messages"], z["forces"]
    design = np.column_stack([forces, np.ones(len(forces))])
    coef, *_ = np.linalg.lstsq(design, msgs, rcond=None)
    r2 = d.get("force_r2") or [np.nan] * msgs.shape[1]
    rep.figure(figures.messages_vs_forces(msgs, design @ coef, r2, figs / "messages_vs_forces.png"),
               "Each top message component against its best affine fit by the true pair force. "
               "Look for: points on the diagonal, i.e. the messages are a linear map of the force.")


def _pareto_section(rep: Report, d: dict, figs: Path) -> None:
    tables = [t for t in d.get("pareto", []) if t]
    selection = d.get("selection")
    if not tables and not selection:
        return
    rep.heading("Pareto fronts")
    chosen = None
    if selection:
        chosen = selection["candidates"][selection["chosen"]]["complexity"]
    sides = ([f"r < {d['threshold']:.4g}", f"r ≥ {d['threshold']:.4g}"]
             if d.get("threshold") is not None and len(tables) == 2 else [None] * len(tables))
    for k, table in enumerate(tables):
        sel = next((i for i, row in enumerate(table) if row.get("selected")), None)
        star = next((i for i, row in enumerate(table) if row["complexity"] == chosen), None) if len(tables) == 1 else None
        name = f"edge search {k}" + (f" ({sides[k]})" if sides[k] else "")
        rep.figure(figures.pareto_front([row["complexity"] for row in table], [row["loss"] for row in table],
                                        sel, figs / f"pareto_{k}.png", title=name, chosen=star),
                   f"{name.capitalize()}: loss on the messages against complexity; circled: the paper's rule "
                   f"({table[sel]['equation'] if sel is not None else '-'})"
                   + (", starred: the candidate chosen by refitted error" if star is not None else "")
                   + ". Look for: a sharp drop in loss at the chosen complexity, then a plateau.")
    if selection:
        tolerance = selection.get("tolerance", 1.1)  # distill.json files before it was recorded used 1.1
        rep.text("Chosen by the refitted error of the composed symbolic model on held-out raw data "
                 f"(the simplest within {tolerance:g}x of the lowest):")
        rep.table(["complexity", "g(r, m, q)", "held-out MAE", "paper's rule", "chosen"],
                  [[c["complexity"], c["scalar"], "failed" if c["held_out_mae"] is None else c["held_out_mae"],
                    "yes" if c["paper_rule"] else "", "yes" if k == selection["chosen"] else ""]
                   for k, c in enumerate(selection["candidates"])])


def _comparison_section(rep: Report, d: dict, figs: Path) -> None:
    comp = d.get("comparison", {})
    if not comp:
        return
    rep.heading("Network vs formula")
    rep.table(["data", "network MAE", "formula MAE"], [[k, v["network"], v["formula"]] for k, v in comp.items()])
    rep.figure(figures.error_comparison(comp, figs / "network_vs_formula.png"),
               "Mean absolute error of accelerations on the test file and out of distribution (more bodies, "
               "heavier masses). Look for: the formula below the network, most of all out of distribution.")


def _formulas_section(rep: Report, d: dict) -> None:
    rep.heading("Formulas of the symbolic model")
    rep.text("phi: the edge model (one formula per top message component); a: the node model (acceleration "
             "from the summed messages s_k and the body's mass m).")
    rep.code("\n".join(f"phi_{k} = {e}" for k, e in enumerate(d["edge_formulas"]))
             + "\n" + "\n".join(f"a_{k} = {e}" for k, e in enumerate(d["node_formulas"])))
