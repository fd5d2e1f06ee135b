"""The result of a calibration: named draws, ArviZ diagnostics and warnings that cannot be missed."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Posterior", "PosteriorWarning", "DIAGNOSTIC_LIMITS"]

# Vehtari et al. 2021 (rank-normalised R-hat): R-hat ≤ 1.01, and bulk and tail ESS ≥ 400 in total.
DIAGNOSTIC_LIMITS = {"r_hat": 1.01, "ess_min": 400}


class PosteriorWarning(UserWarning):
    """The sampler's diagnostics say the draws should not be trusted as they are."""


@dataclass(frozen=True, eq=False)
class Posterior:
    """Draws of one patient's parameters (or a population's), shaped (chains, draws).

    ``draws``: natural-scale values by name — every model parameter (fixed ones constant) and
    each residual-error parameter; ``positions``: the unconstrained draws the sampler moved on.
    """

    model: object
    method: str
    draws: dict
    positions: dict
    stats: dict
    density: object = field(repr=False)
    data: object = field(repr=False)
    subject: object = field(repr=False)
    estimated: tuple = ()
    error_names: tuple = ()
    nuts: object = field(default=None, repr=False)
    mode: object = field(default=None, repr=False)
    seconds: float = 0.0
    importance: object = field(default=None, repr=False)   # a sequential importance update's PSIS result

    def __post_init__(self):
        for message in self.problems():
            warnings.warn(message, PosteriorWarning, stacklevel=3)

    # ------------------------------------------------------------------ shape
    @property
    def n_chains(self) -> int:
        return next(iter(self.draws.values())).shape[0]

    @property
    def n_draws(self) -> int:
        return next(iter(self.draws.values())).shape[1]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.draws:
            from ..errors import ModelError, did_you_mean

            raise ModelError(f"posterior has no quantity {name!r}; it has {list(self.draws)}."
                             + did_you_mean(name, list(self.draws)))
        return self.draws[name]

    def theta(self) -> jax.Array:
        """(chains·draws, P) parameter vectors ordered as ``model.parameter_names``."""
        cols = [np.asarray(self.draws[n]).reshape(-1) for n in self.model.parameter_names]
        return jnp.asarray(np.stack(cols, axis=-1))

    # ------------------------------------------------------------------ diagnostics
    def summary(self, *, hdi_prob: float = 0.9, names=None):
        """Mean, sd, HDI, MCSE, bulk/tail ESS and R-hat of the estimated quantities (ArviZ)."""
        import arviz as az

        names = list(names or self.estimated + self.error_names)
        if self.method == "map":
            import pandas as pd

            return pd.DataFrame({"mode": [float(np.asarray(self.draws[n]).reshape(-1)[0]) for n in names]},
                                index=names)
        return az.summary(self.to_arviz(predictive=False), var_names=names, hdi_prob=hdi_prob,
                          kind="all" if self.method == "nuts" else "stats")

    def diagnostics(self) -> dict:
        """Worst R-hat, smallest bulk and tail ESS over the estimated quantities, divergences.

        Computed once per Posterior (construction warns from it; repr and ``ok`` reuse it)."""
        if "_diagnostics" not in self.__dict__:
            self.__dict__["_diagnostics"] = self._diagnostics()
        return dict(self.__dict__["_diagnostics"])

    def _diagnostics(self) -> dict:
        if self.method != "nuts":
            return {"max_r_hat": np.nan, "min_ess_bulk": np.nan, "min_ess_tail": np.nan, "divergences": 0}
        import arviz as az

        idata = self.to_arviz(predictive=False)
        names = list(self.estimated + self.error_names)
        per = lambda ds: np.concatenate([np.ravel(ds[v]) for v in names])
        return {"max_r_hat": float(per(az.rhat(idata, var_names=names)).max()),
                "min_ess_bulk": float(per(az.ess(idata, var_names=names, method="bulk")).min()),
                "min_ess_tail": float(per(az.ess(idata, var_names=names, method="tail")).min()),
                "divergences": int(np.sum(np.asarray(self.stats["diverging"])))}

    def problems(self) -> list[str]:
        """Human-readable reasons not to trust the draws (empty when all checks pass)."""
        if self.method == "importance":
            imp, out = self.importance, []
            if imp.pareto_k > 0.7:
                out.append(f"importance update: Pareto k = {imp.pareto_k:.2f} > 0.7: the new data moved the "
                           "posterior too far for reweighting; update with method='nuts'.")
            if imp.ess < DIAGNOSTIC_LIMITS["ess_min"]:
                out.append(f"importance update: effective sample size {imp.ess:.0f} < {DIAGNOSTIC_LIMITS['ess_min']}; "
                           "update with method='nuts'.")
            return out
        if self.method != "nuts":
            return []
        d = self.diagnostics()
        out = []
        if d["divergences"]:
            out.append(f"{d['divergences']} divergent transitions after warmup: the posterior has regions the "
                       "sampler cannot explore; results may be biased (reparameterise, tighten priors, or raise "
                       "target_accept).")
        if not d["max_r_hat"] <= DIAGNOSTIC_LIMITS["r_hat"]:
            out.append(f"R-hat {d['max_r_hat']:.3f} > {DIAGNOSTIC_LIMITS['r_hat']}: the chains disagree; run "
                       "longer (more warmup/draws) before using these draws.")
        ess = min(d["min_ess_bulk"], d["min_ess_tail"])
        if not ess >= DIAGNOSTIC_LIMITS["ess_min"]:
            out.append(f"effective sample size {ess:.0f} < {DIAGNOSTIC_LIMITS['ess_min']}: quantiles and "
                       "intervals are unreliable; run more draws.")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    # ------------------------------------------------------------------ ArviZ
    def to_arviz(self, *, predictive: bool = True, key=None):
        """InferenceData: posterior, sample_stats (divergences, ...), observed_data and
        (``predictive``) posterior_predictive at the observation rows, with residual error."""
        import arviz as az

        posterior = {k: np.asarray(v) for k, v in self.draws.items()}
        stats = {k: np.asarray(v) for k, v in self.stats.items()}
        if "diverging" in stats:
            stats["diverging"] = stats["diverging"].astype(bool)
        obs = self._observed()
        kwargs = {}
        if obs is not None:
            kwargs["observed_data"] = {"DV": obs["DV"]}
            kwargs["constant_data"] = {"TIME": obs["TIME"]}
            kwargs["coords"] = {"obs": np.arange(len(obs["DV"]))}
            kwargs["dims"] = {"DV": ["obs"], "TIME": ["obs"]}
            if predictive:
                from .predictive import posterior_predictive

                pp = posterior_predictive(self, key=jax.random.key(0) if key is None else key)
                kwargs["posterior_predictive"] = {"DV": pp.reshape(self.n_chains, self.n_draws, -1)}
        return az.from_dict(posterior=posterior, sample_stats=stats or None, **kwargs)

    def _observed(self):
        if self.data is None or getattr(self.data, "mask", None) is None or np.ndim(self.data.mask) != 1:
            return None
        m = np.asarray(self.data.mask)
        return {"DV": np.asarray(self.data.dv)[m], "TIME": np.asarray(self.data.times)[m]}

    def __repr__(self) -> str:
        diag = self.diagnostics() if self.method == "nuts" else {}
        head = (f"Posterior({self.method}, model={self.model.name!r}, {self.n_chains} chains x {self.n_draws} draws, "
                f"estimated={list(self.estimated)}")
        if diag:
            head += (f", max R-hat {diag['max_r_hat']:.3f}, min ESS {min(diag['min_ess_bulk'], diag['min_ess_tail']):.0f}, "
                     f"{diag['divergences']} divergences")
        return head + ")"
