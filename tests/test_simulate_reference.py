"""Nonlinear and whole-body references against SciPy Radau (rtol 1e-10, atol 1e-12), integrated
segment by segment across dose events: relative error ≤ 1e-5."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import pbpk

TOL = 1e-5


def radau_segments(rhs, y0, segments, times):
    """Integrate rhs(t, y, rate) over [(t0, t1, rate, jump)] segments; jump applied at t0."""
    out = np.full((len(times), len(y0)), np.nan)
    y = np.asarray(y0, float)
    for t0, t1, rate, jump in segments:
        y = y + jump
        mask = (times >= t0) & ((times < t1) | (t1 == segments[-1][1]))
        sol = solve_ivp(lambda t, x: rhs(t, x, rate), (t0, t1), y, method="Radau", rtol=1e-10, atol=1e-12,
                        t_eval=times[mask] if mask.any() else None, dense_output=False)
        assert sol.success
        if mask.any():
            out[mask] = sol.y.T
        y = solve_ivp(lambda t, x: rhs(t, x, rate), (t0, t1), y, method="Radau", rtol=1e-10, atol=1e-12).y[:, -1]
    return out


def rel_err(got, want):
    got, want = np.asarray(got), np.asarray(want)
    scale = np.maximum(np.abs(want), 1e-9 * np.max(np.abs(want)))
    return float(np.max(np.abs(got - want) / scale))


def test_michaelis_menten_against_radau(lib):
    model = lib("michaelis_menten_1cmt")
    vmax, km, v = 20.0, 2.0, 30.0
    times = np.linspace(0.0, 36.0, 73)
    reg = pbpk.Regimen.of(pbpk.Bolus(300.0, "central"), pbpk.Infusion(200.0, "central", time=12.0, duration=3.0))
    sol = model.simulate(reg, times, rtol=1e-10, atol=1e-12)

    def rhs(t, y, rate):
        c = y[0] / v
        return np.array([-vmax * c / (km + c) + rate, vmax * c / (km + c)])

    ref = radau_segments(rhs, [0.0, 0.0], [(0.0, 12.0, 0.0, [300.0, 0]), (12.0, 15.0, 200 / 3, [0, 0]),
                                           (15.0, 36.0, 0.0, [0, 0])], times)
    assert int(sol.status) == 0
    assert rel_err(sol.states, ref) < TOL


def test_transit_with_saturable_elimination_against_radau(lib):
    model = lib("transit_absorption", VMAX=15.0)
    assert not model.linear
    n, mtt, ka, cl, v, vmax, km = 3, 2.0, 1.5, 5.0, 50.0, 15.0, 1.0
    ktr = (n + 1) / mtt
    times = np.linspace(0.0, 48.0, 97)
    reg = pbpk.Regimen.repeat(pbpk.Bolus(400.0, "depot"), every=24.0, count=2)
    sol = model.simulate(reg, times, rtol=1e-10, atol=1e-12)

    def rhs(t, y, rate):
        depot, t1, t2, t3, gut, cen, elim = y
        c = cen / v
        out = cl * c + vmax * c / (km + c)
        return np.array([-ktr * depot, ktr * (depot - t1), ktr * (t1 - t2), ktr * (t2 - t3),
                         ktr * t3 - ka * gut, ka * gut - out, out])

    dose = np.eye(7)[0] * 400.0
    ref = radau_segments(rhs, np.zeros(7), [(0.0, 24.0, 0.0, dose), (24.0, 48.0, 0.0, dose)], times)
    assert rel_err(sol.states, ref) < TOL


def test_whole_body_pbpk_exact_against_radau(lib):
    model = lib("docetaxel_pbpk")
    a, b = (np.asarray(x) for x in model.linear_system(model.theta, model.covariate_reference))
    iv = model.state_index("venous")
    times = np.linspace(0.0, 504.0, 200)
    sol = model.simulate(pbpk.Regimen.of(pbpk.Infusion(135.0, "venous", duration=1.0)), times)

    def rhs(t, y, rate):
        dy = a @ y + b
        dy[iv] += rate
        return dy

    ref = radau_segments(rhs, np.zeros(len(b)), [(0.0, 1.0, 135.0, 0.0), (1.0, 504.0, 0.0, 0.0)], times)
    # Relative to each state's peak: the late tail decays below the reference's atol.
    peak = np.max(np.abs(ref), axis=0)
    assert np.max(np.abs(np.asarray(sol.states) - ref) / peak) < TOL
    cp, cp_ref = np.asarray(sol["Cp"]), ref[:, iv] / np.asarray(model.theta)[model.parameter_index("V_venous")]
    big = cp_ref > 1e-3 * cp_ref.max()
    assert rel_err(cp[big], cp_ref[big]) < TOL


def test_nonlinear_batch_with_failing_patient_reports_status(lib):
    model = lib("michaelis_menten_1cmt")
    times = jnp.linspace(0.0, 24.0, 5)
    params = {"VMAX": jnp.array([20.0, 20.0]), "V": jnp.array([30.0, 30.0])}
    sol = model.simulate(pbpk.Bolus(300.0, "central"), times, params=params, max_steps=3)
    assert sol.status.shape == (2,)
    assert np.all(np.asarray(sol.status) == 1)   # step limit hit: flagged, not raised
    ok = model.simulate(pbpk.Bolus(300.0, "central"), times, params=params)
    assert np.all(np.asarray(ok.status) == 0)


@pytest.mark.parametrize("kind", ["bolus", "infusion"])
def test_nonlinear_steady_state_equals_long_repeated_dosing(lib, kind):
    model = lib("michaelis_menten_1cmt")
    tau = 12.0
    t = np.linspace(0.0, tau, 13)
    dose = (pbpk.Bolus(150.0, "central", ss=True, ii=tau) if kind == "bolus"
            else pbpk.Infusion(150.0, "central", duration=2.0, ss=True, ii=tau))
    ss = model.simulate(dose, t, rtol=1e-10, atol=1e-12)
    # 60 doses: the approach to steady state is geometric; by then it is below 1e-10.
    repeated = model.simulate(pbpk.Regimen.repeat(dose._replace(ss=False, ii=None), every=tau, count=60),
                              t + 59 * tau, rtol=1e-10, atol=1e-12)
    assert int(ss.status) == 0
    assert rel_err(ss["Cp"], repeated["Cp"]) < TOL


def test_nonlinear_continuous_infusion_steady_state(lib):
    model = lib("michaelis_menten_1cmt")            # VMAX 20 mg/h, KM 2 mg/L
    sol = model.simulate(pbpk.Infusion(None, "central", rate=10.0, ss=True), np.array([0.0, 5.0]),
                         rtol=1e-10, atol=1e-12)
    # VMAX·C/(KM + C) = rate  =>  C = rate·KM/(VMAX - rate) = 2 mg/L
    np.testing.assert_allclose(sol["Cp"], 2.0, rtol=1e-8)
