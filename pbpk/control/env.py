"""Dosing environments: a compiled patient model as a constrained MDP, in pure JAX.

The shape is gymnax's: functional ``reset(key, patients)`` and ``step(key, state, action,
patients)`` with everything explicit, so a virtual cohort is a ``vmap`` and a training loop a
``lax.scan``.  One step is one treatment cycle (or dosing interval) integrated with the compiled
model by ``CycleSimulator``; the action indexes a table of (dose, interval) choices — a dose of 0
is a hold.  The step returns a reward (the case's efficacy), a **cost** (how many constraints the
cycle crossed) and, separately, ``terminated`` (the course is over) and ``truncated`` (the solver
failed, so the episode is cut rather than ended).

The agent sees what a clinic sees: each ``Sample``'s observation at its sampling days within the
cycle, with the model's residual-error noise and, optionally, missing samples; plus the cycle
number, the cumulative dose and the last dose.  The true state stays in ``EnvState``.

    env = DosingEnv(model, doses=(0, 60, 75, 100), dose_unit="mg/m^2", into="central",
                    interval_days=21, horizon=6, infusion_hours=1,
                    samples=(Sample("ANC", days=(7, 21), scale=5.0),),
                    reward=Reward("SLD", "decrease", relative=True),
                    limits=(Limit("ANC", 0.5, "below", longer_than_days=7),))
    patients = Patients.from_population(model.population(1000, key))
    obs, state = env.reset(key, patients)
    obs, state, reward, cost, terminated, truncated, info = env.step(key, state, action, patients)
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..compile import CompiledModel
from ..errors import ModelError, did_you_mean
from ..spec.units import convert_factor, parse_unit
from .cycles import CycleSimulator

__all__ = ["Box", "Discrete", "DosingEnv", "EnvState", "Limit", "Patients", "Reward", "Sample"]

_REWARD_KINDS = ("decrease", "increase", "auc")
_SIDES = ("above", "below")


# ----------------------------------------------------------------------------- spaces
@dataclass(frozen=True)
class Discrete:
    """Actions 0 … n−1."""

    n: int

    def contains(self, x) -> bool:
        return bool(0 <= int(x) < self.n)


@dataclass(frozen=True)
class Box:
    """Real vectors of ``shape`` within [low, high]."""

    low: float
    high: float
    shape: tuple[int, ...]


# ----------------------------------------------------------------------------- task declarations
@dataclass(frozen=True)
class Sample:
    """``observation`` measured on each of ``days`` after the cycle's dose (the last day of a
    cycle is the next cycle's pre-dose sample), with the model's residual error; the agent sees
    value / ``scale`` (log(value / scale) with ``log``); each sample is missing with
    probability ``missing``, and a day beyond a shortened cycle is missing."""

    observation: str
    days: tuple[float, ...]
    scale: float = 1.0
    log: bool = False
    missing: float = 0.0

    def __post_init__(self):
        if not self.days or any(not d > 0 for d in self.days):
            raise ModelError(f"Sample({self.observation!r}): days={self.days!r} must be positive days after the dose.")
        if not self.scale > 0 or not 0.0 <= self.missing < 1.0:
            raise ModelError(f"Sample({self.observation!r}): scale must be > 0 and missing in [0, 1).")


@dataclass(frozen=True)
class Reward:
    """Efficacy per step from ``observation`` on the cycle's grid: "decrease" (value at the start
    − value at the end), "increase" (end − start) or "auc" (integral over the cycle, per day);
    divided by ``scale``, and with ``relative`` also by the patient's value at reset, so that the
    episode's return is e.g. the fractional tumour shrinkage."""

    observation: str
    kind: str = "decrease"
    scale: float = 1.0
    relative: bool = False

    def __post_init__(self):
        if self.kind not in _REWARD_KINDS:
            raise ModelError(f"Reward({self.observation!r}): kind={self.kind!r}; expected one of {list(_REWARD_KINDS)}."
                             + did_you_mean(self.kind, _REWARD_KINDS))
        if not self.scale > 0:
            raise ModelError(f"Reward({self.observation!r}): scale={self.scale!r} must be positive.")


