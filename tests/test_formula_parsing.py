"""Formula strings: parsed by a whitelist over Python's syntax tree (never evaluated), bounded before
sympy computes anything, and potentials that are complex, infinite or force-free named as such."""

from __future__ import annotations

import builtins
import contextlib
import signal

import pytest
import sympy as sp
import sympy.parsing.sympy_parser as sympy_parser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symdistill.errors import SymdistillError
from symdistill.expr import INTERNAL_LIMITS, parse_formula, symbols
from symdistill.simulate.potentials import get_law

VARS = ("r", "m1", "m2", "q1", "q2")
S = symbols(VARS)
r, m1, m2 = S["r"], S["m1"], S["m2"]


class _Hung(BaseException):
    """Not an Exception, so the parser's own error handling cannot turn a hang into a clean error."""


@contextlib.contextmanager
def no_hang(seconds: float = 20):
    """Fail (instead of hanging the suite) if the block runs for ``seconds``: a guard, not a timing."""
    def _raise(*_):
        raise _Hung(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def p(text, **kw):
    return parse_formula(text, VARS, **kw)


def one_line_error(text, match=None, **kw) -> str:
    with no_hang(), pytest.raises(SymdistillError, match=match) as e:
        p(text, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# ---- what parses, and to what --------------------------------------------------------------------
def test_power_caret_means_power():
    assert p("r^2 + 1") == r**2 + 1  # power binds tighter than +, as ** does (not Python's xor)
    assert p("2^3") == 8
    assert p("-r^2") == -r**2
    assert p("r^-2") == r**-2


def test_piecewise_potential_still_parses():
    text = "Piecewise((0, r < 2), ((r - 1)**2, True))"
    assert p(text) == sp.Piecewise((0, r < 2), ((r - 1) ** 2, True))
    law = get_law(potential=text)
    builtin = get_law("discontinuous").force_magnitude_expr()
    for value in (1.5, 2.5, 7.0):
        assert float(law.force_magnitude_expr().subs(r, value)) == pytest.approx(float(builtin.subs(r, value)))


def test_conditions_combine_with_and_or_not_and_chains():
    both = sp.Piecewise((1, (r > 1) & (r < 2)), (0, True))
    assert p("Piecewise((1, 1 < r < 2), (0, True))") == both
    assert p("Piecewise((1, (r > 1) & (r < 2)), (0, True))") == both
    assert p("Piecewise((1, ~(r <= 1) & (r < 2)), (0, True))") == both
    assert p("Piecewise((1, (r < 1) | (r > 2)), (0, True))") == sp.Piecewise((1, (r < 1) | (r > 2)), (0, True))


def test_half_is_an_exact_rational_and_decimals_are_floats():
    assert p("1/2") == sp.Rational(1, 2)
    assert p("r/2 + 1/3") == r / 2 + sp.Rational(1, 3)
    assert isinstance(p("0.5"), sp.Float)
    assert p("1.5e-3*r") == sp.Float("1.5e-3") * r
    assert p("0.123456789012345678901") == sp.Float("0.123456789012345678901")  # every digit kept


def test_formulas_use_the_canonical_symbols_and_functions():
    e = p("q1*q2*exp(-r)/r + m1*m2*log(r) + sqrt(r) + abs(r - 1) + Max(r, 1) + pi + E")
    assert e.free_symbols == {S["q1"], S["q2"], r, m1, m2} and r.is_positive
    assert e == (S["q1"] * S["q2"] * sp.exp(-r) / r + m1 * m2 * sp.log(r) + sp.sqrt(r) + sp.Abs(r - 1)
                 + sp.Max(r, 1) + sp.pi + sp.E)
    assert p("log(r, 2)") == sp.log(r) / sp.log(2)
    assert p("Heaviside(r - 1, 1/2)") == sp.Heaviside(r - 1, sp.Rational(1, 2))


def test_parse_never_evaluates_python(monkeypatch, tmp_path):
    def forbidden(*_a, **_k):
        raise AssertionError("a formula was evaluated as Python")
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(sympy_parser, "parse_expr", forbidden)
    monkeypatch.setattr(sympy_parser, "eval_expr", forbidden)
    monkeypatch.chdir(tmp_path)
    assert p("(r - 1)**2 + 0.1*m1*m2/r") == (r - 1) ** 2 + sp.Float("0.1") * m1 * m2 / r
    assert p("Piecewise((0, r < 2), ((r - 1)^2, True))").has(sp.Piecewise)
    for hostile in ("__import__('os').system('touch PWNED')", "open('PWNED', 'w')",
                    "(lambda: __import__('os').system('touch PWNED'))()"):
        one_line_error(hostile)
    assert not (tmp_path / "PWNED").exists()


# ---- what is refused, named --------------------------------------------------------------------------
def test_conditional_expression_is_rejected_not_evaluated():
    msg = one_line_error("r if r else 1", "conditional expression")
    assert "Piecewise" in msg  # ... and says what to write instead


@pytest.mark.parametrize("text, construct", [
    ("r.real", "attribute"),
    ("r.__class__", "attribute"),
    ("().__class__.__bases__[0].__subclasses__()", "attribute"),
    ("__import__('os').system('true')", "attribute"),
    ("__builtins__", "'__builtins__'"),
    ("lambda: r", "lambda"),
    ("(lambda x: x)(r)", "lambda"),
    ("r[0]", "subscript"),
    ("exp(x=r)", "keyword argument"),
    ("exp(*r)", "starred"),
    ("[r]", "list"),
    ("{r: 1}", "dict"),
    ("[r for r in (1, 2)]", "comprehension"),
    ("'r'", "string"),
    ("f'{r}'", "f-string"),
    ("(x := r)", "assignment"),
    ("(r, 1)", "tuple"),
    ("r and 1", "`and`/`or`"),
    ("not r", "`not`"),
    ("r % 2", "%"),
    ("r // 2", "//"),
    ("1j*r", "complex number"),
    ("r is r", "`is`"),
    ("r(2)", "non-function 'r'"),
    ("exp", "without arguments"),
])
def test_constructs_outside_the_whitelist_are_named(text, construct):
    msg = one_line_error(text, "Invalid formula")
    assert construct in msg, msg


@pytest.mark.parametrize("text, match", [
    ("(x-1)**2", "Unknown name 'x'"),
    ("open(r)", "Unknown name 'open'"),
    ("(r-1", "Could not parse"),
    ("exp(r, 2)", "exp takes 1 argument"),
    ("Max()", "Max takes 1 to"),
    ("Piecewise(r)", "Piecewise takes \\(value, condition\\) pairs"),
    ("Piecewise((1, r))", "a value as a Piecewise condition"),
    ("r < 1", "is a condition, not an expression"),
    ("(r < 1) + 1", "a condition as an operand"),
    ("r\u00e9", "character"),
    ("r # + 1", "'#' is not allowed"),
    ("", "Empty formula"),
])
def test_malformed_formulas_get_one_line_errors(text, match):
    one_line_error(text, match)


def test_long_formula_error_does_not_echo_it():
    text = "r+" * 50_000 + "r"
    msg = one_line_error(text, "too long")
    assert str(len(text)) in msg and len(msg) < 200, msg
    within = "r + " * 150 + "x"  # under every limit, but still too long to echo
    msg = one_line_error(within, "Unknown name 'x'")
    assert f"({len(within)} characters)" in msg and len(msg) < 200, msg


# ---- limits checked before sympy computes ---------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "9**9**9**9", "r*9**9**9**9", "2**(10**29)", "(10**29)**(10**29)", "sqrt(2)**(10**29)",
    "1.0000001**(10**29)", "exp(10**29*log(2))", "E**(r + 10**29*log(2))", "exp(2)**(r + 10**29*log(3))",
    "2**r*2**(10**29 - r)", "exp(100*log(10**29))", "(10**29*10**29*10**29)**20",
])
def test_huge_numeric_power_is_rejected_before_sympy_computes_it(text):
    one_line_error(text, "too large")


