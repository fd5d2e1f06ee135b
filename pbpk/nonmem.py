"""NONMEM-style datasets: read, validate, normalise, write.

``read_nonmem`` turns a NONMEM data file (or a DataFrame in that layout) into a ``Dataset`` of
``Subject``s, each carrying a ``Regimen`` built from its dose records and a table of its
observations.  Everything is checked up front; every problem raises ``DataError`` naming the
column, the subject ID, the record and what was expected.

Record numbers: "row N" in messages and the ``ROW`` column is the 1-based index of the data
record, in file order, not counting the header, blank lines or ``#`` comment lines (the first
record under the header is row 1).

NONMEM conventions kept here: ``.`` or an empty field is a missing value; a missing AMT, RATE, II,
ADDL or SS on a record where it does not matter reads as 0, and CMT or DVID 0 as "the default",
as in NONMEM; additional doses (ADDL/II) are non-steady-state copies of their record's dose and,
at a time shared with another record, come after it.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .dosing import Bolus, Infusion, Regimen, Reset
from .errors import DataError, DosingError, did_you_mean

__all__ = ["read_nonmem", "write_nonmem", "Dataset", "Subject", "NONMEM_COLUMNS"]

NONMEM_COLUMNS = ("ID", "TIME", "AMT", "DV", "EVID", "MDV", "CMT", "RATE", "II", "ADDL", "SS")
_OPTIONAL = ("CENS", "LLOQ", "DVID")
_RESERVED = frozenset(NONMEM_COLUMNS + _OPTIONAL + ("ROW",))
_NUMERIC = ("TIME", "AMT", "DV", "EVID", "MDV", "RATE", "II", "ADDL", "SS", "CENS", "LLOQ")
_ZERO_WHEN_MISSING = ("RATE", "II", "ADDL", "SS", "CENS")  # NONMEM reads '.' as 0 here
_MISSING_TOKENS = frozenset({"", ".", "NA", "NAN", "N/A", "NONE"})
_DOSE_EVIDS = (1, 4)
_MAX_LISTED = 5  # offending records quoted per message


# --------------------------------------------------------------------------- messages


def _fmt(v) -> str:
    """A value as a person would write it: 1 not 1.0, strings quoted."""
    if isinstance(v, str):
        return repr(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "missing"
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (np.integer, np.floating)):
        return str(v.item())
    return str(v)


def _fmt_id(v) -> str:
    return _fmt(v).strip("'")


def _where(ctx: pd.DataFrame, mask, column: str | None = None, values: pd.Series | None = None) -> str:
    """'row 3 (ID 1, AMT='x'), row 7 (ID 2, AMT='y') and 4 more rows' for the masked records."""
    idx = np.flatnonzero(np.asarray(mask, dtype=bool))
    parts = []
    for i in idx[:_MAX_LISTED]:
        bits = [f"ID {_fmt_id(ctx['ID'].iat[i])}"]
        if values is not None:
            bits.append(f"{column}={_fmt(values.iat[i])}")
        parts.append(f"row {ctx['ROW'].iat[i]} ({', '.join(bits)})")
    more = f" and {len(idx) - _MAX_LISTED} more rows" if len(idx) > _MAX_LISTED else ""
    return ", ".join(parts) + more


def _fail(ctx, mask, column: str, problem: str, expected: str, values=None, hint: str = "") -> None:
    """Raise DataError for the records in ``mask`` if there are any."""
    mask = np.asarray(mask, dtype=bool)
    if mask.any():
        where = _where(ctx, mask, column, values)
        raise DataError(f"Column {column}: {problem} at {where}; expected {expected}.{hint}")


# --------------------------------------------------------------------------- reading


def _split_header(line: str) -> tuple[list[str], str | None]:
    """Column names and the delimiter (',' or None for whitespace)."""
    line = line.lstrip()
    if line.startswith("#"):  # NONMEM files often comment out their header line
        line = line[1:]
    if "," in line:
        return [c.strip().strip('"').strip("'") for c in next(csv.reader([line]))], ","
    return line.split(), None


def _read_file(path) -> pd.DataFrame:
    """Read a CSV or whitespace-separated file as strings; header names checked for duplicates."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"Cannot read NONMEM data file {os.fspath(path)!r}: {e}.") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"NONMEM data file {os.fspath(path)!r} is empty; expected a header line and records.")
    names, delim = _split_header(lines[0])
    _check_duplicate_columns(names)
    records = [ln for ln in lines[1:] if not ln.lstrip().startswith("#")]
    rows = list(csv.reader(records, skipinitialspace=True)) if delim else [ln.split() for ln in records]
    bad = [(i + 1, len(r)) for i, r in enumerate(rows) if len(r) != len(names)]
    if bad:
        listed = ", ".join(f"row {i} has {n}" for i, n in bad[:_MAX_LISTED])
        raise DataError(f"{os.fspath(path)}: wrong number of fields ({listed}); expected {len(names)} "
                        f"fields per record, one per header column {names}.")
    return pd.DataFrame(rows, columns=names, dtype=object)


