"""``SymbolicRegression``: one estimator over every SR back-end, with a PySR-like result.

    sr = SymbolicRegression(backend="operon", time_budget=10).fit(X, y, variable_names=["dx", "r"])
    sr.equations_          # DataFrame as PySR's: complexity, loss, score, equation, sympy_format,
                           # lambda_format, and `selected` marking the selected row
    sr.pareto_             # the same table as a ParetoTable (records, markdown, rows as Equation)
    sr.sympy(), sr.latex(), sr.predict(X), sr.score(X, y), sr.pytorch()

It is a scikit-learn regressor (``clone``, ``get_params``/``set_params``, ``GridSearchCV``); ``X``
may be an [n, k] array, a mapping name -> column or a pandas DataFrame (its columns name the
variables).

Every candidate the engine returns is rounded, simplified and re-scored here on the same data with
the same loss, so the table (and the selection) means the same thing for every back-end.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import sympy as sp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import DataConversionWarning, NotFittedError

from symdistill.distill.backends import DEFAULT_OPERATORS, SearchOptions, SearchRun, get_backend
from symdistill.distill.pareto import (DIGITS, Equation, ParetoTable, build_table, columns_of, complexity,
                                       evaluate, frame_names, real_matrix, refuse_sparse, simplify)
from symdistill.errors import SymdistillError, unknown_name
from symdistill.expr import FUNCTIONS, TorchExpr, symbols

LOSSES = ("mae", "mse")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def loss_value(pred: np.ndarray, y: np.ndarray, loss: str = "mae") -> float:
    """Mean absolute (or squared) error; inf when the prediction is not finite everywhere."""
    pred = np.broadcast_to(np.asarray(pred, dtype=float), y.shape)
    if not np.all(np.isfinite(pred)):
        return float("inf")
    err = pred - y
    return float(np.mean(np.abs(err)) if loss == "mae" else np.mean(err**2))


class NotFitted(SymdistillError, NotFittedError):
    """Asked for a result before ``fit`` (scikit-learn's NotFittedError, and a one-line user error)."""


def as_matrix(X, variable_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """``X`` as an [n, k] float array with k names. ``X`` may be a mapping name -> column or a
    DataFrame: ``variable_names`` (default: all its columns) picks the columns. A DataFrame without
    string column names is positional, like an array."""
    refuse_sparse(X)
    if isinstance(X, pd.DataFrame) and frame_names(X) is None:
        X = X.to_numpy()
    if isinstance(X, (Mapping, pd.DataFrame)):
        variable_names = list(variable_names) if variable_names is not None else list(X.keys())
        names = variable_names
        missing = [v for v in names if v not in X]
        if missing:
            raise SymdistillError(f"`variable_names` {missing} are not columns of X "
                                  f"(got {sorted(map(str, X.keys()))})")
        X = np.column_stack([np.asarray(X[v], dtype=float) for v in names])
    X = real_matrix(X)
    if X.ndim != 2:
        raise SymdistillError(f"Expected X of shape [n_samples, n_features] (got shape {X.shape})")
    names = list(variable_names) if variable_names is not None else [f"x{i}" for i in range(X.shape[1])]
    if len(names) != X.shape[1]:
        raise SymdistillError(f"Expected {X.shape[1]} `variable_names` (got {len(names)}: {names})")
    for v in names:
        if not _NAME.match(v) or v in FUNCTIONS or "__" in v:
            raise SymdistillError(f"`variable_names` must be plain identifiers, not functions (got {v!r})")
    if len(set(names)) != len(names):
        raise SymdistillError(f"`variable_names` must be distinct (got {names})")
    return X, names


class SymbolicRegression(RegressorMixin, BaseEstimator):
    """Symbolic regression with a Pareto table and the paper's selection rule.

    A scikit-learn regressor: ``__init__`` only stores these parameters (validated in ``fit``), so
    ``clone``, ``get_params``/``set_params`` and ``GridSearchCV`` work; ``score`` is R^2.

    Args:
        backend: ``"operon"`` (default), ``"pysr"`` (needs Julia) or ``"gplearn"`` (optional).
        operators: from :data:`symdistill.distill.backends.OPERATORS`.
        max_complexity: largest expression the engine may build, in tree nodes.
        time_budget: seconds of search.
        seed, threads: as named. ``population_size``: the engine's population.
        max_evaluations: stop after this many fitness evaluations (None: only the time budget).
            With one thread and a seed, operon then gives the same result on a loaded machine.
        patience: stop once the Pareto front has not improved for this many rounds of
            ``round_evaluations`` evaluations (operon only: warm-started rounds whose fronts are
            pooled; see :class:`symdistill.distill.backends.Plateau`); ``max_evaluations`` and
            ``time_budget`` stay caps. None (default): one search to the budget, as before. pysr and
            gplearn ignore it. ``round_evaluations``: the evaluations of one round (10,000: about two
            generations of a population of 500).
        loss: ``"mae"`` (the paper's) or ``"mse"``; the table and the selection use it.
        digits: significant digits kept in constants.
        max_samples: the search sees at most this many rows (random subset; the paper used 5,000).
        backend_options: passed to the engine untouched (its own parameter names).

    Attributes after ``fit``: ``equations_`` (pandas DataFrame, PySR's columns: complexity, loss,
    score, equation, sympy_format, lambda_format; and ``selected``, True on the selected row; see
    :meth:`ParetoTable.to_frame`), ``pareto_`` (the same as a ParetoTable), ``best_`` (Equation),
    ``variable_names_``, ``n_features_in_``, ``feature_names_in_`` (only when X was a DataFrame),
    ``n_candidates_`` (engine candidates read), ``seconds_``; what the search did: ``rounds_`` (1
    without patience), ``evaluations_`` (used; None when the engine does not say), ``stopped_``
    (``"plateau"``, ``"evaluations"``, ``"time"``, or None when unknown).
    """

    def __init__(self, backend="operon", *, operators: Sequence[str] = DEFAULT_OPERATORS,
                 max_complexity: int = 30, time_budget: float = 10.0, seed: int = 0, threads: int = 1,
                 population_size: int = 500, max_evaluations: int | None = None,
                 patience: int | None = None, round_evaluations: int = 10_000,
                 loss: str = "mae", digits: int = DIGITS,
                 max_samples: int = 5000, backend_options: dict | None = None):
        self.backend = backend
        self.operators = operators
        self.max_complexity = max_complexity
        self.time_budget = time_budget
        self.seed = seed
        self.threads = threads
        self.population_size = population_size
        self.max_evaluations = max_evaluations
        self.patience = patience
        self.round_evaluations = round_evaluations
        self.loss = loss
        self.digits = digits
        self.max_samples = max_samples
        self.backend_options = backend_options

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self._non_deterministic()
        tags.input_tags.allow_nan = True  # fit leaves out rows that are not finite
        return tags

    def _more_tags(self) -> dict:  # the same for scikit-learn < 1.6
        return {"non_deterministic": self._non_deterministic(), "allow_nan": True}

    def _non_deterministic(self) -> bool:
        """Only operon stopped by an evaluation count on one thread repeats itself (the default,
        stopped by the clock, does not)."""
        return not (self.backend == "operon" and self.max_evaluations is not None and self.threads == 1)

    def set_params(self, **params) -> SymbolicRegression:
        valid = self.get_params(deep=False)
        for key in params:
            if key not in valid:
                raise unknown_name("parameter of SymbolicRegression", key, valid)
        return super().set_params(**params)

    def options(self) -> SearchOptions:
        return SearchOptions(operators=tuple(self.operators), max_complexity=self.max_complexity,
                             time_budget=self.time_budget, seed=self.seed, threads=self.threads,
                             population_size=self.population_size,
                             max_evaluations=self.max_evaluations, patience=self.patience,
                             round_evaluations=self.round_evaluations, extra=dict(self.backend_options or {}))

    def fit(self, X, y, variable_names: Sequence[str] | None = None) -> SymbolicRegression:
        """Search ``y ~ f(X)``. ``X``: [n, k] array, mapping name -> column or DataFrame (its
        columns are the variable names unless ``variable_names`` picks some); ``y``: [n]."""
        if self.loss not in LOSSES:
            raise unknown_name("loss", self.loss, LOSSES)
        backend = get_backend(self.backend)
        options = self.options()
        named = isinstance(X, pd.DataFrame) and frame_names(X) is not None
        X, names = as_matrix(X, variable_names)
        y = target(y)
        if len(y) != len(X):
            raise SymdistillError(f"Expected y with {len(X)} values, one per row of X (got {len(y)})")
        keep = np.isfinite(y) & np.all(np.isfinite(X), axis=1)
        if keep.sum() < 10:
            raise SymdistillError(f"Expected at least 10 finite rows in X and y "
                                  f"(got n_samples={int(keep.sum())})")
        X, y = X[keep], y[keep]
        if len(y) > self.max_samples:
            idx = np.random.default_rng(self.seed).choice(len(y), self.max_samples, replace=False)
            X, y = X[idx], y[idx]
        t0 = time.perf_counter()
        backend.last_run = None  # a back-end that does not report leaves "unknown", not a stale run
        raw = backend.search(X, y, names, options)
        run = backend.last_run or SearchRun(1, None, None)
        self.rounds_, self.evaluations_, self.stopped_ = run.rounds, run.evaluations, run.stopped
        self.n_candidates_ = len(raw)
        self.pareto_ = self.table(raw, X, y, names)
        self.equations_ = self.pareto_.to_frame(names)
        self.best_ = self.pareto_.best
        self.variable_names_ = names
        self.n_features_in_ = len(names)
        if named:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):  # from an earlier fit on a DataFrame
            del self.feature_names_in_
        self.backend_ = backend.name
        self.seconds_ = time.perf_counter() - t0
        return self

    def table(self, candidates: Sequence[sp.Expr], X: np.ndarray, y: np.ndarray,
              names: Sequence[str]) -> ParetoTable:
        """Round, simplify and score candidates on (X, y); the constant model is always one."""
        columns = {v: X[:, i] for i, v in enumerate(names)}
        allowed = symbols(names)
        const = float(np.median(y) if self.loss == "mae" else np.mean(y))
        scored = [(1, loss_value(np.full_like(y, const), y, self.loss), round_float(const, self.digits))]
        seen = set()
        for expr in candidates:
            # A candidate we cannot simplify or evaluate is one fewer, not a failure (sympy can
            # overflow on e.g. exp(1e6) while it rounds constants).
            try:
                expr = sp.sympify(expr).xreplace({s: allowed[s.name] for s in sp.sympify(expr).free_symbols
                                                  if s.name in allowed})
                expr = simplify(expr, self.digits)
                key = sp.srepr(expr)
                if key in seen:
                    continue
                seen.add(key)
                loss = loss_value(evaluate(expr, columns), y, self.loss)
            except Exception:  # noqa: BLE001
                continue
            scored.append((complexity(expr), loss, expr))
            try:
                pruned = prune(expr, columns, y, self.loss, loss, self.digits)
            except Exception:  # noqa: BLE001 - keep the unpruned candidate
                pruned = None
            if pruned is not None:
                scored.append(pruned)
        return build_table(scored, loss_name=self.loss)

    # ---- exports ----------------------------------------------------------------------------
    def _fitted(self) -> SymbolicRegression:
        if not hasattr(self, "pareto_"):
            raise NotFitted(f"This {type(self).__name__} is not fitted yet: call fit() before asking "
                            "for equations")
        return self

    def _row(self, index: int | None) -> Equation:
        self._fitted()
        return self.best_ if index is None else self.pareto_[index]

    def sympy(self, index: int | None = None) -> sp.Expr:
        """The selected expression (or row ``index`` of ``equations_``)."""
        return self._row(index).expr

    def latex(self, index: int | None = None) -> str:
        return sp.latex(self.sympy(index))

    def predict(self, X, index: int | None = None) -> np.ndarray:
        """The selected equation (or row ``index``) on ``X``: an [n, k] array in ``variable_names_``
        order, a mapping name -> column or a DataFrame. Returns [n]."""
        return evaluate(self.sympy(index), columns_of(X, self.variable_names_, type(self).__name__))

    def pytorch(self, index: int | None = None, *, trainable: bool = True) -> TorchExpr:
        """The expression as a torch module with (by default) trainable constants."""
        return TorchExpr(self.sympy(index), self._fitted().variable_names_, trainable=trainable)


def target(y) -> np.ndarray:
    """``y`` as an [n] float array; a column vector [n, 1] is flattened with scikit-learn's warning."""
    if y is None:
        raise SymdistillError("SymbolicRegression requires y to be passed, but the target y is None")
    y = real_matrix(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected: flattened to shape "
                      f"({len(y)},)", DataConversionWarning, stacklevel=3)
        y = y[:, 0]
    if y.ndim != 1:
        raise SymdistillError(f"Expected y of shape [n_samples] (got shape {y.shape})")
    return y


def prune(expr: sp.Expr, columns, y, loss_name: str, loss: float, digits: int,
          tolerance: float = 1e-3):
    """Drop every constant (a float, or a number added in a sum) whose removal costs less than
    ``tolerance`` (relative) of the loss or less than rounding to ``digits`` digits does; returns
    ``(complexity, loss, pruned)``, or None when no constant can go."""
    changed = False
    # Constant factors set to zero, and constant terms of sums dropped (cheap: simplified once).
    trials = [{f: sp.Integer(0)} for f in sorted(expr.atoms(sp.Float), key=lambda f: abs(float(f)))]
    trials += [{a: a - t} for a in expr.atoms(sp.Add) for t in a.args if t.is_Number]
    for change in trials:
        try:
            trial = expr.xreplace(change)
        except (OverflowError, ValueError, ZeroDivisionError):  # e.g. exp(1e6) evaluated by sympy
            continue
        if trial == expr or not trial.free_symbols:
            continue
        try:
            trial_loss = loss_value(evaluate(trial, columns), y, loss_name)
        except Exception:  # noqa: BLE001 - as in table(): skip what cannot be evaluated
            continue
        # relative to the loss, or below what rounding to `digits` digits already costs
        if trial_loss <= loss * (1 + tolerance) + 10.0 ** -digits * float(np.mean(np.abs(y))):
            expr, loss, changed = trial, trial_loss, True
    if not changed:
        return None
    expr = simplify(expr, digits)
    return complexity(expr), loss_value(evaluate(expr, columns), y, loss_name), expr


def round_float(value: float, digits: int) -> sp.Expr:
    v = float(f"{value:.{digits}g}")
    return sp.Integer(int(v)) if v == int(v) and abs(v) < 1e6 else sp.Float(v, digits)
