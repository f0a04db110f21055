"""Formulas for a halo's overdensity from its neighbours (PAPER.md §6), fitted on plain arrays.

    model = PaperForm().fit(edges, mass, delta, train)     # edges: Edges(receiver, sender, r)
    model.mae(edges, mass, delta, test); print(model.formula())
    comparison_table([ConstantModel(), HandDesigned(), PaperForm()], edges, mass, delta,
                     {"train": train, "held-out": test})

Every model is fitted on the halos ``index`` (receivers i) by minimising the paper's metric, the mean
|delta - delta_hat|; the neighbours j of a training halo may be any halo. Masses are used in units of
:data:`MASS_UNIT` (1e13 Msun/h) and r in Mpc/h, and the printed formulas are in those units.

How the MAE is minimised: the constant model takes the median; the hand-designed model is linear in
its constants, so its L1 fit is an exact linear programme (HiGHS); :class:`PaperForm` starts from a
least-squares fit on a grid of (scale, exponent, mass slope) and refines the best starts jointly by
L-BFGS on a smoothed L1 whose width shrinks; :class:`SymbolicFormula` refits its sympy constants by
L-BFGS and Adam on the same surrogate. Every refinement keeps the constants with the lowest *exact*
training MAE it saw, so a refit never ends worse than its start.

Shapes: ``receiver``, ``sender`` int[E], ``r`` float[E] (Mpc/h, minimum image; edges i == j are
ignored), ``mass``, ``delta`` float[N]; ``index`` int[n] (or a boolean mask [N], or None: all halos).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import sympy as sp
import torch
from scipy.special import expit

from symdistill.cosmology.fitting import l1_linear, minimise_mae, untie
from symdistill.cosmology.stars import (
    EDGE_VARIABLES, MASS_UNIT, NODE_VARIABLES, UNITS, Edges, Star, halo_index, star, targets,
)
from symdistill.distill.pareto import round_constants
from symdistill.errors import SymdistillError
from symdistill.expr import TorchExpr, parse_formula

__all__ = ["EDGE_VARIABLES", "MASS_UNIT", "NODE_VARIABLES", "UNITS", "ConstantModel", "Edges", "HandDesigned",
           "HaloModel", "PaperForm", "Star", "SymbolicFormula", "comparison_table", "halo_index", "l1_linear",
           "minimise_mae", "star", "targets", "untie"]



def _text(g: sp.Expr, f: str, digits: int = 4) -> str:
    return f"delta_i = {sp.sstr(round_constants(g, digits))}; e = {f}  {UNITS}"


class HaloModel:
    """Base: ``fit`` on the halos ``index`` (returns self), ``predict`` [n] and ``mae`` on any halos."""

    name = "?"

    def fit(self, edges, mass, delta, index=None) -> HaloModel:
        s = star(edges, mass, index)
        self._fit(s, targets(delta, index, len(np.asarray(mass).reshape(-1))))
        return self

    def predict(self, edges, mass, index=None) -> np.ndarray:
        self._check_fitted()
        return self._predict(star(edges, mass, index))

    def mae(self, edges, mass, delta, index=None) -> float:
        y = targets(delta, index, len(np.asarray(mass).reshape(-1)))
        return float(np.mean(np.abs(self.predict(edges, mass, index) - y))) if len(y) else float("nan")

    @property
    def fitted(self) -> bool:
        return hasattr(self, "constants_")

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise SymdistillError(f"{type(self).__name__} is not fitted: call fit(edges, mass, delta, "
                                  "train_index) first")

    @property
    def n_constants(self) -> int:
        """Free constants fitted."""
        return len(self.constants_)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.formula() if self.fitted else 'unfitted'})"


class ConstantModel(HaloModel):
    """delta_i = C1 (the training median: it minimises the MAE)."""

    name = "constant"

    def _fit(self, s: Star, y: np.ndarray) -> None:
        self.constants_ = {"C1": float(np.median(y))}

    def _predict(self, s: Star) -> np.ndarray:
        return np.full(s.n, self.constants_["C1"])

    def formula(self) -> str:
        return f"delta_i = {self.constants_['C1']:.4g}"


class HandDesigned(HaloModel):
    """delta_i = C1 + (C2 + C3 M_i) sum_{j: r_ij < radius} M_j (the paper's hand-designed model)."""

    name = "hand-designed"

    def __init__(self, radius: float = 20.0):
        self.radius = radius

    def _columns(self, s: Star) -> np.ndarray:
        S = s.edge_sum(np.where(s.r < self.radius, s.M_j, 0.0))
        return np.column_stack([np.ones(s.n), S, s.M_i * S])

    def _fit(self, s: Star, y: np.ndarray) -> None:
        self.constants_ = dict(zip(("C1", "C2", "C3"), map(float, l1_linear(self._columns(s), y))))

    def _predict(self, s: Star) -> np.ndarray:
        return self._columns(s) @ np.array(list(self.constants_.values()))

    def formula(self) -> str:
        c = self.constants_
        e, M_i = sp.symbols("e M_i")
        return _text(c["C1"] + (c["C2"] + c["C3"] * M_i) * e, f"sum_{{j: r < {self.radius:g}}} M_j")


class PaperForm(HaloModel):
    """delta_i = C1 + e_i / (C2 + C3 M_i), e_i = sum_{j != i} (C4 + M_j) / (C5 + (C6 r_ij)^C7).

    C5 is redundant (it rescales e_i, which C2 and C3 absorb), so it is fixed at 1 and the other six
    constants are fitted: internally as delta = C1 + (p A_i + q B_i) / (1 + s M_i) with
    A_i = sum_j w_ij, B_i = sum_j w_ij M_j, w_ij = 1 / (1 + (r_ij / R)^C7), which is linear in
    (C1, p, q) for a fixed (R, C7, s) and needs no division by a fitted constant. ``n_constants`` is 6.
    """

    name = "paper form"
    GRID = dict(R=(5.0, 10.0, 20.0, 40.0), gamma=(1.0, 2.0, 4.0), s=(0.0, 0.3, 1.0))

    def __init__(self, starts: int = 3, lbfgs_steps: int = 100):
        self.starts = starts
        self.lbfgs_steps = lbfgs_steps

    @staticmethod
    def _sums(s: Star, R: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(divide="ignore"):
            w = expit(-gamma * (np.log(np.maximum(s.r, 1e-12)) - np.log(R)))  # 1 / (1 + (r/R)^gamma), stable
        return s.edge_sum(w), s.edge_sum(w * s.M_j)

    def _fit(self, s: Star, y: np.ndarray) -> None:
        starts = []
        for R in self.GRID["R"]:
            for gamma in self.GRID["gamma"]:
                A, B = self._sums(s, R, gamma)
                for slope in self.GRID["s"]:
                    X = np.column_stack([np.ones(s.n), A / (1 + slope * s.M_i), B / (1 + slope * s.M_i)])
                    c1, p, q = np.linalg.lstsq(X, y, rcond=None)[0]
                    starts.append((float(np.mean(np.abs(X @ [c1, p, q] - y))), [c1, p, q, slope, np.log(R), gamma]))
        t = s.tensors()
        yt = torch.as_tensor(y)
        best = (float("inf"), None)
        for _, theta0 in sorted(starts, key=lambda a: a[0])[: self.starts]:
            theta = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
            mae = minimise_mae([theta], lambda: self._torch(t, theta) - yt, lbfgs_steps=self.lbfgs_steps)
            if mae < best[0]:
                best = (mae, theta.detach().numpy().copy())
        if best[1] is None:
            raise SymdistillError("PaperForm: no start gave a finite MAE (check `delta` and `edges`)")
        c1, p, q, slope, logR, gamma = best[1]
        self.theta_ = best[1]
        self.constants_ = {"C1": c1, "C2": 1 / q, "C3": slope / q, "C4": p / q, "C6": float(np.exp(-logR)),
                           "C7": gamma}

    @staticmethod
    def _torch(t: dict[str, torch.Tensor], theta: torch.Tensor) -> torch.Tensor:
        c1, p, q, slope, logR, gamma = theta
        w = torch.sigmoid(-gamma * (torch.log(t["r"].clamp_min(1e-12)) - logR))
        n = len(t["M_i"])
        A = torch.zeros(n, dtype=w.dtype).index_add(0, t["receiver"], w)
        B = torch.zeros(n, dtype=w.dtype).index_add(0, t["receiver"], w * t["M_j"])
        return c1 + (p * A + q * B) / (1 + slope * t["M_i"])

    def _predict(self, s: Star) -> np.ndarray:
        c1, p, q, slope, logR, gamma = self.theta_
        A, B = self._sums(s, float(np.exp(logR)), gamma)
        return c1 + (p * A + q * B) / (1 + slope * s.M_i)

    def sympy(self) -> tuple[sp.Expr, sp.Expr]:
        """(f, g) with the fitted constants (C5 = 1)."""
        c = {k: sp.Float(v) for k, v in self.constants_.items()}
        M_j, r, M_i, e = sp.symbols("M_j r M_i e")
        return (c["C4"] + M_j) / (1 + (c["C6"] * r) ** c["C7"]), c["C1"] + e / (c["C2"] + c["C3"] * M_i)

    def as_symbolic(self) -> SymbolicFormula:
        """The fitted form as a :class:`SymbolicFormula` (same predictions; its constants refittable)."""
        return SymbolicFormula(*self.sympy())

    def formula(self) -> str:
        c = self.constants_  # written out by hand: sympy would fold (C6 r)^C7 into C6^C7 r^C7
        return _text(self.sympy()[1], f"sum_{{j != i}} ({c['C4']:.4g} + M_j)/(1 + ({c['C6']:.4g}*r)**{c['C7']:.4g})")


class SymbolicFormula(HaloModel):
    """delta_i = g(e_i, M_i), e_i = sum_{j != i} f(M_j, r_ij, M_i), from two sympy expressions
    (or strings) whose float constants are all refitted by ``fit`` (training MAE; L-BFGS, then Adam
    and L-BFGS again, on a smoothed L1, keeping the best exact MAE). Before ``fit`` it predicts with
    the constants it was given.

    ``free_exponents``: integer powers (other than +-1) of ``r`` itself become refittable float
    exponents too (an SR ``square(r)`` may then become r^1.8; a power of r - C, which can be
    negative, keeps its integer exponent). ``restarts``: further refits from
    the start with constants scaled by exp(N(0, 0.3^2)) (seeded); the best on the training MAE wins.
    """

    name = "symbolic"

    def __init__(self, f, g, *, free_exponents: bool = False, adam_steps: int = 200, lbfgs_steps: int = 100,
                 restarts: int = 0, seed: int = 0, name: str | None = None):
        self.f, self.g = f, g
        self.free_exponents = free_exponents
        self.adam_steps, self.lbfgs_steps = adam_steps, lbfgs_steps
        self.restarts, self.seed = restarts, seed
        if name is not None:
            self.name = name
        self._build(self._start())

    def _start(self) -> tuple[sp.Expr, sp.Expr]:
        def read(x, variables, what):
            return parse_formula(x, variables, what=what) if isinstance(x, str) else sp.sympify(x)
        f, g = read(self.f, EDGE_VARIABLES, "edge formula f"), read(self.g, NODE_VARIABLES, "node formula g")
        if self.free_exponents:
            f = f.replace(lambda x: x.is_Pow and x.exp.is_Integer and abs(int(x.exp)) > 1
                          and getattr(x.base, "name", None) == "r",
                          lambda x: sp.Pow(x.base, sp.Float(int(x.exp))))
        return untie(f), untie(g)

    def _build(self, exprs: tuple[sp.Expr, sp.Expr]) -> None:
        self.f_ = TorchExpr(exprs[0], EDGE_VARIABLES, trainable=True)
        self.g_ = TorchExpr(exprs[1], NODE_VARIABLES, trainable=True)

    def _torch(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        msg = self.f_(M_j=t["M_j"], r=t["r"], M_i=t["M_i_edge"])
        e = torch.zeros(len(t["M_i"]), dtype=msg.dtype).index_add(0, t["receiver"], msg)
        return self.g_(e=e, M_i=t["M_i"])

    def _fit(self, s: Star, y: np.ndarray) -> None:
        t, yt = s.tensors(), torch.as_tensor(y)
        start = self._start()
        rng = np.random.default_rng(self.seed)
        best = (float("inf"), start)
        for k in range(1 + self.restarts):
            self._build(start)
            if k:
                with torch.no_grad():
                    for m in (self.f_, self.g_):
                        m.constants.mul_(torch.as_tensor(np.exp(rng.normal(0, 0.3, m.constants.numel()))))
            for m in (self.f_, self.g_):
                m.normalise_constants()
            mae = minimise_mae([self.f_.constants, self.g_.constants], lambda: self._torch(t) - yt,
                               adam_steps=self.adam_steps, lbfgs_steps=self.lbfgs_steps)
            if mae < best[0]:
                best = (mae, self.sympy())
        self._build(best[1])
        self.constants_ = self.f_.constant_values() + self.g_.constant_values()
        self.train_mae_ = best[0]

    @property
    def fitted(self) -> bool:
        return True  # predicts with its given constants before fit

    @property
    def n_constants(self) -> int:
        return self.f_.constants.numel() + self.g_.constants.numel()

    @torch.no_grad()
    def _predict(self, s: Star) -> np.ndarray:
        return self._torch(s.tensors()).numpy().copy()

    def sympy(self) -> tuple[sp.Expr, sp.Expr]:
        """(f, g) with the current constants."""
        return self.f_.sympy(), self.g_.sympy()

    def formula(self, digits: int = 4) -> str:
        f, g = self.sympy()
        return _text(g, f"sum_{{j != i}} {sp.sstr(round_constants(f, digits))}", digits)


def comparison_table(models, edges, mass, delta, splits: Mapping[str, object]) -> pd.DataFrame:
    """The paper's table: one row per model (name, formula, n_constants, mae_<split> per split).

    ``models``: a list (named by their ``name``) or a mapping name -> model; ``splits``: name ->
    halo index, e.g. {"train": ..., "held-out": ..., "ood": ...}. A model not fitted yet is fitted on
    ``splits["train"]``."""
    items = models.items() if isinstance(models, Mapping) else [(m.name, m) for m in models]
    rows = []
    for name, model in items:
        if not model.fitted or (isinstance(model, SymbolicFormula) and not hasattr(model, "constants_")):
            if "train" not in splits:
                raise SymdistillError(f"Model {name!r} is not fitted and `splits` has no 'train' to fit it on")
            model.fit(edges, mass, delta, splits["train"])
        row = {"model": name, "formula": model.formula(), "n_constants": model.n_constants}
        row |= {f"mae_{k}": model.mae(edges, mass, delta, idx) for k, idx in splits.items()}
        rows.append(row)
    return pd.DataFrame(rows)