def _check_duplicate_columns(names) -> None:
    upper = [str(n).strip().upper() for n in names]
    seen: dict[str, int] = {}
    for pos, name in enumerate(upper, start=1):
        if name in seen:
            raise DataError(f"Column {name}: duplicate column header (columns {seen[name]} and {pos}, "
                            f"names compared case-insensitively); expected each column once.")
        seen[name] = pos


def _read_source(source) -> pd.DataFrame:
    """The records as a fresh DataFrame with upper-case column names and a ROW column."""
    if isinstance(source, pd.DataFrame):
        _check_duplicate_columns(source.columns)
        df = source.copy()  # never touch the caller's frame
    elif isinstance(source, (str, os.PathLike)):
        df = _read_file(source)
    else:
        raise DataError(f"read_nonmem: source must be a file path or a pandas DataFrame, got {type(source).__name__}.")
    df.columns = [str(c).strip().upper() for c in df.columns]
    df = df.drop(columns=["ROW"], errors="ignore").reset_index(drop=True)  # ROW is ours, recomputed
    df["ROW"] = np.arange(1, len(df) + 1)
    return df


# --------------------------------------------------------------------------- parsing


def _is_missing(v) -> bool:
    if v is None or v is pd.NA:
        return True
    if isinstance(v, str):
        return v.strip().upper() in _MISSING_TOKENS
    return isinstance(v, (float, np.floating)) and math.isnan(v)


def _objmap(col: pd.Series, fn) -> pd.Series:
    """``col.map(fn)`` without dtype inference (which would turn ints and NaN into floats)."""
    return pd.Series([fn(v) for v in col], index=col.index, dtype=object)


