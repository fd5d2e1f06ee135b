"""Nanoparticle case (PEGylated liposomal doxorubicin): RL agents and baselines on a held-out
cohort.

    python -m validation.closed_loop.nano [--quick]

Environment ``pbpk.control.nanoparticle_env`` (``pld_human``: Doxil-label liposomal PK composed
with the Kontny free-drug model, tumour and skin deposition; 24 weeks; each action a dose 0–50
mg/m² and an interval of 14, 21 or 28 days; reward = tumour doxorubicin AUC over the interval;
costs = peak skin concentration above the 90th percentile under 40 mg/m² q4w, and cumulative
anthracycline above 450 mg/m²).  Held-out cohort: 1,000 virtual patients (key 2026); a training
pool of 4,096 (key 11).  Same keys for every policy (paired); bootstrap 95 % CIs.

Policies: the standard 40 mg/m² q4w (the HFS-sparing practice) and the label's 50 mg/m² q4w;
PPO and PPO-Lagrangian (cost limit 0.01 per course), greedy; the twin-forecast shield (64
particles, δ 0.02) over PPO-Lagrangian on the first 300 patients.  Schedule optimisation by
gradient needs a single interval, so it is not run for this case.
"""

from __future__ import annotations

import argparse
import time

from validation._record import write_results
from validation.closed_loop._table import safety_checks, summarise, train_agents


def main(quick: bool = False) -> None:
    import jax

    from pbpk.control import FixedSchedule, Patients, ShieldedPolicy, evaluate, nanoparticle_env

    env = nanoparticle_env()
    n_test, n_shield = (200, 60) if quick else (1000, 300)
    test = Patients.from_population(env.model.population(n_test, jax.random.key(2026)))
    pool = Patients.from_population(env.model.population(4096, jax.random.key(11)))
    policies = {"protocol 40 mg/m2 q4w": FixedSchedule(env, [env.action_index(40.0, 28.0)] * env.horizon),
                "label 50 mg/m2 q4w": FixedSchedule(env, [env.action_index(50.0, 28.0)] * env.horizon)}
    frames = 61_440 if quick else 614_400
    agents, training = train_agents(env, pool, frames)
    policies.update(agents)
    outcomes, seconds = {}, {}
    for name, policy in policies.items():
        t0 = time.perf_counter()
        outcomes[name] = evaluate(env, policy, test, jax.random.key(0))
        seconds[name] = time.perf_counter() - t0
    prior = Patients.from_population(env.model.population(64, jax.random.key(99)))
    subset = Patients(test.theta[:n_shield], test.covariates[:n_shield], test.bsa[:n_shield])
    t0 = time.perf_counter()
    shielded = f"PPO-Lagrangian + shield (n={n_shield})"
    outcomes[shielded] = evaluate(env, ShieldedPolicy(env, policies["PPO-Lagrangian"], prior, delta=0.02), subset,
                                  jax.random.key(0))
    seconds[shielded] = time.perf_counter() - t0
    for name in ("PPO-Lagrangian", "protocol 40 mg/m2 q4w"):
        outcomes[f"{name} (same n={n_shield})"] = jax.tree.map(lambda x: x[:n_shield], outcomes[name])
    table, summaries = summarise(outcomes, seconds, "mg/m2")
    proto = summaries["protocol 40 mg/m2 q4w"]
    unit = "mg·day/L tumour AUC"
    checks = (safety_checks("nano", "shielded", "PPO-Lagrangian + twin shield (δ 0.02)", summaries[shielded],
                            summaries[f"protocol 40 mg/m2 q4w (same n={n_shield})"], unit)
              + safety_checks("nano", "ppo_lagrangian", "PPO-Lagrangian", summaries["PPO-Lagrangian"], proto, unit))
    write_results("closed_loop", checks, part="nano", extra={"table": table, "training": training, "details": {
        "test_patients": n_test, "shield_patients": n_shield, "limits": [lim.label() for lim in env.limits],
        "quick": quick}})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    main(**vars(parser.parse_args()))
