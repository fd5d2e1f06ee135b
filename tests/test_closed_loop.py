"""The closed-loop runner: a perfectly specified twin fed noise-free samples converges to the true
patient's parameters; a decision never depends on what happens after it; the drift multiplies
the truth's parameters exactly as declared."""

import jax
import numpy as np
import pytest

from models.compartmental import one_compartment_iv
from pbpk.control import Drift, DosingEnv, FixedSchedule, Limit, Patients, PrecisionDosing, Reward, Sample
from pbpk.control import ShieldedPolicy, run_closed_loop
from pbpk.errors import ModelError


def daily_bolus_env(horizon: int) -> DosingEnv:
    """One compartment (CL ω 0.3, V ω 0.2, proportional error 10 %), a daily bolus of 0–150 mg,
    Cp sampled at 6 h and 18 h (both CL and V are identifiable from one cycle)."""
    model = one_compartment_iv(iiv=True).compile()
    return DosingEnv(model, doses=(0.0, 50.0, 100.0, 150.0), dose_unit="mg", into="central", interval_days=1.0,
                     horizon=horizon, samples=(Sample("Cp", days=(0.25, 0.75)),), reward=Reward("Cp", "auc"),
                     limits=(Limit("Cp", 2.5, "above"),), grid_hours=1.0)


def test_perfect_twin_without_noise_converges_to_the_truth():
    """Structure and prior right, samples noise-free: the twin's posterior geometric mean of CL
    and V, which starts at the prior's (|log error| ≈ ω), ends within 3 % (median over 6
    patients) after 10 cycles, the remaining spread being the rejuvenation kernel's (5 %)."""
    env = daily_bolus_env(horizon=10).without_noise()
    prior = Patients.from_population(env.model.population(256, jax.random.key(3)))
    truth = Patients.from_population(env.model.population(6, jax.random.key(4)))
    always_100 = ShieldedPolicy(env, FixedSchedule(env, [2]), prior, delta=1.0)
    result = run_closed_loop(env, always_100, truth, jax.random.key(5))
    err = result.estimation_error()
    assert list(err.columns) == ["CL", "V"] and len(err) == 10
    np.testing.assert_array_equal(result.truth[:, 0], np.asarray(truth.theta))
    assert (err.iloc[0] > 0.05).all() and (err.iloc[0] > 3 * err.iloc[-1]).all()      # the prior's guess
    assert (err.iloc[-1] < 0.03).all()
    worst = np.abs(np.log(result.estimate[:, -1] / result.truth[:, -1])).max()
    assert worst < 0.1


def test_a_decision_never_uses_data_from_after_it():
    """Two truths identical until cycle 3, after which one's clearance halves: with the same keys
    the adaptive policy takes the same decisions 0–3 (it cannot know the future) and reacts
    afterwards for some patients (so the comparison can fail)."""
    env = daily_bolus_env(horizon=7)
    prior = Patients.from_population(env.model.population(128, jax.random.key(3)))
    truth = Patients.from_population(env.model.population(12, jax.random.key(6)))
    mipd = PrecisionDosing(env, prior, observation="Cp", statistic="max", target=1.8, max_risk=1.0)
    steady, changed = (run_closed_loop(env, mipd, truth, jax.random.key(7), drift=Drift(env.model, {"CL": f}, start_cycle=3))
                       for f in (1.0, 0.5))      # a factor of 1 leaves the truth unchanged (and compiles once)
    a, b = np.asarray(steady.outcome.actions), np.asarray(changed.outcome.actions)
    np.testing.assert_array_equal(a[:, :4], b[:, :4])
    np.testing.assert_array_equal(steady.estimate[:, :4], changed.estimate[:, :4])
    assert (a[:, 4:] != b[:, 4:]).any()
    assert not np.array_equal(steady.truth[:, 3], changed.truth[:, 3])


def test_drift_multiplies_the_named_parameter_once_per_cycle_from_its_start():
    env = daily_bolus_env(horizon=5)
    truth = Patients.from_population(env.model.population(3, jax.random.key(1)))
    result = run_closed_loop(env, FixedSchedule(env, [1]), truth, jax.random.key(2),
                             drift=Drift(env.model, {"CL": 0.9}, start_cycle=2))
    cl = result.truth[:, :, env.model.parameter_index("CL")] / np.asarray(truth.theta[:, 0])[:, None]
    np.testing.assert_allclose(cl, np.broadcast_to([1, 1, 0.9, 0.81, 0.729], cl.shape), rtol=1e-12)
    np.testing.assert_array_equal(result.truth[:, :, 1], np.broadcast_to(np.asarray(truth.theta[:, 1:2]), (3, 5)))
    assert result.estimate is None
    with pytest.raises(ModelError, match="Did you mean 'CL'"):
        Drift(env.model, {"Cl": 0.9})
    with pytest.raises(ModelError, match="positive"):
        Drift(env.model, {"CL": -1.0})
