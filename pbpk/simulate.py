"""Simulation across dose events, for one patient or a batch, in one compiled function.

Doses become *breakpoints*: a bolus is a jump of one state, an infusion a rate switched on and
off, a reset (EVID 3/4) restores the initial state, a steady-state dose (SS=1) replaces the state
by the periodic steady state.  Between breakpoints the system is integrated exactly:

* linear models (``CompiledModel.linear``): the matrix exponential of the augmented system
  [[A, b+u], [0, 0]] over each step, which is exact for piecewise-constant inputs.  Steps
  between equally spaced output times share one exponential, so a patient costs a handful of
  exponentials however many outputs are requested;
* nonlinear models: diffrax with a stiff solver (Kvaerno5 by default) and a PID controller,
  restarted at every breakpoint so each dose lands exactly.

Batches (different parameters, covariates and regimens per patient) are padded to a common
number of doses and ``vmap``ped; the whole call traces once per shape.  A patient whose solve
fails gets ``status != 0`` instead of aborting the batch.
"""

from __future__ import annotations

import math

from collections.abc import Mapping, Sequence

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._expm import THETA as EXPM_THETA
from ._expm import expm, squarings_needed
from .compile import CompiledModel, parameter_vector
from .dosing import Bolus, Infusion, Regimen, Reset
from .errors import DosingError, ModelError, did_you_mean
from .spec.units import convert_factor, parse_unit

__all__ = ["simulate", "Solution", "STATUS"]

STATUS = {0: "ok", 1: "solver failed (step limit or step size)", 2: "non-finite state",
          3: "matrix exponential under-resolved (parameters far outside the batch used to size it)"}
_BOLUS, _RATE, _DURATION, _RESET = 0, 1, 2, 3


class Solution(eqx.Module):
    """Simulated trajectories.

    ``states``: (..., T, n_states) amounts; ``observations``: (..., T, n_obs); leading axis is
    the patient when batched.  ``status``: 0 = ok, see ``STATUS``.  Index by name:
    ``sol["Cp"]`` or ``sol["central"]``.
    """

    times: jax.Array
    states: jax.Array
    observations: jax.Array
    status: jax.Array
    state_names: tuple[str, ...] = eqx.field(static=True)
    observation_names: tuple[str, ...] = eqx.field(static=True)
    units: tuple[tuple[str, str], ...] = eqx.field(static=True)

    def __getitem__(self, name: str) -> jax.Array:
        if name in self.observation_names:
            return self.observations[..., self.observation_names.index(name)]
        if name in self.state_names:
            return self.states[..., self.state_names.index(name)]
        raise KeyError(f"no state or observation {name!r}."
                       + did_you_mean(name, self.state_names + self.observation_names))

    @property
    def ok(self) -> jax.Array:
        return self.status == 0

    @property
    def batched(self) -> bool:
        return self.status.ndim > 0

    def to_dataframe(self):
        """Long-format table: ID (when batched), TIME, one column per state and observation."""
        import pandas as pd

        states, obs = np.asarray(self.states), np.asarray(self.observations)
        if not self.batched:
            states, obs = states[None], obs[None]
        n, t = states.shape[:2]
        times = np.broadcast_to(np.asarray(self.times), (n, t))
        cols = {"ID": np.repeat(np.arange(1, n + 1), t), "TIME": times.reshape(-1)}
        for i, name in enumerate(self.state_names):
            cols[name] = states[..., i].reshape(-1)
        for i, name in enumerate(self.observation_names):
            cols[name] = obs[..., i].reshape(-1)
        df = pd.DataFrame(cols)
        df.attrs["units"] = dict(self.units)
        return df if self.batched else df.drop(columns="ID")


