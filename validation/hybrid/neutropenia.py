"""A mechanism missing from the PD part recovered by a neural term: the truth's drug effect on
the proliferating neutrophil precursors saturates (E = Emax·C/(EC50 + C), as in Friberg 2002's
Emax variant), the specification has the linear effect E = slope·C with slope = Emax/EC50 (the
truth's low-concentration limit, what a model built on low-dose data would carry).

The PK (one compartment, bolus, CL 10 L/h, V 10 L) is known, as in a sequential PK-PD analysis.
The PD is the Friberg 2002 chain (Prol, three transits, Circ; MTT 90 h, γ 0.16, baseline 5 ×
10⁹/L) with IIV on Circ0, MTT and the drug-effect parameter; ANC is sampled on days 0, 3, 5, 7,
10, 14 and 21 with 15 % log-normal error.  100 training and 100 test patients receive 100, 200 or
300 mg.  The hybrid adds NN(Cp, Prol, Circ)·Prol/5 to d(Prol)/dt (the missing effect acts on
the precursors, in proportion to them).  Each test patient is fitted (MAP) on days 0, 3 and 5 and
their ANC on days 7–21 and their nadir — the clinically relevant output — are forecast at their
dose and, for extrapolation, at 600 mg (twice the largest training dose).  The drug effect the
hybrid implies is read out (an Emax form fitted to it, then re-estimated in the specification) and
that read-out model is forecast too.  Target (issue 7): the
hybrid closes ≥ 70 % of the wrong-to-true gap; the mechanism-only and a black-box model (no
drug-effect term, the whole effect learned) are the comparisons.
"""

from __future__ import annotations

import numpy as np

from validation._record import RESULTS_DIR
from validation.hybrid._cohort import bolus_records, train_comparators

SOURCE = "issue 7 acceptance (known ground truth)"
DAYS = (0.0, 3.0, 5.0, 7.0, 10.0, 14.0, 21.0)
TIMES = tuple(24.0 * d for d in DAYS)
EARLY = 3
EMAX, EC50 = 30.0, 10.0
DOSES = (100.0, 200.0, 300.0)
TRAIN_SOLVER = dict(solver="Tsit5", rtol=1e-6, atol=1e-8)
WEIGHTS = RESULTS_DIR / "hybrid_neutropenia.eqx"   # the trained network, read by the notebook


def spec(kind, key=None, emax=EMAX, ec50=EC50, source="truth"):
    """``kind``: "true" (saturable effect; ``emax``, ``ec50`` its typical values), "wrong"
    (linear effect) or "blackbox" (no effect term); ``key``: add the neural term on d(Prol)/dt."""
    import sympy as sp

    import pbpk

    m = pbpk.Model(f"neutropenia_{kind}")
    c = m.compartment("central", volume=m.parameter("V", 10.0, "L", source="known PK (assumed)"))
    m.flow(c, None, m.parameter("CL", 10.0, "L/h", source="known PK (assumed)") * c.conc)
    circ0 = m.parameter("Circ0", 5.0, "1e9/L", source="truth (Friberg 2002 scale)", iiv=0.25)
    mtt = m.parameter("MTT", 90.0, "h", source="truth (Friberg 2002 scale)", iiv=0.15)
    gamma = m.parameter("gamma", 0.16, "", source="truth (Friberg 2002 scale)")
    if kind == "true":
        effect = (m.parameter("Emax", emax, "", source=source, iiv=0.2) * c.conc
                  / (m.parameter("EC50", ec50, "mg/L", source=source) + c.conc))
    elif kind == "wrong":
        effect = m.parameter("slope", EMAX / EC50, "L/mg", source="truth's low-concentration limit", iiv=0.2) * c.conc
    else:
        effect = sp.Integer(0)
    ktr = m.define("ktr", 4 / mtt, "1/h")
    chain = [m.state(n, initial=circ0, unit="1e9/L") for n in ("Prol", "Transit1", "Transit2", "Transit3", "Circ")]
    prol, circ = chain[0], chain[-1]
    m.ode(prol, ktr * prol * (1 - effect) * (circ0 / sp.Max(circ, 1e-9 * circ0)) ** gamma - ktr * prol)
    for upstream, state in zip(chain, chain[1:]):
        m.ode(state, ktr * upstream - ktr * state)
    m.observe("ANC", circ, "1e9/L", error=pbpk.LogNormal(0.15))
    m.observe("Cp", c.conc, "mg/L")
    if key is not None:
        m.neural("Prol", inputs=["Cp", "Prol", "Circ"], unit="1e9/L/h", scales={"Cp": 10.0, "Prol": 5.0, "Circ": 5.0},
                 key=key, width=16, depth=2, gate="Prol")
    return m


