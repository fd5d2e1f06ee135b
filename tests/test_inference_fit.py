"""pbpk.fit (NUTS, Laplace, MAP), the Posterior's diagnostics and warnings, and the Twin, on a
conjugate case with an exact Gaussian posterior.

The model: one IV bolus, concentrations observed right after it (C = Dose/V), log-normal
residual error σ and log-normal IIV ω on V.  With r_i = log(Dose/V₀) − log DV_i ~ N(η, σ²) and
η ~ N(0, ω²), the posterior of η is Normal with precision 1/ω² + n/σ² — the reference.
"""

import dataclasses
import warnings

import jax
import numpy as np
import pandas as pd
import pytest

import pbpk
from pbpk.inference import PosteriorWarning
from pbpk.twin import merge_subject

DOSE, V0, CL0, OMEGA, SIGMA, N_OBS = 100.0, 20.0, 2.0, 0.5, 0.3, 5


def conjugate_model():
    m = pbpk.Model("conjugate", time="h", amount="mg", volume="L")
    cl = m.parameter("CL", CL0, "L/h")
    v = m.parameter("V", V0, "L", iiv=OMEGA)
    central = m.compartment("central", volume=v)
    m.flow(central, None, cl * central.conc)
    m.observe("Cp", central.conc, "mg/L", error=pbpk.LogNormal(SIGMA))
    return m.compile()


def records(dv, times=None):
    times = np.zeros(len(dv)) if times is None else times
    rows = [dict(ID=7, TIME=0.0, AMT=DOSE, DV=np.nan, EVID=1, CMT="central")]
    rows += [dict(ID=7, TIME=t, AMT=0.0, DV=y, EVID=0, CMT="Cp") for t, y in zip(times, dv)]
    return pd.DataFrame(rows)


def exact_posterior(dv):
    r = np.log(DOSE / V0) - np.log(dv)
    precision = 1 / OMEGA**2 + len(dv) / SIGMA**2
    return (r.sum() / SIGMA**2) / precision, precision**-0.5       # mean and sd of η


@pytest.fixture(scope="module")
def case():
    model = conjugate_model()
    rng = np.random.default_rng(3)
    dv = DOSE / (V0 * np.exp(0.4)) * np.exp(SIGMA * rng.standard_normal(N_OBS))
    data = pbpk.read_nonmem(records(dv), model)
    post = pbpk.fit(model, data, key=jax.random.key(11), chains=4, warmup=400, draws=1000, progress=False)
    return model, dv, data, post


def test_nuts_recovers_the_exact_posterior(case):
    import arviz as az

    model, dv, data, post = case
    mean, sd = exact_posterior(dv)
    eta = np.log(post["V"] / V0)
    ess = float(az.ess(eta))
    assert post.ok and post.diagnostics()["divergences"] == 0
    # Monte Carlo error of a mean: sd/sqrt(ESS); of an sd: about sd/sqrt(2 ESS).
    assert abs(eta.mean() - mean) < 4 * sd / np.sqrt(ess)
    assert abs(eta.std() - sd) < 4 * sd / np.sqrt(2 * ess)
    assert np.all(post["CL"] == CL0)                 # no IIV, not estimated: fixed


def test_map_and_laplace_are_exact_for_a_gaussian_posterior(case):
    model, dv, data, _ = case
    mean, sd = exact_posterior(dv)
    mode = pbpk.fit(model, data, method="map")
    assert np.log(float(mode["V"].reshape(-1)[0]) / V0) == pytest.approx(mean, abs=1e-7)
    lap = pbpk.fit(model, data, method="laplace", key=jax.random.key(0), draws=20000)
    assert np.sqrt(lap.mode["covariance"][0, 0]) == pytest.approx(sd, rel=1e-6)
    eta = np.log(lap["V"] / V0)
    assert abs(eta.mean() - mean) < 4 * sd / np.sqrt(eta.size)


