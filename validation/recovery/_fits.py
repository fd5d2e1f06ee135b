"""Per-subject MAP (empirical-Bayes) fits for the recovery studies: one compiled log density
serves every subject of a worker (same data shapes, so no re-tracing)."""

from __future__ import annotations

import time

import numpy as np


def map_fits(model, df, ids, simulate_options, tol=1e-6, priors=None):
    """Yield (subject id, fitted parameter vector, converged, BFGS steps, seconds) per subject;
    ``priors(sid)`` may give a subject's own priors (e.g. an organ volume measured on CT)."""
    import pbpk
    from pbpk.inference.fit import select_subject
    from pbpk.inference.logdensity import individual_logdensity
    from pbpk.inference.map import find_mode

    data = pbpk.read_nonmem(df[df["ID"].isin(ids)], model)
    for sid in ids:
        ld = individual_logdensity(model, select_subject(model, data, sid), simulate_options=simulate_options,
                                   priors=priors(sid) if priors else None)
        t0 = time.perf_counter()
        pos, _, converged, steps, _ = find_mode(ld.spec, ld.data, ld.initial_position, rtol=tol, atol=tol)
        yield sid, np.asarray(ld.spec.theta(pos["eta"])), bool(converged), int(steps), time.perf_counter() - t0
