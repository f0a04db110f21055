"""The energy verdict accepts exactly what a Hamiltonian network cannot identify (terms without r or
p, one shared scale, jumps at a threshold) and rejects the near misses."""

import json

import pytest
import sympy as sp
import torch

from symdistill.distill.energy_verify import EnergyVerifyOptions, verify_energy
from symdistill.errors import SymdistillError
from symdistill.simulate.potentials import get_law

KINETIC_1_7 = "0.85*p**2/m + m"  # 1.7 x p^2/(2m) + a term without p


@pytest.mark.parametrize("law, pair, k", [
    ("spring", "2.5*(r-1)**2 + 7 + m1*m2", 2.5),
    ("r1", "0.5*m1*m2*log(3*r)", 0.5),
    ("r2", "-0.3*m1*m2/r + 0.1*m1", 0.3),
    ("charge", "q1*q2/r*1.7 - 4", 1.7),
    ("spring", "3 + 0.2*m1 + m1*m2 + 0.998*(r - 1.0)**2", 0.998),  # floats that are exact
    ("charge", "q1*q2*r**(-1.0)", 1.0),
])
def test_shifted_and_scaled_truth_is_exact(law, pair, k):
    res = verify_energy(pair, law)
    assert res.exact and res.recovered and res.fits, res.summary()
    assert res.scale == pytest.approx(k, rel=1e-9) and res.r2 == pytest.approx(1.0)
    assert res.kinetic_scale is None
    shared = next(c for c in res.checks if c.name == "shared_scale")
    assert shared.value == "not checked"
    assert res.summary().startswith(f"exact: pair energy = {k:.4g} x truth")


@pytest.mark.parametrize("law, pair, kinetic, k", [
    ("spring", "1.7*(r-1)**2 + 3", KINETIC_1_7, 1.7),
    ("charge", "q1*q2/r*1.7 - 4", KINETIC_1_7, 1.7),
    ("charge", "q1*q2/r", "p**2/(2*m)", 1.0),
    ("r1", "0.5*m1*m2*log(3*r)", "p**2/(4*m) + m**2 + q", 0.5),
    ("r2", "-0.3*m1*m2/r + 0.1*m1", "0.3*p^2/(2*m)", 0.3),
])
def test_truth_with_kinetic_energy_of_the_same_scale_is_exact(law, pair, kinetic, k):
    res = verify_energy(pair, law, 2, kinetic=kinetic)
    assert res.exact, res.summary()
    assert res.failed == []
    assert res.scale == pytest.approx(k, rel=1e-9)
    assert res.kinetic_scale == pytest.approx(k, rel=1e-9)
    assert "kinetic =" in res.summary()


@pytest.mark.parametrize("law, pair, failing", [
    ("charge", "q1*q2*r**-0.95", "pair_form"),
    ("charge", "q1*q2*r**-1.05", "pair_form"),
    ("spring", "(r - 1.05)**2", "pair_form"),
    ("r2", "-m1*m2/r + 0.05*q1*q2/r", "pair_form"),  # an uncharged law: q terms are seen (q = +-1)
    ("r2", "-m1**2*m2/r", "pair_form"),               # a factor m1 is not free for an energy
    ("r2", "-m1*m2/r + m1", None),                    # control: a term without r is free
    ("spring", "3 + m1", "pair_form"),                # no r at all
])
def test_near_miss_pair_is_rejected_numerically(law, pair, failing):
    res = verify_energy(pair, law)
    if failing is None:
        assert res.exact, res.summary()
        return
    assert not res.exact
    assert failing in res.failed and "symbolic" in res.failed
    assert res.summary().startswith("not exact") and f"[`{failing}`]" in res.summary()


@pytest.mark.parametrize("pair", ["0.998*(r - 1.002)**2", "(r - 1)**2 + 0.02*r**2"])
def test_near_miss_within_numeric_tolerance_is_rejected_symbolically(pair):
    """A rest length a hair off passes the 0.5% numeric test: only sympy sees it."""
    res = verify_energy(pair, "spring")
    assert res.fits and not res.exact
    assert res.failed == ["symbolic"]
    assert res.spread < EnergyVerifyOptions().tolerance
    assert "depends on r" in res.checks[-1].detail


def test_kinetic_with_wrong_mass_power_is_rejected():
    res = verify_energy("q1*q2/r", "charge", kinetic="p**2/m**1.1/2")
    assert not res.exact
    assert "kinetic_form" in res.failed and "symbolic" in res.failed
    assert "kinetic energy deviates" in res.summary()


@pytest.mark.parametrize("kinetic, off", [("1.2*p**2/(2*m)", 1 / 1.2 - 1), ("1.03*p**2/(2*m)", 1 / 1.03 - 1)])
def test_kinetic_of_another_scale_than_the_pair_is_rejected(kinetic, off):
    res = verify_energy("(r-1)**2", "spring", kinetic=kinetic)
    assert res.failed == ["shared_scale"]
    shared = next(c for c in res.checks if c.name == "shared_scale")
    assert shared.value == pytest.approx(abs(off), abs=1e-6)


def test_shared_scale_within_tolerance_is_accepted():
    res = verify_energy("(r-1)**2", "spring", kinetic="1.01*p**2/(2*m)")
    assert res.exact, res.summary()


@pytest.mark.parametrize("pair, kinetic", [("q1*q2/x", None), ("q1*q2/r", "p**2/(2*m) + v"),
                                           (sp.Symbol("q1") * sp.Symbol("q2") / sp.Symbol("x"), None)])
def test_formula_in_a_foreign_variable_fails_the_variables_check(pair, kinetic):
    res = verify_energy(pair, "charge", kinetic=kinetic)
    assert res.failed == ["variables"] and not res.fits
    assert "which the energies do not have" in res.summary()


