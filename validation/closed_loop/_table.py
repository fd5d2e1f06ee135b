"""Shared by the closed-loop scripts: outcomes → table rows with bootstrap CIs, and the checks of
issue 8's targets for a safe policy against the standard protocol."""

from __future__ import annotations

from validation._record import Check


def summarise(outcomes: dict, seconds: dict, dose_unit: str):
    """(table rows, summaries) from {policy name: Outcome}; prints one line per policy."""
    table, summaries = [], {}
    for name, outcome in outcomes.items():
        s = outcome.summary()
        summaries[name] = s
        row = {"policy": name, "patients": s["patients"], "seconds": round(seconds.get(name, 0.0), 1)}
        for k in ("efficacy", "violation_rate", "cumulative_dose"):
            row[k] = round(s[k]["mean"], 4)
            row[k + "_ci95"] = [round(x, 4) for x in s[k]["ci"]]
        table.append(row)
        print(f"{name:>34}: efficacy {row['efficacy']:.3f} {row['efficacy_ci95']}  violations "
              f"{row['violation_rate']:.3f} {row['violation_rate_ci95']}  dose {row['cumulative_dose']:.0f} {dose_unit}")
    return table, summaries


def safety_checks(case: str, key: str, label: str, policy: dict, protocol: dict, efficacy_unit: str) -> list[Check]:
    """Violation rate ≤ 1 % and efficacy ≥ the protocol's, for one policy's summary."""
    n = policy["patients"]
    rate, gain = policy["violation_rate"]["mean"], policy["efficacy"]["mean"] - protocol["efficacy"]["mean"]
    return [Check(f"{case}.{key}_violations", f"{label}: share of patients crossing a limit (held-out n={n})",
                  "issue 8 target for safe policies", rate, "fraction", "<= 0.01", rate <= 0.01),
            Check(f"{case}.{key}_efficacy", f"{label}: efficacy minus the standard protocol's (same patients)",
                  "issue 8 target: efficacy >= protocol", gain, efficacy_unit, ">= 0", gain >= 0)]


def train_agents(env, pool, frames: int, cvar: float | None = None) -> tuple[dict, dict]:
    """PPO and PPO-Lagrangian (cost limit 0.01 per course), and with ``cvar`` PPO-CVaR (the
    worst ``cvar`` share of courses held to the same limit); seed 0: ({name: policy}, {name:
    training summary})."""
    import numpy as np

    from pbpk.control.agents import train_ppo

    variants = [("PPO", None, None), ("PPO-Lagrangian", 0.01, None)]
    if cvar is not None:
        variants.append((f"PPO-CVaR (worst {cvar:.0%})", 0.01, cvar))
    policies, training = {}, {}
    for name, limit, share in variants:
        policies[name], hist = train_ppo(env, pool, frames=frames, cost_limit=limit, cvar=share, seed=0)
        training[name] = {"seconds": round(hist.seconds, 1), "frames": hist.frames[-1],
                          "final_train_return": round(float(np.mean(hist.episode_return[-5:])), 4),
                          "final_train_cost": round(float(np.mean(hist.episode_cost[-5:])), 4),
                          "multiplier": round(hist.multiplier[-1], 3), **convergence(hist),
                          "curve": {"frames": list(hist.frames),
                                    "episode_return": [round(float(v), 4) for v in hist.episode_return],
                                    "episode_cost": [round(float(v), 4) for v in hist.episode_cost],
                                    "multiplier": [round(float(v), 4) for v in hist.multiplier]}}
    return policies, training


def evaluate_all(env, policies: dict, patients, key) -> tuple[dict, dict]:
    """({name: Outcome}, {name: seconds}) for every policy on the same patients and keys."""
    import time

    from pbpk.control import evaluate

    outcomes, seconds = {}, {}
    for name, policy in policies.items():
        t0 = time.perf_counter()
        outcomes[name] = evaluate(env, policy, patients, key)
        seconds[name] = time.perf_counter() - t0
    return outcomes, seconds


def first(patients, n: int):
    """The first ``n`` patients of a cohort."""
    from pbpk.control import Patients

    return Patients(patients.theta[:n], patients.covariates[:n], patients.bsa[:n])


def perturbed(model, patients, factors: dict):
    """The cohort with each named parameter multiplied by its factor (a truth the model lacks)."""
    import jax.numpy as jnp

    from pbpk.control import Patients

    theta = patients.theta
    for name, factor in factors.items():
        j = model.parameter_index(name)
        theta = theta.at[:, j].multiply(factor)
    return Patients(jnp.asarray(theta), patients.covariates, patients.bsa)


def convergence(history, share: float = 0.95) -> dict:
    """Training time to convergence: the first collection by which the 5-collection moving
    averages of the episode return and of the episode cost have both come ``share`` of the way
    from their first to their final values (within 5 % of the distance), in frames and seconds."""
    import numpy as np

    def first_reach(series):
        ma = np.convolve(np.asarray(series, float), np.ones(5) / 5, mode="valid")
        tol = (1 - share) * abs(ma[-1] - ma[0])
        return int(np.flatnonzero(np.abs(ma - ma[-1]) <= tol + 1e-12)[0]) + 4   # the average's last collection

    at = max(first_reach(history.episode_return), first_reach(history.episode_cost))
    frames = history.frames[at]
    return {"frames_to_converge": int(frames),
            "seconds_to_converge": round(history.seconds * frames / history.frames[-1], 1)}