def _parse_numbers(col: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Float64 values (NaN for missing) and a mask of values that are not finite numbers."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.astype("float64")
        return values, np.isinf(values.to_numpy())
    missing = col.map(_is_missing).to_numpy(dtype=bool)
    cleaned = col.map(lambda v: v.strip() if isinstance(v, str) else v).astype(object)
    cleaned[missing] = np.nan
    values = pd.to_numeric(cleaned, errors="coerce").astype("float64")
    bad = ~missing & ~np.isfinite(values.to_numpy())
    return values, bad


def _parse_id(df: pd.DataFrame) -> pd.Series:
    values, bad = _parse_numbers(df["ID"])
    if not bad.any():
        _fail(df.assign(ID=values), values.isna(), "ID", "missing subject ID", "an ID on every record")
        return values.astype("int64") if (values % 1 == 0).all() else values
    ids = df["ID"].map(lambda v: np.nan if _is_missing(v) else str(v).strip())  # names as IDs
    _fail(df.assign(ID=ids), ids.isna(), "ID", "missing subject ID", "an ID on every record")
    return ids.astype(object)


def _parse_target(col: pd.Series, ctx: pd.DataFrame, column: str) -> pd.Series:
    """CMT/DVID values: a positive integer, a name (str), or NaN when missing or 0 (NONMEM's
    "default compartment" / "no DVID", common on dose records)."""
    def one(v):
        if _is_missing(v):
            return np.nan
        try:
            x = float(str(v).strip()) if isinstance(v, str) else float(v)
        except ValueError:
            return str(v).strip()
        if x == 0:
            return np.nan
        return int(x) if x.is_integer() and x >= 1 else ("bad", v)

    out = _objmap(col, one)
    bad = np.array([isinstance(v, tuple) for v in out], dtype=bool)
    raw = col.astype(object)
    what = "compartment" if column == "CMT" else "observation"
    _fail(ctx, bad, column, "invalid value", f"a positive integer (1-based {what} number), 0 or '.' for the "
          f"default, or a name; negative CMT (compartment off) is not supported", raw)
    return out


def _parse_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """Numbers parsed, absent columns defaulted; checks that need no model."""
    _check_required(raw)
    df = pd.DataFrame({"ROW": raw["ROW"]})
    df["ID"] = _parse_id(raw)
    for col in _NUMERIC:
        if col in raw:
            values, bad = _parse_numbers(raw[col])
            _fail(df, bad, col, "non-numeric value", "a number ('.' or empty for missing)", raw[col])
            df[col] = values
    for col in ("CMT", "DVID"):
        if col in raw:
            df[col] = _parse_target(raw[col], df, col)
    for col in raw.columns:
        if col not in _RESERVED:
            df[col] = _parse_covariate(raw[col])
    return _fill_defaults(df)


def _check_required(raw: pd.DataFrame) -> None:
    cols = [c for c in raw.columns if c != "ROW"]
    for col in ("ID", "TIME"):
        if col not in raw:
            raise DataError(f"Column {col}: missing required column; the data has columns {cols}; "
                            f"expected ID, TIME and DV and/or AMT." + did_you_mean(col, cols))
    if "DV" not in raw and "AMT" not in raw:
        raise DataError(f"Columns DV and AMT: neither is present; the data has columns {cols}; "
                        f"expected DV (observations) and/or AMT (doses).")


def _parse_covariate(col: pd.Series) -> pd.Series:
    """Numeric covariates become float64; anything with text (e.g. SEX='M') is kept as given."""
    values, bad = _parse_numbers(col)
    return col.astype(object) if bad.any() else values


def _fill_defaults(df: pd.DataFrame) -> pd.DataFrame:
    _fail(df, df["TIME"].isna(), "TIME", "missing time", "a TIME on every record")
    for col in _ZERO_WHEN_MISSING:
        if col in df:
            df[col] = df[col].fillna(0.0)
    if "AMT" not in df:
        df["AMT"] = 0.0
    if "DV" not in df:
        df["DV"] = np.nan
    for col in ("RATE", "II", "ADDL", "SS"):
        if col not in df:
            df[col] = 0.0
    if "EVID" not in df:
        # a steady-state continuous infusion (AMT 0, RATE > 0) is a dose record too
        df["EVID"] = ((df["AMT"] > 0) | ((df["SS"] > 0) & (df["RATE"] > 0))).astype(float)
    _fail(df, df["EVID"].isna(), "EVID", "missing event type", "EVID 0, 1, 2, 3 or 4 on every record")
    _fail(df, ~df["EVID"].isin([0, 1, 2, 3, 4]), "EVID", "invalid event type",
          "0 (observation), 1 (dose), 2 (other), 3 (reset) or 4 (reset and dose)", df["EVID"])
    _fail(df, ~df["SS"].isin([0, 1, 2]), "SS", "invalid value", "0, 1 (steady state) or 2", df["SS"])
    dose = df["EVID"].isin(_DOSE_EVIDS).to_numpy()
    _fail(df, dose & df["AMT"].isna().to_numpy(), "AMT", "missing dose amount on a dose record (EVID 1 or 4)",
          "an AMT on every dose record")
    df["AMT"] = df["AMT"].fillna(0.0)  # AMT '.' on other records is 0, as in NONMEM
    derived_mdv = ((df["EVID"] != 0) | df["DV"].isna()).astype(float)
    df["MDV"] = df["MDV"].fillna(derived_mdv) if "MDV" in df else derived_mdv
    _fail(df, ~df["MDV"].isin([0, 1]), "MDV", "invalid value", "0 (DV observed) or 1 (no DV)", df["MDV"])
    if "CMT" not in df:
        df["CMT"] = np.nan
    # NONMEM CMT '.' or absent on a dose means the default dose compartment, number 1
    df["CMT"] = pd.Series([1 if d and _is_missing(v) else v for d, v in zip(dose, df["CMT"])],
                          index=df.index, dtype=object)
    if all(isinstance(v, (int, float, np.number)) for v in df["CMT"]):  # no names: plain numbers
        df["CMT"] = df["CMT"].astype("float64")
    for col in ("EVID", "MDV", "SS"):
        df[col] = df[col].astype("int64")
    return _ordered(df)


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    """NONMEM column order, then CENS/LLOQ/DVID, covariates, and ROW last."""
    first = [c for c in NONMEM_COLUMNS + _OPTIONAL if c in df]
    rest = [c for c in df.columns if c not in first and c != "ROW"]
    return df[first + rest + ["ROW"]]


# --------------------------------------------------------------------------- record checks


def _check_records(df: pd.DataFrame) -> None:
    """Every record-level rule that needs no model."""
    _check_order(df)
    dose = df["EVID"].isin(_DOSE_EVIDS).to_numpy()
    amt, rate, ii, addl, ss = (df[c].to_numpy() for c in ("AMT", "RATE", "II", "ADDL", "SS"))
    _fail(df, amt < 0, "AMT", "negative amount", "AMT >= 0", df["AMT"])
    _fail(df, dose & (df["TIME"].to_numpy() < 0), "TIME", "negative time on a dose record",
          "dose times >= 0", df["TIME"])
    _fail(df, ss == 2, "SS", "SS=2 (steady state added to the current state) is not supported",
          "SS 0 or 1", df["SS"])
    _fail(df, ~((rate == -2) | (rate == -1) | (rate >= 0)), "RATE", "invalid rate",
          "0 (bolus), a positive rate, -1 (rate modelled) or -2 (duration modelled)", df["RATE"])
    continuous = (ss == 1) & (amt == 0) & (rate > 0) & (ii == 0)
    _fail(df, dose & (rate != 0) & (amt == 0) & ~continuous, "RATE", "RATE given without an amount (AMT=0)",
          "AMT > 0 with a RATE, or a steady-state continuous infusion (SS=1, AMT=0, RATE>0, II=0)", df["RATE"])
    _fail(df, ii < 0, "II", "negative interdose interval", "II >= 0", df["II"])
    _fail(df, (addl < 0) | (addl % 1 != 0), "ADDL", "invalid number of additional doses",
          "a non-negative integer", df["ADDL"])
    _fail(df, ~dose & (addl > 0), "ADDL", "additional doses on a record that is not a dose",
          "ADDL=0 unless EVID is 1 or 4", df["ADDL"])
    _fail(df, (addl > 0) & ~(ii > 0), "II", "ADDL>0 without an interdose interval",
          "II > 0 whenever ADDL > 0", df["II"])
    _fail(df, dose & (ss == 1) & ~(ii > 0) & ~continuous, "II", "steady-state dose (SS=1) without an interval",
          "II > 0 for SS=1 (or AMT=0, RATE>0, II=0 for a constant infusion)", df["II"])
    _fail(df, (ss == 1) & (rate != 0) & (addl > 0), "ADDL", "additional doses after a steady-state infusion",
          "ADDL=0 on SS=1 infusion records (NONMEM rule)", df["ADDL"])
    if "CENS" in df:
        _fail(df, ~df["CENS"].isin([0, 1]), "CENS", "invalid censoring flag",
              "0 (observed) or 1 (below the limit of quantification)", df["CENS"])
    _check_addl_resets(df)
    obs = (df["EVID"] == 0) & (df["MDV"] == 0)
    _fail(df, obs & df["DV"].isna(), "DV", "missing DV on an observation record (EVID=0, MDV=0)",
          "a DV, or MDV=1 for a record without an observation")


def _check_order(df: pd.DataFrame) -> None:
    """Each subject's records together and in time order."""
    ids = df["ID"]
    new_block = ids.ne(ids.shift())
    first_block = ~ids[new_block].duplicated()
    _fail(df, new_block & ~first_block.reindex(df.index, fill_value=True), "ID",
          "subject's records are split (the ID reappears after another subject)",
          "all records of a subject together (NONMEM would read a new individual)")
    back = (df["TIME"].diff() < 0) & ~new_block
    _fail(df, back, "TIME", "time decreases within a subject",
          "records in non-decreasing TIME order within each ID", df["TIME"])


# --------------------------------------------------------------------------- the model


def _model_names(model, attr: str) -> tuple[str, ...]:
    return tuple(getattr(model, attr, ()) or ())


def _match_covariates(df: pd.DataFrame, model) -> pd.DataFrame:
    """Covariates the model needs: present (renamed to the model's spelling), numeric, complete."""
    covs = [c for c in df.columns if c not in _RESERVED]
    rename = {}
    for name in _model_names(model, "covariate_names"):
        col = name.upper()
        if col not in covs:
            raise DataError(f"Column {col}: covariate {name!r} needed by the model is not a column of the data "
                            f"(covariate columns: {covs}); expected a column {name}."
                            + did_you_mean(col, covs))
        values, bad = _parse_numbers(df[col])
        _fail(df, bad, col, f"non-numeric value of model covariate {name!r}", "a number", df[col])
        _fail(df, values.isna(), col, f"missing value of model covariate {name!r}",
              "a value on every record (carry the last value forward in the file)")
        rename[col] = name
    return df.rename(columns=rename)


def _compartment(v, names: tuple[str, ...]) -> str | None:
    """Compartment name for a 1-based number or a name; None when it does not exist."""
    if isinstance(v, int):
        return names[v - 1] if 1 <= v <= len(names) else None
    return v if v in names else None


def _resolve_targets(df: pd.DataFrame, model) -> tuple[pd.Series, pd.Series]:
    """For each record: the dose compartment name (dose rows) and the observation name (others)."""
    dose = df["EVID"].isin(_DOSE_EVIDS)
    cmt = _objmap(df["CMT"], lambda v: v if isinstance(v, str) or _is_missing(v) else int(v))
    dvid = df["DVID"] if "DVID" in df else pd.Series(np.nan, index=df.index, dtype=object)
    has_dvid = ~dvid.map(_is_missing).astype(bool)
    target = pd.Series(np.where(has_dvid, dvid, cmt), index=df.index, dtype=object)  # DVID first
    if model is None:
        into = _objmap(cmt, str).where(dose)
        names = _objmap(target, lambda v: "DV" if _is_missing(v) else str(v)).where(~dose)
        return into, names
    comps = _model_names(model, "compartment_names")
    outs = _model_names(model, "observation_names")
    into = _objmap(cmt, lambda v: _compartment(v, comps)).where(dose)
    _fail(df, dose & into.isna(), "CMT", "dose into a compartment the model does not have",
          f"a compartment number 1-{len(comps)} or a name among {list(comps)}", df["CMT"],
          _suggest(cmt[dose & into.isna()], comps))
    names = pd.Series([_observed(v, from_dvid, comps, outs) for v, from_dvid in
                       zip(target, has_dvid)], index=df.index, dtype=object).where(~dose)
    obs = (df["EVID"] == 0) & (df["MDV"] == 0)
    col = "DVID" if "DVID" in df else "CMT"
    _fail(df, obs & names.isna(), col, "observation of something the model does not have",
          f"an observation among {list(outs)} or a compartment among {list(comps)}", target,
          _suggest(target[obs & names.isna()], outs + comps))
    return into, names


def _observed(v, from_dvid: bool, comps, outs) -> str | None:
    if _is_missing(v):
        return outs[0] if outs else None  # the model's default observation
    if isinstance(v, int):  # DVID numbers index observations, CMT numbers compartments
        return _compartment(v, outs if from_dvid else comps)
    return v if v in outs or v in comps else None


def _suggest(bad: pd.Series, candidates) -> str:
    names = [v for v in bad if isinstance(v, str)]
    return did_you_mean(names[0], candidates) if names else ""


# --------------------------------------------------------------------------- units


@functools.lru_cache(maxsize=1)
def _registry():
    import pint  # only when units are checked: building a registry takes a moment

    ureg = pint.UnitRegistry()
    ureg.define("cell = [cell] = cells")
    return ureg


def _quantity(unit: str, column: str):
    """A pint quantity for a clinical unit string: '10^9/L', 'mg/m2', 'µg/L', 'cells'."""
    text = re.sub(r"10\^(-?\d+)", r"1e\1", str(unit).strip())
    text = re.sub(r"(?<![\d.eE])([A-Za-zµμ]+)(\d+)", r"\1^\2", text)  # m2 -> m^2, not 1e9
    try:
        return _registry().parse_expression(text or "dimensionless") * 1
    except Exception as e:  # pint raises several types for unknown or malformed units
        raise DataError(f"Column {column}: unit {unit!r} is not understood ({e}); "
                        f"expected a unit such as 'h', 'mg', 'mg/L', 'ng/mL', '10^9/L', 'kg'.") from None


def _compare_units(column: str, given: str, model_unit: str | None, what: str) -> None:
    if model_unit is None:
        return
    q_data, q_model = _quantity(given, column), _quantity(model_unit, f"model unit of {what}")
    if q_data.dimensionality != q_model.dimensionality:
        raise DataError(f"Column {column}: unit {given!r} is incompatible with the model's {model_unit!r} "
                        f"for {what} ({q_data.dimensionality} vs {q_model.dimensionality}); "
                        f"expected a unit of the same dimension.")
    factor = float((q_data / q_model).to("dimensionless").magnitude)
    if not math.isclose(factor, 1.0, rel_tol=1e-9):
        raise DataError(f"Column {column}: unit {given!r} differs from the model's {model_unit!r} for {what} "
                        f"by a factor: 1 {given} = {factor:.6g} {model_unit}; expected data in {model_unit!r} — "
                        f"multiply {column} by {factor:.6g} (data are not rescaled silently).")


def _check_units(units, df: pd.DataFrame, model, names: pd.Series) -> dict:
    """Declared units: keys are columns, values parse, and agree with the model's."""
    if not units:
        return {}
    cols = {c.upper(): c for c in df.columns if c != "ROW"}
    out = {}
    for key, unit in units.items():
        col = cols.get(str(key).upper())
        if col is None:
            raise DataError(f"units: {key!r} is not a column of the data; expected one of {list(cols.values())}."
                            + did_you_mean(str(key).upper(), cols))
        out[col] = dict(unit) if isinstance(unit, dict) else unit
        for u in (unit.values() if isinstance(unit, dict) else [unit]):
            _quantity(u, col)
    if model is not None:
        _check_model_units(out, df, model, names)
    return out


def _check_model_units(units: dict, df, model, names: pd.Series) -> None:
    mu = dict(getattr(model, "units", {}) or {})
    t, a = getattr(model, "time_unit", None), getattr(model, "amount_unit", None)
    for col, model_unit, what in (("TIME", t, "time"), ("II", t, "time"), ("AMT", a, "amounts")):
        if col in units:
            _compare_units(col, units[col], model_unit, what)
    if "RATE" in units and t and a:
        _compare_units("RATE", units["RATE"], f"({a})/({t})", "rates")
    # only named observations have a data unit to compare; a compartment observed by CMT is
    # interpreted by the simulator (amount or concentration), so it is not checked here
    outs = _model_names(model, "observation_names")
    observed = sorted(set(names[(df["EVID"] == 0) & (df["MDV"] == 0)].dropna()) & set(outs))
    for col in ("DV", "LLOQ"):
        if col in units:
            per_name = units[col] if isinstance(units[col], dict) else dict.fromkeys(observed, units[col])
            for name, unit in per_name.items():
                if name not in outs:
                    raise DataError(f"units[{col!r}]: {name!r} is not an observation of the model; expected "
                                    f"one of {list(outs)}." + did_you_mean(name, outs))
                _compare_units(col, unit, mu.get(name), f"observation {name!r}")
    for name in _model_names(model, "covariate_names"):
        if name in units:
            _compare_units(name, units[name], mu.get(name), f"covariate {name!r}")


# --------------------------------------------------------------------------- subjects


@dataclass(frozen=True, eq=False)
class Subject:
    """One individual's doses, observations and covariates.

    ``obs``: TIME, DV, NAME (observation name), CENS (0/1), LLOQ (NaN when absent), ROW.
    ``covariates``: TIME, each covariate column, ROW, for every record of the subject.
    ``dose_rows[i]`` is the record that produced ``regimen.doses[i]`` (additional ADDL doses carry
    their parent's row); ``dose_order[i]`` is a key comparable with ``obs.ROW``: at equal times,
    events happen in increasing key order (an ADDL dose comes after every record at its time).
    Treat the frames as read-only.
    """

    id: object
    regimen: Regimen
    dose_rows: tuple[int, ...]
    dose_order: tuple[float, ...]
    obs: pd.DataFrame = field(repr=False)
    covariates: pd.DataFrame = field(repr=False)

    def baseline_covariates(self) -> dict:
        """Covariate values on the subject's first record."""
        if self.covariates.empty:
            return {}
        first = self.covariates.iloc[0].drop(["TIME", "ROW"])
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in first.items()}


