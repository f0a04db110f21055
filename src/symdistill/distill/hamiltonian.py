"""The symbolic Hamiltonian: a discovered pair energy U and self energy T as one torch module,

    H = sum_i T(p_i, m_i, q_i) + sum_{i<j} U(r_ij, m_i, m_j, q_i, q_j),   p = m v, r = |dx| + 0.01

integrated by Hamilton's equations (a = -(dH/dq)/m, dq/dt = dH/dp, by autograd in float64) and with
every float constant refittable on raw data (:meth:`SymbolicHamiltonian.refit`: the MAE of the
accelerations, plus that of the velocities for T's constants, each relative to its scale). It follows
the dynamics protocol of :mod:`symdistill.distill.rollout` (``accelerations``, ``energy``), so it can
be rolled out like the network it came from. U is used symmetrised, (U(i, j) + U(j, i)) / 2.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch
from torch import nn

from symdistill.distill.compose import refit_constants
from symdistill.expr import TorchExpr
from symdistill.names import PAIR_VARIABLES
from symdistill.problems.energy import SELF_VARIABLES
from symdistill.simulate.integrate import pair_geometry
from symdistill.simulate.potentials import EPS
from symdistill.train.metrics import mean_abs_error

#: The textbook kinetic energy, in the self energy's variables.
KINETIC = sp.Symbol("p") ** 2 / (2 * sp.Symbol("m"))


class SymbolicHamiltonian(nn.Module):
    """Shapes: pos, vel [B, N, D], mass, charge [B, N] -> energy [B], accelerations / velocities [B, N, D]."""

    def __init__(self, pair: sp.Expr, kinetic: sp.Expr = KINETIC, *, trainable: bool = True, judge: str = "both"):
        super().__init__()
        self.pair = TorchExpr(sp.sympify(pair), PAIR_VARIABLES, trainable=trainable)
        self.kinetic = TorchExpr(sp.sympify(kinetic), SELF_VARIABLES, trainable=trainable)
        self.judge = judge

    def sympy(self) -> tuple[sp.Expr, sp.Expr]:
        """(U, T) with the current constants."""
        return self.pair.sympy(), self.kinetic.sympy()

    def _energy(self, pos, mom, mass, charge) -> torch.Tensor:
        _, dist, off = pair_geometry(pos)
        r = dist + EPS
        m1, m2 = mass[:, :, None].expand_as(r), mass[:, None, :].expand_as(r)
        q1, q2 = charge[:, :, None].expand_as(r), charge[:, None, :].expand_as(r)
        u = self.pair(r=r, m1=m1, m2=m2, q1=q1, q2=q2)  # every ordered pair: both orders, so symmetric
        pair = 0.5 * torch.where(off, u, 0.0).sum((1, 2))
        p = torch.sqrt((mom * mom).sum(-1).clamp_min(1e-300))
        return pair + self.kinetic(p=p, m=mass, q=charge).sum(1)

    def energy(self, pos, vel, mass, charge) -> torch.Tensor:
        """H of every simulation [B]."""
        with torch.no_grad():
            return self._energy(pos, mass[..., None] * vel, mass, charge)

    def derivatives(self, pos, vel, mass, charge, *, create_graph: bool = False):
        """(a = -(dH/dq)/m, dH/dp), both [B, N, D]."""
        with torch.enable_grad():
            q = pos.detach().requires_grad_(True)
            p = (mass[..., None] * vel).detach().requires_grad_(True)
            h = self._energy(q, p, mass, charge).sum()
            dq, dp = torch.autograd.grad(h, (q, p), create_graph=create_graph, allow_unused=True)
        dq = torch.zeros_like(q) if dq is None else dq  # an energy without r (or without p) exerts nothing
        dp = torch.zeros_like(p) if dp is None else dp
        return -dq / mass[..., None], dp

    def accelerations(self, pos, vel, mass, charge) -> torch.Tensor:
        return self.derivatives(pos, vel, mass, charge)[0].detach()

    def forward(self, pos, vel, mass, charge) -> torch.Tensor:
        return self.accelerations(pos, vel, mass, charge)

    def acc_mae(self, data: dict[str, np.ndarray], chunk: int = 4096) -> float:
        """Mean absolute error on accelerations (pos, vel, acc [B, N, D]; mass, charge [B, N])."""
        return self._errors(data, chunk)[0]

    def mae(self, data: dict[str, np.ndarray], chunk: int = 4096) -> float:
        """What refits and snaps judge by (``judge``): the acceleration MAE relative to the median |a|
        (``"acc"``: U's constants act on the accelerations only), the velocity MAE relative to the median
        |v| (``"vel"``: T's act on the velocities only), or their sum (``"both"``)."""
        a, v = self._errors(data, chunk)
        a, v = a / _scale(data["acc"]), v / _scale(data["vel"])
        return {"acc": a, "vel": v}.get(self.judge, a + v)

    def _errors(self, data, chunk):
        pairs_a, pairs_v = [], []
        for s in range(0, len(data["pos"]), chunk):
            t = {k: torch.as_tensor(v[s:s + chunk], dtype=torch.float64) for k, v in data.items()}
            a, v = self.derivatives(t["pos"], t["vel"], t["mass"], t["charge"])
            pairs_a.append((a.detach(), t["acc"]))
            pairs_v.append((v.detach(), t["vel"]))
        return mean_abs_error(pairs_a, nonfinite=1e30), mean_abs_error(pairs_v, nonfinite=1e30)

    def refit(self, data: dict[str, np.ndarray], *, steps: int = 300, lr: float = 1e-2, max_graphs: int = 512,
              seed: int = 0) -> tuple[float, float]:
        """Refit every constant on :meth:`mae`'s two terms by L-BFGS on their smooth counterpart (squared
        errors, relative to the same scales; at most ``steps // 10`` iterations, a few suffice for the
        handful of constants of a law), keeping the constants only if :meth:`mae` improves; returns
        :meth:`mae` (before, after)."""
        acc_scale, vel_scale = _scale(data["acc"]), _scale(data["vel"])

        def loss(t):
            a, v = self.derivatives(t["pos"], t["vel"], t["mass"], t["charge"], create_graph=True)
            return ((a - t["acc"]) / acc_scale).pow(2).mean() + ((v - t["vel"]) / vel_scale).pow(2).mean()
        return refit_constants(self, data, loss, steps=max(5, steps // 10), lr=lr, max_graphs=max_graphs, seed=seed,
                               optimizer="lbfgs")


def _scale(x: np.ndarray) -> float:
    return float(np.median(np.abs(x))) or 1.0
