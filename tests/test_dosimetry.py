"""Dosimetry arithmetic against hand calculations, SciPy quadrature and the pure-decay solution."""

import math

import numpy as np
import pytest
import scipy.integrate

import pbpk
from pbpk.dosimetry import (LU177, absorbed_dose, add_time_integrated_activity, bed_monoexponential,
                            surviving_fraction, tumour_control_probability)


def test_lu177_physical_data():
    # ln 2 / (6.647 d × 24 h/d) = 0.693147 / 159.528 h; reference_models.md §1.1: 7.242e-5 /min.
    assert LU177.decay_constant == pytest.approx(0.004344988, rel=1e-6)
    assert LU177.decay_constant / 60.0 == pytest.approx(7.242e-5, rel=1e-4)


def test_self_dose_by_hand():
    # 100 MBq·h = 3.6e11 decays; × 0.1479 MeV × 1.602176634e-13 J/MeV = 8.530628e-3 J; / 0.150 kg.
    expected = 3.6e11 * 0.1479 * 1.602176634e-13 / 0.150
    assert float(absorbed_dose(100.0, 150.0)) == pytest.approx(expected, rel=1e-12)
    assert float(expected) == pytest.approx(0.0568708618, rel=1e-9)
    # Same quantities in other units.
    assert float(absorbed_dose(0.1, 0.15, tia_unit="GBq*h", mass_unit="kg")) == pytest.approx(expected, rel=1e-12)
    assert float(absorbed_dose(100.0 / 24.0, 150.0, tia_unit="MBq*d")) == pytest.approx(expected, rel=1e-12)
    # Organs along the last axis, patients along the first.
    d = absorbed_dose(np.array([[100.0, 50.0], [200.0, 0.0]]), np.array([150.0, 25.0]))
    np.testing.assert_allclose(d, [[expected, expected * 3.0], [2 * expected, 0.0]], rtol=1e-12)


def test_s_values_reduce_to_self_dose():
    tia = np.array([100.0, 40.0])                                  # MBq·h in kidneys, spleen
    mass = np.array([300.0, 150.0])                                # g
    # Self-dose S in mGy/(MBq·s): Δ [J/decay] × 1e6 decays/(MBq·s) / m [kg] × 1e3 mGy/Gy.
    s_self = LU177.electron_energy * 1.602176634e-13 * 1e6 / (mass / 1e3) * 1e3
    cross = 0.01 * s_self[0]
    s = np.array([[s_self[0], cross], [0.0, s_self[1]]])
    d = absorbed_dose(tia, s_values=s)
    self_dose = absorbed_dose(tia, mass)
    np.testing.assert_allclose(d, [self_dose[0] + cross * 40.0 * 3.6, self_dose[1]], rtol=1e-12)


@pytest.mark.parametrize("t_eff,alpha_beta,t_rep", [(40.0, 2.6, 2.8), (100.0, 10.0, 1.5), (1.0, 3.0, 0.5)])
def test_bed_matches_lq_quadrature(t_eff, alpha_beta, t_rep):
    """BED = D + (2/(α/β))∫₀^∞ R(t)∫₀^t R(s)e^{−μ(t−s)} ds dt for R(t) = R₀e^{−λt}, by SciPy quadrature."""
    dose = 20.0
    lam, mu = math.log(2) / t_eff, math.log(2) / t_rep
    r0 = dose * lam
    rate = lambda t: r0 * math.exp(-lam * t)
    horizon = 60.0 * max(t_eff, t_rep)
    inner = lambda t: scipy.integrate.quad(lambda s: rate(s) * math.exp(-mu * (t - s)), 0.0, t, epsabs=0,
                                           epsrel=1e-12, limit=200)[0]
    outer, _ = scipy.integrate.quad(lambda t: rate(t) * inner(t), 0.0, horizon, epsabs=0, epsrel=1e-11, limit=400)
    reference = dose + 2.0 * outer / alpha_beta
    bed = bed_monoexponential(dose, t_eff, alpha_beta=alpha_beta, repair_half_life=t_rep)
    assert float(bed) == pytest.approx(reference, rel=1e-8)


def test_kidney_bed_by_hand():
    # 20 Gy, T_eff 40 h, kidney defaults: 20·(1 + 20·2.8/(2.6·42.8)) = 30.0647 Gy.
    assert float(bed_monoexponential(20.0, 40.0)) == pytest.approx(20.0 * (1 + 20.0 * 2.8 / (2.6 * 42.8)), rel=1e-12)
    assert float(bed_monoexponential(20.0, 40.0)) == pytest.approx(30.0647, abs=1e-4)


def test_tumour_response_by_hand():
    alpha, bed = 0.35, 30.0
    assert float(surviving_fraction(bed, alpha=alpha)) == pytest.approx(math.exp(-10.5), rel=1e-12)
    # Repopulation: 42 d of treatment, kick-off 21 d, T_pot 3 d -> BED loses ln2·21/(0.35·3) = 13.863 Gy.
    sf = surviving_fraction(bed, alpha=alpha, treatment_time=42.0, kickoff_time=21.0, doubling_time=3.0)
    assert float(sf) == pytest.approx(math.exp(-alpha * (bed - math.log(2) * 21.0 / (alpha * 3.0))), rel=1e-12)
    tcp = tumour_control_probability(bed, alpha=alpha, clonogens=1e4)
    assert float(tcp) == pytest.approx(math.exp(-1e4 * math.exp(-10.5)), rel=1e-12)


def test_time_integrated_activity_is_integrated_with_the_model():
    """All biological rates zero: the activity decays physically; TIA = A₀(1 − e^{−λT})/λ (to 1e-10)."""
    m = pbpk.Model("pure_decay", amount="MBq")
    lam = m.parameter("LAMBDA", LU177.decay_constant, "1/h")
    blood = m.compartment("blood", volume=1.0)
    m.flow(blood, None, lam * blood.amount)
    add_time_integrated_activity(m, "blood", blood.amount)
    model = m.compile()
    assert model.spectral is not None                     # the TIA state is an accumulator: closed form
    times = np.array([1.0, 24.0, 168.0, 1000.0, 5000.0])
    sol = model.simulate(pbpk.Bolus(7400.0, "blood"), times)
    a_ref = 7400.0 * np.exp(-LU177.decay_constant * times)
    tia_ref = 7400.0 * (1.0 - np.exp(-LU177.decay_constant * times)) / LU177.decay_constant
    np.testing.assert_allclose(sol["blood"], a_ref, rtol=1e-10)
    np.testing.assert_allclose(sol["TIA_blood"], tia_ref, rtol=1e-10)
    assert model.units["TIA_blood"] == "MBq*h"


@pytest.mark.parametrize("call,match", [
    (lambda: absorbed_dose(100.0, -1.0), "mass must be positive"),
    (lambda: absorbed_dose(-5.0, 10.0), "tia must be non-negative"),
    (lambda: absorbed_dose(5.0), "organ mass"),
    (lambda: absorbed_dose(np.ones(3), s_values=np.ones((2, 2))), "3 sources"),
    (lambda: absorbed_dose(1.0, 1.0, tia_unit="MBq"), "tia_unit"),
    (lambda: bed_monoexponential(10.0, 0.0), "effective_half_life must be positive"),
    (lambda: bed_monoexponential(10.0, 40.0, alpha_beta=-2.0), "alpha_beta must be positive"),
    (lambda: add_time_integrated_activity(pbpk.Model("x", amount="MBq"), "k", 1.0, unit="MBq"), "activity × time"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(pbpk.PbpkError, match=match):
        call()
