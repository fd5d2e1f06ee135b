"""Model specification: name and equation validation with clear errors, safe string parsing,
compilation (linearity, A/b, the hidden ``eliminated`` state, mass balance, parameter
transforms, defines, observations) and the residual error models."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from scipy import stats

import pbpk
from pbpk.errors import ModelError, UnitError
from pbpk.spec import FUNCTIONS, parse_expression

NO_COV = jnp.zeros((0,))


def base(name="m"):
    m = pbpk.Model(name, time="h", amount="mg", volume="L")
    CL = m.parameter("CL", 2.0, unit="L/h")
    V = m.parameter("V", 10.0, unit="L")
    c = m.compartment("central", volume=V)
    return m, CL, V, c


def two_cmt(**values):
    p = {"CL": 36.0, "V1": 8.0, "Q": 10.0, "V2": 90.0} | values
    m = pbpk.Model("docetaxel_2cmt", time="h", amount="mg", volume="L")
    CL = m.parameter("CL", p["CL"], unit="L/h", iiv=0.25)
    V1 = m.parameter("V1", p["V1"], unit="L", iiv=0.3)
    Q = m.parameter("Q", p["Q"], unit="L/h")
    V2 = m.parameter("V2", p["V2"], unit="L")
    central = m.compartment("central", volume=V1)
    periph = m.compartment("periph", volume=V2)
    m.flow(central, None, CL * central.conc)
    m.flow(central, periph, Q * central.conc)
    m.flow(periph, central, Q * periph.conc)
    m.observe("Cp", central.conc, unit="mg/L", error=pbpk.Proportional(0.15))
    return m


@pytest.fixture(scope="module")
def two_cmt_model():
    return two_cmt().compile()


# =========================================================================== names
def test_undeclared_symbol_in_string_names_it_with_suggestion():
    m, CL, V, c = base()
    with pytest.raises(ModelError) as exc:
        m.flow(c, None, "CLL * central.conc")
    msg = str(exc.value)
    assert "undeclared name 'CLL'" in msg and "Did you mean 'CL'?" in msg
    assert "flow central -> outside" in msg            # names where it happened
    assert not m.flows


def test_undeclared_symbol_in_sympy_expression_from_another_model():
    m, CL, V, c = base()
    other = pbpk.Model("other")
    CLR = other.parameter("CLR", 1.0, unit="L/h")
    KA = other.parameter("KA", 1.0, unit="1/h")
    with pytest.raises(ModelError, match=r"symbol CLR is not declared in model 'm'\. Did you mean 'CL'\?"):
        m.flow(c, None, CLR * c.conc)
    with pytest.raises(ModelError, match=r"symbol KA is not declared in model 'm'") as exc:
        m.ode(c, KA * c.amount)
    assert "Did you mean" not in str(exc.value)        # nothing close: no noise
    assert not m.flows and not m.odes


def test_constant_from_another_model_is_rejected():
    # another model's unit-carrying constant must not silently become one of ours
    m, CL, V, c = base()
    WT = m.covariate("WT", unit="kg", reference=70.0)
    other = pbpk.Model("other")
    seventy = other.quantity(70, "kg")
    with pytest.raises(ModelError, match="constant .* belongs to another model"):
        m.flow(c, None, CL * c.conc * WT / seventy)


def test_plain_sympy_symbol_with_a_declared_name_is_that_symbol():
    m, CL, V, c = base()
    m.flow(c, None, sp.Symbol("CL") * c.conc)            # no real=True assumption
    model = m.compile()
    np.testing.assert_allclose(model.rhs(0.0, jnp.array([10.0, 0.0]), model.theta, NO_COV), [-2.0, 2.0])


@pytest.mark.parametrize("declare, kind", [
    (lambda m: m.parameter("central", 1.0), "state"),
    (lambda m: m.compartment("CL", volume=1.0), "parameter"),
    (lambda m: m.parameter("CL", 1.0), "parameter"),
    (lambda m: m.covariate("V", unit="L"), "parameter"),
    (lambda m: m.state("V", initial=0.0), "parameter"),
    (lambda m: m.define("central", 1.0), "state"),
    (lambda m: m.observe("CL", 1.0), "parameter"),
])
def test_duplicate_names_are_rejected(declare, kind):
    m, CL, V, c = base()
    with pytest.raises(ModelError, match=rf"duplicate name '\w+': already declared as a {kind}\."):
        declare(m)


def test_parameter_may_not_reuse_an_observation_name():
    m, CL, V, c = base()
    m.flow(c, None, CL * c.conc)
    m.observe("Cp", c.conc, unit="mg/L")
    with pytest.raises(ModelError, match=r"duplicate name 'Cp': already declared as an observation"):
        m.parameter("Cp", 1.0)
    with pytest.raises(ModelError, match=r"duplicate observation 'Cp'"):
        m.observe("Cp", c.conc, unit="mg/L")


@pytest.mark.parametrize("name", ["t", "time", "eliminated", "exp", "log", "hill", "pi", "e"])
def test_reserved_names(name):
    m = pbpk.Model("m")
    with pytest.raises(ModelError, match=rf"parameter name '{name}' is reserved"):
        m.parameter(name, 1.0)


@pytest.mark.parametrize("name", ["1CL", "C L", "CL-2", "", "lambda", "class", "V.1", 3])
def test_invalid_identifiers(name):
    m = pbpk.Model("m")
    with pytest.raises(ModelError, match=r"parameter name .* is not a valid identifier"):
        m.parameter(name, 1.0)


def test_underscore_names_are_reserved():
    m = pbpk.Model("m")
    with pytest.raises(ModelError, match=r"'_ka': names starting with '_' are reserved"):
        m.parameter("_ka", 1.0)


def test_state_without_equation():
    m, CL, V, c = base()
    m.compartment("periph", volume=V)
    m.flow(c, None, CL * c.conc)
    with pytest.raises(ModelError, match=r"state 'periph' has no equation.*m\.ode\(periph"):
        m.compile()


def test_model_without_states():
    m = pbpk.Model("empty")
    m.parameter("CL", 1.0)
    with pytest.raises(ModelError, match=r"model 'empty' has no states"):
        m.compile()


def test_raw_state_needs_initial_condition():
    m = pbpk.Model("m", time="d")
    with pytest.raises(ModelError, match=r"state 'T' has no initial condition: pass initial=.*cells"):
        m.state("T", unit="cells")
    assert "T" not in m.states


def test_ode_on_unknown_state_suggests():
    m = pbpk.Model("m", time="d")
    m.state("Tumour", initial=1.0, unit="cells")
    with pytest.raises(ModelError, match=r"unknown state 'Tumor'\. Did you mean 'Tumour'\?"):
        m.ode("Tumor", 0)


def test_flow_to_unknown_compartment_suggests():
    m, CL, V, c = base()
    m.compartment("peripheral", volume=V)
    with pytest.raises(ModelError, match=r"flow target: unknown compartment 'periferal'\. Did you mean 'peripheral'\?"):
        m.flow(c, "periferal", CL * c.conc)
    with pytest.raises(ModelError, match=r"flow source: unknown compartment 'centrl'\. Did you mean 'central'\?"):
        m.flow("centrl", None, CL * c.conc)
    with pytest.raises(ModelError, match="at least one end must be a compartment"):
        m.flow(None, None, CL)
    with pytest.raises(ModelError, match="source and target are the same compartment"):
        m.flow(c, "central", CL * c.conc)
    with pytest.raises(ModelError, match=r"flow target 3 must be a compartment"):
        m.flow(c, 3, CL * c.conc)


def test_non_positive_volume_with_known_value():
    m, CL, V, c = base()
    m.flow(c, None, CL * c.conc)
    d = m.compartment("depot", volume=-1.0)
    m.flow(d, None, CL * d.conc)
    with pytest.raises(ModelError, match=r"compartment 'depot': volume `-1\.0` evaluates to -1 .*positive volume"):
        m.compile()

    m = pbpk.Model("m")
    CL = m.parameter("CL", 1.0, unit="L/h")
    V = m.parameter("Vc", 0.0, unit="L")
    c = m.compartment("central", volume=V)
    m.flow(c, None, CL * c.conc)
    with pytest.raises(ModelError, match=r"compartment 'central': volume `Vc` evaluates to 0"):
        m.compile()


def test_volume_without_known_value_is_not_rejected():
    # a covariate without a reference has no typical value: positivity cannot be checked
    m = pbpk.Model("m")
    CL = m.parameter("CL", 1.0, unit="L/h")
    VOL = m.covariate("VOL", unit="L")
    c = m.compartment("central", volume=VOL)
    m.flow(c, None, CL * c.conc)
    m.compile()


def test_negative_flow_with_known_value():
    m = pbpk.Model("m")
    CL = m.parameter("CL", -1.0, unit="L/h")
    V = m.parameter("V", 1.0, unit="L")
    c = m.compartment("central", volume=V)
    m.flow(c, None, CL * c.conc)
    with pytest.raises(ModelError, match=r"flow central -> outside: rate `CL\*central/V` is negative \(-1\)"
                                         r".*reverse the direction"):
        m.compile()


def test_parameter_value_outside_bounds():
    m = pbpk.Model("m")
    with pytest.raises(ModelError, match=r"parameter 'F': typical value 1\.5 lies outside its bounds \(0, 1\)"):
        m.parameter("F", 1.5, bounds=(0, 1))
    with pytest.raises(ModelError, match=r"parameter 'F': bounds \(1, 0\) must be \(lower, upper\)"):
        m.parameter("F", 0.5, bounds=(1, 0))
    assert "F" not in m.parameters


@pytest.mark.parametrize("value", ["two", None, float("nan"), float("inf")])
def test_parameter_value_must_be_a_finite_number(value):
    m = pbpk.Model("m")
    with pytest.raises(ModelError, match=r"parameter 'CL': value .* (is not a number|is not finite)"):
        m.parameter("CL", value)


@pytest.mark.parametrize("iiv", [-0.1, float("nan"), "0.3", True, [0.1]])
def test_bad_iiv(iiv):
    m = pbpk.Model("m")
    with pytest.raises(ModelError, match=r"parameter 'CL': iiv=.* must be a non-negative number"):
        m.parameter("CL", 1.0, iiv=iiv)


def test_iiv_needs_positive_typical_value():
    m = pbpk.Model("m")
    with pytest.raises(ModelError, match=r"parameter 'E0': log-normal IIV needs a positive typical value"):
        m.parameter("E0", -1.0, iiv=0.2)
    m.parameter("E1", -1.0, iiv=0.0)     # no variability: fine


# =========================================================================== safe parsing
NAMES = {"CL": sp.Symbol("CL", real=True), "V": sp.Symbol("V", real=True)}


@pytest.mark.parametrize("payload", [
    "__import__('os').system('touch {p}')",
    "open('{p}', 'w')",
    "exec(\"open('{p}', 'w')\")",
    "eval(\"open('{p}', 'w')\")",
    "(lambda: open('{p}', 'w'))()",
    "CL.__class__.__mro__[1].__subclasses__()",
    "[open('{p}', 'w') for _ in '1']",
    "CL if open('{p}', 'w') else V",
    "exp(open('{p}', 'w'))",
    "max(CL, key=open('{p}', 'w'))",
])
def test_malicious_strings_raise_and_execute_nothing(payload, tmp_path):
    target = tmp_path / "pwned"
    text = payload.format(p=target)
    with pytest.raises(ModelError):
        parse_expression(text, NAMES)
    m, CL, V, c = base()
    with pytest.raises(ModelError):
        m.flow(c, None, text)
    assert not target.exists()
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("text, message", [
    ("CL.__class__", r"attribute access `\.__class__` is only allowed on compartments"),
    ("CL.real", r"attribute access `\.real` is only allowed on compartments"),
    ("central.conc.__class__", r"attribute access `\.__class__`"),
    ("central.__dict__", r"compartment 'central' has no attribute '__dict__'"),
    ("central.cnc", r"compartment 'central' has no attribute 'cnc' Did you mean 'conc'\?"),
    ("CL[0]", r"Subscript is not allowed"),
    ("(lambda x: x)(CL)", r"only calls of whitelisted functions by name"),
    ("max(CL, V, key=1)", r"keyword arguments are not allowed in max\(\)"),
    ("foo(CL)", r"function 'foo' is not allowed"),
    ("exq(CL)", r"function 'exq' is not allowed.*Did you mean 'exp'\?"),
    ("getattr(CL, 'x')", r"function 'getattr' is not allowed"),
    ("'abc'", r"literal 'abc' is not a number"),
    ("True", r"literal True is not a number"),
    ("CL == V", r"comparison Eq is not allowed"),
    ("CL // V", r"operator FloorDiv is not allowed"),
    ("~CL", r"operator Invert is not allowed"),
    ("exp", r"function 'exp' used without a call"),
    ("(CL, V)", r"Tuple is not allowed"),
    ("f'{CL}'", r"JoinedStr is not allowed"),
    ("CL; V", r"cannot parse 'CL; V'"),
    ("exp(CL, V)", r"wrong number of arguments for exp\(\)"),
    ("piecewise(CL > 1, V)", r"wrong number of arguments for piecewise\(\).*odd number"),
    ("CL := 3", r"cannot parse|NamedExpr is not allowed"),
])
def test_disallowed_syntax_is_a_model_error(text, message):
    m, CL, V, c = base()
    with pytest.raises(ModelError, match=message) as exc:
        m.flow(c, None, text)
    assert "flow central -> outside" in str(exc.value)   # where
    assert repr(text) in str(exc.value)                  # what


def _parsed(text):
    m, CL, V, c = base()
    m.parameter("n", 2.0)
    return m._expr(text, "test")


CL_, V_, A_ = (sp.Symbol(n, real=True) for n in ("CL", "V", "central"))


@pytest.mark.parametrize("text, expected", [
    ("exp(CL)", sp.exp(CL_)),
    ("log(CL)", sp.log(CL_)),
    ("sqrt(CL)", sp.sqrt(CL_)),
    ("pow(CL, 2)", CL_**2),
    ("CL^2", CL_**2),
    ("CL**2", CL_**2),
    ("min(CL, V)", sp.Min(CL_, V_)),
    ("max(CL, V)", sp.Max(CL_, V_)),
    ("piecewise(CL > 1, CL, V)", sp.Piecewise((CL_, CL_ > 1), (V_, True))),
    ("piecewise(CL > 3, CL, CL > 1, 2*CL, V)", sp.Piecewise((CL_, CL_ > 3), (2 * CL_, CL_ > 1), (V_, True))),
    ("if_else(CL > 1, CL, V)", sp.Piecewise((CL_, CL_ > 1), (V_, True))),
    ("heaviside(CL - 1)", sp.Heaviside(CL_ - 1, 1)),
    ("hill(CL, V, 2, 3)", V_ * CL_**3 / (8 + CL_**3)),
    ("emax(CL, V, 2)", V_ * CL_ / (2 + CL_)),
    ("michaelis_menten(central.conc, CL, V)", CL_ * (A_ / V_) / (V_ + A_ / V_)),
    ("central.conc", A_ / V_),
    ("central.amount", A_),
    ("central.volume", V_),
    ("-CL + 2.5e-3 * V", -CL_ + sp.Float(2.5e-3) * V_),
    ("pi * e", sp.pi * sp.E),
])
def test_whitelisted_syntax_parses(text, expected):
    assert sp.simplify(_parsed(text) - expected) == 0


def test_function_whitelist_is_what_the_docs_promise():
    for name in ("exp", "log", "sqrt", "pow", "min", "max", "piecewise", "if_else", "heaviside",
                 "hill", "emax", "michaelis_menten"):
        assert name in FUNCTIONS
    for name in ("eval", "exec", "open", "getattr", "__import__", "compile", "globals"):
        assert name not in FUNCTIONS


def test_parsed_string_equals_sympy_expression_numerically():
    def build(rate):
        m, CL, V, c = base()
        Vmax = m.parameter("Vmax", 5.0, unit="mg/h")
        Km = m.parameter("Km", 0.4, unit="mg/L")
        m.flow(c, None, rate(c, Vmax, Km))
        return m.compile()

    a = build(lambda c, Vmax, Km: "michaelis_menten(central.conc, Vmax, Km)")
    b = build(lambda c, Vmax, Km: Vmax * c.conc / (Km + c.conc))
    y = jnp.array([3.0, 0.0])
    np.testing.assert_allclose(a.rhs(0.0, y, a.theta, NO_COV), b.rhs(0.0, y, b.theta, NO_COV), rtol=1e-15)


# =========================================================================== compile
def test_linear_detection():
    assert two_cmt().compile().linear

    m, CL, V, c = base()
    m.flow(c, None, CL * c.conc)
    assert m.compile().linear

    m, CL, V, c = base()
    Vmax = m.parameter("Vmax", 5.0, unit="mg/h")
    Km = m.parameter("Km", 0.4, unit="mg/L")
    m.flow(c, None, "michaelis_menten(central.conc, Vmax, Km)")
    model = m.compile()
    assert not model.linear
    with pytest.raises(ModelError, match=r"model 'm' is not linear"):
        model.linear_system(model.theta, NO_COV)

    # time-varying clearance is not LTI either
    m, CL, V, c = base()
    kdec = m.parameter("kdec", 0.1, unit="1/h")
    m.flow(c, None, "CL * exp(-kdec * t) * central.conc")
    assert not m.compile().linear


def test_linear_system_equals_hand_built_matrices(two_cmt_model):
    model = two_cmt_model
    assert model.state_names == ("central", "periph", "eliminated")
    for values in ({}, {"CL": 20.0, "V1": 5.0, "Q": 3.0, "V2": 40.0}):
        theta = model.params(**values)
        CL, V1, Q, V2 = np.asarray(theta)
        A, b = model.linear_system(theta, NO_COV)
        A_hand = np.array([[-(CL + Q) / V1, Q / V2, 0.0],
                           [Q / V1, -Q / V2, 0.0],
                           [CL / V1, 0.0, 0.0]])
        np.testing.assert_allclose(A, A_hand, rtol=1e-14)
        np.testing.assert_array_equal(b, np.zeros(3))
        y = jnp.array([13.0, 4.0, 1.0])
        np.testing.assert_allclose(model.rhs(0.0, y, theta, NO_COV), A_hand @ np.asarray(y), rtol=1e-13)


def test_linear_system_with_zero_order_input_has_b():
    m, CL, V, c = base()
    R = m.parameter("R", 3.0, unit="mg/h")
    m.flow(None, c, R)
    m.flow(c, None, CL * c.conc)
    model = m.compile()
    A, b = model.linear_system(model.theta, NO_COV)
    np.testing.assert_allclose(A, [[-0.2, 0.0], [0.2, 0.0]], rtol=1e-14)
    np.testing.assert_allclose(b, [3.0, 0.0], rtol=1e-14)


def test_eliminated_state_iff_a_flow_leaves_the_system():
    m, CL, V, c = base()
    p = m.compartment("periph", volume=V)
    m.flow(c, p, CL * c.conc)
    m.flow(p, c, CL * p.conc)
    m.flow(None, c, m.parameter("R", 1.0, unit="mg/h"))        # input from outside is not elimination
    assert "eliminated" not in m.compile().state_names

    m.flow(c, None, CL * c.conc)
    model = m.compile()
    assert model.state_names[-1] == "eliminated"
    assert model.state_names.count("eliminated") == 1
    assert model.compartment_names == ("central", "periph")
    assert model.units["eliminated"] == "mg"

    m2 = pbpk.Model("raw", time="d")
    T = m2.state("T", initial=1.0, unit="cells")
    m2.ode(T, 0)                                  # a constant state, as the error message suggests
    raw = m2.compile()
    assert raw.state_names == ("T",)
    np.testing.assert_array_equal(raw.rhs(0.0, jnp.array([5.0]), raw.theta, NO_COV), [0.0])


def _conservation_model():
    """Depot -> central <-> periph, central -> outside: linear and saturable flows mixed."""
    m = pbpk.Model("mass", time="h")
    ka = m.parameter("ka", 1.3, unit="1/h")
    CL = m.parameter("CL", 4.0, unit="L/h")
    Q = m.parameter("Q", 250.0, unit="mL/min")
    V1 = m.parameter("V1", 12.0, unit="L")
    V2 = m.parameter("V2", 30.0, unit="L")
    Vmax = m.parameter("Vmax", 2.0, unit="mg/h")
    Km = m.parameter("Km", 0.5, unit="mg/L")
    WT = m.covariate("WT", unit="kg", reference=70.0)
    depot = m.compartment("depot", volume=1.0)
    central = m.compartment("central", volume=V1 * WT / m.quantity(70, "kg"))
    periph = m.compartment("periph", volume=V2)
    m.flow(depot, central, ka * depot.amount)
    m.flow(central, periph, Q * central.conc)
    m.flow(periph, central, Q * periph.conc)
    m.flow(central, None, CL * central.conc)
    m.flow(central, None, "michaelis_menten(central.conc, Vmax, Km)")
    return m.compile()


def test_mass_is_conserved_by_flows():
    model = _conservation_model()
    assert model.state_names == ("depot", "central", "periph", "eliminated")
    assert not model.linear
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = jnp.asarray(rng.uniform(0, 100, 4))
        theta = model.theta * jnp.asarray(rng.lognormal(0, 0.5, model.theta.shape))
        cov = jnp.asarray([rng.uniform(40, 120)])
        dy = np.asarray(model.rhs(0.0, y, theta, cov))
        assert abs(dy.sum()) <= 1e-12 * np.abs(dy).max()
    # and the zero-order dose input is the only source
    rate = jnp.array([0.0, 5.0, 0.0, 0.0])
    dy = model.rhs(0.0, jnp.ones(4), model.theta, jnp.array([70.0]), rate)
    assert float(jnp.sum(dy)) == pytest.approx(5.0, rel=1e-12)


def test_eliminated_is_an_accumulator():
    model = _conservation_model()
    assert model.accumulators == (False, False, False, True)


def test_parameter_transforms_round_trip():
    m = pbpk.Model("tr")
    CL = m.parameter("CL", 2.0, unit="L/h")                     # positive -> log
    F = m.parameter("F", 0.3, bounds=(0, 1))                     # bounded -> logit
    E0 = m.parameter("E0", -1.0)                                 # sign-free -> identity
    EC = m.parameter("EC", 5.0, bounds=(0, math.inf))            # positive -> log
    H = m.parameter("H", 2.5, bounds=(1, math.inf))              # lower bound 1 -> log(H - 1)
    U = m.parameter("U", -2.0, bounds=(-math.inf, 0.5))          # upper bound -> log(0.5 - U)
    FR = m.parameter("FR", 0.2, bounds=(0.1, 0.9))
    V = m.parameter("V", 10.0, unit="L")
    c = m.compartment("central", volume=V)
    m.flow(c, None, CL * c.conc * F * (E0**2) * EC * H * (U**2) * FR)
    model = m.compile()
    assert model.transforms == ("log", "logit", "identity", "log", "log", "log_upper", "logit", "log")

    theta = model.theta
    z = model.to_unconstrained(theta)
    expected = [math.log(2.0), math.log(0.3 / 0.7), -1.0, math.log(5.0), math.log(1.5), math.log(2.5),
                math.log((0.2 - 0.1) / (0.9 - 0.2)), math.log(10.0)]
    np.testing.assert_allclose(z, expected, rtol=1e-14)
    np.testing.assert_allclose(model.from_unconstrained(z), theta, rtol=1e-14)

    # batched and arbitrary points of the real line map back inside the bounds
    zs = jax.random.normal(jax.random.key(0), (500, len(theta))) * 5
    th = np.asarray(model.from_unconstrained(zs))
    assert (th[:, 0] > 0).all()
    assert ((th[:, 1] > 0) & (th[:, 1] < 1)).all()
    assert (th[:, 4] > 1).all() and (th[:, 5] < 0.5).all()
    assert ((th[:, 6] > 0.1) & (th[:, 6] < 0.9)).all()
    np.testing.assert_allclose(model.to_unconstrained(jnp.asarray(th)), zs, rtol=1e-9, atol=1e-9)


def test_params_by_name(two_cmt_model):
    model = two_cmt_model
    theta = model.params(CL=2.0)
    assert model.parameter_names == ("CL", "V1", "Q", "V2")
    np.testing.assert_array_equal(theta, [2.0, 8.0, 10.0, 90.0])
    np.testing.assert_array_equal(model.theta, [36.0, 8.0, 10.0, 90.0])      # unchanged
    assert model.parameters == {"CL": 36.0, "V1": 8.0, "Q": 10.0, "V2": 90.0}
    np.testing.assert_array_equal(model.omega, [0.25, 0.3, 0.0, 0.0])
    with pytest.raises(ModelError, match=r"model 'docetaxel_2cmt' has no parameter 'CLL'\. Did you mean 'CL'\?"):
        model.params(CLL=2.0)
    with pytest.raises(ModelError, match=r"has no parameter 'V11'\. Did you mean 'V1'\?"):
        model.params(V11=2.0)
    with pytest.raises(ModelError, match=r"has no state 'centrl'\. Did you mean 'central'\?"):
        model.state_index("centrl")


def test_defines_are_substituted():
    m, CL, V, c = base()
    k = m.define("k", CL / V, unit="1/h")
    half = m.define("half", "log(2) / k", unit="h")
    m.flow(c, None, k * c.amount)
    m.observe("thalf", half, unit="h")
    model = m.compile()
    assert model.equations[0] == "dcentral/dt = -CL*central/V"
    assert model.linear
    obs = model.observe(0.0, jnp.array([1.0, 0.0]), model.theta, NO_COV)
    np.testing.assert_allclose(obs, [math.log(2) / 0.2], rtol=1e-14)


def test_define_unit_is_checked():
    m, CL, V, c = base()
    m.define("k", CL / V, unit="L")
    m.flow(c, None, CL * c.conc)
    with pytest.raises(UnitError, match=r"define 'k': has unit \[1/h\] but \[L\] was expected \(term `CL/V`\)"):
        m.compile()


def test_define_may_only_use_declared_names():
    m, CL, V, c = base()
    with pytest.raises(ModelError, match=r"define 'k': undeclared name 'k'"):
        m.define("k", "k + 1")
    assert "k" not in m.defines


def test_define_cycle_is_named():
    # The builder only lets a define use names declared before it, so a cycle cannot be written
    # with the public API; the compiler still guards against one in an edited specification.
    m, CL, V, c = base()
    a = m.define("a", CL / V)
    b = m.define("b", 2 * a)
    m.defines["a"] = (b / 2, None)
    m.flow(c, None, a * c.amount)
    with pytest.raises(ModelError, match=r"defines form a cycle: a -> b -> a"):
        m.compile()


def test_observation_with_residual_error_model(two_cmt_model):
    model = two_cmt_model
    assert model.observation_names == ("Cp",)
    assert model.errors == (pbpk.Proportional(0.15),)
    assert model.units["Cp"] == "mg/L"
    np.testing.assert_allclose(model.observe(0.0, jnp.array([16.0, 3.0, 0.0]), model.theta, NO_COV), [2.0])
    m, CL, V, c = base()
    with pytest.raises(ModelError, match=r"observe\('Cp'\): error=0\.15 must be a residual error model"):
        m.observe("Cp", c.conc, unit="mg/L", error=0.15)
    with pytest.raises(ModelError, match=r"observation name '2Cp' must be an identifier"):
        m.observe("2Cp", c.conc)


def test_observation_unit_mismatch_names_observation():
    m, CL, V, c = base()
    m.flow(c, None, CL * c.conc)
    m.observe("Cp", c.conc, unit="mg")
    with pytest.raises(UnitError, match=r"observation 'Cp': has unit \[mg/L\] but \[mg\] was expected"):
        m.compile()


def test_tumour_model_with_raw_state_compiles():
    m = pbpk.Model("gompertz", time="d")
    kg = m.parameter("kg", 0.1, unit="1/d")
    Tmax = m.parameter("Tmax", 1e9, unit="cells")
    T = m.state("T", initial=1e6, unit="cells")
    m.ode(T, "kg * T * log(Tmax / T)")
    model = m.compile()
    assert model.state_names == ("T",)
    assert not model.linear
    assert model.units["T"] == "cells"
    np.testing.assert_allclose(model.initial_state(model.theta, NO_COV), [1e6])
    for t_cells in (1e6, 3e8):
        dy = model.rhs(0.0, jnp.array([t_cells]), model.theta, NO_COV)
        np.testing.assert_allclose(dy, [0.1 * t_cells * math.log(1e9 / t_cells)], rtol=1e-14)
    # jit and grad flow through the compiled right-hand side
    g = jax.grad(lambda th: model.rhs(0.0, jnp.array([1e6]), th, NO_COV)[0])(model.theta)
    np.testing.assert_allclose(g[0], 1e6 * math.log(1e3), rtol=1e-12)


def test_initial_conditions_may_depend_on_parameters_but_not_states():
    m = pbpk.Model("m", time="d")
    T0 = m.parameter("T0", 5e5, unit="cells")
    k = m.parameter("k", 0.1, unit="1/d")
    T = m.state("T", initial=T0, unit="cells")
    m.ode(T, k * T)
    model = m.compile()
    np.testing.assert_allclose(model.initial_state(model.params(T0=7.0), NO_COV), [7.0])

    m2 = pbpk.Model("m2", time="d")
    k = m2.parameter("k", 0.1, unit="1/d")
    A = m2.state("A", initial=1.0, unit="cells")
    B = m2.state("B", initial=A, unit="cells")
    m2.ode(A, k * A)
    m2.ode(B, k * A)
    with pytest.raises(ModelError, match=r"initial condition of 'B' depends on states"):
        m2.compile()


def test_compile_is_cheap_and_model_is_immutable(two_cmt_model):
    import dataclasses
    with pytest.raises((AttributeError, dataclasses.FrozenInstanceError)):
        two_cmt_model.theta = jnp.zeros(4)


# =========================================================================== residual error models
OBS = np.array([0.05, 0.5, 1.3, 2.0, 7.5, 40.0])
PRED = np.array([0.06, 0.6, 1.0, 2.5, 8.0, 35.0])


@pytest.mark.parametrize("error, sd", [
    (pbpk.Additive(0.3), lambda p: 0.3 * np.ones_like(p)),
    (pbpk.Proportional(0.2), lambda p: 0.2 * p),
    (pbpk.Combined(0.1, 0.2), lambda p: np.sqrt(0.1**2 + (0.2 * p) ** 2)),
])
def test_normal_log_likelihood_matches_scipy(error, sd):
    got = error.log_likelihood(jnp.asarray(OBS), jnp.asarray(PRED))
    np.testing.assert_allclose(got, stats.norm.logpdf(OBS, loc=PRED, scale=sd(PRED)), rtol=1e-13, atol=1e-13)


def test_lognormal_log_likelihood_matches_scipy():
    err = pbpk.LogNormal(0.25)
    got = err.log_likelihood(jnp.asarray(OBS), jnp.asarray(PRED))
    # scipy's lognorm(s, scale=exp(mu)) is the density of obs (with the 1/obs Jacobian)
    np.testing.assert_allclose(got, stats.lognorm.logpdf(OBS, s=0.25, scale=PRED), rtol=1e-13, atol=1e-13)
    assert pbpk.Exponential is pbpk.LogNormal


@pytest.mark.parametrize("error, pred, mean, sd", [
    (pbpk.Additive(0.5), 10.0, 10.0, 0.5),
    (pbpk.Proportional(0.2), 10.0, 10.0, 2.0),
    (pbpk.Combined(1.0, 0.2), 5.0, 5.0, math.sqrt(1.0 + 1.0)),
])
def test_normal_sample_moments(error, pred, mean, sd):
    # n = 20000 draws: the standard error of the mean is sd/sqrt(n) (0.7 % of sd) and that of the
    # sample SD is ~sd/sqrt(2(n-1)) (0.5 % of sd); we allow 5 standard errors (P(false fail) < 1e-6).
    n = 20000
    x = np.asarray(error.sample(jax.random.key(42), jnp.full((n,), pred)))
    assert x.shape == (n,)
    assert abs(x.mean() - mean) < 5 * sd / math.sqrt(n)
    assert abs(x.std(ddof=1) - sd) < 5 * sd / math.sqrt(2 * (n - 1))


def test_lognormal_sample_moments():
    # log(obs) ~ N(log(pred), s): same 5-standard-error tolerances as above, on the log scale.
    n, s, pred = 20000, 0.3, 4.0
    x = np.asarray(pbpk.LogNormal(s).sample(jax.random.key(7), jnp.full((n,), pred)))
    assert (x > 0).all()
    lx = np.log(x)
    assert abs(lx.mean() - math.log(pred)) < 5 * s / math.sqrt(n)
    assert abs(lx.std(ddof=1) - s) < 5 * s / math.sqrt(2 * (n - 1))


def test_sample_is_reproducible_with_a_key():
    err = pbpk.Proportional(0.1)
    a = err.sample(jax.random.key(3), jnp.ones(5))
    b = err.sample(jax.random.key(3), jnp.ones(5))
    c = err.sample(jax.random.key(4), jnp.ones(5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("make, field", [
    (lambda: pbpk.Additive(-1.0), "Additive: sd=-1.0"),
    (lambda: pbpk.Proportional(float("nan")), "Proportional: cv=nan"),
    (lambda: pbpk.Combined(0.1, -0.2), "Combined: cv=-0.2"),
    (lambda: pbpk.Combined(-0.1, 0.2), "Combined: sd=-0.1"),
    (lambda: pbpk.LogNormal(-0.1), "LogNormal: sd=-0.1"),
    (lambda: pbpk.Additive("0.5"), "Additive: sd='0.5'"),
    (lambda: pbpk.Proportional(None), "Proportional: cv=None"),
])
def test_residual_parameters_are_validated(make, field):
    with pytest.raises(ModelError, match=r"must be a non-negative number") as exc:
        make()
    assert field in str(exc.value)


def test_residual_error_is_differentiable_and_jittable():
    ll = jax.jit(lambda s, o, p: pbpk.Combined(s, 0.1).log_likelihood(o, p).sum())
    g = jax.grad(ll)(0.2, jnp.asarray(OBS), jnp.asarray(PRED))
    assert np.isfinite(g)
    # additive: d/dsd of sum log N(obs; pred, sd) = sum((r^2/sd^3) - 1/sd)
    r = OBS - PRED
    g_add = jax.grad(lambda s: pbpk.Additive(s).log_likelihood(jnp.asarray(OBS), jnp.asarray(PRED)).sum())(0.7)
    np.testing.assert_allclose(g_add, np.sum(r**2 / 0.7**3 - 1 / 0.7), rtol=1e-12)


def test_composed_model_accepts_terms_built_from_its_parts_constants():
    """A part's unit constants (e.g. a BSA reference 1.8 m²) come with it into the composed
    model, so flows added afterwards may use its compartments' concentrations."""
    part = pbpk.Model("part")
    bsa = part.covariate("BSA", "m^2", reference=1.8)
    c = part.compartment("central", volume=part.parameter("V", 10.0, "L", source="test") * bsa / part.quantity(1.8, "m^2"))
    part.flow(c, None, part.parameter("CL", 2.0, "L/h", source="test") * c.conc)
    m = pbpk.compose(part, name="composed")
    depot = m.compartment("depot")
    central = m.compartments["central"]
    m.flow(central, depot, m.parameter("Q", 1.0, "L/h", source="test") * central.conc)
    model = m.compile()
    sol = model.simulate(pbpk.Bolus(100.0, "central"), np.array([1.0]), rtol=1e-12, atol=1e-12)
    assert float(np.asarray(sol.states)[0, model.state_names.index("central")]) == pytest.approx(100 * np.exp(-0.3))
