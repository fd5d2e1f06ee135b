"""The closed-loop runner: a perfectly specified twin fed noise-free samples converges to the true
patient's parameters; a decision never depends on what happens after it; the drift multiplies
the truth's parameters exactly as declared."""

import functools

import jax
import numpy as np
import pytest

from models.compartmental import one_compartment_iv
from pbpk.control import Drift, DosingEnv, FixedSchedule, Limit, MissedDoses, Patients, PrecisionDosing, Reward, Sample
from pbpk.control import ShieldedPolicy, run_closed_loop
from pbpk.errors import ModelError


@functools.cache          # one env per setting: jitted runs on the same env compile once
def daily_bolus_env(horizon: int, rtol: float = 1e-6) -> DosingEnv:
    """One compartment (CL ω 0.3, V ω 0.2, proportional error 10 %), a daily bolus of 0–150 mg,
    Cp sampled at 6 h and 18 h (both CL and V are identifiable from one cycle)."""
    model = one_compartment_iv(iiv=True).compile()
    return DosingEnv(model, doses=(0.0, 50.0, 100.0, 150.0), dose_unit="mg", into="central", interval_days=1.0,
                     horizon=horizon, samples=(Sample("Cp", days=(0.25, 0.75)),), reward=Reward("Cp", "auc"),
                     limits=(Limit("Cp", 2.5, "above"),), grid_hours=1.0, rtol=rtol, atol=rtol * 1e-3)


def perfect_twin_course(missed_probability: float = 0.0):
    """Noise-free daily 100 mg for 10 days on 6 patients, a 256-particle twin (a shield that never
    masks), cycle 3's dose missed with the given probability (unknown to the twin)."""
    env = daily_bolus_env(horizon=10).without_noise()
    prior = Patients.from_population(env.model.population(256, jax.random.key(3)))
    truth = Patients.from_population(env.model.population(6, jax.random.key(4)))
    always_100 = ShieldedPolicy(env, FixedSchedule(env, [2]), prior, delta=1.0)
    return run_closed_loop(env, always_100, truth, jax.random.key(5),
                           missed=MissedDoses(env, probability=missed_probability, cycles=[3])), truth


def test_perfect_twin_without_noise_converges_to_the_truth():
    """Structure and prior right, samples noise-free: the twin's posterior geometric mean of CL
    and V, which starts at the prior's (|log error| ≈ ω), ends within 3 % (median over 6
    patients) after 10 cycles, the remaining spread being the rejuvenation kernel's (5 %)."""
    result, truth = perfect_twin_course()
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
    chunked = run_closed_loop(env, FixedSchedule(env, [1]), truth, jax.random.key(2),
                              drift=Drift(env.model, {"CL": 0.9}, start_cycle=2), batch_size=2)
    for a, b in zip(jax.tree.leaves(result.outcome), jax.tree.leaves(chunked.outcome)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)    # same keys per patient
    with pytest.raises(ModelError, match="Did you mean 'CL'"):
        Drift(env.model, {"Cl": 0.9})
    with pytest.raises(ModelError, match="positive"):
        Drift(env.model, {"CL": -1.0})


