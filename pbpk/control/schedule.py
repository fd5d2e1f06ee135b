"""A dosing schedule for one patient: what a policy will give, cycle by cycle, and what the twin
predicts it will do — a table (DataFrame, CSV) and a figure.

The forecast runs the policy on every draw of the patient's twin (posterior draws, or the
population when nothing is known yet) as if that draw were the patient, with its own simulated
samples: a feedback policy's later doses depend on what will be observed, so the table gives the
dose most draws receive at each cycle and how many receive it, the cumulative efficacy with its
credible interval, and the probability of crossing each limit by that cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .env import DosingEnv, Patients
from .policies import evaluate

__all__ = ["DosingSchedule", "forecast_schedule"]


@dataclass(frozen=True)
class DosingSchedule:
    """The schedule table (one row per cycle) and what it was made with."""

    table: pd.DataFrame
    policy: str
    dose_unit: str
    draws: int

    def to_csv(self, path) -> None:
        self.table.to_csv(path, index=False)

    def plot(self, ax=None, path=None):
        """Doses as bars, cumulative efficacy with its interval, and P(violation) per limit."""
        import matplotlib.pyplot as plt

        fig, axes = (plt.subplots(1, 2, figsize=(10, 3.6)) if ax is None else (ax[0].figure, ax))
        t = self.table
        axes[0].bar(t["cycle"], t["dose"], color="tab:blue", alpha=0.7)
        axes[0].set(xlabel="cycle", ylabel=f"dose ({self.dose_unit})", title=self.policy)
        twin = axes[0].twinx()
        twin.plot(t["cycle"], t["efficacy_median"], "k-o", ms=3)
        twin.fill_between(t["cycle"], t["efficacy_q05"], t["efficacy_q95"], color="k", alpha=0.15)
        twin.set_ylabel("cumulative efficacy (median, 90 % CrI)")
        for col in [c for c in t.columns if c.startswith("P(")]:
            axes[1].plot(t["cycle"], t[col], "-o", ms=3, label=col)
        axes[1].set(xlabel="cycle", ylabel="probability by this cycle", ylim=(0, 1))
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def forecast_schedule(env: DosingEnv, policy, twin: Patients, key, *, name: str | None = None) -> DosingSchedule:
    """The schedule ``policy`` gives a patient whose twin is ``twin`` (its draws as ``Patients``,
    e.g. ``Patients.from_posterior(posterior, 500, key)``), with its forecast."""
    out = evaluate(env, policy, twin, key)
    actions = np.asarray(out.actions)
    doses = np.where(actions >= 0, np.asarray(env.doses)[np.maximum(actions, 0)], np.nan)
    intervals = np.where(actions >= 0, np.asarray(env.intervals)[np.maximum(actions, 0)] / env.day, np.nan)
    efficacy = np.cumsum(np.asarray(out.rewards), axis=1)
    crossed = np.maximum.accumulate(np.asarray(out.step_violations), axis=1)      # (draws, steps, limits)
    rows, day = [], np.zeros(actions.shape[0])
    for k in range(env.horizon):
        given = ~np.isnan(doses[:, k])
        if not given.any():
            break
        values, counts = np.unique(doses[given, k], return_counts=True)
        row = {"cycle": k + 1, "day_median": float(np.median(day[given])), "dose": float(values[np.argmax(counts)]),
               "share_of_draws": float(counts.max() / given.sum()), "dose_mean": float(np.mean(doses[given, k])),
               "interval_days": float(np.nanmedian(intervals[given, k])),
               "efficacy_median": float(np.median(efficacy[:, k])),
               "efficacy_q05": float(np.quantile(efficacy[:, k], 0.05)),
               "efficacy_q95": float(np.quantile(efficacy[:, k], 0.95))}
        for j, lim in enumerate(env.limits):
            row[f"P({lim.label()})"] = float(crossed[:, k, j].mean())
        rows.append(row)
        day = day + np.nan_to_num(intervals[:, k])
    return DosingSchedule(pd.DataFrame(rows), name or type(policy).__name__, env.dose_unit, int(actions.shape[0]))
