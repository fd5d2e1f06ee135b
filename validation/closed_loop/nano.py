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
PPO and PPO-Lagrangian (cost limit 0.01 per course), greedy.  On the first 300 patients, the
twin-based policies (a 64-particle posterior from the population prior, updated with every
plasma sample): MIPD — the most dose-intense (dose, interval) whose posterior-median forecast
skin peak stays ≤ the skin limit — and the twin-forecast shield (δ 0.02) over PPO-Lagrangian.
Schedule optimisation by gradient needs a single interval, so it is not run for this case.

Misspecified truth: the same 300 patients with liposome clearance × 0.7 and skin extravasation
(PS_S) × 1.3 — more exposure than the model expects, part of it (the skin) unobserved by the
clinic's plasma samples (an illustrative perturbation, not a published subgroup).
"""

from __future__ import annotations

import argparse

from validation._record import write_results
from validation.closed_loop._table import evaluate_all, first, perturbed, safety_checks, summarise, train_agents

MISSPECIFICATION = {"CL_LIPO": 0.7, "PS_S": 1.3}


def main(quick: bool = False) -> None:
    import jax

    from pbpk.control import FixedSchedule, Patients, PrecisionDosing, ShieldedPolicy, nanoparticle_env

    env = nanoparticle_env()
    n_test, n_shield = (200, 60) if quick else (1000, 300)
    test = Patients.from_population(env.model.population(n_test, jax.random.key(2026)))
    pool = Patients.from_population(env.model.population(4096, jax.random.key(11)))
    policies = {"protocol 40 mg/m2 q4w": FixedSchedule(env, [env.action_index(40.0, 28.0)] * env.horizon),
                "label 50 mg/m2 q4w": FixedSchedule(env, [env.action_index(50.0, 28.0)] * env.horizon)}
    frames = 61_440 if quick else 614_400
    agents, training = train_agents(env, pool, frames)
    policies.update(agents)
    outcomes, seconds = evaluate_all(env, policies, test, jax.random.key(0))
    prior = Patients.from_population(env.model.population(64, jax.random.key(99)))
    subset = first(test, n_shield)
    skin = env.limits[0].threshold
    twin_policies = {
        "MIPD (median skin peak <= limit)": PrecisionDosing(env, prior, observation="C_skin", statistic="max",
                                                            target=skin),
        "PPO-Lagrangian + shield": ShieldedPolicy(env, policies["PPO-Lagrangian"], prior, delta=0.02)}
    twin_out, twin_sec = evaluate_all(env, twin_policies, subset, jax.random.key(0))
    same = ("protocol 40 mg/m2 q4w", "label 50 mg/m2 q4w", "PPO-Lagrangian")
    for name in same:
        twin_out[name] = jax.tree.map(lambda x: x[:n_shield], outcomes[name])
    outcomes.update({f"{k} (n={n_shield})": v for k, v in twin_out.items()})
    seconds.update({f"{k} (n={n_shield})": v for k, v in twin_sec.items()})
    truth = perturbed(env.model, subset, MISSPECIFICATION)
    mis_out, mis_sec = evaluate_all(env, {name: policies[name] for name in same} | twin_policies, truth,
                                    jax.random.key(0))
    outcomes.update({f"misspecified: {k}": v for k, v in mis_out.items()})
    seconds.update({f"misspecified: {k}": v for k, v in mis_sec.items()})
    table, summaries = summarise(outcomes, seconds, "mg/m2")
    proto = summaries["protocol 40 mg/m2 q4w"]
    unit = "mg·day/L tumour AUC"
    proto_sub = summaries[f"protocol 40 mg/m2 q4w (n={n_shield})"]
    checks = (safety_checks("nano", "shielded", "PPO-Lagrangian + twin shield (δ 0.02)",
                            summaries[f"PPO-Lagrangian + shield (n={n_shield})"], proto_sub, unit)
              + safety_checks("nano", "mipd", "MIPD (median skin peak ≤ limit)",
                              summaries[f"MIPD (median skin peak <= limit) (n={n_shield})"], proto_sub, unit)
              + safety_checks("nano", "ppo_lagrangian", "PPO-Lagrangian", summaries["PPO-Lagrangian"], proto, unit))
    write_results("closed_loop", checks, part="nano", extra={"table": table, "training": training, "details": {
        "test_patients": n_test, "shield_patients": n_shield, "limits": [lim.label() for lim in env.limits],
        "twin_particles": 64, "misspecification": MISSPECIFICATION, "quick": quick}})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    main(**vars(parser.parse_args()))
