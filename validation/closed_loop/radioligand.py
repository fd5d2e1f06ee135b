"""Radioligand case (177Lu-PSMA-617 every 6 weeks): RL agents and baselines on a held-out cohort.

    python -m validation.closed_loop.radioligand [--quick]

Environment ``pbpk.control.radioligand_env``: the 111-state PSMA PBPK model with dosimetry; 6
cycles; each action an activity of 0, 3.7, 5.55, 7.4 or 9.25 GBq.  The reward is the tumour BED
the cycle adds (Gy/10).  The costs are cumulative kidney BED above 40 Gy and salivary absorbed
dose above 25 Gy.  The clinic sees kidney, salivary-gland and tumour SPECT/CT activities on
days 1 and 4.

A course of the full model costs about 1 s per patient, so the evaluation replays per-patient
tables (``pbpk.control.tabulate``).  Each patient's cycle is solved once per activity level with
the full model, from the untreated body, at rtol 1e-4.  Between administrations 42 days pass,
6.3 physical half-lives.  The cumulative quantities (BED_kidney, D_salivary, BED_tumour) add up
over cycles; the activities carried over are dropped.  The first check measures what that
costs against the full environment, on 8 patients through a mixed plan.

The held-out cohort is 1,000 virtual patients (key 2026) and the training pool 256 (key 11).
Every policy gets the same keys (paired comparison); CIs are bootstrap 95 %.

Policies:
* the label's 6 × 7.4 GBq, and 6 × 5.55 and 6 × 3.7 GBq;
* PPO, PPO-Lagrangian (cost limit 0.01 per course) and PPO-CVaR (the worst 10 % of courses
  held to the same limit), greedy.

On the first 300 patients, the twin-based policies.  The twin is a 64-particle posterior: 64
tabulated prior patients, weighted by every SPECT sample.
* MIPD: the highest activity whose posterior-median, or 90th-percentile, forecast cumulative
  salivary dose stays ≤ 25 Gy;
* the twin-forecast shield (δ 0.02) over PPO-Lagrangian.

Misspecified truth: the same 300 patients with salivary PSMA density (Rden_salivary) × 1.3, so
more salivary uptake than the population model expects (an illustrative perturbation, not a
published subgroup).  The salivary images show it: the twin re-weights its particles on them,
while the agents see the images too but learned their policy on the population model.
"""

from __future__ import annotations

import argparse

from validation._record import Check, write_results
from validation.closed_loop._table import evaluate_all, first, perturbed, safety_checks, summarise, train_agents

CUMULATIVE = ("BED_kidney", "D_salivary", "BED_tumour")
MISSPECIFICATION = {"Rden_salivary": 1.3}
CVAR = 0.1                                          # PPO-CVaR: the worst tenth of courses
MIXED_PLAN = (9.25, 3.7, 9.25, 0.0, 7.4, 5.55)      # GBq: every level, a hold, high after low


def main(quick: bool = False) -> None:
    import jax

    from pbpk.control import FixedSchedule, Patients, PrecisionDosing, ShieldedPolicy, radioligand_env, tabulate

    env = radioligand_env(grid_hours=42 * 24.0, rtol=1e-4, atol=1e-6)    # grid: days 0, 1, 4, 42
    n_test, n_pool, n_shield = (200, 128, 60) if quick else (1000, 256, 300)
    population = lambda n, seed: Patients.from_population(env.model.population(n, jax.random.key(seed)))
    test, pool, prior = population(n_test, 2026), population(n_pool, 11), population(64, 99)

    def table(patients):
        return tabulate(env, patients, cumulative=CUMULATIVE)

    replay, test_t = table(test)
    pool_t, prior_t = table(pool)[1], table(prior)[1]
    fidelity = replay_fidelity(env, replay, first(test, 8), first(test_t, 8))
    fixed = {f"{a:g} GBq x6" + (" (label)" if a == 7.4 else ""): a for a in (7.4, 5.55, 3.7)}
    policies = {name: FixedSchedule(replay, [replay.action_index(a)] * replay.horizon) for name, a in fixed.items()}
    frames = 61_440 if quick else 614_400
    agents, training = train_agents(replay, pool_t, frames, cvar=CVAR)
    policies.update(agents)
    outcomes, seconds = evaluate_all(replay, policies, test_t, jax.random.key(0))

    mipd = lambda q: PrecisionDosing(replay, prior_t, observation="D_salivary", statistic="max", target=25.0,
                                     quantile=q)
    twin_policies = {"MIPD (median salivary dose <= 25 Gy)": mipd(0.5),
                     "MIPD (90th percentile salivary dose <= 25 Gy)": mipd(0.9),
                     "PPO-Lagrangian + shield": ShieldedPolicy(replay, policies["PPO-Lagrangian"], prior_t, delta=0.02)}
    subset = first(test_t, n_shield)
    twin_out, twin_sec = evaluate_all(replay, twin_policies, subset, jax.random.key(0))
    same = ("7.4 GBq x6 (label)", "PPO-Lagrangian")
    for name in same:
        twin_out[name] = jax.tree.map(lambda x: x[:n_shield], outcomes[name])
    outcomes.update({f"{k} (n={n_shield})": v for k, v in twin_out.items()})
    seconds.update({f"{k} (n={n_shield})": v for k, v in twin_sec.items()})

    truth = table(perturbed(env.model, first(test, n_shield), MISSPECIFICATION))[1]
    mis_out, mis_sec = evaluate_all(replay, {name: policies[name] for name in same} | twin_policies, truth,
                                    jax.random.key(0))
    outcomes.update({f"misspecified: {k}": v for k, v in mis_out.items()})
    seconds.update({f"misspecified: {k}": v for k, v in mis_sec.items()})

    table_rows, summaries = summarise(outcomes, seconds, "GBq")
    unit = "Gy/10 tumour BED"
    proto, proto_sub = summaries["7.4 GBq x6 (label)"], summaries[f"7.4 GBq x6 (label) (n={n_shield})"]
    checks = [fidelity_check(fidelity)]
    checks += safety_checks("radioligand", "shielded", "PPO-Lagrangian + twin shield (δ 0.02)",
                            summaries[f"PPO-Lagrangian + shield (n={n_shield})"], proto_sub, unit)
    checks += safety_checks("radioligand", "mipd", "MIPD (median salivary dose ≤ 25 Gy)",
                            summaries[f"MIPD (median salivary dose <= 25 Gy) (n={n_shield})"], proto_sub, unit)
    checks += safety_checks("radioligand", "ppo_lagrangian", "PPO-Lagrangian", summaries["PPO-Lagrangian"], proto, unit)
    checks += safety_checks("radioligand", "ppo_cvar", f"PPO-CVaR (worst {CVAR:.0%})",
                            summaries[f"PPO-CVaR (worst {CVAR:.0%})"], proto, unit)
    write_results("closed_loop", checks, part="radioligand", extra={"table": table_rows, "training": training, "details": {
        "test_patients": n_test, "training_pool": n_pool, "shield_patients": n_shield,
        "limits": [lim.label() for lim in env.limits], "twin_particles": 64, "misspecification": MISSPECIFICATION,
        "replay_fidelity": fidelity, "quick": quick}})