# =========================================================================== public entry
def simulate(model: CompiledModel, regimen, times, params=None, covariates=None, *,
             rtol: float = 1e-8, atol: float = 1e-10, solver: str = "auto", max_steps: int = 100_000,
             chunk_size: int | None = 128) -> Solution:
    """Simulate ``regimen`` at ``times`` (model time unit).

    Args:
        regimen: a ``Regimen`` or dose, a list of them (one per patient), a ``Dataset`` subject,
            or a ``Dataset`` (one patient per subject, its covariates and observation times).
        times: output times, (T,) shared or (N, T) per patient.
        params: None (typical values), a mapping name -> value or (N,) array, a (P,) or (N, P)
            parameter vector ordered as ``model.parameter_names``, or a ``Population``.
        covariates: mapping name -> value or (N,) array; defaults to reference values.
        rtol, atol: tolerances of the adaptive solver (the exact linear path ignores them).
        solver: "auto" (exact for linear models, else Kvaerno5), "exact", or a diffrax solver
            name: "Kvaerno5", "Kvaerno3", "Tsit5", "Dopri5".
        chunk_size: patients per vectorised chunk: small chunks keep each chunk's matrices in
            cache (128 was fastest for a 17-state PBPK on 2 cores) and bound memory.
    """
    if not isinstance(model, CompiledModel):
        raise ModelError(f"simulate expects a compiled model (Model.compile()), got {type(model).__name__}.")
    regimens, times, params, covariates, order = _from_dataset(model, regimen, times, params, covariates)
    theta, cov = _parameters(model, params), _covariates(model, covariates)
    times = jnp.asarray(times, dtype=jnp.float64)
    if times.ndim not in (1, 2) or times.shape[-1] == 0:
        raise DosingError(f"simulate: times must be a non-empty 1-D (T,) or 2-D (N, T) array, got shape {times.shape}.")
    _check_times(times)
    n = _batch_size(regimens, theta, cov, times)
    batched = n is not None
    regimens = regimens if isinstance(regimens, list) else [regimens] * (n or 1)
    if batched and len(regimens) != n:
        raise DosingError(f"simulate: got {len(regimens)} regimens for a batch of {n} patients.")
    doses = _encode(model, regimens, order)
    method = _method(model, solver)
    grid = _grid(times)
    nb = n or 1
    has_ss = bool(doses["ss"].any())
    squarings = _squarings(model, theta, cov, times, grid, doses, has_ss) if method == "exact" else 0
    opts = _Options(method=method, rtol=float(rtol), atol=float(atol), max_steps=int(max_steps),
                    has_ss=has_ss, grid_mode=grid is not None, squarings=squarings)
    grid_dt, grid_class = grid if grid is not None else (np.zeros(1), np.zeros(times.shape[-1], np.int32))
    grid_dt, grid_class = jnp.asarray(grid_dt), jnp.asarray(grid_class, dtype=jnp.int32)
    theta_b = jnp.broadcast_to(theta, (nb, theta.shape[-1]))
    cov_b = jnp.broadcast_to(cov, (nb, cov.shape[-1]))
    times_b = times if times.ndim == 2 else None
    doses_j = {k: jnp.asarray(v) for k, v in doses.items()}
    out_rank = _output_rank(order, times, nb)
    states, obs, status = _run_jit(model, opts, theta_b, cov_b, doses_j, times, times_b, out_rank, grid_dt,
                                   grid_class, min(chunk_size or nb, nb))
    if not batched:
        states, obs, status = states[0], obs[0], status[0]
        times = times if times.ndim == 1 else times[0]
    return Solution(times=times, states=states, observations=obs, status=status,
                    state_names=model.state_names, observation_names=model.observation_names,
                    units=model.unit_table)


class _Options(eqx.Module):
    method: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    has_ss: bool = eqx.field(static=True)
    grid_mode: bool = eqx.field(static=True)
    squarings: int = eqx.field(static=True)


# =========================================================================== inputs
def _from_dataset(model, regimen, times, params, covariates):
    """Unpack a Dataset or Subject into regimens, observation times and covariates."""
    try:
        from .nonmem import Dataset, Subject
    except ImportError:  # pragma: no cover - nonmem is part of the package
        return regimen, times, params, covariates, None
    if isinstance(regimen, Subject):
        subj = regimen
        times = subj.obs["TIME"].to_numpy(float) if times is None else times
        covs = covariates if covariates is not None else _subject_covariates(model, subj)
        return subj.regimen, times, params, covs, _record_order(subj, times)
    if isinstance(regimen, Dataset):
        subjects = list(regimen)
        if times is None:
            obs_times = [s.obs["TIME"].to_numpy(float) for s in subjects]
            longest = max(len(t) for t in obs_times)
            times = np.stack([np.pad(t, (0, longest - len(t)), mode="edge") if len(t) else np.zeros(longest)
                              for t in obs_times])
        covs = covariates
        if covs is None and model.covariate_names:
            per = [_subject_covariates(model, s) for s in subjects]
            covs = {k: np.asarray([p[k] for p in per]) for k in model.covariate_names}
        return [s.regimen for s in subjects], times, params, covs, None
    if isinstance(regimen, (Bolus, Infusion, Reset)):
        regimen = Regimen((regimen,))
    if isinstance(regimen, Sequence) and not isinstance(regimen, Regimen):
        regimen = [Regimen((r,)) if isinstance(r, (Bolus, Infusion, Reset)) else r for r in regimen]
        for i, r in enumerate(regimen):
            if not isinstance(r, Regimen):
                raise DosingError(f"simulate: regimen[{i}] is {type(r).__name__}, expected a Regimen or dose.")
    elif not isinstance(regimen, Regimen):
        raise DosingError(f"simulate: regimen must be a Regimen, a dose, a list of regimens or a Dataset; "
                          f"got {type(regimen).__name__}.")
    return regimen, times, params, covariates, None


