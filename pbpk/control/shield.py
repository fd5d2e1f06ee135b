"""The twin-forecast safety shield: before each dose, the patient's twin predicts the risk that
each candidate action crosses a limit, and actions whose risk exceeds δ are masked.

The twin here is a particle posterior that runs inside the policy: K parameter vectors drawn
from the population model (the prior), each simulated through the doses actually given, and
weighted by the likelihood of every sample the clinic has seen (sequential importance
sampling with the model's residual-error models).  Baseline samples (pre-treatment ANC, tumour
size) already move the weights before the first dose.  The forecast of an action is one more
cycle from every particle's current state; P(violation) is the weighted share of particles
crossing any limit.  All of it is pure JAX inside ``act``, so a shielded policy is evaluated
by ``evaluate`` like any other, and ``ShieldedPolicy.risk`` is exposed for the shield's test:
the chosen action's forecast risk is never above δ unless no action is below it, and then the
least risky action is taken.

For a particle set that has collapsed (effective sample size < K/2), the particles are
resampled (systematic) and jittered in log-space with a small kernel, so the twin keeps a
spread (Liu & West 2001, without the shrinkage).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .env import DosingEnv, EnvState, Patients

__all__ = ["ParticleTwin", "ShieldedPolicy"]


class ParticleTwin(eqx.Module):
    """Particles (K EnvStates along a leading axis) with log-weights."""

    states: EnvState
    log_weights: jax.Array

    @property
    def weights(self):
        return jax.nn.softmax(self.log_weights)

    def effective_size(self):
        w = self.weights
        return 1.0 / jnp.sum(w**2)


class ShieldedPolicy(eqx.Module):
    """``base`` (a policy with ``logits(obs)``, e.g. a trained ``MLPPolicy``, or any policy) with
    the twin-forecast shield at risk level ``delta``.

    With logits, the shield takes the most preferred allowed action; otherwise the largest
    allowed dose not above the base policy's proposal (the shield never raises a dose)."""

    env: DosingEnv
    base: eqx.Module
    prior: Patients
    delta: float = eqx.field(static=True)
    jitter: float = eqx.field(static=True)

    def __init__(self, env: DosingEnv, base, prior: Patients, *, delta: float = 0.05, jitter: float = 0.05):
        self.env, self.base, self.prior, self.delta, self.jitter = env, base, prior, float(delta), float(jitter)

    # ------------------------------------------------------------------ policy interface
    def init(self, obs):
        states = jax.vmap(self.env.initial_state)(self.prior.theta, self.prior.covariates, self.prior.bsa)
        values = jax.vmap(self.env.baseline_values)(states)
        k = self.prior.theta.shape[0]
        cols, present = self.env.sample_columns, self.env.baseline_slots
        loglik = jax.vmap(lambda v: self.env.sample_loglik(obs, v[cols], present))(values)
        twin = ParticleTwin(states, loglik - jnp.log(k))
        return (twin, self.base.init(obs), jnp.asarray(-1))

    def act(self, key, carry, obs):
        twin, memory, last = carry
        k_base, k_resample = jax.random.split(key)
        twin = jax.lax.cond(last >= 0, lambda t: self._update(t, last, obs), lambda t: t, twin)
        twin = self._maybe_resample(k_resample, twin)
        risk = self.risk(twin)
        proposal, memory = self.base.act(k_base, memory, obs)
        action = self._choose(obs, proposal, risk)
        return action, (twin, memory, action)

    # ------------------------------------------------------------------ the twin
    def risk(self, twin: ParticleTwin):
        """P(any limit crossed in the next cycle) for every action, under the twin."""
        actions = jnp.arange(self.env.action_space.n)

        def per_action(a):
            violated = jax.vmap(lambda s: self.env.transition(s, a)[3].any())(twin.states)
            return jnp.sum(twin.weights * violated)

        return jax.vmap(per_action)(actions)

    def _update(self, twin, action, obs):
        """Advance every particle through the cycle just given and weight by its samples."""
        def one(state):
            new, grid, *_ = self.env.transition(state, action)
            predicted, present = self.env.sample_predictions(grid, self.env.intervals[action])
            return new, self.env.sample_loglik(obs, predicted, present)

        states, loglik = jax.vmap(one)(twin.states)
        return ParticleTwin(states, twin.log_weights + loglik)

    def _maybe_resample(self, key, twin):
        k = twin.log_weights.shape[0]

        def resample(t):
            k_pick, k_jit = jax.random.split(key)
            positions = (jax.random.uniform(k_pick) + jnp.arange(k)) / k
            idx = jnp.clip(jnp.searchsorted(jnp.cumsum(t.weights), positions), 0, k - 1)
            states = jax.tree.map(lambda x: x[idx], t.states)
            noise = jnp.exp(self.jitter * jax.random.normal(k_jit, states.theta.shape))
            states = eqx.tree_at(lambda s: s.theta, states, states.theta * noise)
            return ParticleTwin(states, jnp.full((k,), -jnp.log(k)))

        return jax.lax.cond(twin.effective_size() < k / 2, resample, lambda t: t, twin)

    def _choose(self, obs, proposal, risk):
        allowed = risk <= self.delta
        safest = jnp.argmin(risk)
        if hasattr(self.base, "logits"):
            scores = jnp.where(allowed, self.base.logits(obs.astype(jnp.float32)), -jnp.inf)
            pick = jnp.argmax(scores)
        else:
            doses = self.env.doses
            ok = allowed & (doses <= doses[proposal])
            pick = jnp.argmax(jnp.where(ok, doses, -jnp.inf))
            ok = ok.any()
            allowed = allowed & ok
        return jnp.where(allowed.any(), pick, safest)
