"""Formula strings to sympy, safely: a whitelist walk of Python's syntax tree, limits first.

A formula string is parsed by Python's ``ast`` module and its tree walked with a whitelist (numbers,
the allowed variables and constants, arithmetic, the allowed functions, Piecewise conditions), building
the sympy expression node by node (over real symbols, see :func:`to_real`): nothing in the string is
ever evaluated as Python. Size limits (:class:`FormulaLimits`) are checked before sympy computes
anything, so that no string makes sympy compute a huge number or reason for minutes; strings that
symdistill wrote itself (engine output, saved tables) may pass the looser :data:`INTERNAL_LIMITS`.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sympy as sp

from symdistill.errors import SymdistillError

#: The functions a formula string may use (and the constants it may name).
FUNCTIONS: dict[str, object] = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "sin": sp.sin, "cos": sp.cos, "tan": sp.tan,
    "tanh": sp.tanh, "sinh": sp.sinh, "cosh": sp.cosh, "abs": sp.Abs, "Abs": sp.Abs,
    "sign": sp.sign, "Max": sp.Max, "Min": sp.Min, "max": sp.Max, "min": sp.Min,
    "Heaviside": sp.Heaviside, "Piecewise": sp.Piecewise, "pi": sp.pi, "E": sp.E,
    "True": sp.true, "False": sp.false,
}
_CONSTANTS = {"pi": sp.pi, "E": sp.E, "True": sp.true, "False": sp.false}
# (fewest, most) positional arguments; None: bounded by FormulaLimits instead.
_ARITY = {name: (1, 1) for name in FUNCTIONS if name not in _CONSTANTS}
_ARITY.update(log=(1, 2), Heaviside=(1, 2), Max=(1, None), Min=(1, None), max=(1, None),
              min=(1, None), Piecewise=(1, None))


@dataclass(frozen=True)
class FormulaLimits:
    """Bounds on a formula, checked before sympy computes anything (the defaults are for user text).

    max_length: characters; max_nodes / max_depth: of the syntax tree (a chain ``a + b - c + ...`` or
    ``a * b / c`` counts as one level); max_int_digits: digits of a number literal; max_exponent:
    |p| of a numeric exponent of anything but a plain number; max_number_digits: digits of any
    exact number the formula computes (``9**9**9`` is refused before it is computed); max_tower:
    nested non-constant exponents (``exp`` counts: ``r**r**r`` and ``exp(exp(r))`` are 2);
    max_minmax_args / max_branches: arguments of one Max/Min (sympy compares them pairwise) and
    branches of one Piecewise; max_nonsmooth: calls of Max, Min, abs, sign, Heaviside and Piecewise
    in all (each makes sympy reason about the signs of its arguments, and the costs multiply).
    """

    max_length: int = 1000
    max_nodes: int = 400
    max_depth: int = 40
    max_int_digits: int = 30
    max_exponent: float = 100
    max_number_digits: int = 400
    max_tower: int = 2
    max_minmax_args: int = 6
    max_branches: int = 16
    max_nonsmooth: int = 6


#: For strings written by symdistill and its back-ends (saved tables, engine output): longer, deeper.
INTERNAL_LIMITS = FormulaLimits(max_length=20_000, max_nodes=8_000, max_depth=100, max_int_digits=100,
                                max_nonsmooth=40)

_NAMES_HELP = ", ".join(sorted(k for k in FUNCTIONS if k[0].islower()))
# Constructs a formula cannot contain, named in the error (with a hint where one helps).
_CONSTRUCTS = {
    ast.IfExp: "a conditional expression (a if c else b)", ast.Attribute: "an attribute (x.name)",
    ast.Subscript: "a subscript (x[i])", ast.Lambda: "a lambda", ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension", ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension",
    ast.List: "a list", ast.Set: "a set", ast.Dict: "a dict", ast.Starred: "a starred argument (*x)",
    ast.JoinedStr: "an f-string", ast.FormattedValue: "an f-string", ast.NamedExpr: "an assignment (:=)",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "a slice",
    ast.Tuple: "a tuple", ast.BoolOp: "`and`/`or`",
}
_PIECEWISE_HINT = "write a condition as Piecewise((0, r < 2), ((r - 1)**2, True))"
_HINTS = {
    ast.IfExp: _PIECEWISE_HINT, ast.Tuple: "only Piecewise takes (value, condition) pairs",
    ast.BoolOp: "join conditions with & and |, e.g. (r > 1) & (r < 2)",
}
_NONSMOOTH = {"Max", "Min", "max", "min", "abs", "Abs", "sign", "Heaviside", "Piecewise"}
_RELATION = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge, ast.Eq: sp.Eq, ast.NotEq: sp.Ne}
_CHAINS = ((ast.Add, ast.Sub), (ast.Mult, ast.Div))


def symbols(names: Iterable[str]) -> dict[str, sp.Symbol]:
    """Canonical real symbols; ``r`` and masses are positive so simplification is sound."""
    positive = {"r", "m1", "m2", "m"}
    return {n: sp.Symbol(n, positive=True) if n in positive else sp.Symbol(n, real=True) for n in names}


def shorten(text: str, limit: int = 60) -> str:
    """``text`` quoted for an error message: at most ``limit`` characters, with the length if cut."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit - 3]!r}... ({len(text)} characters)"


