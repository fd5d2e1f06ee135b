"""Composition of model specifications: a PK model, a myelosuppression model and a tumour model
become one patient model without rewriting any of them.

A library PD model declares the drug concentration it responds to as an *input*
(``m.input("C", "umol/L")``); ``compose`` copies every part into one ``Model`` and connects
each input to an expression of the composed namespace (``links={"C": "C_molar"}``), with the
unit conversion checked at compile time like every other term.  Covariates with the same name
and unit are shared (one patient has one BSA), as are inputs of the same name (one link drives
every PD part that reads the concentration).  Any other clash of names is an error naming the
symbol; ``renamed`` resolves it.

    >>> patient = pbpk.compose(docetaxel, friberg, simeoni, links={"C": "C_molar"})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import sympy as sp

from ..errors import ModelError, did_you_mean
from .model import Compartment, Flow, Model, Observation, Parameter, State, _Decl
from .units import convert_factor

__all__ = ["compose", "renamed"]


def compose(*parts: Model, links: Mapping[str, object] | None = None, name: str | None = None,
            description: str = "", citation: str = "") -> Model:
    """One model from ``parts``; the first part sets the time, amount and volume units.

    Args:
        parts: model specifications (``pbpk.Model``), left unchanged.
        links: input name -> expression (a string in the composed model's names, e.g.
            ``"central.conc"``, or a sympy expression of the parts' symbols).
        name: the composed model's name (default: the parts' names joined by ``+``).
    """
    if not parts:
        raise ModelError("compose: give at least one model.")
    for i, p in enumerate(parts):
        if not isinstance(p, Model):
            raise ModelError(f"compose: part {i} is a {type(p).__name__}, expected a pbpk.Model.")
    first = parts[0]
    out = Model(name or "+".join(p.name for p in parts), time=first.time_unit, amount=first.amount_unit,
                volume=first.volume_unit, description=description or " + ".join(p.description or p.name for p in parts),
                citation=citation or "; ".join(dict.fromkeys(p.citation for p in parts if p.citation)))
    for p in parts:
        _copy_into(out, p, {})
    for input_name, expr in (links or {}).items():
        if input_name not in out.inputs:
            raise ModelError(f"compose: links names {input_name!r}, which no part declares as an input."
                             + did_you_mean(input_name, out.inputs) + f" Inputs: {sorted(out.inputs) or 'none'}.")
        out.defines[input_name] = (out._expr(expr, f"link {input_name!r}"), out.inputs[input_name])
    return out


def renamed(model: Model, mapping: Mapping[str, str] | None = None, *, prefix: str = "",
            name: str | None = None) -> Model:
    """A copy of ``model`` with symbols renamed: ``mapping`` old -> new, and ``prefix`` on every
    parameter, state and observation not in ``mapping`` (covariates and inputs keep their names,
    so they still meet the other parts')."""
    mapping = dict(mapping or {})
    unknown = [k for k in mapping if k not in model._decl and k not in model.observations]
    if unknown:
        raise ModelError(f"renamed: {unknown[0]!r} is not a symbol of model {model.name!r}."
                         + did_you_mean(unknown[0], [*model._decl, *model.observations]))
    if prefix:
        for n in [*model.parameters, *model.states, *model.observations,
                  *(d for d in model.defines if d not in model.inputs)]:
            mapping.setdefault(n, prefix + n)
    out = Model(name or model.name, time=model.time_unit, amount=model.amount_unit, volume=model.volume_unit,
                description=model.description, citation=model.citation)
    _copy_into(out, model, mapping)
    return out


def _copy_into(out: Model, src: Model, rename: Mapping[str, str]) -> None:
    """Copy every declaration and equation of ``src`` into ``out`` (renaming per ``rename``)."""
    syms: dict[sp.Symbol, sp.Symbol] = {}
    for n, d in src._decl.items():
        if n == "t":
            continue
        if d.kind == "constant":   # unique Dummy symbols: carried over as they are
            out._decl[f"_const{len(out._decl)}"] = d
            out.constants[d.symbol] = src.constants[d.symbol]
            continue
        new = rename.get(n, n)
        if new in out._decl:
            _check_shared(out, src, n, new, d)
        else:
            out._check_new_name(new, d.kind)
            out._decl[new] = _Decl(d.kind, sp.Symbol(new, real=True), d.unit)
        syms[d.symbol] = out._decl[new].symbol
    sub = lambda e: None if e is None else sp.sympify(e).xreplace(syms)
    to = lambda n: None if n is None else rename.get(n, n)

    for n, p in src.parameters.items():
        out.parameters[to(n)] = Parameter(to(n), syms[p.symbol], p.value, p.unit, p.description, p.source,
                                          p.bounds, p.iiv)
    for n, c in src.covariates.items():
        out.covariates.setdefault(to(n), type(c)(to(n), syms[c.symbol], c.unit, c.reference, c.description))
    for n, u in src.inputs.items():
        out.inputs.setdefault(to(n), u)
    cmts = {}
    if src.compartments:
        _check_amount_unit(out, src)
    for n, c in src.compartments.items():
        cmts[n] = Compartment(to(n), syms[c.amount], sub(c.volume), sub(c.bioavailability), sub(c.lag),
                              sub(c.infusion_duration), sub(c.infusion_rate), c.description)
        out.compartments[to(n)] = cmts[n]
    for n, s in src.states.items():
        out.states[to(n)] = State(to(n), syms[s.symbol], s.unit, sub(s.initial), cmts.get(n), s.description)
    out.flows.extend(Flow(to(f.source), to(f.target), sub(f.rate), f.label) for f in src.flows)
    out.odes.extend((to(n), sub(e)) for n, e in src.odes)
    for n, (e, unit) in src.defines.items():
        if to(n) in out.defines and n in src.inputs:
            continue   # a shared input already connected or defaulted by an earlier part
        out.defines[to(n)] = (sub(e), unit)
    out.neural_terms.extend(replace(d, state=to(d.state), inputs=tuple(rename.get(i, i) for i in d.inputs))
                            for d in src.neural_terms)
    for n, o in src.observations.items():
        if to(n) in out.observations or to(n) in out._decl:
            raise ModelError(f"compose: observation {to(n)!r} of {src.name!r} clashes with another part; "
                             f"rename it with pbpk.renamed({src.name}_spec, {{{n!r}: 'new_name'}}).")
        out.observations[to(n)] = Observation(to(n), sub(o.expr), o.unit, o.error)


def _check_shared(out: Model, src: Model, old: str, new: str, d: _Decl) -> None:
    existing = out._decl[new]
    if d.kind in ("covariate", "input") and existing.kind == d.kind:
        try:
            same = convert_factor(d.unit, existing.unit, what=f"{d.kind} {new!r}") == 1.0
        except Exception:
            same = False
        if same:
            return
        raise ModelError(f"compose: {d.kind} {new!r} of {src.name!r} is in a different unit from the same "
                         f"{d.kind} of an earlier part; use one unit for it.")
    raise ModelError(f"compose: {d.kind} {new!r} of {src.name!r} clashes with a {existing.kind} of the same name "
                     f"in an earlier part. Rename it: pbpk.renamed(spec, {{{old!r}: '{old}_{src.name}'}}) "
                     f"or pbpk.renamed(spec, prefix='{src.name}_').")


def _check_amount_unit(out: Model, src: Model) -> None:
    try:
        ok = convert_factor(src._units["amount"], out._units["amount"], what="amount unit") == 1.0
    except Exception:
        ok = False
    if not ok:
        raise ModelError(f"compose: compartments of {src.name!r} hold amounts in {src.amount_unit} but the composed "
                         f"model's amount unit is {out.amount_unit}; put the part whose unit should win first, "
                         f"or declare {src.name!r} with amount={out.amount_unit!r}.")
