"""The symbolic model: edge formulas + sum + node formula, as one torch module with refittable constants.

    s_k(i) = sum_{j != i} phi_k(dx, dy, (dz), r, m1, m2, q1, q2, dvx, ...)   (edge formulas)
    a_c(i) = psi_c(s_0, ..., s_{D-1}, m, q, vx, vy, ...)                     (node formulas)

``m1, q1`` are the receiver's, ``m2, q2`` the sender's, and dx = x_receiver - x_sender, exactly as in
:mod:`symdistill.simulate.potentials`. Every float constant of the formulas is a parameter, refitted
on raw data by :meth:`SymbolicModel.refit` (PAPER.md §1 step 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy as sp
import torch
from torch import nn

from symdistill.expr import TorchExpr, symbols
from symdistill.names import axes, displacement, node_model_variables as node_variables, relative_edge_inputs
from symdistill.simulate.integrate import pair_geometry
from symdistill.simulate.potentials import EPS
from symdistill.train.metrics import mean_abs_error


class SymbolicModel(nn.Module):
    """Accelerations from formulas. Shapes: forward(pos, vel [B, N, D], mass, charge [B, N]) -> [B, N, D]."""

    def __init__(self, edge_exprs: Sequence[sp.Expr], node_exprs: Sequence[sp.Expr], dim: int,
                 *, trainable: bool = True, n_messages: int | None = None):
        super().__init__()
        self.dim = dim
        self.edge_vars = relative_edge_inputs(dim)  # what record_messages records
        self.node_vars = node_variables(dim, len(edge_exprs) if n_messages is None else n_messages)
        self.edge = nn.ModuleList(TorchExpr(e, self.edge_vars, trainable=trainable) for e in edge_exprs)
        self.node = nn.ModuleList(TorchExpr(e, self.node_vars, trainable=trainable) for e in node_exprs)
        if len(node_exprs) != dim:
            raise ValueError(f"Expected {dim} node formulas (got {len(node_exprs)})")

    def messages(self, pos, vel, mass, charge) -> torch.Tensor:
        """Summed edge formulas per node, [B, N, K]."""
        d, dist, off = pair_geometry(pos)
        dv = vel[:, :, None, :] - vel[:, None, :, :]
        x = {f"d{a}": d[..., k] for k, a in enumerate(axes(self.dim))}
        x |= {f"dv{a}": dv[..., k] for k, a in enumerate(axes(self.dim))}
        ones = torch.ones_like(dist)
        x |= dict(r=dist + EPS, m1=mass[:, :, None] * ones, m2=mass[:, None, :] * ones,
                  q1=charge[:, :, None] * ones, q2=charge[:, None, :] * ones)
        return torch.where(off[..., None], self.edge_messages(x), 0.0).sum(2)

    def edge_messages(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every edge's messages [B, N, N, K] from its inputs (each [B, N, N])."""
        return torch.stack([f(**x) for f in self.edge], -1)

    def forward(self, pos, vel, mass, charge) -> torch.Tensor:
        s = self.messages(pos, vel, mass, charge)
        x = {f"s{k}": s[..., k] for k in range(s.shape[-1])}
        x |= dict(m=mass, q=charge) | {f"v{a}": vel[..., k] for k, a in enumerate(axes(self.dim))}
        return torch.stack([f(**x) for f in self.node], -1)

    def sympy(self) -> tuple[list[sp.Expr], list[sp.Expr]]:
        return [f.sympy() for f in self.edge], [f.sympy() for f in self.node]

    def n_constants(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def mae(self, data: dict[str, np.ndarray], chunk: int = 4096) -> float:
        """Mean absolute error on accelerations of ``data`` (pos, vel, acc [B, N, D]; mass, charge [B, N])."""
        def pairs():
            for s in range(0, len(data["pos"]), chunk):
                t = {k: torch.as_tensor(v[s:s + chunk], dtype=torch.float64) for k, v in data.items()}
                yield self(t["pos"], t["vel"], t["mass"], t["charge"]), t["acc"]
        return mean_abs_error(pairs(), nonfinite=1e30)

    def refit(self, data: dict[str, np.ndarray], *, steps: int = 300, lr: float = 1e-2,
              max_graphs: int = 4096, seed: int = 0) -> tuple[float, float]:
        """Refit every constant by Adam on the MAE of accelerations; returns (MAE before, after).

        Keeps the best constants seen, so the refit never makes the model worse on its data.
        """
        return refit_constants(self, data, lambda t: (self(t["pos"], t["vel"], t["mass"], t["charge"]) - t["acc"]).abs().mean(),
                               steps=steps, lr=lr, max_graphs=max_graphs, seed=seed)


def refit_constants(model: nn.Module, data: dict[str, np.ndarray], loss, *, steps: int = 300, lr: float = 1e-2,
                    max_graphs: int = 4096, seed: int = 0, optimizer: str = "adam") -> tuple[float, float]:
    """Refit every constant of ``model`` (its :class:`TorchExpr` parameters) on ``loss(t)`` (``t``:
    float64 tensors of up to ``max_graphs`` graphs of ``data``); returns ``model.mae(data)`` before
    and after. Keeps the best constants seen, so the refit never makes the model worse.

    ``optimizer``: ``"adam"`` (``steps`` steps, cosine schedule from ``lr``: robust on any loss), or
    ``"lbfgs"`` (``steps`` iterations of L-BFGS with a strong-Wolfe line search, for a smooth loss:
    on clean data it takes a few constants to the data's precision, where Adam stalls ~1e-4 away)."""
    for f in model.modules():
        if isinstance(f, TorchExpr):
            f.normalise_constants()
    params = [p for p in model.parameters() if p.numel()]
    before = model.mae(data)
    if not params:
        return before, before
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data["pos"]))[:max_graphs]
    t = {k: torch.as_tensor(v[idx], dtype=torch.float64) for k, v in data.items()}
    best, best_state = before, [p.detach().clone() for p in params]
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-12, tolerance_change=1e-15)

        def closure():
            opt.zero_grad()
            value = loss(t)
            if torch.isfinite(value):
                value.backward()
            return value
        try:
            opt.step(closure)
        except (RuntimeError, IndexError, ValueError):  # a non-finite loss inside torch's line search (its
            pass  # bracketing can then fail with an IndexError): the best constants are restored below
        steps = 0
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    for _ in range(steps):
        opt.zero_grad()
        value = loss(t)
        if not torch.isfinite(value):
            break
        value.backward()
        opt.step()
        sched.step()
    after = model.mae(data)
    if not after < best:
        with torch.no_grad():
            for p, b in zip(params, best_state):
                p.copy_(b)
        after = best
    return before, after