def test_power_towers_and_large_exponents_of_symbols_are_bounded():
    assert p("r**r**r") == r ** (r**r)
    one_line_error("r**r**r**r**r", "tower")
    one_line_error("exp(exp(exp(r)))", "tower")
    assert p("r**100") == r**100
    one_line_error("r**1000", "exponent")
    assert p("2**1000") == 2**1000  # a big exact number is fine; a huge one is not
    one_line_error("2**1400", "too large")


def test_number_literals_are_bounded():
    assert p("1" * 30 + "*r") == int("1" * 30) * r
    one_line_error("1" * 31, "31 digits")
    one_line_error("0." + "1" * 31, "31 digits")
    one_line_error("1e400*r", "beyond floating point")


def test_tree_size_and_depth_are_bounded():
    assert p(" + ".join(["r"] * 150)) == 150 * r  # a long flat sum is one level deep
    one_line_error(" + ".join(["r"] * 250), "terms and operations")
    one_line_error("-" * 60 + "r", "levels deep")
    one_line_error("(" * 300 + "r" + ")" * 300, "Could not parse")
    one_line_error("Max(r, m1, m2, q1, q2, r + 1, r + 2)", "Max takes 1 to 6 arguments")
    one_line_error("Max(Max(r, m1, m2), Max(q1, q2, sin(r), cos(r)))", "Max of 7 arguments")


