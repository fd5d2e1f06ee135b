"""One treatment cycle at a time: integrate a compiled model from a given state over a cycle
that starts with one dose (bolus or zero-order infusion), saving observations on a fixed grid.
A dose may be split over several compartments in fixed proportions (a radioligand's hot and
cold ligand), so that one number — the action of a dosing agent — sets the whole administration.

This is the step of rule-based protocols and of the dosing environments: the dose is a JAX
value and the cycle length may be traced, so one compilation serves every patient, dose and
cycle (``vmap`` over patients, ``lax.scan`` over cycles).

Structure is exploited where the model has it.  Pharmacometric models are usually a linear PK
block that drives a nonlinear PD block and never reads it back (docetaxel → neutrophils and
tumour).  The PK block is then the stiff part, and it has a closed form: its states are
propagated exactly with the eigen-decomposition of ``pbpk._spectral`` (bolus and zero-order
infusion included), and only the PD block is integrated — non-stiff once the fast PK is out of
it, so with an explicit solver (Tsit5).  The split is found from the model's Jacobian at
construction; a model linear as a whole (a liposomal PK model) is propagated exactly on the
grid with matrix exponentials; others (a fully coupled nonlinear PBPK) are integrated whole with
the implicit Kvaerno5.  ``method="implicit"`` forces the whole-system path (the reference).
"""

from __future__ import annotations

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _spectral
from .._expm import expm
from ..compile import CompiledModel
from ..errors import ModelError, did_you_mean


