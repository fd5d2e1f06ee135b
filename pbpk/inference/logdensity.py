"""The log-density of one subject's data under a compiled model: the BlackJAX contract
(``logdensity_fn(position) -> scalar``), usable with any sampler or optimiser.

Position (a pytree in unconstrained space):
    ``eta``        (k,)  log-scale deviations of the estimated parameters;
    ``log_sigma``  (m,)  log of the residual-error parameters, when they are estimated.

Prior: η ~ N(0, diag(ω²)) around the median θ̃ — the model's population model (NONMEM's
exponential IIV, θ_i = θ̃·exp(η_i), covariate effects inside the model's equations) or, for a
parameter named in ``priors``, a user log-normal prior (median, ω).  log σ ~ N(log σ₀, 1) when
estimated (σ₀ the model's value).  Likelihood: each observation's residual-error model; a
censored (BLQ, CENS=1) observation contributes log P(Y < LLOQ) (Beal's M3 method).

The density is a pure function of (position, data): ``DensitySpec(position, data)``.  Data are
padded arrays (``SubjectData``), so one compiled density serves every patient of a capacity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jstats
import numpy as np

from ..errors import ModelError, did_you_mean
from ..residual import LogNormal
from ._data import SubjectData, encode_subject, fit_options, predict

__all__ = ["DensitySpec", "SubjectLogDensity", "individual_logdensity", "density_spec"]


class DensitySpec(eqx.Module):
    """What is estimated and its prior; calling it gives the log posterior density (up to a constant)."""

    model: eqx.Module
    opts: eqx.Module
    median: jax.Array          # (P,) prior medians (typical values, or user priors)
    embed: jax.Array           # (P, k) η into parameter slots
    omega: jax.Array           # (k,) prior SD of η
    err_values: jax.Array      # (m,) residual-error parameters (fixed, or prior medians)
    names: tuple[str, ...] = eqx.field(static=True)
    error_names: tuple[str, ...] = eqx.field(static=True)
    error_slots: tuple[tuple[int, str], ...] = eqx.field(static=True)
    estimate_error: bool = eqx.field(static=True)

    def theta(self, eta):
        """Parameter vector(s) for η of shape (..., k)."""
        return self.median * jnp.exp(eta @ self.embed.T)

    def errors(self, log_sigma=None):
        values = self.err_values if log_sigma is None else jnp.exp(log_sigma)
        out = list(self.model.errors)
        for (k, field), v in zip(self.error_slots, values):
            out[k] = eqx.tree_at(lambda e, f=field: getattr(e, f), out[k], v)
        return tuple(out)

    def log_prior(self, position):
        lp = jnp.sum(jstats.norm.logpdf(position["eta"], 0.0, self.omega))
        if self.estimate_error:
            lp = lp + jnp.sum(jstats.norm.logpdf(position["log_sigma"], jnp.log(self.err_values), 1.0))
        return lp

    def log_likelihood(self, theta, errors, data: SubjectData):
        pred, ok = predict(self.model, self.opts, theta, data)
        ll = observation_loglik(errors, data, pred)
        return jnp.where(ok & jnp.isfinite(ll), ll, -jnp.inf)

    def __call__(self, position, data: SubjectData):
        errors = self.errors(position.get("log_sigma") if self.estimate_error else None)
        return self.log_prior(position) + self.log_likelihood(self.theta(position["eta"]), errors, data)

    def initial_position(self):
        init = {"eta": jnp.zeros(len(self.names))}
        if self.estimate_error:
            init["log_sigma"] = jnp.log(self.err_values)
        return init


def observation_loglik(errors, data: SubjectData, pred):
    """Σ over real observations of the residual-error log-density; M3 for censored rows."""
    total = 0.0
    for k, err in enumerate(errors):
        if err is None:
            continue
        mine = data.mask & (data.obs_index == k)
        point = err.log_likelihood(jnp.where(mine & ~data.cens, data.dv, 1.0), jnp.where(mine, pred, 1.0))
        total = total + jnp.sum(jnp.where(mine & ~data.cens, point, 0.0))
        below = mine & data.cens
        # log Φ is costly: a real branch when the data (shared by the chains) has no BLQ row.
        total = total + jax.lax.cond(
            jnp.any(below), lambda p: jnp.sum(jnp.where(below, _censored_logp(err, data.lloq, p, err.sd(p)), 0.0)),
            lambda p: jnp.zeros((), p.dtype), pred)
    return total


def _censored_logp(err, lloq, pred, sd):
    """log P(Y < LLOQ) under the residual error model (M3)."""
    if isinstance(err, LogNormal):
        z = (jnp.log(jnp.maximum(lloq, 1e-300)) - jnp.log(jnp.maximum(pred, 1e-300))) / sd
    else:
        z = (lloq - pred) / sd
    return jstats.norm.logcdf(z)


def density_spec(model, opts, *, estimate_error: bool = False, priors: Mapping | None = None) -> DensitySpec:
    """Which parameters are estimated (IIV in the model, or a user prior) and their priors."""
    median = np.asarray(model.theta, dtype=float).copy()
    omega = np.asarray(model.omega, dtype=float).copy()
    for name, prior in (priors or {}).items():
        if name not in model.parameter_names:
            raise ModelError(f"priors: model {model.name!r} has no parameter {name!r}."
                             + did_you_mean(name, model.parameter_names))
        try:
            med, sd = (float(x) for x in prior)
        except (TypeError, ValueError):
            raise ModelError(f"priors[{name!r}] = {prior!r}: expected (median, omega) of a log-normal prior.") from None
        if not (med > 0 and sd > 0):
            raise ModelError(f"priors[{name!r}] = {prior!r}: median and omega must both be positive.")
        i = model.parameter_index(name)
        median[i], omega[i] = med, sd
    est = np.flatnonzero(omega > 0)
    if est.size == 0:
        raise ModelError(f"model {model.name!r} has no parameter with IIV (iiv=...) and no priors=...: "
                         "nothing individual to estimate.")
    leaves, slots, names = _error_parameters(model.errors, estimate_error)
    return DensitySpec(model=model, opts=opts, median=jnp.asarray(median),
                       embed=jnp.eye(median.size)[:, est], omega=jnp.asarray(omega[est]),
                       err_values=leaves, names=tuple(model.parameter_names[i] for i in est),
                       error_names=names, error_slots=slots, estimate_error=estimate_error)


def _error_parameters(errors, estimate):
    """Positive residual-error parameters: values, (observation, field) slots and names."""
    leaves, slots, names = [], [], []
    for k, err in enumerate(errors):
        if err is None:
            continue
        for f in err.__dataclass_fields__:
            value = float(getattr(err, f))
            if value > 0:
                slots.append((k, f))
                leaves.append(value)
                names.append(f"{f}[{k}]" if sum(e is not None for e in errors) > 1 else f)
    if estimate and not leaves:
        raise ModelError("estimate_error=True but no residual-error parameter is positive.")
    return jnp.asarray(leaves, dtype=jnp.float64), tuple(slots), tuple(names)


@dataclass(frozen=True)
class SubjectLogDensity:
    """A subject's ``logdensity_fn`` (BlackJAX contract) with the layout to read positions back."""

    spec: DensitySpec
    data: SubjectData
    subject_id: object = None

    @property
    def logdensity_fn(self):
        spec, data = self.spec, self.data
        return lambda position: spec(position, data)

    @property
    def initial_position(self) -> dict:
        return self.spec.initial_position()

    @property
    def iiv_names(self) -> tuple[str, ...]:
        return self.spec.names

    @property
    def error_names(self) -> tuple[str, ...]:
        return self.spec.error_names

    def theta_fn(self, position):
        return self.spec.theta(position["eta"])

    def parameters(self, position) -> dict[str, jax.Array]:
        theta = self.spec.theta(position["eta"])
        return {n: theta[..., i] for i, n in enumerate(self.spec.model.parameter_names)}


def individual_logdensity(model, subject, *, estimate_error: bool = False, covariates=None,
                          priors: Mapping | None = None, simulate_options=None,
                          n_obs: int | None = None, n_doses: int | None = None) -> SubjectLogDensity:
    """Log posterior density (up to a constant) of one subject's individual parameters."""
    data = encode_subject(model, subject, covariates=covariates, n_obs=n_obs, n_doses=n_doses)
    opts = fit_options(model, data, **dict(simulate_options or {}))
    spec = density_spec(model, opts, estimate_error=estimate_error, priors=priors)
    return SubjectLogDensity(spec, data, getattr(subject, "id", None))
