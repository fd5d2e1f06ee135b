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

The replayed environment is a ``DosingEnv``.  ``evaluate``, fixed schedules, torchrl agents,
the particle twin, MIPD and the shield run on it as they are.  ``optimise_schedule`` runs too:
between dose levels a cycle is interpolated linearly, exact for a response linear in the dose.
A patient's parameters are their table (dose levels × grid × quantities, flattened).  So a
twin's particles are tabulated prior patients, and its rejuvenation jitter perturbs each cell
on its own.  Parameter-level tools (``Drift``, ``evolve``, ``explain``'s sensitivities) see
table cells, not model parameters.

What the replay neglects: a transient quantity (every one not ``cumulative``) reads 0 at cycle
boundaries, and each cycle starts from the untreated body.  ``tabulate`` checks that the
untreated values are 0 and that the reward is cumulative or an AUC.  The carry-over between
cycles is not checked: measure it against the full environment for your case, as
``validation/closed_loop/radioligand.py`` does for PSMA.
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
    """Replays a patient's table: the cycle at dose ``amount`` is the row of its dose level, and
    between levels the linear interpolation of the two around it (no extrapolation beyond the
    highest).  ``amounts`` are the levels as the environment computes them, increasing."""

    grid: jax.Array
    amounts: jax.Array
    shape: tuple[int, int, int] = eqx.field(static=True)     # (dose levels, grid points, quantities)
    transients: int = eqx.field(static=True)

    def initial_state(self, theta, cov):
        return jnp.zeros(self.shape[2] - self.transients, dtype=jnp.float64)

    def run(self, t0, y, amount, length, theta, cov):
        """As ``CycleSimulator.run``: (state at the end, states and observations on the grid,
        grid points inside the cycle, success)."""
        table, levels = theta.reshape(self.shape), self.amounts
        if levels.shape[0] == 1:
            rows = table[0]
        else:
            i = jnp.clip(jnp.searchsorted(levels, amount, side="right") - 1, 0, levels.shape[0] - 2)
            w = jnp.clip((amount - levels[i]) / (levels[i + 1] - levels[i]), 0.0, 1.0)
            rows = (1.0 - w) * table[i] + w * table[i + 1]
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
    indices = [env._names.index(c) for c in columns]
    _check_untreated(env, patients, indices)
    table = _solve(env, patients, indices, batch, progress)
    errors = tuple(env.error_model(c) for c in transients)
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
    doses = np.asarray(env.doses)
    if np.any(np.diff(doses) <= 0):
        raise ModelError(f"tabulate: the doses {doses.tolist()} must be distinct and increasing.")
    used = list(dict.fromkeys([s.observation for s in env.samples] + [env.reward.observation]
                              + [lim.observation for lim in env.limits]))
    for name in cumulative:
        if name not in env._names:
            raise ModelError(f"tabulate: cumulative quantity {name!r} is neither an observation nor a state of "
                             f"{env.model.name!r}." + did_you_mean(name, env._names))
    if env.reward.kind != "auc" and env.reward.observation not in cumulative:
        raise ModelError(f"tabulate: the reward's {env.reward.kind!r} of {env.reward.observation!r} needs its value "
                         "at the cycle's end, which a transient's table does not carry over; name it in "
                         "``cumulative`` or reward its AUC.")
    for s in env.samples:
        if s.observation in cumulative and env.error_model(s.observation) is not None:
            raise ModelError(f"tabulate: the sample of {s.observation!r} has a residual-error model, which a "
                             "cumulative quantity (a state of the table) would lose; sample a transient instead.")
    return [c for c in used if c not in cumulative] + list(cumulative)


def _solve(env, patients, columns, batch, progress):
    """(patients, dose levels, grid, quantities): one cycle from the untreated patient per level."""
    from tqdm.auto import tqdm

    cols, n, out = jnp.asarray(columns), len(patients), []
    for lo in tqdm(range(0, n, batch), desc="tabulate", unit="batch", disable=not progress):
        idx = np.minimum(np.arange(lo, lo + batch), n - 1)     # a padded last batch: one compilation
        values, ok = _chunk(env, cols, patients.theta[idx], patients.covariates[idx], patients.bsa[idx])
        ok = np.asarray(ok)[: n - lo]
        if not ok.all():
            bad = sorted({lo + int(i) for i in np.argwhere(~ok)[:, 0]})
            raise ModelError(f"tabulate: the full model's solver failed for patients {bad[:10]} "
                             "(indices in ``patients``); check their parameters or the model's tolerances.")
        out.append(np.asarray(values)[: n - lo])
    return jnp.asarray(np.concatenate(out))


def _check_untreated(env, patients, columns):
    """The replay starts every cycle at 0: the untreated patients must hold none of the quantities."""
    names = [env._names[c] for c in columns]
    states = jax.vmap(env.initial_state)(patients.theta, patients.covariates, patients.bsa)
    values = np.asarray(jax.vmap(env.baseline_values)(states))[:, columns]
    nonzero = [name for name, v in zip(names, values.T) if np.any(v != 0)]
    if nonzero:
        raise ModelError(f"tabulate: untreated patients have non-zero {nonzero}; a table replays every cycle from 0, "
                         "so it holds only quantities an untreated body does not have (amounts of drug, doses).")


@eqx.filter_jit
def _chunk(env, cols, theta, cov, bsa):
    """One batch of patients, every dose level (compiled once per environment and batch size)."""
    def patient(th, c, b):
        state = env.initial_state(th, c, b)

        def level(a):
            _, grid, *_, ok = env.transition(state, a)
            return grid[:, cols], ok

        return jax.vmap(level)(jnp.arange(env.doses.shape[0]))

    return jax.vmap(patient)(theta, cov, bsa)