@dataclass(frozen=True)
class Limit:
    """A constraint: ``observation`` must not go ``side`` ("above"/"below") ``threshold`` (in the
    observation's unit) for longer than ``longer_than_days`` within a cycle (0: at any time).
    A step's cost counts the limits it crossed; a cumulative quantity above its limit costs in
    every step from the crossing on."""

    observation: str
    threshold: float
    side: str = "above"
    longer_than_days: float = 0.0
    source: str = ""

    def __post_init__(self):
        if self.side not in _SIDES:
            raise ModelError(f"Limit({self.observation!r}): side={self.side!r}; expected 'above' or 'below'."
                             + did_you_mean(self.side, _SIDES))
        if not np.isfinite(self.threshold) or self.longer_than_days < 0:
            raise ModelError(f"Limit({self.observation!r}): threshold must be finite and longer_than_days >= 0.")

    def label(self) -> str:
        rel = ">" if self.side == "above" else "<"
        lasting = f" for > {self.longer_than_days:g} d" if self.longer_than_days else ""
        return f"{self.observation} {rel} {self.threshold:g}{lasting}"


# ----------------------------------------------------------------------------- patients and state
class Patients(eqx.Module):
    """The patients an environment draws from: parameter vectors (K, P), covariates (K, C) and
    body-surface areas (K,) for per-m² doses.  ``reset`` picks one uniformly with its key; give a
    pool of one (and ``vmap`` over a leading axis) to run a fixed cohort patient by patient."""

    theta: jax.Array
    covariates: jax.Array
    bsa: jax.Array

    @classmethod
    def from_population(cls, population, bsa=None) -> "Patients":
        """From ``model.population(...)``; BSA from a "BSA" covariate if the model has one, else
        ``bsa`` (default 1.8 m²)."""
        return cls._build(population.theta, population.covariates, population.covariate_names, bsa)

    @classmethod
    def from_posterior(cls, posterior, n: int, key, covariates=None, bsa=None) -> "Patients":
        """``n`` draws of one patient's posterior (a twin): the same patient, its uncertainty."""
        model = posterior.model
        theta = posterior.theta()
        pick = jax.random.choice(key, theta.shape[0], (n,), replace=theta.shape[0] < n)
        cov = model.covariate_reference if covariates is None else jnp.asarray(covariates, dtype=jnp.float64)
        return cls._build(theta[pick], jnp.broadcast_to(cov, (n, cov.shape[-1])), model.covariate_names, bsa)

    @classmethod
    def typical(cls, model: CompiledModel, bsa=None) -> "Patients":
        return cls._build(model.theta[None], model.covariate_reference[None], model.covariate_names, bsa)

    @classmethod
    def _build(cls, theta, cov, cov_names, bsa):
        theta = jnp.asarray(theta, dtype=jnp.float64)
        cov = jnp.asarray(cov, dtype=jnp.float64).reshape(theta.shape[0], -1)
        if bsa is None:
            bsa = cov[:, cov_names.index("BSA")] if "BSA" in cov_names else 1.8
        return cls(theta, cov, jnp.broadcast_to(jnp.asarray(bsa, dtype=jnp.float64), theta.shape[:1]))

    def __len__(self) -> int:
        return self.theta.shape[0]

    def cohort(self) -> "Patients":
        """Each patient as a pool of one, along a leading axis to ``vmap`` over."""
        return Patients(self.theta[:, None], self.covariates[:, None], self.bsa[:, None])


class EnvState(eqx.Module):
    """The true state of one patient's episode (hidden from the agent)."""

    time: jax.Array            # model time unit
    y: jax.Array               # model states
    cycle: jax.Array           # steps taken
    cumulative_dose: jax.Array # in the action's dose unit (per m² for per-m² doses)
    last_dose: jax.Array
    reference: jax.Array       # the reward observation at reset (for relative rewards)
    theta: jax.Array
    covariates: jax.Array
    bsa: jax.Array
    episode_reward: jax.Array
    episode_cost: jax.Array


