"""Physics-informed neural network (PINN) calibration of one patient.

A network gives the state trajectory ``u(t)``; the patient's parameters are trainable values.
The loss is the same individual log posterior that ``pbpk.fit(method="map")`` maximises, with the
ODE solve replaced by a penalty on the ODE residual at collocation points::

    loss = −[log p(y | observe(u(t_obs), θ)) + log N(η; 0, Ω)] + w · Σ_c ‖(u̇ − f(t_c, u, θ) − r(t_c))·T/(|u| + ρ·s)‖² / n_c

Doses enter as the known input, not as something to learn: the amount each dose has delivered
by time t is added to the network, ``u = y0 + Σ_k F·delivered_k(t) e_k + s ⊙ (NN(t) − NN(0))``
(a step for a bolus, a ramp for an infusion), so the initial state and every jump hold exactly
and the network only carries the smooth part; ``r(t)`` is the infusion rate, ``s`` the state
scale (the largest dose by default), ``T`` the time span and ``ρ`` (``relative_floor``) sets
how far the residual is weighted relative to the state's size (small ρ: late, low amounts count
as much as early ones, but the optimiser then favours the ODE over the data).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._events import BOLUS, DURATION, RATE
from ..errors import ModelError

__all__ = ["PinnFit", "fit_pinn"]


@dataclass(frozen=True)
class PinnFit:
    """A PINN calibration: the parameters (η and θ), the network and how the training went."""

    parameters: dict            # name → estimate (model units), every model parameter
    eta: np.ndarray             # estimated η, ordered as ``estimated``
    estimated: tuple            # names of the estimated parameters
    trajectory: eqx.Module      # callable t → states (model units)
    history: object             # pandas DataFrame: phase, step, loss, neg_log_posterior, ode_residual_ms
    ode_residual_rms: float     # dimensionless RMS residual at the collocation points at the end
    seconds: float

    def states(self, times) -> np.ndarray:
        """The network's states at ``times`` (n_times, n_states)."""
        return np.asarray(jax.vmap(self.trajectory)(jnp.asarray(times, dtype=float)))


class _Trajectory(eqx.Module):
    """u(t) = y0 + delivered doses + s ⊙ (MLP(φ(t)) − MLP(φ(0))), φ(t) = (t/T, log1p(t/τ)/log1p(T/τ))."""

    mlp: eqx.nn.MLP
    y0: jax.Array
    scale: jax.Array
    span: jax.Array
    tau: jax.Array
    jump_time: jax.Array    # (d,) dose times incl. lag
    jump: jax.Array         # (d, n) bolus amounts per state
    infusion_rate: jax.Array  # (d, n) zero-order rates per state
    duration: jax.Array     # (d,)

    def features(self, t):
        return jnp.stack([t / self.span, jnp.log1p(t / self.tau) / jnp.log1p(self.span / self.tau)])

    def input_rate(self, t):
        """Zero-order input into each state at t (on for start <= t < end, as ``elapsed``)."""
        since = t - self.jump_time
        on = (since >= 0) & (since < self.duration)
        return jnp.sum(jnp.where(on[:, None], self.infusion_rate, 0.0), axis=0)

    def __call__(self, t):
        net = self.mlp(self.features(t)) - self.mlp(self.features(jnp.zeros_like(t)))
        jumps = jnp.sum(jnp.where((t >= self.jump_time)[:, None], self.jump, 0.0), axis=0)
        # Same one-sided convention as the input rate (on for start <= t < end), so u̇ matches it.
        since = t - self.jump_time
        elapsed = jnp.where(since < 0, 0.0, jnp.where(since < self.duration, since, self.duration))
        infused = jnp.sum(self.infusion_rate * elapsed[:, None], axis=0)
        return self.y0 + jumps + infused + self.scale * net


