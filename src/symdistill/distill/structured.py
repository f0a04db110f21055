"""Searches that use what messages are: force-like vectors.

A message component of a working network is (close to) an affine function of the pair force,
phi = A F + b, and a central pair force is F = g(r, m1, m2, q1, q2) * u with u = dx / |dx| the unit
vector from sender to receiver. So instead of asking SR for phi as a function of every edge input
(:func:`plain_search`), :func:`structured_search`

1. finds the linear map: a matrix W and offset c such that W phi - c is parallel to u for every
   edge (linear in W and c: (W phi - c) x u = 0, solved by total least squares; no form of g is
   assumed), or, with fewer components than dimensions, a direction a per component from a
   generic basis fit;
2. reads off the scalar g = (W phi - c) . u and searches g as a function of r, m, q only;
3. for a discontinuous g, locates the threshold on r (one split with linear leaves) and searches
   each side, giving a sympy Piecewise;
4. recombines phi = A (g u) + b, with A = W^-1 and b = A c.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from symdistill.distill.pareto import DIGITS
from symdistill.distill.sr import SymbolicRegression, evaluate
from symdistill.distill.synthetic import AXES, edge_variables
from symdistill.errors import SymdistillError
from symdistill.expr import symbols
from symdistill.names import PAIR_VARIABLES as SCALAR_VARIABLES
from symdistill.simulate.potentials import EPS


def _columns(samples: Mapping[str, np.ndarray], Y, dim: int):
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    missing = [v for v in (*AXES[:dim], "r") if v not in samples]
    if missing:
        raise SymdistillError(f"`samples` must have columns {missing} (got {sorted(samples)})")
    n = len(samples["r"])
    if len(Y) != n:
        raise SymdistillError(f"Expected messages with {n} rows, one per edge (got shape {Y.shape})")
    d = np.column_stack([np.asarray(samples[a], dtype=float) for a in AXES[:dim]])
    norm = np.linalg.norm(d, axis=1)
    ok = (norm > 0) & np.all(np.isfinite(Y), axis=1)
    return Y, d / np.where(norm > 0, norm, 1)[:, None], ok


def fit_map(Y: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W [D, K], c [D] (up to a common scale) with W y_i - c parallel to u_i for every row.

    Every pair of axes (a, b) gives one equation z_a u_b - z_b u_a = 0, z = W y - c, linear in
    (W, c); the solution is the right singular vector of the smallest singular value. Rows are
    weighted so that a few huge messages (near-collisions) do not decide it.
    """
    n, K = Y.shape
    D = u.shape[1]
    mag2 = ((Y - np.median(Y, axis=0)) ** 2).sum(1)
    big = mag2 > 1e-12 * mag2.max()
    w = 1.0 / np.sqrt(mag2 + (np.median(mag2[big]) if big.any() else 1.0))
    rows = []
    for a in range(D):
        for b in range(a + 1, D):
            block = np.zeros((n, D * K + D))
            # z_a u_b: +u_b * (W[a] . y - c_a);  - z_b u_a: -u_a * (W[b] . y - c_b)
            block[:, a * K:(a + 1) * K] = u[:, [b]] * Y
            block[:, D * K + a] = -u[:, b]
            block[:, b * K:(b + 1) * K] = -u[:, [a]] * Y
            block[:, D * K + b] = u[:, a]
            rows.append(block * w[:, None])
    M = np.vstack(rows)
    scale = np.linalg.norm(M, axis=0)
    scale[scale == 0] = 1
    _, _, Vt = np.linalg.svd(M / scale, full_matrices=False)
    theta = Vt[-1] / scale
    return theta[:D * K].reshape(D, K), theta[D * K:]


