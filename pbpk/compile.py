"""Compile a model specification (sympy IR) into an immutable JAX model.

``compile_model`` checks the spec (well-posedness, units, positivity), rescales every term to
the model's units, expands derived quantities, and emits flat JAX functions by common
subexpression elimination and ``sympy.lambdify``:

    rhs(t, y, theta, cov)      d(state)/dt without dose inputs
    observe(t, y, theta, cov)  observations
    initial(theta, cov)        initial state

When the right-hand side is linear and time-invariant in the states (compartmental PK and
linear PBPK are), it also emits ``A(theta, cov)`` and ``b(theta, cov)`` with
rhs = A·y + b, which the simulator propagates exactly: in closed form from the eigenvalues for
the standard small compartment structures (``_spectral``), else with the matrix exponential.

Flows to the outside are accumulated in a hidden state ``eliminated`` so that mass balance can be
checked: sum of amounts + eliminated = total dosed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from ._spectral import SpectralPlan, spectral_plan
from .errors import ModelError, did_you_mean
from .residual import AbstractResidualError
from .spec.model import Model, expression_unit_check
from .spec.units import format_unit, parse_unit

__all__ = ["CompiledModel", "compile_model", "ELIMINATED"]

ELIMINATED = "eliminated"


class CompiledModel(eqx.Module):
    """A compiled model: names, typical values, IIV and the JAX functions of the system.

    Immutable; parameters travel as vectors ordered as ``parameter_names``.
    """

    name: str = eqx.field(static=True)
    state_names: tuple[str, ...] = eqx.field(static=True)
    compartment_names: tuple[str, ...] = eqx.field(static=True)
    parameter_names: tuple[str, ...] = eqx.field(static=True)
    covariate_names: tuple[str, ...] = eqx.field(static=True)
    observation_names: tuple[str, ...] = eqx.field(static=True)
    unit_table: tuple[tuple[str, str], ...] = eqx.field(static=True)
    time_unit: str = eqx.field(static=True)
    amount_unit: str = eqx.field(static=True)
    linear: bool = eqx.field(static=True)
    accumulators: tuple[bool, ...] = eqx.field(static=True)
    transforms: tuple[str, ...] = eqx.field(static=True)
    bounds: tuple[tuple[float, float] | None, ...] = eqx.field(static=True)
    equations: tuple[str, ...] = eqx.field(static=True)
    spec: Model = eqx.field(static=True)
    theta: jax.Array
    omega: jax.Array
    covariate_reference: jax.Array
    errors: tuple[AbstractResidualError | None, ...]
    _rhs: Callable = eqx.field(static=True)
    _observe: Callable = eqx.field(static=True)
    _initial: Callable = eqx.field(static=True)
    _dose_props: Callable = eqx.field(static=True)
    _linear_parts: Callable | None = eqx.field(static=True)
    residual: eqx.Module | None = None
    spectral: SpectralPlan | None = eqx.field(static=True, default=None)
    observed_states: tuple[bool, ...] = eqx.field(static=True, default=())   # states the observations read
    at_rest: bool = eqx.field(static=True, default=False)   # linear, zero initial state and no constant input

    # ----------------------------------------------------------------- hybrid hook
    def with_residual(self, term) -> "CompiledModel":
        """A copy whose right-hand side adds ``term(t, y, theta, cov)`` (an (n_states,) vector in
        state units per time unit), e.g. a neural network (an ``eqx.Module``, so its weights are
        part of the pytree and can be trained).  The model is then integrated as nonlinear."""
        if not callable(term):
            raise ModelError(f"with_residual: term must be callable as term(t, y, theta, cov); got {type(term).__name__}.")
        return eqx.tree_at(lambda m: m.residual, self, term, is_leaf=lambda x: x is None)

    @property
    def is_linear(self) -> bool:
        """Linear in the states and without a residual term: eligible for exact propagation."""
        return self.linear and self.residual is None

    # ----------------------------------------------------------------- numerics
    def rhs(self, t, y, theta, cov, rate=None):
        """d(state)/dt; ``rate`` is the vector of zero-order inputs into each state."""
        dy = _stack(self._rhs(t, y, theta, cov), y)
        if self.residual is not None:
            dy = dy + self.residual(t, y, theta, cov)
        return dy if rate is None else dy + rate

    def observe(self, t, y, theta, cov):
        """Observation vector (ordered as ``observation_names``)."""
        if not self.observation_names:
            return jnp.zeros((0,), dtype=y.dtype)
        return _stack(self._observe(t, y, theta, cov), y)

    def initial_state(self, theta, cov):
        return _stack(self._initial(theta, cov), theta, size=len(self.state_names))

    def dose_properties(self, theta, cov):
        """Per-state bioavailability, lag time, modelled infusion duration and rate."""
        f, lag, dur, rate = self._dose_props(theta, cov)
        n = len(self.state_names)
        return tuple(_stack(v, theta, size=n) for v in (f, lag, dur, rate))

    def linear_system(self, theta, cov):
        """(A, b) with rhs = A·y + b; only for linear models."""
        if not self.is_linear:
            raise ModelError(f"model {self.name!r} is not linear in its states (or has a residual term).")
        a_flat, b = self._linear_parts(theta, cov)
        n = len(self.state_names)
        return _stack(a_flat, theta, size=n * n).reshape(n, n), _stack(b, theta, size=n)

    # ----------------------------------------------------------------- names
    @property
    def units(self) -> dict[str, str]:
        return dict(self.unit_table)

    @property
    def parameters(self) -> dict[str, float]:
        return dict(zip(self.parameter_names, np.asarray(self.theta).tolist()))

    def parameter_index(self, name: str) -> int:
        return _index(self.parameter_names, name, "parameter", self.name)

    def state_index(self, name: str) -> int:
        return _index(self.state_names, name, "state", self.name)

    def observation_index(self, name: str) -> int:
        return _index(self.observation_names, name, "observation", self.name)

    def params(self, **values) -> jax.Array:
        """The typical parameter vector with some values replaced by name."""
        return parameter_vector(self, values)

    # ----------------------------------------------------------------- transforms
    def to_unconstrained(self, theta):
        """Map natural-scale parameters to the real line (log for positive or one-sided bounds, logit for
        two-sided bounds)."""
        return _apply_transforms(self.transforms, self.bounds, theta, inverse=False)

    def from_unconstrained(self, z):
        return _apply_transforms(self.transforms, self.bounds, z, inverse=True)

    # ----------------------------------------------------------------- high level
    def simulate(self, regimen, times, params=None, covariates=None, **options):
        """Simulate a regimen (or dataset) at ``times``; see ``pbpk.simulate``."""
        from .simulate import simulate

        return simulate(self, regimen, times, params=params, covariates=covariates, **options)

    def population(self, n: int, key, covariates=None, **options):
        """Sample ``n`` virtual patients from the IIV model; see ``pbpk.population.sample``."""
        from .population import sample_population

        return sample_population(self, n, key, covariates=covariates, **options)

    def __repr__(self) -> str:
        kind = "linear" if self.is_linear else "nonlinear"
        return (f"CompiledModel({self.name!r}, {kind}, states={list(self.state_names)}, "
                f"parameters={list(self.parameter_names)}, observations={list(self.observation_names)})")


def _index(names, name, kind, model):
    try:
        return names.index(name)
    except ValueError:
        raise ModelError(f"model {model!r} has no {kind} {name!r}." + did_you_mean(name, names)) from None


def _stack(values, like, size=None):
    dtype = jnp.result_type(float)
    if size == 0 or (isinstance(values, (list, tuple)) and len(values) == 0):
        return jnp.zeros((0,), dtype=dtype)
    arrs = [jnp.asarray(v, dtype=dtype) for v in values]
    return jnp.stack(jnp.broadcast_arrays(*arrs))


def _apply_transforms(kinds, bounds, x, inverse):
    out = []
    for i, (kind, b) in enumerate(zip(kinds, bounds)):
        v = x[..., i]
        if kind == "log":  # lower bound (0 unless declared) .. +inf
            lo = 0.0 if b is None else b[0]
            v = lo + jnp.exp(v) if inverse else jnp.log(v - lo)
        elif kind == "log_upper":  # -inf .. upper bound
            v = b[1] - jnp.exp(v) if inverse else jnp.log(b[1] - v)
        elif kind == "logit":
            lo, hi = b
            v = lo + (hi - lo) * jax.nn.sigmoid(v) if inverse else jnp.log((v - lo) / (hi - v))
        out.append(v)
    return jnp.stack(out, axis=-1) if out else x


# --------------------------------------------------------------------------- compile
def compile_model(model: Model) -> CompiledModel:
    if not isinstance(model, Model):
        raise ModelError(f"compile_model expects a pbpk.Model, got {type(model).__name__}.")
    _check_well_posed(model)
    expand = _define_expander(model)
    states = list(model.states.values())
    state_names = [s.name for s in states]
    has_outflow = any(f.target is None for f in model.flows)
    time_u, amount_u = model._units["time"], model._units["amount"]

    terms: dict[str, list[sp.Expr]] = {n: [] for n in state_names}
    if has_outflow:
        terms[ELIMINATED] = []
    for c in model.compartments.values():  # first, so a volume error is not reported as a flow's
        expression_unit_check(model, expand(c.volume), model._units["volume"], f"compartment {c.name!r} volume")
    for f in model.flows:
        rate, _ = expression_unit_check(model, expand(f.rate), amount_u / time_u, f"{f.label} (rate)")
        if f.source is not None:
            terms[f.source].append(-rate)
        terms[f.target if f.target is not None else ELIMINATED].append(rate)
    for name, expr in model.odes:
        target = model._decl[name].unit / time_u
        scaled, _ = expression_unit_check(model, expand(expr), target, f"d{name}/dt term `{expr}`")
        terms[name].append(scaled)

    consts = {k: sp.Float(v) for k, v in model.constants.items()}
    sub = lambda e: e.xreplace(consts) if consts else e
    all_names = state_names + ([ELIMINATED] if has_outflow else [])
    y_syms = [model._decl[n].symbol for n in state_names] + ([sp.Symbol("_eliminated")] if has_outflow else [])
    rhs = [sub(sp.Add(*terms[n])) for n in all_names]

    initial = []
    for s in states:
        e, _ = expression_unit_check(model, expand(s.initial), model._decl[s.name].unit, f"initial of {s.name!r}")
        if e.free_symbols & set(y_syms):
            raise ModelError(f"initial condition of {s.name!r} depends on states: `{s.initial}`.")
        initial.append(sub(e))
    if has_outflow:
        initial.append(sp.Integer(0))

    obs_exprs, obs_units = [], []
    for o in model.observations.values():
        target = parse_unit(o.unit, what=f"observation {o.name!r}") if o.unit else None
        e, u = expression_unit_check(model, expand(o.expr), target, f"observation {o.name!r}")
        obs_exprs.append(sub(e))
        obs_units.append(o.unit or format_unit(u))

    p_syms = [p.symbol for p in model.parameters.values()]
    c_syms = [c.symbol for c in model.covariates.values()]
    _check_positivity(model, expand, sub, rhs, y_syms)
    dose_exprs = _dose_expressions(model, expand, sub, state_names, has_outflow)

    t = model.t
    rhs_fn = sp.lambdify([t, y_syms, p_syms, c_syms], rhs, modules="jax", cse=True)
    obs_fn = sp.lambdify([t, y_syms, p_syms, c_syms], obs_exprs, modules="jax", cse=True)
    init_fn = sp.lambdify([p_syms, c_syms], initial, modules="jax", cse=True)
    dose_fn = sp.lambdify([p_syms, c_syms], dose_exprs, modules="jax", cse=True)
    A, b, linear = _linear_decomposition(rhs, y_syms, t)
    lin_fn = (sp.lambdify([p_syms, c_syms], [list(A), list(b)], modules="jax", cse=True) if linear else None)
    accum = tuple(all(sp.diff(r, y) == 0 for r in rhs) for y in y_syms)
    plan = spectral_plan(sp.Matrix(len(rhs), len(rhs), A), accum) if linear else None
    read = set().union(*(e.free_symbols for e in obs_exprs)) if obs_exprs else set()

    params = list(model.parameters.values())
    transforms = tuple(_transform_kind(p) for p in params)
    unit_table = tuple([(s.name, s.unit or "1") for s in states]
                       + ([(ELIMINATED, model.amount_unit)] if has_outflow else [])
                       + [(p.name, p.unit or "1") for p in params]
                       + [(c.name, c.unit or "1") for c in model.covariates.values()]
                       + list(zip(model.observations, obs_units)))
    equations = tuple(f"d{n}/dt = {r}" for n, r in zip(all_names, rhs))
    compiled = CompiledModel(
        name=model.name, state_names=tuple(all_names), compartment_names=tuple(model.compartments),
        parameter_names=tuple(model.parameters), covariate_names=tuple(model.covariates),
        observation_names=tuple(model.observations), unit_table=unit_table,
        time_unit=model.time_unit, amount_unit=model.amount_unit, linear=linear, accumulators=accum,
        transforms=transforms, bounds=tuple(p.bounds for p in params), equations=equations, spec=model,
        theta=jnp.asarray([p.value for p in params], dtype=jnp.float64),
        omega=jnp.asarray([p.iiv or 0.0 for p in params], dtype=jnp.float64),
        covariate_reference=jnp.asarray([np.nan if c.reference is None else c.reference
                                         for c in model.covariates.values()], dtype=jnp.float64),
        errors=tuple(o.error for o in model.observations.values()),
        _rhs=rhs_fn, _observe=obs_fn, _initial=init_fn, _dose_props=dose_fn, _linear_parts=lin_fn,
        spectral=plan, observed_states=tuple(y in read for y in y_syms),
        at_rest=linear and all(e.is_zero is True for e in initial) and all(v.is_zero is True for v in b),
    )
    if model.neural_terms:
        from .hybrid.neural import build_residual

        compiled = compiled.with_residual(build_residual(compiled, model.neural_terms))
    return compiled


def _transform_kind(p) -> str:
    if p.bounds is not None:
        lo, hi = p.bounds
        if np.isfinite(lo) and np.isfinite(hi):
            return "logit"
        if np.isfinite(lo):
            return "log"
        if np.isfinite(hi):
            return "log_upper"
        return "identity"
    return "log" if p.value > 0 else "identity"


def _check_well_posed(model: Model) -> None:
    if not model.states:
        raise ModelError(f"model {model.name!r} has no states: declare a compartment or a state.")
    loose = [n for n in model.inputs if n not in model.defines]
    if loose:
        raise ModelError(f"model {model.name!r}: input(s) {loose} are not connected. Connect them with "
                         f"pbpk.compose(pk_model, {model.name}_model, links={{{loose[0]!r}: 'central.conc', ...}}) "
                         "or give m.input(..., default=...).")
    with_terms = {f.source for f in model.flows} | {f.target for f in model.flows} | {n for n, _ in model.odes}
    for name in model.states:
        if name not in with_terms:
            raise ModelError(f"state {name!r} has no equation: connect it with m.flow(...) or give it "
                             f"m.ode({name}, ...) (use m.ode({name}, 0) for a constant).")


def _define_expander(model: Model):
    """Substitute derived quantities (defines) recursively, rejecting cycles."""
    syms = {model._decl[n].symbol: e for n, (e, _) in model.defines.items()}
    resolved: dict[sp.Symbol, sp.Expr] = {}

    def resolve(sym, stack):
        if sym in resolved:
            return resolved[sym]
        if sym in stack:
            cycle = " -> ".join(str(s) for s in (*stack, sym))
            raise ModelError(f"defines form a cycle: {cycle}.")
        e = syms[sym]
        e = e.xreplace({s: resolve(s, (*stack, sym)) for s in e.free_symbols if s in syms})
        resolved[sym] = e
        return e

    for n, (e, unit) in model.defines.items():
        full = resolve(model._decl[n].symbol, ())
        if unit is not None:
            expression_unit_check(model, full, parse_unit(unit), f"define {n!r}")

    def expand(e):
        return e.xreplace({s: resolve(s, ()) for s in e.free_symbols if s in syms}) if syms else e

    return expand


def _typical_values(model: Model) -> dict[sp.Symbol, float]:
    vals = {p.symbol: p.value for p in model.parameters.values()}
    vals.update({c.symbol: c.reference for c in model.covariates.values() if c.reference is not None})
    vals.update(model.constants)
    return {k: sp.Float(v) for k, v in vals.items()}


def _check_positivity(model, expand, sub, rhs, y_syms):
    vals = _typical_values(model)
    for c in model.compartments.values():
        v = sub(expand(c.volume)).xreplace(vals)
        if v.is_number and not bool(v > 0):
            raise ModelError(f"compartment {c.name!r}: volume `{model._show(c.volume)}` evaluates to {float(v):g} at "
                             "typical values; expected a positive volume.")
    # States at 1 and at 1e-9: a capacity-limited rate (e.g. binding to R0 − bound) may turn
    # negative at large amounts, but a wrong sign is negative at both.
    large, small = {y: 1 for y in y_syms}, {y: sp.Float(1e-9) for y in y_syms}
    negative = lambda r: r.is_number and r.is_real and bool(r < 0)
    for f in model.flows:
        at = sub(expand(f.rate)).xreplace(vals).xreplace({model.t: 0})
        r = at.xreplace(large)
        if negative(r) and negative(at.xreplace(small)):
            raise ModelError(f"{f.label}: rate `{model._show(f.rate)}` is negative ({float(r):g}) at typical values; "
                             "a flow must be non-negative (reverse the direction instead).")


def _dose_expressions(model, expand, sub, state_names, has_outflow):
    """Per state: bioavailability, lag, modelled infusion duration and rate (0 = undeclared)."""
    rows = {"F": [], "lag": [], "dur": [], "rate": []}
    time_u = model._units["time"]
    for n in state_names:
        c = model.compartments.get(n)

        def get(attr, default, unit, label):
            e = getattr(c, attr) if c is not None else None
            if e is None:
                return sp.Float(default)
            scaled, _ = expression_unit_check(model, expand(e), unit, f"compartment {n!r} {label}")
            return sub(scaled)

        rows["F"].append(get("bioavailability", 1.0, parse_unit(""), "bioavailability"))
        rows["lag"].append(get("lag", 0.0, time_u, "lag"))
        rows["dur"].append(get("infusion_duration", 0.0, time_u, "infusion_duration"))
        rows["rate"].append(get("infusion_rate", 0.0, model._units["amount"] / time_u, "infusion_rate"))
    if has_outflow:
        for k, default in (("F", 1.0), ("lag", 0.0), ("dur", 0.0), ("rate", 0.0)):
            rows[k].append(sp.Float(default))
    return [rows["F"], rows["lag"], rows["dur"], rows["rate"]]


def _linear_decomposition(rhs, y_syms, t):
    """Return (A entries row-major, b, True) when rhs = A·y + b with A, b free of y and t."""
    n = len(y_syms)
    y_set = set(y_syms)
    A = []
    for r in rhs:
        if r.has(sp.Piecewise, sp.Heaviside, sp.Min, sp.Max, sp.Abs) and r.free_symbols & y_set:
            return None, None, False
        for y in y_syms:
            a = sp.diff(r, y)
            if a.free_symbols & (y_set | {t}):
                return None, None, False
            A.append(a)
    b = []
    for i, r in enumerate(rhs):
        rest = sp.expand(r - sum(A[i * n + j] * y_syms[j] for j in range(n)))
        if rest.free_symbols & (y_set | {t}):
            return None, None, False
        b.append(rest)
    return A, b, True


def parameter_vector(model: CompiledModel, params: Mapping[str, object] | None):
    """Typical values with named overrides (values may be arrays with a leading batch axis)."""
    theta = model.theta
    if not params:
        return theta
    arrays = {model.parameter_index(k): jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
    batch = [a.shape for a in arrays.values() if a.ndim > 0]
    if not batch:
        for i, v in arrays.items():
            theta = theta.at[i].set(v)
        return theta
    shape = batch[0]
    cols = [jnp.broadcast_to(arrays.get(i, theta[i]), shape) for i in range(theta.shape[0])]
    return jnp.stack(cols, axis=-1)
