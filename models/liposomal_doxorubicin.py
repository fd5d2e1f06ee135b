"""Pegylated liposomal doxorubicin (PLD; Doxil/Caelyx) in humans: encapsulated drug with long
circulation, release to free doxorubicin (the chemotherapy case's Kontny 2013 model), EPR
deposition in a tumour, skin deposition (the driver of hand–foot syndrome), and the regimens.

Encapsulated PK: Doxil US label, clinical pharmacology Table 8 (AIDS-KS patients, 10 and
20 mg/m²: CL 0.056/0.041 L/h/m², Vss 2.83/2.72 L/m², t½ 4.7–5.2 h and 52.3–55.0 h) and the
Caelyx SmPC population volume 1.93 L/m² (via BC Cancer Drug Manual).  Free drug: Kontny 2013
(``doxorubicin_kontny2013``).  Release rate: Harashima H et al. J Control Release 1999;61:93
(optimum ≈ 0.06 h⁻¹ for long-circulating liposomes).  Tumour and skin deposition rates are not
published for humans: they are assumptions ([U] in the table), and the skin constraint below is
defined relative to a regimen so that it does not depend on them.
"""

from __future__ import annotations

import sympy as sp

from pbpk.dosing import Infusion, Regimen
from pbpk.errors import ModelError
from pbpk.residual import Proportional
from pbpk.spec import Model, compose, renamed

from . import register
from .doxorubicin import CUMULATIVE_LIMIT_MG_M2, KONTNY_2013, doxorubicin_kontny2013

__all__ = ["pld_human", "pld_regimen", "pld_constraints", "SKIN_REFERENCE_REGIMEN", "CUMULATIVE_LIMIT_MG_M2"]

LABEL = "Doxil US prescribing information, clinical pharmacology Table 8 (10 and 20 mg/m²) [S]"
_SMPC = "Caelyx SmPC population PK, via BC Cancer Drug Manual monograph (1.93 L/m², range 0.96–3.85) [S]"
_DERIVED = "derived: label Vss 2.78 L/m² (mean of 2.83, 2.72) − V_LIPO [D]"
_ALPHA = "derived: first-phase t½ ≈ 5 h (label λ1 4.7–5.2 h) with V_LIPO, V_LIPO2 [D]"
_HARASHIMA = "Harashima 1999 J Control Release 61:93, optimal release of long-circulating liposomes [S]; [U] for Doxil"
_ASSUMED = "ASSUMPTION [U]: no human value published; see module docstring"
CITATION = ("Doxil US label (Table 8); Caelyx SmPC; Harashima H et al. J Control Release 1999;61:93; "
            "free drug: " + KONTNY_2013)
# The skin constraint: the skin exposure of 40 mg/m² every 4 weeks, a schedule without grade-3
# hand–foot syndrome in Markman M et al. Gynecol Oncol 2000;78:369 (50 mg/m² q4w: ~20 % grade 3,
# Lorusso D et al. Ann Oncol 2007;18:1159).
SKIN_REFERENCE_REGIMEN = (40.0, 28.0)   # mg/m², days


