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

from validation._record import write_results
from validation.closed_loop._table import safety_checks, summarise, train_agents


def main(quick: bool = False) -> None:
    import jax

    from pbpk.control import Patients, chemotherapy_env
    from pbpk.control.policies import FixedSchedule, LabelRules, evaluate, optimise_schedule

    env = chemotherapy_env()
    n_test = 200 if quick else 1000
    test = Patients.from_population(env.model.population(n_test, jax.random.key(2026)))
    train = Patients.from_population(env.model.population(64, jax.random.key(11)))
    start = time.perf_counter()
    plan, continuous, history = optimise_schedule(env, train, jax.random.key(1), steps=60 if quick else 300)
    seconds_opt = time.perf_counter() - start
    policies = {
        "protocol 75 mg/m2": FixedSchedule(env, [env.action_index(75.0)] * env.horizon),
        "protocol 100 mg/m2": FixedSchedule(env, [env.action_index(100.0)] * env.horizon),
        "label rules (100/75/60)": LabelRules(env, (100.0, 75.0, 60.0), hold=("ANC", 21.0, 1.5),
                                              reduce=("ANC", 7.0, 0.5)),
        "optimised static plan": plan,
    }
    pool = Patients.from_population(env.model.population(4096, jax.random.key(11)))
    frames = 30_720 if quick else 368_640
    agents, training = train_agents(env, pool, frames)
    policies.update(agents)
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
    table, summaries = summarise(outcomes, seconds, "mg/m2")
    proto = summaries["protocol 75 mg/m2"]
    proto_sub = jax.tree.map(lambda x: x[:n_shield], outcomes["protocol 75 mg/m2"]).summary()
    unit = "fraction of baseline SLD"
    checks = (safety_checks("chemo", "shielded", "PPO-Lagrangian + twin shield (δ 0.02)",
                            summaries[f"PPO-Lagrangian + shield (n={n_shield})"], proto_sub, unit)
              + safety_checks("chemo", "ppo_lagrangian", "PPO-Lagrangian", summaries["PPO-Lagrangian"], proto, unit)
              + safety_checks("chemo", "static_plan", "optimised static plan", summaries["optimised static plan"],
                              proto, unit))
    write_results("closed_loop", checks, part="chemo", extra={"table": table, "training": training, "details": {
        "optimised_plan_mg_m2": [round(float(d), 1) for d in continuous],
        "optimised_plan_levels": [float(env.doses[a]) for a in np.asarray(plan.actions)],
        "optimisation_seconds": round(seconds_opt, 1), "training_patients": 64, "test_patients": n_test,
        "final_smoothed_violation": history["violation"][-1], "quick": quick}})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    main(**vars(parser.parse_args()))
