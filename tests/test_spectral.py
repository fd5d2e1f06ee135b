"""Closed-form (spectral) propagation of small linear models, against SciPy's expm and the Bateman limit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import pbpk
from pbpk._spectral import spectral_flow
from pbpk.residual import Proportional

TIMES = jnp.asarray([0.25, 0.5, 1.0, 2.0, 3.0, 6.0, 12.0, 24.0, 36.0, 48.0, 96.0])


def three_compartment_oral(ka=1.2, cl=4.0, v1=12.0, q2=9.0, v2=30.0, q3=0.8, v3=80.0, fe=0.3, depot_initial=0.0):
    """Depot -> central <-> two peripherals; renal fraction to a urine accumulator, the rest eliminated."""
    m = pbpk.Model("three_cmt_oral_urine", description="test model")
    p = {name: m.parameter(name, value, unit, iiv=0.3) for name, value, unit in [
        ("KA", ka, "1/h"), ("CL", cl, "L/h"), ("V1", v1, "L"), ("Q2", q2, "L/h"), ("V2", v2, "L"),
        ("Q3", q3, "L/h"), ("V3", v3, "L")]}
    fe = m.parameter("FE", fe, "", bounds=(0.0, 1.0))
    depot = m.compartment("depot", volume=1.0, initial=depot_initial)
    central = m.compartment("central", volume=p["V1"])
    per2 = m.compartment("per2", volume=p["V2"])
    per3 = m.compartment("per3", volume=p["V3"])
    urine = m.compartment("urine", volume=1.0)
    m.flow(depot, central, p["KA"] * depot.amount)
    m.flow(central, per2, p["Q2"] * central.conc)
    m.flow(per2, central, p["Q2"] * per2.conc)
    m.flow(central, per3, p["Q3"] * central.conc)
    m.flow(per3, central, p["Q3"] * per3.conc)
    m.flow(central, urine, fe * p["CL"] * central.conc)
    m.flow(central, None, (1 - fe) * p["CL"] * central.conc)
    m.observe("Cp", central.conc, "mg/L", error=Proportional(0.1))
    return m


@pytest.fixture(scope="module")
def model3():
    return three_compartment_oral().compile()


def test_plans_of_library_models(lib, model3):
    plan = lib("docetaxel_bruno1996").spectral
    assert plan is not None and sorted(len(b) for b in plan.blocks) == [3]
    assert sorted(len(b) for b in lib("theophylline_1cmt_oral").spectral.blocks) == [1, 1]
    assert sorted(len(b) for b in model3.spectral.blocks) == [1, 3]
    assert [model3.state_names[i] for i in model3.spectral.accumulators] == ["urine", "eliminated"]
    # One transit rate shared by a chain (a Jordan block), a 17-state PBPK, a nonlinear model: expm / ODE.
    for name in ("transit_absorption", "docetaxel_pbpk", "michaelis_menten_1cmt"):
        assert lib(name).spectral is None


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_flow_matches_scipy_expm(model3, seed):
    """Φ(τ) and Ψ(τ)·w against expm of the augmented matrix, over 3 decades of rate constants."""
    rng = np.random.default_rng(seed)
    theta = model3.theta * np.exp(rng.uniform(-1.5, 1.5, model3.theta.shape))
    theta = theta.at[model3.parameter_index("FE")].set(rng.uniform(0.05, 0.95))
    a, b = model3.linear_system(theta, jnp.zeros(0))
    w = jnp.stack([b + jnp.asarray(rng.uniform(0, 5, b.shape)), jnp.asarray(rng.normal(size=b.shape))], axis=1)
    taus = jnp.asarray([0.0, 1e-6, 0.3, 2.0, 17.0, 200.0])
    phi, psi_w = spectral_flow(model3.spectral, a)(w, taus)
    n = a.shape[0]
    for k, tau in enumerate(np.asarray(taus)):
        aug = np.zeros((n + 2, n + 2))
        aug[:n, :n], aug[:n, n:] = np.asarray(a), np.asarray(w)
        ref = scipy.linalg.expm(aug * tau)
        scale = max(1.0, np.abs(ref).max())
        np.testing.assert_allclose(phi[k], ref[:n, :n], rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(psi_w[k], ref[:n, n:], rtol=0, atol=1e-12 * max(1.0, np.abs(ref[:n, n:]).max()))


@pytest.mark.parametrize("rel", [0.0, 1e-14, 1e-10, 1e-6, 1e-3])
def test_equal_absorption_and_elimination_rates(lib, rel):
    """ka = k (the Bateman function's 0/0): C = D·k·t·e^(-kt)/V in the limit.  Rates closer than
    δ = 7.6e-6 relative are spread apart, so the error is of order δ there (and round-off beyond)."""
    model = lib("one_compartment_oral")
    cl, v, dose = 5.0, 50.0, 100.0
    k = cl / v
    ka = k * (1.0 + rel)
    cp = model.simulate(pbpk.Bolus(dose, "depot"), TIMES, params=dict(KA=ka, CL=cl, V=v, F=1.0))["Cp"]
    t = np.asarray(TIMES)
    if rel < 1e-8:                     # the Bateman form itself cancels: its limit (error O(rel))
        ref = dose * k * t * np.exp(-k * t) / v
    else:
        ref = dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))
    np.testing.assert_allclose(cp, ref, rtol=0, atol=(2e-5 if rel < 1e-4 else 1e-9) * ref.max())

    def total(theta):
        return jnp.sum(model.simulate(pbpk.Bolus(dose, "depot"), TIMES, params=theta)["Cp"])

    theta = jnp.asarray([ka, cl, v, 1.0])
    grad = jax.grad(total)(theta)
    assert np.all(np.isfinite(grad))
    if rel >= 1e-4:                    # outside the spreading window: the exact gradient
        fd = [(total(theta.at[i].mul(1 + 1e-6)) - total(theta.at[i].mul(1 - 1e-6))) / (2e-6 * theta[i])
              for i in range(3)]
        np.testing.assert_allclose(grad[:3], fd, rtol=1e-5)


def _regimens():
    return [
        pbpk.Regimen.repeat(pbpk.Bolus(100.0, "depot"), every=12.0, count=4),
        pbpk.Regimen((pbpk.Infusion(80.0, "central", duration=2.0), pbpk.Bolus(50.0, "depot", time=5.0),
                      pbpk.Reset(30.0), pbpk.Infusion(40.0, "central", time=31.0, duration=0.5))),
        pbpk.Regimen((pbpk.Bolus(100.0, "depot", ss=True, ii=12.0), pbpk.Bolus(100.0, "depot", time=12.0))),
        pbpk.Regimen((pbpk.Infusion(100.0, "central", duration=1.0, ss=True, ii=8.0),)),
    ]


def test_simulate_matches_matrix_exponential(model3):
    """Every event kind (bolus, infusion, reset, SS bolus and infusion): closed form == expm."""
    pop = model3.population(4, jax.random.key(5))
    spectral = model3.simulate(_regimens(), TIMES, params=pop, solver="exact")
    expm = model3.simulate(_regimens(), TIMES, params=pop, solver="expm")
    assert np.all(np.asarray(spectral.status) == 0) and np.all(np.asarray(expm.status) == 0)
    scale = np.abs(np.asarray(expm.states)).max(axis=1, keepdims=True) + 1e-300
    np.testing.assert_array_less(np.abs(np.asarray(spectral.states) - np.asarray(expm.states)) / scale, 1e-10)


def test_gradients_match_matrix_exponential(model3):
    regimen = _regimens()[1]

    def total(theta, solver):
        return jnp.sum(jnp.log(model3.simulate(regimen, TIMES, params=theta, solver=solver)["Cp"]))

    g_spectral = jax.grad(total)(model3.theta, "exact")
    g_expm = jax.grad(total)(model3.theta, "expm")
    np.testing.assert_allclose(g_spectral, g_expm, rtol=1e-8, atol=1e-10)


def test_mass_balance(model3):
    """Amounts in every state (urine and eliminated included) add up to the dose given so far."""
    sol = model3.simulate(_regimens()[0], TIMES)
    given = 100.0 * np.minimum(np.floor(np.asarray(TIMES) / 12.0) + 1, 4)
    np.testing.assert_allclose(np.asarray(sol.states).sum(axis=1), given, rtol=1e-12)


@pytest.mark.parametrize("observe_urine", [False, True])
def test_fitting_predictions_skip_unobserved_accumulators(observe_urine):
    """Fits propagate only what the observations read; the predictions equal full simulation."""
    from pbpk.inference._data import encode_subject, fit_options, predict

    spec = three_compartment_oral()
    if observe_urine:
        spec.observe("Ae", spec.symbol("urine"), "mg", error=Proportional(0.1))
    model = spec.compile()
    assert model.observed_states[model.state_index("urine")] == observe_urine
    times = np.asarray(TIMES)
    rows = [dict(ID=1, TIME=0.0, AMT=100.0, DV=np.nan, EVID=1, CMT="depot"),
            dict(ID=1, TIME=30.0, AMT=60.0, RATE=30.0, DV=np.nan, EVID=1, CMT="central")]
    names = ["Cp", "Ae"] if observe_urine else ["Cp"]
    rows += [dict(ID=1, TIME=t, AMT=0.0, DV=1.0, EVID=0, CMT=names[i % len(names)]) for i, t in enumerate(times)]
    import pandas as pd

    frame = pd.DataFrame(rows).fillna({"RATE": 0.0}).sort_values("TIME", kind="stable")
    data = pbpk.read_nonmem(frame, model)
    subj = encode_subject(model, data.subject(1))
    theta = model.theta * 1.1
    pred, ok = predict(model, fit_options(model, subj), theta, subj)
    full = model.simulate(data.subject(1), None, params=theta)
    ref = np.asarray([full[names[i % len(names)]][i] for i in range(times.size)])   # the obs rows, in order
    assert bool(ok)
    np.testing.assert_allclose(np.asarray(pred)[:times.size], ref, rtol=1e-12)


def test_phi1_from_its_exponential_matches_high_precision():
    """φ₁ built from the exponential Φ already has (no second transcendental) keeps the accuracy
    of expm1: value and derivative against 50-digit mpmath across the range NUTS visits."""
    import mpmath

    from pbpk._spectral import phi1

    z = np.concatenate([-np.logspace(-12, 2.5, 400), np.logspace(-12, 1.5, 400), [0.0, -0.1, 0.1, -1e-3]])
    with mpmath.workdps(50):
        f = lambda x: mpmath.expm1(x) / x if x != 0 else mpmath.mpf(1)
        value = np.array([float(f(mpmath.mpf(x))) for x in z])
        slope = np.array([float(mpmath.diff(f, mpmath.mpf(x))) if x != 0 else 0.5 for x in z])
    ours = lambda x: phi1(x, jnp.exp(x))
    np.testing.assert_allclose(np.asarray(jax.vmap(ours)(jnp.asarray(z))), value, rtol=2e-15)
    np.testing.assert_allclose(np.asarray(jax.vmap(jax.grad(ours))(jnp.asarray(z))), slope, rtol=1e-13)


def test_a_body_at_rest_skips_the_start_term_exactly(model3):
    """A linear model starting empty with no constant input is 'at rest': its closed form drops
    the Φ(t)·y0 + Ψ(t)·b term.  Forcing the general path gives the same states; a drug already on
    board or a constant input makes a model not at rest, and its closed form still equals expm."""
    import copy

    assert model3.at_rest
    general = copy.copy(model3)
    object.__setattr__(general, "at_rest", False)          # a static field: not reachable by tree_at
    pop = model3.population(4, jax.random.key(7))
    for regimen in _regimens():
        fast = model3.simulate(regimen, TIMES, params=pop, solver="exact").states
        full = general.simulate(regimen, TIMES, params=pop, solver="exact").states
        np.testing.assert_allclose(np.asarray(fast), np.asarray(full), rtol=1e-13, atol=1e-13)

    loaded = three_compartment_oral(depot_initial=50.0).compile()
    infused = three_compartment_oral()
    infused.flow(None, infused.compartments["central"], infused.quantity(2.0, "mg/h"))
    assert not loaded.at_rest and not infused.compile().at_rest
    regimen = _regimens()[1]
    exact = loaded.simulate(regimen, TIMES, solver="exact").states
    expm = loaded.simulate(regimen, TIMES, solver="expm").states
    assert float(exact[0, loaded.state_index("depot")]) < 50.0 and float(exact[0].sum()) > 50.0
    scale = np.abs(np.asarray(expm)).max(axis=1, keepdims=True)
    np.testing.assert_array_less(np.abs(np.asarray(exact) - np.asarray(expm)) / scale, 1e-10)


@pytest.mark.parametrize("m", [1, 2, 3, 6])
def test_eigenvalue_sorting_network_matches_numpy(m):
    """The compare-exchange network that replaced XLA's sort: same order (ties included) and
    the gradient of a weighted sum routes each weight to the entry placed there."""
    from pbpk._spectral import _sorted

    rng = np.random.default_rng(m)
    x = rng.normal(size=(50, m))
    x[:10, -1] = x[:10, 0]                                     # ties
    np.testing.assert_array_equal(np.asarray(jax.vmap(_sorted)(jnp.asarray(x))), np.sort(x, axis=1))
    w = jnp.arange(1.0, m + 1)
    g = np.asarray(jax.vmap(jax.grad(lambda v: jnp.sum(w * _sorted(v))))(jnp.asarray(x[10:])))
    expected = np.zeros_like(x[10:])
    np.put_along_axis(expected, np.argsort(x[10:], axis=1), np.broadcast_to(np.asarray(w), expected.shape), axis=1)
    np.testing.assert_array_equal(g, expected)