def _subject_covariates(model, subj):
    base = subj.baseline_covariates()
    out = {}
    for name in model.covariate_names:
        if name in base:
            col = subj.covariates[name].to_numpy(float)
            if np.nanmax(col) != np.nanmin(col):
                raise DosingError(f"subject {subj.id}: covariate {name!r} varies over time; time-varying "
                                  "covariates are read and kept, but simulation uses one value per subject. "
                                  "Pass covariates={...} explicitly to choose it.")
            out[name] = base[name]
    return out


def _record_order(subj, times):
    """Dataset record numbers of observations and doses, to order equal-time events."""
    if "ROW" not in subj.obs or len(subj.obs) != len(np.atleast_1d(times)):
        return None
    return {"obs": subj.obs["ROW"].to_numpy(float), "doses": np.asarray(subj.dose_rows, dtype=float)}


def _check_times(times):
    if isinstance(times, jax.core.Tracer):
        return
    t = np.asarray(times)
    if not np.all(np.isfinite(t)):
        raise DosingError("simulate: times contain NaN or infinite values.")
    if np.any(np.diff(t, axis=-1) < 0):
        raise DosingError("simulate: times must be non-decreasing.")


def _parameters(model, params):
    from .population import Population

    if params is None:
        return model.theta
    if isinstance(params, Population):
        return params.theta
    if isinstance(params, Mapping):
        return parameter_vector(model, params)
    theta = jnp.asarray(params, dtype=jnp.float64)
    if theta.shape[-1:] != model.theta.shape or theta.ndim > 2:
        raise ModelError(f"simulate: params array has shape {theta.shape}; expected ({len(model.parameter_names)},) "
                         f"or (N, {len(model.parameter_names)}) ordered as {list(model.parameter_names)}.")
    return theta


def _covariates(model, covariates):
    from .population import Population

    names = model.covariate_names
    if isinstance(covariates, Population):
        return covariates.covariates
    if covariates is not None and not isinstance(covariates, Mapping):
        cov = jnp.asarray(covariates, dtype=jnp.float64)
        if cov.shape[-1:] != (len(names),):
            raise ModelError(f"simulate: covariates array has shape {cov.shape}; expected (..., {len(names)}) "
                             f"ordered as {list(names)}.")
        return cov
    covariates = dict(covariates or {})
    for k in covariates:
        if k not in names:
            raise ModelError(f"simulate: model {model.name!r} has no covariate {k!r}." + did_you_mean(k, names))
    cols = []
    for i, name in enumerate(names):
        if name in covariates:
            cols.append(jnp.asarray(covariates[name], dtype=jnp.float64))
        elif np.isnan(float(model.covariate_reference[i])):
            raise ModelError(f"simulate: covariate {name!r} has no reference value; pass covariates={{{name!r}: ...}}.")
        else:
            cols.append(model.covariate_reference[i])
    if not cols:
        return jnp.zeros((0,), dtype=jnp.float64)
    shape = jnp.broadcast_shapes(*[c.shape for c in cols])
    return jnp.stack([jnp.broadcast_to(c, shape) for c in cols], axis=-1)


def _batch_size(regimens, theta, cov, times):
    sizes = {}
    if isinstance(regimens, list):
        sizes["regimens"] = len(regimens)
    if theta.ndim == 2:
        sizes["params"] = theta.shape[0]
    if cov.ndim == 2:
        sizes["covariates"] = cov.shape[0]
    if times.ndim == 2:
        sizes["times"] = times.shape[0]
    if len(set(sizes.values())) > 1:
        raise DosingError(f"simulate: inconsistent batch sizes {sizes}.")
    return next(iter(sizes.values()), None)


def _method(model, solver):
    if solver == "auto":
        return "exact" if model.is_linear else "Kvaerno5"
    if solver == "exact":
        if not model.is_linear:
            raise ModelError(f"solver='exact' needs a linear model; {model.name!r} is nonlinear.")
        return "exact"
    if solver not in _SOLVERS:
        raise ModelError(f"unknown solver {solver!r}; expected 'auto', 'exact' or one of {sorted(_SOLVERS)}."
                         + did_you_mean(solver, list(_SOLVERS) + ["auto", "exact"]))
    return solver


_SOLVERS = {"Kvaerno5": dfx.Kvaerno5, "Kvaerno3": dfx.Kvaerno3, "Tsit5": dfx.Tsit5, "Dopri5": dfx.Dopri5,
            "Dopri8": dfx.Dopri8}


