"""Doxorubicin, carboplatin and paclitaxel PK against published numbers.

- Doxorubicin (Kontny 2013 via Mody 2023 [C]): half-lives and Vss derived from the parameters
  (reference_models.md §2.3 [D]), and free-doxorubicin exposure in patients (Gabizon 1994 via
  Drummond, Pharmacol Rev Table 4 [S]: AUC 1.0 mg·h/L at 25 mg/m², 3.5 at 50 mg/m², from a small
  study; the model's is compared within a factor of 2).
- Carboplatin (Calvert 1989 [S]): the worked example (AUC 5, GFR 90 → 575 mg) and the simulated
  AUC of a Calvert dose.
- Paclitaxel (Henningsson 2003 structure, values [U]): time above 0.05 µmol/L after 175 mg/m² over
  3 h, reported beside Joerger's dosing target of 26–31 h [S, abstract] (a target for dose
  individualisation, not a typical value, so it is shown, not checked).
"""

from __future__ import annotations

import numpy as np

KONTNY = "Kontny 2013 via Mody 2023 Table 2 [C]; derived [D] (reference_models.md §2.3)"
GABIZON = "Gabizon 1994 via Drummond et al. Pharmacol Rev, Table 4 [S]"


def main(quick: bool = False) -> None:
    import pbpk
    from pbpk.models import carboplatin, doxorubicin, paclitaxel
    from validation._record import Check, write_results

    checks, table = [], []
    dox = pbpk.models.load("doxorubicin_kontny2013").compile()
    a, _ = dox.linear_system(dox.theta, dox.covariate_reference)
    keep = [dox.state_names.index(s) for s in ("central", "deep", "shallow")]
    rates = np.sort(-np.linalg.eigvals(np.asarray(a)[np.ix_(keep, keep)]).real)[::-1]
    half = np.log(2) / rates
    p = dict(zip(dox.parameter_names, np.asarray(dox.theta)))
    vss = p["V1"] + p["V2"] + p["V3"]
    checks += [Check.within("chemo.doxorubicin.terminal_half_life", "terminal half-life (1.8 m²)", KONTNY,
                            round(float(half[2]), 2), "h", 46 * 0.98, 46 * 1.02),
               Check.within("chemo.doxorubicin.vss", "steady-state volume (1.8 m²)", KONTNY, round(vss, 1), "L",
                            1919 * 0.999, 1919 * 1.001)]
    t = np.linspace(0.0, 21 * 24.0, 20161)
    for mg_m2, published in ((25.0, 1.0), (50.0, 3.5)):
        sol = dox.simulate(doxorubicin.ac_regimen(1.8, mg_m2, cycles=1), t)
        auc = float(np.trapezoid(np.asarray(sol["Cp"]), t))
        checks.append(Check.within(f"chemo.doxorubicin.auc_{int(mg_m2)}", f"free doxorubicin AUC(0–21 d) at "
                                   f"{mg_m2:g} mg/m² vs the published {published} mg·h/L (within 2×)", GABIZON,
                                   round(auc, 3), "mg·h/L", published / 2, published * 2,
                                   note="Gabizon's clearance fell from 45.3 to 25.3 L/h between 25 and 50 mg/m²; the "
                                        "linear Kontny model (CL 53.3 L/h) cannot follow that dose dependence"))

    carbo = pbpk.models.load("carboplatin_calvert").compile()
    dose = float(carboplatin.calvert_dose(5, 90))
    sol = carbo.simulate(carboplatin.carboplatin_regimen(5, 90, cycles=1), np.array([200.0]), covariates={"GFR": 90.0})
    auc = float(sol.states[0, carbo.state_names.index("eliminated")]) / ((90 + 25) * 0.06) * 0.06
    checks += [Check.within("chemo.carboplatin.calvert_example", "Calvert dose for AUC 5, GFR 90 mL/min",
                            "Calvert 1989 worked example 575 mg [S]", dose, "mg", 575.0, 575.0),
               Check.within("chemo.carboplatin.target_auc", "simulated AUC of that dose (typical patient)",
                            "Calvert 1989: dose = AUC·(GFR + 25) [S]", round(auc, 6), "mg·min/mL", 5 * 0.9999, 5 * 1.0001)]

    ptx = pbpk.models.load("paclitaxel_henningsson2003").compile()
    tp = np.linspace(0.0, 96.0, 9601)
    c = np.asarray(ptx.simulate(paclitaxel.paclitaxel_regimen(1.8, 175.0, "q3w", 1), tp)["Cp"]) / 0.8539
    above = float(np.sum(c > 0.05) * (tp[1] - tp[0]))
    table += [{"quantity": "doxorubicin half-lives (h)", "value": np.round(half, 3).tolist()},
              {"quantity": "paclitaxel 175 mg/m² 3 h: Cmax (µmol/L)", "value": round(float(c.max()), 3)},
              {"quantity": "paclitaxel 175 mg/m² 3 h: time above 0.05 µmol/L (h)",
               "value": f"{above:.1f} (Joerger's dosing target 26–31 h [S]; model values [U])"}]
    write_results("chemo", checks, {"table": table}, part="pk")
    print(f"chemo pk: {sum(c.passed for c in checks)}/{len(checks)} checks pass")


if __name__ == "__main__":
    main()
