"""Verification decides recovery up to what distillation cannot identify (PAPER.md §4)."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from symdistill.distill.verify import VerifyOptions, verify
from symdistill.errors import SymdistillError
from symdistill.expr import symbols
from symdistill.simulate.potentials import get_law

S = symbols(["dx", "dy", "dz", "r", "m1", "m2", "q1", "q2"])
FAST = VerifyOptions(n_groups=8, per_group=300)


def mixed(law, dim, A, b, factor=1):
    """Messages A F + b (times a factor) as sympy formulas, from the law's own ground truth."""
    F = get_law(law).force_expr(dim)
    return [factor * sum(A[k][c] * F[c] for c in range(dim)) + b[k] for k in range(len(A))]


@pytest.mark.parametrize("law", ["spring", "r1", "r2", "charge", "discontinuous"])
@pytest.mark.parametrize("dim", [2, 3])
def test_rotated_scaled_shifted_truth_is_recovered(law, dim):
    rng = np.random.default_rng(dim)
    A = rng.normal(size=(dim, dim)) * 3
    b = rng.normal(size=dim)
    res = verify(mixed(law, dim, A, b), law, dim, FAST)
    assert res.recovered, res.summary()
    assert res.failed == []
    # The fitted common map is the one we put in (up to the receiver factor's scale).
    scale = np.linalg.norm(A) / np.linalg.norm(res.A)
    np.testing.assert_allclose(res.A * scale, A, atol=1e-3 * np.abs(A).max())


@pytest.mark.parametrize("factor", [1 / S["m1"], S["m1"] ** 2, S["q1"]])
def test_factor_of_receiver_properties_only_is_recovered(factor):
    law = "charge"
    res = verify(mixed(law, 2, [[1, 0], [0, 2]], [0.1, -0.3], factor), law, 2, FAST)
    assert res.recovered, res.summary()


def test_gravity_messages_that_carry_m2_but_not_m1_are_recovered():
    # The paper's r^-2 3D bottleneck form (PAPER.md §4) written with the softened distance the
    # simulator uses (dx / ((r - 0.01) r^2)), completed with two other components.
    u = "/((r - 0.01)*r^2)"
    phi = [f"(0.021*dx*m2 - 0.077*dy*m2){u}", f"m2*dz{u} + 0.5", f"m2*(dy + dx){u}"]
    res = verify(phi, "r2", 3, FAST)
    assert res.recovered, res.summary()
    assert res.factor_m1_power == pytest.approx(-1, abs=0.05)


@pytest.mark.parametrize("law, dim, phi", [
    ("r2", 3, ["(0.021*dx*m2 - 0.077*dy*m2)/r^3", "m2*dz/r^3 + 0.5", "m2*(dy + dx)/r^3"]),
    ("spring", 2, ["1.36*dy + 0.60*dx - (0.60*dx + 1.37*dy)/r - 0.0025"]),
])
def test_paper_formulas_fit_but_are_not_exact(law, dim, phi):
    # The paper's printed formulas use dx/r for the direction where the data has dx/(r - 0.01), and
    # the spring's rest length is 1.37/1.36: within a few % on the training range (they fit), not
    # the law on a wider one.
    res = verify(phi, law, dim, FAST)
    assert res.fits, res.summary()
    assert not res.exact and not res.recovered
    assert "ratio" in res.failed


NEAR_MISSES = [  # (law, scalar g of F = g r_hat): each fits the training range, none is the law
    ("r2", "-m1*m2/r**1.85"), ("r2", "-m1*m2/r**1.9"), ("r2", "-m1*m2**1.1/r**2"),
    ("r2", "-m1*m2/r**2 - 0.02*m2/r"), ("r1", "-m1*m2/r**1.1"), ("r1", "-m1*m2*exp(-0.1*r)/r"),
    ("spring", "-2*(r - 1.05)"), ("spring", "-2*(r - 1)*(1 + 0.03*m2)"), ("spring", "-2*(r - 1) + 0.02*r**2"),
    ("charge", "q1*q2/r**1.9"), ("charge", "q1*q2*m2**0.1/r**2"),
    ("r2", "-125.4*m1*m2/(r*(446.4*r + exp(0.1761*m1)))"),  # printed once for r2-3D: 1.5% off
    ("discontinuous", "Piecewise((0, r < 2), (-2*(r - 1), True)) + 4.25e+106*exp(-123.5*r)"),
    ("discontinuous", "Piecewise((0, r < 2.05), (-2*(r - 1), True))"),
]


def _radial(g: str, dim: int) -> list[str]:
    return [f"({g})*{a}/(r - 0.01)" for a in ("dx", "dy", "dz")[:dim]]


@pytest.mark.parametrize("law, g", NEAR_MISSES)
def test_near_misses_are_not_exact(law, g):
    res = verify(_radial(g, 2), law, 2, FAST, scalar=g)
    assert not res.exact and not res.recovered, res.summary()
    assert res.to_dict()["exact"] is False


def test_a_spring_rest_length_a_hair_off_still_fits():
    res = verify(_radial("-2*(r - 1.05)", 2), "spring", 2, FAST)
    assert res.fits and not res.exact


def test_an_invisible_charge_term_is_seen_on_the_wide_grid():
    # Uncharged laws are sampled with q = 0 in `fits`, so a q2 term is invisible there; the wide
    # grid has q2 = +-1.
    phi = ["-m1*m2/r**2*dx/(r - 0.01) + 7*q2*dx", "-m1*m2/r**2*dy/(r - 0.01)"]
    res = verify(phi, "r2", 2, FAST)
    assert res.fits and not res.exact
    assert "law_variables" in res.failed


