"""Reference physiology, Kp prediction and the whole-body PBPK model (pbpk.physiology)."""

import dataclasses
import importlib.util
import math

import numpy as np
import pytest

from pbpk.errors import ModelError
from pbpk.physiology import (TISSUES, Organ, human, kp_poulin_theil, kp_rodgers_rowland, mouse,
                             whole_body)
from pbpk.physiology import _reference as ref

HAS_SPEC = importlib.util.find_spec("pbpk.spec") is not None
needs_spec = pytest.mark.skipif(not HAS_SPEC, reason="pbpk.spec (Model builder) not written yet")

PHYSIOLOGIES = {"human male": human("male"), "human female": human("female"), "mouse": mouse(),
                "human male scaled to 95 kg": human("male").scaled(95.0)}


# ----------------------------------------------------------------------------- physiology
@pytest.mark.parametrize("label", PHYSIOLOGIES)
def test_non_lung_flows_sum_to_cardiac_output(label):
    p = PHYSIOLOGIES[label]
    assert tuple(p.organs) == TISSUES and len(TISSUES) == 14
    total = sum(o.blood_flow for n, o in p.organs.items() if n != "lung")
    assert total == pytest.approx(p.cardiac_output, rel=1e-12)
    assert p.organs["lung"].blood_flow == pytest.approx(p.cardiac_output, rel=1e-12)


@pytest.mark.parametrize("label", PHYSIOLOGIES)
def test_volumes_sum_to_body_weight(label):
    # density 1 kg/L for every tissue, so organ volumes (L) + blood (L) = body weight (kg)
    p = PHYSIOLOGIES[label]
    total = sum(o.volume for o in p.organs.values()) + p.arterial_volume + p.venous_volume
    assert total == pytest.approx(p.body_weight, rel=1e-9)
    # the explicit organs carry most of the body: "rest" is a small closure term (< 10 % BW)
    assert 0 < p.organs["rest"].volume < 0.10 * p.body_weight
    assert all(o.volume > 0 and o.blood_flow > 0 for o in p.organs.values())


def test_icrp89_reference_values():
    m, f = human("male"), human("female")
    assert (m.body_weight, f.body_weight) == (73.0, 60.0)
    assert m.cardiac_output == pytest.approx(6.5 * 60) and f.cardiac_output == pytest.approx(5.9 * 60)
    assert m.organs["liver"].volume == 1.8 and f.organs["liver"].volume == 1.4
    assert m.blood_volume == pytest.approx(5.3) and f.blood_volume == pytest.approx(3.9)
    assert m.hematocrit == pytest.approx(2.3 / 5.3) and f.hematocrit == pytest.approx(1.5 / 3.9)
    # hepatic artery 6.5 % + portal (gut 14, spleen 3, pancreas 1, stomach 1) = 25.5 % = ICRP liver total
    q_liver_total = m.organs["liver"].blood_flow + sum(o.blood_flow for o in m.organs.values()
                                                      if o.drains_to == "liver")
    assert q_liver_total / m.cardiac_output == pytest.approx(0.255)
    assert {n for n, o in m.organs.items() if o.drains_to == "liver"} == {"gut", "spleen", "pancreas", "stomach"}
    # rest flow = the ICRP 89 Table 2.40 entries not modelled explicitly (7.5 % male, 8.0 % female)
    assert m.organs["rest"].blood_flow / m.cardiac_output == pytest.approx(0.075)
    assert f.organs["rest"].blood_flow / f.cardiac_output == pytest.approx(0.080)
    for p in (m, f):
        assert all("ICRP 89" in o.source for n, o in p.organs.items() if n != "rest")
        assert p.units["blood_flow"] == "L/h" and p.units["volume"] == "L"


def test_mouse_reference_values():
    p = mouse()
    assert p.body_weight == 0.025
    assert p.cardiac_output == pytest.approx(0.275 * 0.025 ** 0.75 * 60)   # Brown 1997 allometry, L/h
    assert p.organs["liver"].volume == pytest.approx(0.0549 * 0.025)
    assert p.blood_volume == pytest.approx(0.049 * 0.025)
    portal = sum(o.blood_flow for o in p.organs.values() if o.drains_to == "liver")
    assert portal / p.cardiac_output == pytest.approx(0.141)              # Brown 1997: portal 14.1 % CO
    assert "ASSUMPTION" in p.organs["pancreas"].source and "Brown" in p.organs["kidney"].source


