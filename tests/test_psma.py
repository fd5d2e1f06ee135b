"""The 177Lu-PSMA PBPK model: mass balance, physical decay, calibrated dosimetry against the
published targets it was calibrated to, the tumour sink effect, and the regimen helpers."""

import numpy as np
import pytest

import pbpk
from pbpk.dosimetry import LU177, administration, check_limits, cycle_table
from pbpk.models import psma

ACTIVITY = 7.4                                      # GBq
TIMES = np.array([0.5, 24.0, 168.0, 1008.0])        # h
LAMBDA = LU177.decay_constant


@pytest.fixture(scope="module")
def typical_and_large_tumour(lib):
    """One batched solve: the typical patient (0.40 L of tumour) and 1.5 L of tumour."""
    model = lib("psma_pbpk")
    sol = model.simulate(psma.label_regimen(ACTIVITY, cycles=1), TIMES, covariates={"TV_tumour": np.array([0.4, 1.5])},
                         rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(sol.status) == 0)
    return model, sol


def _ligand_states(model):
    return [i for i, n in enumerate(model.state_names) if n.endswith(("_hot", "_cold"))]


def test_total_ligand_is_conserved_and_hot_ligand_decays_physically(typical_and_large_tumour):
    model, sol = typical_and_large_tumour
    hot_dose, cold_dose = (d.amount for d in administration(ACTIVITY, specific_activity=psma.SPECIFIC_ACTIVITY))
    states = np.asarray(sol.states)[0]
    ligand = _ligand_states(model)
    hot = [i for i in ligand if model.state_names[i].endswith("_hot")]
    np.testing.assert_allclose(states[:, ligand].sum(axis=1), hot_dose + cold_dose, rtol=1e-9)
    np.testing.assert_allclose(states[:, hot].sum(axis=1), hot_dose * np.exp(-LAMBDA * TIMES), rtol=1e-8)
    assert states[:, ligand].min() > -1e-10 * states.max()


def test_calibrated_typical_patient_meets_the_published_targets(typical_and_large_tumour):
    """The four calibration targets (VISION dosimetry; 24-h urine, PMC5472088) at 1 %."""
    _, sol = typical_and_large_tumour
    per_gbq = {organ: float(np.asarray(sol[f"D_{organ}"])[0, -1]) / ACTIVITY for organ in ("kidney", "salivary", "lacrimal")}
    assert per_gbq["kidney"] == pytest.approx(0.43, rel=0.01)
    assert per_gbq["salivary"] == pytest.approx(0.63, rel=0.01)
    assert per_gbq["lacrimal"] == pytest.approx(2.1, rel=0.01)
    urine_24h = float(np.asarray(sol["A_urine"])[0, 1]) / (ACTIVITY * 1e3 * np.exp(-LAMBDA * 24.0))
    assert urine_24h == pytest.approx(0.565, rel=0.01)


def test_tumour_sink_lowers_kidney_and_salivary_dose(typical_and_large_tumour):
    """Begum 2018: a larger tumour burden takes up more ligand and spares kidneys and glands."""
    _, sol = typical_and_large_tumour
    for organ in ("kidney", "salivary"):
        typical, large = np.asarray(sol[f"D_{organ}"])[:, -1]
        assert large < 0.97 * typical, organ


def test_kidney_bed_lies_between_protracted_and_acute_delivery(typical_and_large_tumour):
    """D < BED ≤ D(1 + D/(α/β)): the in-model LQ integral is bounded by instantaneous delivery
    (the exact Dale comparison is in test_cycle_table_and_limits_from_the_in_model_accumulators)."""
    _, sol = typical_and_large_tumour
    dose, bed = float(np.asarray(sol["D_kidney"])[0, -1]), float(np.asarray(sol["BED_kidney"])[0, -1])
    assert dose < bed <= dose * (1 + dose / pbpk.dosimetry.KIDNEY_ALPHA_BETA)


def test_label_regimen_is_vision():
    reg = psma.label_regimen()
    times = sorted({d.time for d in reg.doses})
    assert times == [i * 6 * 7 * 24.0 for i in range(6)]
    hot = sum(d.amount for d in reg.doses if d.into == "vein_hot")
    assert hot * LU177.molar_activity == pytest.approx(44_400.0, rel=1e-12)       # MBq
    total = sum(d.amount for d in reg.doses)
    assert total == pytest.approx(44_400.0 / psma.SPECIFIC_ACTIVITY, rel=1e-12)   # nmol of ligand
    with pytest.raises(pbpk.ModelError, match="cycles"):
        psma.label_regimen(cycles=0)


