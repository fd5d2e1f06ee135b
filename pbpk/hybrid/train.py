"""Training a hybrid model's neural terms across many patients (optax), with the inter-individual
variability kept on the mechanistic parameters.

The objective is the population's joint empirical-Bayes log density per observation:
``−[Σ_i log p(y_i | θ_i(η_i), NN) + Σ_i log N(η_i; 0, Ω)] / n_obs + l2·Σ w²``, minimised over the
network weights and (``estimate_eta=True``) every training patient's η, so the network learns
what is common to all patients while each patient keeps their own mechanistic parameters.  Early
stopping watches the held-out patients' loss: by default with each held-out patient's own η
(fitted alongside, the network frozen for them), so it scores the structure a patient's twin
would use; ``held_out="population"`` scores their population-typical (η = 0) prediction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jstats
import numpy as np

from ..errors import DataError, ModelError, did_you_mean
from .neural import NeuralResidual

__all__ = ["HybridFit", "TypicalFit", "train_hybrid", "estimate_typical", "population_loss", "joint_loss",
           "early_stopping"]


@dataclass(frozen=True)
class HybridFit:
    """The trained model (best held-out loss), the loss history, the training patients' η and
    the step of the best held-out loss."""

    model: object
    history: object          # pandas DataFrame: step, train, valid
    eta: np.ndarray
    best_step: int
    seconds: float


def _encode(model, dataset, simulate_options, opts=None):
    from ..inference._data import capacity, encode_subject, fit_options
    from ..inference.logdensity import density_spec
    from ..nonmem import Dataset

    if not isinstance(dataset, Dataset):
        raise DataError(f"train_hybrid: expected a Dataset (pbpk.read_nonmem), got {type(dataset).__name__}.")
    subjects = list(dataset)
    n_obs = max(len(s.obs) for s in subjects)
    n_doses = capacity(max(len(s.regimen) for s in subjects), 1)
    items = [encode_subject(model, s, n_obs=n_obs, n_doses=n_doses) for s in subjects]
    data = jax.tree.map(lambda *x: jnp.stack(x), *items)
    opts = opts or fit_options(model, items, **dict(simulate_options or {}))
    return data, density_spec(model, opts), sum(i.n_observed for i in items)


def population_loss(spec, residual, eta, data, n_observed):
    """−(log likelihood + log prior of η) per observation for patients with parameters ``eta``."""
    spec = eqx.tree_at(lambda s: s.model.residual, spec, residual)
    return joint_loss(spec, spec.theta(eta), eta, data, n_observed)


def joint_loss(spec, theta, eta, data, n_observed):
    """−(log likelihood at ``theta`` + log prior of ``eta``) per observation, over patients."""
    errors = spec.errors()
    ll = jax.vmap(lambda th, d: spec.log_likelihood(th, errors, d))(theta, data)
    lp = jnp.sum(jstats.norm.logpdf(eta, 0.0, spec.omega))
    return -(jnp.sum(ll) + lp) / n_observed


def train_hybrid(model, train, *, valid=None, steps: int = 300, learning_rate: float = 3e-3, l2: float = 1e-4,
                 estimate_eta: bool = True, eval_every: int = 10, patience: int = 5, simulate_options=None,
                 held_out: str = "individual", progress: bool = True) -> HybridFit:
    """Train the neural terms of ``model`` (compiled from a spec with ``Model.neural``) on the
    ``train`` Dataset; ``valid`` (held-out patients) drives early stopping (every ``eval_every``
    steps; stop after ``patience`` evaluations without improvement).  ``learning_rate``: a number
    or an optax schedule.  ``held_out``: "individual" (each held-out patient's η fitted with the
    network frozen; the default, since a trained hybrid is used through per-patient fits) or
    "population" (η = 0)."""
    import optax

    if not isinstance(model.residual, NeuralResidual):
        raise ModelError(f"train_hybrid: model {model.name!r} has no neural terms; declare one with "
                         "Model.neural(state, inputs=..., unit=..., key=...).")
    if not (isinstance(steps, int) and steps > 0):
        raise ModelError(f"train_hybrid: steps={steps!r} must be a positive integer.")
    if held_out not in ("individual", "population"):
        raise ModelError(f"train_hybrid: held_out={held_out!r}; expected 'individual' or 'population'."
                         + did_you_mean(held_out, ("individual", "population")))
    data, spec, n_train = _encode(model, train, simulate_options)
    valid_set = None
    if valid is not None:
        v_data, v_spec, n_valid = _encode(model, valid, simulate_options, opts=spec.opts)
        valid_set = (v_data, v_spec, n_valid, jnp.zeros((len(list(valid)), len(v_spec.names))))
    weights, static = eqx.partition(model.residual, eqx.is_inexact_array)
    params = {"w": weights, "eta": jnp.zeros((len(list(train)), len(spec.names)))}
    individual = valid_set is not None and held_out == "individual"
    if individual:
        params["eta_valid"] = valid_set[3]

    def valid_loss(p, w):
        v_data, v_spec, n_valid, eta0 = valid_set
        return population_loss(v_spec, eqx.combine(w, static), p["eta_valid"] if individual else eta0, v_data, n_valid)

    def objective(p):
        eta = p["eta"] if estimate_eta else jax.lax.stop_gradient(p["eta"])
        train_loss = population_loss(spec, eqx.combine(p["w"], static), eta, data, n_train)
        if not individual:
            return train_loss
        # the held-out patients' η follow the network; their data never reach its weights
        return train_loss + valid_loss(p, jax.lax.stop_gradient(p["w"])), train_loss

    @eqx.filter_jit
    def score(p):
        return valid_loss(p, p["w"])

    t0 = time.perf_counter()
    best, history, best_step = early_stopping(objective, params, optax.adam(learning_rate),
                                              score if valid_set else None, l2=l2, steps=steps,
                                              eval_every=eval_every, patience=patience, desc=f"training {model.name}",
                                              progress=progress)
    trained = model.with_residual(eqx.combine(best["w"], static))
    return HybridFit(model=trained, history=history, eta=np.asarray(best["eta"]), best_step=best_step,
                     seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class TypicalFit:
    """Typical values estimated across patients: the model carrying them, the patients' η, the
    joint objective −2·(log likelihood + log prior of η) at the optimum, its AIC (objective +
    2 × number of estimated typical values) and the number of observations."""

    model: object
    eta: np.ndarray
    objective: float
    aic: float
    n_observed: int
    seconds: float


def estimate_typical(model, dataset, names, *, steps: int = 400, learning_rate: float = 0.03,
                     simulate_options=None, progress: bool = True) -> TypicalFit:
    """Estimate the typical values of the parameters ``names`` of ``model`` from ``dataset``
    (several patients), every patient's η estimated with them (the joint empirical-Bayes mode
    that ``train_hybrid`` uses), by Adam on the log scale.  The way to re-estimate a term read
    out of a neural network (``symbolic_readout``) once it is written into the specification, and
    to compare candidate forms by AIC on the data rather than on the network's curve."""
    import optax

    names = list(names)
    if not names:
        raise ModelError("estimate_typical: give at least one parameter name.")
    index = [model.parameter_index(n) for n in names]
    if not (isinstance(steps, int) and steps > 0):
        raise ModelError(f"estimate_typical: steps={steps!r} must be a positive integer.")
    data, spec, n_obs = _encode(model, dataset, simulate_options)
    embed = jnp.eye(len(model.parameter_names))[:, index]
    # "w" is what all patients share (here the log shifts of the typical values), as in training
    params = {"w": jnp.zeros(len(index)), "eta": jnp.zeros((len(list(dataset)), len(spec.names)))}

    def objective(p):
        moved = eqx.tree_at(lambda s: s.median, spec, spec.median * jnp.exp(embed @ p["w"]))
        return joint_loss(moved, moved.theta(p["eta"]), p["eta"], data, n_obs)

    t0 = time.perf_counter()
    params, _, last = early_stopping(objective, params, optax.adam(optax.cosine_decay_schedule(learning_rate, steps,
                                                                                            alpha=0.02)),
                                  None, l2=0.0, steps=steps, eval_every=steps, patience=1,
                                  desc=f"typical values of {model.name}", progress=progress)
    value = float(objective(params)) if last == steps else np.nan     # earlier: the loss went non-finite
    if not np.isfinite(value):
        raise ModelError(f"estimate_typical: the objective of {model.name!r} is not finite at the estimate; "
                         "check the initial values and units of " + ", ".join(names) + ".")
    theta = model.theta * jnp.exp(embed @ params["w"])
    objective_2ll = 2.0 * value * n_obs
    return TypicalFit(model=eqx.tree_at(lambda m: m.theta, model, theta), eta=np.asarray(params["eta"]),
                      objective=objective_2ll, aic=objective_2ll + 2 * len(index), n_observed=int(n_obs),
                      seconds=time.perf_counter() - t0)


