"""The digital twin: a calibrated patient that forecasts, updates as data arrive, and answers
counterfactual questions ("what if this regimen instead?") with credible intervals.

Every forecast simulates the patient's whole dosing history plus the proposed regimen for each
posterior draw, so drug left from past doses is carried into the future.  Draws, not point
estimates, flow through: every number comes with its posterior uncertainty.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .dosing import Bolus, Infusion, Regimen, Reset
from .errors import DataError, ModelError, did_you_mean
from .inference.posterior import Posterior

__all__ = ["Twin", "Forecast", "Counterfactual", "exposure_metrics", "merge_subject"]

METRICS = ("AUC", "Cmax", "Cmin", "Tmax", "time_above", "time_to_nadir", "nadir")


@dataclasses.dataclass(frozen=True, eq=False)
class Forecast:
    """Posterior-predictive trajectories: ``draws[name]`` is (S, T) over ``times``."""

    times: np.ndarray
    draws: dict
    units: dict
    time_unit: str
    quantiles: tuple = (0.05, 0.5, 0.95)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.draws:
            raise ModelError(f"forecast has no output {name!r}; it has {list(self.draws)}."
                             + did_you_mean(name, list(self.draws)))
        return self.draws[name]

    def band(self, name: str, quantiles=None) -> pd.DataFrame:
        """Quantiles over draws at each time (columns q0.05, q0.5, ...)."""
        qs = tuple(quantiles or self.quantiles)
        values = np.quantile(self[name], qs, axis=0)
        return pd.DataFrame({"TIME": self.times, **{f"q{q:g}": v for q, v in zip(qs, values)}})

    def to_dataframe(self) -> pd.DataFrame:
        frames = [self.band(n).assign(output=n, unit=self.units.get(n, "")) for n in self.draws]
        return pd.concat(frames, ignore_index=True)

    def plot(self, name: str | None = None, *, data=None, ax=None, path=None):
        from .plot import forecast_bands

        return forecast_bands(self, name or next(iter(self.draws)), data=data, ax=ax, path=path)


@dataclasses.dataclass(frozen=True, eq=False)
class Counterfactual:
    """Per-regimen exposure distributions for the same patient (same posterior draws)."""

    metrics: dict                 # regimen name -> {metric: (S,) draws}
    output: str
    unit: str
    ci: float = 0.9

    def summary(self) -> pd.DataFrame:
        rows = []
        for reg, ms in self.metrics.items():
            for m, v in ms.items():
                rows.append({"regimen": reg, "metric": m, **_interval(v, self.ci)})
        return pd.DataFrame(rows)

    def effect(self, a: str, b: str, metric: str = "AUC", *, relative: bool = False) -> dict:
        """Individual treatment effect of regimen ``b`` versus ``a`` on ``metric`` (draw-wise
        difference, or ratio when ``relative``), with its credible interval."""
        for name in (a, b):
            if name not in self.metrics:
                raise ModelError(f"counterfactual has no regimen {name!r}; it has {list(self.metrics)}."
                                 + did_you_mean(name, list(self.metrics)))
        va, vb = self.metrics[a][metric], self.metrics[b][metric]
        diff = vb / va if relative else vb - va
        return {"contrast": f"{b} {'/' if relative else '-'} {a}", "metric": metric, **_interval(diff, self.ci),
                "p_greater": float(np.mean(diff > (1.0 if relative else 0.0)))}


def _interval(v, ci) -> dict:
    v = np.asarray(v, dtype=float)
    lo, hi = np.nanquantile(v, [(1 - ci) / 2, (1 + ci) / 2])
    return {"mean": float(np.nanmean(v)), "median": float(np.nanmedian(v)), "lower": float(lo),
            "upper": float(hi), "ci": ci}


class Twin:
    """A patient's calibrated model: ``Twin(model, posterior)``.  ``simulate_options`` (e.g.
    ``dict(rtol=1e-6, solver="Kvaerno3")``) are used by every forecast — for large nonlinear
    models, the tolerances a decision needs rather than the reference defaults."""

    def __init__(self, model, posterior: Posterior, *, max_draws: int = 1000, simulate_options=None):
        if not isinstance(posterior, Posterior):
            raise ModelError(f"Twin needs a Posterior from pbpk.fit, got {type(posterior).__name__}.")
        if posterior.subject is None:
            raise ModelError("Twin needs an individual posterior (pbpk.fit), not a population fit.")
        if model.parameter_names != posterior.model.parameter_names:
            raise ModelError(f"Twin: the posterior was fitted with model {posterior.model.name!r}, whose parameters "
                             f"differ from {model.name!r}'s.")
        self.model = model
        self.posterior = posterior
        theta = np.asarray(posterior.theta())
        self._stride = max(1, theta.shape[0] // max_draws)
        self._theta = jnp.asarray(theta[:: self._stride][:max_draws])
        self._covariates = posterior.data.covariates
        self._simulate_options = dict(simulate_options or {})

    def _with(self, posterior) -> "Twin":
        return Twin(self.model, posterior, max_draws=self._theta.shape[0], simulate_options=self._simulate_options)

    def __repr__(self) -> str:
        s = self.posterior.subject
        return (f"Twin(model={self.model.name!r}, subject={s.id}, {len(s.obs)} observations, "
                f"{len(s.regimen)} doses, {self._theta.shape[0]} draws)")

    @property
    def history(self) -> Regimen:
        return self.posterior.subject.regimen

    def parameters(self) -> pd.DataFrame:
        return self.posterior.summary()

    # ------------------------------------------------------------------ forecasting
    def forecast(self, regimen=None, times=None, *, outputs: Sequence[str] | None = None, residual: bool = False,
                 key=None, include_history: bool = True, quantiles=(0.05, 0.5, 0.95)) -> Forecast:
        """Trajectories of ``outputs`` (observations or states; default every observation) for
        each posterior draw under the history plus ``regimen``.  ``residual`` adds residual
        error to observations (a prediction interval for new measurements; needs ``key``)."""
        if times is None:
            raise ModelError("forecast: times=... are required (model time unit).")
        full = self._regimen(regimen, include_history)
        times = jnp.asarray(times, dtype=jnp.float64)
        sol = self.model.simulate(full, times, params=self._theta, covariates=self._cov_batch(),
                                  **self._simulate_options)
        names = list(outputs or self.model.observation_names)
        draws = {}
        for name in names:
            values = np.asarray(sol[name]) if name in sol.state_names + sol.observation_names else None
            if values is None:
                raise ModelError(f"forecast: {name!r} is neither an observation nor a state of model "
                                 f"{self.model.name!r}." + did_you_mean(name, sol.state_names + sol.observation_names))
            if residual and name in self.model.observation_names:
                values = self._add_residual(name, values, key)
            draws[name] = values
        units = {n: self.model.units.get(n, "") for n in names}
        return Forecast(np.asarray(times), draws, units, self.model.time_unit, tuple(quantiles))

    def exposure(self, regimen=None, *, output: str | None = None, start: float = 0.0, end: float | None = None,
                 threshold: float | None = None, n_points: int = 401, ci: float = 0.9,
                 include_history: bool = True) -> pd.DataFrame:
        """Exposure metrics over [start, end] with credible intervals: AUC, Cmax, Cmin
        (trough), Tmax, nadir and time to nadir, and time above ``threshold``."""
        ms = self._metric_draws(self._regimen(regimen, include_history), output, start, end, threshold, n_points)
        unit = self.model.units.get(self._output(output), "")
        rows = [{"metric": m, **_interval(v, ci), "unit": _metric_unit(m, unit, self.model.time_unit)}
                for m, v in ms.items()]
        return pd.DataFrame(rows).set_index("metric")

    def counterfactual(self, regimens: Mapping | Sequence, *, output: str | None = None, start: float = 0.0,
                       end: float | None = None, threshold: float | None = None, n_points: int = 401,
                       ci: float = 0.9, include_history: bool = True) -> Counterfactual:
        """Outcome distributions of each regimen for this same patient (the same draws, so
        differences between regimens are individual treatment effects)."""
        if not isinstance(regimens, Mapping):
            regimens = {f"regimen {i}": r for i, r in enumerate(regimens)}
        if not regimens:
            raise ModelError("counterfactual: give at least one regimen.")
        out = {name: self._metric_draws(self._regimen(r, include_history), output, start, end, threshold, n_points)
               for name, r in regimens.items()}
        out_name = self._output(output)
        return Counterfactual(out, out_name, self.model.units.get(out_name, ""), ci)

    # ------------------------------------------------------------------ updating
    def update(self, new_data, *, key, doses=None, method: str = "auto", warmup: int = 200,
               draws: int | None = None, min_ess: float = 0.25, progress: bool = False) -> "Twin":
        """A new Twin conditioned on the data so far plus ``new_data``.

        ``new_data``: a DataFrame of new observations (TIME, DV; optional NAME, CENS, LLOQ),
        or a Dataset/Subject with the patient's new records (doses and observations).
        ``doses``: a Regimen given since the last update (when ``new_data`` has no dose records).
        ``method`` (NUTS posteriors): "importance" reweights the previous draws by the new
        likelihood (PSIS, one batched evaluation); "nuts" re-runs NUTS warm-started from the
        previous chains, step size and mass matrix; "auto" reweights and falls back to NUTS
        when Pareto k̂ > 0.7 or the effective sample size is below ``min_ess`` of the draws.
        """
        from .inference.fit import make_posterior
        from .inference.logdensity import individual_logdensity
        from .inference.sequential import importance_update

        if method not in ("auto", "importance", "nuts"):
            raise ModelError(f"update: method={method!r}; expected 'auto', 'importance' or 'nuts'."
                             + did_you_mean(str(method), ["auto", "importance", "nuts"]))
        post = self.posterior
        subject = merge_subject(post.subject, new_data, doses)
        spec = post.density
        n_obs, n_doses = _capacity(subject, post.data)
        ld = individual_logdensity(self.model, subject, estimate_error=spec.estimate_error, n_obs=n_obs,
                                   n_doses=n_doses, covariates=dict(zip(self.model.covariate_names,
                                                                        np.asarray(post.data.covariates))))
        data = ld.data                 # the previous prior and options: the compiled sampler is reused
        if ld.spec.opts.squarings > spec.opts.squarings:      # data beyond the span sized at the fit
            spec = dataclasses.replace(spec, opts=ld.spec.opts)
        t0 = time.perf_counter()
        if post.method not in ("nuts", "importance"):
            return self._refit_mode(subject, data, key, draws, t0)
        k_is, k_nuts = jax.random.split(key)
        if method in ("auto", "importance"):
            res = importance_update(spec, data, post.positions, post.stats["lp"], k_is)
            good = res.reliable and res.ess >= min_ess * res.n
            if method == "importance" or good:
                stats = {"lp": res.lp, "diverging": np.zeros(res.lp.shape, bool)}
                result = make_posterior(self.model, "importance", spec, data, subject, res.positions, stats,
                                        run=post.nuts, mode=post.mode, seconds=time.perf_counter() - t0,
                                        importance=res)
                return self._with(result)
        new = run_nuts_warm(spec, data, k_nuts, post, warmup, draws or post.n_draws, progress, subject.id)
        result = make_posterior(self.model, "nuts", spec, data, subject, new.positions, new.stats, run=new,
                                mode=post.mode, seconds=time.perf_counter() - t0)
        return self._with(result)

    def _refit_mode(self, subject, data, key, draws, t0):
        from .inference.fit import make_posterior, mode_positions
        from .inference.map import find_mode, laplace_covariance

        post, spec = self.posterior, self.posterior.density
        position, hess, converged, _, _ = find_mode(spec, data, post.mode["position"])
        cov = laplace_covariance(hess)
        mode = {"position": position, "covariance": cov, "converged": converged}
        positions = mode_positions(post.method, position, cov, key, draws or post.n_draws, subject.id)
        result = make_posterior(self.model, post.method, spec, data, subject, positions, {}, mode=mode,
                                seconds=time.perf_counter() - t0)
        return self._with(result)

    # ------------------------------------------------------------------ internals
    def _regimen(self, regimen, include_history):
        if regimen is None:
            regimen = Regimen(())
        if isinstance(regimen, (Bolus, Infusion, Reset)):
            regimen = Regimen((regimen,))
        if not isinstance(regimen, Regimen):
            raise ModelError(f"expected a Regimen or a dose, got {type(regimen).__name__}.")
        full = self.history + regimen if include_history else regimen
        if len(full) == 0:
            raise ModelError("no doses: the history is empty and no regimen was given.")
        return full

    def _cov_batch(self):
        return jnp.broadcast_to(self._covariates, (self._theta.shape[0],) + self._covariates.shape)

    def _output(self, output):
        if output is None:
            if not self.model.observation_names:
                raise ModelError("output=... is required: the model declares no observation.")
            return self.model.observation_names[0]
        return output

    def _metric_draws(self, regimen, output, start, end, threshold, n_points):
        output = self._output(output)
        if end is None:
            raise ModelError("exposure window: end=... is required (model time unit).")
        if not end > start:
            raise ModelError(f"exposure window: end={end} must be after start={start}.")
        grid = np.linspace(start, end, n_points)
        doses_in = sorted({float(d.time) for d in regimen.doses if start < float(d.time) < end})
        grid = np.unique(np.concatenate([grid, doses_in]))      # peaks at dose times are not missed
        fc = self.forecast(regimen, grid, outputs=[output], include_history=False)
        return exposure_metrics(grid, fc[output], threshold)

    def _add_residual(self, name, values, key):
        if key is None:
            raise ModelError("forecast(residual=True) needs key=jax.random.key(...).")
        k = self.model.observation_index(name)
        if self.model.errors[k] is None:
            return values
        post, n = self.posterior, values.shape[0]
        if not post.density.estimate_error:
            return np.asarray(self.model.errors[k].sample(key, jnp.asarray(values)))
        sig = np.stack([np.asarray(post.draws[e]).reshape(-1) for e in post.error_names], axis=-1)
        sig = jnp.asarray(sig[:: self._stride][:n])

        def one(s, v, kk):
            return post.density.errors(jnp.log(s))[k].sample(kk, v)

        return np.asarray(jax.vmap(one)(sig, jnp.asarray(values), jax.random.split(key, n)))


def run_nuts_warm(spec, data, key, post, warmup, draws, progress, subject_id):
    """NUTS started from the previous chains' last draws, step sizes and mass matrices."""
    from jax.flatten_util import ravel_pytree

    from .inference.nuts import run_nuts

    run = post.nuts
    last = jax.tree.map(lambda x: x[:, -1], post.positions)
    # The previous posterior's variances are the natural mass matrix for the next one.
    flat = jax.vmap(lambda p: ravel_pytree(p)[0])(jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]),
                                                               post.positions))
    imm = jnp.broadcast_to(jnp.var(flat, axis=0), run.inverse_mass_matrix.shape)
    return run_nuts(spec, data, key, last, warmup=warmup, draws=draws, step_size=run.step_size,
                    inverse_mass_matrix=imm, progress=progress, desc=f"update ID {subject_id}")


