"""Docetaxel pharmacokinetics: the Bruno 1996 three-compartment population model and a
whole-body PBPK built from reference physiology.

Bruno R, Vivier N, Vergniol JC, et al. A population pharmacokinetic model for docetaxel
(Taxotere): model building and validation. J Pharmacokinet Biopharm 1996;24(2):153-172.
DOI 10.1007/BF02353487.
"""

from __future__ import annotations

from pbpk.dosing import Infusion, Regimen
from pbpk.residual import Proportional
from pbpk.spec import Model

from . import register

BRUNO_1996 = ("Bruno R, Vivier N, Vergniol JC, et al. J Pharmacokinet Biopharm 1996;24(2):153-172. "
              "DOI 10.1007/BF02353487")
_MYELO = "typical micro-constants as used by Friberg 2002 (myelo R package, radivot/myelo) [C]"
MW_DOCETAXEL = 807.9  # g/mol
VSS_BRUNO = 7.4 + 7.4 * 1.06 / 1.51 + 7.4 * 1.26 / 0.084   # L, from the micro-constants below
CL_H_BRUNO = 5.2 * 7.4                                      # L/h, k10·V1
FU = 0.06


# Bruno 1996 covariate model for CL (L/h): BSA·(22.1 − 3.55·AAG − 0.095·AGE + 0.2245·ALB)·(1 − 0.334·HEP12),
# coefficients from reference_models.md §2.1 [U]; at the reference covariates it gives 21.2 L/h/m²,
# the Taxotere label's 21 L/h/m² [S].
BRUNO_CL_COEFFICIENTS = dict(intercept=22.1, aag=3.55, age=0.095, alb=0.2245, hep=0.334)
BRUNO_REFERENCE = dict(BSA=1.8, AAG=1.3, AGE=55.0, ALB=40.0, HEP12=0.0)


def bruno_clearance_per_m2(aag, age, alb, hep12=0.0):
    """Bruno 1996 docetaxel clearance per m² (L/h/m²) for AAG and ALB in g/L and age in years."""
    c = BRUNO_CL_COEFFICIENTS
    return (c["intercept"] - c["aag"] * aag - c["age"] * age + c["alb"] * alb) * (1 - c["hep"] * hep12)


@register("docetaxel_bruno1996", citation=BRUNO_1996)
def docetaxel_bruno1996(covariates: bool = False) -> Model:
    """Docetaxel three-compartment model (Bruno 1996), typical patient.

    Equations (A1 central, A2 shallow, A3 deep peripheral; C = A1/V1):
        dA1/dt = -(CL + Q2 + Q3)/V1·A1 + Q2/V2·A2 + Q3/V3·A3
        dA2/dt =  Q2/V1·A1 - Q2/V2·A2
        dA3/dt =  Q3/V1·A1 - Q3/V3·A3

    The typical micro-constants V1 = 7.4 L, k10 = 5.2, k12 = 1.06, k21 = 1.51, k13 = 1.26,
    k31 = 0.084 h⁻¹ (reference_models.md §2.1, [C]) are re-expressed as clearances:

    | parameter | value | unit | source |
    |---|---|---|---|
    | CL | 38.48 (= k10·V1) | L/h | Bruno 1996 via myelo [C] |
    | V1 | 7.4 | L | Bruno 1996 via myelo [C] |
    | Q2 | 7.844 (= k12·V1) | L/h | derived |
    | V2 | 5.195 (= Q2/k21) | L | derived |
    | Q3 | 9.324 (= k13·V1) | L/h | derived |
    | V3 | 111.0 (= Q3/k31) | L | derived |

    Vss = 123.6 L; half-lives 0.089, 0.551, 10.3 h (derived, §2.1 [D]).  IIV (ω = 0.25 on CL,
    0.3 on V1) is illustrative.

    With ``covariates=True`` the individual clearance follows Bruno's covariate model,
    normalised to the typical patient (BSA 1.8 m², AAG 1.3 g/L, age 55 y, albumin 40 g/L, no
    hepatic impairment):
        CL_i = CL · BSA·(22.1 − 3.55·AAG − 0.095·AGE + 0.2245·ALB)·(1 − 0.334·HEP12) / (1.8 · 21.24)
    The coefficients are reference_models.md §2.1 values not verified against the paper [U];
    at the reference covariates they give 21.2 L/h/m², the label's 21 L/h/m² [S].
    """
    v1_, k10, k12, k21, k13, k31 = 7.4, 5.2, 1.06, 1.51, 1.26, 0.084
    m = Model("docetaxel_bruno1996", description="Docetaxel 3-compartment popPK (typical patient)",
              citation=BRUNO_1996)
    cl = m.parameter("CL", k10 * v1_, "L/h", description="clearance", source=_MYELO, iiv=0.25)
    if covariates:
        cov = {n: m.covariate(n, u, reference=BRUNO_REFERENCE[n], description=d) for n, u, d in (
            ("BSA", "m^2", "body surface area"), ("AAG", "g/L", "alpha-1-acid glycoprotein"),
            ("AGE", "", "age in years"), ("ALB", "g/L", "albumin"),
            ("HEP12", "", "1 if transaminases > 1.5×ULN with ALP > 2.5×ULN"))}
        g_l = lambda v: m.quantity(v, "L/g")
        per_m2 = (BRUNO_CL_COEFFICIENTS["intercept"] - BRUNO_CL_COEFFICIENTS["aag"] * g_l(1) * cov["AAG"]
                  - BRUNO_CL_COEFFICIENTS["age"] * cov["AGE"] + BRUNO_CL_COEFFICIENTS["alb"] * g_l(1) * cov["ALB"]) * (
            1 - BRUNO_CL_COEFFICIENTS["hep"] * cov["HEP12"])
        ref = BRUNO_REFERENCE
        cl = cl * cov["BSA"] / m.quantity(ref["BSA"], "m^2") * per_m2 / bruno_clearance_per_m2(
            ref["AAG"], ref["AGE"], ref["ALB"], ref["HEP12"])
    v1 = m.parameter("V1", v1_, "L", description="central volume", source=_MYELO, iiv=0.3)
    q2 = m.parameter("Q2", k12 * v1_, "L/h", description="shallow intercompartmental clearance", source=_MYELO)
    v2 = m.parameter("V2", k12 * v1_ / k21, "L", description="shallow peripheral volume", source=_MYELO)
    q3 = m.parameter("Q3", k13 * v1_, "L/h", description="deep intercompartmental clearance", source=_MYELO)
    v3 = m.parameter("V3", k13 * v1_ / k31, "L", description="deep peripheral volume", source=_MYELO)
    c = m.compartment("central", volume=v1)
    p2 = m.compartment("shallow", volume=v2)
    p3 = m.compartment("deep", volume=v3)
    m.flow(c, None, cl * c.conc)
    m.flow(c, p2, q2 * c.conc)
    m.flow(p2, c, q2 * p2.conc)
    m.flow(c, p3, q3 * c.conc)
    m.flow(p3, c, q3 * p3.conc)
    m.define("C_molar", c.conc / m.quantity(MW_DOCETAXEL, "g/mol"), "umol/L")
    m.observe("Cp", c.conc, "mg/L", error=Proportional(0.2))
    return m


