"""Classical compartmental PK models: the closed-form references of pharmacokinetics.

Citation for all: Gibaldi M, Perrier D. *Pharmacokinetics*, 2nd ed. Marcel Dekker, 1982
(ch. 1–3: one- and multi-compartment models, first-order absorption; ch. 7: Michaelis–Menten
elimination) and Savic RM et al. J Pharmacokinet Pharmacodyn 2007;34:711 (transit
compartments).  Default parameter values are illustrative typical values, not estimates for a
drug, except ``theophylline_1cmt_oral`` (nlmixr2 ``theo_sd`` initial estimates, see its docstring).
"""

from __future__ import annotations

from pbpk.residual import Additive, Proportional
from pbpk.spec import Model

from . import register

_GIBALDI = "Gibaldi M, Perrier D. Pharmacokinetics, 2nd ed. Marcel Dekker, 1982."


@register("one_compartment_iv", citation=_GIBALDI)
def one_compartment_iv(CL: float = 5.0, V: float = 50.0, iiv: bool = True) -> Model:
    """One-compartment model with IV dosing and linear elimination.

    Equations (A = amount in central, C = A/V):
        dA/dt = -CL·C

    | parameter | value | unit | source |
    |---|---|---|---|
    | CL | 5.0 | L/h | illustrative |
    | V  | 50.0 | L | illustrative |
    """
    m = Model("one_compartment_iv", description="1-compartment IV, linear elimination", citation=_GIBALDI)
    cl = m.parameter("CL", CL, "L/h", description="clearance", source="illustrative", iiv=0.3 if iiv else None)
    v = m.parameter("V", V, "L", description="volume of distribution", source="illustrative", iiv=0.2 if iiv else None)
    central = m.compartment("central", volume=v)
    m.flow(central, None, cl * central.conc)
    m.observe("Cp", central.conc, "mg/L", error=Proportional(0.1))
    return m


@register("one_compartment_oral", citation=_GIBALDI)
def one_compartment_oral(KA: float = 1.0, CL: float = 5.0, V: float = 50.0, F: float = 1.0,
                         TLAG: float | None = None) -> Model:
    """One-compartment model with first-order absorption (Bateman function).

    Equations:
        dA_depot/dt   = -KA·A_depot
        dA_central/dt =  KA·A_depot - CL/V·A_central
    Doses go into ``depot``; bioavailability F (and optional lag TLAG) apply to it.

    | parameter | value | unit | source |
    |---|---|---|---|
    | KA | 1.0 | 1/h | illustrative |
    | CL | 5.0 | L/h | illustrative |
    | V  | 50.0 | L | illustrative |
    | F  | 1.0 | – | illustrative |
    """
    m = Model("one_compartment_oral", description="1-compartment, first-order absorption", citation=_GIBALDI)
    ka = m.parameter("KA", KA, "1/h", description="absorption rate constant", source="illustrative", iiv=0.4)
    cl = m.parameter("CL", CL, "L/h", description="clearance", source="illustrative", iiv=0.3)
    v = m.parameter("V", V, "L", description="volume", source="illustrative", iiv=0.2)
    f = m.parameter("F", F, "", description="bioavailability", source="illustrative", bounds=(0.0, 1.0))
    lag = m.parameter("TLAG", TLAG, "h", description="absorption lag", source="illustrative") if TLAG else None
    depot = m.compartment("depot", volume=1.0, bioavailability=f, lag=lag)
    central = m.compartment("central", volume=v)
    m.flow(depot, central, ka * depot.amount)
    m.flow(central, None, cl * central.conc)
    m.observe("Cp", central.conc, "mg/L", error=Additive(0.5))
    return m


@register("theophylline_1cmt_oral",
          citation="Boeckmann AJ, Sheiner LB, Beal SL. NONMEM Users Guide Part V, 1994 (Theoph data); "
                   "nlmixr2 theo_sd example (initial estimates).")
def theophylline_1cmt_oral() -> Model:
    """One-compartment oral model for the Theoph dataset (doses in mg = mg/kg × weight).

    Equations as ``one_compartment_oral``.  Typical values are the nlmixr2 ``theo_sd`` initial
    estimates (ka 1.57 1/h, CL 2.72 L/h, V 31.5 L — reference_models.md §6.1 [S]); IIV and the
    additive error (0.7 mg/L) are of the order reported for FOCEi fits [U].

    | parameter | value | unit | source |
    |---|---|---|---|
    | KA | 1.57 | 1/h | nlmixr2 theo_sd initial estimate |
    | CL | 2.72 | L/h | nlmixr2 theo_sd initial estimate |
    | V  | 31.5 | L | nlmixr2 theo_sd initial estimate |
    """
    src = "nlmixr2 theo_sd initial estimates"
    m = Model("theophylline_1cmt_oral", description="Theophylline, 1-compartment oral")
    ka = m.parameter("KA", 1.57, "1/h", description="absorption rate constant", source=src, iiv=0.6)
    cl = m.parameter("CL", 2.72, "L/h", description="clearance", source=src, iiv=0.3)
    v = m.parameter("V", 31.5, "L", description="volume", source=src, iiv=0.15)
    depot = m.compartment("depot", volume=1.0)
    central = m.compartment("central", volume=v)
    m.flow(depot, central, ka * depot.amount)
    m.flow(central, None, cl * central.conc)
    m.observe("Cp", central.conc, "mg/L", error=Additive(0.7))
    return m


