"""One subject's data as fixed-shape arrays, so one compiled log-density serves every patient.

A fit traces the model once for a given *capacity* (observations, dose records); subjects with
fewer rows are padded and masked.  Capacities are rounded up to powers of two, so a new patient
or a new observation reuses the compiled sampler instead of recompiling it.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import DataError, ModelError, did_you_mean

__all__ = ["SubjectData", "encode_subject", "capacity", "predict"]


class SubjectData(eqx.Module):
    """Padded arrays of one subject: observations (``n`` slots) and dose records (``d`` slots)."""

    times: jax.Array        # (n,) observation times, padding repeats the last
    out_rank: jax.Array     # (n,) record numbers ordering observations against doses at equal times
    obs_index: jax.Array    # (n,) which model observation each row is
    dv: jax.Array           # (n,)
    cens: jax.Array         # (n,) bool: BLQ (M3)
    lloq: jax.Array         # (n,)
    mask: jax.Array         # (n,) bool: a real observation
    doses: dict             # padded dose records (pbpk.simulate encoding)
    covariates: jax.Array   # (C,)

    @property
    def n_observed(self) -> int:
        return int(np.sum(np.asarray(self.mask)))


def capacity(n: int, minimum: int = 4) -> int:
    return max(minimum, 1 << math.ceil(math.log2(max(n, 1))))


def encode_subject(model, subject, *, n_obs: int | None = None, n_doses: int | None = None,
                   covariates=None) -> SubjectData:
    """Validate ``subject`` against ``model`` and lay it out in padded arrays."""
    from ..simulate import _covariates, _encode_one, _subject_covariates

    obs = subject.obs
    if obs.empty:
        raise DataError(f"subject {subject.id}: no observations to fit.")
    n = len(obs)
    n_obs = capacity(n) if n_obs is None else n_obs
    if n_obs < n:
        raise DataError(f"subject {subject.id}: {n} observations exceed the capacity {n_obs}.")
    n_dose = len(subject.regimen)
    n_doses = capacity(n_dose, 1) if n_doses is None else n_doses
    if n_doses < n_dose:
        raise DataError(f"subject {subject.id}: {n_dose} dose records exceed the capacity {n_doses}.")
    if covariates is None:
        covariates = _subject_covariates(model, subject)
        missing = [c for c in model.covariate_names if c not in covariates]
        if missing:
            raise DataError(f"subject {subject.id}: covariate(s) {missing} of model {model.name!r} are not in the "
                            "dataset; add the column(s) or pass covariates={...} explicitly.")
    cov = _covariates(model, covariates)
    if not np.all(np.isfinite(np.asarray(cov))):
        bad = [c for c, v in zip(model.covariate_names, np.asarray(cov)) if not np.isfinite(v)]
        raise DataError(f"subject {subject.id}: covariate(s) {bad} are missing (NaN) for this subject.")

    def pad(values, fill):
        values = np.asarray(values)
        return np.concatenate([values, np.full(n_obs - n, fill, dtype=values.dtype)])

    t = obs["TIME"].to_numpy(float)
    if np.any(np.diff(t) < 0):
        raise DataError(f"subject {subject.id}: observation times are not sorted.")
    rows = obs["ROW"].to_numpy(float) if "ROW" in obs else np.full(n, np.inf)
    dose_rows = np.asarray(subject.dose_order, dtype=float) if "ROW" in obs else None
    dv = obs["DV"].to_numpy(float)
    cens = (obs["CENS"].to_numpy(float) == 1) if "CENS" in obs else np.zeros(n, bool)
    lloq = obs["LLOQ"].to_numpy(float) if "LLOQ" in obs else np.full(n, np.nan)
    lloq = np.where(np.isnan(lloq), dv, lloq)          # M3: DV holds the LLOQ of a BLQ record
    bad = np.flatnonzero(~np.isfinite(dv) & ~cens)
    if bad.size:
        raise DataError(f"subject {subject.id}, row {int(rows[bad[0]]) if np.isfinite(rows[bad[0]]) else bad[0] + 1}: "
                        "DV is missing for an observation record (set MDV=1 or EVID≠0 to skip it).")
    index = observation_index(model, subject)
    doses = _encode_one(model, subject.regimen, n_doses, dose_rows)
    return SubjectData(
        times=jnp.asarray(pad(t, t[-1])), out_rank=jnp.asarray(pad(rows, np.inf)),
        obs_index=jnp.asarray(pad(index, 0), dtype=jnp.int32), dv=jnp.asarray(pad(np.nan_to_num(dv), 0.0)),
        cens=jnp.asarray(pad(cens, False)), lloq=jnp.asarray(pad(np.nan_to_num(lloq), 0.0)),
        mask=jnp.asarray(pad(np.ones(n, bool), False)),
        doses={k: jnp.asarray(v) for k, v in doses.items()}, covariates=jnp.asarray(cov, dtype=jnp.float64))


def observation_index(model, subject) -> np.ndarray:
    """Model observation number of each observation row; unknown names raise, naming the row."""
    names = subject.obs["NAME"].astype(str).tolist()
    rows = subject.obs["ROW"].tolist() if "ROW" in subject.obs else range(1, len(names) + 1)
    out = []
    for row, name in zip(rows, names):
        if name in model.observation_names:
            out.append(model.observation_index(name))
        elif name in ("DV", "1") and model.observation_names:
            out.append(0)
        elif name in model.state_names and len(model.observation_names) == 1:
            out.append(0)        # NONMEM: CMT of an observation record, one DV defined in the model
        else:
            raise DataError(f"subject {subject.id}, row {row}: observation {name!r} is not an observation of model "
                            f"{model.name!r} (observations: {list(model.observation_names)})."
                            + did_you_mean(name, model.observation_names))
    for name in {model.observation_names[i] for i in out}:
        if model.errors[model.observation_index(name)] is None:
            raise ModelError(f"observation {name!r} has no residual error model: declare error=... in observe().")
    return np.asarray(out, dtype=np.int32)


def fit_options(model, data: SubjectData | list, *, rtol=1e-8, atol=1e-10, solver="auto", max_steps=10_000,
                margin_squarings: int = 4):
    """Static simulation options for fitting: no output grid (times differ per patient), and
    squarings sized for a generous parameter range so one compile serves all patients."""
    from ..simulate import _method, _Options, _squarings

    items = data if isinstance(data, list) else [data]
    method = _method(model, solver)
    has_ss = any(bool(np.any(np.asarray(d.doses["ss"]) & np.asarray(d.doses["valid"]))) for d in items)
    squarings = 0
    if method == "expm":
        # At least 5 of the typical patient's slowest time constants, so that observations
        # arriving later (Twin.update) rarely need a recompile.
        span = max(max(float(np.max(np.asarray(d.times))) for d in items), 5.0 * _slowest_time_constant(model))
        span = 2.0 ** math.ceil(math.log2(max(span, 1.0)))
        doses = {"ii": np.concatenate([np.asarray(d.doses["ii"]) for d in items])}
        # 2**margin x twice the typical patient's rate constants (32x by default) before accuracy
        # is flagged and the density is -inf there: a cliff nearer than that was measured to cause
        # divergences (theophylline: 90 of 2000 transitions at 8x, 1 of 3000 at 32x).
        squarings = _squarings(model, model.theta, items[0].covariates, np.asarray([0.0, span]), None,
                               doses, has_ss) + margin_squarings
    return _Options(method=method, rtol=float(rtol), atol=float(atol), max_steps=int(max_steps),
                    has_ss=has_ss, grid_mode=False, squarings=int(squarings), observed_only=True)


def _slowest_time_constant(model) -> float:
    a, _ = model.linear_system(model.theta, jnp.nan_to_num(model.covariate_reference, nan=1.0))
    rates = np.abs(np.linalg.eigvals(np.asarray(a)).real)
    rates = rates[rates > 1e-12 * max(rates.max(), 1e-300)]
    return float(1.0 / rates.min()) if rates.size else 1.0


def predict(model, opts, theta, data: SubjectData):
    """Model predictions at the subject's observation rows, and whether the solve is trustworthy."""
    from ..simulate import _patient

    dummy = jnp.zeros(1)
    ys, status = _patient(model, opts, theta, data.covariates, data.doses, data.times, data.out_rank,
                          dummy, jnp.zeros(data.times.shape, jnp.int32))
    obs = jax.vmap(model.observe, in_axes=(0, 0, None, None))(data.times, ys, theta, data.covariates)
    pred = jnp.take_along_axis(obs, data.obs_index[:, None], axis=1)[:, 0]
    return pred, status == 0
