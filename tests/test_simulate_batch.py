"""Batching, gradients, tracing and input errors of simulate."""

import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pbpk

sim_module = sys.modules["pbpk.simulate"]
TIMES = jnp.linspace(0.0, 72.0, 37)


def random_regimens(n, seed=0):
    rng = np.random.default_rng(seed)
    regs = []
    for _ in range(n):
        count = int(rng.integers(1, 5))
        amount = float(rng.uniform(50, 200))
        every = float(rng.uniform(6, 24))
        dose = (pbpk.Bolus(amount, "central") if rng.random() < 0.5
                else pbpk.Infusion(amount, "central", duration=float(rng.uniform(0.5, 3))))
        regs.append(pbpk.Regimen.repeat(dose, every=every, count=count, start=float(rng.uniform(0, 5))))
    return regs


# The exact (matrix-exponential) path is deterministic arithmetic: batch == loop to round-off.
# The adaptive path can take a different accepted-step sequence when vmapped (round-off in the
# error estimate flips an accept/reject), so it agrees to the solver tolerance instead.
@pytest.mark.parametrize("name,rtol", [("two_compartment_iv", 1e-9), ("michaelis_menten_1cmt", 1e-7)])
def test_batch_of_64_equals_loop(lib, name, rtol):
    model = lib(name)
    regs = random_regimens(64)
    pop = model.population(64, jax.random.key(3))
    batch = model.simulate(regs, TIMES, params=pop, rtol=1e-10, atol=1e-12)
    assert batch.states.shape == (64, TIMES.shape[0], len(model.state_names))
    for i in range(0, 64, 7):
        single = model.simulate(regs[i], TIMES, params=pop.theta[i], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(batch.states[i], single.states, rtol=rtol, atol=1e-10)
    assert np.all(np.asarray(batch.status) == 0)


def test_batch_traces_once(lib, monkeypatch):
    model = lib("two_compartment_iv")
    calls = []
    original = sim_module._patient

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(sim_module, "_patient", counting)
    regs = random_regimens(64, seed=1)
    times = jnp.linspace(0.0, 60.0, 31)          # a shape no other test uses: a fresh trace
    model.simulate(regs, times, params=model.population(64, jax.random.key(0)))
    model.simulate(regs, times, params=model.population(64, jax.random.key(1)))
    assert len(calls) == 1


def fd(f, x, rel=1e-5):
    h = rel * abs(x)
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("name,dose_cmt", [("two_compartment_iv", "central"), ("one_compartment_oral", "depot"),
                                           ("michaelis_menten_1cmt", "central")])
def test_gradients_match_finite_differences(lib, name, dose_cmt):
    model = lib(name)
    reg_of = lambda amt: pbpk.Regimen.repeat(pbpk.Infusion(amt, dose_cmt, duration=1.0), every=12.0, count=2)
    first = model.parameter_names[0]

    def auc_of_param(x):
        return jnp.sum(model.simulate(reg_of(100.0), TIMES, params={first: x}, rtol=1e-10, atol=1e-12)["Cp"])

    def auc_of_dose(amt):
        return jnp.sum(model.simulate(reg_of(amt), TIMES, rtol=1e-10, atol=1e-12)["Cp"])

    x0 = float(model.theta[0])
    g_param = float(jax.grad(auc_of_param)(x0))
    g_dose = float(jax.grad(auc_of_dose)(100.0))
    assert g_param == pytest.approx(float(fd(auc_of_param, x0)), rel=1e-5)
    assert g_dose == pytest.approx(float(fd(auc_of_dose, 100.0)), rel=1e-5)


def test_gradient_through_population_batch(lib):
    model = lib("two_compartment_iv")
    pop = model.population(8, jax.random.key(0))
    reg = pbpk.Infusion(100.0, "central", duration=1.0)

    def total(scale):
        return jnp.sum(model.simulate(reg, TIMES, params=pop.theta.at[:, 0].multiply(scale))["Cp"])

    assert float(jax.grad(total)(1.0)) == pytest.approx(float(fd(total, 1.0)), rel=1e-5)


def test_population_sampling_is_reproducible_and_lognormal(lib):
    model = lib("two_compartment_iv")
    a = model.population(4000, jax.random.key(7))
    b = model.population(4000, jax.random.key(7))
    np.testing.assert_array_equal(a.theta, b.theta)
    log_cl = np.log(np.asarray(a["CL"]))
    # Mean of log CL: standard error ω/sqrt(n) = 0.3/63 = 0.0047; allow 4 SE.
    assert abs(log_cl.mean() - np.log(5.0)) < 4 * 0.3 / np.sqrt(4000)
    # SD of log CL: standard error ≈ ω/sqrt(2n) = 0.0034; allow 4 SE.
    assert abs(log_cl.std() - 0.3) < 4 * 0.3 / np.sqrt(2 * 4000)
    assert np.all(np.asarray(a["Q"]) == 8.0)       # no IIV declared


def test_covariates_enter_the_model(lib):
    m = pbpk.Model("wt", time="h")
    cl = m.parameter("CL", 5.0, "L/h")
    v = m.parameter("V", 50.0, "L")
    wt = m.covariate("WT", "kg", reference=70.0)
    c = m.compartment("central", volume=v * wt / m.quantity(70.0, "kg"))
    m.flow(c, None, cl * c.conc)
    m.observe("Cp", c.conc, "mg/L")
    model = m.compile()
    sol = model.simulate(pbpk.Bolus(100.0, "central"), jnp.array([0.0]), covariates={"WT": jnp.array([70.0, 140.0])})
    np.testing.assert_allclose(sol["Cp"][:, 0], [2.0, 1.0], rtol=1e-12)


# ----------------------------------------------------------------------------- bad input
def test_unknown_dose_compartment_names_it(lib):
    with pytest.raises(pbpk.DosingError, match=r"no compartment 'centrl'.*Did you mean 'central'"):
        lib("two_compartment_iv").simulate(pbpk.Bolus(1.0, "centrl"), TIMES)


def test_unknown_parameter_and_covariate_names(lib):
    model = lib("two_compartment_iv")
    with pytest.raises(pbpk.ModelError, match=r"no parameter 'Cl'.*Did you mean 'CL'"):
        model.simulate(pbpk.Bolus(1.0, "central"), TIMES, params={"Cl": 2.0})
    with pytest.raises(pbpk.ModelError, match=r"no covariate 'WT'"):
        model.simulate(pbpk.Bolus(1.0, "central"), TIMES, covariates={"WT": 70.0})


def test_bad_times_and_batches(lib):
    model = lib("two_compartment_iv")
    with pytest.raises(pbpk.DosingError, match="non-decreasing"):
        model.simulate(pbpk.Bolus(1.0, "central"), jnp.array([0.0, 2.0, 1.0]))
    with pytest.raises(pbpk.DosingError, match="NaN"):
        model.simulate(pbpk.Bolus(1.0, "central"), jnp.array([0.0, jnp.nan]))
    with pytest.raises(pbpk.DosingError, match="inconsistent batch sizes"):
        model.simulate([pbpk.Regimen.of(pbpk.Bolus(1.0, "central"))] * 3, TIMES,
                       params=model.population(4, jax.random.key(0)))
    with pytest.raises(pbpk.ModelError, match="params array has shape"):
        model.simulate(pbpk.Bolus(1.0, "central"), TIMES, params=jnp.ones(3))


def test_unknown_solver_and_exact_on_nonlinear(lib):
    with pytest.raises(pbpk.ModelError, match="Did you mean 'Kvaerno5'"):
        lib("two_compartment_iv").simulate(pbpk.Bolus(1.0, "central"), TIMES, solver="kvaerno5")
    with pytest.raises(pbpk.ModelError, match="needs a linear model"):
        lib("michaelis_menten_1cmt").simulate(pbpk.Bolus(1.0, "central"), TIMES, solver="exact")


def test_solution_indexing_and_table(lib):
    sol = lib("two_compartment_iv").simulate(pbpk.Bolus(100.0, "central"), TIMES)
    with pytest.raises(KeyError, match="Did you mean 'Cp'"):
        sol["cp"]
    df = sol.to_dataframe()
    assert list(df.columns[:2]) == ["TIME", "central"] and len(df) == TIMES.shape[0]
    assert df.attrs["units"]["Cp"] == "mg/L"


class ExtraElimination(eqx.Module):
    """A trainable residual term: first-order loss k·A from the central compartment."""

    k: jax.Array

    def __call__(self, t, y, theta, cov):
        return jnp.zeros_like(y).at[0].set(-self.k * y[0])


def test_residual_hook_adds_to_the_right_hand_side(lib):
    model = lib("one_compartment_iv").with_residual(ExtraElimination(jnp.asarray(0.05)))
    assert not model.is_linear
    sol = model.simulate(pbpk.Bolus(100.0, "central"), TIMES, rtol=1e-10, atol=1e-12)
    want = 2.0 * np.exp(-(0.1 + 0.05) * np.asarray(TIMES))
    np.testing.assert_allclose(sol["Cp"], want, rtol=1e-6)
    # The residual's weights are differentiable leaves of the model pytree.
    g = jax.grad(lambda m: jnp.sum(m.simulate(pbpk.Bolus(100.0, "central"), TIMES)["Cp"]))(model)
    assert float(g.residual.k) < 0
    with pytest.raises(pbpk.ModelError, match="must be callable"):
        lib("one_compartment_iv").with_residual(3.0)


def test_simulate_under_user_jit_and_vmap(lib):
    model = lib("two_compartment_iv")
    reg = pbpk.Bolus(100.0, "central")

    @jax.jit
    def cmax(cl):
        return jnp.max(model.simulate(reg, TIMES, params={"CL": cl})["Cp"])

    per_patient = jax.vmap(cmax)(jnp.array([4.0, 5.0, 6.0]))
    loop = [float(jnp.max(model.simulate(reg, TIMES, params={"CL": c})["Cp"])) for c in (4.0, 5.0, 6.0)]
    np.testing.assert_allclose(per_patient, loop, rtol=1e-12)


def test_population_keeps_its_covariates(lib):
    """Patients drawn with their own covariates are simulated with them, not with the model's
    reference values (a population passed as params carries its covariates)."""
    model = pbpk.models.load("docetaxel_bruno1996", covariates=True).compile()
    bsa = np.array([1.5, 1.8, 2.2])
    pop = model.population(3, jax.random.key(5), covariates={"BSA": bsa})
    reg = pbpk.Infusion(100.0, "central", duration=1.0)
    by_population = model.simulate(reg, TIMES, params=pop, rtol=1e-10, atol=1e-12)
    explicit = model.simulate(reg, TIMES, params=pop.theta, covariates={"BSA": bsa}, rtol=1e-10, atol=1e-12)
    reference = model.simulate(reg, TIMES, params=pop.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(by_population.states, explicit.states, rtol=1e-12)
    assert not np.allclose(by_population.states[0], reference.states[0], rtol=1e-3)
