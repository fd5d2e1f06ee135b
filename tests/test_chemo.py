"""Chemotherapy case: model composition, Friberg myelosuppression, tumour models, chemotherapy PK
and dose-modification rules, each against an analytic result, a hand-written reference or a
published number."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pbpk
from pbpk.control import CumulativeCap, HoldBelow, Protocol, ReduceAfter
from pbpk.models import carboplatin, docetaxel, doxorubicin, myelosuppression, tumour

TIGHT = dict(rtol=1e-10, atol=1e-12)


def docetaxel_friberg_by_hand(drug="docetaxel_kloft"):
    """The composed model written as one spec (the reference for composition)."""
    ps = myelosuppression.PARAMETER_SETS[drug]
    m = pbpk.Model("by_hand")
    cl = m.parameter("CL", 38.48, "L/h", source="test")
    v1 = m.parameter("V1", 7.4, "L", source="test")
    q2 = m.parameter("Q2", 1.06 * 7.4, "L/h", source="test")
    v2 = m.parameter("V2", 1.06 * 7.4 / 1.51, "L", source="test")
    q3 = m.parameter("Q3", 1.26 * 7.4, "L/h", source="test")
    v3 = m.parameter("V3", 1.26 * 7.4 / 0.084, "L", source="test")
    c, p2, p3 = m.compartment("central", volume=v1), m.compartment("shallow", volume=v2), m.compartment("deep", volume=v3)
    m.flow(c, None, cl * c.conc)
    for p, q in ((p2, q2), (p3, q3)):
        m.flow(c, p, q * c.conc)
        m.flow(p, c, q * p.conc)
    circ0 = m.parameter("Circ0", ps.circ0, "1e9/L", source="test")
    mtt = m.parameter("MTT", ps.mtt, "h", source="test")
    gam = m.parameter("gamma", ps.gamma, "", source="test")
    slope = m.parameter("slope", ps.slope, "L/umol", source="test")
    conc_umol = c.conc / m.quantity(807.9, "g/mol")
    k = 4 / mtt
    names = ["Prol", "Transit1", "Transit2", "Transit3", "Circ"]
    s = [m.state(n, initial=circ0, unit="1e9/L") for n in names]
    m.ode(s[0], k * s[0] * (1 - slope * conc_umol) * (circ0 / s[4]) ** gam - k * s[0])
    for up, x in zip(s, s[1:]):
        m.ode(x, k * up - k * x)
    m.observe("Cp", c.conc, "mg/L")
    m.observe("ANC", s[4], "1e9/L")
    return m


def test_composed_model_equals_hand_written_combined_model():
    composed = pbpk.compose(docetaxel.docetaxel_bruno1996(), myelosuppression.friberg2002("docetaxel_kloft"),
                            links={"C": "C_molar"}).compile()
    hand = docetaxel_friberg_by_hand().compile()
    reg = docetaxel.docetaxel_regimen(1.8, 100.0, cycles=2)
    t = np.linspace(0.0, 42 * 24.0, 169)
    a, b = composed.simulate(reg, t, **TIGHT), hand.simulate(reg, t, **TIGHT)
    for name in ("Cp", "ANC"):
        np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=1e-8, atol=1e-12)
    assert set(composed.parameter_names) == set(hand.parameter_names)


def test_friberg_steady_state_under_constant_exposure_is_analytic():
    """Constant C: every compartment settles at Circ0·(1 − slope·C)^(1/γ)."""
    exposure = pbpk.Model("exposure")
    c_fix = exposure.parameter("Cfix", 0.02, "umol/L", source="test")
    exposure.state("dummy", initial=0.0, unit="mg")
    exposure.ode("dummy", 0)
    model = pbpk.compose(exposure, myelosuppression.friberg2002("docetaxel"), links={"C": c_fix}).compile()
    sol = model.simulate(pbpk.Regimen(), np.array([0.0, 20_000.0]), **TIGHT)
    ps = myelosuppression.PARAMETER_SETS["docetaxel"]
    expected = ps.circ0 * (1 - ps.slope * 0.02) ** (1 / ps.gamma)
    assert float(sol["ANC"][0]) == pytest.approx(ps.circ0, rel=1e-12)
    assert float(sol["ANC"][1]) == pytest.approx(expected, rel=1e-6)


def test_composition_errors_name_the_symbol():
    pk = docetaxel.docetaxel_bruno1996()
    with pytest.raises(pbpk.ModelError, match=r"links names 'Conc', which no part declares as an input. Inputs: \['C'\]"):
        pbpk.compose(pk, myelosuppression.friberg2002(), links={"Conc": "C_molar"})
    with pytest.raises(pbpk.ModelError, match=r"parameter 'CL' .*clashes.*renamed"):
        pbpk.compose(pk, docetaxel.docetaxel_bruno1996(), links={})
    twice = pbpk.compose(pk, pbpk.renamed(docetaxel.docetaxel_bruno1996(), prefix="b_"))
    assert "b_CL" in twice.parameters and "b_central" in twice.compartments
    loose = pbpk.Model("loose")
    loose.input("C", "umol/L")
    loose.state("x", initial=1.0)
    loose.ode("x", loose.symbol("C") * loose.quantity(1.0, "L/umol/h") * loose.symbol("x"))
    with pytest.raises(pbpk.ModelError, match=r"input\(s\) \['C'\] are not connected"):
        loose.compile()
    with pytest.raises(pbpk.UnitError, match="link|define 'C'"):
        pbpk.compose(pk, myelosuppression.friberg2002(), links={"C": "central.amount"}).compile()


def test_composition_shares_inputs_and_converts_time_units():
    """One link drives both PD parts; Simeoni's per-day rates run inside an hourly PK model."""
    pk = docetaxel.docetaxel_bruno1996()
    pk.define("C_mg", pk.symbol("central") / pk.symbol("V1"), "mg/L")
    pd = pbpk.renamed(tumour.simeoni2004(), {"C": "C_tgi"})
    both = pbpk.compose(pk, myelosuppression.friberg2002(), pd, links={"C": "C_molar", "C_tgi": "C_mg"}).compile()
    assert both.time_unit == "h"
    alone = tumour.simeoni2004().compile()
    t_days = np.array([0.0, 5.0, 10.0])
    a = both.simulate(pbpk.Regimen(), t_days * 24.0, **TIGHT)
    b = alone.simulate(pbpk.Regimen(), t_days, **TIGHT)
    np.testing.assert_allclose(np.asarray(a["TW"]), np.asarray(b["TW"]), rtol=1e-6)
    # Two PD parts with the same input name read one concentration.
    second = pbpk.renamed(myelosuppression.friberg2002("paclitaxel"), prefix="pac_")
    shared = pbpk.compose(pk, myelosuppression.friberg2002(), second, links={"C": "C_molar"}).compile()
    single = pbpk.compose(pk, myelosuppression.friberg2002("paclitaxel"), links={"C": "C_molar"}).compile()
    reg, t = docetaxel.docetaxel_regimen(1.8, 75.0, cycles=1), np.linspace(0.0, 500.0, 11)
    np.testing.assert_allclose(np.asarray(shared.simulate(reg, t, **TIGHT)["pac_WBC"]),
                               np.asarray(single.simulate(reg, t, **TIGHT)["WBC"]), rtol=1e-6)


