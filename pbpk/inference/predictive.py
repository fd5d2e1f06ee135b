"""Predictions from posterior draws: at the observation rows (with residual error) for checks."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._data import predict

__all__ = ["posterior_predictive", "individual_predictions"]


def individual_predictions(density, data, positions) -> jax.Array:
    """IPRED at the observation rows for each draw: (S, n_obs) with S the flattened draws."""
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), positions)
    return _ipred(density, data, flat)


def posterior_predictive(post, *, key) -> np.ndarray:
    """Replicated observations (S, n_observed): IPRED of each draw plus residual error."""
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), post.positions)
    sims = _replicate(post.density, post.data, flat, key)
    return np.asarray(sims)[:, np.asarray(post.data.mask)]


@eqx.filter_jit
def _ipred(density, data, positions):
    return jax.vmap(lambda p: predict(density.model, density.opts, density.theta(p["eta"]), data)[0])(positions)


@eqx.filter_jit
def _replicate(density, data, positions, key):
    def one(p, k):
        pred = predict(density.model, density.opts, density.theta(p["eta"]), data)[0]
        errors = density.errors(p.get("log_sigma") if density.estimate_error else None)
        keys = jax.random.split(k, len(errors))
        out = pred
        for j, err in enumerate(errors):
            if err is not None:
                out = jnp.where(data.obs_index == j, err.sample(keys[j], pred), out)
        return out

    n = jax.tree.leaves(positions)[0].shape[0]
    return jax.vmap(one)(positions, jax.random.split(key, n))
