"""Simulation against closed-form pharmacokinetics (Gibaldi & Perrier), relative error ≤ 1e-6."""

import numpy as np
import pandas as pd
import pytest

import pbpk

RTOL = 1e-6
T = np.linspace(0.0, 48.0, 97)


def rel_err(got, want):
    got, want = np.asarray(got), np.asarray(want)
    scale = np.maximum(np.abs(want), 1e-12 * np.max(np.abs(want)))
    return float(np.max(np.abs(got - want) / scale))


@pytest.fixture(scope="module")
def one_iv(lib):
    return lib("one_compartment_iv")


@pytest.fixture(scope="module")
def oral(lib):
    return lib("one_compartment_oral")


def test_one_compartment_bolus(one_iv):
    cl, v, dose = 5.0, 50.0, 100.0
    sol = one_iv.simulate(pbpk.Bolus(dose, "central"), T)
    assert rel_err(sol["Cp"], dose / v * np.exp(-cl / v * T)) < RTOL
    assert int(sol.status) == 0


def test_one_compartment_infusion(one_iv):
    cl, v, dose, dur = 5.0, 50.0, 100.0, 2.5
    k, rate = cl / v, dose / dur
    sol = one_iv.simulate(pbpk.Infusion(dose, "central", duration=dur), T)
    during = rate / cl * (1 - np.exp(-k * np.minimum(T, dur)))
    want = np.where(T <= dur, during, rate / cl * (1 - np.exp(-k * dur)) * np.exp(-k * (T - dur)))
    assert rel_err(sol["Cp"], want) < RTOL


def test_infusion_given_by_rate_equals_by_duration(one_iv):
    a = one_iv.simulate(pbpk.Infusion(100.0, "central", rate=40.0), T)
    b = one_iv.simulate(pbpk.Infusion(100.0, "central", duration=2.5), T)
    assert rel_err(a["Cp"], b["Cp"]) < 1e-12


def test_oral_bateman_with_bioavailability_and_lag(lib):
    model = lib("one_compartment_oral", TLAG=0.75)
    ka, cl, v, f, lag, dose = 1.0, 5.0, 50.0, 0.6, 0.75, 100.0
    k = cl / v
    sol = model.simulate(pbpk.Bolus(dose, "depot"), T, params={"F": f})
    tt = np.maximum(T - lag, 0.0)
    want = f * dose * ka / (v * (ka - k)) * (np.exp(-k * tt) - np.exp(-ka * tt))
    assert rel_err(sol["Cp"], want) < RTOL


def test_two_compartment_biexponential(lib):
    model = lib("two_compartment_iv")
    cl, v1, q, v2, dose = 5.0, 10.0, 8.0, 40.0, 100.0
    k10, k12, k21 = cl / v1, q / v1, q / v2
    s = k10 + k12 + k21
    alpha = (s + np.sqrt(s**2 - 4 * k10 * k21)) / 2
    beta = (s - np.sqrt(s**2 - 4 * k10 * k21)) / 2
    a = dose / v1 * (alpha - k21) / (alpha - beta)
    b = dose / v1 * (k21 - beta) / (alpha - beta)
    sol = model.simulate(pbpk.Bolus(dose, "central"), T)
    assert rel_err(sol["Cp"], a * np.exp(-alpha * T) + b * np.exp(-beta * T)) < RTOL


def test_multiple_dosing_addl_ii_by_superposition(one_iv):
    cl, v, dose, tau, n = 5.0, 50.0, 100.0, 8.0, 5
    k = cl / v
    want = sum(np.where(T >= i * tau, dose / v * np.exp(-k * (T - i * tau)), 0.0) for i in range(n))
    sol = one_iv.simulate(pbpk.Regimen.repeat(pbpk.Bolus(dose, "central"), every=tau, count=n), T)
    assert rel_err(sol["Cp"], want) < RTOL
    # The same regimen from a NONMEM dataset with ADDL/II, observations at the grid.
    rows = [dict(ID=1, TIME=0.0, AMT=dose, DV=np.nan, EVID=1, CMT=1, ADDL=n - 1, II=tau)]
    rows += [dict(ID=1, TIME=t, AMT=0.0, DV=1.0, EVID=0, CMT=1, ADDL=0, II=0.0) for t in T[1:]]
    data = pbpk.read_nonmem(pd.DataFrame(rows), one_iv)
    sol_ds = one_iv.simulate(data.subject(1), None)
    # NONMEM gives an ADDL-implied dose after every record at its time: samples at 8, 16, ... h
    # are troughs (pre-dose).
    pre = sum(np.where(T > i * tau if i else T >= 0, dose / v * np.exp(-k * (T - i * tau)), 0.0) for i in range(n))
    assert rel_err(sol_ds["Cp"], pre[1:]) < RTOL


