"""Simulation–estimation: 200 virtual docetaxel patients (Bruno 1996 model, IIV ω_CL 0.25 and
ω_V1 0.3 — illustrative, see models/docetaxel.py), 4 sparse samples in cycle 1, a per-patient
NUTS fit each (4 chains x 1000 warmup x 1000 draws, Stan's defaults: with 500 draws per chain
the split R-hat of a healthy fit exceeds 1.01 by chance often enough to decide the convergence
check); credible-interval coverage of the true CL and V1, convergence, and the cycle-2
AUC predicted from the cycle-1 posterior against the truth (and against the population-only
prediction as the baseline)."""

from __future__ import annotations

import time

import numpy as np

SOURCE = "issue 3 acceptance (simulation-estimation targets)"


def main(quick: bool = False) -> None:
    import jax
    from tqdm.auto import tqdm

    import pbpk
    from validation._record import Check, write_results
    from validation.recovery._docetaxel_cohort import cohort, cycle2_auc, next_cycle

    model = pbpk.models.load("docetaxel_bruno1996").compile()
    n, warmup, draws = (6, 300, 300) if quick else (200, 1000, 1000)
    data, truth = cohort(model, n, seed=17)
    true_auc = cycle2_auc(model, truth)
    typical_auc = float(cycle2_auc(model, np.asarray(model.theta))[0])
    cl, v1 = model.parameter_index("CL"), model.parameter_index("V1")
    covered = {"CL": [], "V1": []}
    healthy, pred_auc, seconds = [], [], []
    for i, subj in enumerate(tqdm(list(data), desc="sim-est fits", leave=False)):
        t0 = time.perf_counter()
        post = pbpk.fit(model, subj, key=jax.random.key(1000 + i), warmup=warmup, draws=draws, progress=False)
        seconds.append(time.perf_counter() - t0)
        for name, j in (("CL", cl), ("V1", v1)):
            lo, hi = np.quantile(post[name], [0.05, 0.95])
            covered[name].append(lo <= truth[i, j] <= hi)
        d = post.diagnostics()
        healthy.append(d["max_r_hat"] <= 1.01 and d["divergences"] == 0)
        twin = pbpk.Twin(model, post, max_draws=500)
        expo = twin.exposure(next_cycle(), start=504.0, end=1008.0, n_points=2001)
        pred_auc.append(expo.loc["AUC", "median"])
    ape = 100 * np.abs(np.asarray(pred_auc) / true_auc - 1)
    ape_pop = 100 * np.abs(typical_auc / true_auc - 1)
    cov = {k: 100 * float(np.mean(v)) for k, v in covered.items()}
    mc = 100 * np.sqrt(0.9 * 0.1 / n)
    # A second, independent cohort, reported beside (not instead of) the pre-registered one: with
    # exact Bayesian calibration a 200-patient coverage still falls outside 86-94 % about 6 % of
    # the time per parameter, and the SBC ranks tell chance from a miscalibrated posterior.
    rep = None if quick else _replicate(model, n, warmup, draws, seed=18)

    def coverage_note(k):
        note = f"binomial MC error ±{mc:.1f} percentage points"
        return note if rep is None else note + f"; replicate cohort (seed 18): {rep[k]['coverage_%']:.1f} %"

    checks = [
        Check.within(f"simest.coverage_{k}", f"90% credible interval covers the true {k} ({n} patients)", SOURCE,
                     cov[k], "%", 86, 94, note=coverage_note(k), fmt="{:.1f}")
        for k in ("CL", "V1")]
    for k in () if rep is None else ("CL", "V1"):
        checks.append(Check(f"simest.replicate_coverage_{k}", f"replicate cohort (seed 18, {n} patients): 90% "
                            f"credible-interval coverage of {k}", "measured in this run", rep[k]["coverage_%"],
                            "%", "informational", True,
                            note=f"SBC rank mean {rep[k]['rank_mean']:.3f} (uniform 0.5), sd {rep[k]['rank_sd']:.3f} "
                                 f"(uniform 0.289)"))
    checks.append(Check.at_least("simest.converged", "fits with all R-hat <= 1.01 and no divergences", SOURCE,
                                 100 * float(np.mean(healthy)), "%", 98, fmt="{:.1f}"))
    checks.append(Check.at_most("simest.auc_mdape", "cycle-2 AUC predicted from the cycle-1 posterior: median "
                                "absolute % error", SOURCE + "; seed paper reports 8-20 % dose prediction error",
                                float(np.median(ape)), "%", 5.0, fmt="{:.2f}"))
    checks.append(Check.at_least("simest.auc_mdape_gain", "population-only MdAPE / posterior MdAPE (the "
                                 "baseline it beats)", "measured in this run",
                                 float(np.median(ape_pop) / np.median(ape)), "x", 1.0, fmt="{:.2f}"))
    write_results("calibration_recovery", checks, {"details": {
        "patients": n, "chains": 4, "warmup": warmup, "draws": draws, "quick": quick,
        "coverage_%": cov, "auc_mdape_%": float(np.median(ape)), "auc_mdape_population_only_%":
        float(np.median(ape_pop)), "seconds_per_fit_median": float(np.median(seconds)),
        "seconds_total": float(np.sum(seconds))}})


def _replicate(model, n, warmup, draws, seed):
    """Coverage and simulation-based-calibration ranks (fraction of draws below the truth) of CL and V1."""
    import jax
    from tqdm.auto import tqdm

    import pbpk
    from validation.recovery._docetaxel_cohort import cohort

    data, truth = cohort(model, n, seed=seed)
    out = {}
    ranks = {"CL": [], "V1": []}
    for i, subj in enumerate(tqdm(list(data), desc="replicate cohort", leave=False)):
        post = pbpk.fit(model, subj, key=jax.random.key(5000 + i), warmup=warmup, draws=draws, progress=False)
        for name in ranks:
            ranks[name].append(float(np.mean(np.asarray(post[name]) < truth[i, model.parameter_index(name)])))
    for name, r in ranks.items():
        r = np.asarray(r)
        out[name] = {"coverage_%": 100 * float(np.mean((r >= 0.05) & (r <= 0.95))), "rank_mean": float(r.mean()),
                     "rank_sd": float(r.std())}
    return out
