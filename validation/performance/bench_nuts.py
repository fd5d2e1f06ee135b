"""Per-patient NUTS calibration speed: ``pbpk.fit`` (BlackJAX) vs NumPyro NUTS, same model, data and run.

    python -m validation.performance.bench_nuts [--quick]

Model: ``two_compartment_iv`` (CL, V1 with log-normal IIV ω 0.3 / 0.2 around 5 L/h / 10 L; Q 8 L/h
and V2 40 L fixed; proportional error 10 % on Cp).  One patient: a 1-h infusion of 100 mg, Cp at
0.5, 1, 2, 4, 6, 8, 12, 24 h, simulated at CL 6, V1 12, Q 8, V2 40 with 10 % proportional noise
(fixed seed), written as a NONMEM CSV and read back with ``pbpk.read_nonmem``.

The posterior sampled by both (identical, asserted below by evaluating both log densities):
η_CL ~ N(0, 0.3), η_V1 ~ N(0, 0.2); CL = 5·exp(η_CL), V1 = 10·exp(η_V1); DV_j ~ N(C_j, 0.1·C_j).

* pbpk: ``pbpk.fit`` (BlackJAX NUTS, Stan window adaptation, diagonal mass matrix, chains vmapped,
  concentrations by pbpk's exact closed-form (spectral) path, which the compiler chose from the
  model's structure); chains start from pbpk's dispersed Laplace inits.
* NumPyro NUTS (MCMC's defaults: diagonal mass matrix, max tree depth 10, target acceptance 0.8), from the
  same kind of starting points (pbpk's ``dispersed_inits`` around the same mode), with C(t) either
  - "analytic": the closed-form biexponential of a zero-order infusion (checked against
    ``model.simulate`` to 1e-8), or
  - "ode": diffrax (two solves: during and after the infusion; PIDController rtol 1e-8 atol 1e-10),
    solver (Tsit5 / Kvaerno5) and differentiation (reverse mode through diffrax's checkpointed
    adjoint / forward mode, NUTS(forward_mode_differentiation=True)) chosen as the fastest
    value-and-gradient among those accurate to 1e-6,
  each with ``chain_method`` "vectorized" and "sequential"; the baseline is the configuration with
  the highest (median) ESS/s (the other is in ``details``).  "parallel" needs one XLA device per chain
  (``--xla_force_host_platform_device_count``), which would also change pbpk's run, so it is not used.

Timing: every configuration is run 1 + 3 times (quick: 1 + 1) in this process with new keys and
starting points; the first run compiles, the others are timed (median reported; one 2-core machine
is noisy), warmup and sampling separately (pbpk: ``NutsRun.warmup_seconds``/``sampling_seconds``).
Compile time = first run minus the median timed run.  ESS/s = bulk ESS of CL (ArviZ) / (warmup +
sampling seconds), per run, median over runs.  pbpk's mode finding before NUTS is
not counted (NumPyro is handed starting points from that same mode).  NumPyro's kernel runs under a
compile-once driver (``run_numpyro_kernel``: ``numpyro.infer.MCMC`` in numpyro 0.22 recompiles on
every call); full mode also times ``MCMC`` itself for the chosen configurations, as information.

Results: ``validation/results/calibration_performance.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# runs: per configuration, 1 compiling run + (runs - 1) timed runs whose median is reported.
FULL = dict(chains=4, warmup=1000, draws=1000, runs=4)
QUICK = dict(chains=2, warmup=300, draws=300, runs=2)
TIMES = np.array([0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 24.0])
DOSE, T_INF = 100.0, 1.0                       # mg over h
TRUE = dict(CL=6.0, V1=12.0, Q=8.0, V2=40.0)   # data-generating parameters
TYPICAL = dict(CL=5.0, V1=10.0)                # prior medians (the model's typical values)
OMEGA = dict(CL=0.3, V1=0.2)
Q, V2, CV = 8.0, 40.0, 0.1
DATA_SEED = 20261123
ODE_RTOL, ODE_ATOL = 1e-8, 1e-10
AREA = "calibration_performance"


# =========================================================================== data
def make_dataset(model, directory: Path):
    """The patient's NONMEM CSV (true concentrations x (1 + 0.1·N(0,1))) and the pbpk Dataset read from it."""
    import pandas as pd

    import pbpk

    regimen = pbpk.Regimen((pbpk.Infusion(DOSE, duration=T_INF, into="central"),))
    true_cp = np.asarray(model.simulate(regimen, TIMES, params=TRUE)["Cp"])
    dv = true_cp * (1.0 + CV * np.random.default_rng(DATA_SEED).normal(size=TIMES.size))
    rows = [dict(ID=1, TIME=0.0, AMT=DOSE, RATE=DOSE / T_INF, DV=np.nan, EVID=1, CMT="central")]
    rows += [dict(ID=1, TIME=t, AMT=0.0, RATE=0.0, DV=y, EVID=0, CMT="central") for t, y in zip(TIMES, dv)]
    path = directory / "bench_nuts_patient.csv"
    pd.DataFrame(rows).to_csv(path, index=False, na_rep=".", float_format="%.17g")
    return pbpk.read_nonmem(path, model), dv, true_cp


