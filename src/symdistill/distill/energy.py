"""Distil a Hamiltonian network (:class:`symdistill.models.HamiltonianNetwork`): its pair energy U and
self energy T, as formulas, composed into a symbolic Hamiltonian, refitted, judged, rolled out.

Steps (each its own function; :func:`distill_energy` strings them together, called by
:func:`symdistill.distill.session.distill_run` for a run whose problem distils energies):

1. **record** the gauge-fixed energies (:mod:`symdistill.train.energy_metrics`) on held-out graphs,
   the run's *validation* simulations (not trained on; the test file is kept for the comparison);
2. **search**: SR on U(r) - U(r_ref) in (r, m1, m2, q1, q2) without the closest ``trim_closest`` of
   the edges, and on T(p) - T(0) in (p, m, q) with arithmetic only;
3. **select** among the pair search's Pareto candidates (simplest first) by the error of the composed
   symbolic Hamiltonian once refitted on raw training accelerations and velocities (the simplest
   within :data:`~symdistill.distill.session.SELECT_TOLERANCE` of the best), as for forces;
4. **refit and snap** its constants (:func:`symdistill.distill.snap.snap_constants`: an additive
   constant of U goes to 0, an exponent -0.998 to -1, a kinetic 0.4996 to 1/2, each kept only if the
   raw data cannot tell the difference);
5. **judge** the searched and the final energies with the strict verdict
   (:func:`symdistill.distill.energy_verify.verify_energy`);
6. **compare** network and formula on the test file and out of distribution, and **roll out** both
   from held-out initial states against the true trajectory (:mod:`symdistill.distill.rollout`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import sympy as sp

from symdistill.distill.hamiltonian import KINETIC, SymbolicHamiltonian
from symdistill.distill.pareto import round_constants
from symdistill.distill.snap import normalise, snap_constants
from symdistill.errors import SymdistillError
from symdistill.io import write_json, write_text
from symdistill.names import PAIR_VARIABLES
from symdistill.problems.energy import SELF_VARIABLES
from symdistill.train.data import load_graphs, split_sims
from symdistill.train.energy_metrics import energy_r2, record_energies

#: Saved steps of the rollouts, and how many held-out simulations are rolled out.
ROLLOUT_STEPS = 500
ROLLOUT_SIMS = 16
#: Pareto candidates of the pair search compared by their refitted error.
MAX_CANDIDATES = 6


def energy_textbook(pair: sp.Expr, kinetic: sp.Expr | None = None) -> str:
    """``U = (r - 1)^2;  T = p^2/(2*m)``: the energies as a physicist writes them."""
    text = lambda e: sp.sstr(e).replace("**", "^")  # noqa: E731
    return f"U = {text(pair)}" + ("" if kinetic is None else f";  T = {text(kinetic)}")


def without_free_terms(expr: sp.Expr, variable: str) -> sp.Expr:
    """``expr`` without its additive terms free of ``variable`` (r for U, p for T: they exert nothing
    and the data cannot see them), logs of products expanded first (m1 m2 log(r/2) -> m1 m2 log r);
    kept as it was when that only makes it longer ((r - 1)^2 stays, not r^2 - 2 r)."""
    x = next((s for s in expr.free_symbols if s.name == variable), None)  # the formula's own symbol
    if x is None:
        return expr
    expanded = sp.expand(sp.expand_log(expr, force=True))
    kept = sp.Add(*[t for t in sp.Add.make_args(expanded) if t.has(x)])
    if not expr.is_Add and sp.count_ops(kept) >= sp.count_ops(expr):
        return expr
    if expr.is_Add:  # drop the free terms of the sum as written, unless expanding made it shorter
        written = sp.Add(*[t for t in sp.Add.make_args(expr) if t.has(x)])
        return kept if sp.count_ops(kept) < sp.count_ops(written) else written
    return kept


def distill_energy(run, c, log=print) -> dict:
    """The steps of the module docstring on a loaded run (``run``) with a DistillConfig ``c``."""
    from symdistill.distill.session import Laps, _law_of, compare_step, search_runs

    t0 = time.perf_counter()
    model, dim, law = run.model, run.model.dim, _law_of(run)
    if law is not None and law.damping > 0:
        from symdistill.train.loop import not_hamiltonian
        raise SymdistillError(not_hamiltonian(law.name, run.path))
    laps = Laps()
    stride = max(1, run.config.data.step_stride)
    train_sims, val_sims = split_sims(run.config.data)
    held_out = load_graphs(run.data_path, val_sims if len(val_sims) else train_sims, step_stride=stride)
    rec = record_energies(model, held_out, law=law, max_graphs=c.max_graphs, seed=c.seed)
    r2_pair, r2_self = energy_r2(rec)
    bulk_pair, bulk_self = energy_r2(rec, bulk=True)
    log(f"energy R^2 (gauge-fixed, against the truth): pair {r2_pair:.4f}, kinetic {r2_self:.4f}; without the 1% "
        f"largest: pair {bulk_pair:.4f}, kinetic {bulk_self:.4f}")
    result: dict = {"run": str(run.path), "config": asdict(c), "model": "hamiltonian", "dim": dim,
                    "data_use": "energies recorded on the validation simulations; selection, refit and snapping on "
                                "training graphs; the test file only for the final comparison and the rollouts",
                    "r_ref": rec.r_ref, "energy_r2": {"pair": r2_pair, "kinetic": r2_self},
                    "energy_r2_bulk": {"pair": bulk_pair, "kinetic": bulk_self}}
    laps("load and record")
    pair_sr, self_sr = search_step(rec, c)
    laps("energy searches")
    result["pareto"] = [pair_sr.pareto_.to_records()]
    result["node_pareto"] = [self_sr.pareto_.to_records()]
    result["search_runs"] = {"edge": search_runs([pair_sr]), "node": search_runs([self_sr])}
    raw = load_graphs(run.data_path, train_sims, step_stride=stride * 5).arrays()
    order = np.random.default_rng(c.seed + 1).permutation(len(raw["pos"]))
    n = min(len(order) // 2, 2048)
    fit, score = ({k: v[order[s]] for k, v in raw.items()} for s in (slice(0, n), slice(n, 2 * n)))
    kinetic, kinetic_selection = select_kinetic(self_sr, fit, score, c)
    pair, selection = select_step(pair_sr, kinetic, fit, score, c)
    result["selection"] = selection | {"kinetic": kinetic_selection}
    log(f"chose U = {pair} among {len(selection['candidates'])} Pareto candidates by refitted error")
    laps("selection")
    result["search"] = {"pair": sp.sstr(pair), "kinetic": sp.sstr(kinetic), "formula": energy_textbook(pair, kinetic)}
    if law is not None and law.has_truth:
        v = model.problem.judge(pair, law, kinetic=kinetic)
        result["search"]["verification"] = v.to_dict()
        log(f"searched energies: {v.summary()}")
    symbolic, snaps, maes = final_step(pair, kinetic, fit, score, c)
    U, T = (without_free_terms(round_constants(e, 4), v) for e, v in zip(symbolic.sympy(), ("r", "p")))
    result.update(formula=energy_textbook(U, T), pair_energy=sp.sstr(U), kinetic_energy=sp.sstr(T),
                  final={"snaps": snaps, **maes}, edge_formulas=[sp.sstr(U)], node_formulas=[sp.sstr(T)],
                  symbolic_model={"pair": sp.sstr(U), "kinetic": sp.sstr(T)})
    kept = ", ".join(f"{s['value']:g} -> {s['to']}" for s in snaps if s["kept"]) or "none"
    log(f"final energies {result['formula']} (snapped: {kept})")
    laps("refit and snap")
    if law is not None and law.has_truth:
        v = model.problem.judge(U, law, kinetic=T)
        result.update(truth=energy_textbook(law.energy, KINETIC),
                      recovered=bool(v.exact), fits=bool(v.fits), verification=v.to_dict())
        log(f"final energies: {v.summary()}")
    else:
        result.update(truth=None, recovered=None, fits=None, verification=None)
    result["comparison"] = compare_step(model, _Formula(symbolic), run, law, held_out.n_bodies, stride, c)
    laps("compare")
    result["rollout"] = rollout_step(model, symbolic, run, law, c, Path(run.path))
    laps("rollout")
    result["stage_seconds"] = laps.seconds
    result["seconds"] = time.perf_counter() - t0
    save_energy_sample(Path(run.path) / "energies.npz", rec, c.seed)
    write_json(Path(run.path) / "distill.json", result)
    write_text(Path(run.path) / "equations.md", "\n".join([
        "## Pair energy U(r) - U(r_ref)", "", pair_sr.pareto_.to_markdown(), "",
        "## Self energy T(p) - T(0)", "", self_sr.pareto_.to_markdown(), ""]))
    return result


def search_step(rec, c):
    """SR on the pair energy (without the closest ``trim_closest`` edges) and on the self energy."""
    from symdistill.distill.session import NODE_OPERATORS, _sr

    r = rec.pair["r"]
    keep = (r >= np.quantile(r, c.trim_closest)) & _not_largest(rec.pair_energy, c.trim_largest)
    names = [v for v in PAIR_VARIABLES if np.ptp(rec.pair[v][keep]) > 0]
    pair_sr = _sr(c, c.sr_budget, evaluations=c.sr_evaluations).fit(
        {v: rec.pair[v][keep] for v in names}, rec.pair_energy[keep], variable_names=names)
    keep = _not_largest(rec.self_energy, c.trim_largest)
    self_names = [v for v in SELF_VARIABLES if np.ptp(rec.self_inputs[v][keep]) > 0]
    self_sr = _sr(c, c.node_budget, NODE_OPERATORS, c.node_evaluations).fit(
        {v: rec.self_inputs[v][keep] for v in self_names}, rec.self_energy[keep], variable_names=self_names)
    return pair_sr, self_sr


def _not_largest(values: np.ndarray, fraction: float) -> np.ndarray:
    """All but the ``fraction`` of largest |values| (the same ``trim_largest`` as the force search): the
    heaviest pairs and fastest bodies are the rarest in the data, where the network extrapolates (measured
    on r1-3D: its energies have R^2 0.9997 against the truth on 99% of the edges, 0.81 on all of them)."""
    a = np.abs(values)
    return a <= np.quantile(a, 1 - fraction) if fraction > 0 and len(a) else np.ones(len(a), dtype=bool)


def select_step(pair_sr, kinetic, fit: dict, score: dict, c, *, steps: int = 100) -> tuple[sp.Expr, dict]:
    """The simplest Pareto candidate of the pair search (up to the paper's selected one) whose
    refitted symbolic Hamiltonian (with the self energy ``kinetic``) is within SELECT_TOLERANCE of the
    lowest error on ``score``."""
    return _choose(pair_sr, lambda e: SymbolicHamiltonian(e, kinetic, judge="acc"), fit, score, c, steps, "pair")


def select_kinetic(self_sr, fit: dict, score: dict, c, *, steps: int = 100) -> tuple[sp.Expr, dict]:
    """The same choice for the self energy, alone (no pair energy), judged by the velocities only: T acts
    on nothing else (with heavy-tailed accelerations in the sum, any T would be within the tolerance)."""
    return _choose(self_sr, lambda e: SymbolicHamiltonian(sp.Integer(0), e, judge="vel"), fit, score, c, steps,
                   "kinetic")


def _choose(sr, build, fit, score, c, steps: int, label: str) -> tuple[sp.Expr, dict]:
    from symdistill.distill.session import SELECT_TOLERANCE, simplest_within

    table = sr.pareto_
    rows = [e for e in table if e.complexity <= table.best.complexity][-MAX_CANDIDATES:]
    errors = []
    for e in rows:
        try:
            h = build(round_constants(e.expr, 6))
            h.refit(fit, steps=steps, seed=c.seed)
            err = h.mae(score)
        except (ValueError, RuntimeError, TypeError, SymdistillError):
            err = float("inf")
        errors.append(float(err) if np.isfinite(err) else float("inf"))
    k = simplest_within(errors)
    return rows[k].expr, {"rule": "refit", "tolerance": SELECT_TOLERANCE, "chosen": k, "candidates": [
        {"complexity": e.complexity, label: sp.sstr(e.expr), "held_out_error": m if np.isfinite(m) else None,
         "paper_rule": bool(e.selected)} for e, m in zip(rows, errors)]}


def final_step(pair, kinetic, fit: dict, score: dict, c) -> tuple[SymbolicHamiltonian, list[dict], dict]:
    """Normalise U and T (k g: g's leading coefficients 1, :func:`symdistill.distill.snap.normalise`, so
    that a rest length is one constant), refit every constant on training data, snap those of U then
    T, refit again."""
    def scaled(e):
        e = sp.sympify(round_constants(e, 6))
        terms = [sp.Mul(*normalise(t)) if t.free_symbols else t for t in sp.Add.make_args(e)]  # inside each term
        k, g = normalise(sp.Add(*terms))
        return g if float(k) == 1 else sp.Float(float(k), 6) * g
    h = SymbolicHamiltonian(scaled(pair), scaled(kinetic))
    h.refit(fit, steps=c.refit_steps, seed=c.seed)
    base = h.mae(score)
    snaps = []
    for name, judge in (("pair", "acc"), ("kinetic", "vel")):  # each energy judged by what it acts on
        h.judge = judge
        h, done = snap_constants(h, lambda m, name=name: getattr(m, name), fit, score, h.mae(score), seed=c.seed,
                                 label={"pair": "U", "kinetic": "T"}[name])
        snaps += done
    h.judge = "both"
    h.refit(fit, steps=c.refit_steps, seed=c.seed)
    return h, snaps, {"held_out_error_unsnapped": base, "held_out_error": h.mae(score),
                      "held_out_acc_mae": h.acc_mae(score)}


class _Formula:
    """A symbolic Hamiltonian seen by :func:`compare_step` (``mae``: on accelerations)."""

    def __init__(self, h: SymbolicHamiltonian):
        self.h = h

    def mae(self, data) -> float:
        return self.h.acc_mae(data)


def rollout_step(model, symbolic, run, law, c, folder: Path) -> dict | None:
    """Network and symbolic Hamiltonian rolled out from held-out initial states (the test file's first
    states) for :data:`ROLLOUT_STEPS` saved steps beside the truth; the plot as ``rollout.png``."""
    from symdistill.distill.rollout import NetworkDynamics, compare_rollouts, initial_states, plot_rollouts

    if law is None or not law.has_truth or not run.test_path:
        return None
    start = initial_states(run.test_path, ROLLOUT_SIMS, seed=c.seed)
    models = {"hamiltonian network": NetworkDynamics(model), "symbolic H": symbolic}
    out = compare_rollouts(models, law, *start.states(), **(start.options() | {"n_steps": ROLLOUT_STEPS}))
    plot_rollouts(out, folder / "rollout.png")
    return out


def save_energy_sample(path, rec, seed: int, n: int = 5000) -> None:
    """A sample of the recorded energies for the report (np.load, no pickle)."""
    from symdistill.distill.session import save_arrays

    keep = np.random.default_rng(seed).permutation(len(rec.pair_energy))[:n]
    arrays = {f"pair_{k}": v[keep] for k, v in rec.pair.items()} | {"pair_energy": rec.pair_energy[keep]}
    if rec.pair_truth is not None:
        arrays["pair_truth"] = rec.pair_truth[keep]
    keep_v = np.random.default_rng(seed).permutation(len(rec.self_energy))[:n]
    arrays |= {f"self_{k}": v[keep_v] for k, v in rec.self_inputs.items()}
    arrays |= {"self_energy": rec.self_energy[keep_v], "self_truth": rec.self_truth[keep_v],
               "r_ref": np.asarray(rec.r_ref)}
    save_arrays(path, **arrays)


__all__ = ["distill_energy", "energy_textbook", "final_step", "search_step", "select_step"]