def test_explained_recommendation_agrees_with_the_shield_and_with_finite_differences():
    """At the second decision of a shielded course: ``act`` is traced once for both decisions
    (no re-tracing per step), the alternatives' risks are the shield's own,
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
    traces = []

    def traced_act(key, carry, obs):
        traces.append(None)         # runs only while JAX traces
        return shield.act(key, carry, obs)

    act = eqx.filter_jit(traced_act)
    obs, state = env.reset(jax.random.key(0), pool)
    action, carry = act(jax.random.key(1), shield.init(obs), obs)
    obs, state, *_ = eqx.filter_jit(env.step_env)(jax.random.key(2), state, action)
    rec = explain(env, shield, carry, obs, jax.random.key(3))

    expected_action, after = act(jax.random.key(3), carry, obs)
    assert len(traces) == 1, "the second decision traced act again (the carry changed type or shape)"
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


def test_an_unrecorded_missed_dose_reaches_the_truth_but_not_the_twin():
    """The perfect twin's course again, with cycle 3's dose missed (probability 1): the truth gets
    the hold action and 100 mg less in all, every other cycle is the plan; the twin, believing the
    dose was given, reads the low concentrations as a faster clearance — its CL estimate after
    cycle 3 moves away from the truth (by > 5 %, four times the error of the same course without
    the miss, which stays within 3 %); before it, nothing differs."""
    runs = {p: perfect_twin_course(p)[0] for p in (0.0, 1.0)}
    a0, a1 = np.asarray(runs[0.0].outcome.actions), np.asarray(runs[1.0].outcome.actions)
    np.testing.assert_array_equal(a0, 2)
    np.testing.assert_array_equal(a1, np.where(np.arange(10) == 2, 0, 2)[None].repeat(6, 0))
    np.testing.assert_allclose(np.asarray(runs[0.0].outcome.cumulative_dose - runs[1.0].outcome.cumulative_dose), 100.0)
    cl_error = {p: np.median(np.abs(np.log(r.estimate[:, 3, 0] / r.truth[:, 3, 0]))) for p, r in runs.items()}
    assert cl_error[0.0] < 0.03 and cl_error[1.0] > max(0.05, 4 * cl_error[0.0])
    np.testing.assert_array_equal(runs[0.0].estimate[:, :3], runs[1.0].estimate[:, :3])
    env = daily_bolus_env(horizon=5)
    with pytest.raises(ModelError, match="no hold action"):
        MissedDoses(DosingEnv(env.model, doses=(50.0, 100.0), dose_unit="mg", into="central", interval_days=1.0,
                              horizon=2, samples=(Sample("Cp", days=(0.25,)),), reward=Reward("Cp", "auc")),
                    probability=0.1)
    with pytest.raises(ModelError, match="cycle numbers"):
        MissedDoses(env, probability=0.1, cycles=[0, 6])
    with pytest.raises(ModelError, match="number in"):
        MissedDoses(env, probability=1.5)


def test_global_sobol_indices_match_quadrature_of_the_same_forecast():
    """SALib's Sobol' indices of the next-cycle forecast (1024 × 4 forecasts) against the exact
    variance decomposition of the same forecast function by 40 × 40 Gauss–Hermite quadrature over
    the two independent log-normal parameters: the AUC depends on CL and V, the peak (a bolus:
    dose / V) on V alone, so its CL indices are 0."""
    import jax.numpy as jnp

    from pbpk.control import ParticleTwin, global_sensitivity
    from pbpk.control.explain import _outcomes_at_mean_state

    env = daily_bolus_env(horizon=3)
    prior = Patients.from_population(env.model.population(256, jax.random.key(3)))
    twin = ParticleTwin(jax.vmap(env.initial_state)(prior.theta, prior.covariates, prior.bsa), jnp.zeros(256))
    table = global_sensitivity(env, twin, 2, jax.random.key(4), samples=1024)
    assert list(table.index.get_level_values(1).unique()) == ["CL", "V"]

    log_theta = np.log(np.asarray(prior.theta))
    mean, sd = log_theta.mean(0), log_theta.std(0)
    x, wq = np.polynomial.hermite_e.hermegauss(40)
    wq = wq / wq.sum()
    cl, v = np.meshgrid(mean[0] + sd[0] * x, mean[1] + sd[1] * x, indexing="ij")
    theta = jnp.exp(jnp.stack([cl.ravel(), v.ravel()], 1))
    y = np.asarray(_outcomes_at_mean_state(env, twin, theta, jnp.asarray(2))).reshape(40, 40, -1)
    for j, output in enumerate(["efficacy", "Cp peak"]):
        yj = y[:, :, j]
        total = wq @ (yj - wq @ yj @ wq) ** 2 @ wq
        s1_cl = wq @ (yj @ wq - wq @ yj @ wq) ** 2 / total
        s1_v = wq @ (wq @ yj - wq @ yj @ wq) ** 2 / total
        exact = {"CL": (s1_cl, 1 - s1_v), "V": (s1_v, 1 - s1_cl)}       # two inputs: ST_CL = 1 − S1_V
        for p, (s1, st) in exact.items():
            row = table.loc[(output, p)]
            assert abs(row["S1"] - s1) < row["S1 ±95%"] + 0.02, (output, p, row["S1"], s1)
            assert abs(row["ST"] - st) < row["ST ±95%"] + 0.02, (output, p, row["ST"], st)
    assert table.loc[("Cp peak", "CL"), "ST"] < 0.01 and table.loc[("Cp peak", "V"), "S1"] > 0.99
    with pytest.raises(ModelError, match="power of 2"):
        global_sensitivity(env, twin, 2, jax.random.key(4), samples=1000)