# =========================================================================== concentrations for NumPyro
def conc_analytic(cl, v1, t=TIMES):
    """Central concentration of the 2-compartment model, zero-order infusion DOSE over T_INF from t=0.

    Unit-bolus response (1/V1)(A e^{-αt} + B e^{-βt}) convolved with the rate R over [0, min(t, T)]:
    C = R/V1 Σ_k (coef_k/λ_k)(e^{-λ_k τ} - e^{-λ_k t}), τ = max(t - T, 0), written with expm1 so the
    difference of exponentials keeps full relative precision."""
    import jax.numpy as jnp

    k10, k12, k21 = cl / v1, Q / v1, Q / V2
    s = k10 + k12 + k21
    alpha = 0.5 * (s + jnp.sqrt(s * s - 4.0 * k10 * k21))
    beta = k10 * k21 / alpha                     # product of the roots: no cancellation as in (s - √D)/2
    a, b = (alpha - k21) / (alpha - beta), (k21 - beta) / (alpha - beta)
    t = jnp.asarray(t)
    tau, on = jnp.maximum(t - T_INF, 0.0), jnp.minimum(t, T_INF)
    term = lambda c, lam: c / lam * jnp.exp(-lam * tau) * -jnp.expm1(-lam * on)
    return DOSE / T_INF / v1 * (term(a, alpha) + term(b, beta))


def make_conc_ode(solver_name: str, forward: bool, t=TIMES):
    """C(t) by diffrax: one solve during the infusion (input DOSE/T_INF), one after (no input), so
    that no step straddles the discontinuity; observation times are static, so the split is too.
    ``forward``: differentiable in forward mode only (``diffrax.ForwardMode``, for NumPyro's
    ``forward_mode_differentiation=True``: 2 tangents instead of a checkpointed reverse pass),
    else reverse mode (diffrax's default ``RecursiveCheckpointAdjoint``)."""
    import diffrax
    import jax.numpy as jnp

    t = np.asarray(t)
    during, after = t[t <= T_INF], t[t > T_INF]
    ts1 = np.unique(np.append(during, T_INF))            # also save at T_INF to restart from
    i_end, i_during = len(ts1) - 1, np.searchsorted(ts1, during)
    solver = getattr(diffrax, solver_name)()
    ctrl = diffrax.PIDController(rtol=ODE_RTOL, atol=ODE_ATOL)
    adjoint = diffrax.ForwardMode() if forward else diffrax.RecursiveCheckpointAdjoint()

    def rhs(_, y, args):
        cl, v1, rate = args
        return jnp.stack([rate - (cl + Q) / v1 * y[0] + Q / V2 * y[1], Q / v1 * y[0] - Q / V2 * y[1]])

    term = diffrax.ODETerm(rhs)

    def solve(t0, t1, y0, args, ts):
        # throw=False: early warmup proposes extreme parameters (max_steps reached); a failed solve
        # gives NaN concentrations, i.e. a non-finite density that NUTS rejects (as pbpk does).
        sol = diffrax.diffeqsolve(term, solver, t0, t1, None, y0, args=args, saveat=diffrax.SaveAt(ts=ts),
                                  stepsize_controller=ctrl, max_steps=4096, adjoint=adjoint, throw=False)
        return jnp.where(sol.result == diffrax.RESULTS.successful, sol.ys, jnp.nan)

    def conc(cl, v1):
        ys1 = solve(0.0, T_INF, jnp.zeros(2), (cl, v1, DOSE / T_INF), jnp.asarray(ts1))
        ys2 = solve(T_INF, float(t[-1]), ys1[i_end], (cl, v1, 0.0), jnp.asarray(after))
        return jnp.concatenate([ys1[i_during, 0], ys2[:, 0]]) / v1

    return conc


