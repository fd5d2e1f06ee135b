"""Public datasets used by the validation scripts (read from ../shared/data beside the repo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def theophylline_records(path: Path | None = None) -> pd.DataFrame:
    """Theoph (Subject, Wt, Dose mg/kg, Time h, conc mg/L) as NONMEM records: one oral dose of
    Dose·Wt mg into ``depot`` per subject, observations of ``Cp``."""
    raw = pd.read_csv(path or SHARED_DATA / "theoph.csv")
    first = raw.groupby("Subject", sort=False).first().reset_index()
    doses = pd.DataFrame({"ID": first["Subject"], "TIME": 0.0, "AMT": first["Dose"] * first["Wt"], "DV": np.nan,
                          "EVID": 1, "CMT": "depot", "WT": first["Wt"], "_k": 0})
    obs = pd.DataFrame({"ID": raw["Subject"], "TIME": raw["Time"], "AMT": 0.0, "DV": raw["conc"], "EVID": 0,
                        "CMT": "Cp", "WT": raw["Wt"], "_k": 1})
    out = pd.concat([doses, obs], ignore_index=True)
    out["_o"] = out["ID"].map({s: i for i, s in enumerate(pd.unique(raw["Subject"]))})
    return out.sort_values(["_o", "TIME", "_k"], kind="stable").drop(columns=["_o", "_k"]).reset_index(drop=True)


def theophylline(model):
    import pbpk

    return pbpk.read_nonmem(theophylline_records(), model,
                            units={"TIME": "h", "AMT": "mg", "DV": "mg/L", "WT": "kg"})
