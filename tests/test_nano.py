"""Nanoparticle case: mouse nanoparticle PBPK against an independent SciPy implementation,
human liposomal doxorubicin against its analytic and published properties, exposure
constraints, and allometric scaling against known values."""

import numpy as np
import pytest

import pbpk
from pbpk.control import ExposureLimit
from pbpk.models import liposomal_doxorubicin as pld
from pbpk.models import nanoparticle as nano
from pbpk.physiology import (KM_FACTORS, allometric_exponent, allometric_scale, human, human_equivalent_dose,
                             scale_parameters)
from validation.published import _nanopbpk_scipy as reference

TIMES = np.array([0.5, 2.0, 12.0, 24.0, 72.0, 168.0])


@pytest.fixture(scope="module")
def tumour_mouse():
    return nano.nanoparticle_mouse("G2").compile()


@pytest.fixture(scope="module")
def pld_model():
    return pld.pld_human().compile()


def test_mouse_model_matches_scipy_implementation_of_the_published_equations(tumour_mouse):
    organs = dict(nano.ORGANS)
    organs["tumour"] = nano.TUMOUR_SETS["G2"][0]
    dose = 0.85 * 0.02
    ref = reference.simulate(organs, TIMES, dose)
    sol = tumour_mouse.simulate(nano.mouse_iv_regimen(0.85), TIMES, rtol=1e-10, atol=1e-14)
    for organ in (*organs, "blood"):
        np.testing.assert_allclose(sol[f"ID_{organ}"], 100 * ref[organ] / dose, rtol=1e-6, err_msg=organ)
    np.testing.assert_allclose(sol["ID_excreted"], 100 * (ref["bile"] + ref["urine"]) / dose, rtol=1e-6)


