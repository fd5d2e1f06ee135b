"""Dosing environments: the JAX step against a SciPy reference step, costs against analytic
crossings, observation noise and missingness against their declared rates, and the torchrl export
through torchrl's own spec checker and collector."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from pbpk.control import DosingEnv, Limit, Patients, Reward, Sample, chemotherapy_env, nanoparticle_env
from pbpk.errors import ModelError
from pbpk.models.compartmental import one_compartment_iv


@pytest.fixture(scope="module")
def chemo():
    return chemotherapy_env()


def scipy_cycle(model, theta, cov, y0, into, amount, infusion_h, length_h, times_h):
    """The reference step: LSODA-free Radau at rtol 1e-10 on the model's own right-hand side,
    the infusion as a separate segment."""
    rhs = jax.jit(lambda t, y, r: model.rhs(t, y, theta, cov, r))
    rate = np.zeros(len(y0))
    rate[model.state_names.index(into)] = amount / infusion_h
    f = lambda r: (lambda t, y: np.asarray(rhs(t, y, r)))
    first = solve_ivp(f(rate), (0.0, infusion_h), y0, method="Radau", rtol=1e-10, atol=1e-12, dense_output=True)
    second = solve_ivp(f(0 * rate), (infusion_h, length_h), first.y[:, -1], method="Radau", rtol=1e-10, atol=1e-12,
                       dense_output=True)
    ys = np.stack([first.sol(t) if t <= infusion_h else second.sol(t) for t in times_h])
    return ys, second.y[:, -1]


def one_patient(env, key=1):
    pats = Patients.from_population(env.model.population(1, jax.random.key(key)))
    return pats, pats.theta[0], pats.covariates[0]


def test_chemotherapy_step_equals_scipy(chemo):
    """The partitioned step (exact PK, Tsit5 PD) against Radau on the whole model, 100 mg/m²."""
    assert chemo.sim.partitioned
    pats, theta, cov = one_patient(chemo)
    _, state = chemo.reset(jax.random.key(0), pats)
    action = int(np.flatnonzero(np.asarray(chemo.doses) == 100.0)[0])
    _, new, reward, cost, term, trunc, info = eqx.filter_jit(chemo.step_env)(jax.random.key(2), state, action)
    amount = 100.0 * 1.8
    grid_h = np.asarray(chemo.sim.grid)
    ys, y_end = scipy_cycle(chemo.model, theta, cov, np.asarray(state.y), "central", amount, 1.0, 504.0, grid_h)
    np.testing.assert_allclose(np.asarray(new.y), y_end, rtol=2e-5, atol=1e-8)
    sld = [float(chemo.model.observe(t, y, theta, cov)[2]) for t, y in ((0.0, ys[0]), (504.0, y_end))]
    assert float(reward) == pytest.approx((sld[0] - sld[1]) / float(state.reference), rel=1e-4)
    anc = np.asarray([float(chemo.model.observe(t, y, theta, cov)[1]) for t, y in zip(grid_h, ys)])
    days_below = np.sum(np.where(anc < 0.5, np.diff(grid_h, append=grid_h[-1]) / 24.0, 0.0))
    assert bool(info["violations"][0]) == (days_below > 7.0)
    assert float(cost) == float(days_below > 7.0) and not bool(trunc) and not bool(term)


def test_nanoparticle_step_equals_scipy():
    """The exact (matrix-exponential) step of the linear liposomal model against Radau."""
    env = nanoparticle_env()
    assert env.sim.exact
    pats, theta, cov = one_patient(env)
    _, state = env.reset(jax.random.key(0), pats)
    action = env.standard                                  # 40 mg/m² every 28 days
    _, new, reward, *_ = eqx.filter_jit(env.step_env)(jax.random.key(2), state, action)
    grid_h = np.asarray(env.sim.grid)
    amount = 40.0 * float(pats.bsa[0])
    ys, y_end = scipy_cycle(env.model, theta, cov, np.asarray(state.y), "liposomal", amount, 1.0, 672.0, grid_h)
    np.testing.assert_allclose(np.asarray(new.y), y_end, rtol=1e-6, atol=1e-10)
    i = env.model.observation_names.index("C_tumour")
    c = np.asarray([float(env.model.observe(t, y, theta, cov)[i]) for t, y in zip(grid_h, ys)])
    assert float(reward) == pytest.approx(np.trapezoid(c, grid_h / 24.0), rel=1e-6)


def analytic_env(limit, dose, grid_hours=1.0):
    """One compartment, CL 5 L/h, V 50 L (k = 0.1/h): C(t) = dose/50·e^(−0.1t)."""
    model = one_compartment_iv(iiv=False).compile()
    return DosingEnv(model, doses=(dose,), dose_unit="mg", into="central", interval_days=3.0, horizon=2,
                     samples=(Sample("Cp", days=(1.0,)),), reward=Reward("Cp", "auc"), limits=(limit,),
                     grid_hours=grid_hours)


@pytest.mark.parametrize("c0, expected", [(1.01, 1.0), (0.99, 0.0)])
def test_cost_exactly_when_a_peak_crosses(c0, expected):
    env = analytic_env(Limit("Cp", 1.0, "above"), c0 * 50.0)
    pats = Patients.typical(env.model)
    _, state = env.reset(jax.random.key(0), pats)
    _, _, _, cost, *_ = env.step_env(jax.random.key(1), state, 0)
    assert float(cost) == expected


@pytest.mark.parametrize("hours_above, expected", [(27.0, 1.0), (21.0, 0.0)])
def test_cost_exactly_when_a_duration_is_exceeded(hours_above, expected):
    """Above 1 mg/L for ln(C0)/0.1 h; the limit allows one day."""
    c0 = np.exp(0.1 * hours_above)
    env = analytic_env(Limit("Cp", 1.0, "above", longer_than_days=1.0), c0 * 50.0)
    _, state = env.reset(jax.random.key(0), Patients.typical(env.model))
    _, _, reward, cost, *_ = env.step_env(jax.random.key(1), state, 0)
    assert float(cost) == expected
    k = 0.1
    auc_days = c0 / k * (1 - np.exp(-k * 72.0)) / 24.0
    assert float(reward) == pytest.approx(auc_days, rel=2e-3)     # trapezoid on a 1-h grid


def test_noise_and_missing_samples_follow_their_declared_rates():
    """Proportional error 10 %: the relative deviations' SD within 3 Monte Carlo SEs; 30 % missing
    within 3 binomial SEs (n = 4000)."""
    model = one_compartment_iv(iiv=False).compile()
    env = DosingEnv(model, doses=(100.0,), dose_unit="mg", into="central", interval_days=1.0, horizon=1,
                    samples=(Sample("Cp", days=(0.5,), missing=0.3),), reward=Reward("Cp", "auc"))
    pats = Patients.typical(model)
    n = 4000
    _, state = env.reset_batch(jax.random.key(0), pats, n)
    obs, *_ = jax.vmap(env.step_env)(jax.random.split(jax.random.key(1), n), state, jnp.zeros(n, int))
    value, missing = np.asarray(obs[:, 0]), np.asarray(obs[:, 1]).astype(bool)
    assert abs(missing.mean() - 0.3) < 3 * np.sqrt(0.3 * 0.7 / n)
    truth = 100.0 / 50.0 * np.exp(-0.1 * 12.0)
    rel = value[~missing] / truth - 1.0
    assert abs(rel.std() - 0.1) < 3 * 0.1 / np.sqrt(2 * rel.size)
    assert np.all(value[missing] == 0.0)


def test_episode_ends_at_the_horizon_and_auto_resets(chemo):
    pats = Patients.from_population(chemo.model.population(5, jax.random.key(3)))
    obs, state = chemo.reset(jax.random.key(0), pats)
    step = eqx.filter_jit(chemo.step)
    total = 0.0
    for k in range(chemo.horizon):
        assert int(state.cycle) == k
        obs, state, reward, cost, term, trunc, info = step(jax.random.key(k), state, chemo.standard, pats)
        total += float(reward)
    assert bool(term) and not bool(trunc)
    assert int(state.cycle) == 0 and float(state.cumulative_dose) == 0.0 and float(state.time) == 0.0
    assert float(info["episode_reward"]) == pytest.approx(total, rel=1e-12)


def test_standard_protocol_matches_the_rule_based_protocol(chemo):
    """Six cycles of 75 mg/m² in the environment = the same course through ``Protocol`` (no rules)."""
    from pbpk.control import Protocol

    pats = Patients.from_population(chemo.model.population(1, jax.random.key(4)))
    _, state = chemo.reset(jax.random.key(0), pats)
    for k in range(6):
        _, state, *_ = chemo.step_env(jax.random.key(k), state, chemo.standard)
    res = Protocol(levels=(75.0,), cycles=6, infusion_hours=1.0).run(chemo.model, pats.theta[0], bsa=1.8)
    sixth = 5                                         # the protocol then runs on, undosed, for its hold budget
    sld = np.asarray(res["SLD"])[sixth][np.asarray(res.inside)[sixth]]
    end = float(chemo.model.observe(state.time, state.y, state.theta, state.covariates)[2])
    assert end == pytest.approx(sld[-1], rel=1e-4)


def test_bad_declarations_name_the_problem(chemo):
    with pytest.raises(ModelError, match="ANC"):
        DosingEnv(chemo.model, doses=(75.0,), dose_unit="mg/m^2", into="central", interval_days=21, horizon=2,
                  samples=(Sample("ANK", days=(7.0,)),), reward=Reward("SLD"))
    with pytest.raises(ModelError, match="not among the actions"):
        DosingEnv(chemo.model, doses=(75.0,), dose_unit="mg/m^2", into="central", interval_days=21, horizon=2,
                  samples=(Sample("ANC", days=(7.0,)),), reward=Reward("SLD"), standard=(80.0, 21.0))
    with pytest.raises(ModelError, match="kind"):
        Reward("SLD", "shrink")
    with pytest.raises(ModelError, match="side"):
        Limit("ANC", 0.5, "under")


def test_torchrl_export_passes_check_env_specs_and_collects(chemo):
    pytest.importorskip("torchrl")
    import torch
    from torchrl.collectors import Collector
    from torchrl.envs.utils import check_env_specs

    pats = Patients.from_population(chemo.model.population(50, jax.random.key(1)))
    tenv = chemo.to_torchrl(pats, batch_size=4, seed=0)
    check_env_specs(tenv)
    td = tenv.rollout(chemo.horizon, policy=lambda td: td.set("action", torch.full((4,), chemo.standard)))
    assert td["next", "done"][:, -1].all() and not td["next", "done"][:, :-1].any()
    # the top-level cost is the JAX cost of the same steps: grade-4 > 7 d episodes, 0/1 per cycle
    assert set(td["next", "cost"].unique().tolist()) <= {0.0, 1.0}
    collector = Collector(tenv, policy=None, frames_per_batch=4 * (chemo.horizon + 2), total_frames=8 * (chemo.horizon + 2))
    batches = list(collector)
    assert len(batches) == 2 and all(b.batch_size == torch.Size([4, chemo.horizon + 2]) for b in batches)
    cycles = np.asarray(tenv.state.cycle)
    assert cycles.max() < chemo.horizon            # partial resets restarted the finished episodes


# ----------------------------------------------------------------------------- policies and evaluation
def test_fixed_schedule_evaluation_equals_stepping_by_hand(chemo):
    from pbpk.control.policies import FixedSchedule, evaluate

    pats = Patients.from_population(chemo.model.population(3, jax.random.key(5)))
    plan = [chemo.standard, 0, chemo.standard, chemo.standard, 0, chemo.standard]
    out = evaluate(chemo, FixedSchedule(chemo, plan), pats, jax.random.key(9))
    # by hand, patient 1 with the key evaluate gives it
    k_patient = jax.random.split(jax.random.key(9), 3)[1]
    k_reset, k_run = jax.random.split(k_patient)
    _, state = chemo.reset(k_reset, Patients(pats.theta[1:2], pats.covariates[1:2], pats.bsa[1:2]))
    total = 0.0
    for a, k in zip(plan, jax.random.split(k_run, chemo.horizon)):
        _, k_env = jax.random.split(k)
        _, state, reward, *_ = chemo.step_env(k_env, state, a)
        total += float(reward)
    assert float(out.efficacy[1]) == pytest.approx(total, rel=1e-9)
    assert float(out.cumulative_dose[1]) == pytest.approx(4 * 75.0)
    assert np.asarray(out.actions[1]).tolist() == plan


def test_label_rules_hold_reduce_and_stop(chemo):
    """Hand-made observations: pre-dose ANC 1.2 → hold; day-7 ANC 0.3 after a dosed cycle → one
    level down; a third reduction → stop; a missing sample triggers nothing."""
    from pbpk.control.policies import LabelRules

    rules = LabelRules(chemo, (100.0, 75.0, 60.0), hold=("ANC", 21.0, 1.5), reduce=("ANC", 7.0, 0.5))
    n = int(chemo.sample_index.shape[0])
    day7, day21 = chemo.sample_slot("ANC", 7.0), chemo.sample_slot("ANC", 21.0)

    def obs(anc7, anc21, last_dose):
        v = np.zeros(2 * n + 3)
        for slot, value in ((day7, anc7), (day21, anc21)):
            if value is None:
                v[n + slot] = 1.0
            else:
                v[slot] = np.log(value / 5.0)             # the env's log scaling (scale 5)
        v[-1] = last_dose / chemo.max_dose
        return jnp.asarray(v)

    dose = lambda a: float(chemo.doses[a])
    level = rules.init(None)
    a, level = rules.act(None, level, obs(None, 5.0, 0.0))
    assert dose(a) == 100.0
    a, level = rules.act(None, level, obs(0.3, 5.0, 100.0))
    assert dose(a) == 75.0
    a, level = rules.act(None, level, obs(2.0, 1.2, 75.0))
    assert dose(a) == 0.0                                          # held, level kept
    a, level = rules.act(None, level, obs(None, 3.0, 0.0))
    assert dose(a) == 75.0
    a, level = rules.act(None, level, obs(0.2, 3.0, 75.0))
    assert dose(a) == 60.0
    a, level = rules.act(None, level, obs(0.2, 3.0, 60.0))
    assert dose(a) == 0.0 and int(level) == 3                      # below the lowest level: stopped
    assert np.isnan(float(chemo.decode(obs(None, 3.0, 0.0), day7)))
    assert float(chemo.decode(obs(0.3, 3.0, 0.0), day7)) == pytest.approx(0.3)


def test_outcome_summary_bootstrap_interval_holds_the_mean():
    from pbpk.control.policies import Outcome

    rng = np.random.default_rng(0)
    eff = rng.normal(0.3, 0.1, 400)
    out = Outcome(jnp.asarray(eff), jnp.zeros(400), jnp.asarray(rng.random(400) < 0.05), jnp.zeros((400, 1), bool),
                  jnp.full(400, 450.0), jnp.zeros((400, 6), int))
    s = out.summary()
    lo, hi = s["efficacy"]["ci"]
    assert lo < eff.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * eff.std() / np.sqrt(400), rel=0.15)   # normal-theory width


def test_mlp_policy_from_torch_gives_torch_logits():
    pytest.importorskip("torchrl")
    import torch
    from torchrl.modules import MLP

    from pbpk.control.agents import MLPPolicy

    torch.manual_seed(0)
    net = MLP(in_features=5, out_features=3, num_cells=[8, 8], activation_class=torch.nn.Tanh)
    x = torch.randn(10, 5)
    policy = MLPPolicy.from_torch(net)
    np.testing.assert_allclose(np.asarray(policy.logits(jnp.asarray(x.numpy()))), net(x).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert int(policy.act(None, policy.init(None), jnp.asarray(x[0].numpy()))[0]) == int(net(x[0]).argmax())
    other = MLP(in_features=5, out_features=3, num_cells=[8, 8], activation_class=torch.nn.Tanh)
    policy.load_into(other)                                   # the round trip used to fine-tune
    np.testing.assert_array_equal(other(x).detach().numpy(), net(x).detach().numpy())
    with pytest.raises(ModelError, match="layer shapes"):
        policy.load_into(MLP(in_features=5, out_features=3, num_cells=[4], activation_class=torch.nn.Tanh))


def test_ppo_lagrangian_multiplier_follows_the_cost_and_resumes():
    """Two collections on the analytic env where the only dose crosses its peak limit: every cycle
    costs 1, so after each batch λ rises by multiplier_lr·(episode cost − limit) exactly."""
    pytest.importorskip("torchrl")
    from pbpk.control.agents import train_ppo

    env = analytic_env(Limit("Cp", 1.0, "above"), 2.0 * 50.0)          # peak 2 mg/L > 1
    agent, hist = train_ppo(env, Patients.typical(env.model), frames=2 * 8 * env.horizon, batch=8,
                            cost_limit=0.5, multiplier_lr=0.25, epochs=1, minibatch=8, progress=False)
    assert hist.episode_cost == [2.0, 2.0]                             # two cycles, both over the limit
    assert hist.multiplier == pytest.approx([0.25 * 1.5, 0.25 * 3.0])
    # resumed (the fine-tuning path) with a zero learning rate: the policy and the critic come
    # back as they went in, and λ goes on from where it stopped
    again, resumed = train_ppo(env, Patients.typical(env.model), frames=8 * env.horizon, batch=8, cost_limit=0.5,
                               multiplier_lr=0.25, epochs=1, minibatch=8, lr=0.0, progress=False, init=agent,
                               init_critic=hist.critic, init_multiplier=hist.multiplier[-1])
    assert resumed.multiplier == pytest.approx([0.25 * 4.5])
    for got, given in zip(jax.tree.leaves((again, resumed.critic)), jax.tree.leaves((agent, hist.critic))):
        np.testing.assert_array_equal(got, given)
    # the critic comes back as a value network: its JAX value is the torch network's output
    import torch
    from torchrl.modules import MLP

    obs = env.reset(jax.random.key(0), Patients.typical(env.model))[0]
    net = MLP(in_features=obs.shape[0], out_features=1, num_cells=[w.shape[0] for w in hist.critic.weights[:-1]],
              activation_class=torch.nn.Tanh)
    hist.critic.load_into(net)
    with torch.no_grad():
        expected = float(net(torch.tensor(np.asarray(obs), dtype=torch.float32))[0])
    assert float(hist.critic.value(obs)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ModelError, match="init_multiplier"):
        train_ppo(env, Patients.typical(env.model), frames=8 * env.horizon, init_multiplier=-1.0)


def test_episode_costs_and_their_tail_mean():
    from pbpk.control.agents import episode_costs, tail_mean

    cost = np.asarray([[1.0, 0.0, 2.0, 0.0, 5.0], [0.0, 3.0, 0.0, 0.0, 1.0]])
    done = np.asarray([[0, 1, 0, 1, 0], [0, 0, 1, 0, 1]], bool)          # the 5.0 is an unfinished episode
    np.testing.assert_array_equal(episode_costs(cost, done), [1.0, 2.0, 3.0, 1.0])
    assert tail_mean([1.0, 2.0, 3.0, 1.0], 0.5) == 2.5 and tail_mean([1.0, 2.0, 3.0, 1.0], 0.1) == 3.0
    assert tail_mean([1.0, 2.0, 3.0, 1.0], 1.0) == 1.75


def test_ppo_cvar_multiplier_follows_the_worst_episodes():
    """Patients with IIV on a peak limit: episode costs differ, and λ moves with the mean cost of
    the worst quarter of each batch, which is above the batch mean."""
    pytest.importorskip("torchrl")
    from pbpk.control.agents import train_ppo

    env = shield_env()
    pool = Patients.from_population(env.model.population(64, jax.random.key(3)))
    _, hist = train_ppo(env, pool, frames=2 * 32 * env.horizon, batch=32, cost_limit=0.1, cvar=0.25,
                        multiplier_lr=0.5, epochs=1, minibatch=32, progress=False)
    steps = np.diff([0.0, *hist.multiplier])
    np.testing.assert_allclose(steps, 0.5 * (np.asarray(hist.constrained_cost) - 0.1), atol=1e-12)
    assert all(c > m for c, m in zip(hist.constrained_cost, hist.episode_cost))


# ----------------------------------------------------------------------------- the twin-forecast shield
def shield_env():
    """One compartment with IIV (CL ω 0.3, V ω 0.2); doses 0/50/100/150 mg; Cp peak limit 2.5 mg/L
    (the typical peaks are 0, 1, 2, 3 mg/L)."""
    model = one_compartment_iv(iiv=True).compile()
    return DosingEnv(model, doses=(0.0, 50.0, 100.0, 150.0), dose_unit="mg", into="central", interval_days=1.0,
                     horizon=3, samples=(Sample("Cp", days=(0.25,)),), reward=Reward("Cp", "auc"),
                     limits=(Limit("Cp", 2.5, "above"),), grid_hours=1.0)


def test_shield_risk_is_the_weighted_share_of_violating_particles():
    from pbpk.control.policies import FixedSchedule
    from pbpk.control.shield import ShieldedPolicy

    env = shield_env()
    prior = Patients.from_population(env.model.population(100, jax.random.key(3)))
    shield = ShieldedPolicy(env, FixedSchedule(env, [3]), prior, delta=0.1)
    obs, _ = env.reset(jax.random.key(0), Patients.typical(env.model))
    twin, _, _ = shield.init(obs)
    risk = np.asarray(shield.risk(twin))
    v = np.asarray(prior.theta[:, env.model.parameter_index("V")])
    peaks = np.asarray(env.doses)[:, None] / v[None, :]          # bolus peak = dose / V per particle
    w = np.asarray(twin.weights)
    np.testing.assert_allclose(risk, (w[None, :] * (peaks > 2.5)).sum(axis=1), atol=1e-12)


def test_shield_never_passes_an_action_whose_risk_exceeds_delta():
    """Over a cohort and a whole course: every chosen action's forecast risk ≤ δ, or (when no
    action is below δ) it is the least risky one; the shield never raises the base dose."""
    from pbpk.control.policies import FixedSchedule
    from pbpk.control.shield import ShieldedPolicy

    env = shield_env()
    prior = Patients.from_population(env.model.population(48, jax.random.key(3)))
    delta = 0.1
    shield = ShieldedPolicy(env, FixedSchedule(env, [3]), prior, delta=delta)
    cohort = Patients.from_population(env.model.population(8, jax.random.key(4)))

    @eqx.filter_jit
    def course(key, pool):
        obs, state = env.reset(key, pool)
        carry = shield.init(obs)
        chosen, risks = [], []
        for k in jax.random.split(key, env.horizon):
            action, new_carry = shield.act(k, carry, obs)
            # the risk the shield saw: the twin after its update, as act computed it
            twin = new_carry[0]
            risks.append(shield.risk(twin))
            chosen.append(action)
            obs, state, *_ = env.step_env(k, state, action)
            carry = new_carry
        return jnp.stack(chosen), jnp.stack(risks)

    keys = jax.random.split(jax.random.key(5), 8)
    chosen, risks = jax.vmap(course)(keys, cohort.cohort())
    chosen, risks = np.asarray(chosen), np.asarray(risks)
    picked = np.take_along_axis(risks, chosen[..., None], -1)[..., 0]
    none_safe = risks.min(-1) > delta
    assert np.all((picked <= delta) | (none_safe & (picked == risks.min(-1))))
    assert np.all(chosen <= 3) and (chosen < 3).any() and (chosen > 0).any()


def test_weighted_quantile_matches_the_cumulative_weight_definition():
    from pbpk.control.particles import weighted_quantile

    rng = np.random.default_rng(0)
    values, weights = rng.normal(size=(5, 40)), rng.uniform(size=40)
    for q in (0.1, 0.5, 0.9):
        got = np.asarray(weighted_quantile(jnp.asarray(values), jnp.asarray(weights), q))
        for row, g in zip(values, got):
            order = np.argsort(row)
            cw = np.cumsum(weights[order]) / weights.sum()
            assert g == row[order][np.searchsorted(cw, q)]


def test_precision_dosing_with_a_known_patient_gives_the_largest_dose_on_target():
    """A twin whose particles are all the true patient forecasts exactly: MIPD must give the
    largest dose whose true peak stays ≤ the target, cycle after cycle — for a daily bolus the
    peak is the residual concentration plus dose / V, the residual decaying as exp(−CL/V · 24 h)."""
    from pbpk.control.mipd import PrecisionDosing

    env = shield_env()
    cohort = Patients.from_population(env.model.population(6, jax.random.key(7)))
    cl = np.asarray(cohort.theta[:, env.model.parameter_index("CL")])
    v = np.asarray(cohort.theta[:, env.model.parameter_index("V")])
    target = 1.8
    expected = np.zeros((6, env.horizon))
    for i in range(6):
        residual = 0.0
        for k in range(env.horizon):
            expected[i, k] = max(d for d in (0.0, 50.0, 100.0, 150.0) if residual + d / v[i] <= target)
            residual = (residual + expected[i, k] / v[i]) * np.exp(-cl[i] / v[i] * 24.0)

    @jax.jit
    def course(key, pool):
        prior = Patients(jnp.repeat(pool.theta, 8, 0), jnp.repeat(pool.covariates, 8, 0), jnp.repeat(pool.bsa, 8))
        mipd = PrecisionDosing(env, prior, observation="Cp", statistic="max", target=target, max_risk=1.0)
        obs, state = env.reset(key, pool)

        def step(carry, k):
            obs, state, memory = carry
            action, memory = mipd.act(k, memory, obs)
            obs, state, *_ = env.step_env(k, state, action)
            return (obs, state, memory), env.doses[action]

        _, doses = jax.lax.scan(step, (obs, state, mipd.init(obs)), jax.random.split(key, env.horizon))
        return doses

    doses = np.asarray(jax.vmap(course)(jax.random.split(jax.random.key(8), 6), cohort.cohort()))
    assert len(np.unique(expected)) > 1 and (expected[:, 0] != expected[:, -1]).any()
    np.testing.assert_array_equal(doses, expected)


def test_precision_dosing_choice_meets_its_forecast_target_or_is_the_least_intense():
    from pbpk.control.mipd import PrecisionDosing
    from pbpk.control.particles import ParticleTwin

    env = shield_env()
    prior = Patients.from_population(env.model.population(64, jax.random.key(3)))
    mipd = PrecisionDosing(env, prior, observation="Cp", statistic="max", target=2.2, quantile=0.9, max_risk=0.2)
    obs, _ = env.reset(jax.random.key(1), Patients.typical(env.model))
    twin = ParticleTwin.from_prior(env, prior, obs)
    value, risk = (np.asarray(x) for x in mipd.forecast(twin))
    action = int(mipd.choose(jnp.asarray(value), jnp.asarray(risk)))
    ok = (value <= 2.2) & (risk <= 0.2)
    assert ok[action] and np.asarray(env.doses)[action] == np.asarray(env.doses)[ok].max()
    assert ok.any() and not ok.all()
    with pytest.raises(ModelError, match="Did you mean 'Cp'"):
        PrecisionDosing(env, prior, observation="cp", statistic="max", target=1.0)


def test_static_plan_levels_are_the_best_feasible_plan_by_brute_force():
    """From a continuous plan below every level's worth, the level climb must reach the plan a
    brute-force search over all 4³ plans finds: the best mean return with ≤ 10 % of patients
    crossing the peak limit."""
    import itertools

    from pbpk.control.policies import FixedSchedule, _climb_levels, evaluate

    env = shield_env()
    cohort = Patients.from_population(env.model.population(40, jax.random.key(12)))
    key = jax.random.key(0)
    plan = _climb_levels(env, np.asarray([10.0, 10.0, 10.0]), cohort, key, 0.1)
    best = None
    for actions in itertools.product(range(4), repeat=3):
        out = evaluate(env, FixedSchedule(env, actions), cohort, key)
        eff, rate = float(out.efficacy.mean()), float(out.violated.mean())
        if rate <= 0.1 and (best is None or eff > best[0]):
            best = (eff, list(actions))
    assert plan == best[1] and 0 < sum(plan) < 9


def test_forecast_schedule_table_and_cli(chemo, tmp_path):
    """The schedule of the fixed protocol: 75 mg/m² for all draws in every cycle, cumulative
    efficacy and P(violation) non-decreasing, the last cycle's P equal to the cohort's rate."""
    from pbpk.cli import main
    from pbpk.control import FixedSchedule, compare, evaluate, forecast_schedule

    twin = Patients.from_population(chemo.model.population(40, jax.random.key(6)))
    policy = FixedSchedule(chemo, [chemo.standard] * chemo.horizon)
    sched = forecast_schedule(chemo, policy, twin, jax.random.key(1), name="protocol")
    t = sched.table
    assert len(t) == chemo.horizon and (t["dose"] == 75.0).all() and (t["share_of_draws"] == 1.0).all()
    assert np.allclose(t["day_median"], 21.0 * np.arange(chemo.horizon))
    p = t[[c for c in t.columns if c.startswith("P(")][0]].to_numpy()
    assert np.all(np.diff(p) >= 0)
    out = evaluate(chemo, policy, twin, jax.random.key(1))
    assert p[-1] == pytest.approx(float(np.mean(np.asarray(out.violated))))
    assert t["efficacy_median"].iloc[-1] == pytest.approx(float(np.median(np.asarray(out.efficacy))))
    table = compare(chemo, {"protocol": policy}, twin, jax.random.key(1))
    assert table.loc["protocol", "violation_rate"] == pytest.approx(float(np.mean(np.asarray(out.violated))))
    assert table.loc["protocol", "efficacy 2.5%"] <= table.loc["protocol", "efficacy"] <= table.loc["protocol", "efficacy 97.5%"]
    csv = tmp_path / "s.csv"
    assert main(["schedule", "--draws", "20", "--out", str(csv)]) == 0
    assert len(__import__("pandas").read_csv(csv)) == chemo.horizon
