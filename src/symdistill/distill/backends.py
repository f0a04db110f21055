"""Symbolic-regression engines behind one interface.

Each back-end turns ``(X, y, variable names, SearchOptions)`` into candidate sympy expressions; the
caller (:class:`symdistill.distill.sr.SymbolicRegression`) scores them on the data and builds the
Pareto table, so every engine is judged by the same loss, complexity and selection rule.

- ``operon`` (default): pyoperon, a C++ GP engine with local constant optimisation, installed with
  symdistill. Multi-objective (accuracy, length), so it returns a whole front.
- ``pysr``: used only when ``import pysr`` works (it needs a Julia installation).
- ``gplearn``: optional (``pip install gplearn``), for comparisons; slower and no constant
  optimisation.

Plateau stopping (``SearchOptions.patience``) is operon's alone: the search runs in warm-started
rounds and stops once its front has stopped improving (:class:`Plateau`). pysr and gplearn ignore
``patience`` and run to their evaluation or time budget.

Expressions come back as strings or token lists and are turned into sympy by
:func:`symdistill.expr.parse_formula` or by building sympy nodes directly: never by ``eval``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from symdistill.errors import SymdistillError, check_positive, unknown_name
from symdistill.expr import INTERNAL_LIMITS, parse_formula

#: Operators a search may use (user-facing names).
OPERATORS = ("+", "-", "*", "/", "^", "exp", "log", "sqrt", "square", "abs", "sin", "cos", "tanh")
DEFAULT_OPERATORS = ("+", "-", "*", "/", "exp", "log", "square")


@dataclass(frozen=True)
class SearchOptions:
    """What every back-end understands. ``extra`` goes to the engine untouched (its own names)."""

    operators: tuple[str, ...] = DEFAULT_OPERATORS
    max_complexity: int = 30     # largest expression, in tree nodes
    time_budget: float = 10.0    # seconds of search
    seed: int = 0
    threads: int = 1
    population_size: int = 500
    max_evaluations: int | None = None  # stop after this many (a budget independent of machine load)
    # Plateau stopping (operon only): search in warm-started rounds of `round_evaluations` and stop
    # after `patience` rounds in a row without improving the front (:class:`Plateau`); the evaluation
    # and time budgets stay caps. None: one search to the budget.
    patience: int | None = None
    round_evaluations: int = 10_000  # ~2 generations of a population of 500
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "operators", tuple(self.operators))
        for op in self.operators:
            if op not in OPERATORS:
                raise unknown_name("operator", op, OPERATORS)
        for needed in ("+", "*"):
            if needed not in self.operators:
                raise SymdistillError(f"`operators` must include {needed!r} (got {list(self.operators)})")
        check_positive("max_complexity", self.max_complexity)
        check_positive("time_budget", self.time_budget)
        check_positive("threads", self.threads)
        check_positive("population_size", self.population_size)
        check_positive("max_evaluations", self.max_evaluations, optional=True)
        check_plateau("patience", self.patience, "round_evaluations", self.round_evaluations)


def check_plateau(patience_name: str, patience, round_name: str, round_evaluations) -> None:
    """One-line errors unless patience is None or a whole number >= 1 and the round size is one."""
    def count(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1
    if patience is not None and not count(patience):
        raise SymdistillError(f"`{patience_name}` must be a whole number of rounds >= 1, or None to search "
                              f"to the budget without plateau stopping (got {patience!r})")
    if not count(round_evaluations):
        raise SymdistillError(f"`{round_name}` must be a whole number of evaluations >= 1 (got "
                              f"{round_evaluations!r})")


@dataclass(frozen=True)
class SearchRun:
    """What a search did: warm-started rounds run (1 without plateau stopping), evaluations used
    (operon: residual + Jacobian evaluations; None when the engine does not say) and why it stopped:
    ``"plateau"``, ``"evaluations"`` (budget used up), ``"time"`` (time budget) or None (unknown)."""

    rounds: int
    evaluations: int | None
    stopped: str | None


class Plateau:
    """Has a search's front stopped improving?

    The front after a round is the curve ``best(L)``: the lowest error ``1 - R^2`` (operon's, after its
    linear scaling) among all candidates seen so far (every round's) of length <= L. A round
    *improves* it when, for some length L, its candidates lower ``best(L)`` by more than ``rtol`` of it
    and by more than ``atol`` (so an error already at rounding level, ~1e-10, cannot keep
    "improving"). A first candidate at a length shorter than any before is an improvement.
    :meth:`update` says when ``patience`` rounds in a row did not improve.

    Why 10 %: on a trained network's messages, long formulas keep fitting the network's noise a few
    per cent better every round (measured: spring-2D, 1e-4 -> 8e-5 over nine rounds), so with 1 % no
    search ever stopped early; finding a law lowers the error by orders of magnitude."""

    def __init__(self, patience: int, *, rtol: float = 0.1, atol: float = 1e-10):
        self.patience, self.rtol, self.atol = patience, rtol, atol
        self.points: list[tuple[int, float]] = []  # (length, error) of every candidate so far
        self.stale = 0  # rounds in a row without improvement

    def best(self, length: int) -> float:
        return min((e for n, e in self.points if n <= length), default=math.inf)

    def update(self, points: Sequence[tuple[int, float]]) -> bool:
        """Add one round's (length, error) points; True when the search should stop."""
        # Checking each new point at its own length is enough: best(L) falls with L, so the drop a
        # point (n, e) makes is largest at L = n.
        improved = False
        for n, e in points:
            old = self.best(n)
            if math.isfinite(old):
                improved |= e < old - max(self.rtol * old, self.atol)
            else:
                improved |= math.isfinite(e)
        self.points += [(n, e) for n, e in points if math.isfinite(e)]
        self.stale = 0 if improved else self.stale + 1
        return self.stale >= self.patience


def union_front(candidates: dict[str, tuple[int, float]]) -> list[str]:
    """The candidates (formula -> (length, error)) that no other one dominates: none is as short and
    more accurate, or shorter and as accurate. The same rule keeps a formula on an engine's front;
    applied to every round's front together, it keeps a formula an early round found unless a later
    round found a better one, and it keeps the table the caller simplifies as small as one front."""
    return [t for t, (n, e) in candidates.items()
            if not any((m <= n and f < e) or (m < n and f <= e) for m, f in candidates.values())]


def round_seed(seed: int, k: int) -> int:
    """The engine's seed for round k of a plateau search: ``seed`` itself for the first round (which
    then starts as a plain search would), fixed distinct values derived from it after."""
    return int(seed) if k == 0 else int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0])