def test_summary_and_arviz_groups(case):
    _, dv, _, post = case
    table = post.summary()
    assert list(table.index) == ["V"]
    for col in ("mean", "sd", "hdi_5%", "hdi_95%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"):
        assert col in table.columns
    idata = post.to_arviz()
    assert {"posterior", "sample_stats", "observed_data", "posterior_predictive"} <= set(idata.groups())
    assert idata.sample_stats["diverging"].dtype == bool
    np.testing.assert_allclose(idata.observed_data["DV"].values, dv)
    # Replicates scatter around DV like the data: log-normal with at least the residual sd.
    rep = np.log(idata.posterior_predictive["DV"].values.reshape(-1, N_OBS))
    assert rep.std(axis=0).min() > SIGMA * 0.9


def _rebuild(post, **changes):
    return dataclasses.replace(post, **changes)


def test_warnings_cannot_be_missed(case):
    _, _, _, post = case
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _rebuild(post)                                         # a healthy posterior is silent
    stats = dict(post.stats, diverging=post.stats["diverging"].copy())
    stats["diverging"][0, :3] = True
    with pytest.warns(PosteriorWarning, match="3 divergent"):
        _rebuild(post, stats=stats)
    shifted = {k: v.copy() for k, v in post.draws.items()}
    shifted["V"][0] *= 1.5                                       # one chain elsewhere
    with pytest.warns(PosteriorWarning) as caught:
        bad = _rebuild(post, draws=shifted)
    assert any("R-hat" in str(w.message) for w in caught)
    assert not bad.ok and any("R-hat" in p for p in bad.problems())
    short = {k: v[:, :40] for k, v in post.draws.items()}
    with pytest.warns(PosteriorWarning) as caught:
        _rebuild(post, draws=short, stats={k: v[:, :40] for k, v in post.stats.items()})
    assert any("effective sample size" in str(w.message) for w in caught)


