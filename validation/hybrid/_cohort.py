"""NONMEM-style records of simulated patients for the hybrid validations."""

from __future__ import annotations

import numpy as np


def bolus_records(doses, times, dv):
    """One bolus into ``central`` at time 0 per patient (``doses``, mg) and their ``Cp``
    observations ``dv`` (n_patients, n_times) at ``times``, as a DataFrame (ID from 1)."""
    import pandas as pd

    rows = []
    for i, (dose, conc) in enumerate(zip(np.broadcast_to(doses, (len(dv),)), dv)):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=float(dose), DV=np.nan, EVID=1, CMT="central"))
        rows += [dict(ID=i + 1, TIME=t, AMT=0.0, DV=float(c), EVID=0, CMT="Cp") for t, c in zip(times, conc)]
    return pd.DataFrame(rows)
