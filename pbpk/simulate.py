"""Simulation across dose events, for one patient or a batch, in one compiled function.

Doses become *breakpoints*: a bolus is a jump of one state, an infusion a rate switched on and
off, a reset (EVID 3/4) restores the initial state, a steady-state dose (SS=1) replaces the state
by the periodic steady state (``_events``).  Between breakpoints the system is integrated:

* linear models (``CompiledModel.is_linear``), exactly (``_exact``): exp(A·τ) and its integral
  over each step are exact for piecewise-constant inputs.  For the standard small compartment
  structures they are closed forms in the eigenvalues (``_spectral``); otherwise the matrix
  exponential of the augmented system [[A, b+u], [0, 0]].  Steps between equally spaced output
  times share one propagator and events are superposed, so a patient costs a handful of
  propagators however many outputs are requested;
* nonlinear models (``_adaptive``): diffrax with a stiff solver (Kvaerno5 by default) and a PID
  controller, restarted at every breakpoint so each dose lands exactly; steady states by
  optimistix fixed-point iteration over one dosing interval.

Batches (different parameters, covariates and regimens per patient) are padded to a common
number of doses and ``vmap``ped; the whole call traces once per shape.  A patient whose solve
fails gets ``status != 0`` instead of aborting the batch.
"""

from __future__ import annotations

import math

from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._adaptive import SOLVERS, propagate_adaptive
from ._events import BOLUS, DURATION, RATE, RESET, breakpoints
from ._exact import propagate_exact
from ._expm import THETA as EXPM_THETA
from ._expm import squarings_needed
from .compile import CompiledModel, parameter_vector
from .dosing import Bolus, Infusion, Regimen, Reset
from .errors import DosingError, ModelError, did_you_mean
from .spec.units import convert_factor, parse_unit

__all__ = ["simulate", "Solution", "STATUS"]

