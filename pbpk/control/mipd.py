"""Model-informed precision dosing (MIPD): before each dose, the patient's twin forecasts the
next cycle under every candidate action and the most intense one whose forecast meets a target
is given — the Bayesian dose individualisation of therapeutic drug monitoring (e.g. the
neutrophil-guided docetaxel dosing of Kloft/Netterberg), with the twin as the posterior.

    PrecisionDosing(env, prior, observation="ANC", statistic="min", target=1.0)

reads: give the largest dose whose posterior-median forecast ANC nadir stays ≥ 1.0 × 10⁹/L.
The target statistic is the cycle's minimum ("min") or maximum ("max") of an observation, or
its AUC ("auc"); ``quantile`` picks the posterior quantile compared with the target (0.5: the
median, the usual MIPD point forecast; lower for a "min" target or higher for a "max" target
is more cautious).  Actions whose forecast P(any limit crossed) exceeds ``max_risk`` are never
chosen; ``evolve`` ({parameter: SD per cycle}) lets the twin's parameters random-walk between
cycles, for a patient who may change under treatment.  Among the admissible actions the one with the highest dose intensity (dose per day of
its interval) wins; when none is admissible, the least intense one is given.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..errors import ModelError, did_you_mean
from .env import DosingEnv, Patients
from .particles import ParticleTwin, evolution, no_action, weighted_quantile

__all__ = ["PrecisionDosing"]

_STATISTICS = ("min", "max", "auc")


class PrecisionDosing(eqx.Module):
    env: DosingEnv
    prior: Patients
    column: int = eqx.field(static=True)
    statistic: str = eqx.field(static=True)
    target: float = eqx.field(static=True)
    quantile: float = eqx.field(static=True)
    max_risk: float = eqx.field(static=True)
    jitter: float = eqx.field(static=True)
    evolve: jax.Array | None

    def __init__(self, env: DosingEnv, prior: Patients, *, observation: str, statistic: str, target: float,
                 quantile: float = 0.5, max_risk: float = 0.5, jitter: float = 0.05, evolve=None):
        names = env.model.observation_names + env.model.state_names
        if observation not in names:
            raise ModelError(f"PrecisionDosing: observation={observation!r} is neither an observation nor a state."
                             + did_you_mean(observation, names))
        if statistic not in _STATISTICS:
            raise ModelError(f"PrecisionDosing: statistic={statistic!r}; expected one of {list(_STATISTICS)}."
                             + did_you_mean(statistic, _STATISTICS))
        if not 0.0 < quantile < 1.0 or not 0.0 <= max_risk <= 1.0:
            raise ModelError("PrecisionDosing: quantile must be in (0, 1) and max_risk in [0, 1].")
        self.env, self.prior, self.column = env, prior, names.index(observation)
        self.statistic, self.target, self.quantile = statistic, float(target), float(quantile)
        self.max_risk, self.jitter = float(max_risk), float(jitter)
        self.evolve = evolution(env.model, evolve)

    def init(self, obs):
        return ParticleTwin.from_prior(self.env, self.prior, obs), no_action()

    def act(self, key, carry, obs):
        twin, last = carry
        twin = twin.update(self.env, last, obs, key, self.jitter, self.evolve)
        value, risk = self.forecast(twin)
        action = self.choose(value, risk)
        return action, (twin, action)

    def forecast(self, twin: ParticleTwin):
        """Per action: the posterior ``quantile`` of the target statistic and P(any limit crossed)."""
        values, violated = twin.forecast(self.env, self._statistic)
        return weighted_quantile(values, twin.weights, self.quantile), jnp.sum(twin.weights * violated, axis=1)

    def choose(self, value, risk):
        meets = value >= self.target if self.statistic == "min" else value <= self.target
        admissible = meets & (risk <= self.max_risk)
        intensity = self.env.doses / self.env.intervals
        best = jnp.argmax(jnp.where(admissible, intensity, -jnp.inf))
        return jnp.where(admissible.any(), best, jnp.argmin(intensity))

    def _statistic(self, grid, inside, violated):
        y = grid[:, self.column]
        if self.statistic == "auc":
            value = self.env.cycle_auc(y, inside)
        else:
            value = self.env.cycle_extreme(y, inside, lowest=self.statistic == "min")
        return value, violated.any()
