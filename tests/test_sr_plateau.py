"""Plateau stopping: a search in warm-started rounds that stops once its Pareto front stops improving."""

import numpy as np
import pytest
import sympy as sp

from symdistill.distill.backends import (OperonBackend, Plateau, SearchOptions, parse_output, round_seed,
                                        union_front)
from symdistill.distill.session import DistillConfig, _sr, search_runs
from symdistill.distill.sr import SymbolicRegression
from symdistill.errors import SymdistillError


def inverse_square_plus_linear(n=500, seed=0):
    """y = a/b^2 + 0.3 b: operon needs several rounds of 10,000 evaluations to find it exactly."""
    X = np.random.default_rng(seed).uniform(0.5, 2.0, size=(n, 2))
    return X, X[:, 0] / X[:, 1] ** 2 + 0.3 * X[:, 1]


@pytest.fixture(scope="module")
def plateau_fit():
    X, y = inverse_square_plus_linear()
    return SymbolicRegression(time_budget=60, max_evaluations=100_000, patience=2, seed=0).fit(
        X, y, variable_names=["a", "b"])


def test_patience_stops_before_the_evaluation_cap_with_the_exact_formula(plateau_fit):
    sr = plateau_fit
    assert sr.stopped_ == "plateau" and 2 < sr.rounds_ < 10 and sr.evaluations_ < 100_000
    a, b = sp.symbols("a b", real=True)
    assert sr.best_.loss < 1e-9
    assert sp.simplify(sp.nsimplify(sr.sympy(), rational=True) - (a / b**2 + sp.Rational(3, 10) * b)) == 0


def test_without_patience_one_search_runs_to_the_budget_as_the_first_round_would():
    # The first round of a plateau search is the plain search: same seed, same budget, same front.
    X, y = inverse_square_plus_linear()
    plain, backend = SearchOptions(time_budget=30, max_evaluations=10_000), OperonBackend()
    fixed = backend.search(X, y, ["a", "b"], plain)
    assert backend.last_run.rounds == 1 and backend.last_run.stopped == "evaluations"
    one_round = backend.search(X, y, ["a", "b"], SearchOptions(time_budget=30, max_evaluations=10_000,
                                                               patience=1, round_evaluations=10_000))
    assert [sp.srepr(e) for e in one_round] == [sp.srepr(e) for e in fixed]
    assert SymbolicRegression(max_evaluations=10_000).fit(X, y).rounds_ == 1


def test_rounds_keep_the_front_of_every_round_and_repeat_with_the_seed(monkeypatch):
    from pyoperon.sklearn import SymbolicRegressor

    fronts, fit = [], SymbolicRegressor.fit

    def recording_fit(self, X, y):  # each round's front: formula -> (length, 1 - R^2)
        out = fit(self, X, y)
        fronts.append({self.get_model_string(m["tree"], 8, ["a", "b"]):
                       (m["length"], max(0.0, 1 + m["objective_values"][0])) for m in self.pareto_front_})
        return out

    monkeypatch.setattr(SymbolicRegressor, "fit", recording_fit)
    X, y = inverse_square_plus_linear(seed=1)
    backend, options = OperonBackend(), SearchOptions(time_budget=30, max_evaluations=50_000, patience=9)
    found = backend.search(X, y, ["a", "b"], options)
    run = backend.last_run
    assert run.rounds == len(fronts) == 5 and run.stopped == "evaluations"  # patience 9 not reached
    union = {}
    for front in fronts:
        for text, point in front.items():
            union.setdefault(text, point)
    kept = union_front(union)
    assert [sp.srepr(e) for e in found] == [sp.srepr(parse_output(t, ["a", "b"])) for t in kept]
    # the union matters: a formula of an early round that the last round's front lost is kept
    assert [t for front in fronts[:-1] for t in front if t in kept and t not in fronts[-1]]
    again = backend.search(X, y, ["a", "b"], options)
    assert [sp.srepr(e) for e in again] == [sp.srepr(e) for e in found] and backend.last_run == run


def test_union_front_drops_only_dominated_formulas():
    candidates = {"early": (5, 0.2), "dominated": (7, 0.3), "tie_longer": (9, 0.2), "late": (9, 0.01),
                  "exact": (13, 0.0), "exact_longer": (15, 0.0)}
    assert union_front(candidates) == ["early", "late", "exact"]


def test_time_budget_caps_a_plateau_search():
    X, y = inverse_square_plus_linear()
    sr = SymbolicRegression(time_budget=0.01, max_evaluations=100_000, patience=5).fit(X, y)
    assert sr.rounds_ == 1 and sr.stopped_ == "time"


def test_plateau_counts_only_drops_beyond_the_tolerance():
    p = Plateau(2)  # rtol 10 %
    assert not p.update([(5, 0.5), (9, 0.1)])   # a first front improves on nothing
    assert not p.update([(9, 0.091)])           # 9 % below best(9) = 0.1: stale 1
    assert p.stale == 1
    assert not p.update([(12, 0.08)])           # 12 % below best(12) = 0.091: improved
    assert p.stale == 0
    assert not p.update([(20, 0.1), (3, 2.0)])  # nothing better at 20, but a first candidate as short as 3
    assert p.stale == 0
    assert not p.update([(30, 0.0725)])         # 9.4 % below best(30) = 0.08: stale 1
    assert p.update([(9, 0.09)])                # 1 % below best(9): stale 2, stop


def test_plateau_ignores_drops_below_the_absolute_floor():
    p = Plateau(1)
    p.update([(5, 1e-11)])
    assert p.update([(5, 1e-13)])  # 99 % lower, but both are exact to rounding


def test_round_seeds_are_fixed_and_distinct():
    seeds = [round_seed(s, k) for s in range(3) for k in range(20)]
    assert round_seed(7, 0) == 7 and round_seed(7, 3) == round_seed(7, 3)
    assert len(set(seeds)) == len(seeds)


def test_distill_config_passes_patience_to_every_search():
    c = DistillConfig(sr_patience=3, sr_round_evaluations=5_000)
    sr = _sr(c, 10.0, evaluations=c.node_evaluations)
    assert (sr.patience, sr.round_evaluations, sr.max_evaluations) == (3, 5_000, 25_000)
    assert _sr(DistillConfig(), 10.0).patience is None


def test_search_runs_record_rounds_evaluations_and_why_it_stopped(plateau_fit):
    (run,) = search_runs([plateau_fit])
    assert run["stopped"] == "plateau" and run["rounds"] == plateau_fit.rounds_
    assert run["evaluations"] == plateau_fit.evaluations_ and run["seconds"] > 0


@pytest.mark.parametrize("kw, name", [(dict(patience=0), "patience"), (dict(patience=1.5), "patience"),
                                      (dict(patience=True), "patience"),
                                      (dict(round_evaluations=0), "round_evaluations")])
def test_bad_plateau_options_name_the_argument_in_one_line(kw, name):
    with pytest.raises(SymdistillError) as err:
        SymbolicRegression(**kw).fit(np.ones((20, 1)), np.arange(20.0))
    assert f"`{name}` must be" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SymdistillError, match=f"`sr_{name}` must be"):
        DistillConfig(**{f"sr_{k}": v for k, v in kw.items()})
