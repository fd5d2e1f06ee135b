"""Virtual docetaxel patients with known truth: the Bruno 1996 three-compartment model, 75 mg/m²
(1.8 m² → 135 mg) as a 1-h infusion every 21 days, sparse cycle-1 samples at 0.5, 1.5, 6 and 24 h
after the start of the infusion, with the model's proportional residual error (20 %)."""

from __future__ import annotations

import numpy as np
import pandas as pd

DOSE_MG, CYCLE_H, SAMPLES_H = 135.0, 504.0, (0.5, 1.5, 6.0, 24.0)


def cohort(model, n: int, seed: int):
    """(Dataset of cycle-1 records, true parameter matrix (n, P))."""
    import jax

    import pbpk

    pop = model.population(n, key=jax.random.key(seed))
    reg = pbpk.Regimen.of(pbpk.Infusion(DOSE_MG, "central", duration=1.0))
    sol = model.simulate(reg, np.asarray(SAMPLES_H), params=pop)
    err = model.errors[model.observation_index("Cp")]
    dv = np.asarray(err.sample(jax.random.key(seed + 1), sol["Cp"]))
    rows = []
    for i in range(n):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=DOSE_MG, RATE=DOSE_MG, DV=np.nan, EVID=1, CMT="central"))
        rows += [dict(ID=i + 1, TIME=t, AMT=0.0, RATE=0.0, DV=float(y), EVID=0, CMT="Cp")
                 for t, y in zip(SAMPLES_H, dv[i])]
    return pbpk.read_nonmem(pd.DataFrame(rows), model), np.asarray(pop.theta)


def cycle2_auc(model, theta):
    """True cycle-2 AUC (504-1008 h, both doses simulated) for parameter rows ``theta``."""
    import pbpk

    reg = pbpk.Regimen.repeat(pbpk.Infusion(DOSE_MG, "central", duration=1.0), every=CYCLE_H, count=2)
    grid = np.unique(np.concatenate([np.linspace(CYCLE_H, 2 * CYCLE_H, 2001), CYCLE_H + np.linspace(0, 2, 81)]))
    sol = model.simulate(reg, grid, params=np.atleast_2d(theta))
    return np.trapezoid(np.asarray(sol["Cp"]), grid, axis=-1)


def next_cycle():
    import pbpk

    return pbpk.Regimen.of(pbpk.Infusion(DOSE_MG, "central", duration=1.0, time=CYCLE_H))
