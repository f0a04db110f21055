"""The final law: the searched form, its constants refitted on raw accelerations, then snapped.

A search returns constants to four digits of a noisy target (a spring's rest length 0.976, an
exponent -1.93), and a refit on raw data moves them close to the truth but never onto it. The law a
physicist reads has the simple value where the data cannot tell the difference, so
:func:`final_law`

1. normalises the scalar law g of F = g r_hat: its overall scale goes into the message map (the
   method cannot identify it), and each sum inside is divided by its leading term, so that ratios
   between constants become constants of their own (0.2367 r - 0.232 -> r - 0.980);
2. refits every constant (law, map and node formulas) on raw accelerations of training graphs;
3. tries each constant of the law at simple values (0, which drops a term or a factor; the
   nearest integer; halves, thirds and quarters), the closest to one first, refitting the others, and
   keeps the first whose error on other training graphs is within ``tolerance`` of the unsnapped
   law's (:data:`SNAP_TOLERANCE`);
4. refits what is left, and reports the law in textbook form (:func:`textbook`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
import torch

from symdistill.distill.compose import PairForceModel
from symdistill.distill.pareto import round_constants
from symdistill.expr import symbols

#: A snapped law may be this much worse (relative held-out MAE) than the unsnapped refit and still
#: be kept: the refit's own convergence varies by about a percent between neighbouring constants.
SNAP_TOLERANCE = 0.03
_R = symbols(["r"])["r"]


def _lead_key(term: sp.Expr):
    """The term a sum is normalised by: one with r, the highest power of r, the most variables."""
    power = sp.sympify(term.as_powers_dict().get(_R, 0))
    return (term.has(_R), float(abs(power)) if power.is_number else 0.0, len(term.free_symbols))


def normalise(expr) -> tuple[sp.Expr, sp.Expr]:
    """(k, g) with expr = k * g, g's leading coefficients 1 (module docstring, step 1)."""
    e = sp.sympify(expr)
    if e.is_number:
        return e, sp.Integer(1)
    if isinstance(e, sp.Piecewise):
        parts = [(normalise(v), c) for v, c in e.args]
        k = next((kv for (kv, gv), _ in parts if gv != 0 and kv != 0), sp.Integer(1))
        rel = lambda kv, gv: gv if float(kv / k) == 1 else (kv / k) * gv  # noqa: E731
        return k, sp.Piecewise(*[(sp.Integer(0) if gv == 0 else rel(kv, gv), c) for (kv, gv), c in parts])
    if e.is_Add:
        terms = sp.Add.make_args(e)
        lead = max(terms, key=_lead_key)
        k, _ = lead.as_coeff_Mul()
        if k == 0 or float(k) == 1:  # nothing to divide by (a float 1.0 would turn exact terms into floats)
            return sp.Integer(1), sp.Add(*[_unit(t) if t is lead else t for t in terms])
        # only the leading term's coefficient is exactly 1; the others stay constants to refit
        return k, sp.Add(*[_unit(t / k) if t is lead else t / k for t in terms])
    if e.is_Mul:
        k, rest = e.as_coeff_Mul()
        factors = []
        for f in sp.Mul.make_args(rest):
            kf, fn = normalise(f) if (f.is_Add or f.is_Pow) else (sp.Integer(1), f)
            k, factors = k * kf, factors + [fn]
        return k, sp.Mul(*factors)
    if e.is_Pow:
        base, ex = e.args
        if ex.is_number and base.is_Add:  # (a r + b)^p = a^p (r + b/a)^p, for a > 0 or an integer p
            kb, bn = normalise(base)
            if kb.is_positive or ex.is_integer:
                return kb**ex, bn**ex
    return sp.Integer(1), e


def _unit(term: sp.Expr) -> sp.Expr:
    """A term with a coefficient of +-1.0 written with an exact one."""
    c, rest = term.as_coeff_Mul()
    return (sp.Integer(1) if float(c) == 1 else -sp.Integer(1) if float(c) == -1 else c) * rest


def candidates(value: float) -> list[sp.Rational]:
    """Simple values near ``value``, simplest first: 0 (always: a coefficient at 0 drops its term,
    an exponent at 0 its factor, whatever their size: a search leaves terms like
    8e94 exp(-123 r) that vanish on the data), the nearest integer (within 0.25), halves, thirds and
    quarters up to 3 (within 0.1)."""
    out = [sp.Integer(0)]
    n = round(value)
    if n != 0 and abs(value - n) <= 0.25:
        out.append(sp.Integer(n))
    for q in (2, 3, 4):  # fractions are simple only as small numbers (exponents, ratios near 1)
        p = round(value * q)
        if p % q and abs(value - p / q) <= 0.1 and abs(p / q) <= 3:
            out.append(sp.Rational(p, q))
    seen, unique = set(), []
    for c in out:
        if c not in seen and float(c) != value:
            seen.add(c)
            unique.append(c)
    return unique


@dataclass
class FinalLaw:
    """``scalar``: g (normalised, snapped, other constants refitted); ``model``: the refitted symbolic
    model it is part of; ``mae``/``mae_unsnapped``: held-out raw MAE of the model; ``snaps``: every
    constant tried, with the value tried and the error it gave."""

    scalar: sp.Expr
    model: PairForceModel
    mae: float
    mae_unsnapped: float
    snaps: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"scalar": sp.sstr(self.scalar), "textbook": textbook(self.scalar),
                "held_out_mae": self.mae, "held_out_mae_unsnapped": self.mae_unsnapped, "snaps": self.snaps}


