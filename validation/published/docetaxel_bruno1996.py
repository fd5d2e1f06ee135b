"""Docetaxel (Bruno 1996) three-compartment model: disposition constants against the published
typical values and the label.

Reference numbers (../shared/reference_models.md §2.1): typical micro-constants V1 = 7.4 L,
k10 = 5.2, k12 = 1.06, k21 = 1.51, k13 = 1.26, k31 = 0.084 h⁻¹ [C], from which the half-lives
0.089 / 0.551 / 10.3 h and Vss = 123.6 L are derived [D] (recomputed here independently from the
micro-constants, not from pbpk); Taxotere label CL ≈ 21 L/h/m² and t½γ ≈ 11.1 h [U].  The
model's values come from its compiled system matrix (eigenvalues) and an exact simulation.
"""

from __future__ import annotations

import numpy as np

SOURCE_C = "Bruno 1996 typical micro-constants via myelo (reference_models.md §2.1 [C])"


def reference_constants():
    """Half-lives and Vss from the published micro-constants (independent of pbpk)."""
    v1, k10, k12, k21, k13, k31 = 7.4, 5.2, 1.06, 1.51, 1.26, 0.084
    k = np.array([[-(k10 + k12 + k13), k21, k31], [k12, -k21, 0.0], [k13, 0.0, -k31]])
    rates = np.sort(-np.linalg.eigvals(k).real)[::-1]
    return np.log(2) / rates, v1 * (1 + k12 / k21 + k13 / k31), k10 * v1


def main(quick: bool = False) -> None:
    import jax.numpy as jnp

    import pbpk
    from validation._record import Check, write_results

    model = pbpk.models.load("docetaxel_bruno1996").compile()
    a, _ = model.linear_system(model.theta, model.covariate_reference)
    keep = [model.state_index(s) for s in ("central", "shallow", "deep")]
    rates = np.sort(-np.linalg.eigvals(np.asarray(a)[np.ix_(keep, keep)]).real)[::-1]
    half_lives = np.log(2) / rates
    p = model.parameters
    vss = p["V1"] + p["V2"] + p["V3"]
    ref_half, ref_vss, ref_cl = reference_constants()

    # Exact AUC after a 75 mg/m² 1-h infusion (1.8 m²) against dose/CL.
    dose = 75.0 * 1.8
    t = jnp.linspace(0.0, 400.0, 4001)
    sol = model.simulate(pbpk.Infusion(dose, "central", duration=1.0), t)
    auc_trap = float(np.trapezoid(np.asarray(sol["Cp"]), np.asarray(t)))
    elim = float(sol["eliminated"][-1])

    checks = []
    for i, (name, ref) in enumerate(zip(("alpha", "beta", "gamma"), ref_half)):
        checks.append(Check.within(f"docetaxel.half_life_{name}", f"{name} half-life of the Bruno 1996 model",
                                   SOURCE_C + "; derived [D]", round(float(half_lives[i]), 4), "h",
                                   ref * 0.99, ref * 1.01, fmt="{:.4g}"))
    checks += [
        Check.within("docetaxel.vss", "steady-state volume V1 + V2 + V3", SOURCE_C + "; derived [D] 123.6 L",
                     round(vss, 2), "L", ref_vss * 0.999, ref_vss * 1.001, fmt="{:.4g}"),
        Check.within("docetaxel.cl_per_m2", "clearance per m² at BSA 1.8 m²",
                     "Taxotere label CL 21 L/h/m² [S, label text via a mirror; reference_models.md §2.1 had U]", round(p["CL"] / 1.8, 2),
                     "L/h/m²", 21 * 0.9, 21 * 1.1),
        Check.within("docetaxel.half_life_terminal_vs_label", "terminal half-life vs the label",
                     "Taxotere label t½γ 11.1 h [S, label text via a mirror]", round(float(half_lives[2]), 2),
                     "h", 11.1 * 0.85, 11.1 * 1.15, note="the label value is from memory [U]: a wide band"),
        Check.within("docetaxel.auc_dose_over_cl", "AUC(0-400 h) of a 135 mg 1-h infusion vs dose/CL",
                     "mass balance: AUC = dose/CL for linear elimination", round(auc_trap, 5), "mg·h/L",
                     dose / ref_cl * 0.999, dose / ref_cl * 1.001, fmt="{:.5g}"),
        Check.within("docetaxel.eliminated_fraction", "fraction of the dose eliminated by 400 h",
                     "mass balance", round(elim / dose, 6), "fraction", 0.999, 1.0 + 1e-9),
    ]
    write_results("chemo", checks, part="docetaxel_pk", extra={"model": "docetaxel_bruno1996", "half_lives_h": half_lives.tolist(),
                                          "reference_half_lives_h": ref_half.tolist()})


if __name__ == "__main__":
    main()