def _dose(r: dict, into: str, time: float, *, first: bool):
    """The dose of one record (``first``: the record's own dose, not an ADDL copy)."""
    amt, rate, ss = float(r["AMT"]), float(r["RATE"]), bool(r["SS"] == 1) and first
    ii = float(r["II"]) if ss else None
    if rate == 0:
        return Bolus(amt, into, time, ss=ss, ii=ii)
    if rate == -2:
        return Infusion(amt, into, time, duration="model", ss=ss, ii=ii)
    if rate == -1:
        return Infusion(amt, into, time, rate="model", ss=ss, ii=ii)
    if ss and amt == 0 and r["II"] == 0:
        return Infusion(None, into, time, rate=rate, ss=True)  # constant infusion at steady state
    return Infusion(amt, into, time, rate=rate, ss=ss, ii=ii)


def _events(a: dict, into: np.ndarray, lo: int, hi: int) -> list[tuple]:
    """(time, order key, ROW, dose) for every dose, reset and additional dose of the subject
    whose records are positions lo:hi of the column arrays ``a``."""
    times, rows = a["TIME"][lo:hi], a["ROW"][lo:hi]
    events = []
    for i in range(lo, hi):
        evid = a["EVID"][i]
        if evid not in (1, 3, 4):
            continue
        r = {k: v[i] for k, v in a.items()}
        t0, row = float(r["TIME"]), int(r["ROW"])
        if evid in (3, 4):
            events.append((t0, float(row), row, Reset(t0)))
        if evid == 3:
            continue
        events.append((t0, float(row), row, _dose(r, into[i], t0, first=True)))
        for k in range(1, int(r["ADDL"]) + 1):
            t = t0 + k * float(r["II"])
            last = rows[np.searchsorted(times, t, side="right") - 1]  # after every record at t
            events.append((t, last + 0.5, row, _dose(r, into[i], t, first=False)))
    return events


