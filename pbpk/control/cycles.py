"""One treatment cycle at a time: integrate a compiled model from a given state over a cycle
that starts with one dose (bolus or zero-order infusion), saving observations on a fixed grid.

This is the step of rule-based protocols and of the dosing environments: the dose is a JAX
value and the cycle length may be traced, so one compilation serves every patient, dose and
cycle (``vmap`` over patients, ``lax.scan`` over cycles).
"""

from __future__ import annotations

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp

from ..compile import CompiledModel
from ..errors import ModelError, did_you_mean


class CycleSimulator(eqx.Module):
    """Integrates ``model`` cycle by cycle.

    Args:
        model: a compiled model.
        into: the compartment receiving each cycle's dose.
        infusion: infusion duration (model time unit); 0 for a bolus.
        grid: output times within a cycle (model time unit, from 0), e.g. every 6 h over 21 days.
        rtol, atol: tolerances of the Kvaerno5 solver.
    """

    model: CompiledModel
    grid: jax.Array
    into: int = eqx.field(static=True)
    infusion: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(self, model: CompiledModel, into: str, grid, *, infusion: float = 0.0, rtol: float = 1e-7,
                 atol: float = 1e-9, max_steps: int = 20_000):
        if into not in model.compartment_names:
            raise ModelError(f"CycleSimulator: model {model.name!r} has no compartment {into!r}."
                             + did_you_mean(into, model.compartment_names))
        grid = jnp.asarray(grid, dtype=jnp.float64)
        if grid.ndim != 1 or grid.shape[0] < 2 or float(grid[0]) != 0.0 or bool(jnp.any(jnp.diff(grid) <= 0)):
            raise ModelError("CycleSimulator: grid must be increasing cycle times starting at 0.")
        if infusion < 0:
            raise ModelError(f"CycleSimulator: infusion={infusion} must be >= 0 (0 for a bolus).")
        self.model, self.grid = model, grid
        self.into, self.infusion = model.state_names.index(into), float(infusion)
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)

    def initial_state(self, theta, cov):
        return self.model.initial_state(theta, cov)

    def run(self, t0, y, amount, length, theta, cov):
        """Dose ``amount`` at ``t0`` and integrate to ``t0 + length``.

        Returns (state at the end, states on the grid, observations on the grid, mask of grid
        points inside the cycle, solver success).
        """
        n = y.shape[0]
        unit = jnp.zeros(n).at[self.into].set(1.0)
        if self.infusion == 0.0:
            y = y + amount * unit
            rate = jnp.zeros(n)
        else:
            rate = amount / self.infusion * unit
        t_end = t0 + length
        stop = t0 + self.infusion

        def rhs(t, state, args):
            return self.model.rhs(t, state, theta, cov, jnp.where(t < stop, args, 0.0))

        ts = jnp.clip(t0 + self.grid, t0, t_end)
        jumps = jnp.array([stop]) if self.infusion else None
        sol = dfx.diffeqsolve(dfx.ODETerm(rhs), dfx.Kvaerno5(), t0, t_end, None, y, args=rate,
                              saveat=dfx.SaveAt(ts=ts, t1=True),
                              stepsize_controller=dfx.PIDController(rtol=self.rtol, atol=self.atol, jump_ts=jumps),
                              max_steps=self.max_steps, throw=False)
        ys = sol.ys[:-1]
        obs = jax.vmap(self.model.observe, in_axes=(0, 0, None, None))(ts, ys, theta, cov)
        return sol.ys[-1], ys, obs, self.grid <= length, sol.result == dfx.RESULTS.successful
