"""The main job's closed-loop part: one embedded TNBC patient from a NONMEM dataset to an
explained, safe, adaptive docetaxel schedule, then the closed loop on a small virtual cohort with
a drifting truth, and an HTML report of the whole demo.

1. The patient's first cycle (docetaxel 75 mg/m²; Cp at 6 h, ANC at days 0/7/21, tumour size at
   days 0/21) is written as a NONMEM dataset, read back and calibrated (Laplace posterior).
2. The twin — posterior draws advanced through cycle 1 — feeds the twin-forecast shield over
   100 mg/m² (δ = 0.02).  Cycles 2–6 are given to the hidden true patient one by one; before each,
   the recommendation is explained (alternatives, binding limit, sensitivities) and after each
   the twin assimilates the new samples.
3. Protocol (75 mg/m²), static plan and the adaptive shield on a virtual cohort whose truth
   drifts (acquired resistance, cumulative marrow toxicity), with the time per decision.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

BSA = 1.8
DRIFT = ({"KD": 0.85, "slope": 1.08}, 2)


def patient_dataset(env, truth, key) -> pd.DataFrame:
    """Cycle 1 of the embedded patient as NONMEM records, samples drawn with the model's
    residual-error models."""
    from .dosing import Infusion, Regimen

    model = env.model
    amount = 75.0 * BSA
    samples = [(6.0, "Cp"), (0.0, "ANC"), (168.0, "ANC"), (504.0, "ANC"), (0.0, "SLD"), (504.0, "SLD")]
    times = np.unique([t for t, _ in samples])
    sol = model.simulate(Regimen.of(Infusion(amount, "central", duration=1.0)), times, params=truth)
    rows = [dict(ID=1, TIME=0.0, AMT=amount, RATE=amount, DV=np.nan, EVID=1, CMT="central", DVID=np.nan)]
    keys = jax.random.split(key, len(samples))
    for k, (t, name) in zip(keys, samples):
        value = np.asarray(sol[name])[0, int(np.searchsorted(times, t))]
        err = model.errors[model.observation_names.index(name)]
        rows.append(dict(ID=1, TIME=t, AMT=0.0, RATE=0.0, DV=float(err.sample(k, jnp.asarray(value))), EVID=0,
                         CMT=np.nan, DVID=name))
    return pd.DataFrame(rows).sort_values(["TIME", "EVID"], ascending=[True, False], kind="stable")


def run_living_demo(out: Path, cohort: int = 24, seed: int = 0) -> tuple[str, dict]:
    """Returns (the console summary, the report's sections)."""
    from . import control
    from .inference import fit
    from .nonmem import read_nonmem

    env = control.chemotherapy_env()
    model = env.model
    truth = model.population(1, jax.random.key(seed + 77))
    lines, sections = [], {}

    # 1. NONMEM dataset -> twin
    df = patient_dataset(env, truth, jax.random.key(seed + 78))
    df.to_csv(out / "patient_cycle1.csv", index=False)
    data = read_nonmem(out / "patient_cycle1.csv", model)
    t0 = time.perf_counter()
    post = fit(model, data, method="laplace", key=jax.random.key(seed + 5), draws=256, progress=False,
               simulate_options=dict(rtol=1e-6, atol=1e-8))
    t_fit = time.perf_counter() - t0
    est = post.summary()[["mean", "sd"]]
    est["truth (hidden)"] = [float(truth.theta[0, model.parameter_index(n)]) if n in model.parameter_names else np.nan
                             for n in est.index]
    est.to_csv(out / "patient_posterior.csv")
    lines.append(f"patient: NONMEM dataset {out / 'patient_cycle1.csv'} ({len(df)} records) -> Laplace fit in "
                 f"{t_fit:.1f} s")
    sections["1. The patient's twin from a NONMEM dataset"] = [
        ("Cycle 1 records (NONMEM)", df), ("Posterior (Laplace) against the hidden truth", est.round(4))]

    # 2. explained, safe, adaptive schedule for cycles 2-6
    table, texts, t_decide, sobol = personal_course(env, post, truth, seed)
    table.to_csv(out / "patient_schedule.csv", index=False)
    plot_course(table, env, out / "patient_schedule.png")
    (out / "patient_explanations.txt").write_text("\n\n".join(texts))
    sobol.to_csv(out / "patient_sobol.csv")
    lines.append(f"schedule cycles 2-{env.horizon}: doses {table['dose'].tolist()} mg/m²; decisions "
                 f"{np.median(t_decide):.3f} s median (update + re-plan, after compilation)")
    lines.append("first recommendation: " + texts[0].replace("\n", " "))
    sections["2. Safe adaptive schedule, explained"] = [
        ("Schedule (forecasts before each cycle; outcomes of the hidden patient after)", table),
        ("figure", out / "patient_schedule.png"), ("Why each dose", "\n\n".join(texts)),
        ("Cycle 2: where the forecast's uncertainty comes from (Sobol' indices over the posterior, SALib)",
         sobol.round(3))]

    # 3. closed loop on a small cohort with a drifting truth
    arms_table = cohort_arms(env, cohort, seed)
    arms_table.to_csv(out / "closed_loop_arms.csv")
    plot_arms(arms_table, out / "closed_loop_arms.png")
    lines.append("closed loop, {} patients, drifting truth: ".format(cohort) + "; ".join(
        f"{a}: shrinkage {r['efficacy']:.3f}, violations {r['violation_rate']:.0%}"
        for a, r in arms_table.iterrows()))
    sections["3. Closed loop on a virtual cohort (drifting truth)"] = [
        (f"{cohort} patients; truth drifting from cycle {DRIFT[1]}: " + ", ".join(
            f"{k} × {v:g} per cycle" for k, v in DRIFT[0].items()), arms_table.round(4)),
        ("figure", out / "closed_loop_arms.png")]
    return "\n".join(lines), sections


def personal_course(env, post, truth, seed):
    """The shielded policy on the hidden patient from cycle 2 on, each decision explained."""
    from . import control
    from .control.explain import _act
    from .control.particles import no_action

    std, top = env.action_index(75.0), env.action_index(100.0)
    draws = control.Patients.from_posterior(post, 64, jax.random.key(seed + 6), bsa=BSA)
    states = jax.vmap(env.initial_state)(draws.theta, draws.covariates, draws.bsa)
    states = jax.vmap(lambda s: env.transition(s, std)[0])(states)      # the twin after the cycle given
    twin = control.ParticleTwin(states, jnp.full((64,), -jnp.log(64.0)))
    policy = control.ShieldedPolicy(env, control.FixedSchedule(env, [top] * env.horizon), draws, delta=0.02)
    pool = control.Patients.from_population(truth, bsa=BSA)
    step = eqx.filter_jit(env.step_env)
    _, state = env.reset(jax.random.key(seed + 7), pool)
    obs, state, *_ = step(jax.random.key(seed + 8), state, jnp.asarray(std, dtype=int))   # as _act's actions: one compile
    carry = (twin, policy.base.init(obs), no_action())
    rows, texts, seconds, sobol = [], [], [], None
    for k, key in enumerate(jax.random.split(jax.random.key(seed + 9), env.horizon - 1)):
        rec = control.explain(env, policy, carry, obs, key, sobol_samples=256 if k == 0 else None)
        if k == 0:
            sobol = rec.global_indices
        t0 = time.perf_counter()
        action, carry = jax.block_until_ready(_act(policy, key, carry, obs))
        seconds.append(time.perf_counter() - t0)
        chosen = rec.alternatives.loc[int(action)]
        obs, state, reward, cost, *_ = step(jax.random.fold_in(key, 1), state, action)
        rows.append({"cycle": k + 2, "dose": float(env.doses[int(action)]),
                     "forecast shrinkage": round(float(chosen["efficacy_mean"]), 4),
                     "90% CrI": f"{chosen['efficacy_q05']:.3f} to {chosen['efficacy_q95']:.3f}",
                     "forecast P(limit)": round(float(chosen["P(any limit)"]), 3),
                     "binding": (rec.binding or "none").split(" — ")[0].replace("Binding limit: ", ""),
                     "true shrinkage (hidden)": round(float(reward), 4), "true limit crossed": bool(cost > 0)})
        texts.append(f"Cycle {k + 2}: " + rec.text())
    return pd.DataFrame(rows), texts, seconds[1:] or seconds, sobol


def cohort_arms(env, n, seed) -> pd.DataFrame:
    from . import control

    pats = control.Patients.from_population(env.model.population(n, jax.random.key(seed + 2026)))
    prior = control.Patients.from_population(env.model.population(64, jax.random.key(seed + 99)))
    std, top = env.action_index(75.0), env.action_index(100.0)
    train = control.Patients.from_population(env.model.population(64, jax.random.key(seed + 11)))
    static = control.optimise_schedule(env, train, jax.random.key(seed + 1), steps=60)[0]
    arms = {"protocol 75 mg/m²": control.FixedSchedule(env, [std] * env.horizon),
            "static plan (population)": static,
            "adaptive (twin shield)": control.ShieldedPolicy(
                env, control.FixedSchedule(env, [top] * env.horizon), prior, delta=0.02)}
    drift = control.Drift(env.model, DRIFT[0], start_cycle=DRIFT[1])
    rows = {}
    for name, policy in arms.items():
        r = control.run_closed_loop(env, policy, pats, jax.random.key(seed + 1), drift=drift).outcome.summary()
        rows[name] = {"efficacy": r["efficacy"]["mean"], "efficacy 2.5%": r["efficacy"]["ci"][0],
                      "efficacy 97.5%": r["efficacy"]["ci"][1], "violation_rate": r["violation_rate"]["mean"],
                      "cumulative dose (mg/m²)": r["cumulative_dose"]["mean"]}
    t = control.decision_seconds(env, arms["adaptive (twin shield)"], pats, jax.random.key(seed + 3), repeats=5)
    for name in rows:
        rows[name]["seconds per decision"] = t["median"] if "adaptive" in name else 0.0
    return pd.DataFrame(rows).T.rename_axis("arm")


def plot_course(table, env, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
    ax[0].bar(table["cycle"], table["dose"], color="tab:blue", alpha=0.75)
    ax[0].set(xlabel="cycle", ylabel="docetaxel (mg/m²)", title="Doses given by the safe adaptive policy")
    ax[1].plot(table["cycle"], table["forecast shrinkage"], "o-", label="forecast (twin)")
    ax[1].plot(table["cycle"], table["true shrinkage (hidden)"], "s--", label="hidden truth")
    ax[1].set(xlabel="cycle", ylabel="tumour shrinkage in the cycle", title="Forecast vs truth")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_arms(table, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
    names = list(table.index)
    err = np.vstack([table["efficacy"] - table["efficacy 2.5%"], table["efficacy 97.5%"] - table["efficacy"]])
    ax[0].bar(names, table["efficacy"], yerr=err.astype(float), color="tab:green", alpha=0.75)
    ax[0].set(ylabel="tumour shrinkage (fraction)", title="Efficacy (95 % CI)")
    ax[1].bar(names, 100 * table["violation_rate"].astype(float), color="tab:red", alpha=0.75)
    ax[1].set(ylabel="% patients", title="Grade-4 neutropenia > 7 days")
    for a in ax:
        a.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(path: Path, summary: str, sections: dict) -> None:
    """One self-contained HTML file: the console summary, then each section's tables, figures
    (embedded) and text."""
    parts = ["<html><head><meta charset='utf-8'><title>pbpk demo</title><style>body{font-family:sans-serif;"
             "max-width:1100px;margin:auto} table{border-collapse:collapse;font-size:12px} td,th{border:1px solid "
             "#ccc;padding:2px 6px} pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}</style></head><body>",
             "<h1>pbpk: from a NONMEM dataset to a safe, explained, adaptive schedule</h1>",
             f"<pre>{html.escape(summary)}</pre>"]
    for title, items in sections.items():
        parts.append(f"<h2>{html.escape(title)}</h2>")
        for caption, item in items:
            if isinstance(item, pd.DataFrame):
                parts.append(f"<h3>{html.escape(caption)}</h3>{item.to_html(na_rep='')}")
            elif isinstance(item, Path):
                data = base64.b64encode(item.read_bytes()).decode()
                parts.append(f"<img src='data:image/png;base64,{data}' style='max-width:100%'>")
            else:
                parts.append(f"<h3>{html.escape(caption)}</h3><pre>{html.escape(str(item))}</pre>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