def parse_formula(text: str, variables: Sequence[str], *, what: str = "formula",
                  limits: FormulaLimits | None = None) -> sp.Expr:
    """Parse ``text`` into a sympy expression in ``variables`` (``^`` means power).

    Raises SymdistillError (one line, naming the offending part) when the string is not a formula in
    those variables or exceeds ``limits`` (default :class:`FormulaLimits`; strings symdistill wrote
    itself may pass :data:`INTERNAL_LIMITS`).
    """
    limits = limits or FormulaLimits()
    if not isinstance(text, str):
        raise SymdistillError(f"{what.capitalize()} must be a string (got {type(text).__name__})")
    if not text.strip():
        raise SymdistillError(f"Empty {what}: write it in the variables {', '.join(variables)}")
    if len(text) > limits.max_length:
        raise SymdistillError(f"{what.capitalize()} {shorten(text)} is too long: {len(text)} characters "
                              f"(at most {limits.max_length}); shorten it")
    bad = next((c for c in text if not (" " <= c <= "~" or c in "\t\n")), None)
    if bad is not None:
        raise SymdistillError(f"Invalid {what} {shorten(text)}: character {bad!r} (use plain ASCII)")
    if "#" in text:  # Python would drop the rest of the line as a comment
        raise SymdistillError(f"Invalid {what} {shorten(text)}: '#' is not allowed (a formula has no comments)")
    source = text.replace("^", "**")  # token-safe: `^` has no other meaning in a formula
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise SymdistillError(f"Could not parse {what} {shorten(text)}: {e.msg} (check its brackets and "
                              "operators, on one line)") from None
    except (ValueError, RecursionError, MemoryError):  # too deeply nested for Python's own parser
        raise SymdistillError(f"Could not parse {what} {shorten(text)}: nested too deeply") from None
    builder = _Builder(source.strip(), {n: sp.Symbol(n, real=True) for n in variables}, what, shorten(text), limits)
    builder.check_shape(tree)
    try:
        expr = builder.build(tree.body)
    except SymdistillError:
        raise
    except Exception as e:  # sympy refusing a combination, e.g. a comparison with a complex number
        first = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise SymdistillError(f"Could not parse {what} {shorten(text)}: {first}") from None
    if not isinstance(expr, sp.Expr):
        raise SymdistillError(f"{what.capitalize()} {shorten(text)} is a condition, not an expression: "
                              "give a value, e.g. Piecewise((0, r < 2), ((r - 1)**2, True))")
    return from_real(expr, variables)


