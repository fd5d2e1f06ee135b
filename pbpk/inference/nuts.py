"""NUTS with BlackJAX: per-chain window adaptation, chains run together with ``vmap``.

The density arrives as a pure function of (position, data) — ``density(position, data)`` — and
the data as arrays, so the warmup and sampling programs compile once per model and data
capacity and are reused for every patient and every update.  Sampling runs in blocks so a
progress bar can advance between them without a host callback inside the compiled loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
from blackjax.adaptation.base import get_filter_adapt_info_fn

__all__ = ["NutsRun", "run_nuts"]


@dataclass(frozen=True)
class NutsRun:
    """Draws (chains, draws, ...) in unconstrained space, per-draw statistics and the tuned kernel."""

    positions: dict
    stats: dict                 # diverging, acceptance_rate, n_steps, tree_depth, lp, energy: (chains, draws)
    step_size: jax.Array        # (chains,)
    inverse_mass_matrix: jax.Array  # (chains, d)
    last_positions: dict        # (chains, ...) final states, to warm-start an update
    warmup_seconds: float
    sampling_seconds: float


def run_nuts(density, data, key, initial_positions, *, warmup: int = 1000, draws: int = 1000,
             step_size=None, inverse_mass_matrix=None, max_doublings: int = 10,
             target_accept: float = 0.8, progress: bool = True, desc: str = "NUTS") -> NutsRun:
    """Adapt (Stan windows) then sample, one chain per leading entry of ``initial_positions``.

    ``step_size``/``inverse_mass_matrix`` (per chain) warm-start it, e.g. from the previous
    posterior when new observations arrive: the mass matrix is kept (the previous posterior's
    scales are a good preconditioner when a few observations arrive; re-estimating it from a
    short window was measured to destabilise the chains) and only the step size is re-tuned by
    dual averaging over ``warmup`` steps.
    """
    chains = jax.tree.leaves(initial_positions)[0].shape[0]
    k_warm, k_draw = jax.random.split(key)
    t0 = time.perf_counter()
    bar = _progress(progress, warmup + draws, desc, chains)
    if warmup > 0 and step_size is not None:
        states, eps = _retune(density, data, jax.random.split(k_warm, chains), initial_positions, warmup,
                              jnp.asarray(step_size), jnp.asarray(inverse_mass_matrix), max_doublings, target_accept)
        imm = jnp.asarray(inverse_mass_matrix)
        jax.block_until_ready(eps)
    elif warmup > 0:
        states, eps, imm = _warmup(density, data, jax.random.split(k_warm, chains), initial_positions,
                                   warmup, max_doublings, target_accept)
        jax.block_until_ready(eps)
    else:
        states = _init_states(density, data, initial_positions)
        eps, imm = jnp.asarray(step_size), jnp.asarray(inverse_mass_matrix)
    t1 = time.perf_counter()
    if bar is not None:
        bar.update(warmup)
    block = _block(draws, 10 if progress else 1)
    outs = []
    for key_b in jax.random.split(k_draw, draws // block):
        states, out = _sample(density, data, jax.random.split(key_b, chains), states, eps, imm, block,
                              max_doublings)
        outs.append(out)
        if bar is not None:
            jax.block_until_ready(out)
            bar.update(block)
    jax.block_until_ready(states)
    t2 = time.perf_counter()
    if bar is not None:
        bar.close()
    out = jax.tree.map(lambda *x: jnp.concatenate(x, axis=1), *outs)
    positions, stats = out
    return NutsRun(positions=positions, stats=stats, step_size=eps, inverse_mass_matrix=imm,
                   last_positions=states.position, warmup_seconds=t1 - t0, sampling_seconds=t2 - t1)


def _progress(enabled, total, desc, chains):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{desc} ({chains} chains)", unit="it", leave=False)


def _block(draws: int, parts: int) -> int:
    for k in range(min(parts, draws), 0, -1):
        if draws % k == 0:
            return draws // k
    return draws


@eqx.filter_jit
def _init_states(density, data, positions):
    return jax.vmap(lambda p: blackjax.nuts.init(p, lambda q: density(q, data)))(positions)


@eqx.filter_jit
def _warmup(density, data, keys, positions, num_steps, max_doublings, target_accept):
    """Stan-style window adaptation of step size and diagonal mass matrix, per chain."""
    logdensity = lambda p: density(p, data)

    def one(key, position):
        adapt = blackjax.window_adaptation(
            blackjax.nuts, logdensity, target_acceptance_rate=target_accept,
            adaptation_info_fn=get_filter_adapt_info_fn(), max_num_doublings=max_doublings)
        (state, params), _ = adapt.run(key, position, num_steps)
        return state, params["step_size"], params["inverse_mass_matrix"]

    return jax.vmap(one)(keys, positions)


@eqx.filter_jit
def _retune(density, data, keys, positions, num_steps, step_size, imm, max_doublings, target_accept):
    """Dual-averaging step-size adaptation with the mass matrix held fixed."""
    from blackjax.adaptation.step_size import dual_averaging_adaptation

    logdensity = lambda p: density(p, data)
    da_init, da_update, da_final = dual_averaging_adaptation(target_accept)

    def one(key, position, eps, m):
        def body(carry, k):
            state, da = carry
            kernel = blackjax.nuts(logdensity, jnp.exp(da.log_step_size), m, max_num_doublings=max_doublings)
            state, info = kernel.step(k, state)
            return (state, da_update(da, info.acceptance_rate)), None

        start = (blackjax.nuts.init(position, logdensity), da_init(eps))
        (state, da), _ = jax.lax.scan(body, start, jax.random.split(key, num_steps))
        return state, da_final(da)

    return jax.vmap(one)(keys, positions, step_size, imm)


@eqx.filter_jit
def _sample(density, data, keys, states, step_size, imm, n, max_doublings):
    logdensity = lambda p: density(p, data)

    def chain(key, state, eps, m):
        kernel = blackjax.nuts(logdensity, eps, m, max_num_doublings=max_doublings)

        def body(s, k):
            s, info = kernel.step(k, s)
            return s, (s.position, dict(diverging=info.is_divergent, acceptance_rate=info.acceptance_rate,
                                        n_steps=info.num_integration_steps,
                                        tree_depth=info.num_trajectory_expansions, lp=s.logdensity,
                                        energy=info.energy))

        return jax.lax.scan(body, state, jax.random.split(key, n))

    return jax.vmap(chain)(keys, states, step_size, imm)

