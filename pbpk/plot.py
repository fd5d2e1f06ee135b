"""Figures (matplotlib, imported lazily so ``import pbpk`` stays light)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import DataError, ModelError

__all__ = ["population_bands", "individual_fit", "goodness_of_fit", "gof_table", "vpc", "vpc_table", "trace",
           "rank", "pair", "forecast_bands"]


def population_bands(times, series: Mapping[str, np.ndarray], *, units: Mapping[str, str] | None = None,
                     time_unit: str = "h", quantiles=(0.05, 0.5, 0.95), log: bool = True, ncols: int = 4,
                     title: str | None = None, path=None):
    """Median and a quantile band over patients for each named series of shape (N, T).

    Returns the matplotlib Figure; saves it when ``path`` is given.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(series)
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), sharex=True, squeeze=False)
    t = np.asarray(times)
    lo_q, mid_q, hi_q = quantiles
    for ax, name in zip(axes.flat, names):
        values = np.asarray(series[name])
        lo, mid, hi = np.quantile(values, [lo_q, mid_q, hi_q], axis=0)
        ax.fill_between(t, lo, hi, alpha=0.3, lw=0, label=f"{round(100 * (hi_q - lo_q))}% band")
        ax.plot(t, mid, lw=1.2, label="median")
        if log:
            positive = mid[mid > 0]
            ax.set_yscale("log")
            if positive.size:
                ax.set_ylim(max(positive.max() * 1e-6, positive.min() * 0.5), hi.max() * 2)
        ax.set_title(name, fontsize=9)
        if units and name in units:
            ax.set_ylabel(units[name], fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(f"time ({time_unit})", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


# =========================================================================== calibration and twin figures
# Every function returns the matplotlib Figure and saves it when ``path`` is given; single-panel
# figures draw into ``ax`` when one is passed (the Figure returned is then ``ax.figure``).


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _panel(ax, figsize=(5.0, 3.6)):
    """(figure, axes, created): a new single-panel figure unless ``ax`` is given."""
    if ax is not None:
        return ax.figure, ax, False
    fig, ax = _pyplot().subplots(figsize=figsize)
    return fig, ax, True


def _finish(fig, path, created=True):
    if created:
        fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


def _label(name, unit):
    return f"{name} ({unit})" if unit else name


def _log_limits(ax, values):
    """Log y-axis whose lower limit ignores zeros (pre-dose) and vanishing band edges."""
    ax.set_yscale("log")
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    if v.size:
        ax.set_ylim(max(v.max() * 1e-6, v.min() * 0.5), v.max() * 2)


def _draw_observations(ax, data, *, label="observed"):
    """Observed DV as filled points; censored (BLQ, CENS=1) rows as open markers at their LLOQ."""
    t = data["TIME"].to_numpy(float)
    dv = data["DV"].to_numpy(float)
    cens = data["CENS"].to_numpy(float) == 1 if "CENS" in data else np.zeros(len(t), bool)
    lloq = data["LLOQ"].to_numpy(float) if "LLOQ" in data else np.full(len(t), np.nan)
    at = np.where(np.isnan(lloq), dv, lloq)
    ax.plot(t[~cens], dv[~cens], "o", color="k", ms=4, label=label, zorder=3)
    if cens.any():
        ax.plot(t[cens], at[cens], "o", mfc="none", mec="k", ms=5, label="BLQ (at LLOQ)", zorder=3)
    return np.concatenate([dv[~cens], at[cens]])


def _band_pairs(quantiles):
    qs = sorted(float(q) for q in quantiles)
    pairs = [(qs[i], qs[-1 - i]) for i in range(len(qs) // 2)]
    mid = 0.5 if 0.5 in qs else qs[len(qs) // 2]
    return pairs, mid


def forecast_bands(forecast, name, *, data=None, log: bool = False, ax=None, path=None):
    """Median line and credible band(s) of ``forecast.band(name)`` over time.

    ``data``: optional observations (a DataFrame with TIME and DV; CENS/LLOQ draw BLQ rows as open
    markers at the LLOQ; rows whose NAME is another output of the forecast are left out).
    With more than three quantiles, nested bands are shaded (outermost lightest).
    """
    fig, ax, created = _panel(ax)
    band = forecast.band(name)
    pairs, mid = _band_pairs(forecast.quantiles)
    t = band["TIME"].to_numpy(float)
    shown = [band[f"q{mid:g}"].to_numpy(float)]
    for i, (lo, hi) in enumerate(pairs):
        lo_v, hi_v = band[f"q{lo:g}"].to_numpy(float), band[f"q{hi:g}"].to_numpy(float)
        ax.fill_between(t, lo_v, hi_v, color="C0", alpha=0.18 + 0.12 * i, lw=0,
                        label=f"{round(100 * (hi - lo))}% credible band")
        shown += [lo_v, hi_v]
    ax.plot(t, band[f"q{mid:g}"], color="C0", lw=1.5, label="median" if mid == 0.5 else f"q{mid:g}")
    if data is not None and len(data):
        if "NAME" in data:
            others = set(forecast.draws) - {name}
            data = data[~data["NAME"].astype(str).isin(others)]
        shown.append(_draw_observations(ax, data))
    if log:
        _log_limits(ax, np.concatenate([np.ravel(s) for s in shown]))
    ax.set_xlabel(f"time ({forecast.time_unit})")
    ax.set_ylabel(_label(name, forecast.units.get(name, "")))
    ax.legend(fontsize=7)
    return _finish(fig, path, created)


def _observation_rows(posterior):
    """The subject's observation table with the model observation index of each row."""
    from .inference._data import observation_index

    obs = posterior.subject.obs.reset_index(drop=True).copy()
    obs["OBS"] = observation_index(posterior.model, posterior.subject)
    return obs


def individual_fit(posterior, *, times=None, quantiles=(0.05, 0.5, 0.95), log: bool = False, name=None,
                   ax=None, path=None):
    """One patient's fit: observed DV (BLQ rows as open markers at the LLOQ), posterior median
    IPRED and a credible band over a fine time grid, simulated with the patient's own dosing.

    ``times``: the grid (default 200 equally spaced points from 0 to 1.1x the last observation;
    pass times that include the dose times to draw bolus peaks exactly); ``name``: the
    observation to show (default: the first one observed for this subject).
    """
    from .twin import Twin

    model = posterior.model
    obs = _observation_rows(posterior)
    if name is None:
        name = model.observation_names[int(obs["OBS"].iloc[0])]
    k = model.observation_index(name)
    if times is None:
        end = 1.1 * float(obs["TIME"].max()) if len(obs) else 1.0
        times = np.linspace(0.0, end if end > 0 else 1.0, 200)
    fc = Twin(model, posterior).forecast(None, np.asarray(times, dtype=float), outputs=[name],
                                         quantiles=tuple(quantiles))
    fig = forecast_bands(fc, name, data=obs[obs["OBS"] == k], log=log, ax=ax)
    if ax is None:
        fig.axes[0].set_title(f"ID {posterior.subject.id}", fontsize=10)
    return _finish(fig, path, ax is None)


# --------------------------------------------------------------------------- goodness of fit
def gof_table(posterior_or_list):
    """Per observation row: ID, TIME, NAME, DV, CENS, LLOQ, PRED, IPRED, IWRES.

    PRED: the population prediction (η = 0: the fit's prior medians, i.e. the model's typical
    values unless ``priors=`` replaced them) with the subject's doses and covariates.
    IPRED: the posterior median over draws of the individual prediction.
    IWRES = (DV - IPRED) / sd(IPRED), sd from the observation's residual-error model
    (``model.errors[k].sd``; with estimated residual error, at the posterior median of σ);
    for log-normal error on the log scale, (log DV - log IPRED) / sd.  NaN for censored rows.
    This is an individual weighted residual, not NONMEM's CWRES (no first-order linearisation).
    """
    import pandas as pd

    posts = list(posterior_or_list) if isinstance(posterior_or_list, (list, tuple)) else [posterior_or_list]
    return pd.concat([_gof_one(p) for p in posts], ignore_index=True)


def _gof_one(post):
    import jax
    import jax.numpy as jnp
    import pandas as pd

    from .inference.predictive import individual_predictions
    from .residual import LogNormal

    if post.subject is None:
        raise ModelError("goodness_of_fit needs individual posteriors (pbpk.fit), not a population fit.")
    model, data, spec = post.model, post.data, post.density
    obs = _observation_rows(post)
    n = len(obs)
    k = obs["OBS"].to_numpy(int)
    mask = np.asarray(data.mask)
    # One compiled call for every draw plus η = 0 (PRED) appended as a last "draw".
    flat = jax.tree.map(lambda x: np.asarray(x).reshape((1, -1) + np.shape(x)[2:]), post.positions)
    flat = jax.tree.map(lambda x: jnp.asarray(np.concatenate([x, np.zeros((1, 1) + x.shape[2:])], axis=1)), flat)
    preds = np.asarray(individual_predictions(spec, data, flat))[:, mask]
    pred, ipred = preds[-1], np.median(preds[:-1], axis=0)
    log_sigma = None
    if spec.estimate_error:
        ls = np.asarray(post.positions["log_sigma"])
        log_sigma = jnp.asarray(np.median(ls.reshape(-1, ls.shape[-1]), axis=0))
    errors = spec.errors(log_sigma)
    dv = obs["DV"].to_numpy(float)
    cens = obs["CENS"].to_numpy(float) == 1 if "CENS" in obs else np.zeros(n, bool)
    iwres = np.full(n, np.nan)
    for j in np.unique(k):
        err, rows = errors[j], (k == j) & ~cens
        if err is None or not rows.any():
            continue
        sd = np.asarray(err.sd(jnp.asarray(ipred[rows])))
        if isinstance(err, LogNormal):
            iwres[rows] = (np.log(dv[rows]) - np.log(ipred[rows])) / sd
        else:
            iwres[rows] = (dv[rows] - ipred[rows]) / sd
    return pd.DataFrame({"ID": post.subject.id, "TIME": obs["TIME"].to_numpy(float),
                         "NAME": [model.observation_names[j] for j in k], "DV": dv, "CENS": cens.astype(int),
                         "LLOQ": obs["LLOQ"].to_numpy(float) if "LLOQ" in obs else np.nan,
                         "PRED": pred, "IPRED": ipred, "IWRES": iwres})


def goodness_of_fit(posterior_or_list, *, log: bool = False, path=None):
    """2x2 diagnostic panel for one or several (pooled) individual fits: DV vs PRED, DV vs
    IPRED (identity lines; BLQ rows as open markers at the LLOQ), IWRES vs time (±2 lines) and
    a normal QQ plot of IWRES.  The numbers are ``gof_table(posterior_or_list)``."""
    from statistics import NormalDist

    plt = _pyplot()
    table = gof_table(posterior_or_list)
    cens = table["CENS"].to_numpy() == 1
    dv = table["DV"].to_numpy(float)
    lloq = table["LLOQ"].to_numpy(float)
    dv_shown = np.where(cens, np.where(np.isnan(lloq), dv, lloq), dv)
    fig, axes = plt.subplots(2, 2, figsize=(8.0, 7.0))
    for ax, col, title in ((axes[0, 0], "PRED", "population (PRED)"), (axes[0, 1], "IPRED", "individual (IPRED)")):
        x = table[col].to_numpy(float)
        ax.plot(x[~cens], dv[~cens], "o", ms=4, alpha=0.7, label="observed")
        if cens.any():
            ax.plot(x[cens], dv_shown[cens], "o", mfc="none", mec="C0", ms=5, label="BLQ (at LLOQ)")
        both = np.concatenate([x, dv_shown])
        both = both[np.isfinite(both) & ((both > 0) if log else True)]
        if both.size:
            lo, hi = both.min(), both.max()
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(col)
        ax.set_ylabel("DV")
        ax.set_title(f"DV vs {title}", fontsize=10)
    ok = np.isfinite(table["IWRES"].to_numpy(float))
    iwres = table["IWRES"].to_numpy(float)[ok]
    ax = axes[1, 0]
    ax.plot(table["TIME"].to_numpy(float)[ok], iwres, "o", ms=4, alpha=0.7)
    for y, style in ((0, "k-"), (-2, "k:"), (2, "k:")):
        ax.axhline(y, color="k", lw=0.8, ls=style[1:])
    ax.set_xlabel("time")
    ax.set_ylabel("IWRES")
    ax.set_title("IWRES vs time", fontsize=10)
    ax = axes[1, 1]
    if iwres.size:
        nd = NormalDist()
        theo = np.asarray([nd.inv_cdf((i + 0.5) / iwres.size) for i in range(iwres.size)])
        ax.plot(theo, np.sort(iwres), "o", ms=4, alpha=0.7)
        lim = max(np.abs(theo).max(), np.abs(iwres).max())
        ax.plot([-lim, lim], [-lim, lim], "k--", lw=1)
    ax.set_xlabel("standard normal quantile")
    ax.set_ylabel("IWRES quantile")
    ax.set_title("QQ plot of IWRES", fontsize=10)
    if cens.any():
        axes[0, 0].legend(fontsize=7)
    return _finish(fig, path)


# --------------------------------------------------------------------------- visual predictive check
def _vpc_design(model, dataset, name):
    """Observation rows of ``name`` across subjects, and the simulation design (padded times)."""
    from .inference._data import observation_index
    from .simulate import _covariates, _subject_covariates

    subjects = list(dataset)
    if not subjects:
        raise DataError("vpc: the dataset has no subjects.")
    if name is None:
        for s in subjects:
            if len(s.obs):
                name = model.observation_names[int(observation_index(model, s)[0])]
                break
    k = model.observation_index(name)
    times, rows = [], {"subject": [], "col": [], "TIME": [], "DV": [], "CENS": [], "LLOQ": []}
    for i, s in enumerate(subjects):
        obs = s.obs
        t = obs["TIME"].to_numpy(float)
        if len(obs):
            # simulate() of a Dataset puts outputs after every dose at the same time; records
            # before a dose at their time (troughs, ADDL doses) are moved an instant earlier.
            order = obs["ROW"].to_numpy(float) if "ROW" in obs else np.full(len(t), np.inf)
            d_t = np.asarray([float(d.time) for d in s.regimen.doses])
            d_o = np.asarray(s.dose_order, dtype=float)
            before = ((d_t[None, :] == t[:, None]) & (d_o[None, :] > order[:, None])).any(axis=1) \
                if d_t.size else np.zeros(len(t), bool)
            times.append(np.where(before, t - np.maximum(1e-13 * np.abs(t), 1e-12), t))
            mine = np.flatnonzero(observation_index(model, s) == k)
        else:
            times.append(np.zeros(1))
            mine = np.zeros(0, int)
        dv = obs["DV"].to_numpy(float)[mine]
        cens = (obs["CENS"].to_numpy(float)[mine] == 1) if "CENS" in obs else np.zeros(mine.size, bool)
        lloq = obs["LLOQ"].to_numpy(float)[mine] if "LLOQ" in obs else np.full(mine.size, np.nan)
        rows["subject"] += [i] * mine.size
        rows["col"] += mine.tolist()
        rows["TIME"] += t[mine].tolist()
        rows["DV"] += dv.tolist()
        rows["CENS"] += cens.tolist()
        rows["LLOQ"] += np.where(cens & np.isnan(lloq), dv, lloq).tolist()
    longest = max(len(t) for t in times)
    padded = np.stack([np.pad(t, (0, longest - len(t)), mode="edge") for t in times])
    cov = np.stack([np.asarray(_covariates(model, _subject_covariates(model, s)), dtype=float).reshape(-1)
                    for s in subjects])
    rows = {key: np.asarray(v) for key, v in rows.items()}
    if rows["TIME"].size == 0:
        raise DataError(f"vpc: no observations of {name!r} in the dataset.")
    return name, k, subjects, padded, cov, rows


def _vpc_parameters(model, key, n_sim, n_subjects, params, theta, omega):
    import equinox as eqx
    import jax.numpy as jnp

    n = n_sim * n_subjects
    p = len(model.parameter_names)
    if params is not None:
        values = params(key, n_sim, n_subjects) if callable(params) else params
        values = np.asarray(values, dtype=float)
        if values.shape != (n_sim, n_subjects, p):
            raise ModelError(f"vpc: params has shape {values.shape}; expected (n_sim, n_subjects, P) = "
                             f"({n_sim}, {n_subjects}, {p}) ordered as {list(model.parameter_names)}.")
        return jnp.asarray(values.reshape(n, p))
    if theta is not None:
        theta = model.params(**theta) if isinstance(theta, Mapping) else jnp.asarray(theta, dtype=jnp.float64)
        model = eqx.tree_at(lambda m: m.theta, model, jnp.broadcast_to(theta, model.theta.shape))
    if isinstance(omega, Mapping):
        base = np.asarray(model.omega, dtype=float).copy()
        for nm, value in omega.items():
            base[model.parameter_index(nm)] = float(value)
        omega = base
    return model.population(n, key, omega=omega).theta


def _bin_rows(times, bins):
    """(bin index of each row, edges or None for exact times, number of bins)."""
    distinct = np.unique(times)
    if (isinstance(bins, str) and bins == "exact") or (bins is None and distinct.size <= 10):
        return np.searchsorted(distinct, times), None, distinct.size
    if bins is None or np.isscalar(bins):
        count = 8 if bins is None else int(bins)
        edges = np.unique(np.quantile(times, np.linspace(0.0, 1.0, count + 1)))
    else:
        edges = np.asarray(bins, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ModelError(f"vpc: bins={bins!r} must be None, 'exact', a number of bins or increasing edges.")
    nb = edges.size - 1
    idx = np.searchsorted(edges, times, side="right") - 1
    idx[times == edges[-1]] = nb - 1
    idx[(times < edges[0]) | (times > edges[-1])] = -1
    return idx, edges, nb


_BLQ = -1e300          # stands for a censored value: below every real one, finite so quantiles interpolate


def _unblq(value) -> float:
    """NaN when a quantile fell among censored values (any blend with _BLQ is hugely negative)."""
    value = float(value)
    return np.nan if value < -1e250 else value


def _vpc(model, dataset, *, key, n_sim, quantiles, bins, ci, params, theta, omega, name):
    import warnings

    import jax
    import jax.numpy as jnp
    import pandas as pd

    from .simulate import simulate

    if not isinstance(key, jax.Array):
        raise ModelError("vpc: key must be a jax.random key, e.g. jax.random.key(0).")
    name, k, subjects, times, cov, rows = _vpc_design(model, dataset, name)
    n_subj = len(subjects)
    k_eta, k_eps = jax.random.split(key)
    thetas = _vpc_parameters(model, k_eta, int(n_sim), n_subj, params, theta, omega)
    sol = simulate(model, [s.regimen for s in subjects] * int(n_sim), np.tile(times, (n_sim, 1)), params=thetas,
                   covariates=np.tile(cov, (n_sim, 1)))
    obs = np.asarray(sol.observations)[..., k].reshape(n_sim, n_subj, -1)
    pred = obs[:, rows["subject"], rows["col"]]                             # (n_sim, n_rows)
    failed = np.asarray(sol.status).reshape(n_sim, n_subj) != 0
    if failed.any():
        warnings.warn(f"vpc: {int(failed.sum())} of {failed.size} simulated patients failed to solve; left out.",
                      RuntimeWarning, stacklevel=3)
    err = model.errors[k]
    sim = np.array(err.sample(k_eps, jnp.asarray(pred))) if err is not None else pred.copy()
    sim[failed[:, rows["subject"]]] = np.nan
    # BLQ: censored data (CENS=1) and simulated values below their row's LLOQ become a value
    # below everything (_BLQ); a quantile that falls among them is reported as NaN ("BLQ").
    has = np.isfinite(rows["LLOQ"])
    if has.any():
        part = sim[:, has]
        part[part < rows["LLOQ"][has]] = _BLQ
        sim[:, has] = part
    dv = np.where(rows["CENS"], _BLQ, rows["DV"])
    idx, edges, nb = _bin_rows(rows["TIME"], bins)
    qs = [float(q) for q in quantiles]
    lo_p, hi_p = (1.0 - ci) / 2.0, (1.0 + ci) / 2.0
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)              # all-NaN slices (failed solves)
        for b in range(nb):
            here = idx == b
            if not here.any():
                continue
            t, s_b = rows["TIME"][here], sim[:, here]
            lloq = rows["LLOQ"][here]
            rec = {"bin": b, "time": float(np.median(t)),
                   "lower": float(t.min() if edges is None else edges[b]),
                   "upper": float(t.max() if edges is None else edges[b + 1]),
                   "n": int(here.sum()), "lloq": float(np.nanmin(lloq)) if np.isfinite(lloq).any() else np.nan,
                   "obs_blq": float(np.mean(dv[here] == _BLQ)),
                   "sim_blq": float(np.nanmedian(np.sum(s_b == _BLQ, axis=1) / np.sum(np.isfinite(s_b), axis=1)))}
            sq = np.nanquantile(s_b, qs, axis=1)                            # (n_q, n_sim)
            for j, q in enumerate(qs):
                lab = f"q{q:g}"
                rec[f"obs_{lab}"] = _unblq(np.nanquantile(dv[here], q))
                rec[f"sim_{lab}"] = _unblq(np.nanmedian(sq[j]))
                rec[f"sim_{lab}_lo"], rec[f"sim_{lab}_hi"] = (_unblq(v) for v in np.nanquantile(sq[j], [lo_p, hi_p]))
            out.append(rec)
    table = pd.DataFrame(out)
    table.attrs.update(name=name, unit=model.units.get(name, ""), time_unit=model.time_unit, quantiles=tuple(qs),
                       ci=ci, n_sim=int(n_sim))
    return table, rows


def vpc_table(model, dataset, *, key, n_sim: int = 200, quantiles=(0.05, 0.5, 0.95), bins=None, ci: float = 0.9,
              params=None, theta=None, omega=None, name=None):
    """Numbers of a visual predictive check, one row per time bin.

    ``n_sim`` replicates of the dataset's design (each subject's doses, covariates and
    observation times) are simulated in one batched call from the population: θ_i = θ·exp(η_i),
    η_i ~ N(0, ω²) with the model's typical values and ``model.omega`` (or ``theta=``, ``omega=``
    overrides: vectors ordered as ``model.parameter_names`` or {name: value}), or given
    individual parameters ``params``: an (n_sim, n_subjects, P) array, or a callable
    ``params(key, n_sim, n_subjects)`` returning one (e.g. drawing from a fitted population).
    Residual error is added with ``model.errors[k].sample``.  Values below a row's LLOQ are
    censored in the simulations as BLQ rows (CENS=1) are in the data: they count as below every
    measured value, and a quantile that falls among them is NaN ("below the LLOQ"); ``obs_blq``
    and ``sim_blq`` (median over replicates) are the censored fractions, ``lloq`` the bin's lowest.

    ``bins``: None (exact times when there are at most 10 distinct ones, else 8 bins at
    quantiles of the observed times), "exact", a number of quantile bins, or bin edges.

    Columns: bin, time (median observed time), lower, upper, n, lloq, obs_blq, sim_blq and per
    quantile q: ``obs_q{q}`` (observed), ``sim_q{q}`` (median over replicates) and
    ``sim_q{q}_lo`` / ``sim_q{q}_hi`` (its ``ci`` interval over replicates).
    """
    return _vpc(model, dataset, key=key, n_sim=n_sim, quantiles=quantiles, bins=bins, ci=ci, params=params,
                theta=theta, omega=omega, name=name)[0]


def vpc(model, dataset, *, key, n_sim: int = 200, quantiles=(0.05, 0.5, 0.95), bins=None, ci: float = 0.9,
        log: bool = False, params=None, theta=None, omega=None, name=None, ax=None, path=None):
    """Visual predictive check: observed percentiles per time bin (lines) over the ``ci``
    intervals of the simulated percentiles (shaded), observations as points.  Arguments and
    numbers: ``vpc_table``."""
    fig, ax, created = _panel(ax, figsize=(6.0, 4.2))
    table, rows = _vpc(model, dataset, key=key, n_sim=n_sim, quantiles=quantiles, bins=bins, ci=ci,
                       params=params, theta=theta, omega=omega, name=name)
    cens = rows["CENS"].astype(bool)
    ax.plot(rows["TIME"][~cens], rows["DV"][~cens], "o", color="0.55", ms=3, alpha=0.6, label="observed", zorder=1)
    if cens.any():
        ax.plot(rows["TIME"][cens], rows["LLOQ"][cens], "o", mfc="none", mec="0.55", ms=3, label="BLQ (at LLOQ)")
    t = table["time"].to_numpy(float)
    _, mid = _band_pairs(table.attrs["quantiles"])
    for q in table.attrs["quantiles"]:
        lab, colour = f"q{q:g}", "C3" if q == mid else "C0"
        lower = table[f"sim_{lab}_lo"].fillna(table["lloq"])       # a band reaching below the LLOQ
        ax.fill_between(t, lower, table[f"sim_{lab}_hi"], color=colour, alpha=0.25, lw=0,
                        label=f"simulated {lab} ({round(100 * ci)}% CI)")
        ax.plot(t, table[f"obs_{lab}"], color=colour, lw=1.6 if q == mid else 1.1, ls="-" if q == mid else "--",
                label=f"observed {lab}")
    if log:
        _log_limits(ax, np.concatenate([rows["DV"][~cens], table.filter(like="sim_q").to_numpy(float).ravel()]))
    name = table.attrs["name"]
    ax.set_xlabel(f"time ({table.attrs['time_unit']})")
    ax.set_ylabel(_label(name, table.attrs["unit"]))
    ax.set_title(f"VPC of {name} ({n_sim} replicates)", fontsize=10)
    ax.legend(fontsize=6, ncol=2)
    return _finish(fig, path, created)


# --------------------------------------------------------------------------- sampler diagnostics (ArviZ)
def _arviz(posterior, plotter, **kwargs):
    """``plotter`` (an ArviZ plot function) on the estimated quantities; its Figure."""
    import warnings

    if posterior.method == "map" or posterior.n_chains * posterior.n_draws < 2:
        raise ModelError(f"a {posterior.method!r} posterior has a single point; fit with method='laplace' or "
                         "'nuts' for draws to plot.")
    _pyplot()
    idata = posterior.to_arviz(predictive=False)
    names = list(posterior.estimated + posterior.error_names)
    with warnings.catch_warnings():
        # ArviZ 0.x calls a matplotlib API deprecated in 3.11: nothing a user of pbpk can act on.
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping")
        axes = plotter(idata, var_names=names, **kwargs)
    return np.ravel(np.asarray(axes, dtype=object))[0].get_figure()


def trace(posterior, path=None):
    """Trace and marginal density per estimated quantity (``az.plot_trace``)."""
    import arviz as az

    return _finish(_arviz(posterior, az.plot_trace), path, created=False)


def rank(posterior, path=None):
    """Rank plots per estimated quantity (``az.plot_rank``): uniform ranks when chains mix."""
    import arviz as az

    return _finish(_arviz(posterior, az.plot_rank), path, created=False)


def pair(posterior, path=None):
    """Pairwise scatter of the estimated quantities with divergent transitions highlighted
    (``az.plot_pair(divergences=True)`` when the sampler records them, i.e. NUTS)."""
    import arviz as az

    return _finish(_arviz(posterior, az.plot_pair, divergences="diverging" in posterior.stats), path, created=False)