def _encode(model, regimens, order):
    """Padded per-patient dose arrays: time, state, amount, kind, value, modelled, ss, ii, rank.

    Regimens shared by many patients (the same object) are encoded once.
    """
    width = max(1, max(len(r) for r in regimens))
    cache, rows = {}, []
    for reg in regimens:
        if id(reg) not in cache:
            cache[id(reg)] = _encode_one(model, reg, width, None if order is None else order["doses"])
        rows.append(cache[id(reg)])
    if len(cache) == 1:
        one = rows[0]
        return {k: (jnp.broadcast_to(v, (len(rows),) + v.shape) if isinstance(v, jax.Array)
                    else np.broadcast_to(v, (len(rows),) + v.shape)) for k, v in one.items()}
    out = {k: np.stack([r[k] for r in rows]) for k in rows[0] if k != "amount"}
    amounts = [r["amount"] for r in rows]
    out["amount"] = (jnp.stack(amounts) if any(isinstance(a, jax.Array) for a in amounts)
                     else np.stack(amounts))
    return out


def _encode_one(model, reg, width, dose_rows):
    enc = {k: np.zeros(width, dtype=dt) for k, dt in
           (("time", float), ("state", np.int32), ("kind", np.int32), ("value", float), ("modelled", bool),
            ("ss", bool), ("ii", float), ("rank", float), ("valid", bool))}
    amounts = [0.0] * width
    factors = {}
    for j, d in enumerate(reg.doses):
        enc["time"][j] = float(d.time)
        enc["rank"][j] = j if dose_rows is None else dose_rows[j]
        enc["valid"][j] = True
        if isinstance(d, Reset):
            enc["kind"][j] = _RESET
            continue
        enc["state"][j] = _dose_state(model, d)
        f = 1.0 if d.unit is None else _unit_factor(model, d.unit, factors)
        amt = 0.0 if d.amount is None else d.amount
        amounts[j] = amt if f == 1.0 else amt * f
        enc["ss"][j], enc["ii"][j] = d.ss, float(d.ii or 0.0)
        if isinstance(d, Bolus):
            enc["kind"][j] = _BOLUS
        elif d.rate is not None:
            enc["kind"][j] = _RATE
            enc["modelled"][j] = d.rate == "model"
            enc["value"][j] = 0.0 if d.rate == "model" else float(d.rate) * f
        else:
            enc["kind"][j] = _DURATION
            enc["modelled"][j] = d.duration == "model"
            enc["value"][j] = 0.0 if d.duration == "model" else float(d.duration)
        if d.amount is None:   # continuous steady-state infusion
            enc["value"][j] = float(d.rate) * f
            enc["ii"][j] = 0.0
    traced = any(isinstance(a, jax.core.Tracer) or isinstance(a, jax.Array) for a in amounts)
    enc["amount"] = (jnp.stack([jnp.asarray(a, dtype=jnp.float64) for a in amounts]) if traced
                     else np.asarray(amounts, dtype=float))
    return enc


def _dose_state(model, dose):
    if dose.into not in model.state_names:
        raise DosingError(f"{type(dose).__name__} at time {dose.time}: model {model.name!r} has no compartment "
                          f"{dose.into!r}." + did_you_mean(dose.into, model.compartment_names))
    return model.state_names.index(dose.into)


def _unit_factor(model, unit, cache):
    if unit not in cache:
        cache[unit] = convert_factor(parse_unit(unit, what="dose unit"), parse_unit(model.amount_unit),
                                     what=f"dose in {unit!r} for a model with amounts in {model.amount_unit!r}")
    return cache[unit]


def _grid(times):
    """For shared concrete output times: distinct step sizes and each step's class."""
    if times.ndim != 1 or isinstance(times, jax.core.Tracer):
        return None
    t = np.asarray(times)
    dt = np.diff(t, prepend=min(t[0], 0.0))
    scale = max(float(np.max(np.abs(t))), 1.0)
    keys = np.round(dt / scale, 12)
    uniq, cls = np.unique(keys[keys > 0], return_inverse=True)
    if len(uniq) > 8:
        return None
    classes = np.zeros(len(t), dtype=np.int32)           # class 0: zero step (identity)
    classes[keys > 0] = cls + 1
    reps = np.asarray([0.0] + [dt[keys > 0][np.argmax(cls == k)] for k in range(len(uniq))])
    return reps, classes


def _output_rank(order, times, nb):
    """Tie-break of outputs against doses at equal times: after doses unless record order says otherwise."""
    t = times.shape[-1]
    if order is None:
        return jnp.full((nb, t), np.inf)
    return jnp.broadcast_to(jnp.asarray(order["obs"], dtype=jnp.float64), (nb, t))


