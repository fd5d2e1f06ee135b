"""Misspecified mechanism recovered by a neural term: the truth eliminates by Michaelis–Menten
plus linear clearance, the specification has linear clearance only.

100 training + 100 test virtual patients (V and CL with 20 % IIV, doses 100/200/400 mg IV,
samples 0.5–12 h, 10 % proportional error).  Three models are trained or given: the wrong
mechanistic model, the hybrid (wrong model + gated neural term on d(central)/dt, trained with
``train_hybrid``), and the true model; a pure black-box neural ODE (volume + neural elimination,
no clearance) is the fourth.  Each test patient is then fitted (MAP) on their first three samples
(0.5, 1, 2 h) and their later concentrations (4–12 h) and AUC(0–12 h) are predicted — the
clinically relevant forecast — at the training doses and, for extrapolation, at 800 mg (twice
the largest training dose; truth simulated for the same patients).  Targets (issue 7): the
hybrid closes ≥ 70 % of the wrong-to-true gap in forecast RMSE; the symbolic read-out of the
learned term is Michaelis–Menten with Vmax and Km within 15 % of truth.  The read-out is two
steps, as a modeller would do it: candidate forms are fitted to the network's curve (which
gives each form's starting values), then written into the specification and re-estimated on the
training data, and the form with the lowest AIC there is the answer.  That "read-out model" (the
network replaced by the form) is forecast too: a network extrapolates poorly beyond the
concentrations it saw, the mechanism it revealed need not.
"""

from __future__ import annotations

import numpy as np

from validation.hybrid._cohort import bolus_records, train_comparators

SOURCE = "issue 7 acceptance (known ground truth)"
TIMES = (0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0)
EARLY = 3
VMAX, KM = 10.0, 5.0
TRAIN_SOLVER = dict(solver="Tsit5", rtol=1e-6, atol=1e-8)   # non-stiff: explicit steps train ~5x faster


# a read-out form written into the specification: parameter name, unit per fitted parameter
FORM_PARAMETERS = {"linear": {"slope": ("CL2", "L/h")},
                   "michaelis_menten": {"Vmax": ("VMAX", "mg/h"), "Km": ("KM", "mg/L")},
                   "hill": {"Vmax": ("VMAX", "mg/h"), "K50": ("K50", "mg/L"), "n": ("HILL", "")}}


def spec(kind, key=None, readout=None):
    """``kind``: "true", "wrong" or "blackbox"; ``key``: add the neural term; ``readout``: a
    SymbolicFit whose form is added to the wrong model as a flow, its fitted values as typical
    values."""
    import sympy as sp

    import pbpk

    m = pbpk.Model(f"pk_{kind}")
    c = m.compartment("central", volume=m.parameter("V", 10.0, "L", source="truth", iiv=0.2))
    if kind == "true":
        m.flow(c, None, m.parameter("VMAX", VMAX, "mg/h", source="truth") * c.conc
               / (m.parameter("KM", KM, "mg/L", source="truth") + c.conc))
    if kind != "blackbox":
        m.flow(c, None, m.parameter("CL", 1.0, "L/h", source="truth", iiv=0.2) * c.conc)
    else:
        m.ode(c, 0)     # all elimination is learned
    if readout is not None:
        p = {k: m.parameter(name, abs(readout.parameters[k]), unit, source="symbolic read-out")
             for k, (name, unit) in FORM_PARAMETERS[readout.form].items()}
        conc = sp.Max(c.conc, 0)
        rate = {"linear": lambda: p["slope"] * conc,
                "michaelis_menten": lambda: p["Vmax"] * conc / (p["Km"] + conc),
                "hill": lambda: p["Vmax"] * (conc / p["K50"]) ** p["n"] / (1 + (conc / p["K50"]) ** p["n"])}[readout.form]()
        m.flow(c, None, rate)
    m.observe("Cp", c.conc, "mg/L", error=pbpk.Proportional(0.1))
    if key is not None:
        m.neural("central", inputs=["Cp"], unit="mg/h", scales={"Cp": 10.0}, key=key, width=16, depth=2, gate="Cp")
    return m


def cohort(truth, n, seed, doses=(100.0, 200.0, 400.0)):
    import jax

    import pbpk

    rng = np.random.default_rng(seed)
    pop = truth.population(n, jax.random.key(seed))
    dose = rng.choice(doses, n)
    sol = truth.simulate([pbpk.Regimen.of(pbpk.Bolus(float(d), "central")) for d in dose], np.asarray(TIMES),
                         params=pop, rtol=1e-10, atol=1e-12)
    true = np.asarray(sol["Cp"])
    y = true * (1 + 0.1 * rng.normal(size=true.shape))
    return bolus_records(dose, TIMES, y), np.asarray(pop.theta), dose, true