# ----------------------------------------------------------------------------- the environment
class DosingEnv(eqx.Module):
    """A batched-by-``vmap`` constrained dosing MDP on a compiled model.

    Args:
        model: the compiled patient model.
        doses: dose choices in ``dose_unit`` (0 = hold); the action space is doses × intervals.
        dose_unit: e.g. "mg/m^2" (scaled by each patient's BSA), "mg", "GBq".
        into: dosed compartment, or {compartment: model amount per unit of dose} (then
            ``dose_unit`` is only a label and no conversion is made).
        interval_days: one or more cycle lengths to choose from (days).
        horizon: steps per episode; ``horizon_days`` ends it earlier once that much time passed.
        infusion_hours: infusion duration (0 for a bolus).
        samples, reward, limits: what the agent sees, its reward and its costs.
        grid_hours: spacing of the within-cycle grid on which rewards and limits are evaluated.
        standard: the standard protocol's (dose, interval_days), kept as ``env.standard`` (an
            action index) for baselines.
        noise: False for noise-free samples (the residual-error models still weigh them in a
            twin's likelihood); ``env.without_noise()`` gives such a copy.
    """

    model: CompiledModel
    sim: CycleSimulator
    doses: jax.Array
    intervals: jax.Array
    sample_index: jax.Array
    sample_days: jax.Array
    dose_factor: float = eqx.field(static=True)
    max_dose: float = eqx.field(static=True)
    per_m2: bool = eqx.field(static=True)
    dose_unit: str = eqx.field(static=True)
    horizon: int = eqx.field(static=True)
    horizon_days: float | None = eqx.field(static=True)
    samples: tuple[Sample, ...] = eqx.field(static=True)
    reward: Reward = eqx.field(static=True)
    limits: tuple[Limit, ...] = eqx.field(static=True)
    day: float = eqx.field(static=True)
    standard: int | None = eqx.field(static=True)
    noise: bool = eqx.field(static=True)

    def __init__(self, model: CompiledModel, *, doses, dose_unit: str, into, interval_days, horizon: int,
                 samples, reward: Reward, limits=(), infusion_hours: float = 0.0, horizon_days: float | None = None,
                 grid_hours: float = 6.0, rtol: float = 1e-6, atol: float = 1e-9, standard=None, noise: bool = True):
        doses = tuple(float(d) for d in np.atleast_1d(doses))
        intervals = tuple(float(d) for d in np.atleast_1d(interval_days))
        if not doses or any(not (np.isfinite(d) and d >= 0) for d in doses):
            raise ModelError(f"DosingEnv: doses={doses!r} must be non-negative numbers.")
        if not intervals or any(not d > 0 for d in intervals):
            raise ModelError(f"DosingEnv: interval_days={intervals!r} must be positive.")
        if not (isinstance(horizon, int) and horizon >= 1):
            raise ModelError(f"DosingEnv: horizon={horizon!r} must be a positive number of steps.")
        for item in (*samples, reward, *limits):
            if item.observation not in model.observation_names + model.state_names:
                _unknown_observation(model, item)
        self.model, self.samples, self.reward, self.limits = model, tuple(samples), reward, tuple(limits)
        self.horizon, self.horizon_days = horizon, horizon_days
        self.dose_unit, self.noise = dose_unit, bool(noise)
        self.per_m2 = "m^2" in dose_unit.replace("²", "^2")
        self.day = convert_factor(parse_unit("day"), parse_unit(model.time_unit), what="DosingEnv time")
        self.dose_factor = 1.0 if not isinstance(into, str) else _dose_factor(model, dose_unit, self.per_m2)
        self.max_dose = max(doses) or 1.0
        pairs = list(itertools.product(doses, intervals))
        self.doses = jnp.asarray([p[0] for p in pairs])
        self.intervals = jnp.asarray([p[1] * self.day for p in pairs])
        self.standard = None if standard is None else self.action_index(*standard)
        grid, index, days = _grid(samples, max(intervals), grid_hours)
        self.sample_index, self.sample_days = jnp.asarray(index), jnp.asarray(days)
        self.sim = CycleSimulator(model, into, grid * self.day, infusion=infusion_hours / 24.0 * self.day,
                                  rtol=rtol, atol=atol)

    def without_noise(self) -> "DosingEnv":
        """The same environment with noise-free samples (missingness is kept)."""
        quiet = copy.copy(self)
        object.__setattr__(quiet, "noise", False)      # a static field: not reachable by tree_at
        return quiet

    # ------------------------------------------------------------------ spaces
    @property
    def action_space(self) -> Discrete:
        return Discrete(int(self.doses.shape[0]))

    @property
    def observation_space(self) -> Box:
        return Box(-np.inf, np.inf, (2 * int(self.sample_index.shape[0]) + 3,))

    def action_index(self, dose: float, interval_days: float | None = None) -> int:
        """The action giving ``dose`` (every ``interval_days``, if the env offers several)."""
        doses, intervals = np.asarray(self.doses), np.asarray(self.intervals) / self.day
        match = np.isclose(doses, dose) & (True if interval_days is None else np.isclose(intervals, interval_days))
        if not match.any():
            pairs = list(zip(doses.tolist(), intervals.tolist()))
            raise ModelError(f"DosingEnv: no action gives dose {dose:g} {self.dose_unit}"
                             + (f" every {interval_days:g} days" if interval_days is not None else "")
                             + f"; the actions are not among the actions (dose, interval_days): {pairs}.")
        return int(np.flatnonzero(match)[0])

    @property
    def actions(self):
        """The action table: dose (``dose_unit``) and interval (days) per action index."""
        import pandas as pd

        return pd.DataFrame({"dose": np.asarray(self.doses), "interval_days": np.asarray(self.intervals) / self.day})

    # ------------------------------------------------------------------ reset / step
    def reset(self, key, patients: Patients):
        """A new episode for a patient drawn from ``patients``: (observation, state)."""
        k_pick, k_obs = jax.random.split(key)
        i = jax.random.randint(k_pick, (), 0, patients.theta.shape[0])
        state = self.initial_state(patients.theta[i], patients.covariates[i], patients.bsa[i])
        return self._baseline_observation(k_obs, self.baseline_values(state), state), state

    def initial_state(self, theta, cov, bsa) -> EnvState:
        """The untreated patient ``theta``, ``cov``, ``bsa`` at time 0."""
        y0 = self.sim.initial_state(theta, cov)
        zero = jnp.zeros(())
        reference = self._values(zero, y0, theta, cov)[self._reward_index]
        return EnvState(zero, y0, jnp.zeros((), int), zero, zero, reference, theta, cov, bsa, zero, zero)

    def baseline_values(self, state: EnvState):
        """Observations and states before treatment (the values the baseline samples measure)."""
        return self._values(state.time, state.y, state.theta, state.covariates)

    def step(self, key, state: EnvState, action, patients: Patients):
        """One step with gymnax's auto-reset: a finished episode restarts from a new patient (the
        returned reward, cost and flags are those of the step that finished it)."""
        k_step, k_reset = jax.random.split(key)
        obs, new, reward, cost, terminated, truncated, info = self.step_env(k_step, state, action)
        obs_reset, state_reset = self.reset(k_reset, patients)
        done = terminated | truncated
        new = jax.tree.map(lambda r, s: jnp.where(done, r, s), state_reset, new)
        return jnp.where(done, obs_reset, obs), new, reward, cost, terminated, truncated, info

    def step_env(self, key, state: EnvState, action):
        """One cycle without auto-reset: (obs, state, reward, cost, terminated, truncated, info)."""
        new, grid_obs, reward, violated, terminated, truncated, ok = self.transition(state, action)
        interval = self.intervals[jnp.asarray(action, dtype=int)]
        obs = self._observation(key, grid_obs, interval, new)
        info = {"violations": violated, "dose": new.last_dose, "interval_days": interval / self.day, "solver_ok": ok,
                "episode_reward": new.episode_reward, "episode_cost": new.episode_cost}
        return obs, new, reward, violated.sum().astype(jnp.float64), terminated, truncated, info

    def transition(self, state: EnvState, action):
        """The noise-free dynamics of one step: (new state, values on the cycle grid — the
        observations then the states —, reward, violated limits, terminated, truncated, solver ok)."""
        action = jnp.asarray(action, dtype=int)
        dose, interval = self.doses[action], self.intervals[action]
        amount = dose * jnp.where(self.per_m2, state.bsa, 1.0) * self.dose_factor
        y_end, grid_y, grid_obs, inside, ok = self.sim.run(state.time, state.y, amount, interval, state.theta,
                                                           state.covariates)
        grid_obs = jnp.concatenate([grid_obs, grid_y], -1)
        grid_obs = jnp.where(jnp.isfinite(grid_obs), grid_obs, 0.0)
        obs_end = self._values(state.time + interval, y_end, state.theta, state.covariates)
        reward = self._reward(state.reference, grid_obs, obs_end, inside)
        violated = self._violations(grid_obs, inside)
        cost = jnp.sum(violated).astype(jnp.float64)
        time = state.time + interval
        cycle = state.cycle + 1
        terminated = cycle >= self.horizon
        if self.horizon_days is not None:
            terminated = terminated | (time >= self.horizon_days * self.day - 1e-9)
        truncated = ~ok & ~terminated
        new = EnvState(time, jnp.where(ok, y_end, state.y), cycle, state.cumulative_dose + dose, dose,
                       state.reference, state.theta, state.covariates, state.bsa,
                       state.episode_reward + reward, state.episode_cost + cost)
        return new, grid_obs, reward, violated, terminated, truncated, ok

    # ------------------------------------------------------------------ reading the observation
    def sample_slot(self, observation: str, day: float) -> int:
        """Position in the observation vector of ``observation`` sampled on ``day``."""
        k = 0
        for s in self.samples:
            for d in s.days:
                if s.observation == observation and np.isclose(d, day):
                    return k
                k += 1
        offered = [(s.observation, d) for s in self.samples for d in s.days]
        raise ModelError(f"DosingEnv: no sample of {observation!r} on day {day:g}; the samples are {offered}."
                         + did_you_mean(observation, [s.observation for s in self.samples]))

    def decode(self, obs, slot: int):
        """The sample at ``slot`` back in its observation's unit (NaN when missing)."""
        spec = [s for s in self.samples for _ in s.days][slot]
        n = int(self.sample_index.shape[0])
        value = jnp.exp(obs[..., slot]) if spec.log else obs[..., slot]
        return jnp.where(obs[..., n + slot] > 0, jnp.nan, value * spec.scale)

    # ------------------------------------------------------------------ batched conveniences
    @eqx.filter_jit
    def reset_batch(self, key, patients: Patients, n: int | None = None):
        """``n`` episodes from a shared pool (``n`` given) or one per patient of a cohort
        (``patients.cohort()``, ``n`` None)."""
        if n is None:
            keys = jax.random.split(key, patients.theta.shape[0])
            return jax.vmap(self.reset)(keys, patients)
        return jax.vmap(self.reset, in_axes=(0, None))(jax.random.split(key, n), patients)

    @eqx.filter_jit
    def step_batch(self, key, state: EnvState, action, patients: Patients, *, auto_reset: bool = True):
        n = action.shape[0]
        keys = jax.random.split(key, n)
        if not auto_reset:
            return jax.vmap(self.step_env)(keys, state, action)
        pool_axis = 0 if patients.theta.ndim == 3 else None
        return jax.vmap(self.step, in_axes=(0, 0, 0, pool_axis))(keys, state, action, patients)

    # ------------------------------------------------------------------ internals
    @property
    def _names(self) -> tuple[str, ...]:
        """Columns of the per-grid-point values: the observations, then the states."""
        return self.model.observation_names + self.model.state_names

    def error_model(self, name: str):
        """The residual-error model of observation or state ``name`` (None for a state or an
        observation declared without one)."""
        return self._error_model(self._names.index(name))

    def _error_model(self, column: int):
        return self.model.errors[column] if column < len(self.model.observation_names) else None

    def _values(self, t, y, theta, cov):
        return jnp.concatenate([self.model.observe(t, y, theta, cov), y])

    @property
    def _reward_index(self) -> int:
        return self._names.index(self.reward.observation)

    def _reward(self, reference, grid_obs, obs_end, inside):
        i, r = self._reward_index, self.reward
        start = grid_obs[0, i]
        if r.kind == "decrease":
            value = start - obs_end[i]
        elif r.kind == "increase":
            value = obs_end[i] - start
        else:
            value = self.cycle_auc(grid_obs[:, i], inside)
        value = value / r.scale
        return value / jnp.maximum(reference, 1e-300) if r.relative else value

    def cycle_auc(self, y, inside):
        """Trapezoidal integral (per day) of ``y`` on the cycle grid, over the points inside the cycle."""
        t = self.sim.grid / self.day
        y = jnp.where(inside, y, 0.0)
        return jnp.sum(jnp.where(inside[1:], 0.5 * (y[1:] + y[:-1]) * jnp.diff(t), 0.0))

    def cycle_extreme(self, y, inside, *, lowest: bool):
        """The minimum (``lowest``) or maximum of ``y`` over the cycle grid points inside the cycle."""
        return jnp.min(jnp.where(inside, y, jnp.inf)) if lowest else jnp.max(jnp.where(inside, y, -jnp.inf))

    def _violations(self, grid_obs, inside):
        dt = jnp.diff(self.sim.grid, append=self.sim.grid[-1]) / self.day
        out = []
        for lim in self.limits:
            y = grid_obs[:, self._names.index(lim.observation)]
            beyond = inside & ((y > lim.threshold) if lim.side == "above" else (y < lim.threshold))
            out.append(jnp.sum(jnp.where(beyond, dt, 0.0)) > lim.longer_than_days if lim.longer_than_days
                       else jnp.any(beyond))
        return jnp.stack(out) if out else jnp.zeros((0,), bool)

    def _sample_values(self, key, values, present):
        """Noisy, scaled sample values and their missing flags."""
        k_noise, k_miss = jax.random.split(key)
        slots = [s for s in self.samples for _ in s.days]
        cols = self.sample_columns
        miss_p, logs, scales = ([getattr(s, f) for s in slots] for f in ("missing", "log", "scale"))
        noisy = []
        keys = jax.random.split(k_noise, len(cols))
        for n, (j, v) in enumerate(zip(cols, values)):
            err = self._error_model(j)
            noisy.append(v if err is None or not self.noise else err.sample(keys[n], v))
        noisy = jnp.stack(noisy) / jnp.asarray(scales)
        noisy = jnp.where(jnp.asarray(logs), jnp.log(jnp.maximum(noisy, 1e-12)), noisy)
        missing = ~present | (jax.random.uniform(k_miss, (len(cols),)) < jnp.asarray(miss_p))
        return jnp.where(missing, 0.0, noisy), missing

    def sample_predictions(self, grid_obs, interval):
        """Noise-free values at the sampling slots and whether each slot fell inside the cycle."""
        return grid_obs[self.sample_index, self.sample_columns], self.sample_days * self.day <= interval + 1e-9

    def sample_loglik(self, obs, predicted, present):
        """Log-likelihood of the observed (non-missing, present) samples in ``obs`` given the
        noise-free ``predicted`` values, under the model's residual-error models; slots without
        an error model are skipped."""
        total, slot = jnp.zeros(()), 0
        for s in self.samples:
            err = self.error_model(s.observation)
            for _ in s.days:
                if err is not None:
                    seen = self.decode(obs, slot)
                    ok = present[slot] & jnp.isfinite(seen)
                    ll = err.log_likelihood(jnp.where(ok, seen, 1.0), jnp.maximum(predicted[slot], 1e-12))
                    total = total + jnp.where(ok, ll, 0.0)
                slot += 1
        return total

    def _observation(self, key, grid_obs, interval, state):
        values, present = self.sample_predictions(grid_obs, interval)
        return self._agent_vector(*self._sample_values(key, values, present), state)

    def _baseline_observation(self, key, obs0, state):
        """Before treatment each sample type is seen once (its last slot), the others missing."""
        return self._agent_vector(*self._sample_values(key, obs0[self.sample_columns], self.baseline_slots), state)

    @property
    def sample_columns(self) -> np.ndarray:
        """For each sampling slot, its column among the observations-then-states values."""
        return np.asarray([self._names.index(s.observation) for s in self.samples for _ in s.days])

    @property
    def baseline_slots(self) -> jax.Array:
        """The slots filled before treatment: each sample type's last one."""
        last = np.zeros(len(self.sample_columns), bool)
        last[np.cumsum([len(s.days) for s in self.samples]) - 1] = True
        return jnp.asarray(last)

    def _agent_vector(self, values, missing, state):
        top = self.max_dose
        extra = jnp.stack([state.cycle / self.horizon, state.cumulative_dose / (top * self.horizon),
                           state.last_dose / top])
        return jnp.concatenate([values, missing.astype(jnp.float64), extra])

    def to_torchrl(self, patients: Patients, batch_size: int, *, seed: int = 0, device: str = "cpu"):
        """This environment as a torchrl ``EnvBase`` of ``batch_size`` patients from ``patients``
        (needs the ``rl`` extra)."""
        from .torchrl_env import TorchRLDosingEnv

        return TorchRLDosingEnv(self, patients, batch_size, seed=seed, device=device)


def _unknown_observation(model, item):
    names = model.observation_names + model.state_names
    raise ModelError(f"DosingEnv: {type(item).__name__} names {item.observation!r}, which is neither an observation "
                     f"nor a state of model {model.name!r}." + did_you_mean(item.observation, names)
                     + f" Observations: {list(model.observation_names)}.")


def _dose_factor(model, dose_unit, per_m2):
    amount = dose_unit.replace("/m^2", "").replace("/m²", "") if per_m2 else dose_unit
    return convert_factor(parse_unit(amount, what="DosingEnv dose_unit"), parse_unit(model.amount_unit),
                          what=f"DosingEnv doses in {amount!r} for a model with amounts in {model.amount_unit!r}")


def _grid(samples, longest_days, grid_hours):
    """A within-cycle grid (days) holding every sampling day, and each sample's grid index."""
    regular = np.arange(0.0, longest_days + 1e-9, grid_hours / 24.0)
    days = np.asarray([d for s in samples for d in s.days], dtype=float)
    grid = np.unique(np.round(np.concatenate([regular, np.minimum(days, longest_days), [longest_days]]), 9))
    index = np.searchsorted(grid, np.round(np.minimum(days, longest_days), 9))
    return grid, index, days
