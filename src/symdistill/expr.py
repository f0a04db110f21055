"""Formulas: safe parsing of user strings (:mod:`symdistill.formula`) and compilation of sympy
expressions to torch (:class:`TorchExpr`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sympy as sp
import torch

from symdistill.errors import SymdistillError
from symdistill.formula import (  # the parser's names, imported from here by the stages
    FUNCTIONS, INTERNAL_LIMITS, FormulaLimits, from_real, parse_formula, shorten, symbols, to_real,
)

__all__ = ["FUNCTIONS", "INTERNAL_LIMITS", "FormulaLimits", "TorchExpr", "from_real", "parse_formula", "shorten",
           "symbols", "to_real"]


_UNARY = {
    sp.exp: torch.exp, sp.log: torch.log, sp.sin: torch.sin, sp.cos: torch.cos, sp.tan: torch.tan,
    sp.tanh: torch.tanh, sp.sinh: torch.sinh, sp.cosh: torch.cosh, sp.Abs: torch.abs,
    sp.sign: torch.sign,
}
_RELATIONS = {
    sp.StrictGreaterThan: torch.gt, sp.GreaterThan: torch.ge, sp.StrictLessThan: torch.lt,
    sp.LessThan: torch.le, sp.Equality: torch.eq, sp.Unequality: torch.ne,
}


class TorchExpr(torch.nn.Module):
    """A sympy expression as a torch module, vectorised over its inputs.

    ``TorchExpr(expr, ["r", "m1"])(r=tensor, m1=tensor)``. With ``trainable=True`` every float
    constant becomes a parameter (``constants``), so the formula's constants can be refitted by
    gradient descent; :meth:`sympy` returns the expression with the current values.
    """

    def __init__(self, expr: sp.Expr, variables: Sequence[str], *, trainable: bool = False):
        super().__init__()
        self.variables = tuple(variables)
        self.expr = sp.sympify(expr)
        unknown = {s.name for s in self.expr.free_symbols} - set(self.variables)
        if unknown:
            raise SymdistillError(
                f"Expression {self.expr} uses {sorted(unknown)} not among the inputs {list(self.variables)}"
            )
        self.trainable = trainable
        floats = sorted(self.expr.atoms(sp.Float), key=str) if trainable else []
        self._const_index = {c: i for i, c in enumerate(floats)}
        self.constants = torch.nn.Parameter(torch.tensor([float(c) for c in floats], dtype=torch.float64))
        # value = constants * scale: optimisers take steps relative to each constant's size when the
        # scale is set to |value| (see :meth:`normalise_constants`).
        self.register_buffer("scale", torch.ones(len(floats), dtype=torch.float64))
        # Constants fixed at exact values (:meth:`fix`) are used as those values, with no gradient.
        self.fixed: dict[int, sp.Expr] = {}

    @torch.no_grad()
    def normalise_constants(self) -> None:
        """Re-express every constant as (+-1 or 0) x scale, so gradient steps are relative."""
        value = self.constants * self.scale
        self.scale.copy_(torch.where(value != 0, value.abs(), torch.ones_like(value)))
        self.constants.copy_(value / self.scale)

    def constant_values(self) -> list[float]:
        return (self.constants * self.scale).detach().tolist()

    def fix(self, index: int, value: sp.Expr) -> None:
        """Hold constant ``index`` at the exact ``value`` (e.g. a snapped Rational) from now on."""
        self.fixed[index] = sp.sympify(value)

    def sympy(self) -> sp.Expr:
        if not self._const_index:
            return self.expr
        values = self.constant_values()
        return self.expr.xreplace({c: self.fixed.get(i, sp.Float(values[i])) for c, i in self._const_index.items()})

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        missing = [v for v in self.variables if v not in inputs]
        if missing:
            raise SymdistillError(f"Missing inputs {missing} for expression {self.expr}")
        ref = inputs[self.variables[0]] if self.variables else torch.zeros(())
        out = self._eval(self.expr, inputs, ref)
        if not torch.is_tensor(out):
            out = torch.full_like(ref, float(out))
        return out.expand_as(torch.broadcast_tensors(out, ref)[0]) if out.dim() < ref.dim() else out

    def _eval(self, e, x: Mapping[str, torch.Tensor], ref: torch.Tensor):
        if e.is_Symbol:
            return x[e.name]
        if e.is_Number or e in (sp.pi, sp.E):
            if e in self._const_index:
                i = self._const_index[e]
                if i in self.fixed:
                    return float(self.fixed[i])
                return (self.constants[i] * self.scale[i]).to(ref.dtype)
            return float(e)
        if e is sp.true or e is sp.false:
            return torch.full_like(ref, bool(e), dtype=torch.bool)
        args = e.args
        if e.is_Add:
            out = self._eval(args[0], x, ref)
            for a in args[1:]:
                out = out + self._eval(a, x, ref)
            return out
        if e.is_Mul:
            out = self._eval(args[0], x, ref)
            for a in args[1:]:
                out = out * self._eval(a, x, ref)
            return out
        if e.is_Pow:
            base = self._eval(args[0], x, ref)
            ex = args[1]
            if ex == sp.Rational(1, 2):
                return torch.sqrt(base) if torch.is_tensor(base) else float(base) ** 0.5
            if ex.is_Integer and torch.is_tensor(base):
                return base ** int(ex)
            exv = self._eval(ex, x, ref)
            if not torch.is_tensor(base) and not torch.is_tensor(exv):
                return float(base) ** float(exv)
            return torch.pow(base, exv)
        func = type(e)
        if func in _UNARY:
            a = self._eval(args[0], x, ref)
            return _UNARY[func](a if torch.is_tensor(a) else torch.full_like(ref, a))
        if func in _RELATIONS:
            return _RELATIONS[func](self._as_tensor(args[0], x, ref), self._as_tensor(args[1], x, ref))
        if func is sp.Heaviside:
            a = self._as_tensor(args[0], x, ref)
            return torch.heaviside(a, torch.full_like(a, 0.5))
        if func in (sp.Max, sp.Min):
            op = torch.maximum if func is sp.Max else torch.minimum
            out = self._as_tensor(args[0], x, ref)
            for a in args[1:]:
                out = op(out, self._as_tensor(a, x, ref))
            return out
        if func is sp.And or func is sp.Or:
            op = torch.logical_and if func is sp.And else torch.logical_or
            out = self._as_tensor(args[0], x, ref)
            for a in args[1:]:
                out = op(out, self._as_tensor(a, x, ref))
            return out
        if func is sp.Not:
            return torch.logical_not(self._as_tensor(args[0], x, ref))
        if func is sp.Piecewise:
            out = None
            for value, cond in reversed(args):
                v = self._as_tensor(value, x, ref)
                if out is None:  # the last branch is the fall-back (sympy ends with `True` when total)
                    out = v if cond is sp.true else torch.where(self._as_tensor(cond, x, ref), v, torch.full_like(v, float("nan")))
                else:
                    out = torch.where(self._as_tensor(cond, x, ref), v, out)
            return out
        raise SymdistillError(f"Cannot compile {func.__name__} in {e} to torch")

    def _as_tensor(self, e, x, ref) -> torch.Tensor:
        v = self._eval(e, x, ref)
        if torch.is_tensor(v):
            return v
        return torch.full_like(ref, float(v))
