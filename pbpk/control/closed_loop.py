"""The living twin in closed loop: a virtual true patient, possibly changing under treatment, is
dosed cycle by cycle; after each cycle its noisy samples reach the policy's twin, the twin
updates and the policy re-plans the next dose.

    drift = Drift(env.model, {"KD": 0.85, "slope": 1.08}, start_cycle=2)   # resistance, marrow
    result = run_closed_loop(env, PrecisionDosing(env, prior, ...), cohort, key, drift=drift)
    result.outcome.summary(); result.estimation_error()
    decision_seconds(env, policy, cohort, key)                # update + re-plan, after compilation

Three arms on the same patients and keys make the static-vs-adaptive comparison: the standard
protocol (``FixedSchedule``), a static plan optimised on the population and never updated
(``optimise_schedule``), and an adaptive policy holding a ``ParticleTwin`` (``PrecisionDosing``
or a ``ShieldedPolicy``).  The runner is ``policies.evaluate``'s loop with the drift applied to
the truth between cycles and the twin's estimate recorded at each decision; the policy sees only
the observation of the cycle just finished, so no decision can use later data.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..errors import ModelError, did_you_mean
from .env import DosingEnv, EnvState, Patients
from .particles import ParticleTwin
from .policies import Outcome, _evaluate

__all__ = ["Drift", "MissedDoses", "ClosedLoopResult", "run_closed_loop", "decision_seconds"]


class Drift(eqx.Module):
    """The true patient changing between cycles: after every cycle from ``start_cycle`` on, each
    named parameter is multiplied by its per-cycle factor — e.g. {"KD": 0.85} an acquired
    resistance (15 % less tumour kill per cycle), {"CL": 0.95} a declining clearance."""

    index: jax.Array
    factor: jax.Array
    start_cycle: int = eqx.field(static=True)

    def __init__(self, model, factors: Mapping[str, float], *, start_cycle: int = 1):
        names = list(model.parameter_names)
        for name, f in factors.items():
            if name not in names:
                raise ModelError(f"Drift: {name!r} is not a parameter of {model.name!r}." + did_you_mean(name, names))
            if not (np.isfinite(f) and f > 0):
                raise ModelError(f"Drift: the factor of {name!r} must be a positive number; got {f!r}.")
        if not (isinstance(start_cycle, int) and start_cycle >= 1):
            raise ModelError(f"Drift: start_cycle={start_cycle!r} must be a cycle number ≥ 1.")
        self.index = jnp.asarray([names.index(n) for n in factors], dtype=int)
        self.factor = jnp.asarray(list(factors.values()), dtype=jnp.float64)
        self.start_cycle = start_cycle

    def __call__(self, state: EnvState) -> EnvState:
        """The state after a step (``state.cycle`` cycles given) with the drift of that cycle."""
        f = jnp.where(state.cycle >= self.start_cycle, self.factor, 1.0)
        return eqx.tree_at(lambda s: s.theta, state, state.theta.at[self.index].multiply(f))


class MissedDoses(eqx.Module):
    """Doses the true patient does not receive although the plan — and so the twin — counts them
    as given (an oral course not taken, an administration not recorded): each cycle of
    ``cycles`` (numbered from 1; default every cycle) is missed with ``probability``.  A missed
    cycle gives the truth the hold action (dose 0) of the planned action's interval."""

    hold: jax.Array          # per action: the action with dose 0 and the same interval
    missable: jax.Array      # per cycle number 0..horizon: may this cycle be missed
    probability: jax.Array   # an array, not a static float: one compilation for every probability

    def __init__(self, env: DosingEnv, *, probability: float, cycles=None):
        if not (isinstance(probability, (int, float)) and 0.0 <= probability <= 1.0):
            raise ModelError(f"MissedDoses: probability={probability!r} must be a number in [0, 1].")
        doses, intervals = np.asarray(env.doses), np.asarray(env.intervals)
        hold = []
        for a in range(doses.size):
            zero = np.flatnonzero((doses == 0.0) & np.isclose(intervals, intervals[a]))
            if zero.size == 0:
                raise ModelError(f"MissedDoses: the env has no hold action (dose 0 every "
                                 f"{intervals[a] / env.day:g} days) to stand for a missed dose of action {a}.")
            hold.append(int(zero[0]))
        cycles = range(1, env.horizon + 1) if cycles is None else list(cycles)
        bad = [c for c in cycles if not (isinstance(c, (int, np.integer)) and 1 <= c <= env.horizon)]
        if bad:
            raise ModelError(f"MissedDoses: cycles {bad} are not cycle numbers 1..{env.horizon} of the env.")
        self.hold = jnp.asarray(hold, dtype=int)
        self.missable = jnp.zeros(env.horizon + 1, bool).at[jnp.asarray(list(cycles), dtype=int)].set(True)
        self.probability = jnp.asarray(probability, dtype=jnp.float64)

    def __call__(self, key, state: EnvState, action):
        """The action the truth receives in the cycle that starts at ``state``."""
        missed = self.missable[state.cycle + 1] & jax.random.bernoulli(key, self.probability)
        return jnp.where(missed, self.hold[jnp.asarray(action, dtype=int)], action)