# =========================================================================== the compiled core
@eqx.filter_jit
def _run_jit(model, opts, theta, cov, doses, times, times_b, out_rank, grid_dt, grid_class, chunk):
    def one(args):
        th, cv, dz, tb, rank = args
        t = times if tb is None else tb
        ys, status = _patient(model, opts, th, cv, dz, t, rank, grid_dt, grid_class)
        obs = jax.vmap(model.observe, in_axes=(0, 0, None, None))(t, ys, th, cv)
        return ys, obs, status

    xs = (theta, cov, doses, times_b, out_rank)
    if theta.shape[0] <= chunk:
        return jax.vmap(one)(xs)
    return jax.lax.map(one, xs, batch_size=chunk)


def _patient(model, opts, theta, cov, dz, times, out_rank, grid_dt, grid_class):
    y0 = model.initial_state(theta, cov)
    bp = _breakpoints(model, theta, cov, dz, times)
    if opts.method == "exact":
        ys = _exact(model, opts, theta, cov, bp, y0, times, out_rank, grid_dt, grid_class)
        a, _ = model.linear_system(theta, cov)
        span = (jnp.max(grid_dt) if opts.grid_mode
                else jnp.max(times) - jnp.minimum(jnp.min(times), 0.0))
        span = jnp.maximum(span, jnp.max(dz["ii"])) if opts.has_ss else span
        need = squarings_needed(jnp.max(jnp.sum(jnp.abs(a), axis=0)) * span)
        status = jnp.where(jnp.all(jnp.isfinite(ys)), jnp.where(need > opts.squarings, 3, 0), 2)
    else:
        ys, ok = _adaptive(model, opts, theta, cov, bp, y0, times, out_rank)
        status = jnp.where(ok, jnp.where(jnp.all(jnp.isfinite(ys)), 0, 2), 1)
    return ys, status


def _breakpoints(model, theta, cov, dz, times):
    """Dose records -> 2·D breakpoints (start, end), sorted; each with its state change."""
    F, lag, mdur, mrate = model.dose_properties(theta, cov)
    s = dz["state"]
    kind, valid = dz["kind"], dz["valid"]
    amt = dz["amount"] * F[s]
    start = dz["time"] + jnp.where(kind == _RESET, 0.0, lag[s])
    is_inf = (kind == _RATE) | (kind == _DURATION)
    rate = jnp.where(kind == _RATE, jnp.where(dz["modelled"], mrate[s], dz["value"]), 0.0)
    dur = jnp.where(kind == _DURATION, jnp.where(dz["modelled"], mdur[s], dz["value"]), 0.0)
    continuous = is_inf & dz["ss"] & (dz["ii"] == 0)
    safe = lambda x: jnp.where(x > 0, x, 1.0)
    rate = jnp.where(kind == _DURATION, amt / safe(dur), rate)
    dur = jnp.where(kind == _RATE, amt / safe(rate), dur)
    horizon = jnp.max(times) + 1.0
    end = jnp.where(continuous, jnp.maximum(horizon, start), start + jnp.where(is_inf, dur, 0.0))
    resets = valid & ((kind == _RESET) | dz["ss"])
    # An infusion stopped by a later reset must not subtract its rate again at its end.
    r_t = jnp.where(resets, start, jnp.inf)
    cut = jnp.any((r_t[None, :] > start[:, None]) & (r_t[None, :] <= end[:, None]), axis=1) | continuous
    on = valid & is_inf
    d = start.shape[0]
    t_all = jnp.concatenate([start, end])
    rank_all = jnp.concatenate([dz["rank"], dz["rank"] + 0.5])
    pad = jnp.max(times)
    t_all = jnp.where(jnp.concatenate([valid, valid]), t_all, pad)
    bp = dict(
        t=t_all, rank=rank_all, state=jnp.concatenate([s, s]),
        jump=jnp.concatenate([jnp.where(valid & (kind == _BOLUS), amt, 0.0), jnp.zeros(d)]),
        drate=jnp.concatenate([jnp.where(on, rate, 0.0), jnp.where(on & ~cut, -rate, 0.0)]),
        reset=jnp.concatenate([valid & (kind == _RESET), jnp.zeros(d, bool)]),
        ss=jnp.concatenate([valid & dz["ss"], jnp.zeros(d, bool)]),
        ss_amt=jnp.concatenate([amt, jnp.zeros(d)]), ss_ii=jnp.concatenate([dz["ii"], jnp.zeros(d)]),
        ss_rate=jnp.concatenate([rate, jnp.zeros(d)]), ss_dur=jnp.concatenate([dur, jnp.zeros(d)]),
        ss_kind=jnp.concatenate([jnp.where(continuous, 2, jnp.where(is_inf, 1, 0)), jnp.zeros(d, jnp.int32)]),
    )
    order = jnp.lexsort((bp["rank"], bp["t"]))
    return {k: v[order] for k, v in bp.items()}