def test_administration_by_hand():
    # λ·N_A = ln2/(6.647·86400 s) × 6.02214076e23 /mol × 1e-9 mol/nmol / 1e6 = 726.84 MBq/nmol.
    assert LU177.molar_activity == pytest.approx(726.84, abs=0.01)
    hot, cold = administration(7.4, specific_activity=82.0)
    assert hot.amount == pytest.approx(7400.0 / 726.8369, rel=1e-6) and hot.into == "vein_hot"
    assert hot.amount + cold.amount == pytest.approx(7400.0 / 82.0, rel=1e-12)
    with pytest.raises(pbpk.DosimetryError, match="carrier-free"):
        administration(7.4, specific_activity=800.0)


def test_lesions_are_checked():
    with pytest.raises(pbpk.ModelError, match="lesion 'met'"):
        psma.psma_pbpk({"met": (0.1, -3.0)})
    with pytest.raises(pbpk.ModelError, match="organ name"):
        psma.psma_pbpk({"kidney": (0.1, 30.0)})
    spec = psma.psma_pbpk({"bone_met": (0.05, 80.0), "node": (0.01, 120.0)})
    assert {"TV_bone_met", "TV_node"} <= set(spec.covariates) and "Rden_node" in spec.parameters
    assert {"D_bone_met", "BED_node"} <= set(spec.states) | set(spec.observations)


def test_docstring_lists_every_parameter():
    doc = psma.psma_pbpk.__doc__
    for name in psma.psma_pbpk().parameters:
        stem = name.split("_")[0] if name.startswith(("LAMBDA_REL", "Rden")) else name
        assert stem in doc, name


def test_cycle_table_and_limits_from_the_in_model_accumulators():
    """Two cycles of a mono-exponential kidney source: per-cycle dose by hand, BED by Dale."""
    m = pbpk.Model("kidney_source", amount="MBq")
    k = m.parameter("K", LAMBDA + np.log(2) / 40.0, "1/h", source="test")
    kid = m.compartment("kidney")
    m.flow(kid, None, k * kid.amount)
    pbpk.dosimetry.add_absorbed_dose(m, "kidney", kid.amount, 300.0, alpha_beta=2.6, repair_half_life=2.8)
    model = m.compile()
    starts = [0.0, 1008.0]
    sol = model.simulate(pbpk.Regimen.of(pbpk.Bolus(7400.0, "kidney"), pbpk.Bolus(3700.0, "kidney", time=1008.0)),
                         np.array([0.0, 1008.0, 2016.0]), rtol=1e-11, atol=1e-12)
    table = cycle_table(sol, ["kidney"], starts, activities=[7.4, 3.7])
    k_h = LAMBDA + np.log(2) / 40.0
    # Doses of each cycle: TIA = A0/k (to 1e-9, the tail past 42 d is e^{-k·1008} ≈ 1e-9).
    d1 = float(pbpk.dosimetry.absorbed_dose(7400.0 / k_h, 300.0))
    np.testing.assert_allclose(table["dose_Gy"], [d1, d1 / 2], rtol=1e-6)
    bed = [float(pbpk.dosimetry.bed_monoexponential(d, np.log(2) / k_h)) for d in (d1, d1 / 2)]
    np.testing.assert_allclose(table["bed_Gy"], bed, rtol=1e-6)
    np.testing.assert_allclose(table["cumulative_bed_Gy"].iloc[-1], sum(bed), rtol=1e-6)
    np.testing.assert_allclose(table["Gy_per_GBq"], d1 / 7.4, rtol=1e-6)
    limits = check_limits(table, [pbpk.dosimetry.OrganLimit("kidney", "bed", 28.0, "Bodei 2008"),
                                  pbpk.dosimetry.OrganLimit("kidney", "absorbed_dose", 0.5 * sum(table["dose_Gy"]), "test")])
    assert limits["passed"].tolist() == [sum(bed) <= 28.0, False]
    with pytest.raises(pbpk.DosimetryError, match="no output at t = 500"):
        cycle_table(sol, ["kidney"], [0.0, 500.0])
    with pytest.raises(pbpk.DosimetryError, match="D_kidny"):
        cycle_table(sol, ["kidny"], starts)