class _Problem(eqx.Module):
    """One patient's PINN objective; every patient of a model has the same shapes, so one
    compilation serves them all."""

    spec: eqx.Module        # DensitySpec: priors, residual error, the model
    data: eqx.Module        # SubjectData
    dose: dict              # padded arrays: time, state, amount, bolus, infusion, duration
    t_col: jax.Array
    scale: jax.Array
    span: jax.Array
    tau: jax.Array
    ode_weight: jax.Array
    floor: jax.Array

    @property
    def model(self):
        return self.spec.model

    def trajectory(self, mlp, theta):
        cov, n = self.data.covariates, len(self.model.state_names)
        f, lag, _, _ = self.model.dose_properties(theta, cov)
        d = self.dose
        onehot = jax.nn.one_hot(d["state"], n) * f[None, :]
        jump = onehot * (d["bolus"] * d["amount"])[:, None]
        rate = onehot * jnp.where(d["infusion"], d["amount"] / jnp.maximum(d["duration"], 1e-300), 0.0)[:, None]
        return _Trajectory(mlp, self.model.initial_state(theta, cov), self.scale, self.span, self.tau,
                           d["time"] + lag[d["state"]], jump, rate, d["duration"])

    def parts(self, mlp, eta):
        """(−log posterior, mean squared dimensionless ODE residual)."""
        from ..inference.logdensity import observation_loglik

        model, data, cov = self.model, self.data, self.data.covariates
        theta = self.spec.theta(eta)
        u = self.trajectory(mlp, theta)
        obs = jax.vmap(model.observe, in_axes=(0, 0, None, None))(data.times, jax.vmap(u)(data.times), theta, cov)
        pred = jnp.take_along_axis(obs, data.obs_index[:, None], axis=1)[:, 0]
        log_post = observation_loglik(self.spec.errors(), data, pred) + self.spec.log_prior({"eta": eta})

        def residual(t):
            y, dy = jax.jvp(u, (t,), (jnp.ones_like(t),))
            return (dy - model.rhs(t, y, theta, cov, u.input_rate(t))) * self.span / (jnp.abs(y) + self.floor)

        return -log_post, jnp.mean(jax.vmap(residual)(self.t_col) ** 2)

    def loss(self, params, physics_only):
        mlp, eta = params
        if physics_only:     # pre-training: the typical patient's trajectory from the ODE alone
            _, ode = self.parts(mlp, jnp.zeros_like(eta))
            return self.ode_weight * ode
        nlp, ode = self.parts(mlp, eta)
        return nlp + self.ode_weight * ode


@eqx.filter_jit
def _run(problem, dynamic, static, state, n_steps, physics_only, optimiser, quasi_newton):
    """``n_steps`` optimiser steps (scanned); returns the new weights and state, the losses and
    the final (−log posterior, ODE residual)."""

    def value(x):
        return problem.loss(eqx.combine(x, static), physics_only)

    def body(carry, _):
        d, s = carry
        if quasi_newton:
            v, g = optax.value_and_grad_from_state(value)(d, state=s)
            updates, s = optimiser.update(g, s, d, value=v, grad=g, value_fn=value)
        else:
            v, g = jax.value_and_grad(value)(d)
            updates, s = optimiser.update(g, s, d)
        return (optax.apply_updates(d, updates), s), v

    (dynamic, state), values = jax.lax.scan(body, (dynamic, state), None, length=n_steps)
    return dynamic, state, values, jnp.stack(problem.parts(*eqx.combine(dynamic, static)))


@functools.lru_cache(maxsize=None)
def _optimisers(learning_rate, steps):
    """Built once per setting: the jitted training loop is keyed on the transforms' functions, so
    every patient after the first reuses its compilation."""
    return optax.adam(optax.cosine_decay_schedule(learning_rate, max(steps, 1), alpha=1e-2)), optax.lbfgs()


def _dose_arrays(data):
    """Bolus and infusion records as padded arrays; only what a PINN can take as a known input."""
    d = {k: np.asarray(v) for k, v in data.doses.items()}
    valid = d["valid"].astype(bool)
    bad = valid & (d["ss"].astype(bool) | d["modelled"].astype(bool) | ~np.isin(d["kind"], (BOLUS, RATE, DURATION)))
    if np.any(bad):
        raise ModelError("fit_pinn: doses must be plain boluses or infusions with a given rate or duration "
                         "(no steady-state, reset or modelled-duration records); "
                         f"record(s) at time {d['time'][bad].tolist()} are not.")
    amount = np.where(valid, np.asarray(d["amount"], dtype=float), 0.0)
    bolus = valid & (d["kind"] == BOLUS)
    by_rate = amount / np.where(d["value"] > 0, d["value"], 1.0)
    duration = np.where(d["kind"] == DURATION, d["value"], np.where(d["value"] > 0, by_rate, 0.0))
    return {"time": jnp.asarray(d["time"], float), "state": jnp.asarray(d["state"], jnp.int32),
            "amount": jnp.asarray(amount), "bolus": jnp.asarray(bolus), "infusion": jnp.asarray(valid & ~bolus),
            "duration": jnp.asarray(duration, float)}


