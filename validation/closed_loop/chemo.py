"""Chemotherapy case (docetaxel q3w, TNBC): RL agents and classical dosing baselines on a held-out
cohort.

    python -m validation.closed_loop.chemo [--quick]

Environment ``pbpk.control.chemotherapy_env`` (Bruno PK → Kloft neutropenia → Claret tumour size;
six 21-day cycles; reward = tumour shrinkage as a fraction of baseline; cost = ANC < 0.5 × 10⁹/L
for more than 7 days in a cycle).  Held-out cohort: 1,000 virtual patients (IIV of the three
models, key 2026) never used for fitting or optimisation; every policy sees the same patients and
the same noise keys (paired).  Bootstrap 95 % CIs over patients (2,000 resamples).

Policies:
* protocol 75: 75 mg/m² every cycle (the case's standard);
* protocol 100: 100 mg/m² every cycle (the label's starting dose for breast cancer);
* label rules: start at 100, hold while pre-dose ANC < 1.5, one level down (100 → 75 → 60 → stop)
  after a cycle whose day-7 ANC was < 0.5 — the docetaxel label's rules acting on what is
  observed (the label's "> 7 days" cannot be seen with weekly counts; the day-7 nadir sample is the
  observable proxy);
* optimised static plan: one dose per cycle for everyone, optimised by gradient through the
  simulator on 64 training patients (optax Adam, smoothed constraint, dual ascent on a 1 %
  violation target), rounded down to the env's dose levels.

* PPO: torchrl clipped PPO on the torchrl-exported environment, patients drawn from a training
  population of 4,096 (key 11, disjoint from the test cohort), reward = shrinkage, no constraint;
* PPO-Lagrangian: the same with the cost (limit 0.01 per course) and a dual-ascent multiplier.
  Both are evaluated greedily (argmax) as pure-JAX policies with the trained weights.

* shielded: the twin-forecast shield (``pbpk.control.shield``: a 64-particle posterior from the
  population prior, updated with every sample seen; an action is masked when its forecast
  P(violation in the next cycle) > δ = 0.02) over PPO-Lagrangian and over protocol 100.  A
  shielded decision simulates 64 particles × 7 cycles, so these rows use the first 300 patients
  of the cohort, and the unshielded policies are summarised on the same 300 beside them.

Targets (issue 8): safe policies ≤ 1 % violations with efficacy ≥ the protocol's.
Model-informed precision dosing (a per-patient MAP/NUTS twin re-fitted every cycle) is not in this
table yet.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from validation._record import Check, write_results


def main(quick: bool = False) -> None:
    import jax

    from pbpk.control import Patients, chemotherapy_env
    from pbpk.control.agents import train_ppo
    from pbpk.control.policies import FixedSchedule, LabelRules, evaluate, optimise_schedule

    env = chemotherapy_env()
    n_test = 200 if quick else 1000
    test = Patients.from_population(env.model.population(n_test, jax.random.key(2026)))
    train = Patients.from_population(env.model.population(64, jax.random.key(11)))
    level = lambda d: int(np.flatnonzero(np.isclose(np.asarray(env.doses), d))[0])
    start = time.perf_counter()
    plan, continuous, history = optimise_schedule(env, train, jax.random.key(1), steps=60 if quick else 300)
    seconds_opt = time.perf_counter() - start
    policies = {
        "protocol 75 mg/m2": FixedSchedule(env, [level(75.0)] * env.horizon),
        "protocol 100 mg/m2": FixedSchedule(env, [level(100.0)] * env.horizon),
        "label rules (100/75/60)": LabelRules(env, (100.0, 75.0, 60.0), hold=("ANC", 21.0, 1.5),
                                              reduce=("ANC", 7.0, 0.5)),
        "optimised static plan": plan,
    }
    pool = Patients.from_population(env.model.population(4096, jax.random.key(11)))
    frames = 30_720 if quick else 368_640
    training = {}
    for name, limit in (("PPO", None), ("PPO-Lagrangian", 0.01)):
        policies[name], hist = train_ppo(env, pool, frames=frames, cost_limit=limit, seed=0)
        training[name] = {"seconds": round(hist.seconds, 1), "frames": hist.frames[-1],
                          "final_train_return": round(float(np.mean(hist.episode_return[-5:])), 4),
                          "final_train_cost": round(float(np.mean(hist.episode_cost[-5:])), 4),
                          "multiplier": round(hist.multiplier[-1], 3)}
    from pbpk.control.shield import ShieldedPolicy

    n_shield = 60 if quick else 300
    prior = Patients.from_population(env.model.population(64, jax.random.key(99)))
    subset = Patients(test.theta[:n_shield], test.covariates[:n_shield], test.bsa[:n_shield])
    outcomes, seconds = {}, {}
    for name, policy in policies.items():
        t0 = time.perf_counter()
        outcomes[name] = evaluate(env, policy, test, jax.random.key(0))
        seconds[name] = time.perf_counter() - t0
    for name in ("PPO-Lagrangian", "protocol 100 mg/m2"):
        t0 = time.perf_counter()
        shielded = ShieldedPolicy(env, policies[name], prior, delta=0.02)
        outcomes[f"{name} + shield (n={n_shield})"] = evaluate(env, shielded, subset, jax.random.key(0))
        seconds[f"{name} + shield (n={n_shield})"] = time.perf_counter() - t0
        outcomes[f"{name} (same n={n_shield})"] = jax.tree.map(lambda x: x[:n_shield], outcomes[name])
        seconds[f"{name} (same n={n_shield})"] = 0.0
    table, summaries = [], {}
    for name, outcome in outcomes.items():
        s = outcome.summary()
        summaries[name] = s
        row = {"policy": name, "patients": s["patients"], "seconds": round(seconds[name], 1)}
        for k in ("efficacy", "violation_rate", "cumulative_dose"):
            row[k] = round(s[k]["mean"], 4)
            row[k + "_ci95"] = [round(x, 4) for x in s[k]["ci"]]
        table.append(row)
        print(f"{name:>26}: efficacy {row['efficacy']:.3f} {row['efficacy_ci95']}  violations "
              f"{row['violation_rate']:.3f} {row['violation_rate_ci95']}  dose {row['cumulative_dose']:.0f} mg/m2")
    proto, static = summaries["protocol 75 mg/m2"], summaries["optimised static plan"]
    lag = summaries["PPO-Lagrangian"]
    shielded = summaries[f"PPO-Lagrangian + shield (n={n_shield})"]
    proto_sub = jax.tree.map(lambda x: x[:n_shield], outcomes["protocol 75 mg/m2"]).summary()
    checks = [
        Check("chemo.shielded_violations", f"PPO-Lagrangian + twin shield (δ 0.02): grade-4 > 7 d (n={n_shield})",
              "issue 8 target for safe agents", shielded["violation_rate"]["mean"], "fraction", "<= 0.01",
              shielded["violation_rate"]["mean"] <= 0.01),
        Check("chemo.shielded_efficacy", f"PPO-Lagrangian + shield: shrinkage minus protocol 75's (same {n_shield})",
              "issue 8 target: efficacy >= protocol", shielded["efficacy"]["mean"] - proto_sub["efficacy"]["mean"],
              "fraction of baseline SLD", ">= 0", shielded["efficacy"]["mean"] >= proto_sub["efficacy"]["mean"]),
        Check("chemo.ppo_lagrangian_violations", "PPO-Lagrangian: patients with grade-4 neutropenia > 7 days "
              f"(held-out n={n_test})", "issue 8 target for safe agents", lag["violation_rate"]["mean"], "fraction",
              "<= 0.01", lag["violation_rate"]["mean"] <= 0.01),
        Check("chemo.ppo_lagrangian_efficacy", "PPO-Lagrangian: tumour shrinkage minus that of protocol 75 mg/m²",
              "issue 8 target: efficacy >= protocol", lag["efficacy"]["mean"] - proto["efficacy"]["mean"],
              "fraction of baseline SLD", ">= 0", lag["efficacy"]["mean"] >= proto["efficacy"]["mean"]),
        Check("chemo.static_plan_violations", "optimised static plan: patients with grade-4 neutropenia > 7 days "
              f"(held-out n={n_test})", "issue 8 target for safe policies", static["violation_rate"]["mean"], "fraction",
              "<= 0.01", static["violation_rate"]["mean"] <= 0.01),
        Check("chemo.static_plan_efficacy", "optimised static plan: tumour shrinkage vs protocol 75 mg/m² "
              "(difference of means)", "issue 8 target: efficacy >= protocol",
              static["efficacy"]["mean"] - proto["efficacy"]["mean"], "fraction of baseline SLD", ">= 0",
              static["efficacy"]["mean"] >= proto["efficacy"]["mean"]),
    ]
    write_results("closed_loop", checks, part="chemo", extra={"table": table, "training": training, "details": {
        "optimised_plan_mg_m2": [round(float(d), 1) for d in continuous],
        "optimised_plan_levels": [float(env.doses[a]) for a in np.asarray(plan.actions)],
        "optimisation_seconds": round(seconds_opt, 1), "training_patients": 64, "test_patients": n_test,
        "final_smoothed_violation": history["violation"][-1], "quick": quick}})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    main(**vars(parser.parse_args()))
