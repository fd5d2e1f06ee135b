"""NONMEM dataset reading, validation, regimen building and writing."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pbpk.dosing import Bolus, Infusion, Regimen, Reset
from pbpk.errors import DataError
from pbpk.nonmem import Dataset, read_nonmem, write_nonmem

# shared/ sits beside the repository (as on developers' machines and in CI).
THEOPH = Path(__file__).resolve().parents[2] / "shared" / "data" / "theoph.csv"

MODEL = SimpleNamespace(
    state_names=("depot", "central", "periph"),
    compartment_names=("depot", "central", "periph"),
    observation_names=("Cp", "ANC"),
    covariate_names=("WT",),
    units={"depot": "mg", "central": "mg", "periph": "mg", "Cp": "mg/L", "ANC": "10^9/L", "WT": "kg"},
    time_unit="h",
    amount_unit="mg",
)


def base(**overrides) -> pd.DataFrame:
    """Two subjects: a dose then two observations each."""
    cols = dict(ID=[1, 1, 1, 2, 2, 2], TIME=[0.0, 1.0, 2.0, 0.0, 1.0, 2.0],
                AMT=[100.0, 0, 0, 50.0, 0, 0], DV=[np.nan, 5.0, 3.0, np.nan, 2.0, 1.0],
                EVID=[1, 0, 0, 1, 0, 0], CMT=[1, 2, 2, 1, 2, 2], WT=[70.0] * 3 + [80.0] * 3)
    cols.update(overrides)
    return pd.DataFrame(cols)


def raises(source, *fragments, **kw) -> str:
    """read_nonmem fails with a DataError whose message contains every fragment
    ('row N' matched as a whole number)."""
    with pytest.raises(DataError) as info:
        read_nonmem(source, **kw)
    msg = str(info.value)
    for frag in fragments:
        pattern = re.escape(frag) + (r"\b" if frag[-1].isalnum() else "")
        assert re.search(pattern, msg), f"{frag!r} not in: {msg}"
    return msg


# --------------------------------------------------------------------------- validation errors


@pytest.mark.parametrize("drop", ["ID", "TIME"])
def test_missing_required_column(drop):
    raises(base().drop(columns=[drop]), drop, "missing required column")


def test_needs_dv_or_amt():
    raises(base().drop(columns=["DV", "AMT"]), "DV", "AMT")


def test_duplicate_header_in_csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("ID,TIME,DV,AMT,dv\n1,0,.,100,.\n1,1,5,0,5\n")
    raises(p, "DV", "duplicate", "columns 3 and 5")


def test_duplicate_header_in_dataframe():
    df = pd.DataFrame([[1, 0.0, 1.0, 1.0]], columns=["ID", "TIME", "DV", "DV"])
    raises(df, "DV", "duplicate")
    raises(pd.DataFrame([[1, 0.0, 1.0, 1.0]], columns=["ID", "TIME", "DV", "Dv"]), "DV", "duplicate")


def test_non_numeric_value_is_quoted_with_row_and_id():
    df = base(TIME=[0.0, 1.0, 2.0, 0.0, "1,5", 2.0])
    raises(df, "Column TIME", "row 5", "ID 2", "'1,5'", "non-numeric")


def test_non_numeric_in_file_lists_several_rows(tmp_path):
    p = tmp_path / "d.csv"
    lines = ["ID,TIME,AMT,DV"] + [f"{i},0,100,." for i in range(1, 9)] + [f"{i},1,.,x{i}" for i in range(1, 9)]
    p.write_text("\n".join(lines) + "\n")
    msg = raises(p, "Column DV", "row 9", "ID 1", "'x1'", "row 13", "ID 5")
    assert "and 3 more rows" in msg


@pytest.mark.parametrize("column,row,sid,values", [
    ("TIME", 3, "1", [0.0, 1.0, np.nan, 0.0, 1.0, 2.0]),
    ("ID", 4, "missing", [1, 1, 1, np.nan, 2, 2]),
])
def test_missing_values_where_needed(column, row, sid, values):
    raises(base(**{column: values}), f"Column {column}", f"row {row}", f"ID {sid}")


def test_missing_amt_on_dose_record():
    raises(base(AMT=[100.0, 0, 0, np.nan, 0, 0]), "Column AMT", "row 4", "ID 2", "dose record")


def test_missing_dv_on_observation_record():
    df = base(DV=[np.nan, 5.0, np.nan, np.nan, 2.0, 1.0], MDV=[1, 0, 0, 1, 0, 0])
    raises(df, "Column DV", "row 3", "ID 1", "MDV")
    # without MDV a missing DV is simply not an observation
    ds = read_nonmem(df.drop(columns=["MDV"]))
    assert list(ds.subject(1).obs["ROW"]) == [2]


def test_time_decreasing_within_subject():
    raises(base(TIME=[0.0, 2.0, 1.0, 0.0, 1.0, 2.0]), "Column TIME", "row 3", "ID 1", "non-decreasing")


def test_time_may_restart_for_next_subject():
    assert len(read_nonmem(base(TIME=[0.0, 5.0, 9.0, 0.0, 1.0, 2.0]))) == 2


def test_split_subject_records():
    raises(base(ID=[1, 1, 2, 2, 1, 1]), "Column ID", "row 5", "ID 1", "together")


def test_negative_amt():
    raises(base(AMT=[-100.0, 0, 0, 50.0, 0, 0]), "Column AMT", "row 1", "ID 1", "AMT >= 0", "AMT=-100")


def test_rate_without_amt():
    df = base(AMT=[100.0, 0, 0, 0.0, 0, 0], RATE=[0, 0, 0, 10.0, 0, 0])
    raises(df, "Column RATE", "row 4", "ID 2", "without an amount")


def test_addl_without_ii():
    df = base(ADDL=[0, 0, 0, 3, 0, 0], II=[0, 0, 0, 0, 0, 0])
    raises(df, "Column II", "row 4", "ID 2", "ADDL>0")


def test_addl_on_observation_record():
    raises(base(ADDL=[0, 2, 0, 0, 0, 0], II=[0, 12, 0, 0, 0, 0]), "Column ADDL", "row 2", "ID 1")


def test_invalid_evid():
    raises(base(EVID=[1, 0, 5, 1, 0, 0]), "Column EVID", "row 3", "ID 1", "EVID=5")


def test_invalid_mdv():
    raises(base(MDV=[1, 0, 2, 1, 0, 0]), "Column MDV", "row 3", "ID 1")


@pytest.mark.parametrize("ss,fragment", [(3, "invalid value"), (2, "not supported"), (0.5, "invalid value")])
def test_invalid_ss(ss, fragment):
    df = base(SS=[0, 0, 0, ss, 0, 0], II=[0, 0, 0, 24, 0, 0])
    raises(df, "Column SS", "row 4", "ID 2", fragment)


def test_ss_without_ii():
    raises(base(SS=[1, 0, 0, 0, 0, 0]), "Column II", "row 1", "ID 1", "SS=1")


@pytest.mark.parametrize("rate", [-3.0, -0.5])
def test_invalid_rate(rate):
    raises(base(RATE=[0, 0, 0, rate, 0, 0]), "Column RATE", "row 4", "ID 2", "-2")


def test_invalid_cmt_number():
    raises(base(CMT=[1, 2, 2, -1, 2, 2]), "Column CMT", "row 4", "ID 2", "not supported")


def test_invalid_censoring_flag():
    raises(base(CENS=[0, 0, 2, 0, 0, 0]), "Column CENS", "row 3", "ID 1")


def test_subject_without_observations():
    df = base(DV=[np.nan, 5.0, 3.0, np.nan, np.nan, np.nan])
    raises(df, "row 4", "ID 2", "observation")
    ds = read_nonmem(df, require_observations=False)
    assert ds.subject(2).obs.empty and len(ds.subject(2).regimen) == 1


# --------------------------------------------------------------------------- model-aware checks


def test_unknown_dose_compartment_name_suggests():
    df = base(CMT=["depot", "central", "central", "centrl", "central", "central"])
    msg = raises(df, "Column CMT", "row 4", "ID 2", "'centrl'", model=MODEL)
    assert "Did you mean 'central'" in msg


def test_dose_compartment_number_out_of_range():
    raises(base(CMT=[1, 2, 2, 7, 2, 2]), "Column CMT", "row 4", "ID 2", "1-3", model=MODEL)


def test_dose_into_an_observation_is_rejected():
    raises(base(CMT=["Cp", 2, 2, 1, 2, 2]), "Column CMT", "row 1", "ID 1", model=MODEL)


def test_unknown_observation_dvid():
    df = base(DVID=[np.nan, "Cp", "ANK", np.nan, "Cp", "Cp"])
    msg = raises(df, "Column DVID", "row 3", "ID 1", "'ANK'", model=MODEL)
    assert "Did you mean 'ANC'" in msg
    raises(base(DVID=[0, 1, 3, 0, 1, 1]), "Column DVID", "row 3", "ID 1", "DVID=3", model=MODEL)
    raises(base(DVID=[0, 1, 1.5, 0, 1, 1]), "Column DVID", "row 3", "ID 1", "invalid value")


def test_missing_model_covariate():
    msg = raises(base().drop(columns=["WT"]).assign(WGT=70.0), "WT", "covariate", model=MODEL)
    assert "Did you mean 'WGT'" in msg


def test_model_covariate_missing_value():
    raises(base(WT=[70.0, np.nan, 70.0, 80.0, 80.0, 80.0]), "Column WT", "row 2", "ID 1", model=MODEL)


def test_model_covariates_matched_case_insensitively():
    model = SimpleNamespace(**{**vars(MODEL), "covariate_names": ("eGFR",), "units": {}})
    ds = read_nonmem(base(egfr=[90.0] * 6), model=model)
    assert "eGFR" in ds.covariate_columns and ds.subject(1).baseline_covariates()["eGFR"] == 90.0


def test_model_names_compartments_and_observations():
    df = base(CMT=[1, 2, 2, "depot", 2, 2], DVID=[np.nan, 1, "ANC", np.nan, np.nan, 2])
    ds = read_nonmem(df, model=MODEL)
    s1, s2 = ds.subject(1), ds.subject(2)
    assert s1.regimen.doses[0].into == "depot" and s2.regimen.doses[0].into == "depot"
    assert list(s1.obs["NAME"]) == ["Cp", "ANC"]           # DVID number, DVID name
    assert list(s2.obs["NAME"]) == ["central", "ANC"]      # CMT number (no DVID), DVID number
    no_cmt = read_nonmem(base().drop(columns=["CMT"]), model=MODEL)
    assert list(no_cmt.subject(1).obs["NAME"]) == ["Cp", "Cp"]  # the default observation
    assert no_cmt.subject(1).regimen.doses[0].into == "depot"    # CMT 1 = first compartment


@pytest.mark.parametrize("units,fragments", [
    ({"DV": "ng/mL"}, ["Column DV", "'ng/mL'", "'mg/L'", "0.001", "Cp"]),
    ({"DV": "mg"}, ["Column DV", "incompatible", "Cp"]),
    ({"TIME": "min"}, ["Column TIME", "0.0166667"]),
    ({"AMT": "g"}, ["Column AMT", "1000"]),
    ({"WT": "lb"}, ["Column WT", "0.453592"]),
    ({"RATE": "mg/min"}, ["Column RATE", "60"]),
    ({"DV": "blorbs"}, ["Column DV", "'blorbs'", "not understood"]),
    ({"WTT": "kg"}, ["'WTT'", "not a column", "Did you mean 'WT'"]),
])
def test_unit_mismatch(units, fragments):
    df = base(RATE=0.0).drop(columns=["CMT"])  # observations of the default observation, Cp
    raises(df, *fragments, model=MODEL, units=units)


def test_compatible_units_pass_and_are_kept():
    df = base(DVID=[np.nan, "Cp", "ANC", np.nan, "Cp", "Cp"])
    units = {"time": "h", "AMT": "mg", "DV": {"Cp": "µg/mL", "ANC": "10^9/L"}, "wt": "kg"}
    ds = read_nonmem(df, model=MODEL, units=units)
    assert ds.units == {"TIME": "h", "AMT": "mg", "DV": {"Cp": "µg/mL", "ANC": "10^9/L"}, "WT": "kg"}
    raises(df, "Column DV", "ANC", "incompatible", model=MODEL, units={"DV": "mg/L"})


def test_units_for_an_unknown_observation():
    raises(base().drop(columns=["CMT"]), "'Cpp'", "Did you mean 'Cp'", model=MODEL, units={"DV": {"Cpp": "mg/L"}})


def test_bad_source():
    with pytest.raises(DataError, match="Cannot read"):
        read_nonmem("/nonexistent/data.csv")
    with pytest.raises(DataError, match="file path or a pandas DataFrame"):
        read_nonmem([1, 2, 3])


# --------------------------------------------------------------------------- regimens


def one_subject(**cols) -> pd.DataFrame:
    n = len(cols["TIME"])
    return pd.DataFrame({"ID": [7] * n, **cols})


def test_addl_expansion_equals_regimen_repeat():
    df = one_subject(TIME=[0.0, 1.0], AMT=[100.0, 0], DV=[np.nan, 2.0], ADDL=[3, 0], II=[12.0, 0], CMT=[1, 2])
    s = read_nonmem(df).subject(7)
    assert s.regimen == Regimen.repeat(Bolus(100.0, "1", 0.0), every=12.0, count=4)
    assert s.dose_rows == (1, 1, 1, 1)


def test_addl_infusion_expansion_and_model_names():
    df = one_subject(TIME=[0.0, 1.0], AMT=[100.0, 0], DV=[np.nan, 2.0], RATE=[50.0, 0], ADDL=[2, 0],
                     II=[24.0, 0], CMT=[2, 2], WT=[70.0, 70.0])
    s = read_nonmem(df, model=MODEL).subject(7)
    assert s.regimen == Regimen.repeat(Infusion(100.0, "central", 0.0, rate=50.0), every=24.0, count=3)


def test_additional_dose_comes_after_a_record_at_the_same_time():
    df = one_subject(TIME=[0.0, 12.0, 12.0], AMT=[100.0, 0, 10.0], DV=[np.nan, 4.0, np.nan],
                     EVID=[1, 0, 1], ADDL=[1, 0, 0], II=[12.0, 0, 0])
    s = read_nonmem(df).subject(7)
    assert [d.amount for d in s.regimen.doses] == [100.0, 10.0, 100.0]
    assert s.dose_rows == (1, 3, 1)
    obs_row = s.obs["ROW"].iat[0]
    assert s.dose_order[2] > obs_row and s.dose_order[1] > obs_row  # observation at 12 is pre-dose


def test_evid_3_and_4():
    df = one_subject(TIME=[0.0, 1.0, 10.0, 11.0, 20.0, 21.0], AMT=[100.0, 0, 0, 0, 80.0, 0],
                     DV=[np.nan, 3.0, np.nan, 1.0, np.nan, 2.0], EVID=[1, 0, 3, 0, 4, 0])
    s = read_nonmem(df).subject(7)
    assert s.regimen.doses == (Bolus(100.0, "1", 0.0), Reset(10.0), Reset(20.0), Bolus(80.0, "1", 20.0))
    assert s.dose_rows == (1, 3, 5, 5)
    assert list(s.obs["TIME"]) == [1.0, 11.0, 21.0]


def test_evid_4_with_addl_resets_once():
    df = one_subject(TIME=[0.0, 1.0], AMT=[100.0, 0], DV=[np.nan, 3.0], EVID=[4, 0], ADDL=[1, 0], II=[24.0, 0])
    s = read_nonmem(df).subject(7)
    assert s.regimen.doses == (Reset(0.0), Bolus(100.0, "1", 0.0), Bolus(100.0, "1", 24.0))


def test_addl_running_past_a_reset_is_an_error():
    df = one_subject(TIME=[0.0, 1.0, 30.0, 31.0], AMT=[100.0, 0, 0, 0], DV=[np.nan, 3.0, np.nan, 1.0],
                     EVID=[1, 0, 3, 0], ADDL=[4, 0, 0, 0], II=[12.0, 0, 0, 0])
    raises(df, "Column ADDL", "row 1", "ID 7", "ADDL=4", "reset")


def test_rate_codes():
    df = one_subject(TIME=[0.0, 1.0, 2.0, 3.0, 4.0], AMT=[10.0, 20.0, 30.0, 0, 0],
                     DV=[np.nan, np.nan, np.nan, 1.0, np.nan], EVID=[1, 1, 1, 0, 2],
                     RATE=[-2, -1, 15.0, 0, 0], CMT=[2, 2, 2, 2, 2])
    d = read_nonmem(df).subject(7).regimen.doses
    assert d[0] == Infusion(10.0, "2", 0.0, duration="model")
    assert d[1] == Infusion(20.0, "2", 1.0, rate="model")
    assert d[2] == Infusion(30.0, "2", 2.0, rate=15.0)


def test_steady_state_doses():
    df = one_subject(TIME=[0.0, 1.0, 2.0], AMT=[100.0, 0, 0], DV=[np.nan, 3.0, np.nan], EVID=[1, 0, 1],
                     SS=[1, 0, 1], II=[12.0, 0, 0], RATE=[0, 0, 5.0], ADDL=[1, 0, 0])
    d = read_nonmem(df).subject(7).regimen.doses
    assert d[0] == Bolus(100.0, "1", 0.0, ss=True, ii=12.0)
    assert d[1] == Infusion(None, "1", 2.0, rate=5.0, ss=True)   # constant infusion at steady state
    assert d[2] == Bolus(100.0, "1", 12.0)                        # ADDL after SS: not steady state


def test_evid_derived_for_continuous_infusion_without_evid_column():
    df = one_subject(TIME=[0.0, 1.0], AMT=[0.0, 0], DV=[np.nan, 3.0], SS=[1, 0], RATE=[5.0, 0])
    assert read_nonmem(df).subject(7).regimen.doses == (Infusion(None, "1", 0.0, rate=5.0, ss=True),)


# --------------------------------------------------------------------------- dataset, covariates, I/O


def test_dataset_shape_ids_and_lookup():
    ds = read_nonmem(base(ID=["a", "a", "a", "b", "b", "b"]))
    assert isinstance(ds, Dataset) and len(ds) == 2 and ds.ids == ("a", "b")
    assert [s.id for s in ds] == ["a", "b"]
    with pytest.raises(DataError, match="ID c: no such subject"):
        ds.subject("c")
    ds_num = read_nonmem(base(ID=[11, 11, 11, 12, 12, 12]))
    assert ds_num.subject("12").id == 12
    with pytest.raises(DataError, match="Did you mean '11'"):
        ds_num.subject(111)


def test_dataset_is_immutable_and_data_is_a_copy():
    ds = read_nonmem(base())
    with pytest.raises(AttributeError):
        ds.foo = 1
    copy = ds.data
    copy.loc[0, "AMT"] = 1e6
    assert ds.data.loc[0, "AMT"] == 100.0
    assert list(ds.data["ROW"]) == [1, 2, 3, 4, 5, 6]


def test_time_varying_and_text_covariates_kept():
    df = base(WT=[70.0, 71.0, 72.0, 80.0, 80.5, 81.0], SEX=["M"] * 3 + ["F"] * 3)
    ds = read_nonmem(df)
    assert ds.covariate_columns == ("WT", "SEX")
    s = ds.subject(1)
    assert list(s.covariates.columns) == ["TIME", "WT", "SEX", "ROW"]
    assert list(s.covariates["WT"]) == [70.0, 71.0, 72.0]
    assert s.baseline_covariates() == {"WT": 70.0, "SEX": "M"}
    assert list(ds.data["WT"]) == list(df["WT"])


def test_observation_table_with_censoring():
    df = base(CENS=[0, 0, 1, 0, 0, 0], LLOQ=[np.nan, 0.5, 0.5, np.nan, 0.5, 0.5])
    obs = read_nonmem(df).subject(1).obs
    assert list(obs.columns) == ["TIME", "DV", "NAME", "CENS", "LLOQ", "ROW"]
    assert list(obs["CENS"]) == [0, 1] and list(obs["LLOQ"]) == [0.5, 0.5] and list(obs["NAME"]) == ["2", "2"]
    plain = read_nonmem(base().drop(columns=["CMT"])).subject(1).obs
    assert list(plain["NAME"]) == ["DV", "DV"] and plain["LLOQ"].isna().all() and (plain["CENS"] == 0).all()


def test_input_dataframe_is_not_modified():
    df = base(TIME=["0", "1", ".", "0", "1", "2"], MDV=[1, 0, 1, 1, 0, 0]).rename(columns={"ID": "id"})
    df["TIME"] = df["TIME"].astype(object)
    before = df.copy(deep=True)
    with pytest.raises(DataError):
        read_nonmem(df)                       # the TIME '.' fails, after parsing started
    df2 = base(EVID=[1, 0, 0, 1, 0, 0]).rename(columns={"WT": "wt"})
    before2 = df2.copy(deep=True)
    read_nonmem(df2, model=MODEL, units={"WT": "kg"})
    pd.testing.assert_frame_equal(df, before)
    pd.testing.assert_frame_equal(df2, before2)


def test_round_trip(tmp_path):
    df = base(CENS=[0, 0, 1, 0, 0, 0], LLOQ=[np.nan, 0.5, 0.5, np.nan, 0.5, 0.5], TIME=[0, 0.25, 1 / 3, 0, 1, 2],
              SEX=["M"] * 3 + ["F"] * 3, ADDL=[1, 0, 0, 0, 0, 0], II=[12.0, 0, 0, 0, 0, 0])
    ds = read_nonmem(df)
    path = write_nonmem(ds, tmp_path / "out.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header[:11] == ["ID", "TIME", "AMT", "DV", "EVID", "MDV", "CMT", "RATE", "II", "ADDL", "SS"]
    back = read_nonmem(path)
    pd.testing.assert_frame_equal(back.data, ds.data)
    assert [s.regimen for s in back] == [s.regimen for s in ds]
    again = read_nonmem(write_nonmem(df, tmp_path / "raw.csv"))  # a DataFrame writes too
    pd.testing.assert_frame_equal(again.data, ds.data)


def test_whitespace_file_with_commented_header(tmp_path):
    p = tmp_path / "d.dat"
    p.write_text("#ID TIME AMT DV CMT\n1 0 100 . 1\n# a comment line\n1 1 . 4.2 2\n")
    ds = read_nonmem(p)
    assert ds.subject(1).obs["DV"].tolist() == [4.2]
    assert ds.subject(1).regimen.doses == (Bolus(100.0, "1", 0.0),)


def test_file_with_wrong_field_count(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("ID,TIME,DV\n1,0,1\n1,1\n")
    with pytest.raises(DataError, match="row 2 has 2"):
        read_nonmem(p)


def theoph_to_nonmem(raw: pd.DataFrame) -> pd.DataFrame:
    """Theophylline (Subject, Wt, Dose mg/kg, Time, conc) as NONMEM records: one oral dose per subject."""
    doses = raw.groupby("Subject", sort=False).first().reset_index()
    dose_rows = pd.DataFrame({"ID": doses["Subject"], "TIME": 0.0, "AMT": doses["Dose"] * doses["Wt"],
                              "DV": np.nan, "EVID": 1, "CMT": "depot", "WT": doses["Wt"], "_k": 0})
    obs_rows = pd.DataFrame({"ID": raw["Subject"], "TIME": raw["Time"], "AMT": 0.0, "DV": raw["conc"],
                             "EVID": 0, "CMT": "Cp", "WT": raw["Wt"], "_k": 1})
    out = pd.concat([dose_rows, obs_rows], ignore_index=True)
    out["_o"] = out["ID"].map({s: i for i, s in enumerate(pd.unique(raw["Subject"]))})  # file order
    return out.sort_values(["_o", "TIME", "_k"], kind="stable").drop(columns=["_o", "_k"])


@pytest.mark.skipif(not THEOPH.exists(), reason=f"public dataset not found at {THEOPH}")
def test_theophylline(tmp_path):
    raw = pd.read_csv(THEOPH)
    path = write_nonmem(theoph_to_nonmem(raw), tmp_path / "theoph_nm.csv")
    ds = read_nonmem(path, MODEL, units={"TIME": "h", "AMT": "mg", "DV": "mg/L", "WT": "kg"})
    assert len(ds) == raw["Subject"].nunique() == 12
    assert ds.ids == tuple(pd.unique(raw["Subject"]))
    s = ds.subject(1)
    first = raw[raw["Subject"] == 1].iloc[0]
    assert s.regimen.doses == (Bolus(first["Dose"] * first["Wt"], "depot", 0.0),)
    assert len(s.obs) == (raw["Subject"] == 1).sum() and set(s.obs["NAME"]) == {"Cp"}
    assert np.allclose(s.obs["DV"], raw.loc[raw["Subject"] == 1, "conc"])
    assert sum(len(x.obs) for x in ds) == len(raw)
