"""Adaptive integration of nonlinear systems with diffrax, restarted at every breakpoint."""

from __future__ import annotations

import diffrax as dfx
import jax
import jax.numpy as jnp

from ._events import apply_event, precedes, rates_after

SOLVERS = {"Kvaerno5": dfx.Kvaerno5, "Kvaerno3": dfx.Kvaerno3, "Tsit5": dfx.Tsit5, "Dopri5": dfx.Dopri5,
           "Dopri8": dfx.Dopri8}
ADJOINTS = {"reverse": dfx.RecursiveCheckpointAdjoint, "forward": dfx.ForwardMode}


def propagate_adaptive(model, opts, theta, cov, bp, y0, times, out_rank):
    n = y0.shape[0]
    k = bp["t"].shape[0]
    u_after = rates_after(bp, n)
    # Outputs after the i-th breakpoint (in merged order) belong to segment i.
    out_seg = jnp.sum(precedes(bp, times, out_rank), axis=0)
    t0 = jnp.minimum(jnp.min(times), 0.0)
    bounds = jnp.concatenate([t0[None], bp["t"], jnp.max(times)[None]])
    bounds = jax.lax.cummax(bounds)
    rates = jnp.concatenate([jnp.zeros((1, n)), u_after])
    term = dfx.ODETerm(lambda t, y, args: model.rhs(t, y, args[0], args[1], args[2]))
    solver = SOLVERS[opts.method]()
    controller = dfx.PIDController(rtol=opts.rtol, atol=opts.atol)

    ss_state = None
    if opts.has_ss:
        ss_state, ss_ok = adaptive_steady_states(model, opts, theta, cov, bp, term, solver, controller)
    ok0 = jnp.all(ss_ok) if opts.has_ss else jnp.array(True)

    def segment(carry, i):
        y, outs, ok = carry
        ta, tb = bounds[i], bounds[i + 1]
        sol = dfx.diffeqsolve(term, solver, ta, tb, None, y, args=(theta, cov, rates[i]),
                              saveat=dfx.SaveAt(ts=jnp.clip(times, ta, tb), t1=True),
                              stepsize_controller=controller, max_steps=opts.max_steps, throw=False,
                              adjoint=ADJOINTS[opts.adjoint]())
        outs = jnp.where((out_seg == i)[:, None], sol.ys[: times.shape[0]], outs)
        y_end = sol.ys[-1]
        ok = ok & (sol.result == dfx.RESULTS.successful)
        j = jnp.minimum(i, k - 1)
        y_next = jnp.where(i < k, apply_event(y_end, y0, bp, j, ss_state), y_end)
        return (y_next, outs, ok), None

    init = (y0, jnp.zeros((times.shape[0], n)), ok0)
    (_, outs, ok), _ = jax.lax.scan(segment, init, jnp.arange(k + 1))
    return outs, ok


def adaptive_steady_states(model, opts, theta, cov, bp, term, solver, controller):
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
                              stepsize_controller=controller, max_steps=opts.max_steps, throw=False,
                              adjoint=ADJOINTS[opts.adjoint]())
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
