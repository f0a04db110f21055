"""The report sections of a Hamiltonian run (``distill.json`` with ``model == "hamiltonian"``): the
energies in a table, the discovered and true pair potential drawn over r beside the network's, the
kinetic energy over p, both Pareto fronts, the rollouts' position error and energy drift.

Energies are compared gauge-fixed (U(r) - U(r_ref) at fixed masses and charges; T(p) - T(0)), as the
distillation recorded them (:mod:`symdistill.train.energy_metrics`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sympy as sp

from symdistill.expr import INTERNAL_LIMITS, parse_formula
from symdistill.names import PAIR_VARIABLES
from symdistill.report import figures
from symdistill.report.figures import plt
from symdistill.report.page import Report

SELF_VARIABLES = ("p", "m", "q")  # symdistill.problems.energy.SELF_VARIABLES (report reads files only)


def energy_sections(rep: Report, run: Path, d: dict, law, figs: Path) -> None:
    """Every section of a Hamiltonian run's report after its header and training curves."""
    rep.heading("The energies")
    search = d.get("search") or {}
    rep.table(["", "energies (H = sum_i T + sum_{i<j} U; p = m v, r = |dx| + 0.01)"],
              [["discovered (refitted on raw data, constants snapped)", d["formula"]],
               ["truth", d.get("truth") or "unknown"], ["as searched, before the refit", search.get("formula", "-")]])
    if d.get("data_use"):
        rep.text(f"Data: {d['data_use']}.")
    r2 = d.get("energy_r2") or {}
    rep.text("R² of the network's gauge-fixed energies against the truth (one scale and offset each): pair "
             f"{_num(r2.get('pair'))}, kinetic {_num(r2.get('kinetic'))}.")
    sample = _sample(run)
    if sample is not None:
        rep.figure(energy_figure(sample, d, law, figs / "energies.png"),
                   "Left: the pair energy U(r) - U(r_ref) over r, the network's on held-out edges (dots, at their own "
                   "masses and charges), the discovered and the true potential at the median masses and charges; "
                   "grey: beyond the data. Right: the "
                   "self energy T(p) - T(0) against p²/2m, network and discovered at each node's p, m, q. Look for: the curves on each other past the data, residuals without "
                   "structure.")
    for k, (key, name) in enumerate((("pareto", "pair energy"), ("node_pareto", "self energy"))):
        table = (d.get(key) or [[]])[0]
        if table:
            sel = next((i for i, row in enumerate(table) if row.get("selected")), None)
            rep.figure(figures.pareto_front([row["complexity"] for row in table], [row["loss"] for row in table], sel,
                                            figs / f"pareto_energy_{k}.png", title=name),
                       f"Search on the {name}: loss against complexity; circled: the paper's rule. Look for: a sharp "
                       "drop, then a plateau.")
    roll = d.get("rollout")
    if roll and (run / "rollout.png").exists():
        rows = [[name, m.get("final_position_error"), m.get("max_own_energy_drift"), m.get("max_true_energy_drift"),
                 m.get("blow_ups")] for name, m in roll["models"].items()]
        rep.heading("Rollouts")
        rep.table(["dynamics", "position error at the end", "max drift of its own energy", "max drift of the true energy",
                   "blow-ups"], rows)
        rep.figure(run / "rollout.png",
                   f"{roll['n_sims']} held-out initial states rolled out {roll['n_steps']} saved steps with the data's "
                   "integrator: position error against the true trajectory, and energy drift (solid: the dynamics' own "
                   "energy; dashed: the true energy along its trajectory), relative to the typical energy. Look for: the "
                   "Hamiltonian models' own energy staying flat.")


def _sample(run: Path) -> dict | None:
    path = run / "energies.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _num(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _evaluate(text: str, variables, columns: dict) -> np.ndarray | None:
    if not text:
        return None
    expr = parse_formula(text, variables, what="discovered energy", limits=INTERNAL_LIMITS)
    fn = sp.lambdify([sp.Symbol(v) for v in variables], expr, "numpy")
    with np.errstate(all="ignore"):
        return np.broadcast_to(np.asarray(fn(*(columns[v] for v in variables)), dtype=float), columns[variables[0]].shape)


def energy_figure(s: dict, d: dict, law, path) -> Path:
    """Two panels (see :func:`energy_sections`): pair energy over r, self energy over p."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8))
    r_ref = float(s["r_ref"])
    pair = {v: s[f"pair_{v}"] for v in PAIR_VARIABLES}
    med = {v: float(np.median(pair[v])) for v in PAIR_VARIABLES}
    ax.scatter(pair["r"], s["pair_energy"], s=3, alpha=0.3, color="C0", label="network (held-out edges)")
    lo, hi = float(pair["r"].min()), float(pair["r"].max())
    grid = np.linspace(max(0.05, lo * 0.5), hi * 1.5, 300)

    def curve(text, columns):
        at = _evaluate(text, PAIR_VARIABLES, columns)
        ref = _evaluate(text, PAIR_VARIABLES, {**columns, "r": np.full_like(columns["r"], r_ref)})
        return None if at is None else at - ref
    cols = {v: (grid if v == "r" else np.full_like(grid, med[v])) for v in PAIR_VARIABLES}
    found = curve(d.get("pair_energy", ""), cols)
    if found is not None:
        ax.plot(grid, found, color="C3", lw=1.5, label="discovered")
    if law is not None and law.has_truth:
        ax.plot(grid, curve(sp.sstr(law.energy), cols), "k--", lw=1.2, label="truth")
    ax.axvspan(grid[0], lo, color="0.9")
    ax.axvspan(hi, grid[-1], color="0.9")
    values = np.asarray(s["pair_energy"])
    ax.set_ylim(*_limits(values))
    ax.set_xlabel("r")
    ax.set_ylabel("U(r) - U(r_ref)")
    ax.set_title(f"pair energy (masses, charges at their medians; r_ref = {r_ref:.3g})", fontsize=9)
    ax.legend(fontsize=8)
    selfs = {v: s[f"self_{v}"] for v in SELF_VARIABLES}
    x = selfs["p"] ** 2 / (2 * selfs["m"])
    bx.scatter(x, s["self_energy"], s=3, alpha=0.3, color="C0", label="network (held-out nodes)")
    kinetic = _evaluate(d.get("kinetic_energy", ""), SELF_VARIABLES, selfs)
    if kinetic is not None:
        zero = _evaluate(d["kinetic_energy"], SELF_VARIABLES, {**selfs, "p": np.zeros_like(selfs["p"])})
        bx.scatter(x, kinetic - zero, s=2, color="C3", label="discovered")
    top = float(np.quantile(x, 0.995)) if len(x) else 1.0
    bx.plot([0, top], [0, top], "k--", lw=1.2, label="p²/2m")
    bx.set_xlim(0, top)
    bx.set_ylim(*_limits(np.asarray(s["self_energy"])[x <= top]))
    bx.set_xlabel("p²/2m (p = |m v|)")
    bx.set_ylabel("T(p) - T(0)")
    bx.set_title("self (kinetic) energy at each node's own mass", fontsize=9)
    bx.legend(fontsize=8)
    return figures.save_figure(fig, path)


def _limits(values: np.ndarray) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if not len(v):
        return -1.0, 1.0
    lo, hi = np.quantile(v, [0.005, 0.995])
    pad = 0.15 * (hi - lo or 1.0)
    return float(lo - pad), float(hi + pad)
