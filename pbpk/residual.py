"""Residual (intra-individual) error models: how an observation scatters around its prediction.

Each is an immutable ``eqx.Module`` with ``sd(pred)``, ``log_likelihood(obs, pred)`` and
``sample(key, pred)``; parameters are plain floats or JAX arrays so they can be estimated.
NONMEM equivalents: additive ``Y = F + EPS``, proportional ``Y = F·(1 + EPS)``, combined
``Y = F·(1 + EPS1) + EPS2`` (variances add), exponential ``Y = F·exp(EPS)`` (log-normal).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .errors import ModelError

__all__ = ["Additive", "Proportional", "Combined", "LogNormal", "Exponential", "AbstractResidualError"]

_LOG_2PI = math.log(2 * math.pi)


def _check_sd(value, field, model):
    if value is None or isinstance(value, (str, bytes, bool)):
        raise ModelError(f"{model}: {field}={value!r} must be a non-negative number.")
    if isinstance(value, (int, float)) and not value >= 0:
        raise ModelError(f"{model}: {field}={value!r} must be a non-negative number.")


class AbstractResidualError(eqx.Module):
    def sd(self, pred):
        raise NotImplementedError

    def log_likelihood(self, obs, pred):
        """Normal log-density of ``obs`` given ``pred`` (elementwise)."""
        sd = self.sd(pred)
        return -0.5 * (((obs - pred) / sd) ** 2 + _LOG_2PI) - jnp.log(sd)

    def sample(self, key, pred):
        return pred + self.sd(pred) * jax.random.normal(key, jnp.shape(pred))

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.__dataclass_fields__.values())


class Additive(AbstractResidualError):
    """Constant standard deviation ``sd`` in the observation's unit."""

    sd_add: float

    def __init__(self, sd):
        _check_sd(sd, "sd", "Additive")
        self.sd_add = sd

    def sd(self, pred):
        return jnp.broadcast_to(jnp.asarray(self.sd_add, dtype=jnp.result_type(float)), jnp.shape(pred))


class Proportional(AbstractResidualError):
    """Standard deviation ``cv·|pred|`` (``cv`` as a fraction: 0.15 is 15 %)."""

    cv: float

    def __init__(self, cv):
        _check_sd(cv, "cv", "Proportional")
        self.cv = cv

    def sd(self, pred):
        # A floor keeps the density proper when the prediction is exactly zero (pre-dose).
        return jnp.maximum(self.cv * jnp.abs(pred), 1e-12)


class Combined(AbstractResidualError):
    """Variance ``add² + (cv·pred)²`` (NONMEM combined error, both epsilons independent)."""

    sd_add: float
    cv: float

    def __init__(self, sd, cv):
        _check_sd(sd, "sd", "Combined")
        _check_sd(cv, "cv", "Combined")
        self.sd_add, self.cv = sd, cv

    def sd(self, pred):
        return jnp.sqrt(self.sd_add**2 + (self.cv * pred) ** 2 + 1e-24)


class LogNormal(AbstractResidualError):
    """``log(obs) ~ Normal(log(pred), sd)``; observations and predictions must be positive."""

    sd_log: float

    def __init__(self, sd):
        _check_sd(sd, "sd", "LogNormal")
        self.sd_log = sd

    def sd(self, pred):
        return jnp.broadcast_to(jnp.asarray(self.sd_log, dtype=jnp.result_type(float)), jnp.shape(pred))

    def log_likelihood(self, obs, pred):
        # Density of obs itself (includes the Jacobian 1/obs), so it is comparable across models.
        lo, lp = jnp.log(obs), jnp.log(jnp.maximum(pred, 1e-300))
        return -0.5 * (((lo - lp) / self.sd_log) ** 2 + _LOG_2PI) - jnp.log(self.sd_log) - lo

    def sample(self, key, pred):
        return pred * jnp.exp(self.sd_log * jax.random.normal(key, jnp.shape(pred)))


Exponential = LogNormal