def test_neutropenia_grades_follow_ctcae():
    anc = jnp.array([2.5, 1.8, 1.2, 0.7, 0.3, 0.5, 1.0, 1.5])
    np.testing.assert_array_equal(np.asarray(myelosuppression.neutropenia_grade(anc)), [0, 1, 2, 3, 4, 3, 2, 1])


def test_simeoni_growth_switches_from_exponential_to_linear():
    model = tumour.simeoni2004(w0=0.05).compile()
    lam0, lam1 = 0.273, 0.814
    t_exp = np.log(1.0 / 0.05) / lam0          # reaches 1 g, well below λ1/λ0 = 2.98 g
    sol = model.simulate(pbpk.Regimen(), np.array([t_exp, 60.0, 61.0]), **TIGHT)
    w = np.asarray(sol["TW"])
    assert w[0] == pytest.approx(1.0, rel=1e-6)
    assert w[2] - w[1] == pytest.approx(lam1, rel=1e-6)


def _numpy_depillis2009(y, p, drug):
    T, N, L, C, I = y
    kill = lambda x: p[f"K_{x}"] * (1 - np.exp(-p[f"delta_{x}"] * drug))
    D = p["d"] * (L / T) ** p["l"] / (p["s"] + (L / T) ** p["l"])
    return np.array([
        p["a"] * T * (1 - p["b"] * T) - p["c"] * N * T - D * T - kill("T") * T,
        p["f"] * (p["e_frac"] * C - N) - p["p"] * N * T + p["p_N"] * N * I / (p["g_N"] + I) - kill("N") * N,
        -p["theta"] * p["m"] * L / (p["theta"] + I) + p["j"] * T * L / (p["k"] + T) - p["q"] * L * T
        + (p["r1"] * N + p["r2"] * C) * T - p["u"] * L ** 2 * C * I / (p["kappa"] + I) - kill("L") * L
        + p["p_I"] * L * I / (p["g_I"] + I),
        p["beta"] * (p["alpha_beta"] - C) - kill("C") * C,
        -p["mu_I"] * I + p["phi"] * C + p["omega"] * L * I / (p["zeta"] + I),
    ])


