"""Dosing policies on a ``DosingEnv`` — the classical baselines — and their evaluation on a cohort.

A policy is a pure JAX value with ``init(obs) -> carry`` and ``act(key, carry, obs) -> (action,
carry)``: what it remembers between cycles is explicit, so a cohort is a ``vmap`` and a course
a ``lax.scan``, and every policy (fixed plan, label rules, a trained agent wrapped the same way)
is evaluated by the same ``evaluate`` on the same patients with the same keys.

    FixedSchedule(env, [env.standard] * env.horizon)        the standard protocol
    LabelRules(env, levels=(100, 75, 60), hold=("ANC", 21, 1.5), reduce=("ANC", 7, 0.5))
    optimise_schedule(env, patients, key)                   one plan for everyone, by gradient
                                                            through the simulator (optax)
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..errors import ModelError
from .env import DosingEnv, Patients

__all__ = ["FixedSchedule", "LabelRules", "Outcome", "compare", "evaluate", "optimise_schedule"]


class FixedSchedule(eqx.Module):
    """The same plan for every patient: ``actions[k]`` at step k (the last one repeated)."""

    actions: jax.Array

    def __init__(self, env: DosingEnv, actions):
        actions = np.asarray(actions, dtype=int).reshape(-1)
        if actions.size == 0 or actions.min() < 0 or actions.max() >= env.action_space.n:
            raise ModelError(f"FixedSchedule: actions must be indices 0..{env.action_space.n - 1}; got {actions}.")
        self.actions = jnp.asarray(actions)

    def init(self, obs):
        return jnp.zeros((), int)

    def act(self, key, carry, obs):
        return self.actions[jnp.minimum(carry, self.actions.shape[0] - 1)], carry + 1


class LabelRules(eqx.Module):
    """Dose-modification rules acting on what the clinic observes (the env's samples).

    Start at ``levels[0]``; hold (dose 0) while the pre-dose ``hold`` sample is below its
    threshold; after a cycle whose ``reduce`` sample is below its threshold, go one level down;
    below the lowest level, stop treatment.  A missing sample triggers nothing.  Each rule is
    (observation, sampling day, threshold), the day one of the env's sampling days.
    """

    level_actions: jax.Array
    hold_slot: int = eqx.field(static=True)
    hold_threshold: float = eqx.field(static=True)
    reduce_slot: int = eqx.field(static=True)
    reduce_threshold: float = eqx.field(static=True)
    hold_action: int = eqx.field(static=True)
    env: DosingEnv

    def __init__(self, env: DosingEnv, levels, *, hold, reduce):
        self.env = env
        self.level_actions = jnp.asarray([env.action_index(d) for d in levels])
        self.hold_action = env.action_index(0.0)
        (self.hold_slot, self.hold_threshold), (self.reduce_slot, self.reduce_threshold) = (
            (env.sample_slot(name, day), float(thr)) for name, day, thr in (hold, reduce))

    def init(self, obs):
        return jnp.zeros((), int)                     # the current level

    def act(self, key, level, obs):
        toxic = self.env.decode(obs, self.reduce_slot) < self.reduce_threshold
        last_dosed = obs[-1] > 0                      # the reduce sample belongs to a dosed cycle
        level = level + (toxic & last_dosed).astype(int)
        stopped = level >= self.level_actions.shape[0]
        held = self.env.decode(obs, self.hold_slot) < self.hold_threshold
        action = jnp.where(stopped | held, self.hold_action,
                           self.level_actions[jnp.minimum(level, self.level_actions.shape[0] - 1)])
        return action, level


class Outcome(eqx.Module):
    """Per patient: the episode's return (efficacy), its total cost, whether any limit was crossed
    (and which), the cumulative dose, the actions taken (−1 after the episode ended) and, per
    step, the reward and the limits crossed."""

    efficacy: jax.Array
    cost: jax.Array
    violated: jax.Array
    violations: jax.Array
    cumulative_dose: jax.Array
    actions: jax.Array
    rewards: jax.Array | None = None
    step_violations: jax.Array | None = None

    def summary(self, *, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> dict:
        """Means with percentile-bootstrap confidence intervals (patients resampled)."""
        rng = np.random.default_rng(seed)
        n = self.efficacy.shape[0]
        idx = rng.integers(0, n, (resamples, n))
        out = {}
        for name, v in (("efficacy", self.efficacy), ("violation_rate", self.violated.astype(float)),
                        ("cumulative_dose", self.cumulative_dose)):
            v = np.asarray(v, dtype=float)
            boot = v[idx].mean(axis=1)
            lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
            out[name] = {"mean": float(v.mean()), "ci": [float(lo), float(hi)]}
        out["patients"] = int(n)
        return out


def evaluate(env: DosingEnv, policy, patients: Patients, key, *, drift=None) -> Outcome:
    """Run ``policy`` for one episode on every patient of ``patients`` (one each, in order), the
    same keys for every policy given the same ``key``: paired comparisons.  ``drift`` (a
    ``pbpk.control.Drift``) changes each true patient's parameters between cycles."""
    cohort = patients.cohort()
    return _evaluate(env, policy, cohort, jax.random.split(key, cohort.theta.shape[0]), drift, None)[0]


@eqx.filter_jit
def _evaluate(env, policy, cohort, keys, drift, record, missed=None):
    """Outcomes (one key per patient of ``cohort``) and, with ``record(memory, state)``, what it
    returns after every decision; ``missed(key, state, action)`` the action the truth receives
    instead of the policy's."""

    def one(k, pool):
        k_reset, k_run = jax.random.split(k)
        obs, state = env.reset(k_reset, pool)

        def step(carry, k_step):
            obs, state, memory, alive = carry
            k_act, k_env = jax.random.split(k_step)
            action, memory = policy.act(k_act, memory, obs)
            seen = None if record is None else record(memory, state)
            if missed is not None:     # its own key stream: the other draws stay paired across arms
                action = missed(jax.random.fold_in(k_step, 1), state, action)
            obs2, state2, reward, cost, term, trunc, info = env.step_env(k_env, state, action)
            if drift is not None:
                state2 = drift(state2)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(alive, a, b), new, old)
            out = (jnp.where(alive, reward, 0.0), jnp.where(alive, cost, 0.0),
                   info["violations"] & alive, jnp.where(alive, action, -1), seen)
            return (keep(obs2, obs), keep(state2, state), memory, alive & ~(term | trunc)), out

        init = (obs, state, policy.init(obs), jnp.array(True))
        (_, last, _, _), (rewards, costs, violations, actions, seen) = jax.lax.scan(
            step, init, jax.random.split(k_run, env.horizon))
        return Outcome(rewards.sum(), costs.sum(), violations.any(), violations.any(axis=0),
                       last.cumulative_dose, actions, rewards, violations), seen

    return jax.vmap(one)(keys, cohort)


