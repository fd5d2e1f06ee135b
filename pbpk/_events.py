"""Dose records -> breakpoints: the state changes a simulation applies at event times."""

from __future__ import annotations

import jax
import jax.numpy as jnp

BOLUS, RATE, DURATION, RESET = 0, 1, 2, 3


def precedes(bp, times, out_rank):
    """(K, T): breakpoint k happens before output j (equal times: by record rank)."""
    t_bp, t_out = bp["t"][:, None], times[None, :]
    return (t_bp < t_out) | ((t_bp == t_out) & (bp["rank"][:, None] < out_rank[None, :]))


def breakpoints(model, theta, cov, dz, times):
    """Dose records -> 2·D breakpoints (start, end), sorted; each with its state change."""
    F, lag, mdur, mrate = model.dose_properties(theta, cov)
    s = dz["state"]
    kind, valid = dz["kind"], dz["valid"]
    amt = dz["amount"] * F[s]
    start = dz["time"] + jnp.where(kind == RESET, 0.0, lag[s])
    is_inf = (kind == RATE) | (kind == DURATION)
    rate = jnp.where(kind == RATE, jnp.where(dz["modelled"], mrate[s], dz["value"]), 0.0)
    dur = jnp.where(kind == DURATION, jnp.where(dz["modelled"], mdur[s], dz["value"]), 0.0)
    continuous = is_inf & dz["ss"] & (dz["ii"] == 0)
    safe = lambda x: jnp.where(x > 0, x, 1.0)
    rate = jnp.where(kind == DURATION, amt / safe(dur), rate)
    dur = jnp.where(kind == RATE, amt / safe(rate), dur)
    horizon = jnp.max(times) + 1.0
    end = jnp.where(continuous, jnp.maximum(horizon, start), start + jnp.where(is_inf, dur, 0.0))
    resets = valid & ((kind == RESET) | dz["ss"])
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
        jump=jnp.concatenate([jnp.where(valid & (kind == BOLUS), amt, 0.0), jnp.zeros(d)]),
        drate=jnp.concatenate([jnp.where(on, rate, 0.0), jnp.where(on & ~cut, -rate, 0.0)]),
        reset=jnp.concatenate([valid & (kind == RESET), jnp.zeros(d, bool)]),
        ss=jnp.concatenate([valid & dz["ss"], jnp.zeros(d, bool)]),
        ss_amt=jnp.concatenate([amt, jnp.zeros(d)]), ss_ii=jnp.concatenate([dz["ii"], jnp.zeros(d)]),
        ss_rate=jnp.concatenate([rate, jnp.zeros(d)]), ss_dur=jnp.concatenate([dur, jnp.zeros(d)]),
        ss_kind=jnp.concatenate([jnp.where(continuous, 2, jnp.where(is_inf, 1, 0)), jnp.zeros(d, jnp.int32)]),
    )
    order = jnp.lexsort((bp["rank"], bp["t"]))
    return {k: v[order] for k, v in bp.items()}


def last_restart(before, restart):
    """For each row of ``before`` (rows × K: which breakpoints count), the index of the last
    counting breakpoint that restarts the state (reset or SS), or -1."""
    idx = jnp.arange(restart.shape[0])
    return jnp.max(jnp.where(before & restart[None, :], idx[None, :], -1), axis=1)


def rates_after(bp, n):
    """Input-rate vector in effect after each (sorted) breakpoint; resets and SS doses restart it."""
    idx = jnp.arange(bp["t"].shape[0])
    earlier = idx[None, :] <= idx[:, None]                                   # (K, K): b ≤ k
    since = earlier & (idx[None, :] >= last_restart(earlier, bp["reset"] | bp["ss"])[:, None])
    return (since.astype(bp["drate"].dtype) @ (jax.nn.one_hot(bp["state"], n) * bp["drate"][:, None]))


def apply_event(y, y0, bp, j, ss_state):
    y = jnp.where(bp["reset"][j], y0, y)
    if ss_state is not None:
        y = jnp.where(bp["ss"][j], ss_state[j], y)
    return y.at[bp["state"][j]].add(bp["jump"][j])
