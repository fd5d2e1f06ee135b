"""Calibration and twin figures (pbpk.plot): each figure function runs and returns a Figure with
the expected panels; the numbers behind them (vpc_table, gof_table) against hand computations on
an analytic one-compartment model (two IV boluses, a trough recorded before the second dose, one
BLQ sample)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

import pbpk
from pbpk import plot

DOSE, CL, V, LLOQ = 100.0, 5.0, 50.0, 0.05
TIMES = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0, 36.0])   # 24: trough, before the dose at 24
BLQ_TIME = 72.0
N_SUBJECTS = 6
KEY_IIV = jax.random.key(3)     # VPCs with the model's IIV: the same draws size the same compiled simulation


def conc(t, cl=CL, v=V):
    """Analytic concentration after boluses at 0 and 24 (a sample at 24 precedes the second)."""
    t = np.asarray(t, dtype=float)
    return DOSE / v * (np.exp(-cl / v * t) + np.where(t > 24.0, np.exp(-cl / v * (t - 24.0)), 0.0))


def write_csv(path):
    rng = np.random.default_rng(7)
    rows = []
    for i in range(1, N_SUBJECTS + 1):
        cl, v = CL * np.exp(0.3 * rng.normal()), V * np.exp(0.2 * rng.normal())
        dv = conc(TIMES, cl, v) * (1 + 0.1 * rng.normal(size=TIMES.size))
        rows.append(f"{i},0,{DOSE:g},.,1,1,1,0,.")
        for t, y in zip(TIMES, dv):
            rows.append(f"{i},{t:g},0,{y:.5f},0,0,1,0,.")
            if t == 24.0:
                rows.append(f"{i},24,{DOSE:g},.,1,1,1,0,.")
        rows.append(f"{i},{BLQ_TIME:g},0,{LLOQ:g},0,0,1,1,{LLOQ:g}")
    path.write_text("ID,TIME,AMT,DV,EVID,MDV,CMT,CENS,LLOQ\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def setup(lib, tmp_path_factory):
    model = lib("one_compartment_iv")
    data = pbpk.read_nonmem(write_csv(tmp_path_factory.mktemp("plot") / "data.csv"), model)
    subjects = list(data)
    posts = [pbpk.fit(model, s, method="laplace", key=jax.random.key(0), draws=200) for s in subjects[:2]]
    # VPC models: residual error 0 (references) or the model's 10 %, as arrays so that both share
    # one compiled simulation (a Python float in the model is static to jit).
    quiet = eqx.tree_at(lambda m: m.errors[0].cv, model, jnp.asarray(0.0))
    noisy = eqx.tree_at(lambda m: m.errors[0].cv, model, jnp.asarray(0.1))
    return model, (quiet, noisy), data, posts


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- individual fit, forecast
def test_individual_fit(setup, tmp_path):
    _, _, _, posts = setup
    out = tmp_path / "fit.png"
    fig = plot.individual_fit(posts[0], path=out)
    assert isinstance(fig, Figure) and len(fig.axes) == 1 and out.stat().st_size > 0
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Cp (mg/L)" and ax.get_xlabel() == "time (h)"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert len(lines["observed"].get_xdata()) == TIMES.size
    blq = lines["BLQ (at LLOQ)"]
    assert list(blq.get_xdata()) == [BLQ_TIME] and list(blq.get_ydata()) == [LLOQ]
    assert blq.get_markerfacecolor() == "none"
    grid = lines["median"].get_xdata()
    assert len(grid) == 200 and grid[0] == 0.0 and grid[-1] == pytest.approx(1.1 * BLQ_TIME)

    fig2, axes = plt.subplots(1, 2)
    got = plot.individual_fit(posts[1], log=True, ax=axes[1])
    assert got is fig2 and len(got.axes) == 2 and axes[1].get_yscale() == "log"


def test_forecast_bands(setup):
    model, _, data, posts = setup
    twin = pbpk.Twin(model, posts[0])
    fc = twin.forecast(None, np.linspace(0, 79.2, 200), quantiles=(0.05, 0.25, 0.5, 0.75, 0.95))
    fig = fc.plot("Cp", data=data.subject(1).obs)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.collections) == 2                            # nested 90 % and 50 % bands
    median = next(ln for ln in ax.get_lines() if ln.get_label() == "median")
    np.testing.assert_allclose(median.get_ydata(), np.quantile(fc["Cp"], 0.5, axis=0))
    assert ax.get_ylabel() == "Cp (mg/L)" and ax.get_xlabel() == "time (h)"


# --------------------------------------------------------------------------- goodness of fit
def test_gof_table_by_hand(setup):
    _, _, data, posts = setup
    post = posts[0]
    table = plot.gof_table(post)
    obs = data.subject(1).obs
    assert len(table) == len(obs) and list(table["TIME"]) == list(obs["TIME"])
    # PRED: typical values; IPRED: median over draws of the analytic prediction.
    np.testing.assert_allclose(table["PRED"], conc(obs["TIME"]), rtol=1e-9)
    cl, v = np.ravel(post["CL"])[:, None], np.ravel(post["V"])[:, None]
    ipred = np.median(conc(obs["TIME"].to_numpy()[None, :], cl, v), axis=0)
    np.testing.assert_allclose(table["IPRED"], ipred, rtol=1e-9)
    j = 3                                                       # TIME 4, by hand
    expected = (obs["DV"][j] - ipred[j]) / (0.1 * ipred[j])
    assert table["IWRES"][j] == pytest.approx(expected, rel=1e-8)
    assert np.isnan(table["IWRES"].iloc[-1]) and table["CENS"].iloc[-1] == 1     # BLQ row


def test_goodness_of_fit(setup, tmp_path):
    _, _, _, posts = setup
    fig = plot.goodness_of_fit(posts, path=tmp_path / "gof.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert (tmp_path / "gof.png").stat().st_size > 0
    assert len(plot.gof_table(posts)) == 2 * (TIMES.size + 1)
    qq = fig.axes[3].get_lines()[0]
    assert len(qq.get_xdata()) == 2 * TIMES.size               # censored rows have no IWRES
    assert len(plot.goodness_of_fit(posts[0], log=True).axes) == 4


# --------------------------------------------------------------------------- visual predictive check
def test_vpc_table_against_typical_prediction(setup):
    _, (quiet, _), data, _ = setup
    table = plot.vpc_table(quiet, data, key=jax.random.key(1), n_sim=50, omega=[0.0, 0.0])
    assert list(table["time"]) == [*TIMES, BLQ_TIME]            # few distinct times: exact bins
    assert (table["n"] == N_SUBJECTS).all()
    dv = data.data.query("EVID == 0")
    for _, row in table.iloc[:-1].iterrows():
        expected = conc(row["time"])          # at 24: the trough recorded before the second dose
        for q in ("q0.05", "q0.5", "q0.95"):
            for col in (f"sim_{q}", f"sim_{q}_lo", f"sim_{q}_hi"):
                assert row[col] == pytest.approx(expected, rel=1e-9), (row["time"], col)
        values = dv.loc[dv["TIME"] == row["time"], "DV"].to_numpy(float)
        np.testing.assert_allclose([row["obs_q0.05"], row["obs_q0.5"], row["obs_q0.95"]],
                                   np.percentile(values, [5, 50, 95]), rtol=1e-12)
    last = table.iloc[-1]                                        # all BLQ, observed and simulated
    assert last["obs_blq"] == 1.0 and last["sim_blq"] == 1.0 and last["lloq"] == LLOQ
    assert np.isnan(last[["obs_q0.5", "sim_q0.5", "sim_q0.05_lo"]].to_numpy(float)).all()

    lower_cl = plot.vpc_table(quiet, data, key=jax.random.key(2), n_sim=50, theta={"CL": 4.0}, omega=[0.0, 0.0])
    np.testing.assert_allclose(lower_cl["sim_q0.5"].iloc[:-1], conc(TIMES, cl=4.0), rtol=1e-9)


def test_vpc_table_bins_and_params(setup):
    _, (quiet, _), data, _ = setup
    table = plot.vpc_table(quiet, data, key=KEY_IIV, n_sim=50, bins=3)
    obs = data.data.query("EVID == 0 and CENS == 0")
    edges = np.quantile(data.data.query("EVID == 0")["TIME"], [0, 1 / 3, 2 / 3, 1])
    assert len(table) == 3 and table["lower"].tolist() == pytest.approx(edges[:-1].tolist())
    first = obs.loc[obs["TIME"] < edges[1], "DV"].to_numpy(float)
    assert table["n"][0] == first.size
    np.testing.assert_allclose(table["obs_q0.5"][0], np.percentile(first, 50), rtol=1e-12)
    lo, mid, hi = (table[f"sim_q0.5{s}"] for s in ("_lo", "", "_hi"))
    assert (lo <= mid).all() and (mid <= hi).all() and (lo < hi).all()   # spread from the model's IIV

    # Given individual parameters: each replicate is the typical patient, CL doubled.
    params = np.broadcast_to([CL / 2, V], (50, N_SUBJECTS, 2))
    given = plot.vpc_table(quiet, data, key=jax.random.key(4), n_sim=50, params=params)
    np.testing.assert_allclose(given["sim_q0.95"].iloc[:-1], conc(TIMES, cl=CL / 2), rtol=1e-9)
    with pytest.raises(ValueError, match="n_sim, n_subjects, P"):
        plot.vpc_table(quiet, data, key=jax.random.key(4), n_sim=50, params=params[:, :2])


def test_vpc_figure(setup, tmp_path):
    _, (_, noisy), data, _ = setup
    fig = plot.vpc(noisy, data, key=KEY_IIV, n_sim=50, log=True, path=tmp_path / "vpc.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 1 and (tmp_path / "vpc.png").stat().st_size > 0
    ax = fig.axes[0]
    assert len(ax.collections) == 3 and ax.get_yscale() == "log"       # one band per quantile
    assert ax.get_ylabel() == "Cp (mg/L)"
    fig2, axes = plt.subplots(2, 1)
    assert plot.vpc(noisy, data, key=KEY_IIV, n_sim=50, ax=axes[0]) is fig2


# --------------------------------------------------------------------------- ArviZ diagnostics
def test_arviz_wrappers(setup, tmp_path):
    model, _, data, posts = setup
    post = posts[0]
    assert len(plot.trace(post, path=tmp_path / "trace.png").axes) == 4      # 2 parameters x (density, trace)
    assert len(plot.rank(post).axes) == 2
    assert len(plot.pair(post).axes) == 1                                    # CL vs V
    assert (tmp_path / "trace.png").stat().st_size > 0
    single = pbpk.fit(model, data.subject(1), method="map")
    with pytest.raises(ValueError, match="single point"):
        plot.trace(single)
