"""Tabulated cycles: a replayed course against the closed form of a one-compartment model whose
eliminated amount is the cumulative quantity, the full environment within the carry-over the
tabulation neglects, and bad requests named."""

import jax
import numpy as np
import pytest

from pbpk import Model
from pbpk.control import DosingEnv, FixedSchedule, Limit, Patients, Reward, Sample, evaluate, tabulate
from pbpk.errors import ModelError
from pbpk.residual import Proportional

TAU_H = 72.0


def eliminating_model():
    """dA/dt = −CL/V·A into ``urine`` (CL 5 L/h, V 50 L with IIV: k ≈ 0.1/h, 3-day cycles
    leave e^(−7.2) ≈ 7e-4 of a dose)."""
    m = Model("one_compartment_tracked")
    cl = m.parameter("CL", 5.0, "L/h", iiv=0.3)
    v = m.parameter("V", 50.0, "L", iiv=0.2)
    central = m.compartment("central", volume=v)
    gone = m.compartment("urine")
    m.flow(central, gone, cl * central.conc)
    m.observe("Cp", central.conc, "mg/L", error=Proportional(0.1))
    return m.compile()


def make_env(model, **kw):
    options = dict(doses=(0.0, 50.0, 100.0), dose_unit="mg", into="central", interval_days=TAU_H / 24.0,
                   horizon=4, samples=(Sample("Cp", days=(1.0,)),), reward=Reward("urine", "increase"),
                   limits=(Limit("urine", 220.0, "above"),), grid_hours=24.0)
    return DosingEnv(model, **(options | kw)).without_noise()


@pytest.fixture(scope="module")
def setting():
    model = eliminating_model()
    env = make_env(model)
    patients = Patients.from_population(model.population(5, jax.random.key(3)))
    table_env, tables = tabulate(env, patients, cumulative=("urine",), batch=4, progress=False)
    return model, env, patients, table_env, tables


def test_replayed_course_equals_the_closed_form_without_carry_over(setting):
    model, env, patients, table_env, tables = setting
    plan = [2, 1, 0, 2]                                       # 100, 50, hold, 100 mg
    doses = np.asarray(env.doses)[plan]
    out = evaluate(table_env, FixedSchedule(table_env, plan), tables, jax.random.key(0))
    cl, v = (np.asarray(patients.theta[:, model.parameter_index(p)]) for p in ("CL", "V"))
    k = cl / v
    per_cycle = doses[None, :] * (1 - np.exp(-k[:, None] * TAU_H))
    np.testing.assert_allclose(np.asarray(out.rewards), per_cycle, rtol=1e-7, atol=1e-9)
    crossed = np.cumsum(per_cycle, axis=1) > 220.0                 # the last cycle crosses, for these patients
    assert crossed[:, :3].sum() == 0 and crossed[:, 3].all()
    np.testing.assert_array_equal(np.asarray(out.step_violations)[..., 0], crossed)
    assert np.isclose(np.asarray(out.cumulative_dose), doses.sum()).all()
    # the day-1 sample of a cycle is that cycle's dose alone
    _, state = table_env.reset(jax.random.key(1), Patients(tables.theta[:1], tables.covariates[:1], tables.bsa[:1]))
    obs, *_ = table_env.step_env(jax.random.key(2), state, 2)
    assert float(table_env.decode(obs, 0)) == pytest.approx(100.0 / v[0] * np.exp(-k[0] * 24.0), rel=1e-7)