def _collocation(span, tau, n, dose_time, infusion_end, valid):
    """A uniform grid plus log-spaced points after each dose and each infusion's end, where the
    trajectory bends most (a fixed count per dose slot, so the shape is the same for every
    patient of a model; unused slots repeat the first dose's points)."""
    uniform = np.linspace(0.0, span, n // 2)
    offsets = np.geomspace(tau / 10, span, max(n // 2, 2))
    events = np.concatenate([dose_time, infusion_end])
    slot_valid = np.concatenate([valid, valid & (infusion_end > 0)])
    events = np.where(slot_valid, events, dose_time[np.argmax(valid)] if np.any(valid) else 0.0)
    after = (events[:, None] + offsets[None, :]).ravel()
    return jnp.asarray(np.minimum(np.concatenate([uniform, after]), span))


def fit_pinn(model, data, *, key, subject=None, covariates=None, priors=None, width: int = 32, depth: int = 3,
             collocation: int = 200, pretrain: int = 2000, steps: int = 0, polish: int = 8000,
             learning_rate: float = 1e-3, ode_weight: float = 1e4, state_scale=None, relative_floor: float = 0.3,
             progress: bool = True) -> PinnFit:
    """Calibrate ``model`` to one patient's data with a PINN (see the module docstring).

    Training has three phases: ``pretrain`` L-BFGS steps on the ODE residual alone at the
    typical parameters (no data: the network learns the population-typical trajectory),
    ``steps`` Adam steps on the full loss (optional; L-BFGS alone converged better in the
    validation), then ``polish`` L-BFGS steps on the full loss.

    Args:
        data: as for ``pbpk.fit`` (a Dataset and ``subject``, a Subject, or a NONMEM CSV path).
        key: ``jax.random`` key for the network's initial weights.
        collocation: ODE-residual points on the uniform grid; as many again log-spaced after each dose.
        ode_weight: weight ``w`` of the mean squared dimensionless ODE residual.
        relative_floor: ``ρ`` in the residual's scale ``|u| + ρ·s``.
        state_scale: the states' scale ``s`` (scalar or per state; default the largest dose).
    """
    import pandas as pd

    from ..inference._data import encode_subject
    from ..inference.fit import select_subject
    from ..inference.logdensity import density_spec

    if not isinstance(key, jax.Array):
        raise ModelError("fit_pinn needs an explicit key, e.g. key=jax.random.key(0).")
    if model.residual is not None:
        raise ModelError("fit_pinn: the model already has a learned residual term; calibrate the mechanism alone.")
    for name, value in (("pretrain", pretrain), ("steps", steps), ("polish", polish)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ModelError(f"fit_pinn: {name}={value!r} must be a non-negative integer.")
    enc = encode_subject(model, select_subject(model, data, subject), covariates=covariates)
    problem = _problem(model, enc, density_spec(model, None, priors=priors), collocation, ode_weight, state_scale,
                       relative_floor)
    mlp = eqx.nn.MLP(2, len(model.state_names), width, depth, activation=jnp.tanh, key=key, dtype=jnp.float64)
    dynamic, static = eqx.partition((mlp, jnp.zeros(len(problem.spec.names))), eqx.is_inexact_array)

    t0 = time.perf_counter()
    adam, lbfgs = _optimisers(float(learning_rate), int(steps))
    records = []
    bar = _progress(progress, pretrain + steps + polish)
    for phase, physics_only, optimiser, total in (("physics", True, lbfgs, pretrain), ("adam", False, adam, steps),
                                                  ("lbfgs", False, lbfgs, polish)):
        state = optimiser.init(dynamic)
        chunk = max(-(-total // 10), 1)
        for _ in range(0, total, chunk):
            dynamic, state, values, (nlp, ode) = _run(problem, dynamic, static, state, chunk, physics_only, optimiser,
                                                      optimiser is lbfgs)
            step = (records[-1][1] if records else 0) + chunk
            records.append((phase, step, float(values[-1]), float(nlp), float(ode)))
            bar.update(chunk)
    bar.close()
    history = pd.DataFrame(records, columns=["phase", "step", "loss", "neg_log_posterior", "ode_residual_ms"])
    if history.empty or not np.all(np.isfinite(history.iloc[-1, 2:].to_numpy(float))):
        raise ModelError("fit_pinn: no finite loss; train for some steps, or lower learning_rate or ode_weight.")
    mlp, eta = eqx.combine(dynamic, static)
    theta = problem.spec.theta(eta)
    return PinnFit(parameters=dict(zip(model.parameter_names, np.asarray(theta).tolist())),
                   eta=np.asarray(eta), estimated=tuple(problem.spec.names), trajectory=problem.trajectory(mlp, theta),
                   history=history, ode_residual_rms=float(np.sqrt(history.ode_residual_ms.iloc[-1])),
                   seconds=time.perf_counter() - t0)


def _problem(model, enc, spec, collocation, ode_weight, state_scale, relative_floor):
    dose = _dose_arrays(enc)
    times = np.asarray(enc.times)[np.asarray(enc.mask)]
    if times.size == 0 or not np.max(times) > 0:
        raise ModelError("fit_pinn: the subject has no observation after time 0.")
    span = float(np.max(times))
    tau = float(max(np.min(times[times > 0]), span / 1000))
    default_scale = max(float(np.max(np.abs(np.asarray(dose["amount"])))), 1e-12)
    scale = jnp.broadcast_to(jnp.asarray(default_scale if state_scale is None else state_scale, float),
                             (len(model.state_names),))
    end = np.where(np.asarray(dose["infusion"]), np.asarray(dose["time"]) + np.asarray(dose["duration"]), 0.0)
    t_col = _collocation(span, tau, collocation, np.asarray(dose["time"]), end, np.asarray(enc.doses["valid"], bool))
    return _Problem(spec, enc, dose, t_col, scale, jnp.asarray(span), jnp.asarray(tau), jnp.asarray(float(ode_weight)),
                    relative_floor * scale)


def _progress(enabled, total):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="PINN", unit="step", disable=not enabled, leave=False)
