"""Simulation–estimation: virtual docetaxel patients (Bruno 1996 model, IIV ω_CL 0.25 and
ω_V1 0.3 — illustrative, see models/docetaxel.py), 4 sparse samples in cycle 1, a per-patient
NUTS fit each (4 chains x 1000 warmup x 1000 draws, Stan's defaults: with 500 draws per chain
the split R-hat of a healthy fit exceeds 1.01 by chance often enough to decide the convergence
check); credible-interval coverage of the true CL and V1, convergence, and the cycle-2
AUC predicted from the cycle-1 posterior against the truth (and against the population-only
prediction as the baseline).

Five cohorts of 200 (the issue's cohort size; seeds 17-21), 1,000 patients in all.  Coverage is
a binomial proportion: over 200 patients its Monte Carlo SE is 2.1 percentage points, so an
exactly calibrated posterior still lands outside 86-94 % about 6 % of the time per parameter
(the first cohort, seed 17, gave 84.5 % for V1 and the second 93 %).  The checks are over all
1,000 (SE 0.95 points), with each cohort's coverage and the simulation-based-calibration ranks
(fraction of posterior draws below the truth: uniform for a calibrated posterior) beside them."""

from __future__ import annotations

import time

import numpy as np

SOURCE = "issue 3 acceptance (simulation-estimation targets)"
SEEDS = (17, 18, 19, 20, 21)
# Fit keys per cohort: those of the first two cohorts' earlier runs (seed 17: 1000 + i, the
# replicate seed 18: 5000 + i), so their numbers reproduce; the later cohorts continue the pattern.
KEY_BASE = {17: 1000, 18: 5000, 19: 9000, 20: 13000, 21: 17000}
PARAMETERS = ("CL", "V1")


def main(quick: bool = False) -> None:
    from validation._record import Check, write_results

    import pbpk

    model = pbpk.models.load("docetaxel_bruno1996").compile()
    n, warmup, draws = (6, 300, 300) if quick else (200, 1000, 1000)
    seeds = SEEDS[:1] if quick else SEEDS
    cohorts = [_fit_cohort(model, n, warmup, draws, seed) for seed in seeds]
    pooled = {k: np.concatenate([c[k] for c in cohorts]) for k in cohorts[0]}
    total = len(pooled["healthy"])
    cov = {k: 100 * float(np.mean(pooled[f"covered_{k}"])) for k in PARAMETERS}
    per_cohort = {k: [100 * float(np.mean(c[f"covered_{k}"])) for c in cohorts] for k in PARAMETERS}
    ape = 100 * np.abs(pooled["predicted_auc"] / pooled["true_auc"] - 1)
    ape_pop = 100 * np.abs(pooled["typical_auc"] / pooled["true_auc"] - 1)
    mc = 100 * np.sqrt(0.9 * 0.1 / total)

    def coverage_note(k):
        ranks = pooled[f"rank_{k}"]
        return (f"binomial MC error ±{mc:.2f} percentage points; per cohort of {n} (seeds "
                f"{', '.join(map(str, seeds))}): " + ", ".join(f"{v:.1f}" for v in per_cohort[k]) +
                f" %; SBC rank mean {ranks.mean():.3f} (uniform 0.5), sd {ranks.std():.3f} (uniform 0.289)")

    checks = [
        Check.within(f"simest.coverage_{k}", f"90% credible interval covers the true {k} ({total} patients, "
                     f"{len(seeds)} cohorts of {n})", SOURCE, cov[k], "%", 86, 94, note=coverage_note(k), fmt="{:.1f}")
        for k in PARAMETERS]
    checks += [Check(f"simest.first_cohort_coverage_{k}", f"first cohort alone (seed {seeds[0]}, {n} patients): 90% "
                     f"credible-interval coverage of {k}", "measured in this run", per_cohort[k][0], "%",
                     "informational", True, note=f"binomial MC error ±{100 * np.sqrt(0.09 / n):.1f} percentage points")
               for k in PARAMETERS]
    checks.append(Check.at_least("simest.converged", "fits with all R-hat <= 1.01 and no divergences", SOURCE,
                                 100 * float(np.mean(pooled["healthy"])), "%", 98, fmt="{:.1f}"))
    checks.append(Check.at_most("simest.auc_mdape", "cycle-2 AUC predicted from the cycle-1 posterior: median "
                                "absolute % error", SOURCE + "; seed paper reports 8-20 % dose prediction error",
                                float(np.median(ape)), "%", 5.0, fmt="{:.2f}"))
    checks.append(Check.at_least("simest.auc_mdape_gain", "population-only MdAPE / posterior MdAPE (the "
                                 "baseline it beats)", "measured in this run",
                                 float(np.median(ape_pop) / np.median(ape)), "x", 1.0, fmt="{:.2f}"))
    write_results("calibration_recovery", checks, {"details": {
        "patients": total, "cohorts": list(seeds), "patients_per_cohort": n, "chains": 4, "warmup": warmup,
        "draws": draws, "quick": quick, "coverage_%": cov, "coverage_per_cohort_%": per_cohort,
        "auc_mdape_%": float(np.median(ape)), "auc_mdape_population_only_%": float(np.median(ape_pop)),
        "seconds_per_fit_median": float(np.median(pooled["seconds"])),
        "seconds_total": float(np.sum(pooled["seconds"]))}})


def _fit_cohort(model, n, warmup, draws, seed):
    """Per patient of the cohort ``seed``: coverage and SBC rank of CL and V1, convergence, and the
    predicted vs true cycle-2 AUC."""
    import jax
    from tqdm.auto import tqdm

    import pbpk
    from validation.recovery._docetaxel_cohort import cohort, cycle2_auc, next_cycle

    data, truth = cohort(model, n, seed=seed)
    out = {"true_auc": cycle2_auc(model, truth),
           "typical_auc": np.full(n, float(cycle2_auc(model, np.asarray(model.theta))[0]))}
    rows = []
    for i, subj in enumerate(tqdm(list(data), desc=f"sim-est fits, cohort {seed}", leave=False)):
        t0 = time.perf_counter()
        post = pbpk.fit(model, subj, key=jax.random.key(KEY_BASE[seed] + i), warmup=warmup, draws=draws,
                        progress=False)
        row = {"seconds": time.perf_counter() - t0}
        for name in PARAMETERS:
            true_value, samples = truth[i, model.parameter_index(name)], np.asarray(post[name])
            lo, hi = np.quantile(samples, [0.05, 0.95])
            row[f"covered_{name}"] = lo <= true_value <= hi
            row[f"rank_{name}"] = float(np.mean(samples < true_value))
        d = post.diagnostics()
        row["healthy"] = d["max_r_hat"] <= 1.01 and d["divergences"] == 0
        expo = pbpk.Twin(model, post, max_draws=500).exposure(next_cycle(), start=504.0, end=1008.0, n_points=2001)
        row["predicted_auc"] = expo.loc["AUC", "median"]
        rows.append(row)
    out.update({k: np.asarray([r[k] for r in rows]) for k in rows[0]})
    return out