def _rates_after(bp, n):
    """Input-rate vector in effect after each (sorted) breakpoint; resets stop infusions."""

    def step(u, x):
        u = jnp.where(x["reset"] | x["ss"], jnp.zeros_like(u), u)
        u = u.at[x["state"]].add(x["drate"])
        return u, u

    _, us = jax.lax.scan(step, jnp.zeros(n), {k: bp[k] for k in ("reset", "ss", "state", "drate")})
    return us


def _exact(model, opts, theta, cov, bp, y0, times, out_rank, grid_dt, grid_class):
    """Exact propagation of a linear system between outputs, with events superposed.

    From output j-1 to output j: y_j = Φ(Δ_j)·y_{j-1} + Ψ(Δ_j)·w + Σ_b [Φ(t_j - t_b)·x_b + Ψ(t_j - t_b)·v_b]
    over the breakpoints b in (t_{j-1}, t_j]: a bolus adds x_b = amount·e, a rate change
    v_b = Δrate·e.  A reset or steady-state replacement discards what came before it in the
    interval and restarts from its target state.  One exponential per breakpoint and one per
    distinct output spacing.
    """
    a, b = model.linear_system(theta, cov)
    n, k, t = a.shape[0], bp["t"].shape[0], times.shape[0]
    before = (times[None, :] < bp["t"][:, None]) | ((times[None, :] == bp["t"][:, None])
                                                   & (out_rank[None, :] < bp["rank"][:, None]))
    interval = jnp.sum(before, axis=1)                       # first output after each breakpoint
    u_after = _rates_after(bp, n)
    w_seg = b[None, :] + jnp.concatenate([jnp.zeros((1, n)), u_after])        # (K+1, n)
    replace = bp["reset"] | bp["ss"]
    target = jnp.broadcast_to(y0, (k, n))
    if opts.has_ss:
        target = jnp.where(bp["ss"][:, None], _steady_states(a, b, bp, n, model.accumulators, opts.squarings), target)
    e = jax.nn.one_hot(bp["state"], n) * bp["jump"][:, None]
    x = jnp.where(replace[:, None], target + e, e)
    v = jnp.where(replace[:, None], w_seg[1:], w_seg[1:] - w_seg[:-1])
    tau = times[jnp.clip(interval, 0, t - 1)] - bp["t"]
    tau = jnp.where(interval < t, tau, 0.0)
    small = jax.vmap(lambda tt, vv: _augmented_expm(a, vv[:, None], tt[None], opts.squarings)[0])(tau, v)
    contrib = jnp.einsum("kij,kj->ki", small[:, :n, :n], x) + small[:, :n, n]
    # A replacement discards earlier breakpoints of its interval.
    idx = jnp.arange(k)
    member = interval[:, None] == jnp.arange(t + 1)[None, :]                 # (K, T+1), dense: K is small
    last_rep = jnp.max(jnp.where(member & replace[:, None], idx[:, None], -1), axis=0)
    kept = idx >= last_rep[interval]
    c = jnp.einsum("kt,ki->ti", (member & kept[:, None]).astype(contrib.dtype), contrib)[:t]
    restart = last_rep[:t] >= 0
    n_before = jnp.sum(interval[None, :] < jnp.arange(t)[:, None], axis=1)   # breakpoints before output j-1
    if opts.grid_mode:
        big = _augmented_expm(a, w_seg.T, grid_dt[1:], opts.squarings)       # (U, n+K+1, n+K+1)
        big = jnp.concatenate([jnp.eye(big.shape[-1])[None], big])           # class 0: zero step
        cls = grid_class
    else:
        steps = times - jnp.concatenate([jnp.minimum(times[:1], 0.0), times[:-1]])
        big = _augmented_expm(a, w_seg.T, steps, opts.squarings)
        cls = jnp.arange(t)
    phis = big[:, :n, :n]
    # Input over each step (Ψ·w of the segment in force) plus the superposed events.
    drive = jnp.where(restart[:, None], 0.0, big[cls, :n, n + n_before]) + c

    def step(y, xs):
        cj, rj, dj = xs
        y = jnp.where(rj, 0.0, phis[cj] @ y) + dj
        return y, y

    _, ys = jax.lax.scan(step, y0, (cls, restart, drive))
    return ys


def _apply_event(y, y0, bp, j, ss_state):
    y = jnp.where(bp["reset"][j], y0, y)
    if ss_state is not None:
        y = jnp.where(bp["ss"][j], ss_state[j], y)
    return y.at[bp["state"][j]].add(bp["jump"][j])