def test_scaled_volumes_linear_flows_allometric():
    p, q = human("female"), human("female").scaled(90.0)
    f = 90.0 / 60.0
    for n in p.organs:
        assert q.organs[n].volume == pytest.approx(p.organs[n].volume * f)
        assert q.organs[n].blood_flow == pytest.approx(p.organs[n].blood_flow * f ** 0.75)
    assert q.cardiac_output == pytest.approx(p.cardiac_output * f ** 0.75)
    assert q.hematocrit == p.hematocrit and "scaled" in q.organs["liver"].source


def test_physiology_is_immutable():
    p = human()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.body_weight = 80.0
    with pytest.raises(TypeError):
        p.organs["liver"] = Organ(1.0, 1.0)


def test_physiology_errors():
    p = human()
    organs = dict(p.organs)
    organs["liver"] = dataclasses.replace(organs["liver"], volume=-1.8)
    with pytest.raises(ModelError, match="'liver' volume"):
        dataclasses.replace(p, organs=organs)
    organs = dict(p.organs)
    organs["muscle"] = dataclasses.replace(organs["muscle"], blood_flow=organs["muscle"].blood_flow + 1.0)
    with pytest.raises(ModelError, match="sum to"):
        dataclasses.replace(p, organs=organs)
    with pytest.raises(ModelError, match="Did you mean 'male'"):
        human("mal")
    with pytest.raises(ModelError, match="Did you mean 'liver'"):
        p.organ("livr")
    with pytest.raises(ModelError, match="body_weight"):
        p.scaled(-70.0)


# ----------------------------------------------------------------------------- Kp
def test_rodgers_rowland_neutral_worked_example():
    # RR 2006 equation written out for muscle (rat composition, RR 2006 Table 1:
    # f_EW 0.118, f_IW 0.630, f_NL 0.0100, f_NP 0.0072, lipoprotein ratio 0.059; plasma
    # f_NL 0.0023, f_NP 0.0013), neutral drug logP 1, fu 0.5:
    P, fu = 10.0, 0.5
    ka_pr = 1 / fu - 1 - (P * 0.0023 + (0.3 * P + 0.7) * 0.0013)
    kpu = 0.118 + 0.630 + (P * 0.0100 + (0.3 * P + 0.7) * 0.0072) + ka_pr * 0.059
    assert kpu * fu == pytest.approx(0.46600, abs=1e-5)   # 0.5 x (0.748 + 0.12664 + 0.97219 x 0.059)
    kp = kp_rodgers_rowland(1.0, None, fu, 1.0, kind="neutral", tissues=["muscle"])
    assert kp["muscle"] == pytest.approx(kpu * fu, rel=1e-12)


def test_rodgers_rowland_limits_and_published_trends():
    # A hydrophilic, unbound neutral partitions into tissue water (+ 0.7 x neutral phospholipid):
    kp = kp_rodgers_rowland(-10.0, None, 1.0, 1.0, kind="neutral")
    for t, row in ref.RR_TISSUES.items():
        if t in kp:
            assert kp[t] == pytest.approx(row[0] + row[1] + 0.7 * row[3], abs=2e-3)
    # RR 2006: lipophilic neutrals concentrate in adipose.
    kp = kp_rodgers_rowland(4.0, None, 0.01, 1.0, kind="neutral")
    assert max(kp, key=kp.get) == "adipose"
    # RLR 2005: lipophilic strong bases are highest in acidic-phospholipid-rich tissues (lung,
    # kidney, liver, spleen) and far lower in adipose; higher B:P (more red-cell AP binding) -> higher Kp.
    base = kp_rodgers_rowland(3.0, 9.5, 0.1, 0.8, kind="base")
    assert min(base["lung"], base["kidney"], base["liver"], base["spleen"]) > base["muscle"] > base["adipose"]
    base2 = kp_rodgers_rowland(3.0, 9.5, 0.1, 1.5, kind="base")
    assert base2["lung"] > base["lung"]
    # Acids bind albumin and stay mostly extracellular: Kp well below 1.
    acid = kp_rodgers_rowland(2.0, 4.0, 0.05, 0.6, kind="acid")
    assert all(0 < v < 0.5 for v in acid.values())
    # surrogates: stomach uses the gut composition, rest the muscle composition
    assert base["stomach"] == base["gut"] and base["rest"] == base["muscle"]
    assert "Rodgers" in base.source and "Rodgers" in acid.source
    zw = kp_rodgers_rowland(1.0, (3.0, 9.0), 0.5, 1.0, kind="zwitterion")
    assert all(v > 0 and math.isfinite(v) for v in zw.values())