@dataclasses.dataclass(frozen=True, eq=False)
class ClosedLoopResult:
    """A closed-loop run: the ``Outcome`` per patient; the true parameters in force during each
    cycle (n, H, P) and, for a policy holding a twin, the twin's posterior geometric mean used for
    each decision (n, H, P) and its effective sample size (n, H)."""

    outcome: Outcome
    parameter_names: tuple[str, ...]
    truth: np.ndarray
    estimate: np.ndarray | None
    effective_size: np.ndarray | None

    def estimation_error(self) -> pd.DataFrame:
        """Median over patients of |log(estimate / truth)| per decision (rows) and parameter."""
        if self.estimate is None:
            raise ModelError("ClosedLoopResult.estimation_error: the policy holds no ParticleTwin.")
        err = np.abs(np.log(self.estimate / self.truth))
        return pd.DataFrame(np.median(err, axis=0), columns=list(self.parameter_names)).rename_axis("cycle")


def run_closed_loop(env: DosingEnv, policy, patients: Patients, key, *, drift: Drift | None = None,
                    missed: MissedDoses | None = None, batch_size: int | None = None) -> ClosedLoopResult:
    """One course per patient of ``patients`` under ``policy`` (paired keys as in ``evaluate``).
    The outcome's actions are those the truth received (a missed cycle shows the hold).
    ``batch_size`` patients at a time bounds the memory of large twins (same keys; the same result to rounding)."""
    cohort = patients.cohort()
    n = cohort.theta.shape[0]
    keys, size = jax.random.split(key, n), batch_size or n
    chunks = [_evaluate(env, policy, jax.tree.map(lambda x: x[i:i + size], cohort), keys[i:i + size], drift, _record,
                        missed) for i in range(0, n, size)]
    outcome, (truth, estimate, ess) = jax.tree.map(lambda *parts: jnp.concatenate(parts), *chunks)
    has_twin = _twin(jax.eval_shape(lambda: policy.init(env.reset(jax.random.key(0), patients)[0]))) is not None
    return ClosedLoopResult(outcome, tuple(env.model.parameter_names), np.asarray(truth),
                            np.asarray(estimate) if has_twin else None, np.asarray(ess) if has_twin else None)


def decision_seconds(env: DosingEnv, policy, patients: Patients, key, *, repeats: int = 10) -> dict:
    """Wall time of one decision (``policy.act``: the twin's update with the last cycle's samples,
    then the re-plan) for one patient at the second cycle, timed ``repeats`` times after
    compilation: {"median", "max", "compile"} in seconds ("compile": the first two decisions'
    calls, compilation included)."""
    k_reset, k_act, k_step = jax.random.split(key, 3)
    obs, state = env.reset(k_reset, Patients(patients.theta[:1], patients.covariates[:1], patients.bsa[:1]))
    act = eqx.filter_jit(policy.act)
    t0 = time.perf_counter()
    action, carry = jax.block_until_ready(act(k_act, policy.init(obs), obs))
    obs, *_ = eqx.filter_jit(env.step_env)(k_step, state, action)
    jax.block_until_ready(act(k_act, carry, obs))    # a carry after a decision can trace anew (its dtypes)
    compile_s = time.perf_counter() - t0
    times = []
    for k in jax.random.split(k_act, repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(act(k, carry, obs))
        times.append(time.perf_counter() - t0)
    return {"median": float(np.median(times)), "max": float(np.max(times)), "compile": compile_s}


def _record(memory, state):
    twin = _twin(memory)
    if twin is None:
        nan = jnp.full_like(state.theta, jnp.nan)
        return state.theta, nan, jnp.zeros(())
    log_mean = jnp.sum(twin.weights[:, None] * jnp.log(twin.states.theta), axis=0)
    return state.theta, jnp.exp(log_mean), twin.effective_size()


def _twin(memory):
    found = [x for x in jax.tree.leaves(memory, is_leaf=lambda x: isinstance(x, ParticleTwin))
             if isinstance(x, ParticleTwin)]
    return found[0] if found else None