class PairForceModel(SymbolicModel):
    """A symbolic model whose messages are a linear map of one central pair force, A (g u), with
    u = dx / (r - EPS): the form of the structured search (:mod:`symdistill.distill.structured`),
    with g's constants shared by every message component, so that refitting them refits *the law*.

    ``scalar``: g in r, m1, m2, q1, q2; ``A`` [K, D]."""

    def __init__(self, scalar: sp.Expr, A, node_exprs: Sequence[sp.Expr], dim: int, *,
                 trainable: bool = True):
        A = np.asarray(A, dtype=float)
        super().__init__([], node_exprs, dim, trainable=trainable, n_messages=A.shape[0])
        self.g = TorchExpr(scalar, self.edge_vars, trainable=trainable)
        # A = A_unit * A_scale: Adam's steps are then relative to the map's size, as for the constants
        scale = float(np.abs(A).max()) or 1.0
        self.register_buffer("A_scale", torch.tensor(scale, dtype=torch.float64))
        self.A_unit = nn.Parameter(torch.as_tensor(A / scale, dtype=torch.float64), requires_grad=trainable)

    @property
    def A(self) -> torch.Tensor:
        return self.A_unit * self.A_scale

    def edge_messages(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        u = torch.stack([x[a] for a in displacement(self.dim)], -1) / (x["r"] - EPS)[..., None]
        return (self.g(**x)[..., None] * u) @ self.A.T

    def scalar(self) -> sp.Expr:
        """g with its current constants."""
        return self.g.sympy()

    def sympy(self) -> tuple[list[sp.Expr], list[sp.Expr]]:
        sym = symbols(self.edge_vars)
        u = [sym[a] / (sym["r"] - sp.Float(EPS)) for a in displacement(self.dim)]
        g, A = self.scalar(), self.A.detach().numpy()
        edges = [sum((sp.Float(float(A[k, c]), 6) * g * u[c] for c in range(self.dim)), sp.Integer(0))
                 for k in range(A.shape[0])]
        return edges, [f.sympy() for f in self.node]