def test_poulin_theil_limits():
    # logP -> -inf, fu = 1: Kp is the tissue:plasma water ratio (P&T 2002 equation with P = 0)
    kp = kp_poulin_theil(-10.0, 1.0)
    vw_p, _, vph_p = ref.PT_PLASMA
    for t, (vw, vn, vph) in ref.PT_TISSUES.items():
        assert kp[t] == pytest.approx((vw + 0.7 * vph) / (vw_p + 0.7 * vph_p), rel=1e-6)
    kp = kp_poulin_theil(4.0, 1.0)      # lipophilic, unbound: partitions into neutral lipid
    assert max(kp, key=kp.get) == "adipose" and "Poulin" in kp.source
    assert kp_poulin_theil(2.0, 0.5, pka=9.0, kind="base")["adipose"] < kp_poulin_theil(2.0, 0.5)["adipose"]


def test_kp_input_errors():
    with pytest.raises(ModelError, match="Did you mean 'liver'"):
        kp_rodgers_rowland(2.0, 9.0, 0.5, 1.0, tissues=["livr"])
    with pytest.raises(ModelError, match="Did you mean 'spleen'"):
        kp_poulin_theil(2.0, 0.5, tissues=["splen"])
    with pytest.raises(ModelError, match=r"fu .*0 < value <= 1"):
        kp_rodgers_rowland(2.0, 9.0, 0.0, 1.0)
    with pytest.raises(ModelError, match="fu"):
        kp_poulin_theil(2.0, 1.5)
    with pytest.raises(ModelError, match="logp"):
        kp_rodgers_rowland("high", 9.0, 0.5, 1.0)
    with pytest.raises(ModelError, match="bp"):
        kp_rodgers_rowland(2.0, 9.0, 0.5, 0.3)            # below 1 - hematocrit
    with pytest.raises(ModelError, match="Did you mean 'base'"):
        kp_rodgers_rowland(2.0, 9.0, 0.5, 1.0, kind="bass")
    with pytest.raises(ModelError, match="pKa_acid, pKa_base"):
        kp_rodgers_rowland(2.0, 9.0, 0.5, 1.0, kind="zwitterion")
    with pytest.raises(ModelError, match="pka"):
        kp_rodgers_rowland(2.0, None, 0.5, 1.0, kind="acid")


def test_kp_negative_binding_is_zeroed_with_warning():
    with pytest.warns(RuntimeWarning, match="set to 0"):
        kp = kp_rodgers_rowland(3.0, 9.5, 0.5, 0.6, kind="base")   # B:P too low for the lipophilicity
    assert all(v > 0 for v in kp.values())


# ----------------------------------------------------------------------------- whole body
KP = kp_rodgers_rowland(1.0, 9.0, 0.5, 1.2, kind="base")
CL_H, CL_R, BP = 30.0, 10.0, 1.2


@needs_spec
def test_whole_body_builds_with_sources():
    m = whole_body(human(), KP, cl_hepatic=CL_H, cl_renal=CL_R, bp=BP, drug="testdrug", iiv={"CL_hepatic": 0.3})
    assert len(m.states) == 16 and len(m.compartments) == 16
    assert {"venous", "arterial", "lung", "liver", "gut", "spleen", "kidney", "rest"} <= set(m.compartments)
    assert "Q_lung" not in m.parameters        # the lung carries the sum of the tissue flows
    for t in TISSUES:
        assert m.parameters[f"V_{t}"].unit == "L" and "ICRP 89" in m.parameters[f"V_{t}"].source
        assert "Rodgers" in m.parameters[f"Kp_{t}"].source
        if t != "lung":
            assert m.parameters[f"Q_{t}"].unit == "L/h"
    assert m.parameters["CL_hepatic"].iiv == 0.3 and m.parameters["CL_hepatic"].unit == "L/h"
    assert "Cp" in m.observations


