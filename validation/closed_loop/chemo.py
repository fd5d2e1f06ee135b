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

Twin-based policies (a 64-particle posterior from the population prior, updated with every
sample seen; ``pbpk.control.particles``).  A decision simulates 64 particles × 7 actions, so
these rows use the first 300 patients of the cohort, with the other policies summarised on the
same 300 beside them:
* MIPD: model-informed precision dosing — the largest dose whose posterior-median forecast ANC
  nadir in the next cycle is ≥ 0.5 × 10⁹/L (the grade-4 line; ``pbpk.control.PrecisionDosing``);
* shielded: the twin-forecast shield (an action is masked when its forecast P(violation in the
  next cycle) > δ = 0.02) over PPO-Lagrangian and over protocol 100;
* cautious shield: over protocol 100 with δ = 0.001 and a wider rejuvenation kernel (jitter 0.2
  instead of 0.05), the setting that reached 1 % violations on 100 training patients (key 11,
  not the test cohort) — the other end of the twin's safety–efficacy trade-off.

Misspecified truth: the same 300 patients with docetaxel clearance × 0.75 and the neutrophils'
drug sensitivity (slope) × 1.3 — a population more exposed and more sensitive than the model
the agents were trained on and the twins start from (an illustrative perturbation, not a
published subgroup).  The fixed policies and PPO-Lagrangian cannot see the change except through
their observations; the twin-based policies re-weight their particles with every sample.

Targets (issue 8): safe policies ≤ 1 % violations with efficacy ≥ the protocol's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from validation._record import write_results
from validation.closed_loop._table import evaluate_all, first, perturbed, safety_checks, summarise, train_agents

MISSPECIFICATION = {"CL": 0.75, "slope": 1.3}


def main(quick: bool = False) -> None:
    import jax

    from pbpk.control import Patients, PrecisionDosing, ShieldedPolicy, chemotherapy_env
    from pbpk.control.policies import FixedSchedule, LabelRules, optimise_schedule

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
    n_twin = 60 if quick else 300
    prior = Patients.from_population(env.model.population(64, jax.random.key(99)))
    subset = first(test, n_twin)
    outcomes, seconds = evaluate_all(env, policies, test, jax.random.key(0))
    twin_policies = {
        "MIPD (median nadir >= 0.5)": PrecisionDosing(env, prior, observation="ANC", statistic="min", target=0.5),
        "PPO-Lagrangian + shield": ShieldedPolicy(env, policies["PPO-Lagrangian"], prior, delta=0.02),
        "protocol 100 mg/m2 + shield": ShieldedPolicy(env, policies["protocol 100 mg/m2"], prior, delta=0.02),
        "protocol 100 mg/m2 + cautious shield": ShieldedPolicy(env, policies["protocol 100 mg/m2"], prior,
                                                               delta=0.001, jitter=0.2)}
    twin_out, twin_sec = evaluate_all(env, twin_policies, subset, jax.random.key(0))
    same = ("protocol 75 mg/m2", "protocol 100 mg/m2", "label rules (100/75/60)", "PPO-Lagrangian")
    for name in same:
        twin_out[name] = jax.tree.map(lambda x: x[:n_twin], outcomes[name])
    outcomes.update({f"{k} (n={n_twin})": v for k, v in twin_out.items()})
    seconds.update({f"{k} (n={n_twin})": v for k, v in twin_sec.items()})
    truth = perturbed(env.model, subset, MISSPECIFICATION)
    mis_policies = {name: policies[name] for name in same} | {k: twin_policies[k] for k in
                                                              ("MIPD (median nadir >= 0.5)", "PPO-Lagrangian + shield")}
    mis_out, mis_sec = evaluate_all(env, mis_policies, truth, jax.random.key(0))
    outcomes.update({f"misspecified: {k}": v for k, v in mis_out.items()})
    seconds.update({f"misspecified: {k}": v for k, v in mis_sec.items()})
    table, summaries = summarise(outcomes, seconds, "mg/m2")
    proto = summaries["protocol 75 mg/m2"]
    proto_sub = summaries[f"protocol 75 mg/m2 (n={n_twin})"]
    unit = "fraction of baseline SLD"
    checks = (safety_checks("chemo", "shielded", "PPO-Lagrangian + twin shield (δ 0.02)",
                            summaries[f"PPO-Lagrangian + shield (n={n_twin})"], proto_sub, unit)
              + safety_checks("chemo", "mipd", "MIPD (median nadir ≥ 0.5)",
                              summaries[f"MIPD (median nadir >= 0.5) (n={n_twin})"], proto_sub, unit)
              + safety_checks("chemo", "ppo_lagrangian", "PPO-Lagrangian", summaries["PPO-Lagrangian"], proto, unit)
              + safety_checks("chemo", "static_plan", "optimised static plan", summaries["optimised static plan"],
                              proto, unit))
    write_results("closed_loop", checks, part="chemo", extra={"table": table, "training": training, "details": {
        "optimised_plan_mg_m2": [round(float(d), 1) for d in continuous],
        "optimised_plan_levels": [float(env.doses[a]) for a in np.asarray(plan.actions)],
        "optimisation_seconds": round(seconds_opt, 1), "training_patients": 64, "test_patients": n_test,
        "final_smoothed_violation": history["violation"][-1], "twin_patients": n_twin, "twin_particles": 64,
        "misspecification": MISSPECIFICATION, "quick": quick}})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    main(**vars(parser.parse_args()))