def test_a_variable_the_law_does_not_use_fails_even_with_a_tiny_coefficient():
    res = verify(_radial("-2*(r - 1)*(1 + 1e-9*m2)", 2), "spring", 2, FAST)
    assert res.failed == ["law_variables"]


@pytest.mark.parametrize("law, g", [
    ("r2", "-m1*m2/r**2"), ("r2", "-3.1*m2/r**2"), ("spring", "0.19*(1 - r)"), ("charge", "q2/r**2"),
    ("r1", "-0.5*m2/r"), ("discontinuous", "Piecewise((0, r < 2.0), (-0.3*(r - 1.0), True))"),
])
def test_scaled_and_receiver_factored_truth_is_exact(law, g):
    res = verify(_radial(g, 3), law, 3, FAST, scalar=g)
    assert res.exact, res.summary()
    assert {c.name for c in res.exact_checks} >= {"law_variables", "ratio", "common_map", "symbolic"}


def test_symbolic_ratio_decides_piecewise_and_receiver_factors():
    from symdistill.distill.verify import symbolic_ratio
    f = get_law("discontinuous").force_magnitude_expr()
    assert symbolic_ratio("Piecewise((0, r < 2), (0.4*(1 - r)/m1, True))", f) is True
    assert symbolic_ratio("Piecewise((0, r < 2.01), (0.4*(1 - r), True))", f) is False
    assert symbolic_ratio("0.4*(1 - r)", f) is False
    assert symbolic_ratio("q1*m1**2*(r - 1)", get_law("spring").force_magnitude_expr()) is True
    assert symbolic_ratio("(r - 1)*m2", get_law("spring").force_magnitude_expr()) is False


@pytest.mark.parametrize("law, wrong", [
    ("r2", "m2*{}/r^2"),          # r^-1 force for an r^-2 law
    ("r1", "m2*{}/r^3"),          # r^-2 force for an r^-1 law
    ("spring", "-(r-1.5)*{}/r"),  # wrong rest length
    ("spring", "-(r-1.2)*{}/r"),
    ("charge", "q2*{}/r^2"),
    ("spring", "-(r-1)*{}/(r*m2)"),  # a factor of the *sender's* mass cannot be undone
    ("discontinuous", "-(r-1)*{}/r"),  # the spring without its threshold
    ("discontinuous", "Piecewise((0, r < 1.8), (-(r-1)*{}/r, True))"),
])
def test_wrong_laws_are_rejected(law, wrong):
    res = verify([wrong.format("dx"), wrong.format("dy")], law, 2, FAST)
    assert not res.recovered
    assert "fit" in res.failed or "receiver_factor" in res.failed


def test_formulas_that_do_not_span_the_force_are_rejected():
    res = verify(["-(r-1)*dx/(r-0.01)", "2 - 3*(r-1)*dx/(r-0.01)"], "spring", 2, FAST)
    assert not res.recovered
    assert res.failed == ["span", "span_wide"]


def test_mixing_that_depends_on_the_receiver_is_not_a_common_map():
    res = verify(["q1*q2*dx/r^3", "q2*dy/r^3"], "charge", 2, FAST)
    assert "receiver_factor" in res.failed and "common_map" in res.failed


def test_formula_with_unknown_variable_fails_the_variables_check():
    res = verify([S["dx"] * sp.Symbol("vx"), S["dy"]], "spring", 2, FAST)
    assert res.failed == ["variables"]
    assert "vx" in res.summary()


def test_formula_that_is_not_finite_fails():
    res = verify(["log(dx)*(r-1)", "dy*(r-1)/r"], "spring", 2, FAST)
    assert "finite" in res.failed


def test_bad_formula_string_is_a_user_error():
    with pytest.raises(SymdistillError, match="Unknown name"):
        verify("dx*foo", "spring", 2)


def test_evidence_is_reported():
    res = verify(mixed("spring", 2, [[1, 1], [0, 1]], [0, 0]), "spring", 2, FAST)
    d = res.to_dict()
    assert d["recovered"] is True
    assert {c["name"] for c in d["checks"]} == {"variables", "finite", "fit", "receiver_factor", "span"}
    assert {c["name"] for c in d["exact_checks"]} == {"law_variables", "finite_wide", "ratio", "common_map",
                                                      "span_wide"}
    assert d["fits"] is True and d["exact"] is True
    assert len(d["A"]) == 2 and len(d["r2"]) == 2 and min(d["r2"]) > 0.999
    assert "exact" in d["summary"]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), power=st.sampled_from([-1, 0, 1]), shift=st.floats(-5, 5))
def test_any_invertible_map_times_mass_power_is_recovered(seed, power, shift):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(2, 2))
    A += np.eye(2) * (np.abs(np.linalg.eigvals(A)).max() + 0.5)  # keep it well conditioned
    res = verify(mixed("r2", 2, A, [shift, -shift], S["m1"] ** power), "r2", 2, FAST)
    assert res.recovered, res.summary()


def test_a_formula_with_complex_values_evaluates_to_nan_not_its_real_part():
    from symdistill.distill.synthetic import lambdify
    r = sp.Symbol("r")
    out = lambdify([r + sp.I * r, 2 * r], ["r"])({"r": np.array([1.0, 2.0])})
    assert np.isnan(out[:, 0]).all() and np.allclose(out[:, 1], [2.0, 4.0])


def test_a_constant_extra_component_is_an_offset_and_a_varying_one_is_not():
    u = "/(r - 0.01)"
    base = [f"(1 - r)*dx{u}", f"(1 - r)*dy{u}"]
    assert verify(base + ["0.3"], "spring", 2, FAST).exact
    res = verify(base + ["0.01*r"], "spring", 2, FAST)
    assert not res.exact and "ratio" in res.failed
