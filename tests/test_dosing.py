"""Dosing vocabulary: Bolus / Infusion / Reset validation, Regimen algebra and immutability,
body-surface area formulas, and the NONMEM conventions of ``Regimen.to_dataframe``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pbpk
from pbpk import Bolus, Infusion, Regimen, Reset, bsa
from pbpk.errors import DosingError


# --------------------------------------------------------------------------- dose validation
@pytest.mark.parametrize("make, message", [
    (lambda: Bolus(-1.0, "central"), r"Bolus into 'central' at time 0\.0: amount=-1\.0 is negative"),
    (lambda: Bolus(float("nan"), "central"), r"amount=nan is not a finite number"),
    (lambda: Bolus(math.inf, "central"), r"amount=inf is not a finite number"),
    (lambda: Bolus("100", "central"), r"amount='100' is not a number"),
    (lambda: Bolus(100.0, "central", time=-2.0), r"time=-2\.0 is negative"),
    (lambda: Infusion(-5.0, "central", duration=1.0), r"Infusion into 'central' .*amount=-5\.0 is negative"),
    (lambda: Infusion(5.0, "central", rate=-1.0), r"rate=-1\.0 is negative"),
    (lambda: Infusion(5.0, "central", duration=0.0), r"duration=0\.0 must be > 0"),
    (lambda: Infusion(None, "central", duration=1.0), r"amount is required"),
])
def test_invalid_doses(make, message):
    with pytest.raises(DosingError, match=message):
        make()


def test_infusion_needs_exactly_one_of_duration_and_rate():
    with pytest.raises(DosingError, match=r"give exactly one of duration= or rate= \(got duration=1\.0, rate=2\.0\)"):
        Infusion(10.0, "central", duration=1.0, rate=2.0)
    with pytest.raises(DosingError, match=r"give exactly one of duration= or rate= \(got duration=None, rate=None\)"):
        Infusion(10.0, "central")


def test_steady_state_needs_ii():
    with pytest.raises(DosingError, match=r"Bolus into 'central' .*ss=True needs the dosing interval ii="):
        Bolus(100.0, "central", ss=True)
    with pytest.raises(DosingError, match=r"Infusion into 'central' .*ss=True needs the dosing interval ii="):
        Infusion(100.0, "central", duration=1.0, ss=True)
    with pytest.raises(DosingError, match=r"ii=0 must be > 0"):
        Bolus(100.0, "central", ss=True, ii=0)
    with pytest.raises(DosingError, match=r"duration 30\.0 exceeds the interval ii=24\.0"):
        Infusion(100.0, "central", duration=30.0, ss=True, ii=24.0)
    # valid forms: steady-state bolus, and a continuous infusion at steady state (no amount, no ii)
    assert Bolus(100.0, "central", ss=True, ii=12.0).ii == 12.0
    cont = Infusion(None, "central", rate=5.0, ss=True)
    assert cont.amount is None and cont.ii is None


@pytest.mark.parametrize("into", [None, 1, "", ["central"]])
def test_into_must_be_a_compartment_name(into):
    with pytest.raises(DosingError, match=r"Bolus: into=.* must name a compartment"):
        Bolus(1.0, into)
    with pytest.raises(DosingError, match=r"Infusion: into=.* must name a compartment"):
        Infusion(1.0, into, duration=1.0)


def test_doses_are_immutable():
    b = Bolus(100.0, "central", time=1.0)
    with pytest.raises(AttributeError, match="immutable"):
        b.amount = 200.0
    with pytest.raises(AttributeError, match="immutable"):
        del b.time
    i = Infusion(100.0, "central", duration=2.0)
    with pytest.raises(AttributeError, match="immutable"):
        i.duration = 1.0
    with pytest.raises(AttributeError):
        Reset(3.0).time = 4.0
    assert b == Bolus(100.0, "central", time=1.0)


def test_dose_equality_and_shift():
    b = Bolus(100.0, "central", time=1.0)
    assert b == Bolus(100, "central", time=1)
    assert b != Bolus(100.0, "periph", time=1.0)
    assert b != Infusion(100.0, "central", time=1.0, duration=1.0)
    s = b.shifted(5.0)
    assert s == Bolus(100.0, "central", time=6.0)
    assert b.time == 1.0                       # original unchanged
    with pytest.raises(TypeError):
        hash(b)


def test_dose_amounts_may_be_traced_for_gradients():
    total = jax.grad(lambda a: Regimen.repeat(Bolus(a, "central"), every=12.0, count=3).total())(10.0)
    assert float(total) == 3.0


# --------------------------------------------------------------------------- regimens
def test_repeat_equals_explicit_list():
    dose = Infusion(135.0, "central", duration=1.0)
    r = Regimen.repeat(dose, every=504.0, count=4)
    explicit = Regimen([Infusion(135.0, "central", t, duration=1.0) for t in (0.0, 504.0, 1008.0, 1512.0)])
    assert r == explicit
    assert len(r) == 4
    assert [d.time for d in r] == [0.0, 504.0, 1008.0, 1512.0]
    late = Regimen.repeat(dose, every=24.0, count=2, start=48.0)
    assert [d.time for d in late] == [48.0, 72.0]
    own = Regimen.repeat(Bolus(1.0, "depot", time=6.0), every=12.0, count=2)
    assert [d.time for d in own] == [6.0, 18.0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(every=24.0, count=0), r"count=0 must be a positive integer"),
    (dict(every=24.0, count=2.0), r"count=2\.0 must be a positive integer"),
    (dict(every=24.0, count=-3), r"count=-3 must be a positive integer"),
    (dict(every=0.0, count=2), r"every=0\.0 must be > 0"),
    (dict(every=-1.0, count=2), r"every=-1\.0 is negative"),
])
def test_repeat_validation(kwargs, message):
    with pytest.raises(DosingError, match=message):
        Regimen.repeat(Bolus(1.0, "central"), **kwargs)


def test_regimen_rejects_non_doses():
    with pytest.raises(DosingError, match=r"Regimen: item 1 is float, expected Bolus, Infusion or Reset"):
        Regimen([Bolus(1.0, "central"), 2.0])


def test_doses_are_sorted_by_time_with_stable_order():
    a = Bolus(1.0, "a", time=5.0)
    b = Bolus(2.0, "b", time=5.0)
    c = Bolus(3.0, "c", time=1.0)
    d = Reset(5.0)
    r = Regimen([a, b, c, d])
    assert r.doses == (c, a, b, d)            # equal times keep their given (NONMEM record) order
    assert Regimen([b, a, c]).doses == (c, b, a)


def test_plus_concatenates_and_sorts():
    r1 = Regimen([Bolus(1.0, "central", time=0.0), Bolus(1.0, "central", time=24.0)])
    r2 = Regimen([Bolus(2.0, "central", time=12.0)])
    both = r1 + r2
    assert [d.time for d in both] == [0.0, 12.0, 24.0]
    assert [d.amount for d in both] == [1.0, 2.0, 1.0]
    plus_dose = r1 + Bolus(5.0, "periph", time=6.0)
    assert [d.time for d in plus_dose] == [0.0, 6.0, 24.0]
    assert len(r1) == 2 and len(r2) == 1        # operands unchanged
    with pytest.raises(TypeError):
        r1 + 3.0


def test_shifted_and_scaled():
    r = Regimen([Bolus(100.0, "depot", time=0.0), Infusion(60.0, "central", time=2.0, rate=30.0),
                 Infusion(40.0, "central", time=4.0, duration=2.0), Reset(10.0)])
    s = r.shifted(24.0)
    assert [d.time for d in s] == [24.0, 26.0, 28.0, 34.0]
    assert [d.time for d in r] == [0.0, 2.0, 4.0, 10.0]          # original unchanged

    k = r.scaled(1.5)
    b, rate_inf, dur_inf, reset = k.doses
    assert b.amount == 150.0
    assert rate_inf.amount == 90.0 and rate_inf.rate == 45.0     # rate scales: same duration
    assert dur_inf.amount == 60.0 and dur_inf.duration == 2.0    # duration is kept
    assert reset == Reset(10.0)
    assert r.doses[0].amount == 100.0

    # per-m² dosing is scaling by BSA
    per_m2 = Regimen([Infusion(75.0, "central", duration=1.0)])
    assert per_m2.per_m2(2.0).doses[0].amount == 150.0
    assert Regimen([Bolus(2.0, "central")]).per_kg(70.0).doses[0].amount == 140.0


def test_continuous_infusion_scales_its_rate():
    r = Regimen([Infusion(None, "central", rate=4.0, ss=True)]).scaled(0.5)
    assert r.doses[0].amount is None and r.doses[0].rate == 2.0


def test_regimen_is_immutable():
    r = Regimen([Bolus(1.0, "central")])
    with pytest.raises(AttributeError, match="Regimen is immutable"):
        r.doses = ()
    with pytest.raises(AttributeError):
        r.extra = 1
    assert isinstance(r.doses, tuple)
    with pytest.raises(TypeError):
        hash(r)


def test_total():
    r = Regimen([Bolus(100.0, "depot"), Infusion(50.0, "central", time=1.0, duration=1.0), Reset(2.0),
                 Infusion(None, "central", rate=3.0, ss=True)])
    assert r.total() == 150.0
    assert r.total(into="central") == 50.0


# --------------------------------------------------------------------------- NONMEM table
def test_to_dataframe_rate_conventions():
    r = Regimen([
        Bolus(100.0, "depot", time=0.0),
        Infusion(60.0, "central", time=1.0, rate=30.0),
        Infusion(40.0, "central", time=2.0, duration=4.0),
        Infusion(20.0, "central", time=3.0, rate="model"),
        Infusion(20.0, "central", time=4.0, duration="model"),
        Bolus(50.0, "central", time=5.0, ss=True, ii=12.0),
        Reset(6.0),
        Infusion(None, "central", time=7.0, rate=2.5, ss=True),
    ])
    df = r.to_dataframe()
    assert list(df.columns[:2]) == ["TIME", "EVID"]
    assert df["TIME"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert df["EVID"].tolist() == [1, 1, 1, 1, 1, 1, 3, 1]
    # RATE: 0 bolus, the given rate, AMT/duration, -1 modelled rate, -2 modelled duration
    assert df["RATE"].tolist() == [0.0, 30.0, 10.0, -1.0, -2.0, 0.0, 0.0, 2.5]
    assert df["AMT"].tolist() == [100.0, 60.0, 40.0, 20.0, 20.0, 50.0, 0.0, 0.0]   # continuous ss: AMT 0
    assert df["SS"].tolist() == [0, 0, 0, 0, 0, 1, 0, 1]
    assert df["II"].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 12.0, 0.0, 0.0]
    assert df["CMT"].tolist()[:6] == ["depot", "central", "central", "central", "central", "central"]
    assert not df[["TIME", "EVID", "AMT", "RATE", "SS", "II"]].isna().any().any()


def test_to_dataframe_round_trips_through_read_nonmem():
    r = Regimen([Bolus(100.0, "central", time=0.0), Infusion(60.0, "central", time=1.0, rate=30.0),
                 Bolus(50.0, "central", time=5.0, ss=True, ii=12.0),
                 Infusion(None, "central", time=30.0, rate=2.5, ss=True)])
    df = r.to_dataframe()
    df.insert(0, "ID", 1)
    back = pbpk.read_nonmem(df, require_observations=False).subject(1).regimen
    assert back == r


# --------------------------------------------------------------------------- body-surface area
def test_bsa_du_bois():
    # Du Bois D, Du Bois EF. A formula to estimate the approximate surface area if height and weight
    # be known. Arch Intern Med 1916;17:863-871:  BSA[m²] = 0.007184 · W[kg]^0.425 · H[cm]^0.725.
    # 180 cm, 80 kg: exp(ln 0.007184 + 0.725 ln 180 + 0.425 ln 80) = 1.99642102... m² (≈ 1.996 m²).
    expected = math.exp(math.log(0.007184) + 0.725 * math.log(180.0) + 0.425 * math.log(80.0))
    assert expected == pytest.approx(1.996421022, abs=1e-9)
    assert bsa(180.0, 80.0) == pytest.approx(expected, rel=1e-14)
    assert bsa(180, 80, formula="Du_Bois") == pytest.approx(expected, rel=1e-14)


def test_bsa_mosteller():
    # Mosteller RD. Simplified calculation of body-surface area. N Engl J Med 1987;317:1098:
    # BSA[m²] = sqrt(H[cm] · W[kg] / 3600); 180 cm and 80 kg give exactly sqrt(4) = 2 m².
    assert bsa(180.0, 80.0, "mosteller") == pytest.approx(2.0, rel=1e-15)
    assert bsa(160.0, 60.0, "Mosteller") == pytest.approx(math.sqrt(160 * 60 / 3600), rel=1e-15)


def test_bsa_other_formulas():
    # Haycock 1978 (J Pediatr 93:62): 0.024265 H^0.3964 W^0.5378; Gehan & George 1970
    # (Cancer Chemother Rep 54:225): 0.0235 H^0.42246 W^0.51456.
    assert bsa(180.0, 80.0, "haycock") == pytest.approx(0.024265 * 180**0.3964 * 80**0.5378, rel=1e-14)
    assert bsa(180.0, 80.0, "gehan") == pytest.approx(0.0235 * 180**0.42246 * 80**0.51456, rel=1e-14)
    # all agree to within a few % for an average adult
    values = [bsa(180.0, 80.0, f) for f in ("dubois", "mosteller", "haycock", "gehan")]
    assert max(values) / min(values) < 1.01


def test_bsa_rejects_metres_and_bad_input():
    with pytest.raises(DosingError, match=r"height_cm=1\.8 looks like metres; expected centimetres"):
        bsa(1.8, 80.0)
    with pytest.raises(DosingError, match=r"weight_kg=-80\.0 is negative"):
        bsa(180.0, -80.0)
    with pytest.raises(DosingError, match=r"height_cm=0\.0 must be > 0"):
        bsa(0.0, 80.0)
    with pytest.raises(DosingError, match=r"unknown formula 'dubios'.*Did you mean 'dubois'\?"):
        bsa(180.0, 80.0, "dubios")


def test_bsa_vectorised_and_differentiable():
    h, w = np.array([180.0, 160.0]), np.array([80.0, 60.0])
    np.testing.assert_allclose(bsa(h, w, "mosteller"), np.sqrt(h * w / 3600), rtol=1e-15)
    g = jax.grad(lambda wt: bsa(180.0, wt))(80.0)
    np.testing.assert_allclose(g, 0.425 * bsa(180.0, 80.0) / 80.0, rtol=1e-12)
    jitted = jax.jit(lambda hh, ww: bsa(hh, ww))(jnp.asarray(h), jnp.asarray(w))
    np.testing.assert_allclose(jitted, bsa(h, w), rtol=1e-14)
