"""Population (hierarchical) fit of several subjects jointly with NUTS: typical values, Ω and
residual error — how a user estimates the prior for their own drug.

Non-centred parameterisation (the funnel between ω and η is what makes centred hierarchical
models diverge):  θ_i = θ_typ · exp(ω ⊙ z_i),  z_i ~ N(0, I).
Priors (weakly informative, on the log scale of the model's values):
    log θ_typ ~ N(log θ_model, theta_prior_sd²),   ω ~ Half-Normal(omega_prior_sd),
    log σ ~ N(log σ_model, 1).
Parameters without IIV in the model stay fixed at their typical value.
"""

from __future__ import annotations

import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jstats
import numpy as np

from ..errors import DataError, ModelError
from ._data import capacity, encode_subject, fit_options
from .logdensity import density_spec
from .nuts import run_nuts
from .posterior import Posterior

__all__ = ["fit_population", "PopulationDensity"]


class PopulationDensity(eqx.Module):
    """Joint log density of typical values, ω, σ and every subject's standardised η."""

    spec: eqx.Module                 # the individual DensitySpec: model, options, errors
    log_theta0: jax.Array            # (k,) prior centre
    theta_prior_sd: float
    omega_prior_sd: float

    def typical(self, log_theta):
        return self.spec.median * jnp.exp(self.spec.embed @ (log_theta - self.log_theta0))

    def thetas(self, position):
        """(S, P) individual parameters."""
        eta = jnp.exp(position["log_omega"]) * position["z"]
        typ = self.typical(position["log_theta"])
        return typ * jnp.exp(eta @ self.spec.embed.T)

    def __call__(self, position, data):
        omega = jnp.exp(position["log_omega"])
        lp = jnp.sum(jstats.norm.logpdf(position["log_theta"], self.log_theta0, self.theta_prior_sd))
        lp += jnp.sum(math.log(2.0) + jstats.norm.logpdf(omega, 0.0, self.omega_prior_sd) + position["log_omega"])
        lp += jnp.sum(jstats.norm.logpdf(position["z"]))
        errors = self.spec.errors(position["log_sigma"] if self.spec.estimate_error else None)
        if self.spec.estimate_error:
            lp += jnp.sum(jstats.norm.logpdf(position["log_sigma"], jnp.log(self.spec.err_values), 1.0))
        ll = jax.vmap(lambda th, d: self.spec.log_likelihood(th, errors, d))(self.thetas(position), data)
        return lp + jnp.sum(ll)


def fit_population(model, dataset, *, key, chains: int = 4, warmup: int = 1000, draws: int = 1000,
                   estimate_error: bool = True, theta_prior_sd: float = 1.0, omega_prior_sd: float = 1.0,
                   target_accept: float = 0.9, progress: bool = True, simulate_options=None) -> Posterior:
    """Hierarchical NUTS fit of ``dataset`` (several subjects).  The Posterior's draws are the
    typical values (by parameter name), ``omega_<name>`` (SD of log η) and residual-error
    parameters; ``individual_parameters()`` gives each subject's."""
    from ..nonmem import Dataset

    if not isinstance(dataset, Dataset):
        raise DataError(f"fit_population: expected a Dataset, got {type(dataset).__name__}.")
    if len(dataset) < 2:
        raise DataError("fit_population needs at least two subjects; use pbpk.fit for one patient.")
    if not isinstance(key, jax.Array):
        raise ModelError("fit_population needs an explicit key, e.g. key=jax.random.key(0).")
    subjects = list(dataset)
    n_obs = max(len(s.obs) for s in subjects)          # exact: a population is encoded once
    n_doses = capacity(max(len(s.regimen) for s in subjects), 1)
    items = [encode_subject(model, s, n_obs=n_obs, n_doses=n_doses) for s in subjects]
    data = jax.tree.map(lambda *x: jnp.stack(x), *items)
    opts = fit_options(model, items, **dict(simulate_options or {}))
    spec = density_spec(model, opts, estimate_error=estimate_error)
    log_theta0 = jnp.log(spec.embed.T @ spec.median)
    density = PopulationDensity(spec, log_theta0, float(theta_prior_sd), float(omega_prior_sd))
    k = len(spec.names)
    k_init, k_run = jax.random.split(key)
    ki = jax.random.split(k_init, 3)
    init = {"log_theta": log_theta0 + 0.1 * jax.random.normal(ki[0], (chains, k)),
            "log_omega": jnp.log(spec.omega) + 0.1 * jax.random.normal(ki[1], (chains, k)),
            "z": 0.1 * jax.random.normal(ki[2], (chains, len(subjects), k)),
            "log_sigma": jnp.broadcast_to(jnp.log(spec.err_values), (chains,) + spec.err_values.shape)}
    if not estimate_error:
        init.pop("log_sigma")
    t0 = time.perf_counter()
    run = run_nuts(density, data, k_run, init, warmup=warmup, draws=draws, target_accept=target_accept,
                   progress=progress, desc=f"population fit {model.name} ({len(subjects)} subjects)")
    pos = run.positions
    draws_out = {n: np.exp(np.asarray(pos["log_theta"][..., i])) for i, n in enumerate(spec.names)}
    draws_out.update({f"omega_{n}": np.exp(np.asarray(pos["log_omega"][..., i])) for i, n in enumerate(spec.names)})
    if estimate_error:
        draws_out.update({n: np.exp(np.asarray(pos["log_sigma"][..., j])) for j, n in enumerate(spec.error_names)})
    return PopulationPosterior(
        model=model, method="nuts", draws=draws_out, positions=pos, stats=dict(run.stats), density=density,
        data=data, subject=None, estimated=spec.names + tuple(f"omega_{n}" for n in spec.names),
        error_names=spec.error_names if estimate_error else (), nuts=run, seconds=time.perf_counter() - t0,
        subjects=tuple(subjects))


class PopulationPosterior(Posterior):
    """A population fit's posterior: typical values, ω, σ, and each subject's parameters."""

    def __init__(self, *, subjects, **kwargs):
        object.__setattr__(self, "subjects", subjects)
        super().__init__(**kwargs)

    def individual_parameters(self) -> dict:
        """name -> (chains, draws, subjects) individual parameter draws."""
        pos = self.positions
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), pos)
        th = np.asarray(jax.vmap(self.density.thetas)(flat))
        th = th.reshape(pos["z"].shape[:2] + th.shape[1:])
        return {n: th[..., i] for i, n in enumerate(self.model.parameter_names)}

    def _observed(self):
        m = np.asarray(self.data.mask)
        return {"DV": np.asarray(self.data.dv)[m], "TIME": np.asarray(self.data.times)[m]}

    def to_arviz(self, *, predictive: bool = False, key=None):
        return super().to_arviz(predictive=False)
