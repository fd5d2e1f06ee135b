"""Virtual populations: individual parameters drawn from the model's inter-individual variability.

Each parameter with ``iiv=ω`` is log-normal around its typical value, θ_i = θ_typ·exp(η_i) with
η_i ~ N(0, ω²) (NONMEM's exponential IIV); parameters without IIV stay at their typical value.
Covariate-dependent typical values are expressions in the model, so they follow the covariates
given here.
"""

from __future__ import annotations

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .errors import ModelError

__all__ = ["Population", "sample_population"]


class Population(eqx.Module):
    """N virtual patients: parameter vectors (N, P), covariates (N, C) and the η's drawn."""

    theta: jax.Array
    covariates: jax.Array
    eta: jax.Array
    parameter_names: tuple[str, ...] = eqx.field(static=True)
    covariate_names: tuple[str, ...] = eqx.field(static=True)

    def __len__(self) -> int:
        return self.theta.shape[0]

    def __getitem__(self, name: str) -> jax.Array:
        if name in self.parameter_names:
            return self.theta[:, self.parameter_names.index(name)]
        if name in self.covariate_names:
            return self.covariates[:, self.covariate_names.index(name)]
        raise KeyError(name)

    def to_dataframe(self):
        import pandas as pd

        data = {"ID": np.arange(1, len(self) + 1)}
        data.update({n: np.asarray(self.theta[:, i]) for i, n in enumerate(self.parameter_names)})
        data.update({n: np.asarray(self.covariates[:, i]) for i, n in enumerate(self.covariate_names)})
        return pd.DataFrame(data)


def sample_population(model, n: int, key, covariates=None, *, omega=None) -> Population:
    """Draw ``n`` patients.  ``covariates``: mapping name -> (n,) array or scalar (default:
    reference values); ``omega`` overrides the model's IIV vector (SDs, ordered as parameters)."""
    from .simulate import _covariates

    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ModelError(f"population: n={n!r} must be a positive integer.")
    if not isinstance(key, jax.Array):
        raise ModelError("population: key must be a jax.random key, e.g. jax.random.key(0).")
    omega = model.omega if omega is None else jnp.asarray(omega, dtype=jnp.float64)
    eta = jax.random.normal(key, (n, omega.shape[0]), dtype=jnp.float64) * omega
    theta = jnp.where(omega > 0, model.theta * jnp.exp(eta), model.theta)
    if isinstance(covariates, Mapping):
        covariates = {k: jnp.broadcast_to(jnp.asarray(v, dtype=jnp.float64), (n,)) for k, v in covariates.items()}
    cov = _covariates(model, covariates)
    cov = jnp.broadcast_to(cov, (n, len(model.covariate_names)))
    return Population(theta=theta, covariates=cov, eta=eta, parameter_names=model.parameter_names,
                      covariate_names=model.covariate_names)