def test_tumour_immune_right_hand_sides_match_the_published_equations():
    rng = np.random.default_rng(3)
    model = tumour.depillis2009(patient=10).compile()
    p = dict(zip(model.parameter_names, np.asarray(model.theta)))
    names = ("T", "N", "L", "C_lymph", "I")
    for _ in range(3):
        y = np.array([1e7, 2e8, 5e5, 2e9, 1000.0]) * rng.uniform(0.5, 2.0, 5)
        drug = rng.uniform(0.0, 2.0)
        full = np.zeros(len(model.state_names))
        for n, v in zip(names, y):
            full[model.state_names.index(n)] = v
        full[model.state_names.index("drug")] = drug    # 1 L compartment: amount = mg/L
        got = np.asarray(model.rhs(0.0, jnp.asarray(full), model.theta, model.covariate_reference))
        np.testing.assert_allclose([got[model.state_names.index(n)] for n in names],
                                   _numpy_depillis2009(y, p, drug), rtol=1e-10)

    kz = tumour.kuznetsov1994().compile()
    q = tumour.KUZNETSOV_PARAMETERS
    e, t = 4e5, 3e7
    got = np.asarray(kz.rhs(0.0, jnp.array([e, t]), kz.theta, kz.covariate_reference))
    ref = [q["s"] + q["p"] * e * t / (q["g"] + t) - q["m"] * e * t - q["d"] * e,
           q["a"] * t * (1 - q["b"] * t) - q["n"] * e * t]
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_carboplatin_calvert_dose_reaches_the_target_auc():
    assert carboplatin.calvert_dose(5, 90) == pytest.approx(575.0)          # Calvert's worked example [S]
    assert carboplatin.calvert_dose(5, 160) == pytest.approx(5 * 150.0)     # GFR capped at 125
    with pytest.raises(pbpk.DosingError, match="must be positive"):
        carboplatin.calvert_dose(5, -3)
    model = pbpk.models.load("carboplatin_calvert").compile()
    sol = model.simulate(carboplatin.carboplatin_regimen(6, 70, cycles=1), np.array([400.0]),
                         covariates={"GFR": 70.0})
    cleared = float(sol.states[0, model.state_names.index("eliminated")])
    # AUC = eliminated / CL with CL = GFR + 25 mL/min; in mg·min/mL
    assert cleared / ((70 + 25) * 60 / 1000) * 60 / 1000 == pytest.approx(6.0, rel=1e-6)


def test_doxorubicin_cumulative_dose_and_published_exposure():
    model = pbpk.models.load("doxorubicin_kontny2013").compile()
    t = np.linspace(0.0, 21 * 24.0, 20161)
    sol = model.simulate(doxorubicin.ac_regimen(1.8, cycles=1), t)
    cp = np.asarray(sol["Cp"])
    assert cp.max() == pytest.approx(2.75, rel=0.01)                        # reference_models §2.3 [D]
    assert np.trapezoid(cp, t) == pytest.approx(2.03, rel=0.01)
    two = model.simulate(doxorubicin.ac_regimen(2.0, cycles=3), np.array([1.0, 22 * 24.0, 60 * 24.0]),
                         covariates={"BSA": 2.0})
    np.testing.assert_allclose(np.asarray(two["CUMDOSE"]), [60.0, 120.0, 180.0], rtol=1e-9)


