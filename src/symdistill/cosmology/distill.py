"""Distilling the halo network into a formula (PAPER.md §6): two SR stages, then a composed refit.

    result = distill_cosmology(edges, mass, delta, message, train, node_output=net_out)
    result.formula.formula()      # delta_i = g(e, M_i); e = sum_{j != i} f(M_j, r, M_i)
    result.to_dict()              # JSON-ready: both Pareto tables, candidates, constants, times

1. :func:`search_messages`: SR of the network's top message component as f(M_j, r, M_i), on (a
   sample of) the edges into the training halos.
2. :func:`search_node_model`: SR of the network's node output (``delta`` when none is given) as
   g(e, M_i), with e_i the sum of the *raw* top message over i's edges: the values the network's
   node model actually sees (as the paper fits it), so stage 2 does not inherit stage 1's errors.
3. :func:`compose`: every pair of a few candidates of each table becomes a :class:`SymbolicFormula`,
   refitted (all constants, MAE; L-BFGS only, Adam is kept for the final refit) against the true
   delta on part of the training halos and scored on the rest of them (never on the held-out
   halos); the simplest pair within ``tolerance`` of the lowest validation MAE wins (the idea of
   :func:`symdistill.distill.session.simplest_within` and ``choose_by_refit``) and is refitted on
   all training halos. Why not the SR tables' own choice:
   a message is only defined up to an affine map and a receiver-dependent factor, so how well f fits
   the message says little about how well the composed formula predicts delta.

Operators: + - * / and square by default: (C4 + M_j)/(1 + (C6 r)^2) is then short enough to find,
and ``free_exponents`` lets the refit turn the square of r into (C6 r)^C7. Add "^" for a search over
free powers (operon finds them less reliably in a short budget).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import sympy as sp

from symdistill.cosmology.formulas import (EDGE_VARIABLES, NODE_VARIABLES, Edges, SymbolicFormula, halo_index,
                                           star, targets)
from symdistill.distill.backends import OPERATORS
from symdistill.distill.pareto import Equation, ParetoTable, round_constants
from symdistill.distill.session import SELECT_TOLERANCE, simplest_within
from symdistill.distill.sr import SymbolicRegression
from symdistill.errors import SymdistillError, check_positive, check_seed, unknown_name


#: How stage 3 picks its validation halos among the training ones: at random, or the ``validation_fraction``
#: with the highest delta (the pairs are then judged on how they extrapolate beyond the halos they were fitted on).
VALIDATION = ("random", "top")


@dataclass(frozen=True)
class DistillOptions:
    """Settings of both SR stages and the composition (one place for their defaults)."""

    time_budget: float = 60.0              # seconds per SR search
    max_evaluations: int | None = None     # operon: a load-independent budget (repeatable with threads=1)
    max_complexity: int = 20
    operators: tuple[str, ...] = ("+", "-", "*", "/", "square")
    seed: int = 0
    threads: int = 1
    max_samples: int = 5000                # rows each search sees (edges in stage 1, halos in stage 2)
    backend: str = "operon"
    candidates: int = 3                    # per table; every pair is composed and refitted
    validation_fraction: float = 0.25      # of the training halos, to choose among the pairs
    validation: str = "random"             # which of them: "random", or "top" (the highest delta)
    tolerance: float = SELECT_TOLERANCE    # simplest pair within this factor of the best validation MAE
    free_exponents: bool = True
    adam_steps: int = 200
    lbfgs_steps: int = 100
    restarts: int = 1                      # extra refits of the chosen formula (perturbed starts)

    def __post_init__(self):
        object.__setattr__(self, "operators", tuple(self.operators))
        for op in self.operators:
            if op not in OPERATORS:
                raise unknown_name("operator", op, OPERATORS)
        for name in ("time_budget", "max_complexity", "threads", "max_samples", "candidates", "tolerance"):
            check_positive(name, getattr(self, name))
        check_positive("max_evaluations", self.max_evaluations, optional=True)
        check_seed("seed", self.seed)
        if self.validation not in VALIDATION:
            raise unknown_name("validation", self.validation, VALIDATION)
        if not 0 < self.validation_fraction < 1:
            raise SymdistillError(f"`validation_fraction` must be between 0 and 1, e.g. 0.25 "
                                  f"(got {self.validation_fraction})")

    def regressor(self, seed_offset: int = 0) -> SymbolicRegression:
        return SymbolicRegression(self.backend, operators=self.operators, max_complexity=self.max_complexity,
                                  time_budget=self.time_budget, seed=self.seed + seed_offset,
                                  threads=self.threads, max_evaluations=self.max_evaluations, loss="mae",
                                  max_samples=self.max_samples)


def _message(message, n_edges: int) -> np.ndarray:
    message = np.asarray(message, dtype=np.float64).reshape(-1)
    if len(message) != n_edges:
        raise SymdistillError(f"`message` needs one value per edge ({n_edges}, got {len(message)}): pass "
                              "the top message component, recorded on the same edges")
    return message


def search_messages(edges, mass, message, index, options: DistillOptions = DistillOptions()) -> SymbolicRegression:
    """Stage 1: SR of ``message`` [E] as f(M_j, r, M_i) on the edges into the halos ``index``."""
    edges = Edges.of(edges)
    s = star(edges, mass, index)
    y = _message(message, len(edges.r))[s.edge]
    if len(y) > options.max_samples:  # sample here: 3e7 rows need not become one [E, 3] matrix
        keep = np.random.default_rng(options.seed).choice(len(y), options.max_samples, replace=False)
    else:
        keep = slice(None)
    X = {"M_j": s.M_j[keep], "r": s.r[keep], "M_i": s.M_i_edge[keep]}
    return options.regressor().fit(X, y[keep], variable_names=list(EDGE_VARIABLES))


def summed_message(edges, mass, message, index) -> np.ndarray:
    """e_i = sum_{j != i} message_ij for the halos ``index`` [n]."""
    edges = Edges.of(edges)
    s = star(edges, mass, index)
    return s.edge_sum(_message(message, len(edges.r))[s.edge])


def search_node_model(edges, mass, message, target, index,
                      options: DistillOptions = DistillOptions()) -> SymbolicRegression:
    """Stage 2: SR of ``target`` [N] (the network's node output, or delta) as g(e, M_i) on the halos
    ``index``, with e_i the summed raw ``message``."""
    e = summed_message(edges, mass, message, index)
    s = star(edges, mass, index)
    y = targets(target, index, len(np.asarray(mass).reshape(-1)))
    return options.regressor(seed_offset=1).fit({"e": e, "M_i": s.M_i}, y, variable_names=list(NODE_VARIABLES))


def shortlist(table: ParetoTable, k: int) -> list[Equation]:
    """Up to ``k`` rows with variables: the selected one, the most accurate, then by score."""
    rows = [r for r in table.rows if r.expr.free_symbols] or list(table.rows)
    picked = [r for r in rows if r.selected][:1] + rows[-1:]
    picked += sorted(rows, key=lambda r: -r.score)
    out = []
    for r in picked:
        if r not in out and len(out) < k:
            out.append(r)
    return sorted(out, key=lambda r: r.complexity)


def compose(f_table: ParetoTable, g_table: ParetoTable, edges, mass, delta, index,
            options: DistillOptions = DistillOptions()) -> tuple[SymbolicFormula, list[dict]]:
    """Stage 3: choose the pair (f, g) by the validation MAE of the refitted composed formula, and
    refit it on all of ``index``. Returns (formula, one record per pair tried)."""
    index = halo_index(index, len(np.asarray(mass).reshape(-1)))
    if options.validation == "top":
        order = np.argsort(-np.asarray(delta, dtype=np.float64)[index], kind="stable")
    else:
        order = np.random.default_rng(options.seed).permutation(len(index))
    n_val = max(1, int(round(options.validation_fraction * len(index))))
    val, fit = index[order[:n_val]], index[order[n_val:]]
    pairs = sorted(((f, g) for f in shortlist(f_table, options.candidates)
                    for g in shortlist(g_table, options.candidates)),
                   key=lambda p: p[0].complexity + p[1].complexity)
    records, models = [], []
    for f, g in pairs:
        model = _formula(f.expr, g.expr, options, restarts=0, adam=False)
        try:
            model.fit(edges, mass, delta, fit)
            mae_fit, mae_val = model.train_mae_, model.mae(edges, mass, delta, val)
        except (RuntimeError, ValueError, TypeError, OverflowError):  # a pair torch cannot evaluate loses
            mae_fit = mae_val = float("inf")
        mae_val = mae_val if np.isfinite(mae_val) else float("inf")
        models.append(model)
        records.append({"f": sp.sstr(f.expr), "g": sp.sstr(g.expr), "complexity": f.complexity + g.complexity,
                        "mae_fit": float(mae_fit), "mae_validation": float(mae_val), "selected": False})
    if not records:
        raise SymdistillError("The SR tables are empty: give the searches more `time_budget`")
    chosen = simplest_within([r["mae_validation"] for r in records], options.tolerance)
    records[chosen]["selected"] = True
    final = _formula(*models[chosen].sympy(), options, restarts=options.restarts, free=False)
    final.fit(edges, mass, delta, index)
    return final, records


def _formula(f, g, options: DistillOptions, *, restarts: int, free: bool | None = None,
             adam: bool = True) -> SymbolicFormula:
    return SymbolicFormula(f, g, free_exponents=options.free_exponents if free is None else free,
                           adam_steps=options.adam_steps if adam else 0, lbfgs_steps=options.lbfgs_steps,
                           restarts=restarts, seed=options.seed, name="discovered")


@dataclass
class CosmologyDistillation:
    """What :func:`distill_cosmology` found: both searches (``equations_``/``pareto_`` as in
    :class:`SymbolicRegression`), the composed ``formula`` refitted on the training halos, every pair
    tried (``candidates``), and the seconds each stage took."""

    edge_search: SymbolicRegression
    node_search: SymbolicRegression
    formula: SymbolicFormula
    candidates: list[dict]
    seconds: dict[str, float]
    node_target: str
    options: DistillOptions = field(default_factory=DistillOptions)

    @property
    def f(self) -> sp.Expr:
        return self.formula.sympy()[0]

    @property
    def g(self) -> sp.Expr:
        return self.formula.sympy()[1]

    def to_dict(self) -> dict:
        """JSON-ready summary (constants at full precision, formulas at 4 significant digits)."""
        return {
            "formula": self.formula.formula(),
            "f": sp.sstr(round_constants(self.f, 4)), "g": sp.sstr(round_constants(self.g, 4)),
            "constants": [float(c) for c in self.formula.constants_],
            "n_constants": int(self.formula.n_constants), "mae_train": float(self.formula.train_mae_),
            "edge_table": self.edge_search.pareto_.to_records(),
            "node_table": self.node_search.pareto_.to_records(),
            "candidates": self.candidates, "seconds": dict(self.seconds), "node_target": self.node_target,
            "options": asdict(self.options) | {"operators": list(self.options.operators)},
        }


def distill_cosmology(edges, mass, delta, message, train_index, *, node_output=None,
                      options: DistillOptions = DistillOptions()) -> CosmologyDistillation:
    """All three stages on the training halos ``train_index``. ``message`` [E]: the network's top
    message component on ``edges``; ``node_output`` [N]: the network's prediction (stage 2's target;
    ``delta`` when None). The held-out halos are never used."""
    seconds = {}
    t0 = time.perf_counter()
    edge_search = search_messages(edges, mass, message, train_index, options)
    seconds["edge_search"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    node_target = delta if node_output is None else node_output
    node_search = search_node_model(edges, mass, message, node_target, train_index, options)
    seconds["node_search"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    formula, candidates = compose(edge_search.pareto_, node_search.pareto_, edges, mass, delta, train_index,
                                  options)
    seconds["compose"] = time.perf_counter() - t0
    return CosmologyDistillation(edge_search, node_search, formula, candidates, seconds,
                                 "delta" if node_output is None else "node_output", options)