def fit_direction(y: np.ndarray, u: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, float]:
    """One component y = g(s) (a . u) + b: a [D] (unit) and b, from y ~ b + sum_c u_c (B(s) w_c)
    with a generic basis B; the coefficient matrix is rank one, a is its leading singular vector."""
    D, J = u.shape[1], features.shape[1]
    design = np.column_stack([np.ones(len(y))] + [u[:, [c]] * features for c in range(D)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    M = coef[1:].reshape(D, J)
    U, _, _ = np.linalg.svd(M, full_matrices=False)
    return U[:, 0], float(coef[0])


def _basis(s: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    r = np.asarray(s["r"], dtype=float)
    radial = [np.ones_like(r), r, r**2, 1 / r, 1 / r**2, 1 / r**3, np.log(r)]
    props = [np.ones_like(r)] + [np.asarray(s[v], dtype=float) for v in names if v != "r"]
    if "m1" in names and "m2" in names:
        props.append(np.asarray(s["m1"]) * np.asarray(s["m2"]))
    if "q1" in names and "q2" in names:
        props.append(np.asarray(s["q1"]) * np.asarray(s["q2"]))
    return np.column_stack([a * b for a in radial for b in props])


def find_split(x: np.ndarray, g: np.ndarray, features: np.ndarray, *, n_candidates: int = 80,
               min_side: float = 0.05) -> tuple[float, float, float]:
    """Best single threshold on ``x`` for a model with linear leaves on ``features``.

    Returns (threshold, SSE without a split / SSE with it, jump at the threshold / residual
    scale): both large for a discontinuous law, small for a smooth one.
    """
    def sse(mask):
        coef, *_ = np.linalg.lstsq(features[mask], g[mask], rcond=None)
        res = g[mask] - features[mask] @ coef
        return float(res @ res), coef
    whole, _ = sse(np.ones(len(x), bool))
    best = (np.inf, None)
    for t in np.unique(np.quantile(x, np.linspace(min_side, 1 - min_side, n_candidates))):
        left = x < t
        total = sse(left)[0] + sse(~left)[0]
        if total < best[0]:
            best = (total, t)
    total, t = best
    # Refine between the neighbouring grid points, at the resolution of the samples themselves.
    grid = np.quantile(x, np.linspace(min_side, 1 - min_side, n_candidates))
    i = int(np.searchsorted(grid, t))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    xs = np.unique(x[(x > lo) & (x < hi)])
    for a, b in zip(xs[:-1], xs[1:]):
        cut = 0.5 * (a + b)
        left = x < cut
        tot = sse(left)[0] + sse(~left)[0]
        if tot < total:
            total, t = tot, cut
    left = x < t
    (sl, cl), (sr, cr) = sse(left), sse(~left)
    near = np.abs(x - t) <= np.quantile(np.abs(x - t), 0.05)
    jump = np.median(np.abs(features[near] @ cl - features[near] @ cr))
    noise = np.sqrt((sl + sr) / len(x)) + 1e-12 * (np.std(g) + 1e-300)
    return float(t), whole / max(total, 1e-300), float(jump / noise)


def _refine_threshold(x, g, f_left, f_right, t0, digits):
    """Move the threshold to where the two side formulas fit best (a scan within 5% of t0),
    rounded to ``digits`` significant digits."""
    grid = np.linspace(t0 - 0.05 * abs(t0), t0 + 0.05 * abs(t0), 201)
    errs = [np.sum(np.abs(np.where(x < t, f_left, f_right) - g)) for t in grid]
    errs = np.where(np.isfinite(errs), errs, np.inf)
    t = grid[int(np.argmin(errs))] if np.isfinite(errs).any() else t0
    return float(f"{t:.{digits}g}")


@dataclass
class StructuredResult:
    """``expressions``: one sympy formula per message component; ``scalar``: g(r, m, q);
    ``force``: g * u, the discovered pair force (direction unit vector dx/(r - EPS));
    ``A`` [K, D], ``b`` [K]: messages = A force + b; ``threshold``: the split on r, if any;
    ``searches``: the fitted SymbolicRegression objects (one, or two for a Piecewise)."""

    expressions: list[sp.Expr]
    scalar: sp.Expr
    force: list[sp.Expr]
    A: np.ndarray
    b: np.ndarray
    mode: str
    threshold: float | None = None
    split_evidence: dict = field(default_factory=dict)
    searches: list[SymbolicRegression] = field(default_factory=list)
    direction_r2: float = float("nan")
    # (complexity, scalar, expressions, A) for the Pareto rows no more complex than the selected one
    # (the selected one included, simplest first); empty for a Piecewise. The distillation chooses
    # among them by how well each predicts the raw data once its constants are refitted.
    alternatives: list[tuple[int, sp.Expr, list[sp.Expr], np.ndarray]] = field(default_factory=list)


def structured_search(samples: Mapping[str, np.ndarray], messages, dim: int,
                      sr: SymbolicRegression | None = None, *, piecewise: bool | str = "auto",
                      scalar_variables: Sequence[str] = SCALAR_VARIABLES, digits: int = DIGITS,
                      min_jump: float = 5.0, min_gain: float = 10.0, max_alternatives: int = 6,
                      trim_largest: float = 0.0) -> StructuredResult:
    """(fitted linear map) x (scalar SR on r, m, q) x (direction) for K message components.

    Shapes: ``samples`` columns [E] (dx, dy, (dz), r, m1, m2, q1, q2); ``messages`` [E, K] or [E].
    ``piecewise``: True, False, or "auto" (split when the one-split model tree shows a jump of
    ``min_jump`` x the residual scale and cuts the squared error ``min_gain``-fold).
    ``max_alternatives``: how many Pareto rows, up to the selected one, to map into
    ``StructuredResult.alternatives``.
    ``trim_largest``: fraction of edges, those with the largest scalar |g|, left out of the search
    (the map is still fitted on all).
    """
    if piecewise not in (True, False, "auto"):
        raise SymdistillError(f"`piecewise` must be True, False or 'auto' (got {piecewise!r})")
    sr = sr if sr is not None else SymbolicRegression()
    Y, u, ok = _columns(samples, messages, dim)
    s = {k: np.asarray(v, dtype=float)[ok] for k, v in samples.items()}
    Y, u = Y[ok], u[ok]
    names = [v for v in scalar_variables if v in s and np.ptp(s[v]) > 0]
    if "r" not in names:
        raise SymdistillError("`samples` must have a varying column `r` for a structured search")
    mode = "joint" if Y.shape[1] >= dim else "component"
    g = _scalar_target(Y, u, s, names, mode)
    fit = np.isfinite(g)
    g[fit & (np.abs(g) <= 1e-9 * np.abs(g[fit]).max())] = 0.0  # round-off where the law vanishes
    if trim_largest > 0 and fit.any():  # the largest |g|: where a network is least accurate
        fit &= np.abs(g) <= np.quantile(np.abs(g[fit]), 1 - trim_largest)
    x = {v: s[v][fit] for v in names}
    scalar, threshold, evidence, searches = _search_scalar(
        x, g[fit], names, sr, piecewise, digits, min_jump=min_jump, min_gain=min_gain)
    exprs, force, A, b, direction_r2 = _mapped(scalar, s, names, Y, u, dim, digits)
    alternatives = []
    if threshold is None and max_alternatives > 1:
        table = searches[0].pareto_
        rows = [e for e in table if e.complexity <= table.best.complexity][-max_alternatives:]
        for e in rows:
            alt = (exprs, force, A) if e.selected else _mapped(e.expr, s, names, Y, u, dim, digits)
            alternatives.append((e.complexity, e.expr, alt[0], alt[2]))
    return StructuredResult(exprs, scalar, force, A, b, mode, threshold, evidence, searches, direction_r2,
                            alternatives)


def _mapped(scalar, s, names, Y, u, dim, digits):
    """Refit the map to a scalar law (its own scale and sign), on every edge: the message formulas
    ``A (scalar * direction) + b``, the force, A, b and the R^2 of the messages so explained."""
    G = evaluate(scalar, {v: s[v] for v in names})
    design = np.column_stack([G[:, None] * u, np.ones(len(G))])
    good = np.all(np.isfinite(design), axis=1)
    coef, *_ = np.linalg.lstsq(design[good], Y[good], rcond=None)
    A, b = coef[:-1].T, coef[-1]
    resid = Y[good] - design[good] @ coef
    direction_r2 = float(1 - resid.var(0).sum() / Y[good].var(0).sum())

    sym = symbols(edge_variables(dim))
    direction = [sym[a] / (sym["r"] - sp.Float(EPS)) for a in AXES[:dim]]
    force = [scalar * d for d in direction]
    rnd = lambda v: sp.Float(float(f"{v:.{digits}g}"), digits)  # noqa: E731
    exprs = [sum((rnd(A[k, c]) * force[c] for c in range(dim) if abs(A[k, c]) > 1e-12 * np.abs(A).max()),
                 sp.Integer(0)) + rnd(b[k]) for k in range(A.shape[0])]
    return exprs, force, A, b, direction_r2


def _scalar_target(Y, u, s, names, mode) -> np.ndarray:
    """g per edge (NaN where it cannot be read off), from the estimated map."""
    if mode == "joint":
        W, c = fit_map(Y, u)
        unit = np.linalg.norm(np.linalg.pinv(W), 2)  # scale so that A = W^-1 has unit norm:
        W, c = W * unit, c * unit                     # g then has the messages' scale
        return np.sum((Y @ W.T - c) * u, axis=1)
    lead = int(np.argmax(Y.var(0)))  # g from the strongest component; the map is refitted later
    a, b0 = fit_direction(Y[:, lead], u, _basis(s, names))
    proj = u @ a
    good = np.abs(proj) > 0.3  # dividing by a small projection amplifies noise
    g = np.full(len(proj), np.nan)
    g[good] = (Y[good, lead] - b0) / proj[good]
    return g


#: Mean |g| on one side of a split, relative to the mean over both, below which that side is 0.
VANISH = 0.02


def _search_scalar(x, g, names, sr, piecewise, digits, *, min_jump, min_gain):
    """SR on g(r, m, q), split at a threshold on r when the law jumps there."""
    threshold, evidence = None, {}
    if piecewise:
        feats = np.column_stack([np.ones(len(g)), x["r"]] + [x[v] for v in names if v != "r"])
        t, gain, jump = find_split(x["r"], g, feats)
        evidence = {"threshold": t, "sse_gain": gain, "jump_over_noise": jump}
        if piecewise is True or (gain >= min_gain and jump >= min_jump):
            threshold = t
    if threshold is None:
        one = copy.deepcopy(sr).fit(x, g, variable_names=names)
        return one.sympy(), None, evidence, [one]
    left = x["r"] < threshold
    parts = []
    for side in (left, ~left):
        part = copy.deepcopy(sr)
        part.time_budget = max(1.0, sr.time_budget / 2)
        parts.append(part.fit({v: x[v][side] for v in names}, g[side], variable_names=names))
    # A side whose values are within VANISH of nothing is zero: SR would otherwise fit its noise
    # with something like 1e-105*exp(118*r), which is 0 there but explodes beyond the data.
    exprs = [p.sympy() for p in parts]
    scale = float(np.mean(np.abs(g)))
    for k, side in enumerate((left, ~left)):
        if scale > 0 and float(np.mean(np.abs(g[side]))) < VANISH * scale:
            exprs[k] = sp.Integer(0)
    evidence["vanishing_sides"] = [k for k in range(2) if exprs[k] == 0]
    fl, fr = (evaluate(e, x) for e in exprs)
    threshold = _refine_threshold(x["r"], g, fl, fr, threshold, digits)
    evidence["refined_threshold"] = threshold
    r = symbols(["r"])["r"]
    scalar = sp.Piecewise((exprs[0], r < sp.Float(threshold, digits)), (exprs[1], True))
    return scalar, threshold, evidence, parts


def plain_search(samples: Mapping[str, np.ndarray], messages, dim: int,
                 sr: SymbolicRegression | None = None,
                 variables: Sequence[str] | None = None) -> list[SymbolicRegression]:
    """The paper's search: each message component as a function of all edge inputs."""
    sr = sr if sr is not None else SymbolicRegression()
    Y = np.asarray(messages, dtype=float)
    Y = Y[:, None] if Y.ndim == 1 else Y
    names = [v for v in (variables or edge_variables(dim)) if v in samples and np.ptp(samples[v]) > 0]
    return [copy.deepcopy(sr).fit({v: samples[v] for v in names}, Y[:, k], variable_names=names)
            for k in range(Y.shape[1])]
