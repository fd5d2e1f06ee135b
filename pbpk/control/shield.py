"""The twin-forecast safety shield: before each dose, the patient's twin predicts the risk that
each candidate action crosses a limit, and actions whose risk exceeds δ are masked.

The twin is a ``ParticleTwin`` (``particles.py``: a particle posterior from the population
prior, updated with every sample the clinic has seen) carried in the policy's state.  The
forecast of an action is one more cycle from every particle's current state; P(violation) is
the weighted share of particles crossing any limit.  ``ShieldedPolicy.risk`` is exposed for the
shield's test: the chosen action's forecast risk is never above δ unless no action is below it,
and then the least risky action is taken.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .env import DosingEnv, Patients
from .particles import ParticleTwin, evolution, no_action

__all__ = ["ShieldedPolicy"]


class ShieldedPolicy(eqx.Module):
    """``base`` (a policy with ``logits(obs)``, e.g. a trained ``MLPPolicy``, or any policy) with
    the twin-forecast shield at risk level ``delta``.

    With logits, the shield takes the most preferred allowed action; otherwise the largest
    allowed dose not above the base policy's proposal (the shield never raises a dose).
    ``evolve`` ({parameter: SD per cycle}) lets the twin's parameters random-walk between cycles,
    for a patient who may change under treatment (``ParticleTwin.update``)."""

    env: DosingEnv
    base: eqx.Module
    prior: Patients
    delta: float = eqx.field(static=True)
    jitter: float = eqx.field(static=True)
    evolve: jax.Array | None

    def __init__(self, env: DosingEnv, base, prior: Patients, *, delta: float = 0.05, jitter: float = 0.05,
                 evolve=None):
        self.env, self.base, self.prior, self.delta, self.jitter = env, base, prior, float(delta), float(jitter)
        self.evolve = evolution(env.model, evolve)

    # ------------------------------------------------------------------ policy interface
    def init(self, obs):
        return ParticleTwin.from_prior(self.env, self.prior, obs), self.base.init(obs), no_action()

    def act(self, key, carry, obs):
        twin, memory, last = carry
        k_base, k_resample = jax.random.split(key)
        twin = twin.update(self.env, last, obs, k_resample, self.jitter, self.evolve)
        risk = self.risk(twin)
        proposal, memory = self.base.act(k_base, memory, obs)
        action = self._choose(obs, proposal, risk)
        return action, (twin, memory, action)

    def risk(self, twin: ParticleTwin):
        """P(any limit crossed in the next cycle) for every action, under the twin."""
        violated = twin.forecast(self.env, lambda grid, inside, violated: violated.any())
        return jnp.sum(twin.weights[None, :] * violated, axis=1)

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
