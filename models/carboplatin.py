"""Carboplatin: Calvert AUC dosing from GFR, the Cockcroft–Gault and Chatelut clearance
estimates, and a one-compartment PK model whose clearance is Calvert's GFR + 25 mL/min.

Calvert AH, Newell DR, Gumbrell LA, et al. Carboplatin dosage: prospective evaluation of a
simple formula based on renal function. J Clin Oncol 1989;7:1748-1756.
"""

from __future__ import annotations

import numpy as np

from pbpk.dosing import Infusion, Regimen
from pbpk.errors import DosingError
from pbpk.residual import Proportional
from pbpk.spec import Model

from . import register

CALVERT_1989 = "Calvert AH et al. J Clin Oncol 1989;7:1748-1756"
GFR_CAP = 125.0   # mL/min, the usual cap on the GFR entered in Calvert's formula


def calvert_dose(target_auc, gfr_ml_min, cap: float | None = GFR_CAP):
    """Carboplatin dose (mg) = target AUC (mg·mL⁻¹·min) × (GFR + 25) (mL/min); GFR capped at
    ``cap`` (125 mL/min by convention; None for no cap).  Calvert's worked example: AUC 5 with
    GFR 90 gives 575 mg."""
    auc, gfr = np.asarray(target_auc, dtype=float), np.asarray(gfr_ml_min, dtype=float)
    if np.any(auc <= 0) or np.any(gfr <= 0):
        raise DosingError(f"calvert_dose: target AUC ({target_auc}) and GFR ({gfr_ml_min}) must be positive.")
    if cap is not None:
        gfr = np.minimum(gfr, cap)
    return auc * (gfr + 25.0)


def cockcroft_gault(age_years, weight_kg, scr_mg_dl, female):
    """Creatinine clearance (mL/min) = (140 − age)·weight·(0.85 if female)/(72·SCr)."""
    return (140.0 - np.asarray(age_years)) * np.asarray(weight_kg) * np.where(female, 0.85, 1.0) / (
        72.0 * np.asarray(scr_mg_dl))


def chatelut_clearance(weight_kg, age_years, scr_umol_l, female):
    """Chatelut 1995 carboplatin clearance (mL/min) = 0.134·BW + 218·BW·(1 − 0.00457·age)·
    (1 − 0.314·sex)/SCr (µmol/L), sex = 1 for female.  Coefficients from reference_models.md
    §2.4, not verified against the paper [U]; known to over-predict with enzymatic creatinine."""
    bw = np.asarray(weight_kg, dtype=float)
    return 0.134 * bw + 218.0 * bw * (1 - 0.00457 * np.asarray(age_years)) * (
        1 - 0.314 * np.asarray(female, dtype=float)) / np.asarray(scr_umol_l, dtype=float)


@register("carboplatin_calvert", citation=CALVERT_1989)
def carboplatin_calvert() -> Model:
    """Carboplatin one-compartment model with Calvert's clearance.

    Equations (A central amount, C = A/V):
        CL = CL_scale·(GFR + 25 mL/min)
        dA/dt = −CL·C
    So a dose of AUC·(GFR + 25) gives exactly the target AUC (mg·min/mL) in the typical patient.

    | parameter | value | unit | source |
    |---|---|---|---|
    | CL_scale | 1.0 | – | Calvert 1989: total clearance = GFR + 25 mL/min [S] |
    | V | 16.0 | L | illustrative [U] (AUC does not depend on V) |
    | IIV ω(CL_scale) | 0.15 | – | illustrative |
    | residual | proportional 0.15 | – | illustrative |
    """
    m = Model("carboplatin_calvert", description="Carboplatin 1-compartment, Calvert clearance", citation=CALVERT_1989)
    gfr = m.covariate("GFR", "mL/min", reference=90.0, description="glomerular filtration rate")
    scale = m.parameter("CL_scale", 1.0, "", description="clearance relative to GFR + 25", source=CALVERT_1989 + " [S]",
                        iiv=0.15)
    v = m.parameter("V", 16.0, "L", description="volume of distribution", source="illustrative [U]")
    c = m.compartment("central", volume=v)
    m.flow(c, None, scale * (gfr + m.quantity(25.0, "mL/min")) * c.conc)
    m.observe("Cp", c.conc, "mg/L", error=Proportional(0.15))
    return m


def carboplatin_regimen(target_auc: float, gfr_ml_min: float, cycles: int = 4, interval_days: float = 21.0,
                        infusion_h: float = 0.5) -> Regimen:
    """Calvert-dosed carboplatin (AUC 5–6 q3w, or AUC 1.5 weekly with interval_days=7), mg and hours."""
    dose = float(calvert_dose(target_auc, gfr_ml_min))
    return Regimen.repeat(Infusion(dose, "central", duration=infusion_h), every=interval_days * 24.0, count=cycles)
