"""``SymbolicRegression`` keeps scikit-learn's estimator contract, and ``equations_`` is PySR's table.

Every search here is operon stopped by an evaluation count on one thread (the same result on a
loaded machine), a few thousand evaluations: well under a second each.
"""

import inspect
import pickle

import numpy as np
import pandas as pd
import pytest
import sympy as sp
import torch
from sklearn.base import clone, is_regressor
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from symdistill.distill.pareto import CallableEquation, ParetoTable, build_table
from symdistill.distill.sr import SymbolicRegression
from symdistill.errors import SymdistillError
from symdistill.expr import symbols

COLUMNS = ["complexity", "loss", "score", "equation", "sympy_format", "lambda_format", "selected"]


def engine(**kw):
    return SymbolicRegression(**{"max_evaluations": 3000, "time_budget": 10, "threads": 1, "seed": 0, **kw})


@pytest.fixture(scope="module")
def data():
    """y = 2 a / b + 1 on a DataFrame whose column order differs from any sorted order."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"b": rng.uniform(1, 2, 200), "a": rng.uniform(-2, 2, 200)})
    return X, 2 * X["a"] / X["b"] + 1


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return engine().fit(X, y)


# ---- parameters --------------------------------------------------------------------------------

def test_init_stores_every_parameter_unchanged():
    names = [p for p in inspect.signature(SymbolicRegression).parameters]
    values = {name: object() for name in names}  # sentinels: any conversion would lose identity
    sr = SymbolicRegression(**values)
    assert set(sr.get_params()) == set(names)
    assert all(sr.get_params()[name] is values[name] for name in names)


def test_get_params_set_params_round_trip():
    sr = engine(max_complexity=7, loss="mse", operators=("+", "*"))
    params = sr.get_params()
    other = SymbolicRegression().set_params(**params)
    assert other.get_params() == params and other.max_complexity == 7 and other.loss == "mse"
    assert other.set_params(max_complexity=9) is other and other.max_complexity == 9


def test_set_params_suggests_the_parameter_meant():
    with pytest.raises(SymdistillError, match="Did you mean 'max_complexity'"):
        engine().set_params(max_complexty=5)


def test_clone_copies_the_parameters_and_none_of_the_fit(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "equations_") and not hasattr(copy, "n_features_in_")


def test_is_a_regressor_whose_tags_say_when_it_repeats():
    assert is_regressor(SymbolicRegression())
    assert get_tags(SymbolicRegression()).estimator_type == "regressor"
    assert get_tags(SymbolicRegression()).non_deterministic  # stopped by the clock
    assert not get_tags(engine()).non_deterministic
    assert get_tags(engine(threads=2)).non_deterministic


# ---- fit, predict, score -----------------------------------------------------------------------

def test_dataframe_columns_are_the_variable_names(fitted, data):
    X, y = data
    assert fitted.variable_names_ == ["b", "a"] and fitted.n_features_in_ == 2
    assert list(fitted.feature_names_in_) == ["b", "a"]
    assert fitted.sympy().free_symbols == set(symbols(["a", "b"]).values())
    # By name from a DataFrame (in any column order) or a mapping; by position from an array.
    expected = fitted.predict(X.to_numpy())
    np.testing.assert_allclose(expected, y, atol=1e-3)
    np.testing.assert_array_equal(fitted.predict(X[["a", "b"]]), expected)
    np.testing.assert_array_equal(fitted.predict({"a": X["a"].to_numpy(), "b": X["b"].to_numpy()}), expected)


def test_array_fit_sets_n_features_and_drops_stale_feature_names(data):
    X, y = data
    sr = engine().fit(X, y)
    sr.fit(X.to_numpy(), y)
    assert sr.n_features_in_ == 2 and sr.variable_names_ == ["x0", "x1"]
    assert not hasattr(sr, "feature_names_in_")
    sr.fit(X.to_numpy(), y, variable_names=["b", "a"])
    assert sr.variable_names_ == ["b", "a"] and not hasattr(sr, "feature_names_in_")


def test_score_is_the_r2_of_predict(fitted, data):
    X, y = data
    assert fitted.score(X, y) == pytest.approx(r2_score(y, fitted.predict(X)))
    assert fitted.score(X, y) > 0.999
    assert fitted.score(X, y + np.random.default_rng(1).normal(0, 1, len(y))) < 0.9  # a near miss scores less


def test_predict_refuses_the_wrong_number_of_columns(fitted, data):
    X, _ = data
    with pytest.raises(SymdistillError, match=r"X has 3 features, but SymbolicRegression is expecting 2"):
        fitted.predict(np.ones((4, 3)))
    with pytest.raises(SymdistillError, match=r"lacks the columns \['a'\]"):
        fitted.predict(X[["b"]])


def test_dataframe_with_mixed_column_names_is_refused(data):
    X, y = data
    with pytest.raises(SymdistillError, match="all column names strings or none"):
        engine().fit(X.rename(columns={"a": 0}), y)


def test_grid_search_picks_the_max_complexity_that_fits(data):
    X, _ = data
    y = X["a"] * X["b"] + X["b"]  # needs more than 5 operon nodes
    search = GridSearchCV(engine(max_evaluations=2000), {"max_complexity": [5, 15]}, cv=2).fit(X, y)
    assert list(search.cv_results_["param_max_complexity"]) == [5, 15]
    small, large = search.cv_results_["mean_test_score"]
    assert small < 0.99 < 0.999 < large and search.best_params_ == {"max_complexity": 15}
    assert search.best_estimator_.n_features_in_ == 2 and search.best_estimator_.max_complexity == 15


# ---- equations_ ----------------------------------------------------------------------------------

def test_equations_has_pysrs_columns_and_one_selected_row(fitted):
    eq = fitted.equations_
    assert isinstance(eq, pd.DataFrame) and list(eq.columns) == COLUMNS
    assert eq["selected"].dtype == bool and eq["selected"].sum() == 1
    best = eq[eq["selected"]].iloc[0]
    assert best["sympy_format"] == fitted.sympy() and best["equation"] == sp.sstr(fitted.sympy())
    assert best["complexity"] == fitted.best_.complexity and best["loss"] == fitted.best_.loss
    # The same rows as the ParetoTable kept in pareto_, sorted by complexity, loss decreasing.
    assert isinstance(fitted.pareto_, ParetoTable) and len(eq) == len(fitted.pareto_) >= 2
    assert list(eq["sympy_format"]) == [e.expr for e in fitted.pareto_]
    assert list(eq["score"]) == [e.score for e in fitted.pareto_]
    assert eq["complexity"].is_monotonic_increasing and eq["loss"].is_monotonic_decreasing
    assert eq.attrs["loss"] == "mae"


def test_lambda_format_agrees_with_predict_on_every_row(fitted, data):
    X, _ = data
    for i, f in enumerate(fitted.equations_["lambda_format"]):
        assert isinstance(f, CallableEquation)
        expected = fitted.predict(X, index=i)
        np.testing.assert_array_equal(np.broadcast_to(f(X), expected.shape), expected)
        np.testing.assert_array_equal(f(X.to_numpy()), expected)
        np.testing.assert_array_equal(f({"a": X["a"], "b": X["b"]}), expected)


def test_lambda_format_shows_its_formula_and_pickles(fitted, data):
    X, _ = data
    f = fitted.equations_["lambda_format"][fitted.equations_["selected"]].iloc[0]
    assert repr(f) == f"CallableEquation(f(b, a) = {sp.sstr(fitted.sympy())})"
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(f))(X), f(X))
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.equations_["lambda_format"].iloc[-1](X), fitted.predict(X, index=-1))


def test_lambda_format_evaluates_the_expression_not_its_text():
    a, b = sp.symbols("a b")
    table = build_table([(1, 2.0, sp.Integer(3)), (3, 0.5, a + b), (5, 0.4, a * b + 1)], loss_name="mse")
    frame = table.to_frame(["a", "b"])
    assert list(frame.columns) == COLUMNS and list(frame["selected"]) == [e.selected for e in table]
    frame.loc[1, "equation"] = "__import__('os').system('false')"  # the text is only for reading
    np.testing.assert_array_equal(frame["lambda_format"][1](np.array([[1.0, 2.0], [3.0, 4.0]])), [3.0, 7.0])
    np.testing.assert_array_equal(frame["lambda_format"][0](np.ones((2, 2))), [3.0, 3.0])
    empty = ParetoTable([], "mae").to_frame(["a"])
    assert list(empty.columns) == COLUMNS and len(empty) == 0


def test_the_existing_exports_still_work(fitted, data):
    X, _ = data
    assert fitted.latex() == sp.latex(fitted.sympy()) and fitted.best_ is fitted.pareto_.best
    constant = fitted.predict(X, index=0)  # row 0 is always the constant model
    assert np.all(constant == constant[0])
    torch_out = fitted.pytorch()(**{k: torch.tensor(X[k].to_numpy()) for k in ("a", "b")})
    np.testing.assert_allclose(torch_out.detach().numpy(), fitted.predict(X), rtol=1e-6)


def test_asking_before_fit_is_sklearns_not_fitted_error():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError, match="call fit"):
        SymbolicRegression().predict(np.ones((3, 2)))
    with pytest.raises(SymdistillError):  # and a one-line user error
        SymbolicRegression().sympy()


# ---- scikit-learn's own estimator checks (fits of 500 evaluations of a population of 50) -------

@parametrize_with_checks([SymbolicRegression(max_evaluations=500, time_budget=2, population_size=50)])
def test_passes_sklearns_estimator_checks(estimator, check):
    check(estimator)
