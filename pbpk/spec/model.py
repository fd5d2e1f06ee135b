"""The model builder: declare parameters, covariates, compartments, flows, raw ODE states,
derived quantities and observations, then ``compile()`` to an immutable JAX model.

Compartment amounts are the states (in the model's amount unit); concentrations are derived
(``compartment.conc`` = amount / volume).  A flow moves amount from one compartment to another
(``None`` is the outside), so mass is conserved by construction; raw states take free-form
``ode`` terms.  Every symbol carries a unit and ``compile`` checks each term of every d(state)/dt.
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass
from typing import Any

import sympy as sp

from ..errors import ModelError, UnitError, did_you_mean
from ..residual import AbstractResidualError
from .expr import CONSTANTS, FUNCTIONS, parse_expression
from .units import convert_factor, parse_unit

__all__ = ["Model", "Compartment", "Parameter", "Covariate", "State", "Flow", "Observation"]

_RESERVED = {"t", "time", "eliminated"} | set(FUNCTIONS) | set(CONSTANTS)


@dataclass(frozen=True)
class Parameter:
    name: str
    symbol: sp.Symbol
    value: float
    unit: str
    description: str = ""
    source: str = ""
    bounds: tuple[float, float] | None = None
    iiv: float | None = None


@dataclass(frozen=True)
class Covariate:
    name: str
    symbol: sp.Symbol
    unit: str
    reference: float | None = None
    description: str = ""


@dataclass(frozen=True)
class State:
    name: str
    symbol: sp.Symbol
    unit: str
    initial: sp.Expr
    compartment: "Compartment | None" = None
    description: str = ""


@dataclass(frozen=True)
class Flow:
    source: str | None
    target: str | None
    rate: sp.Expr
    label: str


@dataclass(frozen=True)
class Observation:
    name: str
    expr: sp.Expr
    unit: str
    error: AbstractResidualError | None


@dataclass(frozen=True, eq=False)
class Compartment:
    """A well-stirred compartment.  ``amount`` is its state symbol, ``conc`` = amount/volume."""

    name: str
    amount: sp.Symbol
    volume: sp.Expr
    bioavailability: sp.Expr | None = None
    lag: sp.Expr | None = None
    infusion_duration: sp.Expr | None = None
    infusion_rate: sp.Expr | None = None
    description: str = ""

    @property
    def conc(self) -> sp.Expr:
        return self.amount / self.volume

    def __repr__(self) -> str:
        return f"Compartment({self.name!r}, volume={self.volume})"


@dataclass
class _Decl:
    kind: str
    symbol: sp.Symbol
    unit: Any  # pint Quantity


class Model:
    """A model specification (a builder).  ``compile()`` returns an immutable ``CompiledModel``.

    Args:
        name: model name.
        time, amount, volume: the model's units of time, compartment amount and volume.
        description, citation: printed by the library and the report.
    """

    def __init__(self, name: str, *, time: str = "h", amount: str = "mg", volume: str = "L",
                 description: str = "", citation: str = ""):
        self.name, self.description, self.citation = name, description, citation
        self.time_unit, self.amount_unit, self.volume_unit = time, amount, volume
        self._units = {"time": parse_unit(time, what="Model time unit"),
                       "amount": parse_unit(amount, what="Model amount unit"),
                       "volume": parse_unit(volume, what="Model volume unit")}
        self.t = sp.Symbol("t", real=True)
        self._decl: dict[str, _Decl] = {"t": _Decl("time", self.t, self._units["time"])}
        self.parameters: dict[str, Parameter] = {}
        self.covariates: dict[str, Covariate] = {}
        self.states: dict[str, State] = {}
        self.compartments: dict[str, Compartment] = {}
        self.flows: list[Flow] = []
        self.odes: list[tuple[str, sp.Expr]] = []
        self.defines: dict[str, tuple[sp.Expr, Any]] = {}
        self.observations: dict[str, Observation] = {}
        self.inputs: dict[str, str] = {}   # name -> unit of exogenous drivers (see ``input``)
        self.constants: dict[sp.Symbol, float] = {}   # bare numbers given where a unit was implied
        self.neural_terms: list = []   # learned right-hand-side terms (pbpk.hybrid), see ``neural``

    # ----------------------------------------------------------------- declarations
    def parameter(self, name: str, value: float, unit: str = "", *, description: str = "", source: str = "",
                  bounds: tuple[float, float] | None = None, iiv: float | None = None) -> sp.Symbol:
        """Declare a parameter with its typical value; ``iiv`` is ω, the SD of a log-normal η."""
        self._check_new_name(name, "parameter")
        what = f"parameter {name!r}"
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ModelError(f"{what}: value {value!r} is not a number.") from None
        if not math.isfinite(value):
            raise ModelError(f"{what}: value {value!r} is not finite.")
        if bounds is not None:
            lo, hi = (float(b) for b in bounds)
            if not lo < hi:
                raise ModelError(f"{what}: bounds {bounds!r} must be (lower, upper) with lower < upper.")
            if not lo <= value <= hi:
                raise ModelError(f"{what}: typical value {value} lies outside its bounds {bounds!r}.")
            bounds = (lo, hi)
        if iiv is not None and (isinstance(iiv, bool) or not (isinstance(iiv, (int, float)) and iiv >= 0)):
            raise ModelError(f"{what}: iiv={iiv!r} must be a non-negative number (omega, SD of log eta).")
        if iiv and value <= 0:
            raise ModelError(f"{what}: log-normal IIV needs a positive typical value, got {value}.")
        sym = self._declare(name, "parameter", unit)
        self.parameters[name] = Parameter(name, sym, value, unit, description, source, bounds,
                                          None if iiv is None else float(iiv))
        return sym

    def covariate(self, name: str, unit: str = "", *, reference: float | None = None,
                  description: str = "") -> sp.Symbol:
        """Declare a patient covariate (e.g. weight); ``reference`` is its typical value."""
        self._check_new_name(name, "covariate")
        sym = self._declare(name, "covariate", unit)
        self.covariates[name] = Covariate(name, sym, unit, None if reference is None else float(reference),
                                          description)
        return sym

    def compartment(self, name: str, volume=1.0, *, initial=0.0, bioavailability=None, lag=None,
                    infusion_duration=None, infusion_rate=None, description: str = "") -> Compartment:
        """Declare a compartment whose amount (in the model's amount unit) is a state."""
        self._check_new_name(name, "compartment")
        what = f"compartment {name!r}"
        vol = self._expr(volume, f"{what} volume", default_unit=self.volume_unit)
        sym = self._declare(name, "state", self.amount_unit)
        opt = lambda v, label, unit: None if v is None else self._expr(v, f"{what} {label}", default_unit=unit)
        cmt = Compartment(name, sym, vol,
                          bioavailability=opt(bioavailability, "bioavailability", ""),
                          lag=opt(lag, "lag", self.time_unit),
                          infusion_duration=opt(infusion_duration, "infusion_duration", self.time_unit),
                          infusion_rate=opt(infusion_rate, "infusion_rate", f"({self.amount_unit})/({self.time_unit})"),
                          description=description)
        self.compartments[name] = cmt
        self.states[name] = State(name, sym, self.amount_unit, self._expr(initial, f"{what} initial",
                                                                          default_unit=self.amount_unit),
                                  cmt, description)
        return cmt

    def state(self, name: str, *, initial=None, unit: str = "", description: str = "") -> sp.Symbol:
        """Declare a raw ODE state; its right-hand side comes from ``ode`` terms."""
        self._check_new_name(name, "state")
        if initial is None:
            raise ModelError(f"state {name!r} has no initial condition: pass initial=... "
                             f"(a number in {unit or 'its unit'} or an expression).")
        sym = self._declare(name, "state", unit)
        self.states[name] = State(name, sym, unit, self._expr(initial, f"state {name!r} initial", default_unit=unit),
                                  None, description)
        return sym

    def define(self, name: str, expr, unit: str | None = None) -> sp.Symbol:
        """A named derived quantity, substituted wherever it is used."""
        self._check_new_name(name, "define")
        e = self._expr(expr, f"define {name!r}")
        q = None if unit is None else parse_unit(unit, what=f"define {name!r}")
        sym = sp.Symbol(name, real=True)
        self.defines[name] = (e, unit)
        self._decl[name] = _Decl("define", sym, q)
        return sym

    def input(self, name: str, unit: str = "", *, default=None, description: str = "") -> sp.Symbol:
        """Declare an exogenous driver, e.g. the drug concentration a PD model responds to.

        ``pbpk.compose`` connects it to an expression of another model (a PK model's plasma
        concentration); unconnected, it takes ``default`` (in ``unit``), and compiling a model
        with an unconnected input that has no default is an error.  This is what lets a library
        PD model be combined with anyone's PK model without rewriting either.
        """
        self._check_new_name(name, "input")
        q = parse_unit(unit, what=f"input {name!r}")
        sym = sp.Symbol(name, real=True)
        self._decl[name] = _Decl("input", sym, q)
        self.inputs[name] = unit
        if default is not None:
            self.defines[name] = (self._expr(default, f"input {name!r} default", default_unit=unit), unit)
        return sym

    # ----------------------------------------------------------------- equations
    def flow(self, source, target, rate, *, label: str | None = None) -> None:
        """Move amount from ``source`` to ``target`` (compartments or None for outside) at ``rate``."""
        src, dst = self._cmt_name(source, "source"), self._cmt_name(target, "target")
        if src is None and dst is None:
            raise ModelError("flow(None, None, ...): at least one end must be a compartment.")
        if src == dst:
            raise ModelError(f"flow({src!r}, {dst!r}): source and target are the same compartment.")
        label = label or f"flow {src or 'outside'} -> {dst or 'outside'}"
        self.flows.append(Flow(src, dst, self._expr(rate, label), label))

    def ode(self, state, expr, *, label: str | None = None) -> None:
        """Add a term to d(state)/dt; several calls add several (separately unit-checked) terms."""
        name = self._state_name(state)
        label = label or f"ode term {len([o for o in self.odes if o[0] == name]) + 1} of d{name}/dt"
        self.odes.append((name, self._expr(expr, label)))

    def initial(self, state, value) -> None:
        """Set (replace) a state's initial condition."""
        name = self._state_name(state)
        s = self.states[name]
        self.states[name] = State(s.name, s.symbol, s.unit, self._expr(value, f"initial of {name!r}"),
                                  s.compartment, s.description)

    def observe(self, name: str, expr, unit: str = "", *, error: AbstractResidualError | None = None) -> None:
        """Declare an observable output and its residual error model."""
        if name in self.observations:
            raise ModelError(f"duplicate observation {name!r}.")
        if not isinstance(name, str) or not name.isidentifier():
            raise ModelError(f"observation name {name!r} must be an identifier.")
        if name in self._decl:
            raise ModelError(f"duplicate name {name!r}: already declared as a {self._decl[name].kind}.")
        if error is not None and not isinstance(error, AbstractResidualError):
            raise ModelError(f"observe({name!r}): error={error!r} must be a residual error model such as "
                             "pbpk.Proportional(0.15), pbpk.Additive(0.1), pbpk.Combined(0.1, 0.15) or pbpk.LogNormal(0.2).")
        parse_unit(unit, what=f"observation {name!r}")
        self.observations[name] = Observation(name, self._expr(expr, f"observation {name!r}"), unit, error)

    def neural(self, state, inputs, unit: str, *, key, scales=None, width: int = 16, depth: int = 2,
               activation: str = "tanh", gate: str | None = None) -> None:
        """Add a learned term ``NN(inputs)`` (in ``unit``) to d(state)/dt: an equinox MLP of
        ``depth`` hidden layers of ``width`` units whose last layer starts at zero (so the
        untrained model is the mechanistic one).  ``inputs``: names of states, observations,
        covariates or "t"; ``scales``: name -> typical magnitude each input is divided by;
        ``gate``: an input name whose (scaled) value multiplies the output (the term then
        vanishes with it).
        Train it with ``pbpk.hybrid.train_hybrid``."""
        from ..hybrid.neural import declare

        name = self._state_name(state)
        self.neural_terms.append(declare(self, name, inputs, unit, key=key, scales=scales, width=width, depth=depth,
                                         activation=activation, gate=gate))

    def quantity(self, value: float, unit: str) -> sp.Symbol:
        """A constant with a unit, e.g. ``WT / m.quantity(70, "kg")`` for a dimensionless weight
        ratio (a bare ``70`` is dimensionless, so ``WT / 70`` still has the unit kg)."""
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ModelError(f"quantity: value {value!r} is not a number.") from None
        return self._constant(value, unit)

    def compile(self, **options):
        """Check the specification (names, equations, units, positivity) and compile it to JAX."""
        from ..compile import compile_model

        return compile_model(self, **options)

    # ----------------------------------------------------------------- helpers
    def symbol(self, name: str) -> sp.Symbol:
        if name not in self._decl:
            raise ModelError(f"model {self.name!r} has no symbol {name!r}." + did_you_mean(name, self._decl))
        return self._decl[name].symbol

    def unit_of(self, name: str):
        return self._decl[name].unit

    def _show(self, e) -> str:
        """``e`` as text for messages, with internal constant symbols shown as their numbers."""
        e = sp.sympify(e)
        consts = {k: sp.Float(v) for k, v in self.constants.items() if k in e.free_symbols}
        return sp.sstr(e.xreplace(consts), full_prec=False) if consts else str(e)

    def __repr__(self) -> str:
        return (f"Model({self.name!r}: {len(self.states)} states, {len(self.parameters)} parameters, "
                f"{len(self.covariates)} covariates, {len(self.observations)} observations)")

    def _check_new_name(self, name, kind):
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ModelError(f"{kind} name {name!r} is not a valid identifier.")
        if name.startswith("_"):
            raise ModelError(f"{kind} name {name!r}: names starting with '_' are reserved.")
        if name in _RESERVED:
            raise ModelError(f"{kind} name {name!r} is reserved (time, functions and constants).")
        if name in self._decl or name in self.observations:
            existing = self._decl[name].kind if name in self._decl else "observation"
            article = "an" if existing[0] in "aeiou" else "a"
            raise ModelError(f"duplicate name {name!r}: already declared as {article} {existing}.")

    def _declare(self, name, kind, unit):
        sym = sp.Symbol(name, real=True)
        self._decl[name] = _Decl(kind, sym, parse_unit(unit, what=f"{kind} {name!r}"))
        return sym

    def _names(self):
        return {n: d.symbol for n, d in self._decl.items()}

    def _expr(self, value, what, default_unit=None) -> sp.Expr:
        if isinstance(value, Compartment):
            return value.amount
        if isinstance(value, str):
            attrs = {n: {"conc": c.conc, "amount": c.amount, "volume": c.volume} for n, c in self.compartments.items()}
            return parse_expression(value, self._names(), what=what, attributes=attrs)
        if isinstance(value, bool):
            raise ModelError(f"{what}: {value!r} is not a number or expression.")
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise ModelError(f"{what}: {value!r} is not finite.")
            return self._constant(value, default_unit)
        try:
            e = sp.sympify(value, strict=True)
        except (sp.SympifyError, TypeError):
            raise ModelError(f"{what}: {value!r} ({type(value).__name__}) is not a number, string or sympy expression.") from None
        rename = {}
        for s in e.free_symbols:
            if str(s).startswith("_"):
                if s not in self.constants:   # constants copied in by compose keep their symbols
                    raise ModelError(f"{what}: the constant {s} belongs to another model; create it with "
                                     f"this model's quantity(...).")
                continue
            if str(s) not in self._decl:
                raise ModelError(f"{what}: symbol {s} is not declared in model {self.name!r}."
                                 + did_you_mean(str(s), [n for n in self._decl if not n.startswith("_")]))
            if self._decl[str(s)].symbol != s:  # same name, other assumptions (e.g. sympy.Symbol('CL'))
                rename[s] = self._decl[str(s)].symbol
        return e.xreplace(rename) if rename else e

    def _constant(self, value, unit):
        """A bare number given where a dimensioned value is expected carries that unit."""
        if not unit:
            return sp.Float(value) if not float(value).is_integer() else sp.Integer(int(value))
        name = f"_const{len(self._decl)}"
        sym = sp.Dummy(name[1:], real=True)  # prints as the name; unique, so never confused across models
        self._decl[name] = _Decl("constant", sym, parse_unit(unit, what="constant"))
        self.constants[sym] = float(value)
        return sym

    def _cmt_name(self, c, role):
        if c is None:
            return None
        name = c.name if isinstance(c, Compartment) else c
        if isinstance(name, sp.Symbol):
            name = str(name)
        if not isinstance(name, str):
            raise ModelError(f"flow {role} {c!r} must be a compartment, its name, or None (outside).")
        if name not in self.compartments:
            raise ModelError(f"flow {role}: unknown compartment {name!r}." + did_you_mean(name, self.compartments))
        return name

    def _state_name(self, s):
        name = s.name if isinstance(s, Compartment) else str(s)
        if name not in self.states:
            raise ModelError(f"unknown state {name!r}." + did_you_mean(name, self.states))
        return name


def expression_unit_check(model: Model, expr: sp.Expr, target, what: str):
    """Check ``expr`` against a target unit (a pint Quantity); return it rescaled to that unit."""
    from .units import check_expression

    if target is not None and sp.sympify(expr) == 0:  # an exact zero has any unit (m.ode(x, 0))
        return sp.Integer(0), target
    units = {d.symbol: d.unit for d in model._decl.values() if d.unit is not None}
    scaled, unit = check_expression(expr, units, what=what)
    if target is None:
        return scaled, unit
    try:
        factor = convert_factor(unit, target, what=what)
    except UnitError:
        from .units import format_unit

        hint = ""
        if any(a.is_Number and a not in (1, -1) for a in sp.preorder_traversal(expr)):
            hint = (" Note: bare numbers are dimensionless; give a reference value its unit with "
                    "m.quantity(value, unit), e.g. WT / m.quantity(70, 'kg').")
        raise UnitError(f"{what}: has unit [{format_unit(unit)}] but [{format_unit(target)}] was expected "
                        f"(term `{model._show(expr)}`).{hint}") from None
    return (scaled if factor == 1.0 else sp.Float(factor) * scaled), target