def test_full_environment_differs_only_by_the_carried_over_amount(setting):
    model, env, patients, table_env, tables = setting
    plan = [2, 2, 1, 2]
    full = evaluate(env, FixedSchedule(env, plan), patients, jax.random.key(0))
    replay = evaluate(table_env, FixedSchedule(table_env, plan), tables, jax.random.key(0))
    cl, v = (np.asarray(patients.theta[:, model.parameter_index(p)]) for p in ("CL", "V"))
    k = cl / v
    doses = np.asarray(env.doses)[plan]
    # cycle i eliminates its own dose's share plus what the earlier doses left behind
    carried = np.stack([sum(doses[j] * np.exp(-k * TAU_H * (i - j)) * (1 - np.exp(-k * TAU_H))
                            for j in range(i)) if i else 0 * k for i in range(4)], axis=1)
    np.testing.assert_allclose(np.asarray(full.rewards) - np.asarray(replay.rewards), carried, rtol=1e-5, atol=1e-9)
    assert np.abs(np.asarray(full.efficacy) / np.asarray(replay.efficacy) - 1).max() < 2e-2


def test_table_entries_are_named_by_quantity_dose_and_day(setting):
    model, env, patients, table_env, tables = setting
    assert tables.theta.shape[1] == len(table_env.model.parameter_names) == 3 * 4 * 2   # levels × days 0–3 × (Cp, urine)
    k = np.asarray(patients.theta[:, model.parameter_index("CL")] / patients.theta[:, model.parameter_index("V")])
    v = np.asarray(patients.theta[:, model.parameter_index("V")])
    for day in (1, 3):
        urine = tables.theta[:, table_env.model.parameter_index(f"urine | 100 mg, day {day}")]
        cp = tables.theta[:, table_env.model.parameter_index(f"Cp | 50 mg, day {day}")]
        np.testing.assert_allclose(urine, 100.0 * (1 - np.exp(-k * 24.0 * day)), rtol=1e-9)
        np.testing.assert_allclose(cp, 50.0 / v * np.exp(-k * 24.0 * day), rtol=1e-9)
    with pytest.raises(ModelError, match="Did you mean"):
        table_env.model.parameter_index("urine | 100 mg, day 4")


def test_between_levels_a_cycle_is_interpolated_exactly_for_a_linear_response(setting):
    """Everything here is linear in the dose, so 75 mg between the 50 and 100 mg levels is exact
    (what lets ``optimise_schedule`` take gradients through a table)."""
    model, env, patients, table_env, tables = setting
    theta = tables.theta[0]
    y0 = table_env.sim.initial_state(theta, tables.covariates[0])
    y_end, grid_y, grid_obs, inside, ok = table_env.sim.run(0.0, y0, 75.0, TAU_H, theta, tables.covariates[0])
    cl, v = (float(patients.theta[0, model.parameter_index(p)]) for p in ("CL", "V"))
    t = np.asarray(table_env.sim.grid)
    np.testing.assert_allclose(np.asarray(grid_y)[:, 0], 75.0 * (1 - np.exp(-cl / v * t)), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(grid_obs)[:, 0], 75.0 / v * np.exp(-cl / v * t), rtol=1e-9)
    slope = jax.grad(lambda a: table_env.sim.run(0.0, y0, a, TAU_H, theta, tables.covariates[0])[0][0])(75.0)
    assert float(slope) == pytest.approx(1 - np.exp(-cl / v * TAU_H), rel=1e-9)


def test_bad_requests_name_the_problem(setting):
    model, env, patients, *_ = setting
    with pytest.raises(ModelError, match="urine"):
        tabulate(env, patients, cumulative=("urin",))
    with pytest.raises(ModelError, match="several intervals"):
        tabulate(make_env(model, interval_days=(3.0, 6.0)), patients, cumulative=("urine",))
    with pytest.raises(ModelError, match="BSA"):
        tabulate(make_env(model, dose_unit="mg/m^2"), patients, cumulative=("urine",))
    with pytest.raises(ModelError, match="relative reward"):
        tabulate(make_env(model, reward=Reward("urine", "increase", relative=True)), patients, cumulative=("urine",))
    with pytest.raises(ModelError, match="'decrease' of 'Cp'"):
        tabulate(make_env(model, reward=Reward("Cp", "decrease")), patients, cumulative=("urine",))
    with pytest.raises(ModelError, match="residual-error model"):
        tabulate(make_env(model, samples=(Sample("Cp", days=(1.0,)),)), patients, cumulative=("urine", "Cp"))
