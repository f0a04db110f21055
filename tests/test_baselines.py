"""The sparse-regression baseline recovers in-library laws exactly and no law outside its library."""

import numpy as np
import pytest
import sympy as sp

from symdistill.baselines import LIBRARY, SparsePairRegression, fit_law
from symdistill.distill.verify import VerifyOptions, verify
from symdistill.errors import SymdistillError
from symdistill.expr import symbols
from symdistill.simulate import get_law, simulate

S = symbols(["r", "m1", "m2", "q1", "q2"])
SMALL = dict(n_sims=20, n_steps=20)


def snapshots(law, dim=2, seed=0):
    """(pos, vel, acc, mass, charge) as [B, N, D] / [B, N] snapshots of a small simulation."""
    t = simulate(law, n_bodies=4, dim=dim, seed=seed, **SMALL)
    flat = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731
    per_step = lambda a: np.repeat(a, t.pos.shape[1], axis=0)  # noqa: E731
    return flat(t.pos), flat(t.vel), flat(t.acc), per_step(t.mass), per_step(t.charge)


def ratio_spread(expr, truth, rng):
    """Relative spread of expr / truth over random pair inputs, r from 0.05 to 10 (0 when
    proportional). Wider than the data's range: a law is its form, not a local fit."""
    names = [S[k] for k in ("r", "m1", "m2", "q1", "q2")]
    ratio = sp.lambdify(names, expr / truth, "numpy")
    n = 200
    r = np.exp(rng.uniform(np.log(0.05), np.log(10), n))
    vals = ratio(r, np.exp(rng.normal(size=n)), np.exp(rng.normal(size=n)),
                 rng.choice([-1.0, 1.0], n), rng.choice([-1.0, 1.0], n))
    vals = np.broadcast_to(vals, (n,))
    return np.std(vals) / abs(np.mean(vals))


@pytest.mark.parametrize("law, terms", [("spring", {"1", "r"}), ("r2", {"m1*m2/r**2"})])
def test_recovers_in_library_law_exactly_on_clean_data(law, terms):
    model, _ = fit_law(law, 2, **SMALL)
    truth = get_law(law).force_magnitude_expr()
    ratio = sp.nsimplify(sp.simplify(model.scalar_ / truth), tolerance=1e-3)
    assert ratio == 1, f"{model.scalar_} vs {truth}"
    assert {model.terms_[k] for k in model.support_} == terms  # every other library term dropped
    assert model.node_terms_ == {}


def test_recovers_damping_as_a_velocity_term_with_its_coefficient():
    model, _ = fit_law("damped", 2, **SMALL)
    assert sp.simplify(model.scalar_ - (2 - 2 * S["r"])) == 0
    assert model.node_terms_ == {"v": pytest.approx(-0.5, rel=1e-3)}


def test_recovered_formulas_pass_the_strict_verdict():
    model, _ = fit_law("r2", 3, **SMALL)
    res = verify(model.force_formulas(3), "r2", 3, VerifyOptions(n_groups=8, per_group=300))
    assert res.recovered, res.summary()


@pytest.mark.parametrize("potential", [
    "q1*q2*exp(-r)/r",  # screened Coulomb: close to q1 q2 / r^2 up close, which is in the library
    "-m1*m2/r**1.5",    # a near miss: force ~ r^-2.5, between two library powers
])
def test_law_outside_library_is_not_recovered(potential):
    model, _ = fit_law(potential, 2, **SMALL)
    truth = get_law(potential=potential).force_magnitude_expr()
    assert S["r"] in sp.simplify(model.scalar_ / truth).free_symbols, model.scalar_
    assert ratio_spread(model.scalar_, truth, np.random.default_rng(0)) > 0.01, model.scalar_
    assert len(model.support_) > 1  # it has to patch the law together from several terms


def test_prediction_reproduces_training_accelerations_and_third_law():
    pos, vel, acc, mass, charge = snapshots("charge")
    model = SparsePairRegression().fit(pos, vel, acc, mass, charge)
    pred = model.predict(pos, vel, mass, charge)
    np.testing.assert_allclose(pred, acc, rtol=1e-6, atol=1e-8 * np.abs(acc).max())
    total_force = (mass[..., None] * pred).sum(1)  # pair forces cancel in every snapshot
    assert np.abs(total_force).max() < 1e-8 * np.abs(mass[..., None] * pred).max()


def test_library_is_fixed_and_has_forty_pair_terms():
    assert len(LIBRARY) == 40 and len(set(LIBRARY)) == 40
    assert all(t.free_symbols <= set(S.values()) for t in LIBRARY)


@pytest.mark.parametrize("which, bad, message", [
    ("pos", lambda a: a[..., 0], "`pos`"),
    ("acc", lambda a: a[:, :3], "`acc`"),
    ("mass", lambda a: a[:, :, None], "`mass`"),
    ("charge", lambda a: a[:-1], "`charge`"),
    ("mass", lambda a: -a, "`mass` must be > 0"),
    ("vel", lambda a: np.where(a > 1, np.nan, a), "`vel` holds non-finite"),
])
def test_bad_input_names_the_argument(which, bad, message):
    args = dict(zip(("pos", "vel", "acc", "mass", "charge"), snapshots("spring")))
    args[which] = bad(args[which])
    with pytest.raises(SymdistillError, match=message):
        SparsePairRegression().fit(**args)


def test_bad_options_and_unfitted_use_are_one_line_errors():
    data = snapshots("spring")
    with pytest.raises(SymdistillError, match=r"`library` term .* uses \['x'\]"):
        SparsePairRegression(library=[sp.Symbol("x") * S["r"]]).fit(*data)
    with pytest.raises(SymdistillError, match="`threshold`"):
        SparsePairRegression(threshold=2).fit(*data)
    with pytest.raises(SymdistillError, match="not fitted"):
        SparsePairRegression().force_formulas(2)
