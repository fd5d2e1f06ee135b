"""NONMEM-style records of simulated patients and the trained comparators of the hybrid validations."""

from __future__ import annotations

import numpy as np


def bolus_records(doses, times, dv, observation="Cp"):
    """One bolus into ``central`` at time 0 per patient (``doses``, mg) and their
    ``observation`` values ``dv`` (n_patients, n_times) at ``times``, as a DataFrame (ID from 1)."""
    import pandas as pd

    rows = []
    for i, (dose, conc) in enumerate(zip(np.broadcast_to(doses, (len(dv),)), dv)):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=float(dose), DV=np.nan, EVID=1, CMT="central"))
        rows += [dict(ID=i + 1, TIME=t, AMT=0.0, DV=float(c), EVID=0, CMT=observation) for t, c in zip(times, conc)]
    return pd.DataFrame(rows)


def train_comparators(spec, df_train, df_valid, *, steps, learning_rate, patience, simulate_options):
    """The hybrid (``spec("wrong")`` + its neural term) and the black box (``spec("blackbox")``
    + its neural term), each trained with ``train_hybrid`` (cosine-decayed Adam from
    ``learning_rate``, evaluated every 25 steps); returns ({name: model}, {name: (seconds,
    best step)})."""
    import jax
    import optax

    import pbpk
    from pbpk.hybrid import train_hybrid

    models, timing = {}, {}
    for name, kind in (("hybrid", "wrong"), ("blackbox", "blackbox")):
        base = spec(kind, key=jax.random.key(0)).compile()
        fit = train_hybrid(base, pbpk.read_nonmem(df_train, base), valid=pbpk.read_nonmem(df_valid, base),
                           steps=steps, learning_rate=optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05),
                           eval_every=25, patience=patience, progress=False, simulate_options=simulate_options)
        models[name], timing[name] = fit.model, (fit.seconds, fit.best_step)
    return models, timing