def to_real(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every symbol only real (same names), node for node (not re-evaluated).

    sympy's sign reasoning about *positive* symbols can take minutes on a legal formula (it isolates
    the real roots of every polynomial it meets: ``Max(r + r**2 + ... + r**20, 1)``); about merely
    real ones it gives up at once. So formulas are built and differentiated over real symbols and
    handed back over the canonical ones by :func:`from_real`.
    """
    with sp.evaluate(False):
        return expr.xreplace({s: sp.Symbol(s.name, real=True) for s in expr.free_symbols})


def from_real(expr: sp.Expr, names: Iterable[str]) -> sp.Expr:
    """``expr`` over the canonical :func:`symbols`, node for node (not re-evaluated, see :func:`to_real`)."""
    canonical = symbols(names)
    with sp.evaluate(False):
        return expr.xreplace({sp.Symbol(n, real=True): s for n, s in canonical.items()})


class _Builder:
    """Walks a checked ``ast`` tree and builds the sympy expression node by node."""

    def __init__(self, source: str, names: dict[str, sp.Symbol], what: str, shown: str, limits: FormulaLimits):
        self.source, self.names, self.what, self.shown, self.limits = source, names, what, shown, limits

    def fail(self, problem: str, hint: str | None = None) -> SymdistillError:
        hint = hint or (f"use numbers, the variables {', '.join(self.names)}, + - * / ** ( ) "
                        f"and {_NAMES_HELP}")
        return SymdistillError(f"Invalid {self.what} {self.shown}: {problem} is not allowed ({hint})")

    def too_big(self, problem: str) -> SymdistillError:
        return SymdistillError(f"{self.what.capitalize()} {self.shown} is too large: {problem}; simplify it")

    # ---- limits on the tree, before anything is built ------------------------------------------
    def check_shape(self, tree: ast.Expression) -> None:
        """Node count, depth and tower height, computed bottom-up without recursion."""
        nodes = [n for n in ast.walk(tree.body) if isinstance(n, ast.expr)]
        if len(nodes) > self.limits.max_nodes:
            raise self.too_big(f"{len(nodes)} terms and operations (at most {self.limits.max_nodes})")
        depth, tower, varying = {}, {}, {}
        for node in reversed(nodes):  # ast.walk is breadth-first: children come after their parent
            kids = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]
            depth[node] = 1 + max((depth[c] - _same_chain(node, c) for c in kids), default=0)
            varying[node] = isinstance(node, (ast.Name, ast.Call)) or any(varying[c] for c in kids)
            level = max((tower[c] for c in kids), default=0)
            if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Pow, ast.BitXor)) and varying[node.right]:
                level = max(level, 1 + tower[node.right])
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "exp":
                level = 1 + level
            tower[node] = level
        if depth[tree.body] > self.limits.max_depth:
            raise self.too_big(f"nested {depth[tree.body]} levels deep (at most {self.limits.max_depth})")
        nonsmooth = sum(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _NONSMOOTH
                        for n in nodes)
        if nonsmooth > self.limits.max_nonsmooth:
            raise self.too_big(f"{nonsmooth} calls of Max, Min, abs, sign, Heaviside or Piecewise "
                               f"(at most {self.limits.max_nonsmooth})")
        if tower[tree.body] > self.limits.max_tower:
            raise self.too_big(f"a tower of {tower[tree.body]} nested exponents or exp "
                               f"(at most {self.limits.max_tower})")

    # ---- the walk --------------------------------------------------------------------------------
    def build(self, node: ast.expr) -> sp.Basic:
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(_CONSTRUCTS.get(type(node), f"the construct {type(node).__name__}"), _HINTS.get(type(node)))

    def expr(self, node: ast.expr, role: str) -> sp.Expr:
        e = self.build(node)
        if not isinstance(e, sp.Expr):
            raise self.fail(f"a condition as {role}", _PIECEWISE_HINT)
        return e

    def condition(self, node: ast.expr, role: str) -> sp.Basic:
        e = self.build(node)
        if isinstance(e, sp.Expr) or not isinstance(e, sp.logic.boolalg.Boolean):  # a Symbol is both
            raise self.fail(f"a value as {role}", "a condition is a comparison such as r < 2, "
                            "joined by & | and negated by ~")
        return e

    def number(self, node: ast.Constant) -> sp.Basic:
        v = node.value
        if isinstance(v, bool):
            return sp.true if v else sp.false
        if isinstance(v, complex):
            raise self.fail("a complex number")
        if not isinstance(v, (int, float)):
            raise self.fail("a string" if isinstance(v, (str, bytes)) else f"the value {v!r}")
        literal = (ast.get_source_segment(self.source, node) or repr(v)).replace("_", "")
        mantissa = literal.lower().split("e")[0] if isinstance(v, float) else literal
        digits = len(mantissa.replace(".", "").lstrip("0"))
        if digits > self.limits.max_int_digits:
            raise self.too_big(f"a number with {digits} digits (at most {self.limits.max_int_digits})")
        if isinstance(v, int):
            return sp.Integer(v)
        if not math.isfinite(v):
            raise self.too_big(f"the number {literal[:40]} is beyond floating point")
        return sp.Float(literal)  # from the text, as sympy's parser did: keeps every digit given

    def name(self, name: str) -> sp.Basic:
        if name in self.names:
            return self.names[name]
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if "__" in name:
            raise self.fail(f"the name {name!r}")
        if name in FUNCTIONS:
            raise self.fail(f"the function {name!r} without arguments", f"call it, e.g. {name}(r)")
        raise SymdistillError(f"Unknown name {name[:40]!r} in {self.what} {self.shown}: use the variables "
                              f"{', '.join(self.names)} and functions such as exp, log, sqrt")

    def binop(self, node: ast.BinOp) -> sp.Basic:
        op = node.op
        if isinstance(op, (ast.Pow, ast.BitXor)):
            return self.power(self.expr(node.left, "a base"), self.expr(node.right, "an exponent"))
        if isinstance(op, (ast.BitAnd, ast.BitOr)):
            join = sp.And if isinstance(op, ast.BitAnd) else sp.Or
            side = "an operand of & or |"
            return join(self.condition(node.left, side), self.condition(node.right, side))
        for chain in _CHAINS:
            if isinstance(op, chain):
                return self.chain(node, chain)
        raise self.fail(f"the operator {_OPERATOR_TEXT.get(type(op), type(op).__name__)}")

    def chain(self, node: ast.BinOp, chain: tuple) -> sp.Expr:
        """``a + b - c + ...`` or ``a * b / c ...`` as one sympy Add/Mul (the left spine, iteratively)."""
        parts = []
        while isinstance(node, ast.BinOp) and isinstance(node.op, chain):
            parts.append((node.op, node.right))
            node = node.left
        first = self.expr(node, "an operand")
        terms = [first] + [self.invert(op, self.expr(n, "an operand")) for op, n in reversed(parts)]
        out = sp.Add(*terms) if chain[0] is ast.Add else sp.Mul(*terms)
        return self.checked(out)

    def invert(self, op: ast.operator, e: sp.Expr) -> sp.Expr:
        if isinstance(op, ast.Sub):
            return -e
        if isinstance(op, ast.Div):
            return sp.Pow(e, -1)
        return e

    def unary(self, node: ast.UnaryOp) -> sp.Basic:
        if isinstance(node.op, ast.Invert):
            return sp.Not(self.condition(node.operand, "the operand of ~"))
        if isinstance(node.op, ast.Not):
            raise self.fail("`not`", "negate a condition with ~, e.g. ~(r < 1)")
        e = self.expr(node.operand, "an operand")
        return -e if isinstance(node.op, ast.USub) else e

    def compare(self, node: ast.Compare) -> sp.Basic:
        sides = [self.expr(node.left, "a side of a comparison")]
        relations = []
        for op, right in zip(node.ops, node.comparators):
            if type(op) not in _RELATION:
                raise self.fail(f"the comparison `{_OPERATOR_TEXT.get(type(op), type(op).__name__)}`")
            sides.append(self.expr(right, "a side of a comparison"))
            relations.append(_RELATION[type(op)](sides[-2], sides[-1]))
        return relations[0] if len(relations) == 1 else sp.And(*relations)

    def power(self, base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
        """``base ** exponent``, refused when the result would be (or simplify into) a huge number."""
        if exponent.is_number and not base.is_Number:
            p = _magnitude(exponent)
            if p > self.limits.max_exponent:
                raise self.too_big(f"the exponent {_fmt(p)} (at most {self.limits.max_exponent:g})")
        elif base.is_Number:  # 2**(r + 10**29) is harmless until simplify splits off 2**(10**29)
            size = _log10_size(base)
            p = _magnitude(exponent if exponent.is_number else exponent.as_coeff_Add()[0])
            digits = p * size if size else 0.0
            if digits > self.limits.max_number_digits:
                raise self.too_big(f"a power of about 10^{_fmt(digits)} "
                                   f"(at most 10^{self.limits.max_number_digits})")
        if base is sp.E:
            self.check_exp(exponent)
        elif isinstance(base, sp.exp):  # exp(a)**x is exp(a*x)
            self.check_exp(sp.Mul(base.args[0], exponent))
        return self.checked(sp.Pow(base, exponent))

    def check_exp(self, arg: sp.Expr) -> None:
        """sympy rewrites ``exp(k*log(x) + ...)`` as ``x**k * exp(...)``: bound k as an exponent."""
        for term in sp.Add.make_args(arg):
            factors = sp.Mul.make_args(term)
            if any(f.has(sp.log) for f in factors):
                k = sp.Mul(*[f for f in factors if f.is_number and not f.has(sp.log)])
                if _magnitude(k) > self.limits.max_exponent:
                    raise self.too_big(f"a logarithm times {_fmt(_magnitude(k))} inside exp, a power "
                                       f"(at most {self.limits.max_exponent:g})")

    def call(self, node: ast.Call) -> sp.Basic:
        if not isinstance(node.func, ast.Name):
            raise self.fail(f"calling {_CONSTRUCTS.get(type(node.func), 'something other than a function name')}")
        name = node.func.id
        if name not in _ARITY:
            if name in self.names or name in _CONSTANTS:
                raise self.fail(f"calling the non-function {name!r}")
            self.name(name)  # raises: dunder or unknown
        if node.keywords:
            raise self.fail(f"a keyword argument in {name}(...)")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(_CONSTRUCTS[ast.Starred])
        fewest, most = _ARITY[name]
        if name in ("Max", "Min", "max", "min"):
            most = self.limits.max_minmax_args
        if name == "Piecewise":
            most = self.limits.max_branches
        if not fewest <= len(node.args) <= most:
            count = "1 argument" if most == 1 else f"{fewest} to {most} arguments"
            raise SymdistillError(f"Invalid {self.what} {self.shown}: {name} takes {count} "
                                  f"(got {len(node.args)}): give it {count}")
        if name == "Piecewise":
            return self.checked(sp.Piecewise(*[self.branch(a) for a in node.args]))
        args = [self.expr(a, f"an argument of {name}") for a in node.args]
        func = FUNCTIONS[name]
        if func in (sp.Max, sp.Min):  # nested calls flatten into one: bound the total
            total = sum(len(a.args) if type(a) is func else 1 for a in args)
            if total > self.limits.max_minmax_args:
                raise self.too_big(f"{name} of {total} arguments (at most {self.limits.max_minmax_args})")
        if func is sp.exp:
            self.check_exp(args[0])
        return self.checked(func(*args))

    def branch(self, node: ast.expr) -> tuple[sp.Expr, sp.Basic]:
        if not (isinstance(node, ast.Tuple) and len(node.elts) == 2):
            raise SymdistillError(f"Invalid {self.what} {self.shown}: Piecewise takes (value, condition) "
                                  "pairs, e.g. Piecewise((0, r < 2), ((r - 1)**2, True))")
        return self.expr(node.elts[0], "a Piecewise value"), self.condition(node.elts[1], "a Piecewise condition")

    def checked(self, e: sp.Basic) -> sp.Basic:
        """``e``, unless sympy's arithmetic made an exact number larger than the limit."""
        if isinstance(e, sp.Expr):
            c = e if e.is_Rational else e.as_coeff_Mul()[0] if e.is_Mul else e.as_coeff_Add()[0] if e.is_Add else None
            if c is not None and c.is_Rational and _log10_size(c) > self.limits.max_number_digits:
                raise self.too_big(f"a number of about 10^{_fmt(_log10_size(c))} "
                                   f"(at most 10^{self.limits.max_number_digits})")
        return e


