"""Covariate models learned across patients: from a patient's baseline features to the typical
values of their individual parameters.

    θ_i = θ_typ · exp(E · g(x̃_i)) · exp(η_i),   x̃ = standardised features (positive ones on log scale)

``g`` is an MLP (``form="mlp"``, starting at zero so the untrained model is the population's
typical patient) or one linear layer (``form="power"``: on log-features this is the classical
power/exponential covariate model, estimated by the same machinery, the fair comparator).  ``E``
puts the outputs into the chosen parameters' slots.  Training maximises the population's joint
empirical-Bayes log density (every training patient's η estimated with the weights, so the
network explains what differs between patients and η keeps what it cannot), with L2 on the
weights and early stopping on held-out patients.  A new patient's twin then starts from
``network.typical(features)`` before any sample: pass it as ``params=`` or as a prior median.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import DataError, ModelError, did_you_mean
from .neural import zero_output

__all__ = ["CovariateNetwork", "CovariateFit", "train_covariate_network"]


class CovariateNetwork(eqx.Module):
    """Baseline features → individual typical parameter vector (ordered as ``parameter_names``)."""

    net: eqx.Module
    median: jax.Array          # (P,) population typical values
    embed: jax.Array           # (P, k) network outputs into parameter slots
    centre: jax.Array          # (F,) feature standardisation
    spread: jax.Array
    log_features: jax.Array    # (F,) bool: feature taken on log scale
    feature_names: tuple[str, ...] = eqx.field(static=True)
    parameter_names: tuple[str, ...] = eqx.field(static=True)
    targets: tuple[str, ...] = eqx.field(static=True)

    def transform(self, x):
        return (_log_where(x, self.log_features) - self.centre) / self.spread

    def __call__(self, x):
        """Typical parameter vector for one patient's raw feature vector ``x`` (F,)."""
        return self.median * jnp.exp(self.embed @ self.net(self.transform(x)))

    def typical(self, features) -> np.ndarray:
        """(n, P) typical parameters for a DataFrame (or array) of baseline features."""
        x = _feature_matrix(features, self.feature_names)
        return np.asarray(jax.vmap(self)(jnp.asarray(x)))


@dataclass(frozen=True)
class CovariateFit:
    network: CovariateNetwork
    history: object            # pandas DataFrame: step, train, valid
    eta: np.ndarray            # training patients' η at the best step
    best_step: int
    seconds: float


def _log_where(x, mask):
    """log(x) in the columns where ``mask`` is set, x elsewhere."""
    return jnp.where(mask, jnp.log(jnp.where(mask, x, 1.0)), x)


