"""Exact propagation of linear systems between outputs (closed form or matrix exponential, events superposed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._events import last_restart, precedes, rates_after
from ._expm import expm
from ._spectral import coefficients, spectral_basis, spectral_flow


def propagate_exact(model, opts, theta, cov, bp, y0, times, out_rank, grid_dt, grid_class):
    """Exact propagation of a linear system between outputs, with events superposed.

    From output j-1 to output j: y_j = Φ(Δ_j)·y_{j-1} + Ψ(Δ_j)·w + Σ_b [Φ(t_j - t_b)·x_b + Ψ(t_j - t_b)·v_b]
    over the breakpoints b in (t_{j-1}, t_j]: a bolus adds x_b = amount·e, a rate change
    v_b = Δrate·e.  A reset or steady-state replacement discards what came before it in the
    interval and restarts from its target state.  One propagator per breakpoint and one per
    distinct output spacing.
    """
    a, b = model.linear_system(theta, cov)
    if opts.method == "spectral":
        return _superpose(model, opts, a, b, bp, y0, times, out_rank)
    flow = _flow(model, opts, a)
    n, k, t = a.shape[0], bp["t"].shape[0], times.shape[0]
    interval = jnp.sum(~precedes(bp, times, out_rank), axis=1)     # first output after each breakpoint
    replace, x, v, w_seg = _event_vectors(model, opts, a, b, flow, bp, y0)
    tau = times[jnp.clip(interval, 0, t - 1)] - bp["t"]
    tau = jnp.where(interval < t, tau, 0.0)
    phi_b, psi_v = jax.vmap(lambda tt, vv: flow(vv[:, None], tt[None]))(tau, v)
    contrib = jnp.einsum("kij,kj->ki", phi_b[:, 0], x) + psi_v[:, 0, :, 0]
    # A replacement discards earlier breakpoints of its interval.
    idx = jnp.arange(k)
    member = interval[:, None] == jnp.arange(t + 1)[None, :]                 # (K, T+1), dense: K is small
    last_rep = last_restart(member.T, replace)
    kept = idx >= last_rep[interval]
    c = jnp.einsum("kt,ki->ti", (member & kept[:, None]).astype(contrib.dtype), contrib)[:t]
    restart = last_rep[:t] >= 0
    n_before = jnp.sum(interval[None, :] < jnp.arange(t)[:, None], axis=1)   # breakpoints before output j-1
    if opts.grid_mode:
        phis, psiw = flow(w_seg.T, grid_dt[1:])                             # (U, n, n), (U, n, K+1)
        phis = jnp.concatenate([jnp.eye(n)[None], phis])                     # class 0: zero step
        psiw = jnp.concatenate([jnp.zeros_like(psiw[:1]), psiw])
        cls = grid_class
    else:
        steps = times - jnp.concatenate([jnp.minimum(times[:1], 0.0), times[:-1]])
        phis, psiw = flow(w_seg.T, steps)
        cls = jnp.arange(t)
    # Input over each step (Ψ·w of the segment in force) plus the superposed events.
    drive = jnp.where(restart[:, None], 0.0, psiw[cls, :, n_before]) + c

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


def _superpose(model, opts, a, b, bp, y0, times, out_rank):
    """Every output at once: y_j = Φ(t_j - t_s)·y0 + Ψ(t_j - t_s)·b + Σ_k [Φ(t_j - t_k)·x_k + Ψ(t_j - t_k)·v_k]
    over the breakpoints k before output j, from the last replacement (reset, SS) on if any.

    With Φ and Ψ expanded in the spectral basis B (``_spectral``), each term is a weighted sum of
    the vectors B·x_k, B·v_k, B·y0, B·b: no sequential scan and no (T, K, n, n) intermediate.
    Like NONMEM's closed forms this superposes, so a state far below its peak (a stopped
    infusion decades later) carries an absolute round-off of ~1e-14 of that peak.
    """
    flow = spectral_flow(model.spectral, a) if opts.has_ss else None       # steady states only
    replace, x, v, _ = _event_vectors(model, opts, a, b, flow, bp, y0)
    before = precedes(bp, times, out_rank).T                                   # (T, K)
    last_rep = last_restart(before, replace)                                   # (T,)
    active = before & (jnp.arange(replace.shape[0])[None, :] >= last_rep[:, None])
    # Fitting: accumulators the observations do not read stay 0 and cost nothing.
    acc = not opts.observed_only or any(model.observed_states[i] for i in model.spectral.accumulators)
    mu, basis = spectral_basis(model.spectral, a, accumulators=acc)
    # One pass each (fewer, larger XLA kernels): weights for every (output, breakpoint) pair and
    # every output since the start; the basis applied to x_k, y0 (Φ) and v_k, b (Ψ).
    tau = jnp.where(active, times[:, None] - bp["t"][None, :], 0.0)                         # (T, K)
    on = active
    if not model.at_rest:      # the start's own term: Φ(t)·y0 + Ψ(t)·b (nothing, for a body at rest)
        tau = jnp.concatenate([tau, (times - jnp.minimum(times[0], 0.0))[:, None]], axis=1)
        on = jnp.concatenate([on, (last_rep < 0)[:, None]], axis=1)
        x, v = jnp.concatenate([x, y0[None]]), jnp.concatenate([v, b[None]])
    c_phi, c_psi = coefficients(mu, tau, accumulators=acc)                                  # (T, K(+1), B)
    bx = jnp.sum(basis * x[:, None, None, :], axis=-1)                                     # (K(+1), B, n)
    bv = jnp.sum(basis * v[:, None, None, :], axis=-1)
    return jnp.sum(jnp.where(on[..., None, None], c_phi[..., None] * bx + c_psi[..., None] * bv, 0.0), axis=(1, 2))


def _event_vectors(model, opts, a, b, flow, bp, y0):
    """Per breakpoint: whether it replaces the state, the state jump x and the input change v
    (a replacement restarts from its target with the full input), and the inputs w (K+1, n)
    in force before the first and after each breakpoint."""
    n, k = a.shape[0], bp["t"].shape[0]
    w = b[None, :] + jnp.concatenate([jnp.zeros((1, n)), rates_after(bp, n)])
    replace = bp["reset"] | bp["ss"]
    target = jnp.broadcast_to(y0, (k, n))
    if opts.has_ss:
        target = jnp.where(bp["ss"][:, None], steady_states(a, b, bp, n, model.accumulators, flow), target)
    e = jax.nn.one_hot(bp["state"], n) * bp["jump"][:, None]
    x = jnp.where(replace[:, None], target + e, e)
    v = jnp.where(replace[:, None], w[1:], w[1:] - w[:-1])
    return replace, x, v, w


def _flow(model, opts, a):
    """(w (n, m), taus (T,)) -> Φ(τ) (T, n, n), Ψ(τ)·w (T, n, m) by the matrix exponential."""
    n = a.shape[0]

    def by_expm(w, taus):
        out = augmented_expm(a, w, taus, opts.squarings)
        return out[:, :n, :n], out[:, :n, n:]

    return by_expm


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


def steady_states(a, b, bp, n, accumulators, flow):
    """State at each SS dose time (before the dose itself), for linear systems."""
    keep = ~jnp.asarray(accumulators)
    mask = keep[:, None] & keep[None, :]
    eye = jnp.eye(n)

    def one(kind, s, amt, ii, rate, dur):
        e = eye[s]
        # Bolus: trough y = Φ(ii)(y + amt·e) + Ψ(ii)b.
        phi_ii, psib_ii = (x[0] for x in flow(b[:, None], ii[None]))
        m_bolus, g_bolus = phi_ii, phi_ii @ (amt * e) + psib_ii[:, 0]
        # Infusion of duration dur every ii: y -> Φ(ii-dur)[Φ(dur)y + Ψ(dur)(b+rate·e)] + Ψ(ii-dur)b.
        phi_on, psi_on = (x[0] for x in flow((b + rate * e)[:, None], dur[None]))
        phi_off, psi_off = (x[0] for x in flow(b[:, None], (ii - dur)[None]))
        m_inf = phi_off @ phi_on
        g_inf = phi_off @ psi_on[:, 0] + psi_off[:, 0]
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