def forecasts(model, df, dose, ids, extrapolate=None):
    """MAP on the first EARLY samples per patient; predicted Cp at all TIMES and AUC(0-12 h),
    at the patient's dose and at ``extrapolate`` mg."""
    import pbpk
    from validation.recovery._fits import map_fits

    early = df[(df.EVID == 1) | (df.TIME <= TIMES[EARLY - 1] + 1e-9)]
    grid = np.linspace(0.0, 12.0, 241)
    out = {}
    for sid, theta, *_ in map_fits(model, early, ids, dict(rtol=1e-8, atol=1e-10)):
        per = {}
        for label, amount in (("dose", dose[sid - 1]), ("extrapolated", extrapolate)):
            if amount is None:
                continue
            sol = model.simulate(pbpk.Bolus(float(amount), "central"), grid, params=theta, rtol=1e-9, atol=1e-11)
            c = np.asarray(sol["Cp"])
            per[label] = (np.interp(TIMES, grid, c), float(np.trapezoid(c, grid)))
        out[sid] = per
    return out


def fits_by_form(fits):
    return {f.form: f for f in fits}


def refit_forms(fits, df_train, steps):
    """Each read-out form that vanishes without drug (linear, Michaelis–Menten, Hill; Emax's E0
    would eliminate drug that is not there) written into the wrong model and its typical values
    re-estimated on the training patients: the network's curve is trustworthy only where the
    data inform it (high concentrations last minutes), the data weigh every concentration by
    what it tells."""
    import pbpk
    from pbpk.hybrid import estimate_typical

    out = {}
    for form, fit in fits_by_form(fits).items():
        if form not in FORM_PARAMETERS:
            continue
        model = spec("wrong", readout=fit).compile()
        names = [name for name, _ in FORM_PARAMETERS[form].values()]
        out[form] = estimate_typical(model, pbpk.read_nonmem(df_train, model), names, steps=steps,
                                     simulate_options=TRAIN_SOLVER, progress=False)
    return out


