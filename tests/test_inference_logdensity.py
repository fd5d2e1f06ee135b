"""Individual log-density against a hand-written one (analytic 1-compartment model, proportional
error, log-normal IIV prior, one BLQ sample by M3), and MAP/Laplace against SciPy's optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

import pbpk
from pbpk.inference import individual_logdensity, map_estimate

TIMES = np.array([1.0, 2.0, 4.0, 8.0, 12.0, 24.0])
DOSE, CL, V, OMEGA, CV, LLOQ = 100.0, 5.0, 50.0, np.array([0.3, 0.2]), 0.1, 0.5


def dataset(model, dv, name="Cp"):
    rows = [dict(ID=1, TIME=0.0, AMT=DOSE, DV=np.nan, EVID=1, CMT="central", CENS=0, LLOQ=np.nan)]
    rows += [dict(ID=1, TIME=t, AMT=0.0, DV=y, EVID=0, CMT=name, CENS=0, LLOQ=np.nan) for t, y in zip(TIMES, dv)]
    rows += [dict(ID=1, TIME=48.0, AMT=0.0, DV=LLOQ, EVID=0, CMT=name, CENS=1, LLOQ=LLOQ)]
    return pbpk.read_nonmem(pd.DataFrame(rows), model)


def observed():
    rng = np.random.default_rng(0)
    cl, v = CL * np.exp(0.2), V * np.exp(-0.1)
    pred = DOSE / v * np.exp(-cl / v * TIMES)
    return pred * (1 + CV * rng.normal(size=TIMES.size))


def hand_written(eta, dv):
    cl, v = CL * np.exp(eta[0]), V * np.exp(eta[1])
    pred = DOSE / v * np.exp(-cl / v * TIMES)
    pred_blq = DOSE / v * np.exp(-cl / v * 48.0)
    return (stats.norm.logpdf(eta, 0.0, OMEGA).sum() + stats.norm.logpdf(dv, pred, CV * pred).sum()
            + stats.norm.logcdf((LLOQ - pred_blq) / (CV * pred_blq)))


@pytest.fixture(scope="module")
def setup(lib):
    model = lib("one_compartment_iv")
    dv = observed()
    subject = dataset(model, dv).subject(1)
    return model, dv, individual_logdensity(model, subject)


def test_logdensity_matches_hand_written(setup):
    model, dv, ld = setup
    f = jax.jit(ld.logdensity_fn)
    for eta in ([0.0, 0.0], [0.3, -0.2], [-0.5, 0.4]):
        got = float(f({"eta": jnp.asarray(eta)}))
        assert got == pytest.approx(hand_written(np.asarray(eta), dv), rel=1e-10)
    assert ld.iiv_names == ("CL", "V")


@pytest.mark.parametrize("solver", ["exact", "Kvaerno5"])
def test_map_and_laplace_match_scipy(setup, solver):
    """Closed form, and the adaptive solver (forward-mode sensitivities, a Hessian from central
    differences of them) at tolerances far below the checks'."""
    model, dv, ld = setup
    if solver != "exact":
        ld = individual_logdensity(model, dataset(model, dv).subject(1),
                                   simulate_options=dict(solver=solver, rtol=1e-11, atol=1e-13))
    result = map_estimate(ld)
    ref = optimize.minimize(lambda e: -hand_written(e, dv), np.zeros(2), method="BFGS", options={"gtol": 1e-10})
    assert result.converged
    np.testing.assert_allclose(np.asarray(result.position["eta"]), ref.x, atol=1e-6)
    assert float(result.parameters["CL"]) == pytest.approx(CL * np.exp(ref.x[0]), rel=1e-6)
    # Laplace covariance vs the inverse of a central-difference Hessian of the hand-written density.
    h, e0 = 1e-4, ref.x
    hess = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            def g(di, dj):
                e = e0.copy()
                e[i] += di
                e[j] += dj
                return -hand_written(e, dv)
            hess[i, j] = (g(h, h) - g(h, -h) - g(-h, h) + g(-h, -h)) / (4 * h * h)
    np.testing.assert_allclose(np.asarray(result.covariance), np.linalg.inv(hess), rtol=1e-4)


def test_estimated_residual_error_adds_its_prior(setup, lib):
    model, dv, _ = setup
    ld = individual_logdensity(model, dataset(model, dv).subject(1), estimate_error=True)
    position = {"eta": jnp.asarray([0.1, 0.0]), "log_sigma": jnp.log(jnp.asarray([0.2]))}
    got = float(jax.jit(ld.logdensity_fn)(position))
    # Same density with CV = 0.2, plus the log-normal prior N(log 0.1, 1) on log CV.
    eta = np.array([0.1, 0.0])
    cl, v = CL * np.exp(eta[0]), V * np.exp(eta[1])
    pred = DOSE / v * np.exp(-cl / v * TIMES)
    pb = DOSE / v * np.exp(-cl / v * 48.0)
    want = (stats.norm.logpdf(eta, 0.0, OMEGA).sum() + stats.norm.logpdf(dv, pred, 0.2 * pred).sum()
            + stats.norm.logcdf((LLOQ - pb) / (0.2 * pb)) + stats.norm.logpdf(np.log(0.2), np.log(0.1), 1.0))
    assert got == pytest.approx(want, rel=1e-10)


def test_observation_not_in_model_is_a_clear_error(lib):
    model = lib("one_compartment_iv")
    with pytest.raises(pbpk.DataError, match=r"(?i)CMT.*row 2 \(ID 1, CMT='CP2'\).*did you mean 'Cp'"):
        dataset(model, observed(), name="CP2")               # read against the model: caught on reading
    rows = pbpk.read_nonmem(pd.DataFrame([dict(ID=1, TIME=0.0, AMT=DOSE, EVID=1, CMT="central", DV=np.nan),
                                          dict(ID=1, TIME=1.0, AMT=0.0, EVID=0, CMT="CP2", DV=1.0)]))
    with pytest.raises(pbpk.DataError, match=r"subject 1, row 2: observation 'CP2' is not an observation.*'Cp'"):
        individual_logdensity(model, rows.subject(1))        # read without the model: caught on fitting


def test_compartment_on_an_observation_record_means_the_single_observation(setup, lib):
    """NONMEM: an observation record's CMT names the compartment; with one DV in the model it is that DV."""
    model, dv, ld = setup
    by_cmt = individual_logdensity(model, dataset(model, dv, name="central").subject(1))
    eta = {"eta": jnp.asarray([0.1, -0.2])}
    assert float(by_cmt.logdensity_fn(eta)) == float(ld.logdensity_fn(eta))