def compare(env: DosingEnv, policies: dict, patients: Patients, key):
    """Every policy of ``{name: policy}`` on the same patients with the same keys: a table of
    mean efficacy, violation rate and cumulative dose with bootstrap 95 % intervals, and the
    wall time of each evaluation (compilation included)."""
    import time

    import pandas as pd

    rows = []
    for name, policy in policies.items():
        t0 = time.perf_counter()
        s = evaluate(env, policy, patients, key).summary()
        row = {"policy": name, "patients": s["patients"]}
        for k in ("efficacy", "violation_rate", "cumulative_dose"):
            row[k], (row[f"{k} 2.5%"], row[f"{k} 97.5%"]) = s[k]["mean"], s[k]["ci"]
        rows.append(row | {"seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows).set_index("policy")


# ----------------------------------------------------------------------------- schedule optimisation
def optimise_schedule(env: DosingEnv, patients: Patients, key, *, violation_rate: float = 0.01,
                      steps: int = 300, learning_rate: float = 0.05, sharpness: float = 0.05,
                      multiplier_rate: float = 20.0):
    """One dose per cycle for every patient (a static plan), optimised through the simulator.

    Maximises the mean return over ``patients`` subject to a mean smoothed violation rate ≤
    ``violation_rate``, by gradient ascent (optax Adam) on doses in [0, max dose] with a
    Lagrange multiplier updated by dual ascent.  Limits are smoothed for the gradient: "beyond"
    becomes a sigmoid of the distance to the threshold (``sharpness`` relative), and "longer
    than d days" a sigmoid of (time beyond − d).  The continuous plan is then put on the env's
    dose levels by rounding down and climbing level by level while the exact violation rate on
    ``patients`` stays within ``violation_rate`` (``_climb_levels``).  Only for envs with one
    interval.  Returns (FixedSchedule, continuous doses, history dict).
    """
    if len(np.unique(np.asarray(env.intervals))) != 1:
        raise ModelError("optimise_schedule: the env offers several intervals; give it a single-interval env.")
    top = env.max_dose
    z0 = jnp.zeros((env.horizon,), dtype=jnp.float64)
    cohort = patients

    def objective(z, lam):
        doses = top * jax.nn.sigmoid(z)
        efficacy, soft = jax.vmap(lambda th, cv, b: _smooth_course(env, doses, th, cv, b, sharpness))(
            cohort.theta, cohort.covariates, cohort.bsa)
        rate = jnp.mean(soft)
        return -jnp.mean(efficacy) + lam * (rate - violation_rate), (jnp.mean(efficacy), rate)

    opt = optax.adam(learning_rate)

    @eqx.filter_jit
    def update(z, lam, state):
        (_, (eff, rate)), grad = jax.value_and_grad(objective, has_aux=True)(z, lam)
        upd, state = opt.update(grad, state, z)
        lam = jnp.maximum(lam + multiplier_rate * (rate - violation_rate), 0.0)
        return optax.apply_updates(z, upd), lam, state, eff, rate

    z, lam, state = z0, jnp.array(1.0, dtype=jnp.float64), opt.init(z0)
    history = {"efficacy": [], "violation": [], "multiplier": []}
    from tqdm.auto import tqdm

    for _ in tqdm(range(steps), desc="optimise_schedule", leave=False):
        z, lam, state, eff, rate = update(z, lam, state)
        for name, value in zip(history, (eff, rate, lam)):
            history[name].append(value)          # kept on the device: no host sync per step
    history = {name: [float(v) for v in np.asarray(values)] for name, values in history.items()}
    doses = np.asarray(top * jax.nn.sigmoid(z))
    plan = _climb_levels(env, doses, cohort, key, violation_rate)
    return FixedSchedule(env, plan), doses, history


def _climb_levels(env, doses, patients, key, violation_rate):
    """Action indices of a plan on the env's dose levels: start from the continuous plan rounded
    down, then raise one cycle by one level at a time — the raise with the best mean return whose
    *exact* (unsmoothed) violation rate over ``patients`` stays ≤ ``violation_rate`` — until no
    raise is feasible.  The smoothed constraint is conservative, so rounding down alone can leave
    much of the feasible dose unused."""
    levels = np.sort(np.unique(np.asarray(env.doses)))
    step = np.asarray([int(np.flatnonzero(levels <= d + 1e-9).max()) for d in doses])

    def score(idx):
        out = evaluate(env, FixedSchedule(env, [env.action_index(levels[i]) for i in idx]), patients, key)
        return float(out.efficacy.mean()), float(out.violated.mean())

    best, _ = score(step)
    while True:
        trials = []
        for k in np.flatnonzero(step < levels.size - 1):
            raised = step.copy()
            raised[k] += 1
            efficacy, rate = score(raised)
            if rate <= violation_rate and efficacy > best:
                trials.append((efficacy, raised))
        if not trials:
            return [env.action_index(levels[i]) for i in step]
        best, step = max(trials, key=lambda t: t[0])


def _smooth_course(env, doses, theta, cov, bsa, sharpness):
    """Return and smoothed any-violation indicator of one patient's course (noise-free)."""
    y = env.sim.initial_state(theta, cov)
    start = env._values(jnp.zeros(()), y, theta, cov)[env._reward_index]
    interval = env.intervals[0]
    dt = jnp.diff(env.sim.grid, append=env.sim.grid[-1]) / env.day

    def cycle(carry, dose):
        t, y, total, none = carry
        amount = dose * jnp.where(env.per_m2, bsa, 1.0) * env.dose_factor
        y_end, grid_y, grid_obs, inside, _ = env.sim.run(t, y, amount, interval, theta, cov)
        values = jnp.concatenate([grid_obs, grid_y], -1)
        end = env._values(t + interval, y_end, theta, cov)
        reward = env._reward(start, values, end, inside)
        for lim in env.limits:
            v = values[:, env._names.index(lim.observation)]
            scale = sharpness * abs(lim.threshold) + 1e-12
            beyond = jax.nn.sigmoid(((v - lim.threshold) if lim.side == "above" else (lim.threshold - v)) / scale)
            beyond = jnp.where(inside, beyond, 0.0)
            if lim.longer_than_days:
                p = jax.nn.sigmoid((jnp.sum(beyond * dt) - lim.longer_than_days) / 0.5)
            else:
                p = jnp.max(beyond)
            none = none * (1.0 - p)
        return (t + interval, y_end, total + reward, none), None

    (_, _, total, none), _ = jax.lax.scan(cycle, (jnp.zeros(()), y, jnp.zeros(()), jnp.ones(())), doses)
    return total, 1.0 - none