def exposure_metrics(times, values, threshold=None) -> dict:
    """Per-draw exposure metrics from trajectories (S, T) on a time grid."""
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    out = {
        "AUC": np.trapezoid(v, t, axis=-1),
        "Cmax": v.max(axis=-1),
        "Cmin": v.min(axis=-1),
        "Tmax": t[np.argmax(v, axis=-1)],
        "nadir": v.min(axis=-1),
        "time_to_nadir": t[np.argmin(v, axis=-1)],
    }
    if threshold is not None:
        above = (v[:, 1:] > threshold) & (v[:, :-1] > threshold)
        out["time_above"] = np.sum(above * np.diff(t), axis=-1)
    return out


def _metric_unit(metric, unit, time_unit):
    if metric == "AUC":
        return f"{unit}*{time_unit}"
    if metric in ("Tmax", "time_above", "time_to_nadir"):
        return time_unit
    return unit


def _capacity(subject, data):
    """Reuse the previous capacity while the data fit (no recompilation); grow by powers of two."""
    from .inference._data import capacity

    n_obs = max(int(data.times.shape[0]), capacity(len(subject.obs)))
    n_doses = max(int(data.doses["time"].shape[0]), capacity(len(subject.regimen), 1))
    return n_obs, n_doses


def merge_subject(subject, new_data, doses=None):
    """The subject's records plus new ones (observations and doses), in time order."""
    from .nonmem import Dataset, Subject

    obs_new, dose_new, order_new = None, [], []
    top = float(max([*subject.obs.get("ROW", pd.Series([0])).tolist(), *subject.dose_order, 0]))
    if isinstance(new_data, Dataset):
        if len(new_data) != 1:
            raise DataError(f"update: new data has {len(new_data)} subjects; expected this patient's records only.")
        new_data = next(iter(new_data))
    if isinstance(new_data, Subject):
        if new_data.id != subject.id:
            raise DataError(f"update: new data are for subject {new_data.id}, but this twin is subject {subject.id}.")
        obs_new = new_data.obs.copy()
        obs_new["ROW"] = obs_new["ROW"] + top
        dose_new = list(new_data.regimen.doses)
        order_new = [o + top for o in new_data.dose_order]
    elif isinstance(new_data, pd.DataFrame):
        missing = [c for c in ("TIME", "DV") if c not in new_data]
        if missing:
            raise DataError(f"update: new observations lack column(s) {missing}; expected TIME and DV.")
        obs_new = pd.DataFrame({"TIME": new_data["TIME"].astype(float), "DV": new_data["DV"].astype(float)})
        name = subject.obs["NAME"].iloc[0] if len(subject.obs) else "DV"
        obs_new["NAME"] = new_data["NAME"].astype(str) if "NAME" in new_data else name
        obs_new["CENS"] = new_data["CENS"].astype(int) if "CENS" in new_data else 0
        obs_new["LLOQ"] = new_data["LLOQ"].astype(float) if "LLOQ" in new_data else np.nan
        obs_new["ROW"] = top + 1 + np.arange(len(obs_new), dtype=float)
    elif new_data is not None:
        raise DataError(f"update: new_data must be a DataFrame of observations, a Dataset or a Subject; "
                        f"got {type(new_data).__name__}.")
    if doses is not None:
        reg = doses if isinstance(doses, Regimen) else Regimen((doses,))
        start = top + 1 + (0 if obs_new is None else len(obs_new))
        dose_new += list(reg.doses)
        order_new += [start + i for i in range(len(reg))]
    if obs_new is not None and len(obs_new) and len(subject.obs):
        last = float(subject.obs["TIME"].max())
        if float(obs_new["TIME"].min()) < last:
            raise DataError(f"update: new observation at TIME {float(obs_new['TIME'].min())} is before the last "
                            f"observation already used (TIME {last}); pass the records in time order.")
    obs = subject.obs if obs_new is None else pd.concat([subject.obs, obs_new[subject.obs.columns.intersection(
        obs_new.columns)]], ignore_index=True)
    triples = sorted(zip(subject.regimen.doses + tuple(dose_new), subject.dose_order + tuple(order_new),
                         tuple(subject.dose_rows) + tuple(int(o) for o in order_new)),
                     key=lambda p: (float(p[0].time), p[1]))
    obs = obs.sort_values(["TIME", "ROW"], kind="stable").reset_index(drop=True)
    return dataclasses.replace(subject, regimen=Regimen([p[0] for p in triples]),
                               dose_order=tuple(p[1] for p in triples), dose_rows=tuple(p[2] for p in triples),
                               obs=obs)
