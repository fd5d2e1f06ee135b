"""Units: a pint registry with pharmacometric units, and a checker that walks a sympy expression,
verifies dimensional consistency and rewrites it so that every term is in the target unit.

A symbol declared in ``mL/min`` inside a model whose time unit is ``h`` is therefore scaled
exactly at compile time, never silently mis-added; inconsistent dimensions raise ``UnitError``
naming the offending term.
"""

from __future__ import annotations

import functools
import re

import pint
import sympy as sp

from ..errors import UnitError

__all__ = ["ureg", "parse_unit", "check_expression", "convert_factor", "format_unit"]


@functools.lru_cache(maxsize=None)
def _registry() -> pint.UnitRegistry:
    reg = pint.UnitRegistry(autoconvert_offset_to_baseunit=True, on_redefinition="ignore")
    reg.define("liter = decimeter ** 3 = L = l = litre")  # symbol 'L' in messages (mL/min, not ml/min)
    reg.define("cell = [cell] = cells")
    reg.define("international_unit = [international_unit] = IU")  # biological activity (IL-2)
    reg.define("patient = [] ")  # dimensionless count used in doses per patient
    return reg


ureg = _registry()

_SUPERSCRIPTS = str.maketrans({"²": "^2", "³": "^3", "⁻": "^-", "¹": "1", "·": "*"})


def _normalise(text: str) -> str:
    text = text.strip().translate(_SUPERSCRIPTS)
    text = re.sub(r"10\^(-?\d+)", r"1e\1", text)     # 10^9/L -> 1e9/L
    text = re.sub(r"\bx\s*1e", "1e", text)
    return text.replace("μ", "µ")


@functools.lru_cache(maxsize=None)
def parse_unit(unit: str | None, *, what: str = "unit") -> pint.Quantity:
    """Parse a unit string into a pint Quantity (the scale is kept: '10^9/L' is 1e9 / L)."""
    if unit is None or str(unit).strip() in ("", "1", "dimensionless", "-"):
        return ureg.Quantity(1.0, "dimensionless")
    try:
        q = ureg.Quantity(_normalise(str(unit)))
    except Exception as exc:  # pint raises several unrelated types
        raise UnitError(f"{what}: cannot parse unit {unit!r} ({exc}). Examples of valid units: "
                        "'mg', 'ng/mL', 'L/h', 'mL/min/kg', '1/d', 'GBq', 'cells', '10^9/L'.") from None
    if not isinstance(q, pint.Quantity):
        q = ureg.Quantity(float(q), "dimensionless")
    return q


def format_unit(q: pint.Quantity) -> str:
    """A compact human-readable rendering of a unit quantity."""
    mag = q.magnitude
    unit = f"{q.units:~C}" or "1"
    return unit if mag == 1 else f"{mag:g} {unit}"


def convert_factor(frm: pint.Quantity, to: pint.Quantity, *, what: str) -> float:
    """The number f such that a value x in unit ``frm`` is x·f in unit ``to``."""
    ratio = (frm / to).to_reduced_units()
    if not ratio.dimensionless:
        raise UnitError(f"{what}: unit {format_unit(frm)!r} [{frm.dimensionality}] is not convertible to "
                        f"{format_unit(to)!r} [{to.dimensionality}].")
    return float(ratio.to("dimensionless").magnitude)


_DIMENSIONLESS = ureg.Quantity(1.0, "dimensionless")
_UNIT_PRESERVING = ("Min", "Max", "Abs", "Piecewise")


def check_expression(expr: sp.Expr, units: dict[sp.Symbol, pint.Quantity], *, what: str):
    """Walk ``expr`` and return ``(rescaled_expr, unit)``.

    ``units`` maps each free symbol to its declared unit.  Sums must add quantities of one
    dimension (terms in other scales are multiplied by the exact factor), arguments of
    transcendental functions must be dimensionless, and ``rescaled_expr`` evaluated with the
    symbols' numbers in their declared units yields a number in ``unit``.
    """
    return _Walker(units, what).walk(sp.sympify(expr))