def test_percent_injected_dose_closes_and_delivery_efficiency_is_tumour_tissue(tumour_mouse):
    sol = tumour_mouse.simulate(nano.mouse_iv_regimen(0.85), TIMES, rtol=1e-10, atol=1e-14)
    organs = (*nano.ORGANS, "tumour")
    total = sum(np.asarray(sol[f"ID_{o}"]) for o in organs) + np.asarray(sol["ID_blood"]) + np.asarray(sol["ID_excreted"])
    np.testing.assert_allclose(total, 100.0, rtol=1e-9)
    names = tumour_mouse.state_names
    states = np.asarray(sol.states)
    tissue = states[:, names.index("tumour_tissue")] + states[:, names.index("tumour_pc")]
    np.testing.assert_allclose(sol["DE"], 100 * tissue / (0.85 * 0.02), rtol=1e-9)
    # %ID does not depend on the dose (the model is linear in amount with Hill uptake in time)
    double = tumour_mouse.simulate(nano.mouse_iv_regimen(1.7), TIMES, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(double["DE"], sol["DE"], rtol=1e-7)


def test_capacity_limited_uptake_saturates():
    """With uptake K_max (1 − A_PC/(A_cap V)), the phagocytic content approaches A_cap·V when
    the dose far exceeds the capacity, and the fraction taken up falls with dose."""
    model = nano.nanoparticle_mouse(None, uptake="capacity").compile()
    t = np.array([24.0, 168.0])
    spleen_pc = model.state_names.index("spleen_pc")
    v_spleen = 0.005 * 0.02
    high = model.simulate(nano.mouse_iv_regimen(500.0), t, rtol=1e-9, atol=1e-12)
    low = model.simulate(nano.mouse_iv_regimen(0.85), t, rtol=1e-9, atol=1e-12)
    capacity_mg = 200.0 * v_spleen          # 200 µg/g × organ volume (kg = L)
    assert 0.5 * capacity_mg < float(np.asarray(high.states)[-1, spleen_pc]) <= capacity_mg * (1 + 1e-9)
    assert float(np.asarray(high["ID_spleen"])[-1]) < float(np.asarray(low["ID_spleen"])[-1])


def test_nanoparticle_bad_options_are_named():
    with pytest.raises(pbpk.ModelError, match="uptake='linear'"):
        nano.nanoparticle_mouse(uptake="linear")
    with pytest.raises(pbpk.ModelError, match="tumour='G3'"):
        nano.nanoparticle_mouse(tumour="G3")
    with pytest.raises(pbpk.ModelError, match="body weight"):
        nano.mouse_iv_regimen(0.85, body_weight_kg=0.0)


def test_pld_encapsulated_auc_is_dose_over_label_clearance(pld_model):
    """Linear kinetics: the AUC of encapsulated drug is dose / (CL_LIPO·BSA) exactly, whatever
    the (assumed) tumour, skin and leak rates that split the clearance."""
    bsa = 1.6
    t = np.unique(np.concatenate([np.linspace(0, 24, 2401), np.linspace(24, 3000, 20001)]))
    sol = pld_model.simulate(pld.pld_regimen(bsa, 50.0, cycles=1), t, covariates={"BSA": bsa, "TV": 0.2},
                             rtol=1e-11, atol=1e-13)
    auc = np.trapezoid(np.asarray(sol["C_encapsulated"]), t)
    cl = float(pld_model.theta[pld_model.parameter_index("CL_LIPO")]) * bsa
    assert auc == pytest.approx(50.0 * bsa / cl, rel=2e-4)
    assert float(np.asarray(sol["CUMDOSE"])[-1]) == pytest.approx(50.0, rel=1e-9)
    assert np.max(np.asarray(sol["FREE_FRACTION"])[t >= 1.0]) < 10.0      # label: ≥ 90 % encapsulated


def test_pld_terminal_half_life_in_published_range(pld_model):
    t = np.linspace(150.0, 400.0, 51)
    c = np.asarray(pld_model.simulate(pld.pld_regimen(1.8, 20.0, cycles=1), t, rtol=1e-10, atol=1e-12)["C_total"])
    half = np.log(2) / -np.polyfit(t, np.log(c), 1)[0]
    assert 45.0 <= half <= 55.0            # Doxil label 52–55 h; Gabizon 1994 45 h


def test_exposure_limits_rank_schedules_and_name_bad_input(pld_model):
    skin_peak, skin_mean, heart = pld.pld_constraints(pld_model, cycles=3)
    grid = np.linspace(0.0, 3 * 28 * 24.0, 3 * 28 * 4 + 1)
    run = lambda mg, days, n: pld_model.simulate(pld.pld_regimen(1.8, mg, every_days=days, cycles=n), grid,
                                                 covariates={"BSA": 1.8}, rtol=1e-8, atol=1e-10)
    reference, label, dense = run(40.0, 28.0, 3), run(50.0, 28.0, 3), run(20.0, 7.0, 12)
    assert bool(skin_peak.evaluate(reference)["ok"]) and bool(skin_mean.evaluate(reference)["ok"])
    assert float(skin_peak.evaluate(label)["ratio"]) == pytest.approx(1.25, rel=1e-6)    # linear in dose
    # weekly 20 mg/m² has twice the dose intensity: within the peak, not within the average
    assert bool(skin_peak.evaluate(dense)["ok"]) and not bool(skin_mean.evaluate(dense)["ok"])
    assert float(heart.value(dense)) == pytest.approx(240.0, rel=1e-9)
    with pytest.raises(pbpk.ModelError, match="Did you mean 'C_skin'"):
        ExposureLimit("C_skn", 1.0).value(reference)
    with pytest.raises(pbpk.ModelError, match="statistic='peak'"):
        ExposureLimit("C_skin", 1.0, statistic="peak")


def test_allometry_against_known_values():
    assert allometric_exponent("L/h") == 0.75 and allometric_exponent("mL") == 1.0
    assert allometric_exponent("1/h") == -0.25 and allometric_exponent("h") == 0.25
    assert allometric_exponent("mg/L") == 0.0
    # mouse cardiac output (16.5 L/h·kg^-0.75 at 0.02 kg) scaled to the ICRP 89 reference woman
    woman = human("female")
    scaled = allometric_scale(16.5 * 0.02 ** 0.75, from_weight=0.02, to_weight=woman.body_weight, unit="L/h")
    assert scaled == pytest.approx(woman.cardiac_output, rel=0.02)
    # FDA 2005: a mouse dose in mg/kg is divided by 12.3 for the human equivalent dose
    assert human_equivalent_dose(9.0, "mouse") == pytest.approx(9.0 / 12.3, rel=3e-3)
    assert human_equivalent_dose(9.0, "Mouse") * KM_FACTORS["human"][1] == pytest.approx(27.0)
    with pytest.raises(pbpk.ModelError, match="Did you mean 'mouse'"):
        human_equivalent_dose(1.0, "mose")
    with pytest.raises(pbpk.ModelError, match="to_weight"):
        allometric_scale(1.0, from_weight=0.02, to_weight=-70.0, unit="L/h")


def test_scale_parameters_scales_by_unit():
    spec = nano.nanoparticle_mouse(None)
    values = scale_parameters(spec, from_weight=0.02, to_weight=70.0, only=["KREL_liver", "K50_liver", "P_liver"])
    f = 70.0 / 0.02
    assert values["KREL_liver"] == pytest.approx(0.0015 * f ** -0.25)
    assert values["K50_liver"] == pytest.approx(48.0 * f ** 0.25)
    assert values["P_liver"] == pytest.approx(0.08) and values["QCC"] == pytest.approx(16.5)
    with pytest.raises(pbpk.ModelError, match="Did you mean 'KREL_liver'"):
        scale_parameters(spec, from_weight=0.02, to_weight=70.0, only=["KREL_livr"])