def main(quick: bool = False) -> None:
    import pbpk
    from pbpk.hybrid import learned_term, symbolic_readout
    from validation._record import Check, write_results

    n_train, n_test, steps = (30, 20, 300) if quick else (100, 100, 1500)
    truth = spec("true").compile()
    models = {"wrong": spec("wrong").compile(), "true": truth}
    df_train, *_ = cohort(truth, n_train, 1)
    df_valid, *_ = cohort(truth, max(n_train // 4, 10), 2)
    df_test, theta_test, dose_test, _ = cohort(truth, n_test, 3)
    trained, timing = train_comparators(spec, df_train, df_valid, steps=steps, learning_rate=0.03, patience=60,
                                        simulate_options=TRAIN_SOLVER)
    models.update(trained)
    # read out over the concentrations the training data cover (5th-95th percentile of DV)
    dv = df_train.loc[df_train.EVID == 0, "DV"].to_numpy()
    c = np.linspace(*np.percentile(dv, [5, 95]), 200)
    learned = -learned_term(models["hybrid"], c)
    fits = symbolic_readout(c, learned, input_name="central.conc")
    refits = refit_forms(fits, df_train, steps=150 if quick else 600)
    best = min(refits, key=lambda f: refits[f].aic)
    mm = refits["michaelis_menten"].model.parameters
    mm_curve = fits_by_form(fits)["michaelis_menten"].parameters
    models["read-out"] = refits[best].model      # the network replaced by the form it revealed
    ids = list(range(1, n_test + 1))
    # truth for the test patients at the extrapolated dose
    big = 2 * 400.0
    grid = np.linspace(0.0, 12.0, 241)
    true_big = np.asarray(truth.simulate(pbpk.Bolus(big, "central"), grid, params=theta_test, rtol=1e-10,
                                         atol=1e-12)["Cp"])
    true_now = np.asarray(truth.simulate([pbpk.Regimen.of(pbpk.Bolus(float(d), "central")) for d in dose_test], grid,
                                         params=theta_test, rtol=1e-10, atol=1e-12)["Cp"])
    late = np.asarray(TIMES) > TIMES[EARLY - 1]
    metrics = {}
    for name, model in models.items():
        fc = forecasts(model, df_test, dose_test, ids, extrapolate=big)
        for label, ref in (("dose", true_now), ("extrapolated", true_big)):
            pred = np.array([fc[i][label][0] for i in ids])
            want = np.array([np.interp(TIMES, grid, ref[i - 1]) for i in ids])
            auc_pred = np.array([fc[i][label][1] for i in ids])
            auc_true = np.trapezoid(ref, grid, axis=1)
            metrics[(name, label)] = dict(
                rmse=float(np.sqrt(np.mean((pred[:, late] - want[:, late]) ** 2))),
                mdape=float(np.median(100 * np.abs(pred[:, late] / want[:, late] - 1))),
                auc_mdape=float(np.median(100 * np.abs(auc_pred / auc_true - 1))))
    gap = lambda label, key, name="hybrid": ((metrics[("wrong", label)][key] - metrics[(name, label)][key])
                                             / (metrics[("wrong", label)][key] - metrics[("true", label)][key]))
    checks = [
        Check.at_least("hybrid.mm.gap_closed_rmse", "share of the wrong→true gap in forecast RMSE (4–12 h) closed by "
                       "the hybrid, training doses", SOURCE, round(100 * gap("dose", "rmse"), 1), "%", 70.0),
        Check.at_least("hybrid.mm.gap_closed_auc", "share of the wrong→true gap in AUC(0–12 h) MdAPE closed by the "
                       "hybrid, training doses", SOURCE, round(100 * gap("dose", "auc_mdape"), 1), "%", 70.0),
        Check.within("hybrid.mm.readout_vmax", "Vmax of the read-out Michaelis–Menten term, re-estimated in the "
                     "specification on the training data / truth", SOURCE, round(mm["VMAX"] / VMAX, 3), "×", 0.85, 1.15,
                     note=f"curve fit to the network alone: {mm_curve['Vmax'] / VMAX:.3f}"),
        Check.within("hybrid.mm.readout_km", "Km of the read-out Michaelis–Menten term, re-estimated in the "
                      "specification on the training data / truth", SOURCE, round(mm["KM"] / KM, 3), "×", 0.85, 1.15,
                     note=f"curve fit to the network alone: {mm_curve['Km'] / KM:.3f}"),
        Check.at_least("hybrid.mm.readout_form", "read-out form with the lowest AIC on the training data, each candidate "
                       "re-estimated in the specification, is Michaelis–Menten (1 = yes)", SOURCE,
                       float(best == "michaelis_menten"), "–", 1.0,
                       note="AIC " + ", ".join(f"{f} {r.aic:.1f}" for f, r in refits.items())),
    ]
    table = [{"quantity": f"{name}, {label}: forecast RMSE mg/L / MdAPE % / AUC MdAPE %",
              "value": f"{m['rmse']:.3f} / {m['mdape']:.1f} / {m['auc_mdape']:.1f}"}
             for (name, label), m in sorted(metrics.items())]
    table += [{"quantity": f"training {k}: seconds, best step", "value": f"{s:.0f}, {b}"} for k, (s, b) in timing.items()]
    table += [{"quantity": f"read-out {f.form}", "value": f"{f.expression} (AIC {f.aic:.1f}, R² {f.r2:.4f})"}
              for f in fits]
    table += [{"quantity": f"re-estimated {form}: typical values, AIC",
               "value": ", ".join(f"{n} {r.model.parameters[n]:.4g}" for n, _ in FORM_PARAMETERS[form].values())
               + f"; AIC {r.aic:.1f}"} for form, r in refits.items()]
    table.append({"quantity": "read-out range (mg/L, 5th–95th percentile of training DV)",
                  "value": f"{c[0]:.2f}–{c[-1]:.2f}"})
    table.append({"quantity": "extrapolation to 800 mg: gap closed in RMSE (%), hybrid / read-out model",
                  "value": f"{100 * gap('extrapolated', 'rmse'):.1f} / {100 * gap('extrapolated', 'rmse', 'read-out'):.1f}"})
    write_results("hybrid", checks, {"table": table, "n_train": n_train, "n_test": n_test,
                                     "metrics": {f"{a}/{b}": v for (a, b), v in metrics.items()}},
                  part="michaelis_menten")
    failed = [ch.id for ch in checks if not ch.passed]
    print(f"hybrid MM: {len(checks) - len(failed)}/{len(checks)} pass" + (f"; failed {failed}" if failed else ""))


if __name__ == "__main__":
    main()
