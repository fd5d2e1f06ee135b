"""Safe parsing of expression strings into sympy.

A spec string is parsed by Python's ``ast`` (which only parses, never runs) and rebuilt node by
node from a whitelist: numbers, the model's declared names, arithmetic, comparisons, boolean
connectives and the functions in ``FUNCTIONS``.  Anything else — attribute access other than
``compartment.conc``/``.amount``, subscripts, lambdas, keyword arguments, dunder names — is a
``ModelError``.  ``eval`` is never called on user text.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping

import sympy as sp

from ..errors import ModelError, did_you_mean

__all__ = ["FUNCTIONS", "parse_expression", "hill", "emax", "michaelis_menten"]


def hill(x, emax, ec50, n):
    """Sigmoid Emax (Hill) function: emax·xⁿ/(ec50ⁿ + xⁿ)."""
    return emax * x**n / (ec50**n + x**n)


def emax(x, emax_, ec50):
    """Hyperbolic Emax function: emax·x/(ec50 + x)."""
    return emax_ * x / (ec50 + x)


def michaelis_menten(x, vmax, km):
    """Michaelis–Menten rate vmax·x/(km + x)."""
    return vmax * x / (km + x)


def _piecewise(*args):
    """piecewise(cond1, value1, cond2, value2, ..., otherwise)."""
    if len(args) < 3 or len(args) % 2 == 0:
        raise ModelError("piecewise(cond1, value1, [cond2, value2, ...], otherwise): expected an odd "
                         f"number (>= 3) of arguments, got {len(args)}.")
    pairs = [(args[i + 1], args[i]) for i in range(0, len(args) - 1, 2)]
    return sp.Piecewise(*pairs, (args[-1], True))


def _if_else(cond, a, b):
    return sp.Piecewise((a, cond), (b, True))


FUNCTIONS: Mapping[str, Callable] = {
    "exp": sp.exp, "log": sp.log, "ln": sp.log, "log10": lambda x: sp.log(x, 10),
    "sqrt": sp.sqrt, "pow": lambda a, b: a**b, "abs": sp.Abs,
    "min": sp.Min, "max": sp.Max,
    "piecewise": _piecewise, "if_else": _if_else, "heaviside": lambda x: sp.Heaviside(x, 1),
    "hill": hill, "emax": emax, "michaelis_menten": michaelis_menten, "mm": michaelis_menten,
    "sin": sp.sin, "cos": sp.cos, "tanh": sp.tanh,
}
CONSTANTS = {"pi": sp.pi, "e": sp.E}

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}
_COMPARE = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge}


def parse_expression(text: str, names: Mapping[str, object], *, what: str = "expression",
                     attributes: Mapping[str, Mapping[str, object]] | None = None) -> sp.Expr:
    """Parse ``text`` into a sympy expression using only ``names`` and ``FUNCTIONS``.

    ``attributes`` maps a name to its allowed attributes (``{"central": {"conc": expr}}``).
    """
    source = text.replace("^", "**")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ModelError(f"{what}: cannot parse {text!r}: {exc.msg} at column {exc.offset}.") from None
    return _Builder(names, attributes or {}, what, text).build(tree.body)


class _Builder:
    def __init__(self, names, attributes, what, text):
        self.names, self.attributes, self.what, self.text = names, attributes, what, text

    def fail(self, message):
        raise ModelError(f"{self.what}: {message} in {self.text!r}.")

    def build(self, node):
        method = getattr(self, "on_" + type(node).__name__, None)
        if method is None:
            self.fail(f"{type(node).__name__} is not allowed (only arithmetic, comparisons, declared "
                      f"names and the functions {sorted(FUNCTIONS)})")
        return method(node)

    def on_Constant(self, node):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            self.fail(f"literal {node.value!r} is not a number")
        return sp.Integer(node.value) if isinstance(node.value, int) else sp.Float(node.value)

    def on_Name(self, node):
        if node.id in self.names:
            return self.names[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            self.fail(f"function {node.id!r} used without a call")
        self.fail(f"undeclared name {node.id!r}" + did_you_mean(node.id, list(self.names) + list(CONSTANTS)))

    def on_Attribute(self, node):
        if not isinstance(node.value, ast.Name) or node.value.id not in self.attributes:
            self.fail(f"attribute access `.{node.attr}` is only allowed on compartments")
        allowed = self.attributes[node.value.id]
        if node.attr not in allowed:
            self.fail(f"compartment {node.value.id!r} has no attribute {node.attr!r}" + did_you_mean(node.attr, allowed))
        return allowed[node.attr]

    def on_BinOp(self, node):
        op = _BINOPS.get(type(node.op))
        if op is None:
            self.fail(f"operator {type(node.op).__name__} is not allowed")
        return op(self.build(node.left), self.build(node.right))

    def on_UnaryOp(self, node):
        operand = self.build(node.operand)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.Not):
            return sp.Not(operand)
        self.fail(f"operator {type(node.op).__name__} is not allowed")

    def on_Compare(self, node):
        parts, left = [], self.build(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = self.build(comp)
            if type(op) not in _COMPARE:
                self.fail(f"comparison {type(op).__name__} is not allowed (use <, <=, >, >=)")
            parts.append(_COMPARE[type(op)](left, right))
            left = right
        return sp.And(*parts) if len(parts) > 1 else parts[0]

    def on_BoolOp(self, node):
        values = [self.build(v) for v in node.values]
        return sp.And(*values) if isinstance(node.op, ast.And) else sp.Or(*values)

    def on_Call(self, node):
        if not isinstance(node.func, ast.Name):
            self.fail("only calls of whitelisted functions by name are allowed")
        name = node.func.id
        if name not in FUNCTIONS:
            self.fail(f"function {name!r} is not allowed; allowed: {sorted(FUNCTIONS)}" + did_you_mean(name, FUNCTIONS))
        if node.keywords:
            self.fail(f"keyword arguments are not allowed in {name}()")
        args = [self.build(a) for a in node.args]
        try:
            return FUNCTIONS[name](*args)
        except (TypeError, ModelError) as exc:
            self.fail(f"wrong number of arguments for {name}(): {exc}")