def test_internal_limits_admit_long_back_end_output():
    text = " + ".join(f"{0.1 + k:.12g}*r**{k % 7}*exp(-{k + 1.5e-3:.12g}*r)" for k in range(80))
    one_line_error(text, "too long")
    e = p(text, limits=INTERNAL_LIMITS)
    assert isinstance(e, sp.Expr) and e.free_symbols == {r}


# ---- potentials -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [dict(potential=""), dict(potential="   "), dict(system="spring", potential="")])
def test_empty_potential_is_named(kwargs):
    with pytest.raises(SymdistillError, match=r"Empty potential: write it in r, m1, m2, q1, q2, e\.g\. '\(r-1\)\*\*2'"):
        get_law(**kwargs)


@pytest.mark.parametrize("text", ["sqrt(-r)", "log(-r)", "log(r - 1)", "(-1)**(1/3)*r", "sqrt(q1*q2)*r", "(-r)**0.5"])
def test_sqrt_of_negative_is_not_real(text):
    with no_hang(), pytest.raises(SymdistillError, match="not (a )?real"):
        get_law(potential=text)


@pytest.mark.parametrize("text, match", [
    ("1/0", "divides by zero"), ("r/0", "divides by zero"), ("r + 1/(r - r)", "divides by zero"),
    ("log(0)*r", "divides by zero"), ("0/0", "undefined"),
])
def test_division_by_zero_is_named(text, match):
    with pytest.raises(SymdistillError, match=match) as e:
        get_law(potential=text)
    assert "does not depend on r" not in str(e.value)


def test_potential_without_r_is_named_only_when_true():
    for text in ("m1*m2", "r - r + 1", "q1*q2*pi"):
        with pytest.raises(SymdistillError, match="does not depend on r"):
            get_law(potential=text)
    with pytest.raises(SymdistillError, match="exerts no force"):
        get_law(potential="sin(r)**2 + cos(r)**2")
    assert get_law(potential="m1*m2*(r - 1)**2").has_truth


def test_potential_undefined_beyond_its_branches_is_named():
    with pytest.raises(SymdistillError, match="no Piecewise branch applies"):
        get_law(potential="Piecewise((0, r < 2))")


def test_step_potential_says_its_force_is_infinite():
    with pytest.raises(SymdistillError, match="a step in the potential is an infinite force"):
        get_law(potential="Heaviside(r - 1)")


