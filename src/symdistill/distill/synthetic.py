"""Edge inputs drawn like the simulator's initial conditions, and the true pair force on them.

Used to verify formulas on held-out inputs, by the tests, and by SR-only baselines. Positions
N(0, 1), masses exp(N(0, 1)), charges ±1 where the law uses them (0 otherwise), as in
:func:`symdistill.simulate.simulate.initial_conditions`; dx = x_receiver - x_sender and
r = |dx| + 0.01 (the softened distance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import sympy as sp

from symdistill.errors import check_dim
from symdistill.names import displacement, law_variables as edge_variables
from symdistill.simulate.potentials import EPS, Law, get_law

#: dx, dy, dz (the displacement receiver - sender)
AXES = displacement(3)


def edge_samples(n: int, dim: int, *, seed: int = 0, charged: bool = True,
                 receiver: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """``n`` random edges: columns dx, dy, (dz), r, m1, m2, q1, q2.

    ``receiver`` fixes the receiver's own properties (e.g. ``{"m1": 2.0, "q1": -1.0}``).
    """
    check_dim(dim)
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((n, dim)) - rng.standard_normal((n, dim))
    out = {AXES[k]: d[:, k] for k in range(dim)}
    out["r"] = np.linalg.norm(d, axis=1) + EPS
    out["m1"], out["m2"] = np.exp(rng.standard_normal(n)), np.exp(rng.standard_normal(n))
    q = rng.integers(0, 2, size=(2, n)) * 2.0 - 1.0
    out["q1"], out["q2"] = (q[0], q[1]) if charged else (np.zeros(n), np.zeros(n))
    for name, value in (receiver or {}).items():
        out[name] = np.full(n, float(value))
    return out


def lambdify(exprs: Sequence[sp.Expr], variables: Sequence[str]):
    """Vectorised numpy function of columns for our own sympy expressions."""
    syms = [sp.Symbol(v) for v in variables]
    plain = [sp.sympify(e).xreplace({s: sp.Symbol(s.name) for s in sp.sympify(e).free_symbols})
             for e in exprs]
    fns = [sp.lambdify(syms, e, modules="numpy") for e in plain]

    def call(columns: Mapping[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(columns.values())))
        args = [np.asarray(columns[v], dtype=float) for v in variables]
        with np.errstate(all="ignore"):
            cols = [np.broadcast_to(_real(f(*args)), (n,)) for f in fns]
        return np.stack(cols, axis=1)
    return call


def _real(values) -> np.ndarray:
    """Values as floats; a complex value (e.g. a negative number to a fractional power) is NaN, not
    its real part."""
    v = np.asarray(values)
    if np.iscomplexobj(v):
        v = np.where(np.abs(v.imag) > 0, np.nan, v.real)
    return v.astype(float)


def true_force(law: Law | str, dim: int, samples: Mapping[str, np.ndarray]) -> np.ndarray:
    """The law's pair force on the receiver, [n, dim]."""
    law = get_law(law)
    return lambdify(law.force_expr(dim), edge_variables(dim))(samples)


def force_dataset(law: Law | str, dim: int, n: int, *, seed: int = 0):
    """Edge samples and the true force on them: ``(samples, force [n, dim])``."""
    law = get_law(law)
    samples = edge_samples(n, dim, seed=seed, charged=law.uses_charge)
    return samples, true_force(law, dim, samples)