class CycleSimulator(eqx.Module):
    """Integrates ``model`` cycle by cycle.

    Args:
        model: a compiled model.
        into: the compartment receiving each cycle's dose, or a mapping {compartment: amount per
            unit of dose} when one administration enters several compartments.
        infusion: infusion duration (model time unit); 0 for a bolus.
        grid: output times within a cycle (model time unit, from 0), e.g. every 6 h over 21 days.
        rtol, atol: tolerances of the Kvaerno5 solver.
    """

    model: CompiledModel
    grid: jax.Array
    into: jax.Array
    infusion: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    upstream: tuple[int, ...] = eqx.field(static=True)        # linear PK block (empty: integrate whole)
    downstream: tuple[int, ...] = eqx.field(static=True)
    plan: _spectral.SpectralPlan | None = eqx.field(static=True)
    method: str = eqx.field(static=True)
    grid_step: float = eqx.field(static=True)                 # the grid's spacing when uniform, else 0

    def __init__(self, model: CompiledModel, into, grid, *, infusion: float = 0.0, rtol: float = 1e-7,
                 atol: float = 1e-9, max_steps: int = 20_000, method: str = "auto"):
        split = {into: 1.0} if isinstance(into, str) else dict(into)
        for name, per_unit in split.items():
            if name not in model.compartment_names:
                raise ModelError(f"CycleSimulator: model {model.name!r} has no compartment {name!r}."
                                 + did_you_mean(name, model.compartment_names))
            if not per_unit >= 0:
                raise ModelError(f"CycleSimulator: amount per unit dose into {name!r} is {per_unit!r}; expected >= 0.")
        grid = jnp.asarray(grid, dtype=jnp.float64)
        if grid.ndim != 1 or grid.shape[0] < 2 or float(grid[0]) != 0.0 or bool(jnp.any(jnp.diff(grid) <= 0)):
            raise ModelError("CycleSimulator: grid must be increasing cycle times starting at 0.")
        if infusion < 0:
            raise ModelError(f"CycleSimulator: infusion={infusion} must be >= 0 (0 for a bolus).")
        self.model, self.grid = model, grid
        unit = np.zeros(len(model.state_names))
        for name, per_unit in split.items():
            unit[model.state_names.index(name)] = per_unit
        self.into, self.infusion = jnp.asarray(unit), float(infusion)
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)
        if method not in ("auto", "implicit"):
            raise ModelError(f"CycleSimulator: method={method!r}; expected 'auto' or 'implicit'.")
        self.method = method
        self.grid_step = float(grid[1] - grid[0]) if _uniform(grid) else 0.0
        split = _linear_upstream(model, unit) if method == "auto" and not model.is_linear else None
        self.upstream, self.downstream, self.plan = split or ((), tuple(range(len(unit))), None)

    @property
    def exact(self) -> bool:
        """True when the whole (linear) model is propagated with matrix exponentials."""
        return self.method == "auto" and self.model.is_linear and self.grid_step > 0

    @property
    def partitioned(self) -> bool:
        """True when the linear PK block is propagated exactly and only the rest integrated."""
        return self.plan is not None

    def initial_state(self, theta, cov):
        return self.model.initial_state(theta, cov)

    def run(self, t0, y, amount, length, theta, cov):
        """Dose ``amount`` at ``t0`` and integrate to ``t0 + length``.

        Returns (state at the end, states on the grid, observations on the grid, mask of grid
        points inside the cycle, solver success).
        """
        if self.infusion == 0.0:
            y = y + amount * self.into
            rate = jnp.zeros_like(y)
        else:
            rate = amount / self.infusion * self.into
        if self.partitioned:
            return self._run_partitioned(t0, y, rate, length, theta, cov)
        if self.exact:
            return self._run_exact(t0, y, rate, length, theta, cov)
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

    def _run_partitioned(self, t0, y, rate, length, theta, cov):
        up, down = np.asarray(self.upstream), np.asarray(self.downstream)
        n = y.shape[0]
        jac = jax.jacfwd(lambda z: self.model.rhs(t0, z, theta, cov))(jnp.zeros_like(y))
        a = jac[up][:, up]
        b = jnp.zeros(len(up), y.dtype)          # the block has no constant inputs (checked at construction)
        mu, basis = _spectral.spectral_basis(self.plan, a)
        inf = self.infusion
        # Φ(τ)·v = Σ_k c_k(τ)·(basis_k·v): the products with the basis are made once per cycle.
        from_y0, from_b = jnp.einsum('kij,j->ki', basis, y[up]), basis @ b
        if inf:
            c_phi_t, c_psi_t = _spectral.coefficients(mu, jnp.atleast_1d(inf))
            from_r = jnp.einsum('kij,j->ki', basis, rate[up])
            at_stop = c_psi_t[0] @ from_r                      # Ψ(T)·r: what the infusion put in
            from_stop = jnp.einsum('kij,j->ki', basis, at_stop)

        def upstream_at(tau):
            """Exact PK states τ after the dose: Φ(τ)y₀ + Ψ(τ)b, plus Ψ(τ)r during the infusion
            and Φ(τ−T)Ψ(T)r after it."""
            tau = jnp.atleast_1d(tau)
            c_phi, c_psi = _spectral.coefficients(mu, tau)
            out = c_phi @ from_y0 + c_psi @ from_b
            if inf:
                c_after, _ = _spectral.coefficients(mu, jnp.maximum(tau - inf, 0.0))
                out = out + jnp.where((tau < inf)[:, None], c_psi @ from_r, c_after @ from_stop)
            return out

        # What the PD right-hand side reads, at every solver stage: the non-accumulating PK states
        # only (the accumulators never feed back), as m exponentials, m = 2-3.
        _, g = _spectral.spectral_basis(self.plan, a, accumulators=False)
        g_y0 = jnp.einsum("kij,j->ki", g, y[up])
        if inf:
            g_r = jnp.einsum("kij,j->ki", g, rate[up])
            g_stop = jnp.einsum("kij,j->ki", g, at_stop)

        def dynamic_at(tau):
            z = mu * tau
            ez = jnp.exp(z)
            out = ez @ g_y0
            if inf:
                during = (tau * _spectral.phi1(z, ez)) @ g_r
                out = out + jnp.where(tau < inf, during, jnp.exp(mu * jnp.maximum(tau - inf, 0.0)) @ g_stop)
            return out

        # Static selections as products with 0/1 matrices: batched scatters are slow on CPU.
        put_up, put_down = np.eye(n)[:, up], np.eye(n)[:, down]

        def assemble(y_up, y_down):
            return y_up @ put_up.T + y_down @ put_down.T

        def rhs(t, y_down, args):
            full = assemble(dynamic_at(t - t0), y_down)
            return self.model.rhs(t, full, theta, cov) @ put_down

        t_end = t0 + length
        ts = jnp.clip(t0 + self.grid, t0, t_end)
        jumps = jnp.array([t0 + inf]) if inf else None
        sol = dfx.diffeqsolve(dfx.ODETerm(rhs), dfx.Tsit5(), t0, t_end, None, y[down],
                              saveat=dfx.SaveAt(ts=ts, t1=True),
                              stepsize_controller=dfx.PIDController(rtol=self.rtol, atol=self.atol, jump_ts=jumps),
                              max_steps=self.max_steps, throw=False)
        taus = jnp.concatenate([ts, jnp.atleast_1d(t_end)]) - t0
        ys = assemble(upstream_at(taus), sol.ys)
        obs = jax.vmap(self.model.observe, in_axes=(0, 0, None, None))(ts, ys[:-1], theta, cov)
        return ys[-1], ys[:-1], obs, self.grid <= length, sol.result == dfx.RESULTS.successful

    def _run_exact(self, t0, y, rate, length, theta, cov):
        """y' = A·y + b (+ r during the infusion) stepped on the uniform grid with exp of the
        augmented matrix [[A, b + r], [0, 0]]: a handful of exponentials per cycle."""
        a, b = self.model.linear_system(theta, cov)
        n, dt, inf = y.shape[0], self.grid_step, self.infusion

        def aug(inp):
            return jnp.zeros((n + 1, n + 1), y.dtype).at[:n, :n].set(a).at[:n, n].set(inp)

        off, on = aug(b), aug(b + rate)
        step_off = expm(off * dt)
        k_cross, part = int(inf // dt), inf - (inf // dt) * dt
        step_on = expm(on * dt) if k_cross else step_off
        step_cross = expm(off * (dt - part)) @ expm(on * part) if inf else step_off

        def advance(z, k):
            m = jnp.where(k < k_cross, step_on, jnp.where(k == k_cross, step_cross, step_off))
            z_next = m @ z
            return z_next, z_next

        z0 = jnp.concatenate([y, jnp.ones(1, y.dtype)])
        _, zs = jax.lax.scan(advance, z0, jnp.arange(self.grid.shape[0] - 1))
        ys = jnp.concatenate([y[None], zs[:, :n]])
        z_stop = expm(on * inf) @ z0 if inf else z0
        y_end = (expm(off * jnp.maximum(length - inf, 0.0)) @ z_stop)[:n]
        inside = self.grid <= length
        ys = jnp.where(inside[:, None], ys, y_end)
        ts = jnp.clip(t0 + self.grid, t0, t0 + length)
        obs = jax.vmap(self.model.observe, in_axes=(0, 0, None, None))(ts, ys, theta, cov)
        ok = jnp.all(jnp.isfinite(y_end))
        return y_end, ys, obs, inside, ok


def _uniform(grid) -> bool:
    d = np.diff(np.asarray(grid))
    return bool(np.allclose(d, d[0], rtol=1e-9, atol=0.0))


def _linear_upstream(model: CompiledModel, dosed: np.ndarray):
    """(upstream, downstream, plan) when the dosed states sit in a linear, time-invariant block
    that no other state feeds and that has a closed-form propagator; otherwise None.

    Found numerically at the typical patient: the Jacobian at random states (its pattern, and
    whether the block's rows are constant) and the right-hand side at two times."""
    if model.residual is not None:
        return None
    n = len(model.state_names)
    theta, cov = model.theta, jnp.where(jnp.isnan(model.covariate_reference), 1.0, model.covariate_reference)
    rng = np.random.default_rng(0)
    points = [jnp.asarray(rng.uniform(0.5, 2.0, n)) for _ in range(3)]
    try:
        jacs = np.stack([np.asarray(jax.jacfwd(lambda z: model.rhs(1.0, z, theta, cov))(p)) for p in points])
        shift = np.asarray(model.rhs(7.0, points[0], theta, cov) - model.rhs(1.0, points[0], theta, cov))
    except Exception:       # a model that cannot be probed this way is simply integrated whole
        return None
    if not np.all(np.isfinite(jacs)):
        return None
    constant_row = np.all(np.isclose(jacs, jacs[:1], rtol=1e-12, atol=0.0), axis=(0, 2)) & (shift == 0.0)
    block = set(np.flatnonzero(constant_row))
    pattern = np.any(jacs != 0.0, axis=0)
    changed = True
    while changed:                  # keep only states whose rates read nothing outside the block
        changed = False
        for i in sorted(block):
            if any(pattern[i, j] and j not in block for j in range(n)):
                block.discard(i)
                changed = True
    at_zero = np.asarray(model.rhs(1.0, jnp.zeros(n), theta, cov))
    block -= {i for i in block if at_zero[i] != 0.0}        # constant inputs: not the plain PK block
    dosed_states = set(np.flatnonzero(dosed))
    if not dosed_states or not dosed_states <= block or len(block) == n:
        return None
    up = tuple(sorted(block))
    a = jacs[0][np.ix_(up, up)]
    accum = [not np.any(pattern[np.ix_(up, [j])]) for j in up]
    import sympy as sp

    plan = _spectral.spectral_plan(sp.Matrix([[sp.Float(v) if v else sp.S.Zero for v in row] for row in a]), accum)
    if plan is None:
        return None
    return tuple(int(i) for i in up), tuple(i for i in range(n) if i not in block), plan