def test_plain_sympy_symbols_are_read_by_name():
    r, m1 = sp.Symbol("r"), sp.Symbol("m1")
    res = verify_energy(3 * (r - 1) ** 2 + m1, "spring", kinetic=3 * sp.Symbol("p") ** 2 / (2 * sp.Symbol("m")))
    assert res.exact, res.summary()


@pytest.mark.parametrize("pair", [
    "Piecewise((0, r<2), ((r-1)**2, True))",        # the truth
    "Piecewise((0, r<2), ((r-1)**2 - 1, True))",    # continuous: another jump at r = 2
    "2*Piecewise((5 + m1, r<2), ((r-1)**2, True))",
    "(Max(r, 2) - 1)**2",                           # no Piecewise: constant below 2
    "Heaviside(r - 2)*(r - 1)**2",
])
def test_discontinuous_truth_up_to_the_jump_is_exact(pair):
    res = verify_energy(pair, "discontinuous")
    assert res.exact, res.summary()


@pytest.mark.parametrize("pair, numeric", [("Piecewise((0, r<2.1), ((r-1)**2, True))", True), ("(r-1)**2", True),
                                           ("Piecewise((0.2*r, r<2), ((r-1)**2, True))", True),
                                           ("Piecewise((0.01*r, r<2), ((r-1)**2, True))", False)])
def test_discontinuous_near_miss_is_rejected(pair, numeric):
    """A slope where the truth is flat is judged against the group's whole range: 0.01 r is within the
    numeric tolerance, and only sympy sees it."""
    res = verify_energy(pair, "discontinuous")
    assert not res.exact
    assert res.failed == (["pair_form", "symbolic"] if numeric else ["symbolic"])


def test_one_scale_on_both_sides_of_a_threshold():
    law = "Piecewise((r, r < 2), ((r - 1)**2, True))"  # varies on both sides
    assert verify_energy("Piecewise((3*r + 1, r < 2), (3*(r - 1)**2, True))", law).exact
    res = verify_energy("Piecewise((r, r < 2), (2*(r - 1)**2, True))", law)
    assert res.failed == ["pair_form", "symbolic"]
    assert "different scale on each side" in res.checks[-1].detail


def test_groups_where_the_truth_does_not_vary_must_not_vary_either():
    """(q1 + q2) U vanishes for opposite charges: there the formula must be ~0 relative to the rest."""
    law = "(q1 + q2)*(r - 1)**2"
    assert verify_energy("2*(q1 + q2)*(r - 1)**2 + q1", law).exact
    res = verify_energy("(q1 + q2 + 0.05)*(r - 1)**2", law)
    assert "pair_form" in res.failed and not res.exact


def test_fits_is_lenient_and_exact_is_strict():
    near = verify_energy("q1*q2*r**-1.05", "charge")
    assert near.fits and not near.exact
    far = verify_energy("q1*q2*r", "charge")
    assert not far.fits and not far.exact


def test_threshold_sympy_cannot_solve_is_undecided():
    res = verify_energy("Piecewise(((r-1)**2, r < m1 + 10), (0, True))", "spring")
    assert res.failed == ["symbolic"]
    assert res.checks[-1].detail.startswith("undecided")


def test_formula_not_finite_on_the_grid_fails():
    res = verify_energy("log(r - 0.5)", "spring")
    assert "finite" in res.failed and not res.exact


def test_user_law_from_a_string():
    law = get_law(potential="q1*q2*exp(-r)/r")
    assert verify_energy("q1*q2*exp(-r)/r", law).exact
    assert verify_energy("3*q1*q2*exp(-r)/r + m1", "q1*q2*exp(-r)/r").exact
    res = verify_energy("q1*q2*exp(-1.1*r)/r", law)
    assert not res.exact and "pair_form" in res.failed


def test_damped_law_is_refused():
    with pytest.raises(SymdistillError, match="not Hamiltonian: its damping force -c v has no potential") as err:
        verify_energy("(r-1)**2", "damped")
    assert "\n" not in str(err.value)


def test_opaque_callable_law_is_refused():
    law = get_law(potential=lambda r, **_: torch.special.erf(r))  # torch only: no sympy truth
    assert not law.has_truth
    with pytest.raises(SymdistillError, match="opaque callable"):
        verify_energy("erf(r)", law)


@pytest.mark.parametrize("options, text", [
    (dict(n_groups=2), "`n_groups` must be an integer >= 4"),
    (dict(tolerance=-0.1), "`tolerance` must be > 0"),
    (dict(r_range=(0.0, 6.0)), "`r_range` must be (low, high) with 0 < low < high"),
    (dict(p_range=(-1.0, 5.0)), "`p_range` must be (low, high) with 0 <= low < high"),
    (dict(min_r2=1.5), "`min_r2` must be in (0, 1)"),
])
def test_bad_options_are_one_line_errors(options, text):
    with pytest.raises(SymdistillError) as err:
        EnergyVerifyOptions(**options)
    assert text in str(err.value) and "\n" not in str(err.value)


def test_bad_dim_is_refused():
    with pytest.raises(SymdistillError, match="`dim` must be 2 or 3"):
        verify_energy("(r-1)**2", "spring", 4)


@pytest.mark.parametrize("pair, kinetic", [("1.7*(r-1)**2", KINETIC_1_7), ("3 + m1", "p**2/m**1.1"),
                                           ("x", None), ("log(r - 0.5)", None)])
def test_to_dict_is_strict_json(pair, kinetic):
    res = verify_energy(pair, "spring", kinetic=kinetic)
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["exact"] == res.exact and d["summary"] == res.summary()
    assert d["truth"] == "(r - 1)**2"
    assert [c["name"] for c in d["checks"]] == [c.name for c in res.checks]
