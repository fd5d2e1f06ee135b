"""``pbpk.fit``: one patient's data -> a Posterior (NUTS, MAP or Laplace)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import DataError, ModelError, did_you_mean
from .logdensity import individual_logdensity
from .map import find_mode, laplace_covariance
from .nuts import run_nuts
from .posterior import Posterior

__all__ = ["fit", "METHODS"]

METHODS = ("nuts", "map", "laplace")


def fit(model, data, *, method: str = "nuts", key=None, chains: int = 4, warmup: int = 1000,
        draws: int = 1000, estimate_error: bool = False, priors: Mapping | None = None, covariates=None,
        subject=None, target_accept: float = 0.8, progress: bool = True, simulate_options=None) -> Posterior:
    """Calibrate ``model`` to one patient's data.

    Args:
        data: a ``Dataset`` with one subject (or ``subject=ID`` to pick one), a ``Subject``,
            or a path to a NONMEM-style CSV.
        method: "nuts" (BlackJAX NUTS, ``chains`` vmapped, started from the Laplace
            approximation around the mode), "laplace" (``draws`` from N(mode, H⁻¹)) or "map".
        key: a ``jax.random`` key (required for "nuts" and "laplace").
        estimate_error: estimate the residual-error parameters (log-normal prior around the
            model's values) instead of fixing them.
        priors: {parameter: (median, omega)} log-normal priors that replace the model's
            population prior, or make a parameter without IIV estimable.
    """
    if method not in METHODS:
        raise ModelError(f"fit: unknown method {method!r}; expected one of {list(METHODS)}."
                         + did_you_mean(str(method), METHODS))
    if method != "map" and not isinstance(key, jax.Array):
        raise ModelError(f"fit(method={method!r}) needs an explicit key, e.g. key=jax.random.key(0).")
    for name, value in (("chains", chains), ("draws", draws)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ModelError(f"fit: {name}={value!r} must be a positive integer.")
    if not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise ModelError(f"fit: warmup={warmup!r} must be a non-negative integer.")
    subj = select_subject(model, data, subject)
    ld = individual_logdensity(model, subj, estimate_error=estimate_error, covariates=covariates, priors=priors,
                               simulate_options=simulate_options)
    t0 = time.perf_counter()
    position, hess, converged, _, _ = find_mode(ld.spec, ld.data, ld.initial_position)
    cov = laplace_covariance(hess)
    mode = {"position": position, "covariance": cov, "converged": converged}
    if method in ("map", "laplace"):
        positions, stats, run = mode_positions(method, position, cov, key, draws, subj.id), {}, None
    else:
        k_init, k_run = jax.random.split(key)
        init = dispersed_inits(position, cov, k_init, chains)
        run = run_nuts(ld.spec, ld.data, k_run, init, warmup=warmup, draws=draws, target_accept=target_accept,
                       progress=progress, desc=f"fit {model.name} ID {subj.id}")
        positions, stats = run.positions, run.stats
    return make_posterior(model, method, ld.spec, ld.data, subj, positions, stats, run=run, mode=mode,
                          seconds=time.perf_counter() - t0)


def make_posterior(model, method, spec, data, subj, positions, stats, *, run=None, mode=None, seconds=0.0,
                   importance=None):
    thetas = spec.theta(positions["eta"])
    draws = {n: np.asarray(thetas[..., i]) for i, n in enumerate(model.parameter_names)}
    if spec.estimate_error:
        for j, n in enumerate(spec.error_names):
            draws[n] = np.exp(np.asarray(positions["log_sigma"][..., j]))
    return Posterior(model=model, method=method, draws=draws, positions=positions,
                     stats={k: np.asarray(v) for k, v in stats.items()}, density=spec, data=data, subject=subj,
                     estimated=spec.names, error_names=spec.error_names if spec.estimate_error else (),
                     nuts=run, mode=mode, seconds=seconds, importance=importance)


def mode_positions(method, position, cov, key, draws, subject_id):
    """Positions (chains, draws, ...) of a "map" (the mode) or "laplace" (draws from N(mode, cov)) fit."""
    if method == "map":
        return jax.tree.map(lambda x: x[None, None], position)
    if not np.all(np.isfinite(cov)):
        raise ModelError(f"fit(method='laplace'), subject {subject_id}: the Hessian at the mode is not positive "
                         "definite; use method='nuts'.")
    return jax.tree.map(lambda x: x[None], laplace_draws(position, cov, key, draws))


def laplace_draws(position, cov, key, n):
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(position)
    chol = jnp.asarray(np.linalg.cholesky(cov))
    return jax.vmap(unravel)(flat + jax.random.normal(key, (n, flat.size)) @ chol.T)


def dispersed_inits(position, cov, key, chains):
    """Chain starts drawn from the Laplace approximation (dispersed, so R-hat can detect
    non-convergence); a unit-scale jitter when the Hessian is not positive definite."""
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(position)
    sd = np.sqrt(np.clip(np.diag(cov), 1e-6, 1.0)) if np.all(np.isfinite(cov)) else np.full(flat.size, 0.3)
    z = flat + jax.random.normal(key, (chains, flat.size)) * jnp.asarray(sd)
    return jax.vmap(unravel)(z)


def select_subject(model, data, subject):
    from ..nonmem import Dataset, Subject, read_nonmem

    if isinstance(data, (str, Path)):
        data = read_nonmem(data, model)
    if isinstance(data, Subject):
        return data
    if not isinstance(data, Dataset):
        raise DataError(f"fit: data must be a Dataset, a Subject or a path to a NONMEM-style CSV; "
                        f"got {type(data).__name__}.")
    if subject is not None:
        return data.subject(subject)
    if len(data) != 1:
        raise DataError(f"fit calibrates one patient, but the dataset has {len(data)} subjects "
                        f"(IDs {list(data.ids)[:10]}{' ...' if len(data) > 10 else ''}): pass subject=ID, "
                        "or fit them jointly with pbpk.fit_population.")
    return next(iter(data))
