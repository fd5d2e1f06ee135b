"""The log-density of one subject's data under a compiled model: the BlackJAX contract
(``logdensity_fn(position) -> scalar``), usable with any sampler or optimiser.

Position (a pytree in unconstrained space):
    ``eta``        (n_iiv,)  log-scale deviations of the parameters that carry IIV;
    ``log_sigma``  (n_err,)  log of the residual-error parameters, when they are estimated.

Prior: η ~ N(0, diag(ω²)) — the model's population model (NONMEM's exponential IIV, θ_i =
θ_typ·exp(η_i)); log σ ~ N(log σ₀, 1) when estimated (σ₀ the model's value).  Likelihood: each
observation's residual-error model; a censored (BLQ, CENS=1) observation contributes
log P(Y < LLOQ) (Beal's M3 method).
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jstats
import numpy as np

from ..errors import DataError, ModelError, did_you_mean

__all__ = ["SubjectLogDensity", "individual_logdensity"]


@dataclass(frozen=True)
class SubjectLogDensity:
    """``logdensity_fn`` with the layout needed to read a position back as parameters."""

    logdensity_fn: object
    initial_position: dict
    iiv_names: tuple[str, ...]
    error_names: tuple[str, ...]
    theta_fn: object          # position -> natural-scale parameter vector

    def parameters(self, position) -> dict[str, jax.Array]:
        theta = self.theta_fn(position)
        return {n: theta[..., i] for i, n in enumerate(self.theta_fn.names)}


def individual_logdensity(model, subject, *, estimate_error: bool = False, covariates=None,
                          simulate_options=None) -> SubjectLogDensity:
    """Log posterior density (up to a constant) of one subject's individual parameters."""
    obs = subject.obs
    if obs.empty:
        raise DataError(f"subject {subject.id}: no observations to fit.")
    obs_index = _observation_index(model, subject)
    dv = jnp.asarray(obs["DV"].to_numpy(float))
    cens = jnp.asarray(obs["CENS"].to_numpy(float) == 1) if "CENS" in obs else jnp.zeros(len(obs), bool)
    lloq = obs["LLOQ"].to_numpy(float) if "LLOQ" in obs else np.full(len(obs), np.nan)
    lloq = jnp.asarray(np.where(np.isnan(lloq), obs["DV"].to_numpy(float), lloq))  # M3: DV holds LLOQ
    iiv = np.flatnonzero(np.asarray(model.omega) > 0)
    if iiv.size == 0:
        raise ModelError(f"model {model.name!r} has no parameter with IIV (iiv=...): nothing individual to fit.")
    omega = model.omega[iiv]
    errors = model.errors
    for name in {model.observation_names[i] for i in np.asarray(obs_index)}:
        if errors[model.observation_index(name)] is None:
            raise ModelError(f"observation {name!r} has no residual error model: declare error=... in observe().")
    err_leaves, rebuild = _error_parameters(errors, estimate_error)
    sim_opts = dict(simulate_options or {})

    embed = jnp.eye(model.theta.shape[0])[:, iiv]                     # (P, n_iiv): η into parameter slots

    def theta_fn(position):
        return model.theta * jnp.exp(embed @ position["eta"])

    theta_fn.names = model.parameter_names

    def logdensity_fn(position):
        eta = position["eta"]
        lp = jnp.sum(jstats.norm.logpdf(eta, 0.0, omega))
        errs = errors
        if estimate_error:
            log_sigma = position["log_sigma"]
            lp = lp + jnp.sum(jstats.norm.logpdf(log_sigma, jnp.log(err_leaves), 1.0))
            errs = rebuild(jnp.exp(log_sigma))
        sol = model.simulate(subject, None, params=theta_fn(position), covariates=covariates, **sim_opts)
        pred = sol.observations[jnp.arange(dv.shape[0]), obs_index]
        return lp + _likelihood(errs, obs_index, dv, pred, cens, lloq)

    init = {"eta": jnp.zeros(iiv.size)}
    if estimate_error:
        init["log_sigma"] = jnp.log(err_leaves)
    return SubjectLogDensity(logdensity_fn, init, tuple(model.parameter_names[i] for i in iiv),
                             tuple(f"sigma{i}" for i in range(len(err_leaves))), theta_fn)


def _likelihood(errors, obs_index, dv, pred, cens, lloq):
    total = 0.0
    for k, err in enumerate(errors):
        if err is None:
            continue
        mine = obs_index == k
        sd = err.sd(pred)
        point = err.log_likelihood(dv, pred)
        censored = _censored_logp(err, lloq, pred, sd)
        total = total + jnp.sum(jnp.where(mine & ~cens, point, 0.0)) + jnp.sum(jnp.where(mine & cens, censored, 0.0))
    return total


def _censored_logp(err, lloq, pred, sd):
    """log P(Y < LLOQ) under the residual error model (M3)."""
    from ..residual import LogNormal

    if isinstance(err, LogNormal):
        z = (jnp.log(jnp.maximum(lloq, 1e-300)) - jnp.log(jnp.maximum(pred, 1e-300))) / sd
    else:
        z = (lloq - pred) / sd
    return jstats.norm.logcdf(z)


def _observation_index(model, subject) -> jax.Array:
    names = subject.obs["NAME"].astype(str).tolist()
    out = []
    for row, name in zip(subject.obs.get("ROW", range(1, len(names) + 1)), names):
        if name in model.observation_names:
            out.append(model.observation_index(name))
        elif name in ("DV", "1") and model.observation_names:
            out.append(0)
        else:
            raise DataError(f"subject {subject.id}, row {row}: observation {name!r} is not an observation of model "
                            f"{model.name!r} (observations: {list(model.observation_names)})."
                            + did_you_mean(name, model.observation_names))
    return jnp.asarray(out, dtype=jnp.int32)


def _error_parameters(errors, estimate):
    """Flatten the residual-error models' parameters and a function rebuilding them."""
    leaves, slots = [], []
    for k, err in enumerate(errors):
        if err is None:
            continue
        for f in err.__dataclass_fields__:
            value = float(getattr(err, f))
            if value > 0:
                slots.append((k, f))
                leaves.append(value)
    if estimate and not leaves:
        raise ModelError("estimate_error=True but no residual-error parameter is positive.")

    def rebuild(values):
        out = list(errors)
        for (k, f), v in zip(slots, values):
            out[k] = eqx.tree_at(lambda e, f=f: getattr(e, f), out[k], v)
        return tuple(out)

    return jnp.asarray(leaves, dtype=jnp.float64) if leaves else jnp.zeros(0), rebuild