def _augmented_expm(a, w, taus, squarings):
    """exp([[A, W], [0, 0]]·tau) for each tau: blocks give Φ(tau) and Ψ(tau)·W.

    W's columns are normalised first (Ψ·W is linear in W) so that large infusion rates do not
    inflate the norm and the number of squarings.
    """
    n, m = a.shape[0], w.shape[1]
    # The result does not depend on the scale (only round-off does): keep it out of gradients.
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(w), axis=0))
    scale = jnp.where(scale > 0, scale, 1.0)
    top = jnp.concatenate([a, w / scale], axis=1)
    aug = jnp.concatenate([top, jnp.zeros((m, n + m))], axis=0)
    out = jax.vmap(lambda tt: expm(aug * tt, max_squarings=squarings))(taus)
    return out.at[:, :n, n:].multiply(scale)


def _squarings(model, theta, cov, times, grid, doses, has_ss) -> int:
    """Squarings the exponentials need for this batch: log2(max ‖A‖₁·τ_max / θ) + 1.

    Computed from the concrete parameters when available; under tracing (e.g. ``grad``) from
    the typical values with a 2⁴ margin.  Too few squarings is reported as status 3, never
    silently inaccurate.
    """
    if any(isinstance(x, jax.core.Tracer) for x in (theta, cov)):
        with jax.ensure_compile_time_eval():      # typical values are concrete even inside a user's jit
            norm, margin = _max_norm(model, model.theta, jnp.nan_to_num(model.covariate_reference, nan=1.0)), 4
    else:
        norm, margin = _max_norm(model, theta, cov), 1
    if grid is not None:       # every exponential spans at most one output step
        span = float(np.max(np.asarray(grid[0])))
    elif isinstance(times, jax.core.Tracer):
        span = 1e5
    else:
        t = np.asarray(times)
        span = float(np.max(t) - min(float(np.min(t)), 0.0))
    if has_ss:
        span = max(span, float(np.max(np.asarray(doses["ii"]))))
    need = max(math.ceil(math.log2(max(norm * max(span, 1e-12), 1e-300) / EXPM_THETA)), 0)
    return int(np.clip(need + margin, 1, 60))


def _max_norm(model, theta, cov):
    th = jnp.atleast_2d(theta)
    cv = jnp.broadcast_to(cov, th.shape[:1] + cov.shape[-1:]) if cov.ndim < 2 else cov
    th = jnp.broadcast_to(th, cv.shape[:1] + th.shape[-1:])
    if th.shape[0] == 1:
        with jax.ensure_compile_time_eval():      # concrete, even inside a user's jit
            return float(jnp.max(jnp.sum(jnp.abs(model.linear_system(th[0], cv[0])[0]), axis=0)))
    return float(_norms(model, th, cv))


@eqx.filter_jit
def _norms(model, theta, cov):
    a = jax.vmap(lambda t, c: model.linear_system(t, c)[0])(theta, cov)
    return jnp.max(jnp.sum(jnp.abs(a), axis=-2))


def _steady_states(a, b, bp, n, accumulators, squarings):
    """State at each SS dose time (before the dose itself), for linear systems."""
    keep = ~jnp.asarray(accumulators)
    mask = keep[:, None] & keep[None, :]
    eye = jnp.eye(n)

    def one(kind, s, amt, ii, rate, dur):
        e = eye[s]
        # Bolus: trough y = Φ(ii)(y + amt·e) + Ψ(ii)b.
        f_ii = _augmented_expm(a, b[:, None], ii[None], squarings)[0]
        phi_ii, psib_ii = f_ii[:n, :n], f_ii[:n, n]
        m_bolus, g_bolus = phi_ii, phi_ii @ (amt * e) + psib_ii
        # Infusion of duration dur every ii: y -> Φ(ii-dur)[Φ(dur)y + Ψ(dur)(b+rate·e)] + Ψ(ii-dur)b.
        f_on = _augmented_expm(a, (b + rate * e)[:, None], dur[None], squarings)[0]
        f_off = _augmented_expm(a, b[:, None], (ii - dur)[None], squarings)[0]
        m_inf = f_off[:n, :n] @ f_on[:n, :n]
        g_inf = f_off[:n, :n] @ f_on[:n, n] + f_off[:n, n]
        m = jnp.where(kind == 1, m_inf, m_bolus)
        g = jnp.where(kind == 1, g_inf, g_bolus)
        lhs = jnp.where(mask, eye - m, eye)
        periodic = jnp.linalg.solve(lhs, jnp.where(keep, g, 0.0))
        # Continuous infusion: A y + b + rate·e = 0 on the non-accumulating states.
        a_ss = jnp.where(mask, a, -eye)
        constant = jnp.linalg.solve(a_ss, -jnp.where(keep, b + rate * e, 0.0))
        return jnp.where(kind == 2, constant, periodic)

    return jax.vmap(one)(bp["ss_kind"], bp["state"], bp["ss_amt"], jnp.maximum(bp["ss_ii"], 1e-12),
                         bp["ss_rate"], jnp.minimum(bp["ss_dur"], jnp.maximum(bp["ss_ii"], 1e-12)))