@register("two_compartment_iv", citation=_GIBALDI)
def two_compartment_iv(CL: float = 5.0, V1: float = 10.0, Q: float = 8.0, V2: float = 40.0) -> Model:
    """Two-compartment model with IV dosing.

    Equations:
        dA1/dt = -(CL + Q)/V1·A1 + Q/V2·A2
        dA2/dt =  Q/V1·A1 - Q/V2·A2

    | parameter | value | unit | source |
    |---|---|---|---|
    | CL | 5.0 | L/h | illustrative |
    | V1 | 10.0 | L | illustrative |
    | Q  | 8.0 | L/h | illustrative |
    | V2 | 40.0 | L | illustrative |
    """
    m = Model("two_compartment_iv", description="2-compartment IV", citation=_GIBALDI)
    cl = m.parameter("CL", CL, "L/h", description="clearance", source="illustrative", iiv=0.3)
    v1 = m.parameter("V1", V1, "L", description="central volume", source="illustrative", iiv=0.2)
    q = m.parameter("Q", Q, "L/h", description="intercompartmental clearance", source="illustrative")
    v2 = m.parameter("V2", V2, "L", description="peripheral volume", source="illustrative")
    central = m.compartment("central", volume=v1)
    periph = m.compartment("periph", volume=v2)
    m.flow(central, None, cl * central.conc)
    m.flow(central, periph, q * central.conc)
    m.flow(periph, central, q * periph.conc)
    m.observe("Cp", central.conc, "mg/L", error=Proportional(0.1))
    return m


@register("michaelis_menten_1cmt", citation=_GIBALDI)
def michaelis_menten_1cmt(VMAX: float = 20.0, KM: float = 2.0, V: float = 30.0) -> Model:
    """One-compartment model with saturable (Michaelis–Menten) elimination.

    Equations (C = A/V):
        dA/dt = -VMAX·C/(KM + C)

    | parameter | value | unit | source |
    |---|---|---|---|
    | VMAX | 20.0 | mg/h | illustrative |
    | KM   | 2.0 | mg/L | illustrative |
    | V    | 30.0 | L | illustrative |
    """
    m = Model("michaelis_menten_1cmt", description="1-compartment, Michaelis–Menten elimination", citation=_GIBALDI)
    vmax = m.parameter("VMAX", VMAX, "mg/h", description="maximum elimination rate", source="illustrative", iiv=0.2)
    km = m.parameter("KM", KM, "mg/L", description="concentration at half-maximal rate", source="illustrative")
    v = m.parameter("V", V, "L", description="volume", source="illustrative", iiv=0.2)
    central = m.compartment("central", volume=v)
    m.flow(central, None, "michaelis_menten(central.conc, VMAX, KM)")
    m.observe("Cp", central.conc, "mg/L", error=Proportional(0.1))
    del vmax, km
    return m


@register("transit_absorption", citation="Savic RM, Jonker DM, Kerbusch T, Karlsson MO. "
                                        "J Pharmacokinet Pharmacodyn 2007;34:711-726.")
def transit_absorption(n_transit: int = 3, MTT: float = 2.0, KA: float = 1.5, CL: float = 5.0,
                       V: float = 50.0, VMAX: float | None = None, KM: float = 1.0) -> Model:
    """Transit-compartment absorption into a one-compartment model (optionally saturable CL).

    Equations with ktr = (n+1)/MTT:
        dA_depot/dt = -ktr·A_depot
        dA_t1/dt    =  ktr·A_depot - ktr·A_t1,   ...,   dA_tn/dt = ktr·A_t(n-1) - ktr·A_tn
        dA_gut/dt   =  ktr·A_tn - KA·A_gut
        dA_c/dt     =  KA·A_gut - CL·C  [ - VMAX·C/(KM + C) if VMAX is given ]

    | parameter | value | unit | source |
    |---|---|---|---|
    | MTT | 2.0 | h | illustrative |
    | KA  | 1.5 | 1/h | illustrative |
    | CL  | 5.0 | L/h | illustrative |
    | V   | 50.0 | L | illustrative |
    """
    m = Model("transit_absorption", description=f"{n_transit} transit compartments + 1-compartment")
    mtt = m.parameter("MTT", MTT, "h", description="mean transit time", source="illustrative", iiv=0.3)
    ka = m.parameter("KA", KA, "1/h", description="absorption rate constant", source="illustrative")
    cl = m.parameter("CL", CL, "L/h", description="clearance", source="illustrative", iiv=0.3)
    v = m.parameter("V", V, "L", description="volume", source="illustrative")
    ktr = m.define("ktr", (n_transit + 1) / mtt, unit="1/h")
    chain = [m.compartment("depot")] + [m.compartment(f"transit{i}") for i in range(1, n_transit + 1)]
    gut = m.compartment("gut")
    central = m.compartment("central", volume=v)
    for a, b in zip(chain, chain[1:] + [gut]):
        m.flow(a, b, ktr * a.amount)
    m.flow(gut, central, ka * gut.amount)
    m.flow(central, None, cl * central.conc)
    if VMAX is not None:
        vmax = m.parameter("VMAX", VMAX, "mg/h", description="saturable elimination capacity", source="illustrative")
        km = m.parameter("KM", KM, "mg/L", description="Michaelis constant", source="illustrative")
        m.flow(central, None, vmax * central.conc / (km + central.conc), label="saturable elimination")
    m.observe("Cp", central.conc, "mg/L", error=Proportional(0.1))
    return m
