"""Pair laws: the paper's six systems and user-defined potentials.

Every law is a pair potential U(r, m1, m2, q1, q2) in the *softened* distance
r = |x1 - x2| + 0.01 (the paper's r'), plus an optional damping force -c v on every particle.

Sign convention (used everywhere in symdistill, and by distillation):
    dx = x1 - x2, with particle 1 the *receiver* (the one the force acts on) and 2 the sender.
In PyG's ``edge_index`` terms, row 0 is the sender j and row 1 the receiver i, so
dx = x[edge_index[1]] - x[edge_index[0]]. The force on the receiver is
    F = -U'(r) * dx / |dx|,   with |dx| = r - 0.01,
which is what :meth:`Law.force_expr` returns as sympy expressions in dx, dy, dz, r, m1, m2, q1, q2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp
import torch

from symdistill.errors import SymdistillError, check_dim, check_positive, unknown_name
from symdistill.expr import TorchExpr, from_real, parse_formula, shorten, symbols, to_real
from symdistill.names import LAW_VARIABLES as EDGE_VARIABLES, PAIR_VARIABLES, displacement

#: Softening added to every distance (the paper's r' = r + 0.01).
EPS = 0.01
SYM = symbols(EDGE_VARIABLES)
_r, _m1, _m2, _q1, _q2 = (SYM[k] for k in PAIR_VARIABLES)

#: Built-in systems: (pair potential, default dt, default damping coefficient). PAPER.md §2.
_SPRING = (_r - 1) ** 2
BUILTIN: dict[str, tuple[sp.Expr, float, float]] = {
    "spring": (_SPRING, 1e-2, 0.0),
    "r1": (_m1 * _m2 * sp.log(_r), 5e-3, 0.0),
    "r2": (-_m1 * _m2 / _r, 1e-3, 0.0),
    "charge": (_q1 * _q2 / _r, 1e-3, 0.0),
    # One damping coefficient for every particle (the reference code's index-dependent damping is
    # reproduced only with paper_quirks=True). 0.5 is our choice: visible decay over 500 saved steps.
    "damped": (_SPRING, 2e-2, 0.5),
    "discontinuous": (sp.Piecewise((sp.Integer(0), _r < 2), (_SPRING, True)), 1e-2, 0.0),
}
SYSTEMS = tuple(sorted(BUILTIN))

#: A force -dU/dr with more operations (sympy's count_ops) is refused: every force evaluation walks
#: all of it, and differentiating a legal 1000-character formula can give hundreds of thousands.
MAX_FORCE_OPS = 3000
_EMPTY = "Empty potential: write it in r, m1, m2, q1, q2, e.g. '(r-1)**2'"


@dataclass(frozen=True, eq=False)
class Law:
    """A pairwise law. Build one with :func:`get_law`.

    Attributes:
        name: the built-in system's name, or the potential string / callable's name.
        energy: the pair potential as a sympy expression (None for an opaque callable).
        dt: default time between saved states.
        damping: coefficient c of the force -c v on every particle.
        paper_quirks: reproduce the reference code's quirks (index-dependent damping
            c_i = (n-1-i)/n, and a N(0,1) nuisance charge column for laws without charge).

    A potential sympy finds infinite or complex, or whose value or force is not a real number on
    sample points (r in (0.01, 10), masses 0.5 to 2, charges +-1), is refused with one line.
    """

    name: str
    energy: sp.Expr | None
    dt: float
    damping: float = 0.0
    paper_quirks: bool = False
    builtin: bool = False
    _energy_fn: Callable | None = field(default=None, repr=False)

    def __post_init__(self):
        check_positive("dt", self.dt)
        check_positive("damping", self.damping, allow_zero=True)
        if self.energy is not None:
            _check_symbolic(self.name, self.energy)
            object.__setattr__(self, "_magnitude_expr", _force_magnitude(self.name, self.energy, self.builtin))
            object.__setattr__(self, "_energy_torch", TorchExpr(self.energy, PAIR_VARIABLES))
            object.__setattr__(self, "_magnitude_torch", TorchExpr(self._magnitude_expr, PAIR_VARIABLES))
            _check_numeric(self)

    # ---- symbolic ground truth -------------------------------------------------------------
    @property
    def uses_charge(self) -> bool:
        if self.energy is None:
            return True
        return bool(self.energy.free_symbols & {_q1, _q2})

    @property
    def has_truth(self) -> bool:
        return self.energy is not None

    def _require_truth(self) -> sp.Expr:
        if self.energy is None:
            raise SymdistillError(
                f"Law {self.name!r} is an opaque callable: its ground truth is unknown. "
                "Give the potential as a string, or a callable that accepts sympy symbols."
            )
        return self.energy

    def force_magnitude_expr(self) -> sp.Expr:
        """-dU/dr: the force along the unit vector from sender to receiver (simplified for built-ins)."""
        self._require_truth()
        return self._magnitude_expr

    def force_expr(self, dim: int) -> tuple[sp.Expr, ...]:
        """Ground-truth pair force on the receiver, one sympy expression per component."""
        check_dim(dim)
        mag = self.force_magnitude_expr()
        return tuple(mag * SYM[c] / (_r - EPS) for c in displacement(dim))

    def damping_coefficients(self, n_bodies: int, dtype=torch.float64, device=None) -> torch.Tensor:
        """Per-particle damping c_i (force -c_i v_i)."""
        if self.paper_quirks and self.damping > 0:
            i = torch.arange(n_bodies, dtype=dtype, device=device)
            return (n_bodies - 1 - i) / n_bodies
        return torch.full((n_bodies,), self.damping, dtype=dtype, device=device)

    # ---- numeric ---------------------------------------------------------------------------
    def pair_energy(self, r, m1, m2, q1, q2) -> torch.Tensor:
        """U(r) evaluated on broadcastable tensors."""
        if self.energy is not None:
            return self._energy_torch(r=r, m1=m1, m2=m2, q1=q1, q2=q2)
        return self._energy_fn(r=r, m1=m1, m2=m2, q1=q1, q2=q2)

    def force_magnitude(self, r, m1, m2, q1, q2) -> torch.Tensor:
        """-dU/dr evaluated on broadcastable tensors (autograd for an opaque callable)."""
        if self.energy is not None:
            return self._magnitude_torch(r=r, m1=m1, m2=m2, q1=q1, q2=q2)
        with torch.enable_grad():
            rr = r.detach().requires_grad_(True)
            u = self._energy_fn(r=rr, m1=m1, m2=m2, q1=q1, q2=q2)
            (g,) = torch.autograd.grad(u.sum(), rr)
        return -g

    def describe(self) -> str:
        u = "?" if self.energy is None else sp.sstr(self.energy)
        damp = f", damping {self.damping}" if self.damping else ""
        return f"{self.name}: U(r) = {u}{damp}, dt = {self.dt:g}"


def _force_magnitude(name: str, energy: sp.Expr, builtin: bool) -> sp.Expr:
    """-dU/dr: simplified for the built-in laws; for user laws differentiated over real symbols (see
    :func:`symdistill.expr.to_real`), common factors pulled out when small: simplify can take minutes
    even for a formula of 30 characters."""
    if builtin:
        return sp.simplify(-sp.diff(energy, _r))
    d = -sp.diff(to_real(energy), sp.Symbol("r", real=True))
    ops = sp.count_ops(d)
    if ops > MAX_FORCE_OPS:
        raise SymdistillError(f"Potential {shorten(name)} is too complex: its force -dU/dr has {ops} "
                              f"operations (at most {MAX_FORCE_OPS}); simplify the potential")
    if ops <= 100 and not d.has(sp.Max, sp.Min):  # factor_terms re-evaluates Max/Min: pairwise comparisons
        d = sp.factor_terms(d)
    return from_real(d, PAIR_VARIABLES)


def _check_symbolic(name: str, energy: sp.Expr) -> None:
    """One-line errors for a potential sympy already knows is infinite, undefined or complex."""
    shown = shorten(sp.sstr(energy))
    if energy.has(sp.nan):
        raise SymdistillError(f"Potential {shorten(name)} is undefined (sympy gives {shown}, e.g. from 0/0): "
                              "remove the indeterminate part")
    if energy.has(sp.zoo, sp.oo, sp.S.NegativeInfinity):
        raise SymdistillError(f"Potential {shorten(name)} divides by zero or is infinite (sympy gives {shown}): "
                              "remove the division by zero")
    complex_power = any(p.is_number and p.is_extended_real is False for p in energy.atoms(sp.Pow))
    if energy.has(sp.I) or complex_power:
        raise SymdistillError(f"Potential {shorten(name)} is not real for r > 0 (sympy gives {shown}): take "
                              "square roots, logs and fractional powers of positive quantities only")


def _sample_points() -> dict[str, torch.Tensor]:
    """r across (0.01, 10) (avoiding round values, where a formula may be singular by design),
    masses 0.5 to 2 and charges +-1, as one broadcast grid."""
    r = torch.logspace(-1.99, 0.99, 41, dtype=torch.float64) * (1 + 1e-7)
    m = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    q = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    grid = torch.meshgrid(r, m, m.flip(0), q, q, indexing="ij")
    return {k: g.reshape(-1) for k, g in zip(PAIR_VARIABLES, grid)}


def _check_numeric(law: Law) -> None:
    """One-line errors for a potential (or its force) that is not a real number on sample points, or
    infinite on all of them. (Overflow at some r is left to the simulation's finiteness checks.)"""
    x = _sample_points()
    for subject, fn, expr in ((f"Potential {shorten(law.name)}", law._energy_torch, law.energy),
                              (f"Potential {shorten(law.name)}: its force -dU/dr", law._magnitude_torch,
                               law._magnitude_expr)):
        try:
            with torch.no_grad():
                v = fn(**x)
        except (SymdistillError, TypeError, ValueError, RuntimeError, ArithmeticError) as e:
            hint = " (a step in the potential is an infinite force: write steps with Piecewise)" \
                if expr.has(sp.DiracDelta) else ""
            raise SymdistillError(f"{subject} = {shorten(sp.sstr(expr))} cannot be evaluated numerically"
                                  f"{hint}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        nan = torch.isnan(v)
        if nan.any():
            i = int(nan.nonzero()[0])
            at = ", ".join(f"{k} = {float(x[k][i]):.3g}" for k in PAIR_VARIABLES if expr.has(SYM[k]))
            why = "no Piecewise branch applies, " if expr.has(sp.Piecewise) else ""
            raise SymdistillError(f"{subject} is not a real number{' at ' + at if at else ''} ({why}a square "
                                  "root or log of a negative number, or an overflow): make it real for every r > 0")
        if torch.isinf(v).all():
            raise SymdistillError(f"{subject} is infinite for every r in (0.01, 10): rescale it")


def _from_callable(fn: Callable, *, dt: float, damping: float, name: str | None) -> Law:
    """A law from a callable U(r, m1, m2, q1, q2) (keyword arguments; extra ones may be absorbed by
    ``**kwargs``). If it accepts sympy symbols, its ground truth is known; otherwise forces come from
    autograd on torch tensors and the ground truth is unavailable."""
    label = name or getattr(fn, "__name__", "callable")
    try:
        expr = sp.sympify(fn(**{k: SYM[k] for k in PAIR_VARIABLES}))
        if isinstance(expr, sp.Expr) and expr.free_symbols <= {SYM[k] for k in PAIR_VARIABLES}:
            return Law(label, expr, dt=dt, damping=damping)
    except Exception:  # any failure means "not sympy-compatible": fall back to autograd
        pass
    return Law(label, None, dt=dt, damping=damping, _energy_fn=fn)


def get_law(
    system: str | Callable | Law | None = None,
    *,
    potential: str | Callable | None = None,
    dt: float | None = None,
    damping: float | None = None,
    paper_quirks: bool = False,
) -> Law:
    """Look up a built-in system or build a user-defined law.

    ``get_law("spring")``, ``get_law(potential="q1*q2*exp(-r)/r")``,
    ``get_law(potential=lambda r, **_: (r - 1) ** 2)``. A string ``system`` that is not a built-in
    name but looks like a formula is taken as a potential. Default dt for a custom law: 1e-2.
    """
    if isinstance(system, Law):
        return system
    if isinstance(potential, str) and not potential.strip():
        raise SymdistillError(_EMPTY)
    if system is not None and potential is not None:
        raise SymdistillError("Give either a system name or a potential, not both")
    if system is None and potential is None:
        raise SymdistillError(f"Give a system ({', '.join(SYSTEMS)}) or a potential such as '(r-1)**2'")
    if system is not None and not callable(system) and system not in BUILTIN:
        if any(ch in str(system) for ch in "()*/+-^"):  # a formula given where a name was expected
            potential, system = system, None
        else:
            raise unknown_name("system", system, SYSTEMS)
    if callable(system):
        potential, system = system, None
    if system is not None:
        energy, default_dt, default_damping = BUILTIN[system]
        return Law(system, energy, dt=dt or default_dt,
                   damping=default_damping if damping is None else damping,
                   paper_quirks=paper_quirks, builtin=True)
    if paper_quirks:
        raise SymdistillError("`paper_quirks` applies only to the built-in systems (drop --paper-quirks, or use "
                              "--system)")
    if callable(potential):
        return _from_callable(potential, dt=dt or 1e-2, damping=damping or 0.0, name=None)
    energy = parse_formula(potential, PAIR_VARIABLES, what="potential")
    _check_symbolic(potential, energy)  # before the r test: 1/0 is zoo, which has no r either
    if not energy.has(_r):
        raise SymdistillError(f"Potential {shorten(potential)} does not depend on r, so it exerts no force: give one "
                              "that varies with r")
    law = Law(str(potential), energy, dt=dt or 1e-2, damping=damping or 0.0)
    if law.force_magnitude_expr() == 0:
        raise SymdistillError(f"Potential {shorten(potential)} exerts no force: its derivative in r is 0")
    return law
