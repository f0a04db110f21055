"""Is a discovered pair energy (and kinetic energy) the law's true one? The strict energy verdict.

A Hamiltonian graph network (FlatHGN) learns H = sum_i T(p_i, m_i, q_i) + sum_{i<j} U(r_ij, ...), and
the data only see derivatives of H. So a pair formula H(r, m1, m2, q1, q2) is *the* pair energy U when

    H = k U + c(m1, m2, q1, q2)        and the kinetic formula   T = k' p^2 / (2m) + c'(m, q)

with c, c' anything without r (without p: it exerts no force), and k / k' = 1 within ``scale_tolerance``.
For a Piecewise truth the size of a jump at a threshold is free too (an infinite force at one r is
never seen in the data): c may differ across a threshold.

Checks (all must pass for ``exact``), on a grid wider than the training data (r from 0.2 to 6,
masses 0.2 to 5, q1 and q2 = +-1 even for uncharged laws, so that a q term cannot hide):

- ``variables``: the pair uses only r, m1, m2, q1, q2; the kinetic energy only p, m, q;
  ``finite``: both are finite on the grid wherever the truth is;
- ``pair_form``: in each group of fixed (m1, m2, q1, q2) and each segment between thresholds, the
  differences D_hat(r) = H(r) - H(r_ref), D(r) = U(r) - U(r_ref); one k for all groups (least
  squares); max |D_hat - k D| <= ``tolerance`` x max |k D| in every group (x the largest group's
  where the truth does not vary with r);
- ``kinetic_form``: T(p) - T(0) against k' p^2 / (2m) in the same way, p from 0 to 5;
- ``shared_scale``: |k / k' - 1| <= ``scale_tolerance`` (reported as not checked without a kinetic);
- ``symbolic``: sympy simplifies dH/dr / dU/dr to one number (branch by branch between the
  thresholds of both) and dT/dp / (p / m) to a number. Floats are first read as the simplest
  rationals within 1e-9, so ``0.998*(r - 1.0)**2`` is exact and ``(r - 1.002)**2`` is not.

``fits`` (lenient): pooled R^2 >= ``min_r2`` of D_hat against k D (and of the kinetic differences).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy.core.relational import Relational

from symdistill.distill.synthetic import lambdify
from symdistill.distill.verify import Check
from symdistill.errors import SymdistillError, check_dim, check_positive, check_seed
from symdistill.expr import FUNCTIONS, FormulaLimits, parse_formula, shorten, symbols
from symdistill.names import PAIR_VARIABLES
from symdistill.problems.energy import SELF_VARIABLES
from symdistill.simulate.potentials import Law, get_law

SYM = symbols((*PAIR_VARIABLES, *SELF_VARIABLES))
_R, _M = SYM["r"], SYM["m"]
_P = sp.Symbol("p", positive=True)  # p = |momentum| >= 0; positive for the derivative (p = 0 has measure 0)
THRESHOLD_MARGIN = 1e-3     # grid points closer than this to a threshold of the truth are left out
RATIONAL_TOLERANCE = 1e-9   # floats within this of a simple rational are read as it (``symbolic``)


@dataclass(frozen=True)
class EnergyVerifyOptions:
    r_range: tuple[float, float] = (0.2, 6.0)
    mass_range: tuple[float, float] = (0.2, 5.0)
    p_range: tuple[float, float] = (0.0, 5.0)   # p = 0 is always on the grid (the kinetic reference)
    n_r: int = 200                               # r values per group
    n_p: int = 100                               # p values per (m, q)
    n_groups: int = 12                           # (m1, m2, q1, q2) groups; every sign pair of q1, q2
    tolerance: float = 0.005                     # ``pair_form``, ``kinetic_form``
    scale_tolerance: float = 0.02                # ``shared_scale``
    min_r2: float = 0.99                         # ``fits``
    seed: int = 20_200_611

    def __post_init__(self):
        for name, low in (("n_r", 10), ("n_p", 10), ("n_groups", 4)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SymdistillError(f"`{name}` must be an integer >= {low} (got {value!r})")
        for name in ("tolerance", "scale_tolerance"):
            check_positive(name, getattr(self, name))
        check_seed("seed", self.seed)
        if not 0 < self.min_r2 < 1:
            raise SymdistillError(f"`min_r2` must be in (0, 1) (got {self.min_r2})")
        for name, zero_ok in (("r_range", False), ("mass_range", False), ("p_range", True)):
            lo, hi = getattr(self, name)
            if not (0 <= lo < hi if zero_ok else 0 < lo < hi) or not math.isfinite(hi):
                op = "<=" if zero_ok else "<"
                raise SymdistillError(f"`{name}` must be (low, high) with 0 {op} low < high (got {(lo, hi)})")


@dataclass
class EnergyVerification:
    """Verdict and evidence. ``scale``: k (pair = k x truth + terms without r); ``kinetic_scale``: k'
    (kinetic = k' p^2/(2m) + terms without p); ``spread``: the largest relative deviation of the
    numeric form checks; ``r2``: the pooled R^2 of the pair differences (``fits``)."""

    exact: bool
    fits: bool
    checks: list[Check]
    pair: sp.Expr
    kinetic: sp.Expr | None
    truth: sp.Expr
    scale: float = float("nan")
    kinetic_scale: float | None = None
    spread: float = float("nan")
    r2: float = float("nan")

    @property
    def recovered(self) -> bool:
        return self.exact

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.exact:
            kin = "kinetic not checked" if self.kinetic is None else f"kinetic = {self.kinetic_scale:.4g} x p^2/(2m)"
            return f"exact: pair energy = {self.scale:.4g} x truth + terms without r; {kin}"
        first = next(c for c in self.checks if not c.passed)
        fits = "fits the data" if self.fits else "does not fit the data"
        return f"not exact ({fits}): {first.detail or 'the check failed'} [`{first.name}`]"

    def to_dict(self) -> dict:
        return {"recovered": self.exact, "exact": self.exact, "fits": self.fits, "summary": self.summary(),
                "failed": self.failed, "checks": [{k: _json(v) for k, v in vars(c).items()} for c in self.checks],
                "pair": sp.sstr(self.pair), "kinetic": None if self.kinetic is None else sp.sstr(self.kinetic),
                "truth": sp.sstr(self.truth), "scale": _json(self.scale), "kinetic_scale": _json(self.kinetic_scale),
                "spread": _json(self.spread), "r2": _json(self.r2)}


def _json(v):
    """Plain bools and floats, None for NaN and infinity (strict JSON has neither)."""
    if v is None or isinstance(v, (bool, np.bool_, str)):
        return v if not isinstance(v, np.bool_) else bool(v)
    return float(v) if math.isfinite(v) else None


def verify_energy(pair, law: Law | str, dim: int | None = None, *, kinetic=None,
                  options: EnergyVerifyOptions | None = None) -> EnergyVerification:
    """Decide whether ``pair`` (sympy or a string in r, m1, m2, q1, q2) is ``law``'s pair energy and
    ``kinetic`` (in p, m, q; optional) the kinetic energy of the same scale, up to what the data cannot
    identify (module docstring). ``dim`` is only checked: the energies are scalars in r."""
    o = options or EnergyVerifyOptions()
    if dim is not None:
        check_dim(dim)
    law = get_law(law)
    if not law.has_truth:
        raise SymdistillError(f"Law {shorten(law.name)} is an opaque callable with no known pair energy: give its "
                              "potential as a string to verify an energy against it")
    if law.damping > 0:
        raise SymdistillError(f"Law {shorten(law.name)} is not Hamiltonian: its damping force -c v has no potential; "
                              "verify its force instead, or use a law without damping")
    H = _as_expr(pair, PAIR_VARIABLES, "pair energy")
    T = None if kinetic is None else _as_expr(kinetic, SELF_VARIABLES, "kinetic energy")
    res = EnergyVerification(False, False, [_variables_check(H, T)], H, T, law.energy)
    checks = res.checks
    if not checks[-1].passed:
        return res
    grid = _Grid(o, law.energy)
    U, Hv = grid.pair_values(law.energy), grid.pair_values(H)
    Tv = None if T is None else grid.kinetic_values(T)
    n_bad = int((np.isfinite(U) & ~np.isfinite(Hv)).sum()) + (0 if Tv is None else int((~np.isfinite(Tv)).sum()))
    checks.append(Check("finite", n_bad == 0, n_bad, 0, "" if n_bad == 0 else
                        f"the formulas are not finite at {n_bad} grid points where the truth is"))
    r2s = [_pair_form(res, grid, U, Hv, o.tolerance)]
    if Tv is None:
        checks.append(Check("shared_scale", True, "not checked", o.scale_tolerance, "no kinetic energy given"))
    else:
        r2s.append(_kinetic_form(res, grid, Tv, o))
    checks.append(_symbolic_check(H, T, law.energy))
    res.fits = bool(np.all(np.isfinite(r2s)) and min(r2s) >= o.min_r2)
    res.exact = all(c.passed for c in checks)
    return res


def _pair_form(res: EnergyVerification, grid: _Grid, U: np.ndarray, Hv: np.ndarray, tolerance: float) -> float:
    """The ``pair_form`` check (sets ``scale`` and ``spread``); returns the pooled R^2."""
    D_hat, D = _differences([Hv, U], grid.segments, np.isfinite(U) & np.isfinite(Hv), reference="middle")
    res.scale, res.spread, (g, i), res.r2 = _form(D_hat, D)
    where = ", ".join(f"{k} = {v:.3g}" for k, v in zip(("r", *PAIR_VARIABLES[1:]), (grid.r[i], *grid.groups[g])))
    res.checks.append(_form_check("pair_form", "pair energy", "k x truth", res.spread, res.scale, tolerance, where))
    return res.r2


def _kinetic_form(res: EnergyVerification, grid: _Grid, Tv: np.ndarray, o: EnergyVerifyOptions) -> float:
    """The ``kinetic_form`` and ``shared_scale`` checks; returns the pooled R^2 of the kinetic part."""
    truth = grid.p[None, :] ** 2 / (2 * grid.selves[:, :1])
    K_hat, K = _differences([Tv, truth], np.zeros(Tv.shape, int), np.isfinite(Tv), reference="first")
    res.kinetic_scale, dev, (g, i), r2 = _form(K_hat, K)
    res.spread = max(res.spread, dev)
    where = f"p = {grid.p[i]:.3g}, m = {grid.selves[g, 0]:.3g}, q = {grid.selves[g, 1]:g}"
    res.checks.append(_form_check("kinetic_form", "kinetic energy", "k' p^2/(2m)", dev, res.kinetic_scale,
                                  o.tolerance, where))
    off = abs(res.scale / res.kinetic_scale - 1) if res.kinetic_scale else float("inf")
    off = off if math.isfinite(off) else float("inf")
    res.checks.append(Check("shared_scale", bool(off <= o.scale_tolerance), round(off, 6), o.scale_tolerance,
                            "" if off <= o.scale_tolerance else "the pair and kinetic energies have different scales "
                            f"(k = {res.scale:.4g}, k' = {res.kinetic_scale:.4g})"))
    return r2


def _form_check(name: str, what: str, form: str, dev: float, k: float, tolerance: float, where: str) -> Check:
    if dev <= tolerance:
        return Check(name, True, round(dev, 6), tolerance)
    if not math.isfinite(dev):
        return Check(name, False, dev, tolerance, f"{what} has no part proportional to {form} (best scale {k:.3g})")
    return Check(name, False, round(dev, 6), tolerance,
                 f"{what} deviates from {form} by {100 * dev:.3g}% (scale {k:.4g}; worst at {where})")


def _as_expr(formula, allowed, what: str) -> sp.Expr:
    """A sympy expression over the canonical symbols. A string may name variables outside ``allowed``
    (the ``variables`` check reports them); anything else it may not contain raises."""
    if isinstance(formula, str):
        names = set()  # if Python cannot parse it (or it is too long), parse_formula says why
        if len(formula) <= FormulaLimits().max_length:
            try:
                tree = ast.parse(formula.replace("^", "**").strip(), mode="eval")
                names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                pass
        extra = sorted(n for n in names - set(allowed) if n not in FUNCTIONS and "__" not in n)
        return parse_formula(formula, [*allowed, *extra], what=what)
    expr = sp.sympify(formula)
    if not isinstance(expr, sp.Expr):
        raise SymdistillError(f"The {what} must be an expression (got {type(formula).__name__})")
    known = symbols({s.name for s in expr.free_symbols}) | SYM
    return expr.xreplace({s: known[s.name] for s in expr.free_symbols})


def _variables_check(H: sp.Expr, T: sp.Expr | None) -> Check:
    used = sorted({s.name for e in (H, T) if e is not None for s in e.free_symbols})
    unknown = sorted({s.name for s in H.free_symbols if s.name not in PAIR_VARIABLES} |
                     {s.name for s in (T.free_symbols if T is not None else ()) if s.name not in SELF_VARIABLES})
    return Check("variables", not unknown, ", ".join(used) or "none", "pair: r, m1, m2, q1, q2; kinetic: p, m, q",
                 f"the formulas use {', '.join(unknown)}, which the energies do not have" if unknown else "")


class _Grid:
    """The verdict's grid: ``n_groups`` groups of (m1, m2, q1, q2), in each the r values, split at the
    truth's thresholds; and for the kinetic energy each group's two (m, q) with the p values.

    Shapes: r [n_r], p [n_p + (1 if p = 0 was added)], groups [G, 4] (m1, m2, q1, q2),
    segments [G, n_r] (segment of each point, -1 near a threshold), selves [2G, 2] (m, q)."""

    def __init__(self, o: EnergyVerifyOptions, truth: sp.Expr):
        rng = np.random.default_rng(o.seed)
        m = np.exp(rng.uniform(*np.log(o.mass_range), size=(o.n_groups, 2)))
        m[0], m[1] = o.mass_range, o.mass_range[::-1]  # the corners, m1 != m2
        g = np.arange(o.n_groups)
        self.groups = np.column_stack([m, 1.0 - 2 * (g % 2), 1.0 - 2 * (g // 2 % 2)])  # q1, q2: every sign pair
        self.r = np.linspace(*o.r_range, o.n_r)
        p = np.linspace(*o.p_range, o.n_p)
        self.p = p if p[0] == 0 else np.concatenate([[0.0], p])
        self.selves = np.concatenate([self.groups[:, [0, 2]], self.groups[:, [1, 3]]])
        self.segments = np.stack([self._segments(truth, g) for g in self.groups])

    def _columns(self, group, r) -> dict[str, np.ndarray]:
        return {"r": r} | {k: np.full(len(r), v) for k, v in zip(PAIR_VARIABLES[1:], group)}

    def pair_values(self, expr: sp.Expr) -> np.ndarray:
        fn = lambdify([expr], PAIR_VARIABLES)
        return np.stack([fn(self._columns(g, self.r))[:, 0] for g in self.groups])

    def kinetic_values(self, expr: sp.Expr) -> np.ndarray:
        fn, n = lambdify([expr], SELF_VARIABLES), len(self.p)
        return np.stack([fn({"p": self.p, "m": np.full(n, m), "q": np.full(n, q)})[:, 0] for m, q in self.selves])

    def _segments(self, truth: sp.Expr, group) -> np.ndarray:
        """Segment index of every r (0 without thresholds), -1 within THRESHOLD_MARGIN of one."""
        cuts = np.sort(np.concatenate([[]] + [self._roots(rel.lhs - rel.rhs, group) for rel in truth.atoms(Relational)
                                               if _R in rel.free_symbols]))
        seg = np.searchsorted(cuts, self.r)
        seg[np.min(np.abs(self.r[:, None] - cuts[None, :]), axis=1, initial=np.inf) < THRESHOLD_MARGIN] = -1
        return seg

    def _roots(self, f: sp.Expr, group) -> np.ndarray:
        """Where f(r) changes sign on the r range (a fine scan, then bisection)."""
        fn = lambdify([f], PAIR_VARIABLES)
        ev = lambda x: fn(self._columns(group, x))[:, 0]  # noqa: E731
        x = np.linspace(self.r[0] - THRESHOLD_MARGIN, self.r[-1] + THRESHOLD_MARGIN, 20_001)
        s = np.sign(ev(x))
        i = np.nonzero(s[:-1] * s[1:] <= 0)[0]
        a, b, sa = x[i], x[i + 1], s[i]
        for _ in range(50):
            mid = (a + b) / 2
            left = np.sign(ev(mid)) == sa
            a, b = np.where(left, mid, a), np.where(left, b, mid)
        return (a + b) / 2


def _differences(arrays, segments: np.ndarray, valid: np.ndarray, *, reference: str) -> list[np.ndarray]:
    """Each array minus its value at a reference point of the same group and segment ("first" valid
    point or the "middle" one); NaN where not compared (invalid, near a threshold, a lone point).

    Shapes: arrays: list of [G, n]; segments, valid [G, n] -> list of [G, n]."""
    out = [np.full(a.shape, np.nan) for a in arrays]
    for g in range(segments.shape[0]):
        for s in np.unique(segments[g][segments[g] >= 0]):
            idx = np.nonzero((segments[g] == s) & valid[g])[0]
            if len(idx) < 2:
                continue
            ref = idx[0] if reference == "first" else idx[len(idx) // 2]
            for a, d in zip(arrays, out):
                d[g, idx] = a[g, idx] - a[g, ref]
    return out


def _form(D_hat: np.ndarray, D: np.ndarray) -> tuple[float, float, tuple[int, int], float]:
    """k by least squares; the largest per-group max|D_hat - k D| / max|k D| (over the largest group's
    where the truth does not vary) and where, (group, index); the pooled R^2 of D_hat against k D.

    Shapes: D_hat, D [G, n], NaN where not compared."""
    ok = np.isfinite(D_hat) & np.isfinite(D)
    den = float(np.sum(D[ok] ** 2))
    if not ok.any() or den == 0:
        return float("nan"), float("inf"), (0, 0), float("nan")
    k = float(np.sum(D_hat[ok] * D[ok]) / den)
    res = np.where(ok, np.abs(D_hat - k * D), 0.0)
    scale = np.max(np.where(ok, np.abs(k * D), 0.0), axis=1)  # [G]
    overall = float(scale.max())
    if overall == 0:
        return k, float("inf"), (0, 0), 0.0
    per = np.where(scale > 1e-9 * overall, scale, overall)
    dev = res.max(axis=1) / per
    g = int(np.argmax(dev))
    ss_tot = float(np.sum((D_hat[ok] - D_hat[ok].mean()) ** 2))
    r2 = 1 - float(np.sum(res[ok] ** 2)) / ss_tot if ss_tot > 0 else 0.0
    return k, float(dev[g]), (g, int(np.argmax(res[g]))), r2


# ---- the symbolic check ---------------------------------------------------------------------------

def _symbolic_check(H: sp.Expr, T: sp.Expr | None, truth: sp.Expr) -> Check:
    verdicts = [("pair", *_derivative_ratio(H, truth, _R))]
    if T is not None:
        verdicts.append(("kinetic", *_derivative_ratio(T.xreplace({SYM["p"]: _P}), _P ** 2 / (2 * _M), _P)))
    value = "; ".join(f"{w}: {'undecided' if v is None else f'{k:.6g}' if v else 'not a number'}"
                      for w, v, k, _ in verdicts)
    bad = [("undecided: " if v is None else "") + why for _, v, _, why in verdicts if v is not True]
    return Check("symbolic", not bad, value, "a number", bad[0] if bad else "")


def _derivative_ratio(expr: sp.Expr, truth: sp.Expr, x: sp.Symbol) -> tuple[bool | None, float, str]:
    """(True, k, "") when sympy simplifies d expr/dx / d truth/dx to the same number k on every interval
    of x > 0 between the thresholds of both (where the truth does not vary, expr must not either);
    (False, nan, why) when it does not; (None, nan, why) when sympy cannot decide."""
    try:
        # floats as the simplest rationals within RATIONAL_TOLERANCE (1.0 is 1, 0.998 is 499/500); Max, Abs,
        # Heaviside as Piecewise, so that every threshold is a condition
        e, t = (sp.piecewise_fold(sp.nsimplify(a, tolerance=RATIONAL_TOLERANCE, rational=True).rewrite(sp.Piecewise))
                for a in (expr, truth))
        cuts = [_cuts(e, x), _cuts(t, x)]
        if None in cuts:
            return None, float("nan"), f"a threshold in {x} that sympy cannot solve"
        cuts = sorted(set(cuts[0]) | set(cuts[1]))  # one point inside each interval of x > 0 between them:
        points = [cuts[0] / 2, *((a + b) / 2 for a, b in zip(cuts, cuts[1:])), cuts[-1] + 1] if cuts else [1]
        ratios = []
        for x0 in points:
            # each on the interval that holds x0: every condition in x replaced by its value there
            de, dt = (sp.diff(a.xreplace({c: c.subs(x, x0) for c in a.atoms(Relational) if x in c.free_symbols}), x)
                      for a in (e, t))
            if dt.has(sp.Piecewise) or de.has(sp.Piecewise):
                return None, float("nan"), "a Piecewise condition in other variables"
            if sp.simplify(dt) == 0:
                quick = _not_number(de, x, x0, f"the formula varies with {x} where the truth does not (near {x} = "
                                               f"{x0})", zero=True)
                if quick[0] is False:  # visibly nonzero: no need for sympy (which can take minutes on a big formula)
                    return quick
                if sp.simplify(de) != 0:
                    return _not_number(de, x, x0, f"the formula varies with {x} where the truth does not "
                                                  f"(near {x} = {x0})", zero=True)
                continue
            names = ", ".join(sorted(v.name for v in (de / dt).free_symbols))
            quick = _not_number(de / dt, x, x0, f"d/d{x} of the formula over that of the truth depends on {names} "
                                                f"(it varies near {x} = {x0})")
            if quick[0] is False:  # the ratio visibly varies: decided without sympy, whose cancel() can run for
                return quick       # minutes on the large rationals of a long formula (measured: a Morse fit)
            ratio = sp.simplify(sp.cancel(sp.together(de / dt)))
            if ratio.free_symbols or not ratio.is_number:
                return _not_number(ratio, x, x0, f"d/d{x} of the formula over that of the truth depends on "
                                                 f"{', '.join(sorted(s.name for s in ratio.free_symbols))}")
            value = complex(ratio) if not ratio.has(sp.nan, sp.zoo, sp.oo, -sp.oo) else complex("nan")
            if value.imag != 0 or value.real == 0 or not math.isfinite(value.real):
                return False, float("nan"), f"d/d{x} of the formula over that of the truth is {ratio}"
            ratios.append(value.real)
    except Exception as err:  # sympy gives up in many ways on odd formulas
        return None, float("nan"), f"sympy failed ({type(err).__name__})"
    if not ratios:
        return None, float("nan"), f"the truth does not vary with {x}"
    if max(ratios) - min(ratios) > 1e-9 * max(abs(v) for v in ratios):
        return False, float("nan"), f"a different scale on each side of a threshold: {ratios}"
    return True, ratios[0], ""


def _cuts(expr: sp.Expr, x: sp.Symbol) -> list | None:
    """The x > 0 where a condition of ``expr`` may change, or None when sympy cannot list them."""
    rels = [c for c in expr.atoms(Relational) if x in c.free_symbols]
    if any(c.free_symbols != {x} for c in rels):
        return None
    roots = [sp.solveset(c.lhs - c.rhs, x, domain=sp.Interval.open(0, sp.oo)) for c in rels]
    return None if any(not isinstance(z, sp.FiniteSet) for z in roots) else [v for z in roots for v in z]


def _not_number(expr: sp.Expr, x: sp.Symbol, x0, why: str, *, zero: bool = False) -> tuple[bool | None, float, str]:
    """False when ``expr`` (that sympy did not simplify to a number, to 0 with ``zero``) visibly varies
    (is not 0) near x = x0; None (undecided) when it looks constant (looks 0) there."""
    rng = np.random.default_rng(0)
    names = sorted({s.name for s in expr.free_symbols} | {x.name})
    cols = {n: rng.uniform(0.3, 3.0, 16) * (rng.choice([-1, 1], 16) if n.startswith("q") else 1) for n in names}
    cols[x.name] = float(x0) * rng.uniform(0.99, 1.01, 16)
    v = lambdify([expr], names)(cols)[:, 0]
    looks = np.max(np.abs(v)) <= 1e-12 if zero else np.ptp(v) <= 1e-9 * np.max(np.abs(v))
    return (None if np.all(np.isfinite(v)) and looks else False), float("nan"), why