def _adaptive(model, opts, theta, cov, bp, y0, times, out_rank):
    n = y0.shape[0]
    k = bp["t"].shape[0]
    u_after = _rates_after(bp, n)
    # Outputs after the i-th breakpoint (in merged order) belong to segment i.
    before = (bp["t"][None, :] < times[:, None]) | ((bp["t"][None, :] == times[:, None])
                                                   & (bp["rank"][None, :] < out_rank[:, None]))
    out_seg = jnp.sum(before, axis=1)
    t0 = jnp.minimum(jnp.min(times), 0.0)
    bounds = jnp.concatenate([t0[None], bp["t"], jnp.max(times)[None]])
    bounds = jax.lax.cummax(bounds)
    rates = jnp.concatenate([jnp.zeros((1, n)), u_after])
    term = dfx.ODETerm(lambda t, y, args: model.rhs(t, y, args[0], args[1], args[2]))
    solver = _SOLVERS[opts.method]()
    controller = dfx.PIDController(rtol=opts.rtol, atol=opts.atol)

    ss_state = None
    if opts.has_ss:
        ss_state, ss_ok = _adaptive_steady_states(model, opts, theta, cov, bp, term, solver, controller)
    ok0 = jnp.all(ss_ok) if opts.has_ss else jnp.array(True)

    def segment(carry, i):
        y, outs, ok = carry
        ta, tb = bounds[i], bounds[i + 1]
        sol = dfx.diffeqsolve(term, solver, ta, tb, None, y, args=(theta, cov, rates[i]),
                              saveat=dfx.SaveAt(ts=jnp.clip(times, ta, tb), t1=True),
                              stepsize_controller=controller, max_steps=opts.max_steps, throw=False)
        outs = jnp.where((out_seg == i)[:, None], sol.ys[: times.shape[0]], outs)
        y_end = sol.ys[-1]
        ok = ok & (sol.result == dfx.RESULTS.successful)
        j = jnp.minimum(i, k - 1)
        y_next = jnp.where(i < k, _apply_event(y_end, y0, bp, j, ss_state), y_end)
        return (y_next, outs, ok), None

    init = (y0, jnp.zeros((times.shape[0], n)), ok0)
    (_, outs, ok), _ = jax.lax.scan(segment, init, jnp.arange(k + 1))
    return outs, ok


def _adaptive_steady_states(model, opts, theta, cov, bp, term, solver, controller):
    """Steady state before each SS dose of a nonlinear model, as the fixed point of one dosing
    interval (dose, then integrate over ii), found by optimistix (implicit differentiation).
    A continuous SS infusion solves rhs(y) + rate = 0 by Newton.  Accumulating states (such as
    ``eliminated``) are held at zero."""
    import optimistix as optx

    n = len(model.state_names)
    keep = ~jnp.asarray(model.accumulators)
    eye = jnp.eye(n)

    def integrate(y, t0, t1, rate):
        sol = dfx.diffeqsolve(term, solver, t0, t1, None, y, args=(theta, cov, rate),
                              stepsize_controller=controller, max_steps=opts.max_steps, throw=False)
        return sol.ys[-1]

    def one(kind, t, s, amt, ii, rate, dur):
        e = eye[s]
        ii = jnp.maximum(ii, 1e-9)
        dur = jnp.clip(dur, 0.0, ii)

        def interval(y, _):
            y = y + jnp.where(kind == 0, amt, 0.0) * e
            y = integrate(y, t, t + dur, jnp.where(kind == 1, rate, 0.0) * e)
            y = integrate(y, t + dur, t + ii, jnp.zeros(n))
            return jnp.where(keep, y, 0.0)

        def balance(y, _):
            return jnp.where(keep, model.rhs(t, y, theta, cov, rate * e), y)

        periodic = optx.fixed_point(interval, optx.FixedPointIteration(rtol=opts.rtol, atol=opts.atol),
                                    jnp.zeros(n), max_steps=2000, throw=False)
        constant = optx.root_find(balance, optx.Newton(rtol=opts.rtol, atol=opts.atol), jnp.zeros(n),
                                  max_steps=200, throw=False)
        state = jnp.where(kind == 2, constant.value, periodic.value)
        ok = jnp.where(kind == 2, constant.result == optx.RESULTS.successful,
                       periodic.result == optx.RESULTS.successful)
        return state, ok

    states, ok = jax.vmap(one)(bp["ss_kind"], bp["t"], bp["state"], bp["ss_amt"], bp["ss_ii"], bp["ss_rate"],
                               bp["ss_dur"])
    return states, jnp.where(bp["ss"], ok, True)