def test_twin_forecast_and_exposure_are_the_draws_simulated(case):
    model, _, _, post = case
    twin = pbpk.Twin(model, post, max_draws=500)
    nxt = pbpk.Bolus(DOSE, "central", time=24.0)
    times = np.linspace(24.0, 48.0, 25)
    fc = twin.forecast(nxt, times)
    v = np.asarray(post["V"]).reshape(-1)[:: post["V"].size // 500]
    k = CL0 / v
    # Bateman-free analytic: two boluses, first-order elimination.
    ref = DOSE / v[:, None] * (np.exp(-k[:, None] * times) + np.exp(-k[:, None] * (times - 24.0)))
    np.testing.assert_allclose(fc["Cp"], ref, rtol=1e-9)
    band = fc.band("Cp")
    np.testing.assert_allclose(band["q0.5"], np.quantile(ref, 0.5, axis=0), rtol=1e-9)
    expo = twin.exposure(nxt, start=24.0, end=48.0, n_points=2001)
    auc = DOSE / CL0 * (np.exp(-k * 24) - np.exp(-k * 48) + 1 - np.exp(-k * 24))
    assert expo.loc["AUC", "median"] == pytest.approx(np.median(auc), rel=1e-4)
    assert expo.loc["AUC", "unit"] == "mg/L*h"


def test_counterfactual_effect_of_doubling_the_dose(case):
    model, _, _, post = case
    twin = pbpk.Twin(model, post, max_draws=400)
    one = pbpk.Regimen.of(pbpk.Bolus(DOSE, "central", time=24.0))
    cf = twin.counterfactual({"single": one, "double": one.scaled(2.0)}, start=24.0, end=72.0,
                             include_history=False)
    ratio = cf.effect("single", "double", "AUC", relative=True)
    assert ratio["lower"] == pytest.approx(2.0, rel=1e-9) and ratio["upper"] == pytest.approx(2.0, rel=1e-9)
    diff = cf.effect("single", "double", "Cmax")
    assert diff["lower"] > 0 and diff["p_greater"] == 1.0
    with pytest.raises(pbpk.ModelError, match="(?i)did you mean"):
        cf.effect("single", "duble")


def test_update_adds_observations_and_moves_the_posterior(case):
    model, dv, data, post = case
    twin = pbpk.Twin(model, post, max_draws=1000)
    high = DOSE / (V0 * np.exp(-0.5))         # a much larger concentration: smaller V
    new = twin.update(pd.DataFrame({"TIME": [0.0, 0.0], "DV": [high, high]}), key=jax.random.key(2))
    assert len(new.posterior.subject.obs) == N_OBS + 2
    mean, sd = exact_posterior(np.concatenate([dv, [high, high]]))
    eta = np.log(new.posterior["V"] / V0)
    import arviz as az

    assert abs(eta.mean() - mean) < 4 * sd / np.sqrt(float(az.ess(eta)))
    assert len(twin.posterior.subject.obs) == N_OBS                   # the old twin is unchanged


def test_merge_subject_orders_new_records(case):
    _, _, data, _ = case
    subj = data.subject(7)
    merged = merge_subject(subj, pd.DataFrame({"TIME": [5.0, 2.0], "DV": [1.0, 2.0]}),
                           doses=pbpk.Bolus(50.0, "central", time=3.0))
    assert list(merged.obs["TIME"]) == [0.0] * N_OBS + [2.0, 5.0]
    assert [float(d.time) for d in merged.regimen] == [0.0, 3.0]
    assert merged.obs["ROW"].is_unique
    with pytest.raises(pbpk.DataError, match="before the last observation"):
        merge_subject(merged, pd.DataFrame({"TIME": [1.0], "DV": [1.0]}))
    with pytest.raises(pbpk.DataError, match="TIME and DV"):
        merge_subject(subj, pd.DataFrame({"T": [1.0]}))


# ------------------------------------------------------------------ bad input
def test_fit_input_errors(case):
    model, dv, data, _ = case
    with pytest.raises(pbpk.ModelError, match="explicit key"):
        pbpk.fit(model, data)
    with pytest.raises(pbpk.ModelError, match="(?i)did you mean 'nuts'"):
        pbpk.fit(model, data, method="nut", key=jax.random.key(0))
    two = pd.concat([records(dv), records(dv).assign(ID=8)], ignore_index=True)
    with pytest.raises(pbpk.DataError, match="2 subjects"):
        pbpk.fit(model, pbpk.read_nonmem(two, model), method="map")
    with pytest.raises(pbpk.ModelError, match="(?i)no parameter .VV..*did you mean 'V'"):
        pbpk.fit(model, data, method="map", priors={"VV": (20.0, 0.5)})


def test_data_that_does_not_match_the_model():
    m = pbpk.Model("wt_model", time="h", amount="mg", volume="L")
    wt = m.covariate("WT", unit="kg", reference=70.0)
    v = m.parameter("V", 20.0, "L", iiv=0.3)
    central = m.compartment("central", volume=v * wt / m.quantity(70.0, "kg"))
    m.flow(central, None, m.parameter("CL", 2.0, "L/h") * central.conc)
    m.observe("Cp", central.conc, "mg/L", error=pbpk.Proportional(0.1))
    model = m.compile()
    rows = records([4.0, 3.0], times=[1.0, 2.0])
    with pytest.raises(pbpk.DataError, match=r"covariate\(s\) \['WT'\].*not in the dataset"):
        pbpk.fit(model, pbpk.read_nonmem(rows), method="map")
    with pytest.raises(pbpk.DataError, match="WT"):
        pbpk.fit(model, pbpk.read_nonmem(rows.assign(WT=[np.nan, np.nan, np.nan])), method="map")
    with pytest.raises(pbpk.DataError, match="(?i)'CP' is not an observation.*did you mean .Cp."):
        pbpk.fit(model, pbpk.read_nonmem(rows.assign(CMT=["central", "CP", "CP"], WT=70.0)), method="map")
    with pytest.raises(pbpk.PbpkError, match="periph"):
        pbpk.fit(model, pbpk.read_nonmem(rows.assign(CMT=["periph", "Cp", "Cp"], WT=70.0), model), method="map")


def test_importance_update_matches_the_exact_posterior(case):
    import arviz as az

    model, dv, _, post = case
    twin = pbpk.Twin(model, post)
    y = float(dv.mean())                                  # an observation in line with the data so far
    new = twin.update(pd.DataFrame({"TIME": [0.0], "DV": [y]}), key=jax.random.key(4), method="importance")
    assert new.posterior.method == "importance" and new.posterior.importance.reliable
    mean, sd = exact_posterior(np.concatenate([dv, [y]]))
    eta = np.log(new.posterior["V"] / V0)
    ess = new.posterior.importance.ess
    assert abs(eta.mean() - mean) < 4 * sd / np.sqrt(min(ess, float(az.ess(np.log(post["V"] / V0)))))
    assert new.posterior.summary().index.tolist() == ["V"]
