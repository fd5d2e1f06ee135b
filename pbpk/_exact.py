"""Exact propagation of linear systems between outputs (matrix exponential, events superposed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._events import precedes, rates_after
from ._expm import expm


def propagate_exact(model, opts, theta, cov, bp, y0, times, out_rank, grid_dt, grid_class):
    """Exact propagation of a linear system between outputs, with events superposed.

    From output j-1 to output j: y_j = Φ(Δ_j)·y_{j-1} + Ψ(Δ_j)·w + Σ_b [Φ(t_j - t_b)·x_b + Ψ(t_j - t_b)·v_b]
    over the breakpoints b in (t_{j-1}, t_j]: a bolus adds x_b = amount·e, a rate change
    v_b = Δrate·e.  A reset or steady-state replacement discards what came before it in the
    interval and restarts from its target state.  One exponential per breakpoint and one per
    distinct output spacing.
    """
    a, b = model.linear_system(theta, cov)
    n, k, t = a.shape[0], bp["t"].shape[0], times.shape[0]
    interval = jnp.sum(~precedes(bp, times, out_rank), axis=1)     # first output after each breakpoint
    u_after = rates_after(bp, n)
    w_seg = b[None, :] + jnp.concatenate([jnp.zeros((1, n)), u_after])        # (K+1, n)
    replace = bp["reset"] | bp["ss"]
    target = jnp.broadcast_to(y0, (k, n))
    if opts.has_ss:
        target = jnp.where(bp["ss"][:, None], steady_states(a, b, bp, n, model.accumulators, opts.squarings), target)
    e = jax.nn.one_hot(bp["state"], n) * bp["jump"][:, None]
    x = jnp.where(replace[:, None], target + e, e)
    v = jnp.where(replace[:, None], w_seg[1:], w_seg[1:] - w_seg[:-1])
    tau = times[jnp.clip(interval, 0, t - 1)] - bp["t"]
    tau = jnp.where(interval < t, tau, 0.0)
    small = jax.vmap(lambda tt, vv: augmented_expm(a, vv[:, None], tt[None], opts.squarings)[0])(tau, v)
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
        big = augmented_expm(a, w_seg.T, grid_dt[1:], opts.squarings)       # (U, n+K+1, n+K+1)
        big = jnp.concatenate([jnp.eye(big.shape[-1])[None], big])           # class 0: zero step
        cls = grid_class
    else:
        steps = times - jnp.concatenate([jnp.minimum(times[:1], 0.0), times[:-1]])
        big = augmented_expm(a, w_seg.T, steps, opts.squarings)
        cls = jnp.arange(t)
    phis = big[:, :n, :n]
    # Input over each step (Ψ·w of the segment in force) plus the superposed events.
    drive = jnp.where(restart[:, None], 0.0, big[cls, :n, n + n_before]) + c

    if opts.grid_mode and phis.shape[0] == 2:
        phi = phis[1]                    # one spacing (and zero steps): no per-step gather

        def step(y, xs):
            cj, rj, dj = xs
            y = jnp.where(rj, 0.0, jnp.where(cj == 0, y, phi @ y)) + dj
            return y, y
    else:
        def step(y, xs):
            cj, rj, dj = xs
            y = jnp.where(rj, 0.0, phis[cj] @ y) + dj
            return y, y

    _, ys = jax.lax.scan(step, y0, (cls, restart, drive))
    return ys


def augmented_expm(a, w, taus, squarings):
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


def steady_states(a, b, bp, n, accumulators, squarings):
    """State at each SS dose time (before the dose itself), for linear systems."""
    keep = ~jnp.asarray(accumulators)
    mask = keep[:, None] & keep[None, :]
    eye = jnp.eye(n)

    def one(kind, s, amt, ii, rate, dur):
        e = eye[s]
        # Bolus: trough y = Φ(ii)(y + amt·e) + Ψ(ii)b.
        f_ii = augmented_expm(a, b[:, None], ii[None], squarings)[0]
        phi_ii, psib_ii = f_ii[:n, :n], f_ii[:n, n]
        m_bolus, g_bolus = phi_ii, phi_ii @ (amt * e) + psib_ii
        # Infusion of duration dur every ii: y -> Φ(ii-dur)[Φ(dur)y + Ψ(dur)(b+rate·e)] + Ψ(ii-dur)b.
        f_on = augmented_expm(a, (b + rate * e)[:, None], dur[None], squarings)[0]
        f_off = augmented_expm(a, b[:, None], (ii - dur)[None], squarings)[0]
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
