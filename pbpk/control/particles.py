"""The twin a dosing policy carries from cycle to cycle: a particle posterior over one patient.

K parameter vectors drawn from the population model (the prior) are simulated through the doses
actually given and weighted by the likelihood of every sample the clinic has seen — sequential
importance sampling with the model's residual-error models.  Baseline samples (pre-treatment
ANC, tumour size) move the weights before the first dose.  When the particles collapse
(effective sample size < K/2) they are resampled (systematic) and jittered in log-space with a
small kernel so the twin keeps a spread (Liu & West 2001, without the shrinkage).

Everything is pure JAX, so a policy holding a ``ParticleTwin`` in its carry is evaluated by
``pbpk.control.policies.evaluate`` like any other.  The shield (``shield.py``) and model-informed
precision dosing (``mipd.py``) both forecast from it.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ModelError, did_you_mean
from .env import DosingEnv, EnvState, Patients

__all__ = ["ParticleTwin", "no_action", "rollout", "weighted_quantile"]


def no_action() -> jax.Array:
    """The last action before any dose: -1 with the dtype of the actions policies choose later
    (a weak-typed -1 would make a jitted act() trace and compile again at the second decision)."""
    return jnp.asarray(-1, dtype=int)


class ParticleTwin(eqx.Module):
    """Particles (K ``EnvState``s along a leading axis) with log-weights."""

    states: EnvState
    log_weights: jax.Array

    @classmethod
    def from_prior(cls, env: DosingEnv, prior: Patients, obs) -> "ParticleTwin":
        """The prior's patients at time 0, weighted by the baseline samples in ``obs``."""
        states = jax.vmap(env.initial_state)(prior.theta, prior.covariates, prior.bsa)
        values = jax.vmap(env.baseline_values)(states)
        cols, present = env.sample_columns, env.baseline_slots
        loglik = jax.vmap(lambda v: env.sample_loglik(obs, v[cols], present))(values)
        return cls(states, loglik - jnp.log(prior.theta.shape[0]))

    @property
    def weights(self):
        return jax.nn.softmax(self.log_weights)

    def effective_size(self):
        return 1.0 / jnp.sum(self.weights**2)

    def advance(self, env: DosingEnv, action):
        """Every particle through the cycle ``action`` gives: (new states, noise-free sample
        predictions (K, slots), which slots fall inside the cycle (slots,))."""
        def one(state):
            new, grid, *_ = env.transition(state, action)
            return new, env.sample_predictions(grid, env.intervals[action])

        states, (predicted, present) = jax.vmap(one)(self.states)
        return states, predicted, present[0]

    def assimilate(self, env: DosingEnv, action, obs) -> "ParticleTwin":
        """Every particle advanced through the cycle just given, weighted by its samples."""
        states, predicted, present = self.advance(env, action)
        loglik = jax.vmap(lambda p: env.sample_loglik(obs, p, present))(predicted)
        return ParticleTwin(states, self.log_weights + loglik)

    def update(self, env: DosingEnv, last_action, obs, key, jitter: float, evolve=None) -> "ParticleTwin":
        """One decision's bookkeeping: assimilate the cycle just given (none before the first
        dose, ``last_action`` < 0), rejuvenate, then — with ``evolve`` (per-parameter SDs of a
        log-space random walk per cycle) — let the parameters drift for the coming cycle: the
        twin of a patient who may change under treatment."""
        twin = jax.lax.cond(last_action >= 0, lambda t: t.assimilate(env, last_action, obs), lambda t: t, self)
        twin = twin.rejuvenate(key, jitter)
        if evolve is None:
            return twin
        step = jnp.where(last_action >= 0, 1.0, 0.0) * evolve
        noise = jax.random.normal(jax.random.fold_in(key, 1), twin.states.theta.shape)
        theta = twin.states.theta * jnp.exp(step * noise)
        return ParticleTwin(eqx.tree_at(lambda s: s.theta, twin.states, theta), twin.log_weights)

    def rejuvenate(self, key, jitter: float) -> "ParticleTwin":
        """Resampled and jittered when the effective sample size fell below K/2, else unchanged."""
        k = self.log_weights.shape[0]

        def resample(t):
            k_pick, k_jit = jax.random.split(key)
            positions = (jax.random.uniform(k_pick) + jnp.arange(k)) / k
            idx = jnp.clip(jnp.searchsorted(jnp.cumsum(t.weights), positions), 0, k - 1)
            states = jax.tree.map(lambda x: x[idx], t.states)
            noise = jnp.exp(jitter * jax.random.normal(k_jit, states.theta.shape))
            states = eqx.tree_at(lambda s: s.theta, states, states.theta * noise)
            return ParticleTwin(states, jnp.full((k,), -jnp.log(k)))

        return jax.lax.cond(self.effective_size() < k / 2, resample, lambda t: t, self)

    def patients(self, key, n: int, jitter: float = 0.0) -> Patients:
        """``n`` patients drawn from the twin by weight (log-space ``jitter`` on their
        parameters): the pool to train or fine-tune an agent on this patient's posterior."""
        k_pick, k_jit = jax.random.split(key)
        idx = jax.random.choice(k_pick, self.log_weights.shape[0], (n,), p=self.weights)
        s = jax.tree.map(lambda x: x[idx], self.states)
        theta = s.theta * jnp.exp(jitter * jax.random.normal(k_jit, s.theta.shape))
        return Patients(theta, s.covariates, s.bsa)

    def forecast(self, env: DosingEnv, summarise):
        """``summarise(values on the cycle grid, inside-the-cycle mask, violated limits)`` for every
        action (leading axis) and particle (second axis), one cycle ahead of the current state."""
        def per_action(a):
            inside = env.sim.grid <= env.intervals[a] + 1e-9

            def per_particle(state):
                _, grid, _, violated, *_ = env.transition(state, a)
                return summarise(grid, inside, violated)

            return jax.vmap(per_particle)(self.states)

        return jax.vmap(per_action)(jnp.arange(env.action_space.n))

    def rollout(self, env: DosingEnv, plan):
        """Every particle through ``plan`` (action indices, one per cycle) from its current state:
        (total reward, any limit crossed) per particle — the twin's counterfactual course."""
        return jax.vmap(lambda s: rollout(env, s, plan))(self.states)

    def effect(self, env: DosingEnv, plan_a, plan_b, level: float = 0.9) -> dict:
        """Individual treatment effect of ``plan_a`` over ``plan_b`` on the total reward: posterior
        mean and central ``level`` credible interval, and each plan's P(any limit crossed)."""
        (ra, va), (rb, vb) = self.rollout(env, plan_a), self.rollout(env, plan_b)
        w, diff = self.weights, ra - rb
        lo, hi = (weighted_quantile(diff, w, q) for q in ((1 - level) / 2, (1 + level) / 2))
        return {"mean": w @ diff, "low": lo, "high": hi, "risk_a": w @ va, "risk_b": w @ vb}