def cohort(truth, n, seed):
    import jax

    import pbpk

    rng = np.random.default_rng(seed)
    pop = truth.population(n, jax.random.key(seed))
    dose = rng.choice(DOSES, n)
    sol = truth.simulate([pbpk.Regimen.of(pbpk.Bolus(float(d), "central")) for d in dose], np.asarray(TIMES),
                         params=pop, rtol=1e-10, atol=1e-12)
    anc = np.asarray(sol["ANC"]) * np.exp(0.15 * rng.normal(size=(n, len(TIMES))))
    return bolus_records(dose, TIMES, anc, observation="ANC"), np.asarray(pop.theta), dose


def read_out(hybrid, df_train, steps):
    """The drug effect the hybrid implies at baseline (Prol = Circ = Circ0, where the feedback
    is 1): E(C) = slope·C − NN/(k_tr·Prol) over the training concentrations; the Emax form fitted
    to it, then written into the specification and its typical values re-estimated on the
    training patients (``estimate_typical``).  Returns (curve fits, re-estimated model)."""
    import pbpk
    from pbpk.hybrid import estimate_typical, learned_term, symbolic_readout

    p = hybrid.parameters
    prol, ktr = p["Circ0"], 4 / p["MTT"]
    doses = df_train.loc[df_train.EVID == 1, "AMT"].to_numpy()
    conc = np.linspace(0.05, doses.max() / p["V"], 200)          # bolus: the peak is dose / V
    effect = p["slope"] * conc - learned_term(hybrid, conc, at=[0.0, prol, prol]) / (ktr * prol)
    fits = symbolic_readout(conc, effect, forms=("linear", "michaelis_menten", "hill"), input_name="Cp")
    emax = next(f for f in fits if f.form == "michaelis_menten").parameters
    model = spec("true", emax=abs(emax["Vmax"]), ec50=abs(emax["Km"]), source="symbolic read-out").compile()
    refit = estimate_typical(model, pbpk.read_nonmem(df_train, model), ["Emax", "EC50"], steps=steps,
                             simulate_options=TRAIN_SOLVER, progress=False)
    return fits, refit


def forecasts(model, df, dose, ids, grid, extrapolate):
    """MAP on the first EARLY samples per patient; ANC on ``grid`` at the patient's dose and at
    ``extrapolate`` mg."""
    import pbpk
    from validation.recovery._fits import map_fits

    early = df[(df.EVID == 1) | (df.TIME <= TIMES[EARLY - 1] + 1e-9)]
    out = {}
    for sid, theta, *_ in map_fits(model, early, ids, dict(rtol=1e-8, atol=1e-10)):
        out[sid] = {label: np.asarray(model.simulate(pbpk.Bolus(float(amount), "central"), grid, params=theta,
                                                     rtol=1e-9, atol=1e-11)["ANC"])
                    for label, amount in (("dose", dose[sid - 1]), ("extrapolated", extrapolate))}
    return out