_OPERATOR_TEXT = {ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
                  ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}


def _same_chain(parent: ast.expr, child: ast.expr) -> bool:
    """True for the left operand of a chain ``a + b - c``: it does not add a level of depth."""
    if not (isinstance(parent, ast.BinOp) and isinstance(child, ast.BinOp) and parent.left is child):
        return False
    return any(isinstance(parent.op, c) and isinstance(child.op, c) for c in _CHAINS)


def _magnitude(x: sp.Expr) -> float:
    """|x| for a sympy number (inf when it cannot be bounded, e.g. not real or too large)."""
    try:
        v = abs(complex(x if x.is_Number else x.evalf(8)))
    except (TypeError, ValueError, OverflowError, ArithmeticError):
        return math.inf
    return v if math.isfinite(v) else math.inf


def _log10_size(x: sp.Number) -> float:
    """Decimal digits of an exact number (numerator or denominator), or |log10| of a float."""
    if x.is_Rational:
        return max(_digits(abs(x.p)), _digits(x.q))
    if x.is_Float:
        sign, man, exp, bc = x._mpf_
        if not man:
            return 0.0 if exp == 0 else math.inf  # 0.0, or inf/nan
        return abs(exp + bc) * math.log10(2) if abs(exp + bc) > 1000 else abs(math.log10(abs(float(x))))
    return math.inf


def _digits(n: int) -> float:
    return 0.0 if n <= 1 else math.log10(n) if n.bit_length() < 1000 else n.bit_length() * math.log10(2)


def _fmt(v: float) -> str:
    return "infinity" if not math.isfinite(v) else f"{v:.3g}"