def replay_fidelity(env, replay, patients, tables) -> dict:
    """Largest relative difference, over ``patients`` and the mixed plan, between the full
    environment and the replayed tables: per-cycle tumour BED, and the cumulative kidney BED
    and salivary dose at the end of the course."""
    import time

    import numpy as np

    plan = [env.action_index(a) for a in MIXED_PLAN]
    t0 = time.perf_counter()
    full, rep = _course(env, plan, patients), _course(replay, plan, tables)
    treated = np.asarray(MIXED_PLAN) > 0
    rel = lambda q, mask=slice(None): float(np.max(np.abs(rep[q][:, mask] / full[q][:, mask] - 1)))
    return {"patients": len(patients), "plan_GBq": list(MIXED_PLAN), "tumour_BED_per_cycle": rel("BED_tumour", treated),
            "kidney_BED": rel("BED_kidney"), "salivary_dose": rel("D_salivary"),
            "largest_held_cycle_tumour_BED_Gy": float(np.max(np.abs(full["BED_tumour"][:, ~treated]))),
            "seconds": round(time.perf_counter() - t0, 1)}


def _course(env, plan, patients) -> dict:
    """Per patient, through ``plan`` (noise-free): the tumour BED each cycle adds (Gy) and the
    cumulative kidney BED and salivary dose after it (one column, Gy)."""
    import jax
    import numpy as np

    names = env.model.observation_names + env.model.state_names
    cols = np.asarray([names.index(q) for q in CUMULATIVE])

    def course(theta, cov, bsa):
        state, out = env.initial_state(theta, cov, bsa), []
        for a in plan:
            before = env.baseline_values(state)[cols]
            state = env.transition(state, a)[0]
            out.append(env.baseline_values(state)[cols] - before)
        return jax.numpy.stack(out)

    steps = np.asarray(jax.jit(jax.vmap(course))(patients.theta, patients.covariates, patients.bsa))
    return {"BED_kidney": steps[:, :, 0].sum(1, keepdims=True), "D_salivary": steps[:, :, 1].sum(1, keepdims=True),
            "BED_tumour": steps[:, :, 2]}


def fidelity_check(f: dict) -> Check:
    worst = max(f["tumour_BED_per_cycle"], f["kidney_BED"], f["salivary_dose"])
    return Check("radioligand.replay_error", "Replayed tables vs the full PSMA model: largest relative difference of "
                 f"per-cycle tumour BED, kidney BED and salivary dose ({f['patients']} patients, mixed plan)",
                 "the full environment at the same tolerances, measured in this run", worst, "relative", "<= 1e-3",
                 worst <= 1e-3, note=f"tumour {f['tumour_BED_per_cycle']:.1e}, kidney {f['kidney_BED']:.1e}, "
                                     f"salivary {f['salivary_dose']:.1e}; a held cycle's tumour BED in the full "
                                     f"model (from the activity carried over): ≤ {f['largest_held_cycle_tumour_BED_Gy']:.1e} Gy")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    main(**vars(parser.parse_args()))
