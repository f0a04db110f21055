"""Pareto tables of candidate equations and the paper's selection rule.

A table is plain data: one :class:`Equation` per complexity on the accuracy/complexity front, with
PySR's ``score`` (-d log(loss) / d complexity between neighbours on the front) and the selected row
marked. Selection is PySR's "best" rule, the one the paper used (PAPER.md §4): among the equations
whose loss is within ``1.5x`` the lowest, the one with the highest score.

:meth:`ParetoTable.to_frame` gives the same table as PySR's ``equations_`` DataFrame, each row with a
:class:`CallableEquation` (``lambda_format``) that evaluates it on data like ``predict`` does
(:func:`columns_of` reads X, :func:`evaluate` computes the expression on named columns).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import sympy as sp
from scipy import sparse

from symdistill.distill.synthetic import lambdify
from symdistill.errors import SymdistillError
from symdistill.expr import INTERNAL_LIMITS, parse_formula

#: Operators that cost more than one node, as in the paper (Eureqa / PySR settings): ^ exp log IF.
HEAVY = {sp.exp: 3, sp.log: 3, sp.Piecewise: 3, sp.Heaviside: 3}
#: Below this a loss counts as zero (keeps log(loss) finite for exact fits).
LOSS_FLOOR = 1e-30
#: Significant digits kept in constants (4: rounding costs less than a good fit's error).
DIGITS = 4
#: Within this factor of the lowest loss an equation may be selected (PySR's "best").
LOSS_TOLERANCE = 1.5


def complexity(expr: sp.Expr) -> int:
    """Nodes of the expression tree, counting binary operators once per join.

    Variables, constants and + - * / count 1; ``^`` (other than squares and reciprocals), exp, log
    and a Piecewise/IF count 3 (the paper's weights); other functions count 1.
    """
    expr = sp.sympify(expr)
    if expr.is_Atom:
        return 1
    args = expr.args
    if expr.is_Add:
        return len(args) - 1 + sum(complexity(a) for a in args)
    if expr.is_Mul:
        if args[0] == -1:  # -x is one negation, not a product with a constant
            return 1 + complexity(sp.Mul(*args[1:]))
        # a / b is one join, like a * b: a divisor costs its own denominator only
        return len(args) - 1 + sum(complexity(1 / a) if a.is_Pow and a.args[1].is_negative else complexity(a)
                                   for a in args)
    if expr.is_Pow:
        base, ex = args
        if ex == -1:  # 1/x: the constant 1, one division, x
            return 2 + complexity(base)
        if ex.is_Integer and abs(int(ex)) <= 3:  # small integer powers: a binary operator
            return 2 + complexity(base) + (2 if ex < 0 else 0)
        return 3 + complexity(base) + complexity(ex)
    if isinstance(expr, sp.Piecewise):
        return HEAVY[sp.Piecewise] + sum(complexity(e) + (0 if c is sp.true else complexity(c))
                                         for e, c in args)
    if isinstance(expr, sp.core.relational.Relational):
        return 1 + complexity(args[0]) + complexity(args[1])
    return HEAVY.get(type(expr), 1) + sum(complexity(a) for a in args)


def round_constants(expr: sp.Expr, digits: int = DIGITS) -> sp.Expr:
    """Round every float to ``digits`` significant digits; ±1.0 and 0.0 become exact."""
    expr = sp.sympify(expr)
    subs = {}
    for f in expr.atoms(sp.Float):
        v = float(f)
        if v == 0 or not math.isfinite(v):
            continue
        rounded = float(f"{v:.{digits}g}")
        subs[f] = sp.Integer(int(rounded)) if rounded in (-1.0, 1.0) else sp.Float(rounded, digits)
    return expr.xreplace(subs)


def simplify(expr: sp.Expr, digits: int = DIGITS, *, max_ops: int = 60) -> sp.Expr:
    """Round constants, then take the least complex of a few rewritings (simplify, expand,
    cancel), then round again the constants that rewriting combined. Large expressions are only
    rounded: sympy's simplify can take minutes on them."""
    expr = round_constants(expr, digits)
    if sp.count_ops(expr) > max_ops:
        return expr
    forms = [expr]
    rewrites = [sp.expand, lambda e: sp.cancel(sp.expand(e))]
    if sp.count_ops(expr) <= max_ops // 2:  # the costly one only for small expressions
        rewrites.append(sp.simplify)
    for rewrite in rewrites:
        try:
            forms.append(round_constants(rewrite(expr), digits))
        except Exception:  # noqa: BLE001 - sympy's rewriters raise assorted errors on odd inputs
            pass
    return min(forms, key=lambda e: (complexity(e), sp.count_ops(e)))


def evaluate(expr: sp.Expr, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate a sympy expression of our own on named numpy columns (vectorised)."""
    expr = sp.sympify(expr)
    names = sorted({s.name for s in expr.free_symbols})
    missing = [n for n in names if n not in columns]
    if missing:
        raise SymdistillError(f"Expression {expr} uses {missing} not among the inputs {sorted(columns)}")
    n = len(next(iter(columns.values())))
    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):  # e.g. a pruned constant left 1/0 behind
        return np.full(n, np.nan)
    return lambdify([expr], names)(columns)[:, 0].copy()


def frame_names(X) -> list[str] | None:
    """The column names of a DataFrame ``X`` when they are all strings; None when none is (as
    scikit-learn: its columns are then positional, like an array's)."""
    named = [isinstance(c, str) for c in X.columns]
    if any(named) and not all(named):
        raise SymdistillError(f"Expected a DataFrame X with all column names strings or none "
                              f"(got {list(X.columns)[:8]})")
    return list(X.columns) if named and all(named) else None


def refuse_sparse(X) -> None:
    """A sparse matrix would be cast to nonsense (and a ``dok`` one passes for a mapping)."""
    if sparse.issparse(X):
        raise SymdistillError(f"Sparse X is not supported: pass X.toarray() (got {type(X).__name__})")


def real_matrix(X) -> np.ndarray:
    """``X`` as a float array, refusing what a cast would silently corrupt (sparse, complex)."""
    refuse_sparse(X)
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise SymdistillError("Complex data not supported: expected real-valued X")
    return X.astype(float)


def columns_of(X, variables: Sequence[str], owner: str = "CallableEquation") -> dict[str, np.ndarray]:
    """The inputs of a fitted equation as name -> column. ``X``: an [n, k] array with its columns in
    ``variables`` order, a mapping name -> column or a pandas DataFrame (by name when its column
    names are strings). ``owner`` names the caller in the error for a wrong number of columns."""
    variables = list(variables)
    refuse_sparse(X)
    if isinstance(X, Mapping) or (isinstance(X, pd.DataFrame) and frame_names(X) is not None):
        missing = [v for v in variables if v not in X]
        if missing:
            raise SymdistillError(f"X lacks the columns {missing} (got {sorted(map(str, X.keys()))})")
        return {v: np.asarray(X[v], dtype=float) for v in variables}
    X = real_matrix(X)
    if X.ndim != 2:
        raise SymdistillError(f"Expected X of shape [n_samples, {len(variables)}] (got shape {X.shape}). "
                              "Reshape your data: X.reshape(-1, 1) for one feature, X.reshape(1, -1) "
                              "for one sample")
    if X.shape[1] != len(variables):
        raise SymdistillError(f"X has {X.shape[1]} features, but {owner} is expecting {len(variables)} "
                              f"features as input, columns {variables} (got shape {X.shape})")
    return {v: X[:, i] for i, v in enumerate(variables)}


class CallableEquation:
    """An equation as a function of ``X`` (PySR's ``lambda_format``): ``f(X)`` takes what
    ``SymbolicRegression.predict`` takes (see :func:`columns_of`) and returns an [n] array.

    It evaluates the sympy expression itself, never its text, and pickles as (expr, variables).
    """

    __slots__ = ("expr", "variables")

    def __init__(self, expr: sp.Expr, variables: Sequence[str]):
        self.expr = expr
        self.variables = tuple(variables)

    def __call__(self, X) -> np.ndarray:
        return evaluate(self.expr, columns_of(X, self.variables, type(self).__name__))

    def __getstate__(self):
        return self.expr, self.variables

    def __setstate__(self, state):
        self.expr, self.variables = state

    def __repr__(self) -> str:
        return f"CallableEquation(f({', '.join(self.variables)}) = {sp.sstr(self.expr)})"


@dataclass(frozen=True)
class Equation:
    """One row of a Pareto table."""

    complexity: int
    loss: float
    expr: sp.Expr
    score: float = 0.0
    selected: bool = False

    @property
    def equation(self) -> str:
        return sp.sstr(self.expr)

    def latex(self) -> str:
        return sp.latex(self.expr)


@dataclass
class ParetoTable:
    """Equations on the accuracy/complexity front, sorted by complexity (PySR's ``equations_`` as
    rows of :class:`Equation`; :meth:`to_frame` gives the DataFrame).

    ``rows[i].selected`` marks the chosen equation; ``best`` returns it.
    """

    rows: list[Equation] = field(default_factory=list)
    loss_name: str = "loss"

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i: int) -> Equation:
        return self.rows[i]

    @property
    def best(self) -> Equation:
        for row in self.rows:
            if row.selected:
                return row
        raise ValueError("The Pareto table is empty: the search found no valid equation")

    def to_records(self) -> list[dict]:
        """JSON-ready rows: complexity, loss, score, equation (sympy string), latex, selected."""
        return [{"complexity": e.complexity, "loss": e.loss, "score": e.score, "equation": e.equation,
                 "latex": e.latex(), "selected": e.selected} for e in self.rows]

    @classmethod
    def from_records(cls, records: Sequence[dict], variables: Sequence[str],
                     loss_name: str = "loss") -> ParetoTable:
        """Inverse of :meth:`to_records` (equations re-parsed safely in ``variables``)."""
        rows = [Equation(int(r["complexity"]), float(r["loss"]),
                         parse_formula(r["equation"], variables, what="saved equation", limits=INTERNAL_LIMITS),
                         float(r.get("score", 0.0)), bool(r.get("selected", False))) for r in records]
        return cls(rows, loss_name)

    def to_frame(self, variables: Sequence[str]) -> pd.DataFrame:
        """PySR's ``equations_``: one row per equation, index = position in this table, columns
        ``complexity, loss, score, equation`` (text), ``sympy_format`` (sympy expression),
        ``lambda_format`` (a :class:`CallableEquation` of X with its columns named ``variables``)
        and ``selected`` (True on the selected row). ``attrs["loss"]`` names the loss."""
        frame = pd.DataFrame({
            "complexity": pd.Series([e.complexity for e in self.rows], dtype=int),
            "loss": pd.Series([e.loss for e in self.rows], dtype=float),
            "score": pd.Series([e.score for e in self.rows], dtype=float),
            "equation": pd.Series([e.equation for e in self.rows], dtype=object),
            "sympy_format": pd.Series([e.expr for e in self.rows], dtype=object),
            "lambda_format": pd.Series([CallableEquation(e.expr, variables) for e in self.rows],
                                       dtype=object),
            "selected": pd.Series([e.selected for e in self.rows], dtype=bool),
        })
        frame.attrs["loss"] = self.loss_name
        return frame

    def to_markdown(self) -> str:
        lines = [f"| | complexity | {self.loss_name} | score | equation |", "|---|---|---|---|---|"]
        for e in self.rows:
            mark = "**>**" if e.selected else ""
            lines.append(f"| {mark} | {e.complexity} | {e.loss:.4g} | {e.score:.4g} | `{e.equation}` |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def pareto_front(candidates: Iterable[tuple[int, float, sp.Expr]]) -> list[tuple[int, float, sp.Expr]]:
    """Keep, for each complexity, the lowest loss; then drop every candidate that a simpler one
    matches or beats. Non-finite losses are dropped."""
    best: dict[int, tuple[int, float, sp.Expr]] = {}
    for c, loss, expr in candidates:
        if not math.isfinite(loss):
            continue
        if c not in best or loss < best[c][1]:
            best[c] = (c, float(loss), expr)
    front, lowest = [], math.inf
    for c in sorted(best):
        if best[c][1] < lowest:
            front.append(best[c])
            lowest = best[c][1]
    return front


def scores(complexities: Sequence[int], losses: Sequence[float]) -> np.ndarray:
    """PySR's score: -d log(loss) / d complexity from the previous equation on the front (0 first)."""
    c = np.asarray(complexities, dtype=float)
    logl = np.log(np.maximum(np.asarray(losses, dtype=float), LOSS_FLOOR))
    out = np.zeros(len(c))
    if len(c) > 1:
        out[1:] = -np.diff(logl) / np.diff(c)
    return out


def select_best(complexities: Sequence[int], losses: Sequence[float],
                tolerance: float = LOSS_TOLERANCE) -> int:
    """Index of PySR's "best": the highest score among losses <= ``tolerance`` x the lowest.

    The rows must be a front sorted by complexity. Ties go to the simpler equation.
    """
    if len(losses) == 0:
        raise ValueError("Cannot select from an empty Pareto front")
    losses = np.asarray(losses, dtype=float)
    s = scores(complexities, losses)
    ok = np.flatnonzero(losses <= tolerance * max(losses.min(), LOSS_FLOOR))
    return int(ok[np.argmax(s[ok])])


def build_table(candidates: Iterable[tuple[int, float, sp.Expr]], *, loss_name: str = "loss",
                tolerance: float = LOSS_TOLERANCE) -> ParetoTable:
    """Pareto-filter ``(complexity, loss, expr)`` candidates, score them and mark the selected row."""
    front = pareto_front(candidates)
    if not front:
        return ParetoTable([], loss_name)
    cs, ls = [f[0] for f in front], [f[1] for f in front]
    s = scores(cs, ls)
    chosen = select_best(cs, ls, tolerance)
    rows = [Equation(c, l, e, float(si), i == chosen) for i, ((c, l, e), si) in enumerate(zip(front, s))]
    return ParetoTable(rows, loss_name)


def reselect(table: ParetoTable, index: int) -> ParetoTable:
    """The same table with row ``index`` selected instead (a user override)."""
    rows = [replace(r, selected=(i == index)) for i, r in enumerate(table.rows)]
    return ParetoTable(rows, table.loss_name)