def evolution(model, evolve):
    """``{parameter: SD per cycle}`` (log-space random walk) as a per-parameter vector, or None."""
    if not evolve:
        return None
    names = list(model.parameter_names)
    sd = np.zeros(len(names))
    for name, value in evolve.items():
        if name not in names:
            raise ModelError(f"evolve: {name!r} is not a parameter of {model.name!r}." + did_you_mean(name, names))
        if not (np.isfinite(value) and value >= 0):
            raise ModelError(f"evolve: the SD of {name!r} must be a non-negative number; got {value!r}.")
        sd[names.index(name)] = value
    return jnp.asarray(sd)


def rollout(env: DosingEnv, state: EnvState, plan):
    """One patient's noise-free course through ``plan`` from ``state``: (total reward, any limit crossed)."""
    def cycle(s, a):
        new, _, reward, violated, *_ = env.transition(s, a)
        return new, (reward, violated.any())

    _, (rewards, violated) = jax.lax.scan(cycle, state, jnp.asarray(plan))
    return rewards.sum(), violated.any()


def weighted_quantile(values, weights, q):
    """The ``q`` quantile of ``values`` (last axis) under ``weights`` (the smallest value whose
    cumulative weight reaches ``q``)."""
    order = jnp.argsort(values, axis=-1)
    v = jnp.take_along_axis(values, order, -1)
    cw = jnp.cumsum(jnp.take_along_axis(jnp.broadcast_to(weights, values.shape), order, -1), -1)
    idx = jax.vmap(lambda c: jnp.searchsorted(c, q * c[-1]))(cw.reshape(-1, cw.shape[-1]))
    idx = jnp.clip(idx, 0, values.shape[-1] - 1).reshape(values.shape[:-1])
    return jnp.take_along_axis(v, idx[..., None], -1)[..., 0]