def make_numpyro_model(conc_fn, dv):
    """pbpk's posterior written in NumPyro (data closed over: the model takes no arguments)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    dv = jnp.asarray(dv)

    def model():
        eta_cl = numpyro.sample("eta_CL", dist.Normal(0.0, OMEGA["CL"]))
        eta_v1 = numpyro.sample("eta_V1", dist.Normal(0.0, OMEGA["V1"]))
        c = conc_fn(TYPICAL["CL"] * jnp.exp(eta_cl), TYPICAL["V1"] * jnp.exp(eta_v1))
        numpyro.sample("dv", dist.Normal(c, CV * c), obs=dv)

    return model


# =========================================================================== runs
def ess_bulk(x):
    import arviz as az

    return float(az.ess(np.asarray(x), method="bulk"))


def run_record(warmup_s, sampling_s, cl, v1, n_steps, diverging, step_size):
    """One run: wall times, (chains, draws) natural-scale CL and V1 draws, leapfrog steps, divergences."""
    return dict(warmup_s=float(warmup_s), sampling_s=float(sampling_s), CL=np.asarray(cl), V1=np.asarray(v1),
                n_steps=int(np.sum(n_steps)), divergences=int(np.sum(diverging)), step_size=np.asarray(step_size))


def summarize(runs, method, chain_method):
    """Row of a configuration from its runs (the first compiles, the others are timed): medians over the
    timed runs of times and ESS/s; posterior means and MCSE over all timed chains pooled."""
    import arviz as az

    first, timed = runs[0], runs[1:]
    per = []
    for r in timed:
        total = r["warmup_s"] + r["sampling_s"]
        ess = ess_bulk(r["CL"])
        per.append(dict(warmup_s=r["warmup_s"], sampling_s=r["sampling_s"], total_s=total, ess_bulk_CL=ess,
                        ess_bulk_V1=ess_bulk(r["V1"]), ess_per_s=ess / total,
                        ess_per_s_sampling_only=ess / r["sampling_s"],
                        r_hat_max=max(float(az.rhat(r["CL"])), float(az.rhat(r["V1"]))), divergences=r["divergences"],
                        grad_evals_sampling=r["n_steps"], step_size=r["step_size"]))
    med = {k: float(np.median([x[k] for x in per])) for k in
           ("warmup_s", "sampling_s", "total_s", "ess_bulk_CL", "ess_bulk_V1", "ess_per_s", "ess_per_s_sampling_only")}
    cl, v1 = (np.concatenate([r[p] for r in timed]) for p in ("CL", "V1"))    # chains of all timed runs
    n_steps, samp = sum(r["n_steps"] for r in timed), sum(r["sampling_s"] for r in timed)
    first_s = first["warmup_s"] + first["sampling_s"]
    return dict(method=method, chain_method=chain_method, **med, timed_runs=len(timed),
                mean_CL=float(cl.mean()), mean_V1=float(v1.mean()),
                mcse_mean_CL=float(np.squeeze(az.mcse(cl, method="mean"))),
                mcse_mean_V1=float(np.squeeze(az.mcse(v1, method="mean"))),
                r_hat_max=max(x["r_hat_max"] for x in per), divergences=sum(x["divergences"] for x in per),
                mean_leapfrog_steps=n_steps / cl.size, us_per_grad_eval_sampling=1e6 * samp / max(n_steps, 1),
                first_run_s=first_s, compile_s=first_s - med["total_s"], runs=per)


def run_pbpk(model, dataset, cfg, n_runs):
    """``n_runs`` pbpk.fit calls with keys 1, 2, ...; the first compiles.  Returns (row, last posterior, warnings)."""
    import jax

    import pbpk

    runs, caught = [], []
    for seed in range(1, n_runs + 1):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            post = pbpk.fit(model, dataset, key=jax.random.key(seed), chains=cfg["chains"], warmup=cfg["warmup"],
                            draws=cfg["draws"], progress=False)
        caught += [f"key {seed}: {x.message}" for x in w]
        runs.append(run_record(post.nuts.warmup_seconds, post.nuts.sampling_seconds, post.draws["CL"], post.draws["V1"],
                               post.stats["n_steps"], post.stats["diverging"], post.nuts.step_size))
        runs[-1]["fit_seconds_incl_mode"] = post.seconds
    row = summarize(runs, "pbpk.fit (BlackJAX NUTS, exact closed-form solution)", "vmap")
    row["fit_seconds_incl_mode"] = [r["fit_seconds_incl_mode"] for r in runs[1:]]
    return row, post, caught


def numpyro_record(t_warm, t_samp, z, num_steps, diverging, step_size):
    return run_record(t_warm, t_samp, TYPICAL["CL"] * np.exp(np.asarray(z["eta_CL"])),
                      TYPICAL["V1"] * np.exp(np.asarray(z["eta_V1"])), num_steps, diverging, step_size)


def run_numpyro_kernel(model_fn, chain_method, cfg, inits, seed, forward=False):
    """NumPyro's NUTS kernel (``numpyro.infer.hmc.hmc(potential_fn, algo="NUTS")``: the kernel and
    Stan-style warmup adaptation ``MCMC`` runs, same defaults) under a driver that compiles once:
    warmup = init + ``warmup`` adapting steps, then ``draws`` steps, each one jitted program over the
    chains (``vmap`` for "vectorized", ``lax.map`` for "sequential").  One run per entry of ``inits``.

    Why not ``MCMC.run``: in numpyro 0.22 with ``progress_bar=False`` every ``MCMC.warmup``/``run``
    call recompiles its loop (``fori_collect`` passes a fresh ``jit`` wrapper as a static argument,
    so JAX's cache never hits), so a second ``MCMC`` run still pays compilation; see
    ``run_numpyro_mcmc``."""
    import jax
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    potential_fn = initialize_model(jax.random.PRNGKey(0), model_fn, forward_mode_differentiation=forward).potential_fn
    init_kernel, sample_kernel = hmc(potential_fn, algo="NUTS")

    def warm_one(key, z0):
        state = init_kernel(z0, cfg["warmup"], target_accept_prob=0.8, forward_mode_differentiation=forward,
                            rng_key=key)
        return jax.lax.fori_loop(0, cfg["warmup"], lambda _, s: sample_kernel(s), state)

    def draw_one(state):
        def step(s, _):
            s = sample_kernel(s)
            return s, (s.z, s.num_steps, s.diverging)
        return jax.lax.scan(step, state, None, length=cfg["draws"])[1]

    over = jax.vmap if chain_method == "vectorized" else (lambda f: lambda *xs: jax.lax.map(lambda a: f(*a), xs))
    warm, draw = jax.jit(over(warm_one)), jax.jit(over(draw_one))
    runs = []
    for p, init in enumerate(inits):
        keys = jax.random.split(jax.random.PRNGKey(seed + p), cfg["chains"])
        t0 = time.perf_counter()
        states = jax.block_until_ready(warm(keys, init))
        t1 = time.perf_counter()
        z, num_steps, diverging = jax.block_until_ready(draw(states))
        runs.append(numpyro_record(t1 - t0, time.perf_counter() - t1, z, num_steps, diverging,
                                   states.adapt_state.step_size))
    return runs


def run_numpyro_mcmc(model_fn, chain_method, cfg, inits, seed, forward=False):
    """The same sampler through ``numpyro.infer.MCMC`` as a user calls it (``mcmc.warmup`` then
    ``mcmc.run``, progress bar off), one run per entry of ``inits``: every run includes numpyro
    0.22's per-call recompilation (see ``run_numpyro_kernel``)."""
    import jax
    from numpyro.infer import MCMC, NUTS

    kernel = NUTS(model_fn, target_accept_prob=0.8, forward_mode_differentiation=forward)
    mcmc = MCMC(kernel, num_warmup=cfg["warmup"], num_samples=cfg["draws"], num_chains=cfg["chains"],
                chain_method=chain_method, progress_bar=False)
    runs = []
    for p, init in enumerate(inits):
        k_warm, k_draw = jax.random.split(jax.random.PRNGKey(seed + p))
        t0 = time.perf_counter()
        mcmc.warmup(k_warm, init_params=init)
        jax.block_until_ready(mcmc.post_warmup_state)
        t1 = time.perf_counter()
        mcmc.run(k_draw, extra_fields=("num_steps",))
        z, extra = mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(group_by_chain=True)
        jax.block_until_ready((z, extra))
        runs.append(numpyro_record(t1 - t0, time.perf_counter() - t1, z, extra["num_steps"], extra["diverging"],
                                   mcmc.post_warmup_state.adapt_state.step_size))
    return runs


# =========================================================================== model checks
def check_models(model, dataset, dv, screen, time_grads=True):
    """Assert the analytic solution against pbpk, and the NumPyro log densities against pbpk's (the
    same posterior); time the NumPyro ODE log density's value-and-gradient for each (solver,
    differentiation mode) in ``screen`` and return the fastest one accurate to 1e-6 (``time_grads``
    False: no timings, the first accurate one)."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer.util import log_density

    import pbpk
    from pbpk.inference.logdensity import individual_logdensity

    regimen = pbpk.Regimen((pbpk.Infusion(DOSE, duration=T_INF, into="central"),))
    ref = np.asarray(model.simulate(regimen, TIMES, params=TRUE)["Cp"])
    ana = np.asarray(conc_analytic(TRUE["CL"], TRUE["V1"]))
    err_ana = float(np.max(np.abs(ana / ref - 1.0)))
    assert err_ana <= 1e-8, f"analytic 2-compartment infusion vs model.simulate: max rel error {err_ana:.2e} > 1e-8"

    ld = individual_logdensity(model, dataset.subject(1))
    assert ld.iiv_names == ("CL", "V1"), ld.iiv_names
    etas = np.random.default_rng(0).normal(size=(20, 2)) * np.array([OMEGA["CL"], OMEGA["V1"]])
    pbpk_ld = jax.jit(lambda e: ld.logdensity_fn({"eta": e}))
    pbpk_lp = np.array([float(pbpk_ld(jnp.asarray(e))) for e in etas])

    def numpyro_lp(model_fn):
        f = jax.jit(lambda e: log_density(model_fn, (), {}, {"eta_CL": e[0], "eta_V1": e[1]})[0])
        return np.array([float(f(jnp.asarray(e))) for e in etas]), f

    lp_ana, f_ana = numpyro_lp(make_numpyro_model(conc_analytic, dv))
    dens_ana = float(np.max(np.abs(lp_ana - pbpk_lp)))
    assert dens_ana <= 1e-8 * np.max(np.abs(pbpk_lp)), f"NumPyro analytic log density differs from pbpk's by {dens_ana}"

    def us_per_eval(fn, n=200):
        """Per-evaluation cost inside one compiled lax.map over n points (no per-call dispatch)."""
        if not time_grads:
            return None
        batch = jnp.asarray(np.random.default_rng(1).normal(size=(n, 2)) * np.array([OMEGA["CL"], OMEGA["V1"]]))
        run = jax.jit(lambda b: jax.lax.map(fn, b))
        jax.block_until_ready(run(batch))
        t0 = time.perf_counter()
        jax.block_until_ready(run(batch))
        return 1e6 * (time.perf_counter() - t0) / n

    grad_cost = {"pbpk_exact": us_per_eval(jax.value_and_grad(pbpk_ld)),
                 "numpyro_analytic": us_per_eval(jax.value_and_grad(f_ana))}
    ode = {}
    for solver, mode in screen:
        conc = make_conc_ode(solver, mode == "forward")
        err = float(np.max(np.abs(np.asarray(jax.jit(conc)(TRUE["CL"], TRUE["V1"])) / ref - 1.0)))
        lp, f = numpyro_lp(make_numpyro_model(conc, dv))
        if mode == "forward":        # as NumPyro's forward_mode_differentiation: value as aux of jacfwd
            grad = lambda e, f=f: jax.jacfwd(lambda x: (f(x), f(x)), has_aux=True)(e)[::-1]
        else:
            grad = jax.value_and_grad(f)
        ode[f"{solver}_{mode}"] = dict(solver=solver, differentiation=mode, max_rel_err_vs_pbpk=err,
                                       logdensity_max_abs_diff_vs_pbpk=float(np.max(np.abs(lp - pbpk_lp))),
                                       us_per_value_and_grad=us_per_eval(grad))
    accurate = [k for k, r in ode.items() if r["max_rel_err_vs_pbpk"] <= 1e-6
                and r["logdensity_max_abs_diff_vs_pbpk"] <= 1e-4]
    assert accurate, f"no diffrax configuration reaches 1e-6 relative accuracy: {ode}"
    best = min(accurate, key=lambda k: ode[k]["us_per_value_and_grad"] or 0.0)
    return dict(analytic_max_rel_err_vs_pbpk=err_ana, analytic_logdensity_max_abs_diff_vs_pbpk=dens_ana,
                us_per_value_and_grad=grad_cost, ode_screen=ode, ode_choice=ode[best])


# =========================================================================== main
def main(quick: bool = False) -> None:
    import arviz as az
    import blackjax
    import diffrax
    import jax
    import numpyro

    import pbpk  # float64 on, for pbpk and NumPyro alike
    from pbpk.inference.fit import dispersed_inits
    from validation._record import Check, write_results

    cfg = QUICK if quick else FULL
    t_start = time.perf_counter()
    load = {"start": os.getloadavg()}
    print(f"NUTS calibration benchmark ({'quick' if quick else 'full'}: {cfg['chains']} chains x {cfg['warmup']} "
          f"warmup x {cfg['draws']} draws), {jax.devices()}", flush=True)
    model = pbpk.models.load("two_compartment_iv").compile()
    with tempfile.TemporaryDirectory() as tmp:
        dataset, dv, true_cp = make_dataset(model, Path(tmp))
    # Quick mode checks only what the full run picks (Tsit5, forward mode: ~10x faster per gradient than
    # reverse mode and than Kvaerno5 here); compiling and timing the others takes ~1 min.
    screen = ([("Tsit5", "forward")] if quick else
              [(s, m) for s in ("Tsit5", "Kvaerno5") for m in ("forward", "reverse")])
    model_check = check_models(model, dataset, dv, screen, time_grads=not quick)
    ode_choice = model_check["ode_choice"]
    us = lambda x: "-" if x is None else f"{x:.0f} us"
    print(f"  analytic vs model.simulate: {model_check['analytic_max_rel_err_vs_pbpk']:.1e}; value+grad: "
          + ", ".join(f"{k} {us(v)}" for k, v in model_check["us_per_value_and_grad"].items()) + "; ODE: "
          + ", ".join(f"{k} err {r['max_rel_err_vs_pbpk']:.1e}, {us(r['us_per_value_and_grad'])}"
                      for k, r in model_check["ode_screen"].items())
          + f" -> {ode_choice['solver']} {ode_choice['differentiation']}", flush=True)

    # ---- pbpk
    print(f"  ({time.perf_counter() - t_start:.0f} s) model checks done", flush=True)
    pbpk_row, post, pbpk_warnings = run_pbpk(model, dataset, cfg, cfg["runs"])
    print(f"  pbpk: {pbpk_row['ess_per_s']:.0f} ESS/s (ESS {pbpk_row['ess_bulk_CL']:.0f}, warmup "
          f"{pbpk_row['warmup_s']:.2f} s + sampling {pbpk_row['sampling_s']:.2f} s), "
          f"compile {pbpk_row['compile_s']:.1f} s",
          flush=True)

    # ---- NumPyro: same starting-point distribution as pbpk (dispersed around pbpk's mode), new per run
    mode_pos, mode_cov = post.mode["position"], post.mode["covariance"]

    def inits(seed):
        z = np.asarray(dispersed_inits(mode_pos, mode_cov, jax.random.key(seed), cfg["chains"])["eta"])
        return {"eta_CL": z[:, 0], "eta_V1": z[:, 1]}

    ode_forward = ode_choice["differentiation"] == "forward"
    versions = {"analytic": (conc_analytic, False),
                "ode": (make_conc_ode(ode_choice["solver"], ode_forward), ode_forward)}
    numpyro_rows = {}
    for k, (v, (conc, forward)) in enumerate(versions.items()):
        label = f"NumPyro NUTS, {v}" + (f" (diffrax {ode_choice['solver']}, {ode_choice['differentiation']} mode)"
                                        if v == "ode" else "")
        for cm in ("vectorized", "sequential"):
            # Keys and starts differ between versions (the densities agree to 1e-8, so equal keys would
            # give the same chains and the two agreement checks would not be independent).
            runs = run_numpyro_kernel(make_numpyro_model(conc, dv), cm, cfg,
                                      [inits(100 * k + 10 + i) for i in range(cfg["runs"])], seed=1000 * (k + 1),
                                      forward=forward)
            numpyro_rows[f"{v}_{cm}"] = row = summarize(runs, label, cm)
            print(f"  ({time.perf_counter() - t_start:.0f} s) numpyro {v:<8} {cm:<10}: {row['ess_per_s']:.0f} ESS/s "
                  f"(ESS {row['ess_bulk_CL']:.0f}, warmup {row['warmup_s']:.2f} s + "
                  f"sampling {row['sampling_s']:.2f} s), "
                  f"compile {row['compile_s']:.1f} s", flush=True)
    best = {v: max((r for k, r in numpyro_rows.items() if k.startswith(v + "_")), key=lambda r: r["ess_per_s"])
            for v in versions}
    # The MCMC API as users call it, for the chosen chain_method (full mode only; 1 compiling + 1 timed
    # run, as every MCMC call recompiles anyway).
    mcmc_rows = {}
    for v, (conc, forward) in ({} if quick else versions).items():
        cm = best[v]["chain_method"]
        runs = run_numpyro_mcmc(make_numpyro_model(conc, dv), cm, cfg, [inits(21), inits(22)], seed=200,
                                forward=forward)
        mcmc_rows[f"{v}_{cm}_mcmc_api"] = row = summarize(runs, best[v]["method"] + " via numpyro.infer.MCMC", cm)
        row["compile_s"] = None         # both runs compile: first minus second is noise
        print(f"  ({time.perf_counter() - t_start:.0f} s) numpyro MCMC API {v:<8} {cm:<10}: {row['ess_per_s']:.0f} "
              f"ESS/s (warmup {row['warmup_s']:.2f} s + sampling {row['sampling_s']:.2f} s)", flush=True)
    load["end"] = os.getloadavg()

    # ---- record
    src = "measured in this run"
    mode_note = " (quick mode: 2 chains x 300 x 300)" if quick else ""
    run_desc = f"{cfg['chains']} chains x {cfg['warmup']} warmup x {cfg['draws']} draws"
    checks = []
    for v, b in best.items():
        ratio = pbpk_row["ess_per_s"] / b["ess_per_s"]
        checks.append(Check.at_least(
            f"nuts.ess_per_s_ratio_vs_numpyro_{v}",
            f"pbpk.fit ESS/s / NumPyro NUTS kernel ({v} concentrations, strongest chain_method, compile-once "
            f"driver) ESS/s; bulk ESS of CL over warmup + sampling wall time, {run_desc}, compile excluded",
            src, ratio, "x", 1.0,
            note=f"pbpk {pbpk_row['ess_per_s']:.0f} ESS/s vs NumPyro {v} ({b['chain_method']}) "
                 f"{b['ess_per_s']:.0f} ESS/s" + mode_note))

    def info(id_, description, value, unit, note=""):
        return Check(id_, description, src, value, unit, "informational", np.isfinite(value), note)

    for key, r in [("pbpk", pbpk_row)] + [(f"numpyro_{v}", b) for v, b in best.items()]:
        what = r["method"] + ("" if key == "pbpk" else f", chain_method={r['chain_method']}")
        checks.append(info(f"nuts.ess_per_s_{key}", f"bulk ESS of CL per second (warmup + sampling), {what}",
                           r["ess_per_s"], "1/s", f"ESS {r['ess_bulk_CL']:.0f}"))
        checks.append(info(f"nuts.wall_time_{key}", f"warmup + sampling wall time ({run_desc}), {what}",
                           r["total_s"], "s", f"warmup {r['warmup_s']:.2f} s, sampling {r['sampling_s']:.2f} s, "
                                              f"compile (first minus timed run) {r['compile_s']:.1f} s"))
    for key, r in mcmc_rows.items():
        checks.append(info(f"nuts.ess_per_s_numpyro_{key.split('_')[0]}_mcmc_api",
                           f"bulk ESS of CL per second (warmup + sampling), {r['method']}, chain_method="
                           f"{r['chain_method']} (second call; numpyro 0.22 recompiles on every MCMC call)",
                           r["ess_per_s"], "1/s", f"ESS {r['ess_bulk_CL']:.0f}, warmup {r['warmup_s']:.2f} s, "
                                                  f"sampling {r['sampling_s']:.2f} s; pbpk ratio "
                                                  f"{pbpk_row['ess_per_s'] / r['ess_per_s']:.2f}"))
    for v, b in best.items():
        for p in ("CL", "V1"):
            diff = pbpk_row[f"mean_{p}"] - b[f"mean_{p}"]
            mcse = float(np.hypot(pbpk_row[f"mcse_mean_{p}"], b[f"mcse_mean_{p}"]))
            z = abs(diff) / mcse
            checks.append(Check(
                f"nuts.posterior_mean_{p}_vs_numpyro_{v}",
                f"|posterior mean of {p}: pbpk - NumPyro {v} ({b['chain_method']})| in combined Monte Carlo "
                "standard errors", src, z, "MCSE", "|diff| <= 4 MCSE", bool(z <= 4.0),
                f"pbpk {pbpk_row[f'mean_{p}']:.4f}, NumPyro {b[f'mean_{p}']:.4f}, diff {diff:+.4f}, "
                f"combined MCSE {mcse:.4f}"))

    rows = [pbpk_row] + list(numpyro_rows.values()) + list(mcmc_rows.values())
    table = [{"method": r["method"], "chains": r["chain_method"], "ESS CL": round(r["ess_bulk_CL"]),
              "warmup (s)": round(r["warmup_s"], 2), "sampling (s)": round(r["sampling_s"], 2),
              "ESS/s": round(r["ess_per_s"], 1), "pbpk ratio": round(pbpk_row["ess_per_s"] / r["ess_per_s"], 2),
              "us/grad": round(r["us_per_grad_eval_sampling"], 1), "leapfrog/draw": round(r["mean_leapfrog_steps"], 2),
              "compile (s)": None if r["compile_s"] is None else round(r["compile_s"], 1),
              "mean CL": round(r["mean_CL"], 4),
              "mean V1": round(r["mean_V1"], 4), "max R-hat": round(r["r_hat_max"], 4), "divergences": r["divergences"]}
             for r in rows]
    extra = {
        "mode": "quick" if quick else "full",
        "table": table,
        "details": {
            "run": dict(cfg, target_accept=0.8, max_tree_depth=10, mass_matrix="diagonal"),
            "data": {"times_h": TIMES, "dv_mg_per_L": dv, "true_cp_mg_per_L": true_cp, "true_parameters": TRUE,
                     "noise": f"proportional {CV:g}, numpy default_rng({DATA_SEED})", "dose": "100 mg over 1 h"},
            "model_checks": model_check,
            "pbpk": pbpk_row,
            "pbpk_warnings": pbpk_warnings,
            "numpyro": numpyro_rows,
            "numpyro_mcmc_api": mcmc_rows,
            "numpyro_baseline": {v: f"{v}_{b['chain_method']}" for v, b in best.items()},
            "load_average_1_5_15_min": load,
            "notes": [
                "Timed: runs 2..N of N per configuration in this process (new keys and new starting points each), "
                "medians reported (per-run values in 'runs'); compile_s = first run minus the median timed run "
                "(tracing + XLA compilation + one-off costs). Posterior means/MCSE pool the chains of all timed runs.",
                "NumPyro baseline: NumPyro's NUTS kernel and window adaptation (numpyro.infer.hmc.hmc, algo NUTS, "
                "MCMC's defaults) driven by two jitted programs (init + warmup steps; sampling steps), vmap over "
                "chains ('vectorized') or lax.map ('sequential'), each timed to block_until_ready.  Through "
                "numpyro.infer.MCMC (progress_bar=False) numpyro 0.22 recompiles its loop on every warmup/run call "
                "(fori_collect passes a new jit wrapper as a static argument), so compilation cannot be excluded "
                "there; those runs (mcmc.warmup then mcmc.run, full mode only) are in numpyro_mcmc_api.",
                "pbpk timing: NutsRun.warmup_seconds (init + adaptation) / sampling_seconds of each timed fit.",
                "ESS/s = ArviZ bulk ESS of CL / (warmup + sampling seconds); ess_per_s_sampling_only divides by "
                "sampling time alone.",
                "Starting points: pbpk draws each chain's start from N(mode, diag(Laplace covariance)); NumPyro gets "
                "the same (pbpk's dispersed_inits around pbpk's mode, other keys). pbpk's mode finding "
                "(fit_seconds_incl_mode - total_s) is not counted.",
                "us_per_grad_eval_sampling = sampling seconds / leapfrog steps of all chains (for vectorized/vmapped "
                "chains the chains step together, so this is per batched step divided by chains).",
                "ODE version: solver and differentiation chosen by timing NumPyro's log-density value-and-gradient "
                "(model_checks.ode_screen): reverse mode through diffrax's RecursiveCheckpointAdjoint (NumPyro's "
                "default) or forward mode (diffrax.ForwardMode + NUTS(forward_mode_differentiation=True), 2 "
                "tangents for 2 parameters).  The analytic version uses NumPyro's default reverse mode.",
            ],
            "versions": {"python": sys.version.split()[0], "jax": jax.__version__, "blackjax": blackjax.__version__,
                         "numpyro": numpyro.__version__, "diffrax": diffrax.__version__, "arviz": az.__version__,
                         "numpy": np.__version__, "pbpk": getattr(pbpk, "__version__", "unknown")},
            "wall_time_s": time.perf_counter() - t_start,
        },
    }
    path = write_results(AREA, checks, extra)
    print(f"\n{'method':<62} {'chains':<10} {'ESS':>6} {'warm s':>7} {'samp s':>7} {'ESS/s':>8} {'us/grad':>8} "
          f"{'compile':>8}")
    for r in rows:
        print(f"{r['method'][:62]:<62} {r['chain_method']:<10} {r['ess_bulk_CL']:>6.0f} {r['warmup_s']:>7.2f} "
              f"{r['sampling_s']:>7.2f} {r['ess_per_s']:>8.1f} {r['us_per_grad_eval_sampling']:>8.1f} "
              f"{r['compile_s'] if r['compile_s'] is None else round(r['compile_s'], 1)!s:>8}")
    n_ok = sum(c.passed for c in checks)
    print(f"\n{n_ok}/{len(checks)} checks passed; wrote {path} ({time.perf_counter() - t_start:.0f} s)")
    for c in checks:
        print(f"  [{'PASS' if c.passed else 'FAIL'}] {c.id}: {c.value:.4g} {c.unit} (target {c.target})"
              + (f" - {c.note}" if c.note else ""))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 chains x 300 warmup x 300 draws (smoke run)")
    main(quick=parser.parse_args().quick)