def _check_addl_resets(df: pd.DataFrame) -> None:
    """Additional doses must not run past a later reset of the subject: whether they would be
    cancelled is not something to guess silently."""
    reset_time = df["TIME"].where(df["EVID"].isin((3, 4)))
    by_id = df["ID"].to_numpy()
    next_reset = reset_time.groupby(by_id, sort=False).shift(-1).groupby(by_id, sort=False).bfill()
    end = df["TIME"] + df["ADDL"] * df["II"]
    _fail(df, (df["ADDL"] > 0) & (next_reset <= end), "ADDL",
          "additional doses run past a later reset (EVID 3 or 4) of the subject",
          "ADDL doses to end before the next reset (list the doses after it explicitly)", df["ADDL"])


def _build_subjects(df: pd.DataFrame, into: pd.Series, names: pd.Series, covariates: list[str]):
    """One Subject per ID; records of an ID are contiguous (checked), so subjects are slices."""
    a = {c: df[c].to_numpy() for c in ("TIME", "EVID", "AMT", "RATE", "II", "ADDL", "SS", "ROW")}
    into_arr = into.to_numpy(dtype=object)
    is_obs = ((df["EVID"] == 0) & (df["MDV"] == 0)).to_numpy()
    obs_all = pd.DataFrame({
        "TIME": df["TIME"], "DV": df["DV"], "NAME": names.astype(object),
        "CENS": df["CENS"].astype("int64") if "CENS" in df else 0,
        "LLOQ": df["LLOQ"] if "LLOQ" in df else np.nan, "ROW": df["ROW"],
    })[is_obs].reset_index(drop=True)
    obs_pos = np.flatnonzero(is_obs)
    cov_all = df[["TIME", *covariates, "ROW"]].reset_index(drop=True)
    ids = df["ID"].to_numpy(dtype=object)
    bounds = np.append(np.flatnonzero(df["ID"].ne(df["ID"].shift()).to_numpy()), len(df))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        sid = ids[lo].item() if isinstance(ids[lo], np.generic) else ids[lo]
        events = sorted(_events(a, into_arr, lo, hi), key=lambda e: (e[0], e[1]))  # stable at ties
        try:
            regimen = Regimen([e[3] for e in events])
        except DosingError as e:  # the checks should prevent this; keep the subject in the message
            raise DataError(f"ID {_fmt_id(sid)}: {e}") from None
        o_lo, o_hi = np.searchsorted(obs_pos, [lo, hi])
        yield Subject(sid, regimen, tuple(e[2] for e in events), tuple(float(e[1]) for e in events),
                      obs_all.iloc[o_lo:o_hi].reset_index(drop=True), cov_all.iloc[lo:hi].reset_index(drop=True))


