"""Figures (matplotlib, imported lazily so ``import pbpk`` stays light)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["population_bands"]


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