def _feature_matrix(features, names):
    import pandas as pd

    if isinstance(features, pd.DataFrame):
        missing = [n for n in names if n not in features.columns]
        if missing:
            raise DataError(f"covariate network: features lack column(s) {missing}; they have "
                            f"{list(features.columns)}." + did_you_mean(missing[0], list(features.columns)))
        features = features[list(names)].to_numpy(float)
    x = np.asarray(features, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise DataError(f"covariate network: expected an (n, {len(names)}) feature array ({list(names)}), got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        rows = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
        raise DataError(f"covariate network: non-finite feature values in row(s) {rows[:5].tolist()}.")
    return x


def _aligned(dataset, features, names):
    """Feature rows in the dataset's subject order (``features`` indexed by ID)."""
    ids = [s.id for s in dataset]
    absent = [i for i in ids if i not in features.index]
    if absent:
        raise DataError(f"covariate network: no feature row for subject(s) {absent[:5]} (features must be indexed by ID).")
    return _feature_matrix(features.loc[ids], names)


def train_covariate_network(model, train, features, *, parameters, valid=None, form: str = "mlp", width: int = 16,
                            depth: int = 2, key=None, steps: int = 6000, learning_rate: float = 1e-3,
                            l2: float = 1e-4, eval_every: int = 25, patience: int = 30, simulate_options=None,
                            progress: bool = True) -> CovariateFit:
    """Learn a covariate model for ``parameters`` (names with IIV in ``model``) from ``features``
    (a DataFrame indexed by ID, one column per baseline feature; columns whose values are all
    positive are taken on the log scale) on the ``train`` Dataset.  ``valid``: (Dataset,
    features) of held-out patients for early stopping."""
    import optax
    import pandas as pd
    from .train import _encode, early_stopping, joint_loss

    if form not in ("mlp", "power"):
        raise ModelError(f"train_covariate_network: form={form!r}; expected 'mlp' or 'power'." + did_you_mean(str(form), ["mlp", "power"]))
    if form == "mlp" and not isinstance(key, jax.Array):
        raise ModelError("train_covariate_network(form='mlp') needs key=jax.random.key(...) for the initial weights.")
    for p in parameters:
        if p not in model.parameter_names:
            raise ModelError(f"train_covariate_network: model {model.name!r} has no parameter {p!r}."
                             + did_you_mean(p, model.parameter_names))
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ModelError(f"train_covariate_network: steps={steps!r} must be a non-negative integer (0: untrained).")
    if not isinstance(features, pd.DataFrame):
        raise DataError("train_covariate_network: features must be a DataFrame indexed by ID.")
    names = tuple(str(c) for c in features.columns)
    x_train = _aligned(train, features, names)
    data, spec, n_obs = _encode(model, train, simulate_options)
    log_feat = np.all(x_train > 0, axis=0)
    xt = np.asarray(_log_where(x_train, log_feat))
    centre, spread = xt.mean(axis=0), np.where(xt.std(axis=0) > 0, xt.std(axis=0), 1.0)
    net = _network(form, len(names), len(parameters), width, depth, key)
    embed = jnp.stack([jnp.eye(len(model.parameter_names))[model.parameter_index(p)] for p in parameters], axis=1)
    network = CovariateNetwork(net, jnp.asarray(model.theta), embed, jnp.asarray(centre), jnp.asarray(spread),
                               jnp.asarray(log_feat), names, tuple(model.parameter_names), tuple(parameters))
    only_net = eqx.tree_at(lambda n: n.net, jax.tree.map(lambda _: False, network),
                           jax.tree.map(eqx.is_inexact_array, network.net))
    weights, static = eqx.partition(network, only_net)

    def loss(w, eta, d, x, n):
        theta = jax.vmap(eqx.combine(w, static))(x) * jnp.exp(eta @ spec.embed.T)
        return joint_loss(spec, theta, eta, d, n)

    params = {"w": weights, "eta": jnp.zeros((x_train.shape[0], len(spec.names)))}
    xj = jnp.asarray(x_train)

    held = None
    if valid is not None:
        v_set, v_features = valid
        v_data, _, v_obs = _encode(model, v_set, simulate_options, opts=spec.opts)
        xv = jnp.asarray(_aligned(v_set, v_features, names))
        eta0 = jnp.zeros((xv.shape[0], len(spec.names)))
        held = eqx.filter_jit(lambda p: loss(p["w"], eta0, v_data, xv, v_obs))

    t0 = time.perf_counter()
    best, history, best_step = early_stopping(lambda p: loss(p["w"], p["eta"], data, xj, n_obs), params,
                                              optax.adam(learning_rate), held, l2=l2, steps=steps,
                                              eval_every=eval_every, patience=patience,
                                              desc=f"covariate network ({form})", progress=progress)
    return CovariateFit(network=eqx.combine(best["w"], static), history=history,
                        eta=np.asarray(best["eta"]), best_step=best_step, seconds=time.perf_counter() - t0)


def _network(form, n_in, n_out, width, depth, key):
    """Zero-initialised output layer: the untrained network is the population's typical patient."""
    if form == "power":
        return zero_output(eqx.nn.Linear(n_in, n_out, key=jax.random.key(0), dtype=jnp.float64))
    return zero_output(eqx.nn.MLP(n_in, n_out, width, depth, activation=jax.nn.softplus, key=key, dtype=jnp.float64))
