"""Package-level promises: light import, float64 by default, the command line and the demo."""

import subprocess
import sys

import numpy as np
import pandas as pd

import pbpk
from pbpk.cli import main


def test_import_is_light_and_enables_float64():
    code = ("import sys, pbpk, jax.numpy as jnp; heavy = {'torch', 'torchrl', 'matplotlib'} & set(sys.modules); "
            "assert not heavy, heavy; assert jnp.zeros(1).dtype == jnp.float64")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_cli_lists_models(capsys):
    assert main(["models"]) == 0
    assert "docetaxel_bruno1996" in capsys.readouterr().out


def test_cli_simulates_a_nonmem_dataset(tmp_path):
    rows = [dict(ID=1, TIME=0.0, AMT=320.0, DV=np.nan, EVID=1, CMT=1)]
    rows += [dict(ID=1, TIME=t, AMT=0.0, DV=5.0, EVID=0, CMT=2) for t in (0.5, 1.0, 4.0, 12.0)]
    path = tmp_path / "d.csv"
    pbpk.write_nonmem(pd.DataFrame(rows), path)
    out = tmp_path / "sim.csv"
    assert main(["simulate", "theophylline_1cmt_oral", str(path), "--out", str(out)]) == 0
    sim = pd.read_csv(out)
    assert list(sim["TIME"]) == [0.5, 1.0, 4.0, 12.0] and (sim["Cp"] > 0).all()


def test_demo_writes_figure_and_tables(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--patients", "20", "--cohort", "4"]) == 0
    summary = pd.read_csv(tmp_path / "cycle_summary.csv")
    assert set(summary["cycle"]) == {1, 2, 3, 4}
    auc = summary[summary["quantity"] == "AUC_plasma"]
    # Linear model, same dose each cycle, cycles 3 weeks apart: AUC per cycle = dose / CL_H for each
    # patient (the exact AUC state), with the well-stirred hepatic blood clearance
    # CL_H = Q_H·k/(Q_H + k), k = fu·CLint,u/BP (BP = 1, fu = 0.06) and Q_H the total liver flow.
    cohort = pd.read_csv(tmp_path / "virtual_patients.csv")
    q_h = cohort[["Q_liver", "Q_gut", "Q_spleen", "Q_pancreas", "Q_stomach"]].sum(axis=1)
    k = 0.06 * cohort["CL_hepatic"]
    dose = 75.0 * pbpk.bsa(176.0, 73.0)
    np.testing.assert_allclose(auc["mean"], dose * np.mean((q_h + k) / (q_h * k)), rtol=1e-6)
    assert (tmp_path / "organ_profiles.png").stat().st_size > 10_000
    # the closed-loop part: the patient's NONMEM records read back, a schedule whose every dose the
    # shield allowed (forecast risk ≤ δ = 0.02), three arms, one self-contained report
    records = pd.read_csv(tmp_path / "patient_cycle1.csv")
    assert (records["EVID"] == 0).sum() == 6 and (records["EVID"] == 1).sum() == 1
    schedule = pd.read_csv(tmp_path / "patient_schedule.csv")
    assert list(schedule["cycle"]) == [2, 3, 4, 5, 6] and (schedule["forecast P(limit)"] <= 0.02).all()
    arms = pd.read_csv(tmp_path / "closed_loop_arms.csv", index_col=0)
    assert len(arms) == 3 and arms.loc["protocol 75 mg/m²", "cumulative dose (mg/m²)"] == 450.0
    report = (tmp_path / "report.html").read_text()
    assert report.count("<img") == 5 and ("Binding limit" in report or "No limit binds" in report)
    sobol = pd.read_csv(tmp_path / "patient_sobol.csv")       # global sensitivity of the first decision
    assert set(sobol["output"]) == {"efficacy", "ANC nadir"} and "Sobol" in report
    assert set(sobol["parameter"]) <= set(env_parameter_names()) and sobol["ST"].between(-0.1, 1.2).all()


def env_parameter_names():
    from pbpk.control import chemotherapy_env

    return chemotherapy_env().model.parameter_names