def main(quick: bool = False) -> None:
    import pbpk
    from pbpk.hybrid import save_hybrid
    from validation._record import Check, write_results

    n_train, n_test, steps = (30, 20, 300) if quick else (100, 100, 600)
    truth = spec("true").compile()
    models = {"wrong": spec("wrong").compile(), "true": truth}
    df_train, *_ = cohort(truth, n_train, 1)
    df_valid, *_ = cohort(truth, max(n_train // 4, 10), 2)
    df_test, theta_test, dose_test = cohort(truth, n_test, 3)
    trained, timing = train_comparators(spec, df_train, df_valid, steps=steps, learning_rate=0.01, patience=8,
                                        simulate_options=TRAIN_SOLVER)
    models.update(trained)
    if not quick:       # the notebook reads the validated network instead of retraining it
        save_hybrid(models["hybrid"], WEIGHTS)
    fits, refit = read_out(models["hybrid"], df_train, steps=150 if quick else 400)
    models["read-out"] = refit.model
    ids = list(range(1, n_test + 1))
    big = 2 * max(DOSES)
    grid = np.linspace(0.0, TIMES[-1], 253)
    regimens = lambda amounts: [pbpk.Regimen.of(pbpk.Bolus(float(d), "central")) for d in amounts]
    reference = {label: np.asarray(truth.simulate(regimens(amounts), grid, params=theta_test, rtol=1e-10,
                                                  atol=1e-12)["ANC"])
                 for label, amounts in (("dose", dose_test), ("extrapolated", [big] * n_test))}
    late = np.asarray(TIMES) > TIMES[EARLY - 1]
    metrics = {}
    for name, model in models.items():
        fc = forecasts(model, df_test, dose_test, ids, grid, big)
        for label, ref in reference.items():
            pred = np.array([fc[i][label] for i in ids])
            at = lambda curves: np.array([np.interp(np.asarray(TIMES)[late], grid, c) for c in curves])
            metrics[(name, label)] = dict(
                rmse=float(np.sqrt(np.mean((at(pred) - at(ref)) ** 2))),
                mdape=float(np.median(100 * np.abs(at(pred) / at(ref) - 1))),
                nadir_mdape=float(np.median(100 * np.abs(pred.min(axis=1) / ref.min(axis=1) - 1))))
    gap = lambda label, key, name="hybrid": ((metrics[("wrong", label)][key] - metrics[(name, label)][key])
                                             / (metrics[("wrong", label)][key] - metrics[("true", label)][key]))
    checks = [
        Check.at_least("hybrid.neutropenia.gap_closed_rmse", "share of the wrong→true gap in ANC forecast RMSE "
                       "(days 7–21) closed by the hybrid, training doses", SOURCE, round(100 * gap("dose", "rmse"), 1),
                       "%", 70.0),
        Check.at_least("hybrid.neutropenia.gap_closed_nadir", "share of the wrong→true gap in ANC nadir MdAPE closed "
                       "by the hybrid, training doses", SOURCE, round(100 * gap("dose", "nadir_mdape"), 1), "%", 70.0),
    ]
    table = [{"quantity": f"{name}, {label}: ANC forecast RMSE 10⁹/L / MdAPE % / nadir MdAPE %",
              "value": f"{m['rmse']:.3f} / {m['mdape']:.1f} / {m['nadir_mdape']:.1f}"}
             for (name, label), m in sorted(metrics.items())]
    table += [{"quantity": f"training {k}: seconds, best step", "value": f"{s:.0f}, {b}"}
              for k, (s, b) in timing.items()]
    table += [{"quantity": f"read-out of the implied drug effect: {f.form}",
               "value": f"{f.expression} (R² {f.r2:.4f})"} for f in fits]
    table.append({"quantity": "read-out Emax form re-estimated on the training data: Emax, EC50 (truth)",
                  "value": f"{refit.model.parameters['Emax']:.3g}, {refit.model.parameters['EC50']:.3g} mg/L "
                           f"({EMAX:g}, {EC50:g} mg/L)"})
    for name in ("hybrid", "read-out"):
        table.append({"quantity": f"extrapolation to {big:.0f} mg, {name}: gap closed in RMSE / nadir MdAPE (%)",
                      "value": f"{100 * gap('extrapolated', 'rmse', name):.1f} / "
                               f"{100 * gap('extrapolated', 'nadir_mdape', name):.1f}"})
    write_results("hybrid", checks, {"table": table, "n_train": n_train, "n_test": n_test,
                                     "metrics": {f"{a}/{b}": v for (a, b), v in metrics.items()}},
                  part="neutropenia")
    failed = [ch.id for ch in checks if not ch.passed]
    print(f"hybrid neutropenia: {len(checks) - len(failed)}/{len(checks)} pass" + (f"; failed {failed}" if failed else ""))


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv)