@register("pld_human", citation=CITATION)
def pld_human() -> Model:
    """Human PLD: encapsulated two-compartment PK with release into the free-drug model.

    Equations (L: liposome-encapsulated doxorubicin; every volume and clearance × BSA):
        dL1/dt  = −(CL_MPS + k_leak·V1 + PS_T·TV + PS_S·V_skin)·L1/V1 − Q_L (L1/V1 − L2/V2)
        dL2/dt  =  Q_L (L1/V1 − L2/V2)
        dL_MPS/dt = CL_MPS·L1/V1 − k_rel·L_MPS        (liposomes taken up by macrophages)
        dL_T/dt = PS_T·TV·L1/V1 − k_rel·L_T           (EPR deposition in the tumour)
        dL_S/dt = PS_S·V_skin·L1/V1 − k_rel·L_S       (deposition in skin)
        released drug enters the Kontny 2013 free-doxorubicin model: k_leak·L1 and k_rel·L_MPS
        into its central compartment; k_rel·L_T and k_rel·L_S into the tumour and skin free pools
        dF_T/dt = Q_T·TV (C_free − F_T/(TV·Kp_T)) + k_rel·L_T   (likewise F_S in skin)
        C_total = L1/V1 + C_free (plasma total doxorubicin, what the label's PK measured)
        tumour and skin totals: (L_T + F_T)/TV, (L_S + F_S)/V_skin, mg/L = µg/g.
        C_free (free doxorubicin in plasma, C_molar in µmol/L) is the marrow exposure: link it to a
        myelosuppression model's input with ``pbpk.compose``.

    | parameter | value | unit | source |
    |---|---|---|---|
    | CL_LIPO | 0.041 | L/h/m² | Doxil label Table 8, 20 mg/m² [S] |
    | V_LIPO | 1.93 | L/m² | Caelyx SmPC via BC Cancer [S] |
    | V_LIPO2 | 0.85 | L/m² | label Vss 2.78 − V_LIPO [D] |
    | Q_LIPO | 0.069 | L/h/m² | first-phase t½ ≈ 5 h [D] |
    | K_LEAK | 0.001 | 1/h | ASSUMPTION [U]; bounded by the label's ≥ 90 % encapsulated |
    | K_REL | 0.06 | 1/h | Harashima 1999 optimum [S]; [U] for Doxil |
    | PS_T | 0.004 | L/h per L tumour | ASSUMPTION [U] |
    | PS_S | 0.001 | L/h per L skin | ASSUMPTION [U] |
    | Q_T, KP_T | 12, 20 | L/h per L, – | ASSUMPTION [U] (tumour perfusion 0.2 mL/min/g) |
    | Q_S, KP_S | 6, 10 | L/h per L, – | ASSUMPTION [U] (skin ≈ 5 % of cardiac output) |
    | V_SKIN | 1.85 | L/m² | ICRP 89 adult skin ≈ 3.3 kg per 1.8 m² [ASSUMPTION] |
    | free doxorubicin | Kontny 2013 | | ``doxorubicin_kontny2013`` [C] |

    CL_MPS = CL_LIPO − K_LEAK·V_LIPO − PS_T·TV/BSA − PS_S·V_SKIN, so the total clearance of
    encapsulated drug stays the label's value whatever the deposition assumptions.  Covariates:
    BSA (m², reference 1.8), TV tumour volume (L, reference 0.05).
    """
    lip = Model("pld_liposomal", description="encapsulated doxorubicin", citation=CITATION)
    bsa = lip.covariate("BSA", "m^2", reference=1.8, description="body surface area")
    tv = lip.covariate("TV", "L", reference=0.05, description="tumour volume")
    cl = lip.parameter("CL_LIPO", 0.041, "L/h/m^2", description="total clearance of encapsulated drug per m²",
                       source=LABEL, iiv=0.3) * bsa
    v1 = lip.parameter("V_LIPO", 1.93, "L/m^2", description="central volume per m²", source=_SMPC) * bsa
    v2 = lip.parameter("V_LIPO2", 0.85, "L/m^2", description="peripheral volume per m²", source=_DERIVED) * bsa
    q = lip.parameter("Q_LIPO", 0.069, "L/h/m^2", description="intercompartmental clearance per m²", source=_ALPHA) * bsa
    k_leak = lip.parameter("K_LEAK", 0.001, "1/h", description="release in the circulation", source=_ASSUMED)
    k_rel = lip.parameter("K_REL", 0.06, "1/h", description="release from deposited liposomes", source=_HARASHIMA)
    ps_t = lip.parameter("PS_T", 0.004, "1/h", description="EPR extravasation per L of tumour", source=_ASSUMED)
    ps_s = lip.parameter("PS_S", 0.001, "1/h", description="extravasation per L of skin", source=_ASSUMED)
    v_skin = lip.parameter("V_SKIN", 1.85, "L/m^2", description="skin volume per m²", source=_ASSUMED) * bsa
    l1 = lip.compartment("liposomal", volume=v1, description="encapsulated drug in plasma (dose here)")
    l2 = lip.compartment("liposomal_tissue", volume=v2)
    mps = lip.compartment("liposomal_mps", description="encapsulated drug taken up by macrophages")
    l_t = lip.compartment("liposomal_tumour", description="encapsulated drug deposited in the tumour")
    l_s = lip.compartment("liposomal_skin", description="encapsulated drug deposited in skin")
    cl_mps = cl - k_leak * v1 - ps_t * tv - ps_s * v_skin
    lip.flow(l1, l2, q * l1.conc)
    lip.flow(l2, l1, q * l2.conc)
    lip.flow(l1, mps, cl_mps * l1.conc)
    lip.flow(l1, l_t, ps_t * tv * l1.conc)
    lip.flow(l1, l_s, ps_s * v_skin * l1.conc)

    free = renamed(doxorubicin_kontny2013(), {"Cp": "C_free", "CUMDOSE": "RELEASED"})
    m = compose(lip, free, name="pld_human", description="pegylated liposomal doxorubicin (human)",
                citation=CITATION)
    central = m.compartments["central"]
    f_t = m.compartment("free_tumour", volume=tv, description="released doxorubicin in the tumour")
    f_s = m.compartment("free_skin", volume=v_skin, description="released doxorubicin in skin")
    m.flow(l1, central, k_leak * l1.amount)
    m.flow(mps, central, k_rel * mps.amount)
    m.flow(l_t, f_t, k_rel * l_t.amount)
    m.flow(l_s, f_s, k_rel * l_s.amount)
    for pool, vol, qname, kpname, qv, kpv in ((f_t, tv, "Q_T", "KP_T", 12.0, 20.0),
                                             (f_s, v_skin, "Q_S", "KP_S", 6.0, 10.0)):
        perfusion = m.parameter(qname, qv, "1/h", description=f"blood flow per L ({pool.name})", source=_ASSUMED)
        kp = m.parameter(kpname, kpv, "", description=f"doxorubicin tissue:plasma partition ({pool.name})",
                         source=_ASSUMED)
        m.flow(central, pool, perfusion * vol * central.conc)
        m.flow(pool, central, perfusion * vol * pool.conc / kp)
    c_total = l1.conc + central.conc
    m.observe("C_total", c_total, "mg/L", error=Proportional(0.2))
    m.observe("C_encapsulated", l1.conc, "mg/L")
    m.observe("C_tumour", (l_t.amount + f_t.amount) / tv, "mg/L")
    m.observe("C_skin", (l_s.amount + f_s.amount) / v_skin, "mg/L")
    m.observe("FREE_FRACTION", central.conc / sp.Max(c_total, m.quantity(1e-30, "mg/L")), "%")
    everything = sum(c.amount for c in m.compartments.values())
    m.observe("CUMDOSE", everything / bsa, "mg/m^2")
    return m


