"""Symbolic-regression engines behind one interface.

Each back-end turns ``(X, y, variable names, SearchOptions)`` into candidate sympy expressions; the
caller (:class:`symdistill.distill.sr.SymbolicRegression`) scores them on the data and builds the
Pareto table, so every engine is judged by the same loss, complexity and selection rule.

- ``operon`` (default): pyoperon, a C++ GP engine with local constant optimisation, installed with
  symdistill. Multi-objective (accuracy, length), so it returns a whole front.
- ``pysr``: used only when ``import pysr`` works (it needs a Julia installation).
- ``gplearn``: optional (``pip install gplearn``), for comparisons; slower and no constant
  optimisation.

Expressions come back as strings or token lists and are turned into sympy by
:func:`symdistill.expr.parse_formula` or by building sympy nodes directly: never by ``eval``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from symdistill.errors import SymdistillError, check_positive, unknown_name
from symdistill.expr import parse_formula

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
    return parse_formula(rewrite_calls(text, _CALL_TEMPLATES), list(variables), what="back-end formula")


class Backend:
    """Base: ``search`` returns candidate expressions for ``y ~ f(X)``."""

    name = "?"

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
        reg = SymbolicRegressor(**params)
        reg.fit(np.asarray(X, dtype=float), np.asarray(y, dtype=float))
        # The final population is a larger pool than its first front; the caller keeps the front.
        models = [m["tree"] for m in reg.pareto_front_]
        out = []
        for tree in models:
            try:
                with warnings.catch_warnings():  # "Model contains no variables": a constant is fine
                    warnings.simplefilter("ignore")
                    text = reg.get_model_string(tree, 8, list(variables))
                out.append(parse_output(text, variables))
            except SymdistillError:
                continue  # an engine formula we cannot read is one candidate fewer, not a failure
        return out


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