@pytest.fixture(scope="module")
def docetaxel_patient():
    return pbpk.compose(docetaxel.docetaxel_bruno1996(), myelosuppression.friberg2002("docetaxel_kloft"),
                        links={"C": "C_molar"}).compile()


def test_cycle_simulator_matches_simulate(docetaxel_patient):
    model = docetaxel_patient
    proto = Protocol(levels=(100.0,), cycles=3)
    res = proto.run(model, rtol=1e-10, atol=1e-12)
    reg = docetaxel.docetaxel_regimen(1.8, 100.0, cycles=3)
    times = np.asarray(res.grid_day[1]) * 24.0
    ref = model.simulate(reg, times, **TIGHT)
    np.testing.assert_allclose(np.asarray(res["ANC"][1]), np.asarray(ref["ANC"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(res.dose[:3]), 180.0)


def test_label_rules_hold_reduce_and_stop(docetaxel_patient):
    model = docetaxel_patient
    proto = docetaxel.docetaxel_label_protocol(100.0, cycles=4)
    names = list(model.parameter_names)
    # A patient with baseline ANC 1.2 (< 1.5) is never dosed: every visit is a 7-day hold.
    low = model.theta.at[names.index("Circ0")].set(1.2)
    r = proto.run(model, low)
    assert not np.any(np.asarray(r.dose)) and np.all(np.asarray(r.held))
    np.testing.assert_allclose(np.diff(np.asarray(r.start_day)), 7.0)
    # A sensitive patient: grade-4 neutropenia > 7 days after each dose steps 100 → 75 → 60 → stop.
    sensitive = model.theta.at[names.index("slope")].mul(4.0)
    r = proto.run(model, sensitive)
    days = np.asarray(r.days_below)[:, 0]
    doses = np.asarray(r.dose)
    given = doses > 0
    assert np.all(days[given] > 7.0)
    np.testing.assert_allclose(doses[given][:3], [180.0, 135.0, 108.0])
    assert given.sum() == 3 and bool(np.asarray(r.stopped)[-1])
    # Days below 0.5 agree with a fine-grid simulation of cycle 1 (to the 6-h grid resolution).
    t = np.arange(0.0, 21 * 24.0, 0.25)
    ref = model.simulate(docetaxel.docetaxel_regimen(1.8, 100.0, cycles=1), t, params=sensitive, **TIGHT)
    assert days[0] == pytest.approx(np.sum(np.asarray(ref["ANC"]) < 0.5) * 0.25 / 24.0, abs=0.25)


def test_cumulative_cap_limits_the_last_dose():
    model = pbpk.models.load("doxorubicin_kontny2013").compile()
    proto = Protocol(levels=(60.0,), cycles=4, infusion_hours=0.25, rules=(CumulativeCap(180.0, prior=30.0),))
    r = proto.run(model, bsa=1.8)
    np.testing.assert_allclose(np.asarray(r.dose[:4]), np.array([60.0, 60.0, 30.0, 0.0]) * 1.8, rtol=1e-12)
    # the model's own cumulative-dose output agrees with the protocol's tally
    assert float(r["CUMDOSE"][3, 0]) == pytest.approx(150.0, rel=1e-5)
    # a patient with 400 mg/m² of prior anthracycline gets 50 mg/m² more, then nothing (cap 450)
    prior = doxorubicin.ac_protocol(cycles=2, prior_mg_m2=400.0).run(model, bsa=2.0)
    np.testing.assert_allclose(np.asarray(prior.dose[:2]), [100.0, 0.0], rtol=1e-12)
    with pytest.raises(pbpk.ModelError, match="no observation 'ANC'"):
        Protocol(levels=(60.0,), rules=(HoldBelow("ANC", 1.5),)).run(model)
    with pytest.raises(pbpk.ModelError, match="highest first"):
        Protocol(levels=(60.0, 75.0))


def test_protocol_cohort_is_one_compilation(docetaxel_patient):
    model = docetaxel_patient
    pop = model.population(8, jax.random.key(1))
    proto = Protocol(levels=(100.0, 75.0, 60.0), cycles=2, rules=(ReduceAfter("ANC", 0.5),))
    cohort = proto.run_cohort(model, pop.theta)
    single = proto.run(model, pop.theta[3])
    np.testing.assert_allclose(np.asarray(cohort.nadir("ANC")[3]), np.asarray(single.nadir("ANC")), rtol=1e-9)