def pld_regimen(bsa_m2: float, mg_m2: float = 50.0, *, every_days: float = 28.0, cycles: int = 4,
                infusion_h: float = 1.0) -> Regimen:
    """PLD as 1-h infusions into ``liposomal`` (mg, h): the label's 50 mg/m² every 4 weeks by
    default; 40 mg/m² q4w is the common HFS-sparing schedule, 20 mg/m² q3w the Kaposi one."""
    for name, v in (("bsa_m2", bsa_m2), ("mg_m2", mg_m2), ("every_days", every_days), ("infusion_h", infusion_h)):
        if not (isinstance(v, (int, float)) and v > 0):
            raise ModelError(f"pld_regimen: {name}={v!r} must be a positive number.")
    if not (isinstance(cycles, int) and cycles >= 1):
        raise ModelError(f"pld_regimen: cycles={cycles!r} must be a positive integer.")
    return Regimen.repeat(Infusion(mg_m2 * bsa_m2, "liposomal", duration=infusion_h), every=every_days * 24.0,
                          count=cycles)


def pld_constraints(model=None, *, bsa_m2: float = 1.8, cycles: int = 6, prior_mg_m2: float = 0.0):
    """The PLD constraints as data, for a course of ``cycles`` × 4 weeks (evaluate them on a
    simulation over the same course):

    * skin, peak and time-averaged: neither may exceed its value under 40 mg/m² every 4 weeks
      (``SKIN_REFERENCE_REGIMEN``, tolerated without grade-3 hand–foot syndrome).  The average
      follows dose intensity, which predicts hand–foot syndrome across schedules (shorter
      intervals are worse: Lyass O et al. Cancer 2000;89:1037); the peak guards large doses.
    * heart: the cumulative anthracycline dose (``prior_mg_m2`` already received plus this
      course) may not exceed ``CUMULATIVE_LIMIT_MG_M2``.

    Returns (skin_peak, skin_mean, heart) as ``pbpk.control.ExposureLimit``.
    """
    import numpy as np

    from pbpk.control import ExposureLimit

    model = model or pld_human().compile()
    mg_m2, days = SKIN_REFERENCE_REGIMEN
    horizon_h = cycles * days * 24.0
    reference = pld_regimen(bsa_m2, mg_m2, every_days=days, cycles=cycles)
    grid = np.linspace(0.0, horizon_h, int(horizon_h / 6) + 1)
    options = dict(covariates={"BSA": bsa_m2}, rtol=1e-8, atol=1e-10)
    skin_peak, skin_mean = (ExposureLimit("C_skin", 1.0, stat, description=f"{what} skin doxorubicin ≤ that of "
                                          f"{mg_m2:g} mg/m² every {days:g} days").relative_to(model, reference, grid,
                                                                                               **options)
                            for stat, what in (("max", "peak"), ("mean", "time-averaged")))
    heart = ExposureLimit("CUMDOSE", CUMULATIVE_LIMIT_MG_M2 - prior_mg_m2, "last",
                          description="cumulative anthracycline dose (mg/m²)")
    return skin_peak, skin_mean, heart