def _check_has_observations(df: pd.DataFrame) -> None:
    has = ((df["EVID"] == 0) & (df["MDV"] == 0)).groupby(df["ID"], sort=False).transform("any")
    first = ~df["ID"].duplicated()
    _fail(df, first & ~has, "DV", "subject without observations (first record shown)",
          "at least one observation (EVID=0, MDV=0) per subject, or require_observations=False")


# --------------------------------------------------------------------------- the dataset


class Dataset:
    """A validated NONMEM dataset: per-subject regimens, observations and covariates.

    Build with ``read_nonmem``.  ``data`` is the normalised table (absent NONMEM columns filled
    with their defaults, ROW = 1-based record number); it is returned as a copy each time.
    """

    __slots__ = ("_data", "_subjects", "_units", "_covariates")

    def __init__(self, data: pd.DataFrame, subjects: tuple[Subject, ...], units: dict, covariate_columns):
        object.__setattr__(self, "_data", data.copy())
        object.__setattr__(self, "_subjects", {s.id: s for s in subjects})
        object.__setattr__(self, "_units", dict(units))
        object.__setattr__(self, "_covariates", tuple(covariate_columns))

    def __setattr__(self, key, value):
        raise AttributeError("Dataset is immutable; read a new one.")

    @property
    def data(self) -> pd.DataFrame:
        return self._data.copy()

    @property
    def ids(self) -> tuple:
        return tuple(self._subjects)

    @property
    def units(self) -> dict:
        return dict(self._units)

    @property
    def covariate_columns(self) -> tuple[str, ...]:
        return self._covariates

    def __len__(self) -> int:
        return len(self._subjects)

    def __iter__(self):
        return iter(self._subjects.values())

    def subject(self, id) -> Subject:
        """The subject with this ID (an ID given as text matches a numeric one: '12' finds 12)."""
        if id in self._subjects:
            return self._subjects[id]
        by_text = {_fmt_id(k): s for k, s in self._subjects.items()}
        if _fmt_id(id) in by_text:
            return by_text[_fmt_id(id)]
        shown = list(by_text)[:20]
        raise DataError(f"ID {_fmt_id(id)}: no such subject; expected one of {shown}"
                        f"{' ...' if len(by_text) > 20 else ''}." + did_you_mean(_fmt_id(id), by_text))

    def __repr__(self) -> str:
        n_obs = int(((self._data["EVID"] == 0) & (self._data["MDV"] == 0)).sum())
        return (f"Dataset({len(self)} subjects, {len(self._data)} records, {n_obs} observations, "
                f"covariates={list(self._covariates)})")


