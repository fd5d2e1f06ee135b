"""Tumour models of the chemotherapy case against their published behaviour.

- Simeoni 2004 (Table 2, paclitaxel exp. 1 [C]): exponential growth at λ0 below w = λ1/λ0,
  linear growth at λ1 above; the threshold concentration C_T = λ0/k2 (the paper's secondary
  parameter: a constant exposure above it shrinks the tumour, below it the tumour grows).  The
  paper's treated A2780 curves need its mouse paclitaxel PK, which is not available offline, so
  they are not reproduced.
- Kuznetsov 1994 (BIOMD0000000762 [C]): the equilibria computed from the nullclines (independently
  of pbpk) and classified by the eigenvalues of the compiled model's Jacobian; damped oscillation
  into dormancy from the BioModels initial tumour, escape from a large one (the paper's Fig. 7
  behaviour [C2]).
- de Pillis 2005 / 2009 [C]: the untreated escape and the effect of chemotherapy, reported as
  figures and tables; the papers' stated numbers are not available offline [U].
"""

from __future__ import annotations

import numpy as np

SIMEONI = "Simeoni 2004 Table 2, paclitaxel exp. 1 (nlmixr2lib encoding) [C]"
KUZNETSOV = "Kuznetsov 1994 BCL1 parameters (BIOMD0000000762) [C]; dormancy/escape behaviour (Fig. 7) [C2]"


def constant_exposure(model_spec, conc, unit="mg/L"):
    """``model_spec`` with its input C held at ``conc``."""
    import pbpk

    ex = pbpk.Model("exposure", time=model_spec.time_unit)
    level = ex.parameter("C_level", conc, unit, source="validation input")
    ex.state("clock", initial=0.0, unit="day")
    ex.ode("clock", 1)
    return pbpk.compose(ex, model_spec, links={"C": level}).compile()


def kuznetsov_equilibria():
    """Positive equilibria (E, T) from the T-nullcline E = a(1 − bT)/n substituted into dE/dt = 0."""
    from scipy.optimize import brentq

    from pbpk.models.tumour import KUZNETSOV_PARAMETERS as q

    def f(t):
        e = q["a"] * (1 - q["b"] * t) / q["n"]
        return q["s"] + q["p"] * e * t / (q["g"] + t) - q["m"] * e * t - q["d"] * e

    grid = np.logspace(0, np.log10(1 / q["b"]) - 1e-9, 20000)
    vals = f(grid)
    roots = [brentq(f, a, b, xtol=1e-6, rtol=1e-14) for a, b, fa, fb in
             zip(grid[:-1], grid[1:], vals[:-1], vals[1:]) if fa * fb < 0]
    return [(q["a"] * (1 - q["b"] * t) / q["n"], t) for t in roots] + [(q["s"] / q["d"], 0.0)]


