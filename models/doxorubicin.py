"""Doxorubicin three-compartment population PK (Kontny 2013 as reproduced by Mody 2023), with
the cumulative dose per m² tracked for the cardiotoxicity limit, and the AC regimen.

Kontny NE, Würthwein G, Joachim B, et al. Population pharmacokinetics of doxorubicin:
establishment of a NONMEM model for adults and children older than 3 years. Cancer Chemother
Pharmacol 2013;71:749-763.  Values as tabulated in Mody H, Vaidya TR, Ait-Oudhia S. Sci Rep
2023;13:3100 (DOI 10.1038/s41598-023-29964-4), Table 2.
"""

from __future__ import annotations

from pbpk.dosing import Infusion, Regimen
from pbpk.residual import Proportional
from pbpk.spec import Model

from . import register

KONTNY_2013 = ("Kontny NE, Würthwein G, Joachim B, et al. Cancer Chemother Pharmacol 2013;71:749-763; values from "
               "Mody H et al. Sci Rep 2023;13:3100 Table 2 (DOI 10.1038/s41598-023-29964-4)")
_MODY = "Kontny 2013 via Mody 2023 Table 2, 1.8 m² subject (nlmixr2lib encoding) [C]"
_PEREZ = "Perez-Blanco 2016 (volumes fixed from Kontny), nlmixr2lib PerezBlanco_2016_doxorubicin.R [C]"
MW_DOXORUBICIN = 543.52   # g/mol, free base
CUMULATIVE_LIMIT_MG_M2 = 450.0   # lower end of the 450–550 mg/m² cardiotoxicity range [U]


@register("doxorubicin_kontny2013", citation=KONTNY_2013)
def doxorubicin_kontny2013() -> Model:
    """Doxorubicin 3-compartment popPK with body-surface scaling and cumulative exposure.

    Equations (A1 central, A2 deep, A3 shallow; every clearance and volume scales with BSA/1.8,
    the linear BSA scaling of the Kontny/Völler family):
        dA1/dt = −(CL + Q2 + Q3)/V1·A1 + Q2/V2·A2 + Q3/V3·A3
        dA2/dt =  Q2/V1·A1 − Q2/V2·A2
        dA3/dt =  Q3/V1·A1 − Q3/V3·A3
        elimination flows into the compartment ``cleared`` (kept, not discarded), so the
        cumulative administered dose is A1 + A2 + A3 + cleared, reported per m² as CUMDOSE.

    | parameter | value (1.8 m²) | unit | source |
    |---|---|---|---|
    | CL | 53.3 | L/h | Kontny 2013 via Mody 2023 [C] |
    | V1 | 17.7 | L | idem |
    | Q2 | 58.7 | L/h | idem |
    | V2 | 1830 | L | idem |
    | Q3 | 21.8 | L/h | idem |
    | V3 | 71.6 | L | idem |
    | IIV ω(CL) | 0.229 | – | Perez-Blanco 2016 (CV 22.9 %) [C] |
    | residual | proportional 0.371 | – | Perez-Blanco 2016 [C] |
    | MW | 543.52 | g/mol | free base |

    Derived: half-lives 5.5 min, 2.7 h, 46 h; Vss 1919 L (reference_models §2.3 [D]).
    """
    m = Model("doxorubicin_kontny2013", description="Doxorubicin 3-compartment popPK", citation=KONTNY_2013)
    bsa = m.covariate("BSA", "m^2", reference=1.8, description="body surface area")
    scale = bsa / m.quantity(1.8, "m^2")
    cl = m.parameter("CL", 53.3, "L/h", description="clearance at 1.8 m²", source=_MODY, iiv=0.229)
    v1 = m.parameter("V1", 17.7, "L", description="central volume at 1.8 m²", source=_MODY)
    q2 = m.parameter("Q2", 58.7, "L/h", description="deep intercompartmental clearance", source=_MODY)
    v2 = m.parameter("V2", 1830.0, "L", description="deep peripheral volume", source=_MODY)
    q3 = m.parameter("Q3", 21.8, "L/h", description="shallow intercompartmental clearance", source=_MODY)
    v3 = m.parameter("V3", 71.6, "L", description="shallow peripheral volume", source=_MODY)
    c = m.compartment("central", volume=v1 * scale)
    deep = m.compartment("deep", volume=v2 * scale)
    shallow = m.compartment("shallow", volume=v3 * scale)
    cleared = m.compartment("cleared", description="eliminated doxorubicin (kept for the cumulative dose)")
    m.flow(c, cleared, cl * scale * c.conc)
    for p, q in ((deep, q2), (shallow, q3)):
        m.flow(c, p, q * scale * c.conc)
        m.flow(p, c, q * scale * p.conc)
    m.define("C_molar", c.conc / m.quantity(MW_DOXORUBICIN, "g/mol"), "umol/L")
    m.observe("Cp", c.conc, "mg/L", error=Proportional(0.371))
    m.observe("CUMDOSE", (c.amount + deep.amount + shallow.amount + cleared.amount) / bsa, "mg/m^2")
    return m


def ac_regimen(bsa_m2: float, doxorubicin_mg_m2: float = 60.0, cycles: int = 4, interval_days: float = 21.0,
               infusion_h: float = 0.25) -> Regimen:
    """Doxorubicin part of AC (doxorubicin 60 mg/m² + cyclophosphamide 600 mg/m² q3w × 4) as
    15-min infusions into ``central``, in mg and hours (cyclophosphamide is not modelled)."""
    dose = Infusion(doxorubicin_mg_m2 * bsa_m2, "central", duration=infusion_h)
    return Regimen.repeat(dose, every=interval_days * 24.0, count=cycles)


def ac_protocol(cycles: int = 4, prior_mg_m2: float = 0.0, cap_mg_m2: float = CUMULATIVE_LIMIT_MG_M2):
    """Doxorubicin 60 mg/m² q3w as a ``pbpk.control.Protocol`` that never lets the lifetime
    cumulative dose (``prior_mg_m2`` already received plus this course) exceed ``cap_mg_m2``."""
    from pbpk.control import CumulativeCap, Protocol

    return Protocol(levels=(60.0,), dose_unit="mg/m^2", cycle_days=21.0, cycles=cycles, into="central",
                    infusion_hours=0.25, rules=(CumulativeCap(cap_mg_m2, prior=prior_mg_m2),))