def early_stopping(objective, params, optimiser, held_out, *, l2, steps, eval_every, patience, desc, progress):
    """Minimise ``objective(params) + l2·Σ params["w"]²`` with the optax ``optimiser`` for up to
    ``steps`` steps (non-finite gradient entries are zeroed); ``objective`` may return a pair
    (value to minimise, training loss to report).  Every ``eval_every`` steps score
    ``held_out(params)`` (the training loss when None) and stop after ``patience`` scores without
    improvement.  ``params`` is {"w": weights, "eta": training patients' η}.  Returns the best
    parameters, the history (DataFrame: step, train, valid) and the best step."""
    import optax
    import pandas as pd
    from tqdm.auto import tqdm

    def penalised(p):
        value = objective(p)
        value, reported = value if isinstance(value, tuple) else (value, value)
        return value + l2 * sum(jnp.sum(w ** 2) for w in jax.tree.leaves(p["w"])), reported

    @eqx.filter_jit
    def step(p, s):
        (_, loss), grad = jax.value_and_grad(penalised, has_aux=True)(p)
        grad = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
        updates, s = optimiser.update(grad, s, p)
        return optax.apply_updates(p, updates), s, loss

    state = optimiser.init(params)
    rows, best, best_loss, best_step, waited = [], params, np.inf, 0, 0
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress)
    for i in bar:
        params, state, loss = step(params, state)
        if i % eval_every and i != steps:
            continue
        v = float(held_out(params)) if held_out is not None else float(loss)
        rows.append({"step": i, "train": float(loss), "valid": v if held_out is not None else np.nan})
        bar.set_postfix(train=f"{float(loss):.4g}", valid=f"{v:.4g}")
        if np.isfinite(v) and v < best_loss:
            best, best_loss, best_step, waited = params, v, i, 0
        else:
            waited += 1
            if waited >= patience:
                break
    return best, pd.DataFrame(rows, columns=["step", "train", "valid"]), best_step