def main(quick: bool = False) -> None:
    import jax
    import jax.numpy as jnp

    import pbpk
    from pbpk.models import tumour
    from validation._record import Check, write_results

    checks, table = [], []
    # --- Simeoni: growth phases and threshold concentration
    lam0, lam1, k2 = 0.273, 0.814, 0.629
    model = tumour.simeoni2004(w0=0.05).compile()
    t = np.array([0.0, 1.0, 40.0, 41.0])
    w = np.asarray(model.simulate(pbpk.Regimen(), t, rtol=1e-10, atol=1e-12)["TW"])
    early, late = np.log(w[1] / w[0]), w[3] - w[2]
    c_t = lam0 / k2
    shrink = constant_exposure(tumour.simeoni2004(w0=0.05), 1.05 * c_t)
    grow = constant_exposure(tumour.simeoni2004(w0=0.05), 0.95 * c_t)
    def proliferating(m):   # x1 at 30 d relative to w0: exp((λ0 − k2·C)·30) while w ≪ λ1/λ0
        sol = m.simulate(pbpk.Regimen(), np.array([30.0]), rtol=1e-11, atol=1e-14)
        return float(sol.states[0, m.state_names.index("x1")]) / 0.05

    x_above, x_below = proliferating(shrink), proliferating(grow)
    checks += [
        Check.within("chemo.simeoni.exponential_rate", "growth rate d ln w/dt while w ≪ λ1/λ0", SIMEONI,
                     round(float(early), 5), "1/day", lam0 * 0.999, lam0 * 1.001, fmt="{:.4g}"),
        Check.within("chemo.simeoni.linear_rate", "growth rate dw/dt once w ≫ λ1/λ0", SIMEONI, round(float(late), 5),
                     "g/day", lam1 * 0.999, lam1 * 1.001, fmt="{:.4g}"),
    ]
    for tag, factor, got in (("above", 1.05, x_above), ("below", 0.95, x_below)):
        exact = float(np.exp((1 - factor) * lam0 * 30.0))
        checks.append(Check.within(f"chemo.simeoni.threshold_{tag}", f"proliferating x1(30 d)/w0 at a constant "
                                   f"{factor}·C_T (C_T = λ0/k2 = {c_t:.3f} mg/L); exact exp((1 − {factor})·λ0·30)",
                                   "Simeoni 2004: C_T = λ0/k2 separates shrinkage from growth", round(got, 6),
                                   "ratio", exact * (1 - 1e-5), exact * (1 + 1e-5), fmt="{:.6g}"))
    table.append({"model": "Simeoni 2004", "quantity": "switch weight λ1/λ0 (g)", "value": round(lam1 / lam0, 3)})
    table.append({"model": "Simeoni 2004", "quantity": "threshold concentration C_T (mg/L)", "value": round(c_t, 4)})

    # --- Kuznetsov: equilibria, stability, dormancy and escape
    kz = tumour.kuznetsov1994().compile()
    jac = jax.jacfwd(lambda y: kz.rhs(0.0, y, kz.theta, kz.covariate_reference))
    kinds = []
    for e, tt in kuznetsov_equilibria():
        ev = np.linalg.eigvals(np.asarray(jac(jnp.array([e, tt]))))
        stable = bool(np.all(ev.real < 0))
        kind = ("stable focus" if stable and np.any(ev.imag != 0) else "stable node" if stable
                else "saddle" if np.prod(np.sign(ev.real)) < 0 else "unstable")
        kinds.append((tt, kind))
        table.append({"model": "Kuznetsov 1994", "quantity": f"equilibrium E = {e:.4g}, T = {tt:.4g}",
                      "value": f"{kind}; eigenvalues {np.round(ev, 5).tolist()}"})
    positive = sorted(k for k in kinds if k[0] > 0)
    dormant, escape = positive[0], positive[-1]
    horizon = np.linspace(0.0, 2000.0, 4001)
    small = np.asarray(kz.simulate(pbpk.Regimen(), horizon, rtol=1e-10, atol=1e-6)["tumour_cells"])
    big = np.asarray(tumour.kuznetsov1994(T0=1e8).compile().simulate(
        pbpk.Regimen(), horizon, rtol=1e-10, atol=1e-6)["tumour_cells"])
    peaks = int(np.sum((small[1:-1] > small[:-2]) & (small[1:-1] > small[2:])))
    checks += [
        Check.within("chemo.kuznetsov.n_positive_equilibria", "positive-tumour equilibria (dormant, saddle, escape)",
                     KUZNETSOV, len(positive), "count", 3, 3),
        Check(id="chemo.kuznetsov.dormant_stable_focus", description="smallest positive equilibrium is a stable "
              "focus (damped oscillation)", source=KUZNETSOV, value=dormant[1], unit="", target="stable focus",
              passed=dormant[1] == "stable focus"),
        Check.within("chemo.kuznetsov.dormancy_reached", "T(2000 d) / dormant-equilibrium T, from T0 = 5e6",
                     KUZNETSOV, round(float(small[-1] / dormant[0]), 4), "ratio", 0.98, 1.02),
        Check.at_least("chemo.kuznetsov.oscillation_peaks", "local maxima of T(t) on the way to dormancy",
                       KUZNETSOV, peaks, "count", 2),
        Check.within("chemo.kuznetsov.escape_reached", "T(2000 d) / escape-equilibrium T, from T0 = 1e8", KUZNETSOV,
                     round(float(big[-1] / escape[0]), 4), "ratio", 0.99, 1.01),
    ]

    # --- de Pillis 2005 and 2009: untreated escape, chemotherapy changing the outcome
    days = np.linspace(0.0, 150.0, 601)
    dp05 = {t0: np.asarray(tumour.depillis2005(T0=t0).compile().simulate(pbpk.Regimen(), days[:101])["tumour_cells"])
            for t0 in (1e4, 1e6)}
    dp09 = tumour.depillis2009(patient=9).compile()
    untreated = np.asarray(dp09.simulate(pbpk.Regimen(), days)["tumour_cells"])
    chemo = pbpk.Regimen.repeat(pbpk.Bolus(1.0, "drug"), every=7.0, count=6)
    treated = np.asarray(dp09.simulate(chemo, days)["tumour_cells"])
    for t0, tr in dp05.items():
        table.append({"model": "de Pillis 2005", "quantity": f"T at day 25 from T0 = {t0:.0e}", "value": f"{tr[-1]:.4g}"})
    table += [{"model": "de Pillis 2009 (patient 9)", "quantity": "T at day 150, untreated", "value": f"{untreated[-1]:.4g}"},
              {"model": "de Pillis 2009 (patient 9)", "quantity": "T at day 150, 6 weekly drug pulses (1 mg/L)",
               "value": f"{treated[-1]:.4g}"}]
    checks.append(Check.at_least("chemo.depillis2009.chemo_changes_outcome", "log10 T(150 d) untreated − treated "
                                 "(patient 9, six weekly 1 mg/L pulses)", "de Pillis 2009: chemotherapy turns escape "
                                 "into control [C, qualitative]", round(float(np.log10(untreated[-1]) -
                                                                           np.log10(max(treated[-1], 1.0))), 2),
                                 "decades", 3.0))
    _figure(horizon, small, big, days, untreated, treated)
    write_results("chemo", checks, {"table": table}, part="tumour")
    print(f"chemo tumour: {sum(c.passed for c in checks)}/{len(checks)} checks pass")


def _figure(horizon, small, big, days, untreated, treated):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from validation._record import save_figure

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].semilogy(horizon, small, label="T0 = 5e6 (dormancy)")
    ax[0].semilogy(horizon, big, label="T0 = 1e8 (escape)")
    ax[0].set(xlabel="day", ylabel="tumour cells", title="Kuznetsov 1994")
    ax[1].semilogy(days, untreated, label="untreated")
    ax[1].semilogy(days, np.maximum(treated, 1e-2), label="6 weekly drug pulses")
    ax[1].set(xlabel="day", title="de Pillis 2009, patient 9")
    for a in ax:
        a.legend(fontsize=7)
    save_figure(fig, "chemo_tumour_immune.png")


if __name__ == "__main__":
    main()