def final_law(scalar, A, node_exprs, dim: int, fit: dict, score: dict, *, steps: int = 300,
              snap_steps: int = 80, tolerance: float = SNAP_TOLERANCE, seed: int = 0) -> FinalLaw:
    """Refit and snap the law ``scalar`` (g, with messages = A (g u), node formulas ``node_exprs``)
    on raw accelerations: refitted on ``fit``, errors measured on ``score`` (both dicts of pos, vel,
    acc, mass, charge arrays of *training* graphs). See the module docstring."""
    k, g = normalise(scalar)
    g = round_constants(g, 6)
    model = PairForceModel(g, float(k) * np.asarray(A, dtype=float), node_exprs, dim)
    model.refit(fit, steps=steps, seed=seed)
    base = model.mae(score)
    model, snaps = snap_constants(model, lambda m: m.g, fit, score, base, snap_steps=snap_steps,
                                  tolerance=tolerance, seed=seed)
    model.refit(fit, steps=steps, seed=seed)
    law = round_constants(model.scalar(), 4)
    return FinalLaw(law, model, model.mae(score), base, snaps)


def snap_constants(model, expression, fit: dict, score: dict, base: float, *, snap_steps: int = 80,
                   tolerance: float = SNAP_TOLERANCE, seed: int = 0, label: str | None = None):
    """Step 3 of the module docstring on the :class:`~symdistill.expr.TorchExpr` ``expression(model)``:
    each constant, the closest to a simple value first, tried at its :func:`candidates` with the
    others refitted (``model.refit(fit, ...)``); the first whose ``model.mae(score)`` is within
    ``tolerance`` of ``base`` is kept. Returns (the model, every trial as a dict)."""
    snaps: list[dict] = []
    values = expression(model).constant_values()
    order = sorted(range(len(values)), key=lambda i: _distance(values[i]))
    for i in order:
        value = expression(model).constant_values()[i]
        for cand in candidates(value):
            trial = copy.deepcopy(model)
            expression(trial).fix(i, cand)
            trial.refit(fit, steps=snap_steps, seed=seed)
            err = trial.mae(score)
            kept = bool(np.isfinite(err) and err <= base * (1 + tolerance))
            snaps.append({"value": round(value, 6), "to": sp.sstr(cand), "held_out_mae": err, "kept": kept}
                         | ({} if label is None else {"in": label}))
            if kept:
                model = trial
                break
    return model, snaps


def _distance(value: float) -> float:
    c = candidates(value)
    return min((abs(value - float(x)) for x in c), default=np.inf)


def textbook(g, *, k: float | None = None) -> str:
    """``F = -k (r - 1) r̂`` for g = k' (1 - r): the normalised law with its sign, times r̂ (the unit
    vector from the sender to the receiver). With ``k`` (the law is then k g), its sign joins g's
    and ``k = |k|`` follows."""
    scale, shape = normalise(g)
    negative = bool(scale.is_number and float(scale) < 0) != bool(k is not None and k < 0)
    if isinstance(shape, sp.Piecewise):
        branches = "; ".join(f"{_text(v)} if {_text(c)}" if c is not sp.true else f"{_text(v)} otherwise"
                             for v, c in shape.args)
        body = f"{{{branches}}}"
    else:
        body = f"({_text(shape)})" if shape.is_Add else _text(shape)
    body = "" if shape == 1 else body + " "  # a constant force: F = -k r̂
    out = f"F = {'-' if negative else ''}k {body}r̂"
    return out if k is None else f"{out},  k = {abs(k):.4g}"


def truth_textbook(law) -> str:
    """The law's own force in the same textbook form as a discovered one."""
    k, shape = normalise(law.force_magnitude_expr())
    return textbook(shape, k=float(k))


def _text(e) -> str:
    return sp.sstr(e).replace("**", "^")


def physical_scale(g, data: dict, dim: int) -> tuple[float | None, str]:
    """k of F = k g r_hat in the data's units, by least squares of m^p a on sum_j g u (p = 1:
    Newton's a = F / m; p = 0: g already carries the receiver's 1/m), with velocity columns for
    damping; (None, why) when neither explains the accelerations to 1%."""
    names = [sp.Symbol(f"s{c}") for c in range(dim)]
    model = PairForceModel(g, np.eye(dim), names, dim, trainable=False)
    t = {key: torch.as_tensor(v, dtype=torch.float64) for key, v in data.items()}
    with torch.no_grad():
        S = model.messages(t["pos"], t["vel"], t["mass"], t["charge"]).numpy()
    m, acc, vel = data["mass"][..., None], data["acc"], data["vel"]
    best = (np.inf, None, "")
    for p, how in ((1, "a = F/m1"), (0, "a = F, the law carries 1/m1")):
        y = (m**p * acc).ravel()
        X = np.column_stack([S.ravel(), vel.ravel(), (vel / m).ravel()])
        ok = np.all(np.isfinite(X), axis=1) & np.isfinite(y)
        coef, *_ = np.linalg.lstsq(X[ok], y[ok], rcond=None)
        rel = float(np.linalg.norm(y[ok] - X[ok] @ coef) / max(np.linalg.norm(y[ok]), 1e-300))
        if rel < best[0]:
            best = (rel, float(coef[0]), how)
    rel, k, how = best
    if rel > 0.01:
        return None, f"no single k explains the accelerations (relative residual {rel:.2g})"
    return k, f"least squares of the raw accelerations on the law, {how} (relative residual {rel:.2g})"