def rewrite_calls(text: str, templates: dict[str, str]) -> str:
    """Replace ``name(arg)`` by ``templates[name].format(arg)``, matching parentheses, e.g.
    ``square(x + 1)`` -> ``((x + 1))^2``. Applied innermost-last, repeatedly."""
    for name, template in templates.items():
        start = 0
        while True:
            i = text.find(name + "(", start)
            if i < 0:
                break
            if i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
                start = i + 1
                continue
            depth, j = 0, i + len(name)
            for j in range(i + len(name), len(text)):
                depth += text[j] == "("
                depth -= text[j] == ")"
                if depth == 0:
                    break
            if depth != 0:
                raise SymdistillError(f"Unbalanced parentheses in back-end output {text!r}")
            inner = text[i + len(name) + 1:j]
            text = text[:i] + template.format(inner) + text[j + 1:]
            start = i
    return text


_CALL_TEMPLATES = {"square": "(({}))^2", "cube": "(({}))^3", "neg": "(-({}))", "inv": "(1/({}))"}


def parse_output(text: str, variables: Sequence[str]) -> sp.Expr:
    """An engine's formula string as sympy (safe parser; helper calls like square() rewritten)."""
    return parse_formula(rewrite_calls(text, _CALL_TEMPLATES), list(variables), what="back-end formula",
                         limits=INTERNAL_LIMITS)


class Backend:
    """Base: ``search`` returns candidate expressions for ``y ~ f(X)`` and leaves a
    :class:`SearchRun` in ``last_run``."""

    name = "?"
    last_run: SearchRun | None = None

    def search(self, X: np.ndarray, y: np.ndarray, variables: Sequence[str],
               options: SearchOptions) -> list[sp.Expr]:
        raise NotImplementedError


