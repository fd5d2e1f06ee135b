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


def daily_bolus_env(horizon: int, rtol: float = 1e-6) -> DosingEnv:
    """One compartment (CL ω 0.3, V ω 0.2, proportional error 10 %), a daily bolus of 0–150 mg,
    Cp sampled at 6 h and 18 h (both CL and V are identifiable from one cycle)."""
    model = one_compartment_iv(iiv=True).compile()
    return DosingEnv(model, doses=(0.0, 50.0, 100.0, 150.0), dose_unit="mg", into="central", interval_days=1.0,
                     horizon=horizon, samples=(Sample("Cp", days=(0.25, 0.75)),), reward=Reward("Cp", "auc"),
                     limits=(Limit("Cp", 2.5, "above"),), grid_hours=1.0, rtol=rtol, atol=rtol * 1e-3)


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


def test_explained_recommendation_agrees_with_the_shield_and_with_finite_differences():
    """At the second decision of a shielded course: the alternatives' risks are the shield's own,
    the chosen action is the shield's, the binding limit is named when the next dose is masked,
    and both elasticity tables match central finite differences (step 1e-4 in log-space; the
    solver at rtol 1e-10 so that differentiating the discretised solution and differencing it
    agree)."""
    import equinox as eqx
    import jax.numpy as jnp

    from pbpk.control import ParticleTwin
    from pbpk.control.explain import _outcomes, explain

    env = daily_bolus_env(horizon=3, rtol=1e-10)
    prior = Patients.from_population(env.model.population(64, jax.random.key(3)))
    shield = ShieldedPolicy(env, FixedSchedule(env, [3]), prior, delta=0.1)
    pool = Patients.from_population(env.model.population(1, jax.random.key(8)))
    act = eqx.filter_jit(shield.act)
    obs, state = env.reset(jax.random.key(0), pool)
    action, carry = act(jax.random.key(1), shield.init(obs), obs)
    obs, state, *_ = eqx.filter_jit(env.step_env)(jax.random.key(2), state, action)
    rec = explain(env, shield, carry, obs, jax.random.key(3))

    expected_action, after = act(jax.random.key(3), carry, obs)
    assert rec.action == int(expected_action)
    risk = eqx.filter_jit(shield.risk)(after[0])
    np.testing.assert_allclose(rec.alternatives["P(any limit)"], np.asarray(risk), atol=1e-12)
    assert rec.action < 3 and "Binding limit: Cp > 2.5" in rec.binding and "Give" in rec.text()

    twin: ParticleTwin = after[0]
    h = 1e-4

    @jax.jit
    def mean_outcome(log_scale):
        states = eqx.tree_at(lambda s: s.theta, twin.states, twin.states.theta * jnp.exp(log_scale))
        reward, extreme, _ = jax.vmap(lambda s: _outcomes(env, s, rec.action))(states)
        return twin.weights @ jnp.concatenate([reward[:, None], extreme], 1)

    for j, name in enumerate(env.model.parameter_names):
        e = np.zeros(2)
        e[j] = h
        fd = np.asarray(mean_outcome(jnp.asarray(e)) - mean_outcome(jnp.asarray(-e))) / (2 * h)
        np.testing.assert_allclose(rec.parameters.loc[name].to_numpy(), fd, rtol=1e-5, atol=1e-8)

    before = carry[0]
    advanced, predicted, present = eqx.filter_jit(ParticleTwin.advance)(before, env, carry[-1])
    reward, extreme, _ = jax.jit(jax.vmap(lambda s: _outcomes(env, s, rec.action)))(advanced)
    values = jnp.column_stack([reward, extreme])

    @jax.jit
    def mean_forecast(o):
        ll = jax.vmap(lambda p: env.sample_loglik(o, p, present))(predicted)
        return jax.nn.softmax(before.log_weights + ll) @ values

    assert list(rec.observations.index) == ["Cp day 0.25", "Cp day 0.75"]
    for slot in range(2):
        bump = jnp.zeros_like(obs).at[slot].set(obs[slot] * h)            # a relative change: ∂/∂ log sample
        fd = np.asarray(mean_forecast(obs + bump) - mean_forecast(obs - bump)) / (2 * h)
        np.testing.assert_allclose(rec.observations.iloc[slot].to_numpy(), fd, rtol=1e-5, atol=1e-8)


def test_a_twin_that_lets_parameters_evolve_follows_a_drifting_clearance():
    """Clearance falls 20 % per cycle from cycle 2 (noise-free samples).  The estimate used at
    decision k can only know the clearance of cycle k − 1 (the one its latest samples came
    from): a twin whose CL may random-walk (SD 0.2 per cycle) stays within 10 % of it, a
    static-parameter twin falls further behind every cycle."""
    env = daily_bolus_env(horizon=8).without_noise()
    prior = Patients.from_population(env.model.population(256, jax.random.key(3)))
    truth = Patients.from_population(env.model.population(6, jax.random.key(4)))
    drift = Drift(env.model, {"CL": 0.8}, start_cycle=2)
    lag = {}
    for name, evolve in (("static", None), ("evolving", {"CL": 0.2})):
        policy = ShieldedPolicy(env, FixedSchedule(env, [2]), prior, delta=1.0, evolve=evolve)
        r = run_closed_loop(env, policy, truth, jax.random.key(5), drift=drift)
        lag[name] = np.median(np.abs(np.log(r.estimate[:, 1:, 0] / r.truth[:, :-1, 0])), axis=0)
    assert lag["evolving"][-1] < 0.1 < lag["static"][-1]
    assert np.all(np.diff(lag["static"][2:]) > 0)
    with pytest.raises(ModelError, match="Did you mean 'CL'"):
        ShieldedPolicy(env, FixedSchedule(env, [2]), prior, evolve={"cl": 0.1})
