"""Minimising a mean absolute error: an exact L1 linear fit (HiGHS), and L-BFGS/Adam on a smoothed L1
that keeps the best exact MAE it saw (so a refit never ends worse than its start)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy as sp
import torch
from scipy import optimize, sparse

def l1_linear(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients b minimising sum |y - X b| exactly (linear programme, HiGHS)."""
    n, k = X.shape
    eye = sparse.identity(n, format="csr")
    A = sparse.hstack([sparse.csr_matrix(X), eye, -eye], format="csr")
    c = np.concatenate([np.zeros(k), np.ones(2 * n)])
    bounds = [(None, None)] * k + [(0, None)] * (2 * n)
    res = optimize.linprog(c, A_eq=A, b_eq=y, bounds=bounds, method="highs")
    if res.status != 0:  # should not happen for a feasible, bounded L1 problem; least squares then
        return np.linalg.lstsq(X, y, rcond=None)[0]
    return res.x[:k]


def minimise_mae(params: Sequence[torch.Tensor], residuals, *, adam_steps: int = 0, lr: float = 1e-2,
                 lbfgs_steps: int = 100, widths: Sequence[float] = (1e-1, 1e-2, 1e-3)) -> float:
    """Minimise mean |residuals()| over ``params`` (in place); returns the lowest exact MAE seen and
    leaves ``params`` at it. L-BFGS on sqrt(res^2 + w^2) with w = width x the best MAE so far (each
    width in turn), then ``adam_steps`` of Adam on it (cosine schedule), then L-BFGS again."""
    params = [p for p in params if p.numel()]
    with torch.no_grad():
        best = _mae(residuals())
    state = [p.detach().clone() for p in params]

    def keep(value: float) -> None:
        nonlocal best, state
        if value < best:
            best, state = value, [p.detach().clone() for p in params]

    def surrogate(width: float) -> torch.Tensor:
        res = residuals()
        return torch.mean(torch.sqrt(res**2 + width**2) - width), res

    def lbfgs() -> None:
        for frac in widths:
            width = frac * (best if np.isfinite(best) else 1.0)
            opt = torch.optim.LBFGS(params, lr=1.0, max_iter=lbfgs_steps, line_search_fn="strong_wolfe",
                                    tolerance_grad=1e-12, tolerance_change=1e-14)

            def closure():
                opt.zero_grad()
                value, _ = surrogate(width)
                if torch.isfinite(value):
                    value.backward()
                return value
            try:
                opt.step(closure)
            except (RuntimeError, IndexError, ValueError):  # a non-finite loss inside the line search
                pass
            with torch.no_grad():
                keep(_mae(residuals()))
            _restore(params, state)  # continue from the best, not from where a bad search ended

    if not params or not np.isfinite(best):
        return best
    lbfgs()
    if adam_steps:
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, adam_steps)
        width = widths[0] * best
        for _ in range(adam_steps):
            opt.zero_grad()
            value, res = surrogate(width)
            keep(_mae(res.detach()))  # the MAE of the constants before this step
            if not torch.isfinite(value):
                break
            value.backward()
            opt.step()
            sched.step()
        _restore(params, state)
        lbfgs()
    _restore(params, state)
    return best


def _mae(res: torch.Tensor) -> float:
    value = float(res.abs().mean()) if len(res) else 0.0
    return value if np.isfinite(value) else float("inf")


@torch.no_grad()
def _restore(params, state) -> None:
    for p, s in zip(params, state):
        p.copy_(s)


def untie(expr: sp.Expr) -> sp.Expr:
    """Make equal float constants at different places distinct (by 1e-9 relative), since
    :class:`TorchExpr` fits one parameter per distinct float: 0.25 + e/(1 + 0.25 M_i) has two."""
    seen: dict[sp.Float, int] = {}

    def walk(e):
        if isinstance(e, sp.Float):
            k = seen[e] = seen.get(e, -1) + 1
            return e if k == 0 else sp.Float(float(e) * (1 + k * 1e-9))
        return e.func(*[walk(a) for a in e.args]) if e.args else e
    return walk(sp.sympify(expr))