class OperonBackend(Backend):
    name = "operon"
    _SYMBOLS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "^": "pow", "exp": "exp", "log": "log",
                "sqrt": "sqrt", "square": "square", "abs": "abs", "sin": "sin", "cos": "cos",
                "tanh": "tanh"}

    def search(self, X, y, variables, options):
        from pyoperon.sklearn import SymbolicRegressor

        symbols = ",".join(["constant", "variable"] + [self._SYMBOLS[o] for o in options.operators])
        params = dict(
            allowed_symbols=symbols, objectives=["r2", "length"], max_length=options.max_complexity,
            max_depth=max(10, options.max_complexity // 2), max_time=max(1, int(round(options.time_budget))),
            n_threads=options.threads, random_state=options.seed, population_size=options.population_size,
            generations=10**6, max_evaluations=options.max_evaluations or 10**9, optimizer_iterations=10,
            epsilon=1e-6,
        )
        params.update(options.extra)
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        if options.patience is not None:
            return self._search_rounds(SymbolicRegressor(**(params | {"warm_start": True})), X, y, variables,
                                       options)
        reg = SymbolicRegressor(**params)
        t0 = time.monotonic()
        reg.fit(X, y)
        stopped = "time" if time.monotonic() - t0 >= options.time_budget else "evaluations"
        self.last_run = SearchRun(1, _evaluations(reg), stopped)
        # The final population is a larger pool than its first front; the caller keeps the front.
        return self._parse([self._text(reg, m["tree"], variables) for m in reg.pareto_front_], variables)

    def _search_rounds(self, reg, X, y, variables, options) -> list[sp.Expr]:
        """Warm-started rounds until the front stops improving or a budget is used up. Each round
        continues from the last one's final population with its own seed (the first round is the
        plain search's start); the candidates are the front of the union of every round's front
        (:func:`union_front`)."""
        plateau, texts = Plateau(options.patience), {}
        deadline = time.monotonic() + options.time_budget
        budget = options.max_evaluations
        planned, used, rounds, stopped = 0, 0, 0, "evaluations"
        while budget is None or planned < budget:
            left = deadline - time.monotonic()
            if left <= 0:
                stopped = "time"
                break
            this = options.round_evaluations
            if budget is not None:
                this = min(this, budget - planned)
            reg.set_params(max_evaluations=this, max_time=max(1, math.ceil(left)),
                           random_state=round_seed(options.seed, rounds))
            reg.fit(X, y)
            planned, used, rounds = planned + this, used + (_evaluations(reg) or 0), rounds + 1
            points = []
            for m in reg.pareto_front_:
                error = 1.0 + float(m["objective_values"][0])  # objectives: -R^2, length
                points.append((int(m["length"]), max(error, 0.0) if np.isfinite(error) else math.inf))
                texts.setdefault(self._text(reg, m["tree"], variables), points[-1])  # ordered, no repeats
            if plateau.update(points):
                stopped = "plateau"
                break
        if stopped != "plateau" and time.monotonic() >= deadline:
            stopped = "time"
        self.last_run = SearchRun(rounds, used, stopped)
        return self._parse(union_front(texts), variables)

    @staticmethod
    def _text(reg, tree, variables) -> str:
        with warnings.catch_warnings():  # "Model contains no variables": a constant is fine
            warnings.simplefilter("ignore")
            return reg.get_model_string(tree, 8, list(variables))

    @staticmethod
    def _parse(texts, variables) -> list[sp.Expr]:
        out = []
        for text in texts:
            try:
                out.append(parse_output(text, variables))
            except SymdistillError:
                continue  # an engine formula we cannot read is one candidate fewer, not a failure
        return out


def _evaluations(reg) -> int | None:
    """Evaluations an operon fit used: what its budget counts (residual and Jacobian evaluations)."""
    stats = getattr(reg, "stats_", {})
    try:
        return int(stats["residual_evaluations"]) + int(stats["jacobian_evaluations"])
    except (KeyError, TypeError, ValueError):
        return None


class PySRBackend(Backend):
    name = "pysr"
    _BINARY = {"+": "+", "-": "-", "*": "*", "/": "/", "^": "^"}
    _UNARY = {"exp": "exp", "log": "log", "sqrt": "sqrt", "square": "square", "abs": "abs",
              "sin": "sin", "cos": "cos", "tanh": "tanh"}

    def search(self, X, y, variables, options):
        try:
            import pysr
        except Exception:  # ImportError, or a broken Julia installation raising anything at import
            raise SymdistillError(
                "The `pysr` back-end needs PySR and a Julia installation (pip install pysr); "
                "use backend='operon' (installed) instead"
            ) from None
        params = dict(
            binary_operators=[self._BINARY[o] for o in options.operators if o in self._BINARY],
            unary_operators=[self._UNARY[o] for o in options.operators if o in self._UNARY],
            maxsize=options.max_complexity, timeout_in_seconds=options.time_budget,
            niterations=10**6, random_state=options.seed, procs=options.threads,
            max_evals=options.max_evaluations, model_selection="best",
            elementwise_loss="L1DistLoss()", verbosity=0, progress=False,
        )  # untested here (no Julia): only long-standing PySR options
        params.update(options.extra)
        model = pysr.PySRRegressor(**params)
        model.fit(np.asarray(X, dtype=float), np.asarray(y, dtype=float), variable_names=list(variables))
        self.last_run = SearchRun(1, None, None)  # patience is ignored: PySR runs to its budget
        out = []
        for text in model.equations_["equation"]:
            try:
                out.append(parse_output(str(text), variables))
            except SymdistillError:
                continue
        return out


class GplearnBackend(Backend):
    name = "gplearn"
    _FUNCTIONS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "log": "log", "sqrt": "sqrt",
                  "abs": "abs", "sin": "sin", "cos": "cos"}
    # gplearn's protected log and sqrt act on |x|; its division is protected near 0 (ignored here).
    _SYMPY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
              "div": lambda a, b: a / b, "log": lambda a: sp.log(sp.Abs(a)),
              "sqrt": lambda a: sp.sqrt(sp.Abs(a)), "abs": sp.Abs, "neg": lambda a: -a,
              "inv": lambda a: 1 / a, "sin": sp.sin, "cos": sp.cos}

    def search(self, X, y, variables, options):
        try:
            from gplearn.genetic import SymbolicRegressor
        except ImportError:
            raise SymdistillError(
                "The `gplearn` back-end needs gplearn (pip install gplearn); "
                "use backend='operon' (installed) instead"
            ) from None
        functions = tuple(self._FUNCTIONS[o] for o in options.operators if o in self._FUNCTIONS)
        params = dict(population_size=options.population_size, generations=1, function_set=functions,
                      metric="mean absolute error", parsimony_coefficient=1e-3,
                      random_state=options.seed, n_jobs=options.threads, warm_start=True,
                      init_depth=(2, 5), const_range=(-2.0, 2.0))
        params.update(options.extra)
        reg = SymbolicRegressor(**params)
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        deadline = time.monotonic() + options.time_budget
        most = (max(1, options.max_evaluations // options.population_size)
                if options.max_evaluations else 10**6)
        generations = 0
        while generations < most:  # gplearn has no time limit: grow the run a generation at a time
            generations += 1
            reg.set_params(generations=generations)
            reg.fit(X, y)
            if time.monotonic() >= deadline:
                break
        # patience is ignored: gplearn runs to its budget (its generations are not rounds of a front)
        stopped = "time" if time.monotonic() >= deadline else "evaluations"
        self.last_run = SearchRun(1, generations * options.population_size, stopped)
        syms = [sp.Symbol(v) for v in variables]
        last = [p for p in reg._programs[-1] if p is not None]
        out = []
        for prog in sorted(last, key=lambda p: p.raw_fitness_)[:50]:  # each is simplified later
            if prog.length_ <= options.max_complexity:
                out.append(self._to_sympy(prog.program, syms))
        return out

    def _to_sympy(self, program: list, syms: list[sp.Symbol]) -> sp.Expr:
        """gplearn programs are prefix token lists: functions, feature indices, float constants."""
        def walk(i: int):
            node = program[i]
            if isinstance(node, (int, np.integer)):
                return syms[int(node)], i + 1
            if isinstance(node, float):
                return sp.Float(node), i + 1
            args, j = [], i + 1
            for _ in range(node.arity):
                a, j = walk(j)
                args.append(a)
            return self._SYMPY[node.name](*args), j
        expr, _ = walk(0)
        return expr


BACKENDS: dict[str, type[Backend]] = {
    "operon": OperonBackend, "pysr": PySRBackend, "gplearn": GplearnBackend,
}


def get_backend(name: str | Backend) -> Backend:
    if isinstance(name, Backend):
        return name
    if name not in BACKENDS:
        raise unknown_name("SR back-end", name, BACKENDS)
    return BACKENDS[name]()


def available_backends() -> list[str]:
    """Back-ends importable here (pysr counts only when its import, which starts Julia, works)."""
    out = ["operon"]
    for mod, name in (("gplearn", "gplearn"), ("pysr", "pysr")):
        try:
            __import__(mod)
            out.append(name)
        except Exception:
            pass
    return out