def test_potential_infinite_everywhere_is_named():
    with pytest.raises(SymdistillError, match="infinite for every r"):
        get_law(potential="exp(exp(100))*r")


@pytest.mark.parametrize("text", [
    "Max(" + ", ".join(f"sin({i}*r)*exp(-r) + Min(r, {i}*m1)" for i in range(1, 7)) + ")",
    "(" + " + ".join(f"r**{i}" for i in range(1, 99)) + ")**100",
    "Max(" + " + ".join(f"r**{i}" for i in range(1, 40)) + ", 1)",
    "Piecewise(" + ", ".join(f"(Max(r, {i}*m1, sin(r))*cos({i}*r), r < {i}/3)" for i in range(1, 16)) + ", (r, True))",
    "*".join(f"(r + {i})**(r**(r + {i}))" for i in range(30)),
    "cos(sin(tanh(cosh(sinh(tan(" * 6 + "r" + "))))))" * 6,
    "r**r**r * exp(exp(r)) * sign(sin(r) + sin(2*r) + sin(3*r)) + abs(abs(abs(r - 1) - 1) - 1)",
])
def test_hard_legal_potentials_finish(text):
    """Strings the parser admits but sympy finds hard (simplify or sign reasoning could take minutes):
    get_law returns or refuses them."""
    with no_hang(30):
        try:
            law = get_law(potential=text)
        except SymdistillError as e:
            assert "\n" not in str(e)
        else:
            assert law.force_magnitude_expr().has(r)


def test_user_potential_force_is_minus_energy_gradient():
    law = get_law(potential="q1*q2*exp(-r)/r + (r - 1.3)**2 + m1*m2*r**r")
    x = sp.Rational(7, 5)
    truth = -sp.diff(law.energy, r).subs({r: x, m1: 2, m2: 3, S["q1"]: -1, S["q2"]: 1})
    value = law.force_magnitude_expr().subs({r: x, m1: 2, m2: 3, S["q1"]: -1, S["q2"]: 1})
    assert float(value) == pytest.approx(float(truth), rel=1e-12)


# ---- fuzzing: the contract is an expression or one clean line ---------------------------------------------
_ALPHABET = list("rmq12()+-*/^.,<>=&|~ e") + ["**", "exp(", "log(", "sqrt(", "Max(", "Piecewise((", "pi", "E",
                                              "9", "0", "True", "__", "[", "]", "'", ":", "lambda ", " if ", "1e9"]


def _contract(text, **kw):
    with no_hang(10):
        try:
            e = p(text, **kw)
        except SymdistillError as err:
            msg = str(err)
            assert msg and "\n" not in msg and len(msg) < 600, msg
            return None
    assert isinstance(e, sp.Expr), (text, e)
    return e


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_ALPHABET), max_size=40).map("".join))
def test_random_strings_give_an_expression_or_one_clean_line(text):
    _contract(text)


_LEAF = st.sampled_from(["r", "m1", "m2", "q1", "q2", "pi", "E", "1/2", "2", "0", "9", "1.5e-3", "10**29", "-1"])


def _node(children):
    binary = st.sampled_from(["+", "-", "*", "/", "**", "^"])
    unary = st.sampled_from(["exp", "log", "sqrt", "sin", "cos", "tanh", "abs", "sign"])
    return st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", children, binary, children),
        st.builds(lambda f, a: f"{f}({a})", unary, children),
        st.builds(lambda f, args: f"{f}({', '.join(args)})", st.sampled_from(["Max", "Min"]),
                  st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda a, b, c: f"Piecewise(({a}, {b} < {c}), (1, True))", children, children, children),
        st.builds(lambda a: f"-{a}", children),
    )


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(_LEAF, _node, max_leaves=12))
def test_random_formula_trees_give_an_expression_or_one_clean_line(text):
    e = _contract(text)
    if e is not None:
        assert e.free_symbols <= set(S.values())