class _Walker:
    def __init__(self, units, what):
        self.units, self.what = units, what

    def fail(self, node, message):
        raise UnitError(f"{self.what}: {message} in term `{node}`.")

    def walk(self, e):
        if e.is_Symbol:
            if e not in self.units:
                self.fail(e, f"symbol {e} has no declared unit")
            return e, self.units[e]
        if e.is_Number or e in (sp.pi, sp.E) or e.is_Boolean is True and not e.free_symbols:
            return e, _DIMENSIONLESS
        if e.is_Add:
            return self.same_units(e, e.args, e.func)
        if e.is_Mul:
            parts = [self.walk(a) for a in e.args]
            unit = _DIMENSIONLESS
            for _, u in parts:
                unit = unit * u
            return sp.Mul(*[p for p, _ in parts]), unit
        if e.is_Pow:
            return self.power(e)
        if isinstance(e, sp.Piecewise):
            return self.piecewise(e)
        if isinstance(e, (sp.Min, sp.Max)):
            return self.same_units(e, e.args, e.func)
        if isinstance(e, sp.Abs):
            inner, unit = self.walk(e.args[0])
            return sp.Abs(inner), unit
        if isinstance(e, sp.Heaviside):
            inner, _ = self.walk(e.args[0])
            return sp.Heaviside(inner, *e.args[1:]), _DIMENSIONLESS
        if isinstance(e, sp.core.relational.Relational):
            (lhs, rhs), _ = self.unify(e, e.args)
            return e.func(lhs, rhs), _DIMENSIONLESS
        if isinstance(e, (sp.And, sp.Or, sp.Not)):
            return e.func(*[self.walk(a)[0] for a in e.args]), _DIMENSIONLESS
        if isinstance(e, sp.Function):
            return e.func(*[self.dimensionless(a, e) for a in e.args]), _DIMENSIONLESS
        self.fail(e, f"unsupported expression type {type(e).__name__}")

    def unify(self, node, args):
        parts = [self.walk(a) for a in args]
        # Exact zeros carry no unit: `0 + x` and Piecewise((x, c), (0, True)) are fine.
        ref = next((u for p, u in parts if p != 0), parts[0][1])
        out = []
        for (p, u), a in zip(parts, args):
            if p == 0:
                out.append(p)
                continue
            ratio = (u / ref).to_reduced_units()
            if not ratio.dimensionless:
                self.fail(node, f"cannot combine `{a}` [{format_unit(u)}] with [{format_unit(ref)}]")
            factor = float(ratio.to("dimensionless").magnitude)
            out.append(p if factor == 1.0 else sp.Float(factor) * p)
        return out, ref

    def same_units(self, node, args, func):
        out, ref = self.unify(node, args)
        return func(*out), ref

    def dimensionless(self, arg, node):
        inner, unit = self.walk(arg)
        if not unit.dimensionless:
            self.fail(node, f"argument `{arg}` of {getattr(node, 'func', node)} has unit "
                            f"[{format_unit(unit)}], expected a dimensionless quantity")
        factor = float(unit.to("dimensionless").magnitude)
        return inner if factor == 1.0 else sp.Float(factor) * inner

    def power(self, e):
        base, exponent = e.args
        if exponent.is_Number:
            inner, unit = self.walk(base)
            return inner**exponent, unit ** float(exponent)
        return self.dimensionless(base, e) ** self.dimensionless(exponent, e), _DIMENSIONLESS

    def piecewise(self, e):
        values, _ = self.unify(e, [v for v, _ in e.args])
        conds = [c if c in (sp.true, sp.false) else self.walk(c)[0] for _, c in e.args]
        unit = next((self.walk(v)[1] for v in (v for v, _ in e.args) if v != 0), _DIMENSIONLESS)
        return sp.Piecewise(*zip(values, conds)), unit