@needs_spec
def test_whole_body_tumour_and_mouse():
    m = whole_body(human(), KP, bp=BP, tumour=dict(volume=0.05, blood_flow=1.0, kp=2.0))
    assert len(m.states) == 17 and "tumour" in m.compartments and "C_tumour" in m.observations
    mm = whole_body(mouse(), KP, cl_hepatic=0.05, bp=BP)
    assert len(mm.states) == 16
    assert mm.compile() is not None


@needs_spec
def test_whole_body_errors():
    with pytest.raises(ModelError, match="Did you mean 'liver'"):
        whole_body(human(), {**KP, "livr": 1.0})
    with pytest.raises(ModelError, match="missing"):
        whole_body(human(), {k: v for k, v in KP.items() if k != "brain"})
    with pytest.raises(ModelError, match="tumour volume"):
        whole_body(human(), KP, tumour=dict(volume=-0.1, blood_flow=1.0, kp=1.0))
    with pytest.raises(ModelError, match="Did you mean 'blood_flow'"):
        whole_body(human(), KP, tumour=dict(volume=0.1, bloodflow=1.0, kp=1.0))
    with pytest.raises(ModelError, match="below the total liver blood flow"):
        whole_body(human(), KP, cl_hepatic=500.0)
    with pytest.raises(ModelError, match="Did you mean 'CL_renal'"):
        whole_body(human(), KP, cl_renal=5.0, iiv={"CL_renl": 0.2})
    with pytest.raises(ModelError, match="kp\\['brain'\\]"):
        whole_body(human(), {**KP, "brain": -1.0})
    with pytest.raises(ModelError, match="bp"):
        whole_body(human(), KP, bp=0.0)


@pytest.fixture(scope="module")
def solutions():
    if not HAS_SPEC:
        pytest.skip("pbpk.spec (Model builder) not written yet")
    import jax.numpy as jnp

    import pbpk

    rate, dur = 20.0, 600.0    # long enough for the slowest tissue (adipose) to equilibrate
    with_cl = whole_body(human(), KP, cl_hepatic=CL_H, cl_renal=CL_R, bp=BP).compile()
    no_cl = whole_body(human(), KP, bp=BP).compile()
    t1 = jnp.linspace(0, dur, 61)
    s1 = with_cl.simulate(pbpk.Regimen.of(pbpk.Infusion(rate * dur, "venous", duration=dur)), times=t1)
    s0 = no_cl.simulate(pbpk.Regimen.of(pbpk.Infusion(100.0, "venous", duration=1.0)),
                        times=jnp.linspace(0, 48, 49))
    return dict(with_cl=with_cl, no_cl=no_cl, s1=s1, s0=s0, rate=rate, times=np.asarray(t1))


@needs_spec
def test_whole_body_compiles_with_16_states(solutions):
    for key in ("with_cl", "no_cl"):
        assert len(solutions[key].compartment_names) == 16
    assert solutions["s0"].states.shape[-2:] == (49, 16)
    assert solutions["s0"]["Cp"].shape == (49,)


@needs_spec
def test_steady_state_infusion_matches_rate_over_clearance(solutions):
    # Constant infusion into venous blood: at steady state C_venous = C_arterial = R / (CL_H + CL_R)
    # (blood clearances), and Cp = C_venous / BP.
    s = solutions["s1"]
    v_ven = human().venous_volume
    c_ven = np.asarray(s["venous"])[-1] / v_ven
    expected = solutions["rate"] / (CL_H + CL_R)
    assert c_ven == pytest.approx(expected, rel=1e-4)
    assert float(s["Cp"][-1]) == pytest.approx(expected / BP, rel=1e-4)
    # mass balance with elimination: amounts in the body + eliminated = dosed
    total = np.asarray(s.states).sum(-1)
    dosed = solutions["rate"] * solutions["times"]
    np.testing.assert_allclose(total, dosed, rtol=1e-6, atol=1e-6)


@needs_spec
def test_zero_clearance_conserves_amount(solutions):
    total = np.asarray(solutions["s0"].states).sum(-1)
    np.testing.assert_allclose(total[1:], 100.0, rtol=1e-7)
    assert total[0] == 0.0
    assert np.all(np.asarray(solutions["s0"].states) >= -1e-9)
