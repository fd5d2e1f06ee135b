"""Paclitaxel nonlinear three-compartment population PK (Henningsson 2003 structure, Joerger
2006 covariates on the maximal elimination rate) and the weekly and three-weekly regimens.

Henningsson A, Sparreboom A, Sandström M, et al. Population pharmacokinetic modelling of
unbound and total plasma concentrations of paclitaxel in cancer patients. Eur J Cancer
2003;39:1105-1114.  Joerger M, Huitema ADR, van den Bongard DHJG, et al. Quantitative effect of
gender, age, liver function, and body size on the population pharmacokinetics of paclitaxel in
patients with solid tumors. Clin Cancer Res 2006;12:2150-2157.
"""

from __future__ import annotations

from pbpk.dosing import Infusion, Regimen
from pbpk.errors import DosingError
from pbpk.residual import Proportional
from pbpk.spec import Model

from . import register

HENNINGSSON_2003 = ("Henningsson A et al. Eur J Cancer 2003;39:1105-1114 (structure); Joerger M et al. Clin Cancer Res "
                    "2006;12:2150-2157 (covariates on VM_EL)")
_U = "reference_models.md §2.2 typical value, not verified against the paper [U]"
_JOERGER = "Joerger 2006 via Joerger 2012 AAPS J review Table I (secondary) [S]"
MW_PACLITAXEL = 853.9   # g/mol


@register("paclitaxel_henningsson2003", citation=HENNINGSSON_2003)
def paclitaxel_henningsson2003() -> Model:
    """Paclitaxel: saturable elimination and saturable distribution (total plasma paclitaxel).

    Equations (amounts in mg, C1 = A1/V1; Michaelis–Menten terms in µmol, converted with MW):
        elim  = VM_EL·(BSA/1.8)^0.84·1.2^MALE · C1/(KM_EL + C1)
        distr = VM_TR·C1/(KM_TR + C1)
        dA1/dt = −elim − distr + k21·A2 − Q·C1 + Q·A3/V3
        dA2/dt =  distr − k21·A2
        dA3/dt =  Q·C1 − Q·A3/V3
    Exposure metric of the paclitaxel literature: time above 0.05 µmol/L (observation
    ``C_molar`` and the define of the same name).

    | parameter | value | unit | source |
    |---|---|---|---|
    | VM_EL | 35.9 | µmol/h | Henningsson 2003 [U] |
    | KM_EL | 0.667 | µmol/L | idem [U] |
    | VM_TR | 175 | µmol/h | idem [U] |
    | KM_TR | 1.43 | µmol/L | idem [U] |
    | k21 | 1.12 | 1/h | idem [U] |
    | Q | 15.8 | L/h | idem [U] (the value may belong to another model, see validation notes) |
    | V1 | 10.8 | L | idem [U] |
    | V3 | 301 | L | idem [U] |
    | BSA exponent on VM_EL | 0.84 | – | Joerger 2006 (secondary) [S] |
    | male factor on VM_EL | 1.2 | – | Joerger 2006 (secondary) [S]; the age effect is omitted (sign unclear in the secondary source) |
    | IIV ω(VM_EL) | 0.25 | – | illustrative |
    | residual | proportional 0.2 | – | illustrative |
    | MW | 853.9 | g/mol | DDMODEL00000186 [C] |
    """
    m = Model("paclitaxel_henningsson2003", description="Paclitaxel nonlinear 3-compartment popPK",
              citation=HENNINGSSON_2003)
    bsa = m.covariate("BSA", "m^2", reference=1.8, description="body surface area")
    male = m.covariate("MALE", "", reference=0.0, description="1 for male, 0 for female")
    mw = m.quantity(MW_PACLITAXEL, "g/mol")
    vm_el = m.parameter("VM_EL", 35.9, "umol/h", description="maximal elimination rate", source=_U, iiv=0.25)
    km_el = m.parameter("KM_EL", 0.667, "umol/L", description="elimination half-saturation", source=_U)
    vm_tr = m.parameter("VM_TR", 175.0, "umol/h", description="maximal distribution rate", source=_U)
    km_tr = m.parameter("KM_TR", 1.43, "umol/L", description="distribution half-saturation", source=_U)
    k21 = m.parameter("k21", 1.12, "1/h", description="return from the saturable compartment", source=_U)
    q = m.parameter("Q", 15.8, "L/h", description="intercompartmental clearance", source=_U)
    v1 = m.parameter("V1", 10.8, "L", description="central volume", source=_U)
    v3 = m.parameter("V3", 301.0, "L", description="linear peripheral volume", source=_U)
    bsa_exp = m.parameter("BSA_VMEL", 0.84, "", description="BSA exponent on VM_EL", source=_JOERGER)
    sex_fac = m.parameter("MALE_VMEL", 1.2, "", description="male factor on VM_EL", source=_JOERGER)
    c = m.compartment("central", volume=v1)
    sat = m.compartment("saturable", description="saturably distributed paclitaxel")
    per = m.compartment("peripheral", volume=v3)
    c_molar = m.define("C_molar", c.conc / mw, "umol/L")
    vmax = vm_el * (bsa / m.quantity(1.8, "m^2")) ** bsa_exp * sex_fac ** male
    m.flow(c, None, vmax * c_molar / (km_el + c_molar) * mw, label="saturable elimination")
    m.flow(c, sat, vm_tr * c_molar / (km_tr + c_molar) * mw, label="saturable distribution")
    m.flow(sat, c, k21 * sat.amount)
    m.flow(c, per, q * c.conc)
    m.flow(per, c, q * per.conc)
    m.observe("Cp", c.conc, "mg/L", error=Proportional(0.2))
    return m


def paclitaxel_regimen(bsa_m2: float, mg_m2: float = 80.0, schedule: str = "weekly", cycles: int = 12) -> Regimen:
    """Paclitaxel 80 mg/m² weekly (1-h infusion) or 175 mg/m² every 3 weeks (3-h infusion), in mg
    and hours; ``cycles`` counts administrations."""
    if schedule not in ("weekly", "q3w"):
        raise DosingError(f"paclitaxel_regimen: schedule={schedule!r} must be 'weekly' or 'q3w'.")
    every, hours = (7 * 24.0, 1.0) if schedule == "weekly" else (21 * 24.0, 3.0)
    return Regimen.repeat(Infusion(mg_m2 * bsa_m2, "central", duration=hours), every=every, count=cycles)
