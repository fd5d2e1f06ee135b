"""Dosing environments whose cycles do not interact: each patient's response to one cycle at
every dose level is computed once with the full model, then replayed.

Some courses have cycles so far apart that each starts, for practical purposes, from the
untreated body, and only cumulative quantities carry over.  177Lu-PSMA every 6 weeks is one:
6.3 physical half-lives pass between administrations, and on the 111-state PBPK model the tumour
holds about 2 × 10⁻⁶ of its day-1 activity when the next dose is given.  Absorbed dose and BED
then add up over cycles, because the linear-quadratic cross-term between two cycles vanishes
when they are many repair half-times apart.  An episode is then a sum of per-cycle responses.
``tabulate`` solves the full model once per (patient, dose level). It keeps the cycle grid of
every quantity the environment reads: samples, reward and limits. It returns an environment
that replays these tables.

    table_env, cohort = tabulate(radioligand_env(grid_hours=1008), patients,
                                 cumulative=("BED_kidney", "D_salivary", "BED_tumour"))

The replayed environment is a ``DosingEnv``: policies, agents, the particle twin, the shield and
``evaluate`` use it unchanged.  A patient's parameters are their table (dose levels × grid ×
quantities, flattened), so a twin's particles are tabulated prior patients.  Its transient
quantities (the ``cumulative`` ones excluded) read as 0 at cycle boundaries: the carry-over the
approximation drops.  Measure that error against the full environment for your case:
``validation/closed_loop/radioligand.py`` does it for PSMA.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ModelError, did_you_mean
from .env import DosingEnv, Patients

__all__ = ["CycleResponses", "TableSimulator", "tabulate"]


class CycleResponses(eqx.Module):
    """The model a tabulated environment runs: ``observation_names`` are the transient quantities
    (each cycle's own values), ``state_names`` the cumulative ones (added cycle by cycle); the
    parameters are one patient's table, flattened from (dose levels, grid points, quantities)."""

    name: str = eqx.field(static=True)
    observation_names: tuple[str, ...] = eqx.field(static=True)
    state_names: tuple[str, ...] = eqx.field(static=True)
    parameter_names: tuple[str, ...] = eqx.field(static=True)
    errors: tuple = eqx.field(static=True)
    time_unit: str = eqx.field(static=True)
    amount_unit: str = eqx.field(static=True)

    def observe(self, t, y, theta, cov):
        """The transients at a cycle boundary: 0 (the tabulation neglects carry-over)."""
        return jnp.zeros(len(self.observation_names), dtype=jnp.float64)

    def initial_state(self, theta, cov):
        return jnp.zeros(len(self.state_names), dtype=jnp.float64)

    def parameter_index(self, name: str) -> int:
        if name not in self.parameter_names:
            raise ModelError(f"{self.name}: no table entry {name!r}." + did_you_mean(name, self.parameter_names))
        return self.parameter_names.index(name)


class TableSimulator(eqx.Module):
    """Replays a patient's table: the cycle at dose ``amount`` is the row of the dose level
    given (amounts per action as the environment computes them)."""

    grid: jax.Array
    amounts: jax.Array
    shape: tuple[int, int, int] = eqx.field(static=True)     # (dose levels, grid points, quantities)
    transients: int = eqx.field(static=True)

    def initial_state(self, theta, cov):
        return jnp.zeros(self.shape[2] - self.transients, dtype=jnp.float64)

    def run(self, t0, y, amount, length, theta, cov):
        """As ``CycleSimulator.run``: (state at the end, states and observations on the grid,
        grid points inside the cycle, success)."""
        rows = theta.reshape(self.shape)[jnp.argmin(jnp.abs(self.amounts - amount))]
        grid_y = y + rows[:, self.transients:]
        return grid_y[-1], grid_y, rows[:, :self.transients], self.grid <= length + 1e-9, jnp.asarray(True)


def tabulate(env: DosingEnv, patients: Patients, *, cumulative, batch: int = 64,
             progress: bool = True) -> tuple[DosingEnv, Patients]:
    """(the replaying environment, the patients as tables) for ``env``'s course on ``patients``.

    ``cumulative`` names the quantities that add up over cycles (absorbed doses, BED,
    cumulative exposure); every other quantity the environment reads is a transient, taken as
    the cycle's own.  ``env`` must offer one interval and absolute doses (not per m², which
    would tie a table to a body-surface area).  Solves run ``batch`` patients at a time, with a
    progress bar.
    """
    columns = _columns(env, cumulative)
    transients = [c for c in columns if c not in cumulative]
    levels = int(env.doses.shape[0])
    grid = np.asarray(env.sim.grid)
    table = _solve(env, patients, [env._names.index(c) for c in columns], len(transients), batch, progress)
    names = env._names
    n_obs = len(env.model.observation_names)
    errors = tuple(env.model.errors[names.index(c)] if names.index(c) < n_obs else None for c in transients)
    doses, days = np.asarray(env.doses), grid / env.day
    model = CycleResponses(
        name=f"{env.model.name} (tabulated cycles)", observation_names=tuple(transients),
        state_names=tuple(cumulative), errors=errors, time_unit=env.model.time_unit, amount_unit=env.dose_unit,
        parameter_names=tuple(f"{c} | {d:g} {env.dose_unit}, day {t:g}" for d in doses for t in days for c in columns))
    sim = TableSimulator(env.sim.grid, env.doses * env.dose_factor, (levels, grid.size, len(columns)), len(transients))
    replay = eqx.tree_at(lambda e: (e.model, e.sim), env, (model, sim))
    cohort = Patients(table.reshape(table.shape[0], -1), jnp.zeros((table.shape[0], 0)), patients.bsa)
    return replay, cohort


def _columns(env: DosingEnv, cumulative) -> list[str]:
    """The quantities the environment reads, cumulative ones last; checks the request."""
    if int(np.unique(np.asarray(env.intervals)).size) != 1:
        raise ModelError("tabulate: the environment offers several intervals; a table holds one cycle length.")
    if env.per_m2:
        raise ModelError(f"tabulate: doses in {env.dose_unit!r} scale with each patient's BSA; "
                         "tabulate an environment with absolute doses.")
    if env.reward.relative:
        raise ModelError("tabulate: a relative reward divides by the value at reset, which a table does not hold.")
    used = list(dict.fromkeys([s.observation for s in env.samples] + [env.reward.observation]
                              + [lim.observation for lim in env.limits]))
    for name in cumulative:
        if name not in env._names:
            raise ModelError(f"tabulate: cumulative quantity {name!r} is neither an observation nor a state of "
                             f"{env.model.name!r}." + did_you_mean(name, env._names))
    return [c for c in used if c not in cumulative] + list(cumulative)


def _solve(env, patients, columns, transients, batch, progress):
    """(patients, dose levels, grid, quantities): one cycle from the untreated patient per level;
    cumulative quantities as increments over the untreated values."""
    from tqdm.auto import tqdm

    cols, n, out = jnp.asarray(columns), len(patients), []
    for lo in tqdm(range(0, n, batch), desc="tabulate", unit="batch", disable=not progress):
        idx = np.minimum(np.arange(lo, lo + batch), n - 1)     # a padded last batch: one compilation
        values, ok = _chunk(env, cols, transients, patients.theta[idx], patients.covariates[idx], patients.bsa[idx])
        ok = np.asarray(ok)[: n - lo]
        if not ok.all():
            bad = sorted({lo + int(i) for i in np.argwhere(~ok)[:, 0]})
            raise ModelError(f"tabulate: the full model's solver failed for patients {bad[:10]} "
                             "(indices in ``patients``); check their parameters or the model's tolerances.")
        out.append(np.asarray(values)[: n - lo])
    return jnp.asarray(np.concatenate(out))


@eqx.filter_jit
def _chunk(env, cols, transients, theta, cov, bsa):
    """One batch of patients, every dose level (compiled once per environment and batch size)."""
    def patient(th, c, b):
        state = env.initial_state(th, c, b)
        start = env.baseline_values(state)[cols]

        def level(a):
            _, grid, *_, ok = env.transition(state, a)
            return grid[:, cols].at[:, transients:].add(-start[transients:]), ok

        return jax.vmap(level)(jnp.arange(env.doses.shape[0]))

    return jax.vmap(patient)(theta, cov, bsa)