def test_bolus_steady_state(one_iv):
    cl, v, dose, tau = 5.0, 50.0, 100.0, 12.0
    k = cl / v
    t = np.linspace(0.0, tau, 25)
    sol = one_iv.simulate(pbpk.Bolus(dose, "central", ss=True, ii=tau), t)
    assert rel_err(sol["Cp"], dose / v * np.exp(-k * t) / (1 - np.exp(-k * tau))) < RTOL


def test_infusion_steady_state(one_iv):
    cl, v, dose, dur, tau = 5.0, 50.0, 100.0, 2.0, 12.0
    k, rate = cl / v, dose / dur
    t = np.linspace(0.0, tau, 49)
    acc = 1 / (1 - np.exp(-k * tau))
    c_end = rate / cl * (1 - np.exp(-k * dur)) * acc                       # peak at end of infusion
    c_trough = c_end * np.exp(-k * (tau - dur))
    during = rate / cl * (1 - np.exp(-k * t)) + c_trough * np.exp(-k * t)
    want = np.where(t <= dur, during, c_end * np.exp(-k * (t - dur)))
    sol = one_iv.simulate(pbpk.Infusion(dose, "central", duration=dur, ss=True, ii=tau), t)
    assert rel_err(sol["Cp"], want) < RTOL


def test_continuous_infusion_steady_state(one_iv):
    sol = one_iv.simulate(pbpk.Infusion(None, "central", rate=10.0, ss=True), np.array([0.0, 5.0, 50.0]))
    np.testing.assert_allclose(sol["Cp"], 10.0 / 5.0, rtol=RTOL)


def test_reset_restores_initial_state(one_iv):
    reg = pbpk.Regimen.of(pbpk.Bolus(100.0, "central"), pbpk.Reset(10.0), pbpk.Bolus(50.0, "central", time=10.0))
    sol = one_iv.simulate(reg, T)
    k = 0.1
    want = np.where(T < 10.0, 2.0 * np.exp(-k * T), 1.0 * np.exp(-k * (T - 10.0)))
    assert rel_err(sol["Cp"], want) < RTOL


def test_reset_stops_running_infusion(one_iv):
    reg = pbpk.Regimen.of(pbpk.Infusion(100.0, "central", duration=20.0), pbpk.Reset(5.0))
    sol = one_iv.simulate(reg, T)
    assert np.all(np.asarray(sol["Cp"])[T >= 5.0] == 0.0)
    assert np.all(np.asarray(sol.states) >= 0.0)


def test_dose_unit_conversion(one_iv):
    a = one_iv.simulate(pbpk.Bolus(100.0, "central"), T)
    b = one_iv.simulate(pbpk.Bolus(100_000.0, "central", unit="µg"), T)
    assert rel_err(b["Cp"], a["Cp"]) < 1e-12


def test_modelled_infusion_duration():
    m = pbpk.Model("m", time="h")
    cl = m.parameter("CL", 5.0, "L/h")
    v = m.parameter("V", 50.0, "L")
    d = m.parameter("D1", 2.5, "h")
    c = m.compartment("central", volume=v, infusion_duration=d)
    m.flow(c, None, cl * c.conc)
    m.observe("Cp", c.conc, "mg/L")
    model = m.compile()
    a = model.simulate(pbpk.Infusion(100.0, "central", duration="model"), T)
    b = model.simulate(pbpk.Infusion(100.0, "central", duration=2.5), T)
    assert rel_err(a["Cp"], b["Cp"]) < 1e-12


def test_observation_before_dose_at_equal_time_follows_record_order(one_iv):
    rows = [dict(ID=1, TIME=0.0, AMT=100.0, DV=np.nan, EVID=1, CMT=1),
            dict(ID=1, TIME=4.0, AMT=0.0, DV=1.0, EVID=0, CMT=1),       # pre-dose sample
            dict(ID=1, TIME=4.0, AMT=100.0, DV=np.nan, EVID=1, CMT=1),
            dict(ID=1, TIME=4.0, AMT=0.0, DV=1.0, EVID=0, CMT=1)]       # post-dose sample
    data = pbpk.read_nonmem(pd.DataFrame(rows), one_iv)
    cp = np.asarray(one_iv.simulate(data.subject(1), None)["Cp"])
    pre = 2.0 * np.exp(-0.4)
    np.testing.assert_allclose(cp, [pre, pre + 2.0], rtol=RTOL)


def test_adaptive_solver_matches_exact_on_linear_model(one_iv):
    reg = pbpk.Regimen.repeat(pbpk.Infusion(100.0, "central", duration=1.0), every=12.0, count=3)
    exact = one_iv.simulate(reg, T)
    adaptive = one_iv.simulate(reg, T, solver="Kvaerno5", rtol=1e-10, atol=1e-12)
    assert rel_err(adaptive["Cp"], exact["Cp"]) < 1e-6
