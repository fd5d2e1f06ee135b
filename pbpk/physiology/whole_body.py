"""A perfusion-limited whole-body PBPK model built from a :class:`Physiology` and tissue Kp values.

Structure (blood concentrations in arterial and venous pools, amounts as states)::

    venous --CO--> lung --CO--> arterial --Q_i--> tissue i --Q_i--> venous
                                        \\--Q_j--> gut, spleen, pancreas, stomach --Q_j--> liver
                                        \\--Q_liver (hepatic artery)--> liver --(Q_liver + sum Q_j)--> venous

Perfusion limitation: the venous blood leaving tissue i is at equilibrium with the tissue, at
concentration C_i x BP / Kp_i, where Kp_i is TISSUE:PLASMA (as returned by ``kp_rodgers_rowland``
and ``kp_poulin_theil``) and BP the blood:plasma ratio (tissue:blood = Kp / BP).  The lung
flow (cardiac output) is the sum of the tissue flows, not a separate parameter, so blood flow
is conserved for every parameter value (including under IIV).

Clearance, both referenced to arterial BLOOD concentration:
* hepatic, from the liver: ``hepatic="well_stirred"`` (default) takes ``cl_hepatic`` as the
  hepatic blood clearance CL_H (< total liver blood flow Q_H) and eliminates at
  Q_H·CL_H/(Q_H − CL_H) × C_liver,out, so that the whole body clears exactly CL_H·C_arterial at
  steady state (well-stirred liver: CL_H = Q_H·k/(Q_H + k)); ``hepatic="intrinsic"`` takes
  ``cl_hepatic`` as the unbound intrinsic clearance CLint,u and eliminates at
  (fu/BP)·CLint,u × C_liver,out;
* renal, from the kidney, with the same well-stirred mapping for the renal blood clearance CL_R.
At steady state of a constant infusion into venous blood, C_venous = C_arterial = rate / (CL_H + CL_R).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..errors import ModelError, did_you_mean

__all__ = ["whole_body"]

_TUMOUR_KEYS = ("volume", "blood_flow", "kp")


def _check(value, what: str, *, allow_zero=False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ModelError(f"whole_body: {what} = {value!r} is not a number.") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ModelError(f"whole_body: {what} = {value!r}; expected a finite number {'>=' if allow_zero else '>'} 0.")
    return v


def whole_body(physiology, kp: Mapping[str, float], *, name: str = "whole_body_pbpk", cl_hepatic=None,
               cl_renal=None, fu: float = 1.0, bp: float = 1.0, tumour: Mapping | None = None, drug: str | None = None,
               time: str = "h", amount: str = "mg", volume: str = "L", hepatic: str = "well_stirred",
               iiv: Mapping[str, float] | None = None):
    """Build (not compile) a perfusion-limited whole-body PBPK :class:`pbpk.Model`.

    Args:
        physiology: a :class:`~pbpk.physiology.Physiology` (e.g. ``human("male")``, ``mouse()``).
        kp: tissue -> Kp (tissue:plasma) for every organ of ``physiology`` (the output of
            ``kp_rodgers_rowland`` / ``kp_poulin_theil`` fits).
        cl_hepatic: hepatic clearance in L/h (see ``hepatic``); None = no hepatic elimination.
        cl_renal: renal blood clearance in L/h from the kidney; None = none.
        fu: fraction unbound in plasma (used by ``hepatic="intrinsic"``).
        bp: blood:plasma concentration ratio.
        tumour: optional ``dict(volume=L, blood_flow=L/h, kp=tissue:plasma)``: an extra tissue fed
            from arterial blood and draining to venous blood (it adds to the cardiac output).
        drug: drug name for the model description.
        time, amount, volume: model units (physiology values are declared in L and L/h and
            converted by the unit system).
        hepatic: "well_stirred" (``cl_hepatic`` is the hepatic blood clearance) or "intrinsic"
            (``cl_hepatic`` is CLint,u, unbound intrinsic clearance).
        iiv: parameter name -> omega (SD of log eta), e.g. ``{"CL_hepatic": 0.3}``.

    Parameters declared: ``V_<organ>``, ``Q_<organ>`` (every organ but the lung; ``Q_liver`` is
    the hepatic-arterial flow), ``Kp_<organ>``, ``V_arterial``, ``V_venous``, ``BP``, and
    ``CL_hepatic``/``CL_renal``/``fu`` when used, each with its unit and source.  Compartments:
    "venous", "arterial" and one per organ (+ "tumour"); doses go into "venous".  Observation
    ``Cp`` = C_venous / BP (plasma concentration, amount/volume), plus ``C_tumour`` with a tumour.
    """
    from ..spec import Model
    from . import Physiology

    if not isinstance(physiology, Physiology):
        raise ModelError(f"whole_body: physiology must be a Physiology (e.g. pbpk.physiology.human()), "
                         f"got {type(physiology).__name__}.")
    if hepatic not in ("well_stirred", "intrinsic"):
        raise ModelError(f"whole_body: hepatic={hepatic!r}; expected 'well_stirred' or 'intrinsic'."
                         + did_you_mean(str(hepatic), ("well_stirred", "intrinsic")))
    organs = physiology.organs
    if not isinstance(kp, Mapping):
        raise ModelError(f"whole_body: kp must be a mapping tissue -> Kp, got {type(kp).__name__}.")
    for t in kp:
        if t not in organs:
            raise ModelError(f"whole_body: kp has unknown tissue {t!r}; the physiology's organs are {list(organs)}."
                             + did_you_mean(str(t), organs))
    missing = [t for t in organs if t not in kp]
    if missing:
        raise ModelError(f"whole_body: kp is missing tissue(s) {missing}; give a Kp (tissue:plasma) for every organ.")
    kp_source = getattr(kp, "source", "user-supplied Kp (tissue:plasma)")
    bp = _check(bp, "bp (blood:plasma ratio)")
    fu = _check(fu, "fu (fraction unbound in plasma)")
    if fu > 1:
        raise ModelError(f"whole_body: fu = {fu!r}; expected 0 < fu <= 1.")
    if tumour is not None:
        if not isinstance(tumour, Mapping):
            raise ModelError("whole_body: tumour must be dict(volume=..., blood_flow=..., kp=...).")
        for k in tumour:
            if k not in _TUMOUR_KEYS:
                raise ModelError(f"whole_body: tumour has unknown key {k!r}; expected {_TUMOUR_KEYS}."
                                 + did_you_mean(str(k), _TUMOUR_KEYS))
        absent = [k for k in _TUMOUR_KEYS if k not in tumour]
        if absent:
            raise ModelError(f"whole_body: tumour is missing {absent}; give dict(volume=L, blood_flow=L/h, kp=...).")

    # ---- the parameter table: name -> (value, unit, description, source)
    table: dict[str, tuple] = {}
    for t, o in organs.items():
        table[f"V_{t}"] = (_check(o.volume, f"volume of {t!r} (L)"), "L", f"{t} volume", o.source)
        if t != "lung":
            desc = (f"{t} blood flow" if t != "liver" else
                    "hepatic-arterial blood flow (portal inflow arrives from the organs draining to the liver)")
            table[f"Q_{t}"] = (_check(o.blood_flow, f"blood flow of {t!r} (L/h)"), "L/h", desc, o.source)
        table[f"Kp_{t}"] = (_check(kp[t], f"kp[{t!r}]"), "", f"{t}:plasma partition coefficient", kp_source)
    if tumour is not None:
        table["V_tumour"] = (_check(tumour["volume"], "tumour volume (L)"), "L", "tumour volume", "user input")
        table["Q_tumour"] = (_check(tumour["blood_flow"], "tumour blood_flow (L/h)"), "L/h", "tumour blood flow",
                             "user input")
        table["Kp_tumour"] = (_check(tumour["kp"], "tumour kp"), "", "tumour:plasma partition coefficient",
                              "user input")
    psrc = physiology.sources
    table["V_arterial"] = (physiology.arterial_volume, "L", "arterial blood volume",
                           psrc.get("arterial_venous_split", ""))
    table["V_venous"] = (physiology.venous_volume, "L", "venous blood volume", psrc.get("arterial_venous_split", ""))
    table["BP"] = (bp, "", "blood:plasma concentration ratio", "user input")
    if cl_hepatic is not None:
        if "liver" not in organs:
            raise ModelError("whole_body: cl_hepatic given but the physiology has no liver.")
        cl_h = _check(cl_hepatic, "cl_hepatic (L/h)", allow_zero=True)
        q_h = physiology.hepatic_blood_flow
        if hepatic == "well_stirred":
            if cl_h >= q_h:
                raise ModelError(f"whole_body: cl_hepatic = {cl_h:g} L/h must be below the total liver blood flow "
                                 f"{q_h:g} L/h (well-stirred hepatic blood clearance); use hepatic='intrinsic' to "
                                 "give an intrinsic clearance instead.")
            table["CL_hepatic"] = (cl_h, "L/h", "hepatic blood clearance (well-stirred liver)", "user input")
        else:
            table["CL_hepatic"] = (cl_h, "L/h", "unbound hepatic intrinsic clearance CLint,u", "user input")
            table["fu"] = (fu, "", "fraction unbound in plasma", "user input")
    if cl_renal is not None:
        if "kidney" not in organs:
            raise ModelError("whole_body: cl_renal given but the physiology has no kidney.")
        cl_r = _check(cl_renal, "cl_renal (L/h)", allow_zero=True)
        if cl_r >= organs["kidney"].blood_flow:
            raise ModelError(f"whole_body: cl_renal = {cl_r:g} L/h must be below the renal blood flow "
                             f"{organs['kidney'].blood_flow:g} L/h.")
        table["CL_renal"] = (cl_r, "L/h", "renal blood clearance (well-stirred kidney)", "user input")

    iiv = dict(iiv or {})
    for p in iiv:
        if p not in table:
            raise ModelError(f"whole_body: iiv names unknown parameter {p!r}." + did_you_mean(str(p), table))

    desc = (f"Perfusion-limited whole-body PBPK{' for ' + drug if drug else ''}: {physiology!r}; "
            f"Kp tissue:plasma ({kp_source}); blood concentrations in arterial/venous pools, tissue outflow "
            "C_tissue*BP/Kp; gut, spleen, pancreas and stomach drain into the liver.")
    m = Model(name, time=time, amount=amount, volume=volume, description=desc,
              citation="Physiology: " + "; ".join(dict.fromkeys(physiology.sources.values())))
    P = {n: m.parameter(n, v, unit=u, description=d, source=s, iiv=iiv.get(n))
         for n, (v, u, d, s) in table.items()}
    BP = P["BP"]

    venous = m.compartment("venous", volume=P["V_venous"], description="venous blood (dosing site)")
    arterial = m.compartment("arterial", volume=P["V_arterial"], description="arterial blood")
    tissues = list(organs) + (["tumour"] if tumour is not None else [])
    cmt = {t: m.compartment(t, volume=P[f"V_{t}"], description=f"{t} tissue") for t in tissues}
    drains = {t: organs[t].drains_to if t in organs else "venous" for t in tissues}
    feeds = {t: [s for s in tissues if drains[s] == t] for t in tissues}   # portal organs -> liver

    def out_conc(t):   # venous blood leaving tissue t, in equilibrium with it
        return cmt[t].conc * BP / P[f"Kp_{t}"]

    cardiac_output = sum(P[f"Q_{t}"] for t in tissues if t != "lung")
    m.flow(venous, cmt["lung"], cardiac_output * venous.conc, label="venous -> lung (cardiac output)")
    m.flow(cmt["lung"], arterial, cardiac_output * out_conc("lung"), label="lung -> arterial")
    for t in tissues:
        if t == "lung":
            continue
        q_out = P[f"Q_{t}"] + sum(P[f"Q_{s}"] for s in feeds[t])
        m.flow(arterial, cmt[t], P[f"Q_{t}"] * arterial.conc, label=f"arterial -> {t}")
        m.flow(cmt[t], drains[t], q_out * out_conc(t), label=f"{t} -> {drains[t]}")
    if "CL_hepatic" in P:
        q_h = P["Q_liver"] + sum(P[f"Q_{s}"] for s in feeds["liver"])
        k_h = (q_h * P["CL_hepatic"] / (q_h - P["CL_hepatic"]) if hepatic == "well_stirred"
               else P["fu"] / BP * P["CL_hepatic"])
        m.flow(cmt["liver"], None, k_h * out_conc("liver"), label="hepatic clearance")
    if "CL_renal" in P:
        k_r = P["Q_kidney"] * P["CL_renal"] / (P["Q_kidney"] - P["CL_renal"])
        m.flow(cmt["kidney"], None, k_r * out_conc("kidney"), label="renal clearance")

    conc_unit = f"{amount}/{volume}"
    m.observe("Cp", venous.conc / BP, unit=conc_unit)
    if tumour is not None:
        m.observe("C_tumour", cmt["tumour"].conc, unit=conc_unit)
    return m
