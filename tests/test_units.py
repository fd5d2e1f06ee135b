"""Units: pharmacometric unit strings, exact conversion factors, unit-checked and unit-scaled
compiled right-hand sides, and the errors that name the offending field or term."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import pbpk
from pbpk.errors import UnitError
from pbpk.spec import parse_unit
from pbpk.spec.units import convert_factor

NO_COV = jnp.zeros((0,))


def factor(frm, to):
    return convert_factor(parse_unit(frm), parse_unit(to), what="test")


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("text, same_as", [
    ("mg", "milligram"),
    ("µg", "microgram"),      # U+00B5 MICRO SIGN
    ("μg", "microgram"),      # U+03BC GREEK SMALL LETTER MU
    ("ug", "microgram"),
    ("ng", "nanogram"),
    ("mol", "mole"),
    ("nmol", "nanomole"),
    ("GBq", "gigabecquerel"),
    ("MBq", "megabecquerel"),
    ("L", "liter"),
    ("mL", "milliliter"),
    ("h", "hour"),
    ("min", "minute"),
    ("d", "day"),
    ("week", "7 * day"),
    ("kg", "kilogram"),
    ("m²", "meter**2"),
    ("m^2", "meter**2"),
    ("cells", "cell"),
    ("10^9/L", "1e9 / liter"),
    ("x10^9/L", "1e9 / liter"),
    ("mg/m^2", "milligram / meter**2"),
    ("mg/m²", "milligram / meter**2"),
    ("L/h/kg", "liter / hour / kilogram"),
    ("mL/min/kg", "milliliter / minute / kilogram"),
    ("1/d", "1 / day"),
])
def test_pharmacometric_units_parse(text, same_as):
    q = parse_unit(text)
    ref = pbpk.spec.units.ureg.Quantity(same_as)
    assert q.dimensionality == ref.dimensionality
    assert float((q / ref).to_reduced_units().to("dimensionless").magnitude) == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("text", [None, "", "1", "dimensionless", "-"])
def test_dimensionless_spellings(text):
    assert parse_unit(text).dimensionless


def test_cells_are_their_own_dimension():
    # a cell count must not silently combine with mg or be dimensionless
    assert not parse_unit("cells").dimensionless
    with pytest.raises(UnitError):
        factor("cells", "mg")


@pytest.mark.parametrize("frm, to, expected", [
    ("mL/min", "L/h", 0.06),          # 1 mL/min = 60 mL/h = 0.06 L/h
    ("ng/mL", "µg/L", 1.0),           # 1e-9 g / 1e-3 L = 1e-6 g/L = 1 µg/L
    ("mg/L", "µg/mL", 1.0),
    ("mg/L", "ng/mL", 1000.0),
    # NB: ng/mL is NOT mg/L: 1 ng/mL = 1 µg/L = 1e-3 mg/L.
    ("ng/mL", "mg/L", 1e-3),
    ("µg/L", "mg/L", 1e-3),
    ("ug/L", "mg/L", 1e-3),
    ("GBq", "MBq", 1000.0),
    ("week", "d", 7.0),
    ("d", "h", 24.0),
    ("1/d", "1/h", 1 / 24),
    ("10^9/L", "1/µL", 1000.0),       # ANC 1e9/L = 1000 cells per µL
    ("L/h/kg", "mL/min/kg", 1000 / 60),
    ("nmol", "mol", 1e-9),
])
def test_conversion_factors(frm, to, expected):
    assert factor(frm, to) == pytest.approx(expected, rel=1e-12)


def test_inconvertible_units_raise_naming_the_field():
    with pytest.raises(UnitError, match=r"test: unit 'mg' .* not convertible to 'L'"):
        convert_factor(parse_unit("mg"), parse_unit("L"), what="test")


@pytest.mark.parametrize("bad", ["furlong^", "mgg", "mg/", "L/h kg)", "10^^9/L"])
def test_bad_unit_string_raises_naming_the_parameter(bad):
    m = pbpk.Model("m")
    with pytest.raises(UnitError, match=r"parameter 'CL': cannot parse unit") as exc:
        m.parameter("CL", 1.0, unit=bad)
    assert repr(bad) in str(exc.value)
    assert "Examples of valid units" in str(exc.value)
    assert "CL" not in m.parameters   # nothing half-declared


def test_bad_unit_strings_elsewhere_name_their_field():
    with pytest.raises(UnitError, match="Model time unit"):
        pbpk.Model("m", time="hourz")
    m = pbpk.Model("m")
    with pytest.raises(UnitError, match="covariate 'WT'"):
        m.covariate("WT", unit="kgs_")
    with pytest.raises(UnitError, match="state 'T'"):
        m.state("T", initial=1.0, unit="celz")
    with pytest.raises(UnitError, match="observation 'Cp'"):
        m.observe("Cp", 1.0, unit="mg/LL")
    with pytest.raises(UnitError, match="define 'k'"):
        m.define("k", 1.0, unit="1/hx")
    assert "k" not in m.defines          # nothing half-declared


# --------------------------------------------------------------------------- scaling in compiled models
def _one_cmt(cl_value, cl_unit, time="h"):
    m = pbpk.Model("one", time=time, amount="mg", volume="L")
    CL = m.parameter("CL", cl_value, unit=cl_unit)
    V = m.parameter("V", 10.0, unit="L")
    c = m.compartment("central", volume=V)
    m.flow(c, None, CL * c.conc)
    return m.compile()


def test_parameter_in_ml_per_min_is_scaled_exactly_into_model_time():
    in_ml_min = _one_cmt(500.0, "mL/min")          # 500 mL/min = 30 L/h
    in_l_h = _one_cmt(30.0, "L/h")
    y = jnp.array([100.0, 3.0])
    got = in_ml_min.rhs(0.0, y, in_ml_min.theta, NO_COV)
    want = in_l_h.rhs(0.0, y, in_l_h.theta, NO_COV)
    # hand-scaled: CL[L/h] = 500 * 0.06; d(central)/dt = -CL*A/V
    hand = -500.0 * 0.06 * 100.0 / 10.0
    np.testing.assert_allclose(got, [hand, -hand], rtol=1e-14)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    # the user-facing parameter stays in its declared unit
    assert in_ml_min.parameters["CL"] == 500.0
    assert in_ml_min.units["CL"] == "mL/min"
    # and the scale applies at any parameter value, not only the typical one
    theta = in_ml_min.params(CL=250.0)
    np.testing.assert_allclose(in_ml_min.rhs(0.0, y, theta, NO_COV)[0], -250.0 * 0.06 * 100.0 / 10.0, rtol=1e-14)


def test_rate_constant_per_hour_in_a_model_in_days():
    m = pbpk.Model("tgi", time="d")
    k = m.parameter("k", 0.01, unit="1/h")
    T = m.state("T", initial=1e6, unit="cells")
    m.ode(T, k * T)
    model = m.compile()
    np.testing.assert_allclose(model.rhs(0.0, jnp.array([2e6]), model.theta, NO_COV), [0.01 * 24 * 2e6],
                               rtol=1e-14)


def test_mixed_units_in_min_max_are_rescaled_before_comparison():
    m = pbpk.Model("mix", time="h")
    CL = m.parameter("CL", 5.0, unit="L/h")
    Q = m.parameter("Q", 100.0, unit="mL/min")   # 6 L/h: larger than CL despite the smaller number
    V = m.parameter("V", 10.0, unit="L")
    c = m.compartment("central", volume=V)
    m.flow(c, None, "max(CL, Q) * central.conc")
    model = m.compile()
    y = jnp.array([10.0, 0.0])
    np.testing.assert_allclose(model.rhs(0.0, y, model.theta, NO_COV)[0], -6.0 * 10.0 / 10.0, rtol=1e-14)
    theta = model.params(Q=50.0)                 # 3 L/h < CL
    np.testing.assert_allclose(model.rhs(0.0, y, theta, NO_COV)[0], -5.0 * 10.0 / 10.0, rtol=1e-14)


def test_observation_in_other_concentration_unit_is_scaled():
    m = pbpk.Model("obs")
    CL = m.parameter("CL", 1.0, unit="L/h")
    V = m.parameter("V", 10.0, unit="L")
    c = m.compartment("central", volume=V)
    m.flow(c, None, CL * c.conc)
    m.observe("Cp_ng", c.conc, unit="ng/mL")     # mg/L -> ng/mL is x1000
    m.observe("Cp_mg", c.conc, unit="mg/L")
    model = m.compile()
    obs = model.observe(0.0, jnp.array([20.0, 0.0]), model.theta, NO_COV)
    np.testing.assert_allclose(obs, [2000.0, 2.0], rtol=1e-14)
    assert model.units["Cp_ng"] == "ng/mL"


def test_lag_given_in_minutes_is_converted_to_model_time():
    m = pbpk.Model("lag", time="h")
    ka = m.parameter("ka", 1.0, unit="1/h")
    tlag = m.parameter("tlag", 30.0, unit="min")
    depot = m.compartment("depot", volume=1.0, lag=tlag)
    m.flow(depot, None, ka * depot.amount)
    model = m.compile()
    f, lag, dur, rate = model.dose_properties(model.theta, NO_COV)
    assert float(lag[model.state_index("depot")]) == pytest.approx(0.5, rel=1e-14)
    assert float(f[0]) == 1.0


# --------------------------------------------------------------------------- unit errors
def test_flow_rate_in_litres_per_hour_instead_of_mg_per_hour_names_the_term():
    m = pbpk.Model("m", time="h", amount="mg")
    R = m.parameter("R", 2.0, unit="L/h")       # meant mg/h
    V = m.parameter("V", 1.0, unit="L")
    k = m.parameter("k", 0.1, unit="1/h")
    c = m.compartment("central", volume=V)
    m.flow(None, c, R)
    m.flow(c, None, k * c.amount)
    with pytest.raises(UnitError) as exc:
        m.compile()
    msg = str(exc.value)
    assert "flow outside -> central" in msg
    assert "`R`" in msg
    assert "[L/h]" in msg and "[mg/h]" in msg


def test_ode_term_with_wrong_unit_names_the_term():
    m = pbpk.Model("m", time="d")
    kg = m.parameter("kg", 0.1, unit="1/d")
    Tmax = m.parameter("Tmax", 1e9, unit="cells")
    T = m.state("T", initial=1e6, unit="cells")
    m.ode(T, kg * T)
    m.ode(T, "Tmax")                     # cells, not cells/d
    with pytest.raises(UnitError, match=r"dT/dt term `Tmax`") as exc:
        m.compile()
    assert "`Tmax`" in str(exc.value)
    assert "[cells] but [cells/d]" in str(exc.value)


def test_adding_incompatible_quantities_names_both_parts():
    m = pbpk.Model("m", time="d")
    kg = m.parameter("kg", 0.1, unit="1/d")
    V = m.parameter("V", 1.0, unit="L")
    T = m.state("T", initial=1e6, unit="cells")
    m.ode(T, "kg * (T + V)")
    with pytest.raises(UnitError, match=r"cannot combine") as exc:
        m.compile()
    assert "dT/dt" in str(exc.value) and "V" in str(exc.value)


@pytest.mark.parametrize("fn", ["exp", "log", "sqrt(1) * exp", "tanh"])
def test_transcendental_functions_require_dimensionless_arguments(fn):
    m = pbpk.Model("m", time="d")
    kg = m.parameter("kg", 0.1, unit="1/d")
    Tmax = m.parameter("Tmax", 1e9, unit="cells")
    T = m.state("T", initial=1e6, unit="cells")
    m.ode(T, f"kg * T * {fn}(Tmax)")
    with pytest.raises(UnitError) as exc:
        m.compile()
    msg = str(exc.value)
    assert "argument `Tmax`" in msg and "expected a dimensionless quantity" in msg
    assert "dT/dt" in msg


def test_log_of_a_ratio_is_fine():
    m = pbpk.Model("m", time="d")
    kg = m.parameter("kg", 0.1, unit="1/d")
    Tmax = m.parameter("Tmax", 1e9, unit="cells")
    T = m.state("T", initial=1e6, unit="cells")
    m.ode(T, "kg * T * log(Tmax / T)")
    m.compile()


def test_power_with_symbolic_exponent_needs_dimensionless_base():
    m = pbpk.Model("m")
    n = m.parameter("n", 2.0)
    V = m.parameter("V", 1.0, unit="L")
    k = m.parameter("k", 1.0, unit="1/h")
    c = m.compartment("central", volume=V)
    m.flow(c, None, "k * central.amount * V^n")
    with pytest.raises(UnitError, match=r"argument `V` .* expected a dimensionless quantity"):
        m.compile()


def test_piecewise_branches_must_share_a_dimension():
    m = pbpk.Model("m")
    k = m.parameter("k", 1.0, unit="1/h")
    R = m.parameter("R", 1.0, unit="mg/h")
    V = m.parameter("V", 1.0, unit="L")
    c = m.compartment("central", volume=V)
    m.flow(None, c, "if_else(t > 1, R, V)")
    m.flow(c, None, k * c.amount)
    with pytest.raises(UnitError, match=r"cannot combine `V`"):
        m.compile()


# --------------------------------------------------------------------------- reference values with units
def _weight_model(volume_of):
    m = pbpk.Model("wt")
    CL = m.parameter("CL", 5.0, unit="L/h")
    V1 = m.parameter("V1", 10.0, unit="L")
    WT = m.covariate("WT", unit="kg", reference=70.0)
    c = m.compartment("central", volume=volume_of(m, V1, WT))
    m.flow(c, None, CL * c.conc)
    return m


def test_quantity_makes_weight_ratio_dimensionless():
    model = _weight_model(lambda m, V1, WT: V1 * WT / m.quantity(70, "kg")).compile()
    y = jnp.array([100.0, 0.0])
    for wt in (70.0, 35.0, 140.0):
        got = model.rhs(0.0, y, model.theta, jnp.array([wt]))
        v = 10.0 * wt / 70.0
        np.testing.assert_allclose(got, [-5.0 * 100.0 / v, 5.0 * 100.0 / v], rtol=1e-14)


def test_quantity_in_other_unit_is_converted():
    # 70 kg given as 70000 g is the same reference weight
    model = _weight_model(lambda m, V1, WT: V1 * WT / m.quantity(70000, "g")).compile()
    got = model.rhs(0.0, jnp.array([100.0, 0.0]), model.theta, jnp.array([35.0]))
    np.testing.assert_allclose(got[0], -5.0 * 100.0 / 5.0, rtol=1e-14)


def test_bare_reference_number_in_volume_raises_with_quantity_hint():
    m = _weight_model(lambda m, V1, WT: V1 * WT / 70)
    with pytest.raises(UnitError) as exc:
        m.compile()
    msg = str(exc.value)
    assert "compartment 'central' volume" in msg      # names the volume, not some flow using it
    assert "[kg*L] but [L] was expected" in msg
    assert "m.quantity(" in msg
    assert "WT / m.quantity(70, 'kg')" in msg


def test_quantity_rejects_non_numbers_and_bad_units():
    m = pbpk.Model("m")
    with pytest.raises(pbpk.ModelError, match="quantity: value 'seventy'"):
        m.quantity("seventy", "kg")
    with pytest.raises(UnitError, match="cannot parse unit 'kgg'"):
        m.quantity(70, "kgg")


def test_compiled_unit_table():
    model = _weight_model(lambda m, V1, WT: V1 * WT / m.quantity(70, "kg")).compile()
    assert model.units == {"central": "mg", "eliminated": "mg", "CL": "L/h", "V1": "L", "WT": "kg"}
    assert model.time_unit == "h" and model.amount_unit == "mg"


def test_radioactivity_amounts():
    # 177Lu-PSMA style: amounts in MBq, time in h, physical decay constant ln2/T1/2 in 1/d
    m = pbpk.Model("lu", time="h", amount="MBq")
    lam = m.parameter("lam", math.log(2) / 6.647, unit="1/d")
    V = m.parameter("V", 5.0, unit="L")
    c = m.compartment("blood", volume=V)
    m.flow(c, None, lam * c.amount)
    model = m.compile()
    got = model.rhs(0.0, jnp.array([7400.0, 0.0]), model.theta, NO_COV)
    np.testing.assert_allclose(got[0], -math.log(2) / 6.647 / 24 * 7400.0, rtol=1e-13)