STATUS = {0: "ok", 1: "solver failed (step limit or step size)", 2: "non-finite state",
          3: "matrix exponential under-resolved (parameters far outside the batch used to size it)"}

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
        covariates: mapping name -> value or (N,) array; defaults to the ``Population``'s own
            covariates when ``params`` is one, otherwise to reference values.
        rtol, atol: tolerances of the adaptive solver (the exact linear path ignores them).
        solver: "auto" (exact for linear models, else Kvaerno5), "exact" (closed form where the
            structure allows, else the matrix exponential), "expm" (always the matrix
            exponential), or a diffrax solver name: "Kvaerno5", "Kvaerno3", "Tsit5", "Dopri5".
        chunk_size: patients per vectorised chunk: small chunks keep each chunk's matrices in
            cache (128 was fastest for a 17-state PBPK on 2 cores) and bound memory.
    """
    if not isinstance(model, CompiledModel):
        raise ModelError(f"simulate expects a compiled model (Model.compile()), got {type(model).__name__}.")
    regimens, times, params, covariates, order = _from_dataset(model, regimen, times, params, covariates)
    from .population import Population

    if covariates is None and isinstance(params, Population):
        covariates = params   # a population's patients keep their own covariates
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
    squarings = _squarings(model, theta, cov, times, grid, doses, has_ss) if method == "expm" else 0
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
                                   grid_class, _chunk(nb, chunk_size or nb))
    if not batched:
        states, obs, status = states[0], obs[0], status[0]
        times = times if times.ndim == 1 else times[0]
    return Solution(times=times, states=states, observations=obs, status=status,
                    state_names=model.state_names, observation_names=model.observation_names,
                    units=model.unit_table)


def _chunk(n: int, target: int) -> int:
    """A chunk size near ``target`` that divides ``n``: a remainder chunk would make ``lax.map``
    concatenate (copy) the whole output."""
    if n <= target:
        return n
    for d in [*range(target, target // 2, -1), *range(target + 1, 2 * target + 1)]:
        if n % d == 0:
            return d
    return target


class _Options(eqx.Module):
    method: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    has_ss: bool = eqx.field(static=True)
    grid_mode: bool = eqx.field(static=True)
    squarings: int = eqx.field(static=True)
    # Fitting needs only what the observations read: accumulators they do not read are left at 0.
    observed_only: bool = eqx.field(static=True, default=False)
    # "reverse" (diffrax's checkpointed adjoint) or "forward" (forward-mode sensitivities, for
    # gradients in a few parameters of a large stiff system: see inference.map).
    adjoint: str = eqx.field(static=True, default="reverse")


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
            if np.all(np.isnan(col)):
                from .errors import DataError

                raise DataError(f"subject {subj.id}: covariate {name!r} is missing on every record; the model "
                                "needs a value (or pass covariates={...} explicitly).")
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
    return {"obs": subj.obs["ROW"].to_numpy(float), "doses": np.asarray(subj.dose_order, dtype=float)}


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
    """Internal method: "spectral" (closed form), "expm" (matrix exponential) or a diffrax solver."""
    if solver == "auto":
        solver = "exact" if model.is_linear else "Kvaerno5"
    if solver in ("exact", "expm"):
        if not model.is_linear:
            raise ModelError(f"solver={solver!r} needs a linear model; {model.name!r} is nonlinear.")
        return "spectral" if solver == "exact" and model.spectral is not None else "expm"
    if solver not in SOLVERS:
        raise ModelError(f"unknown solver {solver!r}; expected 'auto', 'exact', 'expm' or one of "
                         f"{sorted(SOLVERS)}." + did_you_mean(solver, list(SOLVERS) + ["auto", "exact", "expm"]))
    return solver




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
            enc["kind"][j] = RESET
            continue
        enc["state"][j] = _dose_state(model, d)
        f = 1.0 if d.unit is None else _unit_factor(model, d.unit, factors)
        amt = 0.0 if d.amount is None else d.amount
        amounts[j] = amt if f == 1.0 else amt * f
        enc["ss"][j], enc["ii"][j] = d.ss, float(d.ii or 0.0)
        if isinstance(d, Bolus):
            enc["kind"][j] = BOLUS
        elif d.rate is not None:
            enc["kind"][j] = RATE
            enc["modelled"][j] = d.rate == "model"
            enc["value"][j] = 0.0 if d.rate == "model" else float(d.rate) * f
        else:
            enc["kind"][j] = DURATION
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
    bp = breakpoints(model, theta, cov, dz, times)
    if opts.method == "spectral":
        ys = propagate_exact(model, opts, theta, cov, bp, y0, times, out_rank, grid_dt, grid_class)
        status = jnp.where(jnp.all(jnp.isfinite(ys)), 0, 2)
    elif opts.method == "expm":
        ys = propagate_exact(model, opts, theta, cov, bp, y0, times, out_rank, grid_dt, grid_class)
        a, _ = model.linear_system(theta, cov)
        span = (jnp.max(grid_dt) if opts.grid_mode
                else jnp.max(times) - jnp.minimum(jnp.min(times), 0.0))
        span = jnp.maximum(span, jnp.max(dz["ii"])) if opts.has_ss else span
        need = squarings_needed(jnp.max(jnp.sum(jnp.abs(a), axis=0)) * span)
        status = jnp.where(jnp.all(jnp.isfinite(ys)), jnp.where(need > opts.squarings, 3, 0), 2)
    else:
        ys, ok = propagate_adaptive(model, opts, theta, cov, bp, y0, times, out_rank)
        status = jnp.where(ok, jnp.where(jnp.all(jnp.isfinite(ys)), 0, 2), 1)
    return ys, status


def _squarings(model, theta, cov, times, grid, doses, has_ss) -> int:
    """Squarings the exponentials need: log2(‖A‖₁·τ_max / θ), with ‖A‖₁ the larger of 2× the
    typical patient's and (when the parameters are concrete) the batch's largest.

    Sizing from the typical patient keeps the count, and so the compiled program, the same from
    call to call (no recompilation per patient, dose or RL step); a batch beyond it raises the
    count.  A traced patient beyond it is reported as status 3, never silently inaccurate.
    """
    with jax.ensure_compile_time_eval():      # concrete values, even inside a user's jit
        ref = jnp.nan_to_num(model.covariate_reference, nan=1.0)
        norm = 2.0 * float(_norms(model, model.theta[None], ref[None]))
        if not any(isinstance(x, jax.core.Tracer) for x in (theta, cov)):
            th = jnp.atleast_2d(theta)
            cv = jnp.broadcast_to(cov, th.shape[:1] + cov.shape[-1:]) if cov.ndim < 2 else cov
            norm = max(norm, float(_norms(model, jnp.broadcast_to(th, cv.shape[:1] + th.shape[-1:]), cv)))
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
    return int(np.clip(need, 1, 60))


@eqx.filter_jit
def _norms(model, theta, cov):
    a = jax.vmap(lambda t, c: model.linear_system(t, c)[0])(theta, cov)
    return jnp.max(jnp.sum(jnp.abs(a), axis=-2))



