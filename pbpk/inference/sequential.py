"""Sequential updates: the posterior given new observations, reusing the previous posterior.

Two paths, chosen by measurement (validation/recovery/sequential_update.py):

* **importance** — the previous draws reweighted by the new data's likelihood,
  w ∝ p(θ | all data) / p(θ | old data), Pareto-smoothed (PSIS, ArviZ) and resampled.  One
  batched density evaluation: the fast path when a few observations arrive.  Reliable while the
  Pareto k̂ ≤ 0.7 and the effective sample size stays large (Vehtari et al. 2024, JMLR 25:72).
* **nuts** — warm-started NUTS: chains start from the previous draws with the previous step
  size and mass matrix and a short re-adaptation; used when the new data move the posterior
  too far for reweighting (k̂ > 0.7 or ESS below ``min_ess``).
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import numpy as np

__all__ = ["ImportanceResult", "importance_update"]

PARETO_K_MAX = 0.7


@dataclass(frozen=True)
class ImportanceResult:
    positions: dict          # resampled, (chains, draws, ...)
    lp: np.ndarray           # log density (new data) of the resampled draws
    pareto_k: float
    ess: float               # Kish effective sample size of the smoothed weights
    n: int

    @property
    def reliable(self) -> bool:
        return self.pareto_k <= PARETO_K_MAX


def importance_update(density, new_data, positions, old_lp, key) -> ImportanceResult:
    """Reweight draws of p(θ | old data) (log densities ``old_lp``) to p(θ | new data)."""
    import arviz as az

    shape = np.shape(old_lp)
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[len(shape):]), positions)
    new_lp = np.asarray(_batched_density(density, new_data, flat))
    log_w = new_lp - np.asarray(old_lp).reshape(-1)
    finite = np.isfinite(log_w)
    log_w = np.where(finite, log_w, -np.inf)
    smoothed, k = az.psislw(np.where(finite, log_w, np.min(log_w[finite]) - 50.0) if finite.any() else log_w)
    smoothed = np.where(finite, smoothed, -np.inf)
    w = np.exp(smoothed - np.max(smoothed))
    w /= w.sum()
    n = w.size
    idx = _systematic(w, key)
    resampled = jax.tree.map(lambda x: x[idx].reshape(shape + x.shape[1:]), flat)
    return ImportanceResult(resampled, new_lp[idx].reshape(shape), float(np.asarray(k)), float(1.0 / np.sum(w**2)), n)


def _systematic(w, key):
    """Systematic resampling, then a random permutation (so that chains stay exchangeable and
    autocorrelation-based diagnostics are not fooled by sorted indices)."""
    k1, k2 = jax.random.split(key)
    n = w.size
    u = (float(jax.random.uniform(k1)) + np.arange(n)) / n
    idx = np.minimum(np.searchsorted(np.cumsum(w), u), n - 1)
    return idx[np.asarray(jax.random.permutation(k2, n))]


@eqx.filter_jit
def _batched_density(density, data, positions):
    return jax.vmap(lambda p: density(p, data))(positions)