def read_nonmem(source, model=None, *, units: dict | None = None, require_observations: bool = True) -> Dataset:
    """Read and validate a NONMEM-style dataset.

    ``source``: a CSV path (whitespace-separated also read; a ``#`` before the header and ``#``
    comment lines are allowed) or a pandas DataFrame (never modified).  Column names are
    case-insensitive (upper-cased); columns other than ID, TIME, AMT, DV, EVID, MDV, CMT, RATE,
    II, ADDL, SS, CENS, LLOQ, DVID are covariates (time-varying allowed).  CMT and DVID hold
    1-based numbers or names.

    ``model`` (optional, a compiled model): dose CMTs must be its compartments (numbers index
    ``model.compartment_names``), observation DVID/CMT its observations or compartments (DVID
    numbers index ``model.observation_names``; neither given means the first observation), its
    covariates must be columns (renamed to the model's spelling); ``units`` ({column: unit},
    DV may map observation name -> unit) must match the model's units exactly — a scale
    difference is an error that states the factor.

    Raises ``DataError`` naming the column, the record ("row N" = N-th data record, 1-based,
    header and comments not counted) and the subject ID.
    """
    df = _parse_columns(_read_source(source))
    _check_records(df)
    if model is not None:
        df = _match_covariates(df, model)
    covariates = [c for c in df.columns if c.upper() not in _RESERVED]
    into, names = _resolve_targets(df, model)
    declared = _check_units(units, df, model, names)
    if require_observations:
        _check_has_observations(df)
    subjects = tuple(_build_subjects(df, into, names, covariates))
    return Dataset(df, subjects, declared, covariates)


