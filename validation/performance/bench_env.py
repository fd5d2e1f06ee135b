"""Dosing-environment throughput: pbpk's batched JAX environment and its torchrl export vs a
single-patient Gymnasium-style environment integrating with SciPy, same model, same run.

    python -m validation.performance.bench_env [--quick]

Environment: ``pbpk.control.chemotherapy_env`` — docetaxel 1-h infusion every 21 days into the
composed Bruno PK → Kloft neutropenia → Claret tumour model (10 states); one step is one 21-day
cycle with the rewards, costs and noisy samples of the case, a random action (0–100 mg/m²) per
patient and step, and a new virtual patient (log-normal IIV) at each episode's start.

Measured (patient-steps per second; after a warm-up call, best of repeats on a noisy 2-core box):

* pbpk JAX: ``env.step_batch`` (vmap + jit, gymnax-style auto-reset) at batch 1, 64, 1,024;
* pbpk torchrl: ``env.to_torchrl(...)`` stepped through ``EnvBase.step`` (DLPack to and from
  torch) at batch 1, 64, 1,024;
* baselines, one patient at a time as the DTR-Bench environments do: SciPy ``solve_ivp`` LSODA
  and a Python right-hand side from the model's own equations (``sympy.lambdify``, scalar NumPy),
  and the same right-hand side compiled with numba (the strongest SciPy configuration in
  DESIGN.md's table), rtol 1e-6 / atol 1e-9 like the JAX environment, the infusion as its own
  segment, the observations on the same 6-h grid.

The ratio target (issue 8): ≥ 100× the SciPy environment at batch 1,024.  The baselines' steps
are checked against the JAX step (same patient, same dose) before timing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from validation._record import Check, write_results
from validation.performance.bench_pbpk import lambdified_rhs, symbolic_rhs

RTOL, ATOL = 1e-6, 1e-9


def numba_rhs(model):
    """The same equations compiled with numba: f(t, y, p, out)."""
    import sympy as sp
    from numba import njit

    (t, ys, ps), exprs = symbolic_rhs(model)
    subs, reduced = sp.cse(exprs)
    lines = ["def f(t, y, p, out):"]
    lines += [f"    {s} = y[{i}]" for i, s in enumerate(ys)] + [f"    {s} = p[{i}]" for i, s in enumerate(ps)]
    lines += [f"    {lhs} = {sp.pycode(rhs)}" for lhs, rhs in subs]
    lines += [f"    out[{i}] = {sp.pycode(e)}" for i, e in enumerate(reduced)]
    scope = {"math": __import__("math")}
    exec("\n".join(lines), scope)
    return njit(cache=False)(scope["f"])


class ScipyChemoEnv:
    """One patient, Gymnasium's API (reset(seed) -> obs, info; step(a) -> obs, r, term, trunc,
    info): each step integrates the 21-day cycle with ``solve_ivp`` LSODA."""

    def __init__(self, env, rhs, *, numba: bool = False):
        self.env, self.rhs, self.numba = env, rhs, numba
        m = env.model
        self.model = m
        self.grid = np.asarray(env.sim.grid)
        self.into = m.state_names.index("central")
        self.obs_index = {n: i for i, n in enumerate(m.observation_names)}
        self.observe, self.initial = _numpy_observe(m)
        self.rng = np.random.default_rng(0)
        self.top = int(np.argmax(np.asarray(env.doses)))          # the 100 mg/m² action

    def reset(self, seed=None, theta=None):
        m = self.model
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        omega, typical = np.asarray(m.omega), np.asarray(m.theta)
        self.theta = typical * np.exp(self.rng.normal(size=omega.shape) * omega) if theta is None else np.asarray(theta)
        self.y = self.initial(self.theta)
        self.t, self.cycle, self.sld0 = 0.0, 0, self.y[m.state_names.index("SLD_state")]
        return self._obs(np.zeros((1, len(m.observation_names)))), {}

    def _f(self, rate):
        p, r = self.theta, rate
        if self.numba:
            out = np.empty(len(self.y))
            return lambda t, y: (self.rhs(t, y, p, out), out + r)[1]
        return lambda t, y: np.asarray(self.rhs(t, y, p)) + r

    def step(self, action):
        from scipy.integrate import solve_ivp

        dose = float(self.env.doses[action])
        rate = np.zeros(len(self.y))
        rate[self.into] = dose * 1.8                                # mg over the 1-h infusion
        t0, ts = self.t, self.t + self.grid
        first = solve_ivp(self._f(rate), (t0, t0 + 1.0), self.y, method="LSODA", rtol=RTOL, atol=ATOL)
        second = solve_ivp(self._f(0 * rate), (t0 + 1.0, ts[-1]), first.y[:, -1], method="LSODA", rtol=RTOL,
                           atol=ATOL, t_eval=ts[ts >= t0 + 1.0])
        ys = np.concatenate([np.repeat(first.y[:, :1].T, int(np.sum(ts < t0 + 1.0)), 0), second.y.T])
        obs = np.stack([self.observe(t, y, self.theta) for t, y in zip(ts, ys)])
        anc, sld = obs[:, self.obs_index["ANC"]], obs[:, self.obs_index["SLD"]]
        cost = float(np.sum(np.where(anc < 0.5, np.diff(self.grid, append=self.grid[-1]) / 24.0, 0.0)) > 7.0)
        reward = (sld[0] - sld[-1]) / self.sld0
        self.y, self.t, self.cycle = ys[-1], ts[-1], self.cycle + 1
        terminated = self.cycle >= self.env.horizon
        return self._obs(obs), reward, terminated, False, {"cost": cost, "y": ys[-1]}

    def _obs(self, obs):
        last = obs[-1]
        noisy = last * (1 + 0.1 * self.rng.normal(size=last.shape))
        return np.concatenate([noisy, [self.cycle / self.env.horizon]])


def _numpy_observe(model):
    """The observation and initial-state functions for the SciPy env (not what is timed: both
    are a small share of a step)."""
    import jax

    f = jax.jit(lambda t, y, theta: model.observe(t, y, theta, model.covariate_reference))
    y0 = jax.jit(lambda theta: model.initial_state(theta, model.covariate_reference))
    return (lambda t, y, theta: np.asarray(f(t, y, theta))), (lambda theta: np.array(y0(theta), dtype=float))


def time_scipy(env_cls_args, steps: int):
    env = ScipyChemoEnv(*env_cls_args[0], **env_cls_args[1])
    rng = np.random.default_rng(1)
    env.reset(seed=0)
    env.step(env.top)
    done, n = False, 0
    start = time.perf_counter()
    env.reset(seed=1)
    while n < steps:
        _, _, done, _, _ = env.step(int(rng.integers(0, env.env.action_space.n)))
        n += 1
        if done:
            env.reset()
    return n / (time.perf_counter() - start)


def time_jax(env, patients, batch: int, steps: int, repeats: int):
    import jax
    import jax.numpy as jnp

    obs, state = env.reset_batch(jax.random.key(0), patients, batch)
    acts = jax.random.randint(jax.random.key(1), (steps, batch), 0, env.action_space.n)
    out = env.step_batch(jax.random.key(2), state, acts[0], patients)
    jax.block_until_ready(out)
    best = np.inf
    for r in range(repeats):
        s = state
        start = time.perf_counter()
        for k in range(steps):
            _, s, *_ = env.step_batch(jax.random.key(10 * r + k), s, acts[k], patients)
        jax.block_until_ready(s)
        best = min(best, time.perf_counter() - start)
    del jnp
    return batch * steps / best


def time_torchrl(env, patients, batch: int, steps: int, repeats: int):
    import torch

    tenv = env.to_torchrl(patients, batch_size=batch, seed=0)
    td = tenv.reset()
    td = tenv.step(td.set("action", torch.randint(0, env.action_space.n, (batch,))))
    best = np.inf
    for _ in range(repeats):
        td = tenv.reset()
        start = time.perf_counter()
        for _ in range(steps):
            td.set("action", torch.randint(0, env.action_space.n, (batch,)))
            td = tenv.step(td)
            td = tenv.step_mdp(td) if hasattr(tenv, "step_mdp") else td["next"]
            if td["done"].any():
                td = tenv.reset(td)
        best = min(best, time.perf_counter() - start)
    return batch * steps / best


def check_baseline_agrees(env, rhs, numba: bool) -> float:
    """Relative difference of the end-of-cycle state, SciPy env vs JAX step, typical patient, 100 mg/m²."""
    import jax

    from pbpk.control import Patients

    sp_env = ScipyChemoEnv(env, rhs, numba=numba)
    sp_env.reset(theta=np.asarray(env.model.theta))
    _, _, _, _, info = sp_env.step(sp_env.top)
    _, state = env.reset(jax.random.key(0), Patients.typical(env.model))
    _, new, *_ = env.step_env(jax.random.key(1), state, sp_env.top)
    y = np.asarray(new.y)
    keep = np.abs(y) > 1e-6
    return float(np.max(np.abs(info["y"][keep] - y[keep]) / np.abs(y[keep])))


def main(quick: bool = False) -> None:
    import jax

    from pbpk.control import Patients, chemotherapy_env

    env = chemotherapy_env()
    patients = Patients.from_population(env.model.population(4096, jax.random.key(0)))
    py_rhs = lambdified_rhs(env.model)
    nb_rhs = numba_rhs(env.model)
    agree_py = check_baseline_agrees(env, py_rhs, numba=False)
    agree_nb = check_baseline_agrees(env, nb_rhs, numba=True)
    scipy_steps = 12 if quick else 60
    rates = {"scipy_lsoda_python": time_scipy(((env, py_rhs), {}), scipy_steps),
             "scipy_lsoda_numba": time_scipy(((env, nb_rhs), {"numba": True}), scipy_steps)}
    batches = (1, 64, 1024)
    steps, repeats = (3, 1) if quick else (6, 3)
    for b in batches:
        rates[f"jax_batch_{b}"] = time_jax(env, patients, b, steps, repeats)
        rates[f"torchrl_batch_{b}"] = time_torchrl(env, patients, b, steps, repeats)
    strongest = max(rates["scipy_lsoda_python"], rates["scipy_lsoda_numba"])
    table = [{"method": k, "patient_steps_per_s": round(v, 2), "ratio_vs_strongest_scipy": round(v / strongest, 2)}
             for k, v in rates.items()]
    for row in table:
        print(f"{row['method']:>22}: {row['patient_steps_per_s']:>10.1f} patient-steps/s  "
              f"({row['ratio_vs_strongest_scipy']:.2f}x the strongest SciPy env)")
    checks = [
        Check("env.throughput_jax_1024", "JAX environment at batch 1,024 vs the strongest single-patient SciPy env "
              "(LSODA, numba or Python RHS, whichever is faster), chemotherapy case", "issue 8 performance target",
              round(rates["jax_batch_1024"] / strongest, 2), "x", ">= 100",
              rates["jax_batch_1024"] / strongest >= 100),
        Check("env.throughput_torchrl_1024", "torchrl-exported environment at batch 1,024 vs the same SciPy env",
              "issue 8 performance target", round(rates["torchrl_batch_1024"] / strongest, 2), "x", ">= 100",
              rates["torchrl_batch_1024"] / strongest >= 100),
        Check("env.scipy_baseline_agrees", "SciPy environment's end-of-cycle state vs the JAX step (max relative "
              "difference, typical patient, 100 mg/m², Python and numba RHS)", "same model, rtol 1e-6",
              max(agree_py, agree_nb), "", "<= 1e-3", max(agree_py, agree_nb) <= 1e-3),
    ]
    write_results("env_performance", checks, extra={"table": table, "details": {
        "model": env.model.name, "states": len(env.model.state_names), "step": "21-day cycle, 6-h grid",
        "jax_path": "partitioned: exact PK (spectral), Tsit5 PD" if env.sim.partitioned else "implicit",
        "quick": quick}})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    main(**vars(parser.parse_args()))