def docetaxel_regimen(bsa_m2: float, mg_m2: float = 75.0, cycles: int = 6, interval_days: float = 21.0,
                      infusion_h: float = 1.0) -> Regimen:
    """Docetaxel 60–100 mg/m² as a 1-h infusion every 3 weeks (label), in mg and hours."""
    return Regimen.repeat(Infusion(mg_m2 * bsa_m2, "central", duration=infusion_h), every=interval_days * 24.0,
                          count=cycles)


def docetaxel_label_protocol(start_mg_m2: float = 100.0, cycles: int = 6):
    """The Taxotere label's dose modification as a ``pbpk.control.Protocol``: no dose while
    ANC < 1.5 × 10⁹/L (re-assessed a week later); one level down (100 → 75 → 60 mg/m²) after
    ANC < 0.5 × 10⁹/L for more than 7 days, stopping below 60.  Needs an ``ANC`` observation (a
    PK model composed with ``friberg2002``)."""
    from pbpk.control import HoldBelow, Protocol, ReduceAfter

    levels = tuple(v for v in (100.0, 75.0, 60.0) if v <= start_mg_m2)
    return Protocol(levels=levels, dose_unit="mg/m^2", cycle_days=21.0, cycles=cycles, into="central",
                    infusion_hours=1.0, rules=(HoldBelow("ANC", 1.5), ReduceAfter("ANC", 0.5, longer_than=7.0)))


@register("docetaxel_pbpk", citation="Physiology: ICRP Publication 89 (2002); Kp: Rodgers & Rowland, "
                                     "J Pharm Sci 2006;95:1238; clearance: " + BRUNO_1996)
def docetaxel_pbpk(sex: str = "male") -> Model:
    """Whole-body perfusion-limited PBPK for docetaxel (14 tissues + arterial and venous blood).

    Structure and equations: ``pbpk.physiology.whole_body`` (venous → lung → arterial →
    tissues → venous, portal organs draining into the liver; tissue outflow at C·BP/Kp).

    | quantity | value | unit | source |
    |---|---|---|---|
    | organ volumes, blood flows | ICRP 89 reference adult | L, L/h | pbpk.physiology.human |
    | Kp (tissue:plasma) | Rodgers & Rowland prediction × s | – | neutral, logP 2.4, fu 0.06 |
    | s | chosen so that Vss = 123.6 L | – | Bruno 1996 Vss (k-constants above) |
    | B:P | 1.0 | – | assumption (docetaxel distributes little into red cells) [U] |
    | CL_hepatic | CLint,u giving CL_H = 38.5 L/h | L/h | Bruno 1996 total CL (k10·V1) as hepatic blood clearance, well-stirred liver |
    | CL_renal | 0.0 | L/h | renal excretion < 5 % of dose (label) [U] — omitted |

    Drug properties (logP 2.4, fu 0.06) are literature-typical values [U].  The predicted Kp
    give too small a Vss for docetaxel, so they are scaled by one factor to Bruno's Vss (a
    common PBPK calibration step); this is a demonstration model, not a validated one.
    """
    from pbpk.physiology import human, kp_rodgers_rowland, whole_body

    phys = human(sex)
    kp = kp_rodgers_rowland(logp=2.4, pka=None, fu=FU, bp=1.0, kind="neutral")
    tissue = sum(phys.organs[t].volume * kp[t] for t in phys.organs)
    scale = (VSS_BRUNO - phys.arterial_volume - phys.venous_volume) / tissue
    kp = {t: v * scale for t, v in kp.items()}
    # IIV sits on the intrinsic clearance, so every virtual patient's hepatic clearance stays
    # below liver blood flow (well-stirred); the typical patient clears CL_H = 38.5 L/h.
    q_h = phys.hepatic_blood_flow
    clint_u = q_h * CL_H_BRUNO / (q_h - CL_H_BRUNO) / FU
    return whole_body(phys, kp, name="docetaxel_pbpk", cl_hepatic=clint_u, bp=1.0, fu=FU, hepatic="intrinsic",
                      drug="docetaxel", iiv={"CL_hepatic": 0.25, "Kp_muscle": 0.2, "Kp_adipose": 0.2})