def write_nonmem(data, path) -> Path:
    """Write a Dataset or DataFrame as CSV in NONMEM column order ('.' for missing values).

    Returns the path, so ``read_nonmem(write_nonmem(ds, p))`` reads it back.  A DataFrame is
    written as given (column names upper-cased, ROW dropped); validation is ``read_nonmem``'s job.
    """
    if isinstance(data, Dataset):
        df = data.data
    elif isinstance(data, pd.DataFrame):
        _check_duplicate_columns(data.columns)
        df = data.copy()
        df.columns = [str(c).strip().upper() for c in df.columns]
    else:
        raise DataError(f"write_nonmem: data must be a Dataset or a DataFrame, got {type(data).__name__}.")
    df = df.drop(columns=["ROW"], errors="ignore")
    first = [c for c in NONMEM_COLUMNS if c in df.columns]
    df = df[first + [c for c in df.columns if c not in first]]
    for col in df.columns:  # 1 rather than 1.0 for whole numbers, so the file reads like NONMEM's
        whole = df[col].dropna()
        if pd.api.types.is_float_dtype(df[col]) and ((whole % 1 == 0) & (whole.abs() < 2**53)).all():
            df[col] = df[col].astype("Int64")
    path = Path(path)
    df.to_csv(path, index=False, na_rep=".")
    return path
