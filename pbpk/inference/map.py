"""Maximum a posteriori (empirical-Bayes) estimates with optimistix, and the Laplace covariance."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optimistix as optx
from jax.flatten_util import ravel_pytree

__all__ = ["MAPResult", "map_estimate"]


@dataclass(frozen=True)
class MAPResult:
    position: dict                 # unconstrained position at the mode
    parameters: dict               # natural-scale individual parameters at the mode
    covariance: jax.Array | None   # Laplace: inverse Hessian of -log density (flattened position)
    log_density: float
    converged: bool
    steps: int


def map_estimate(ld, *, rtol: float = 1e-9, atol: float = 1e-9, max_steps: int = 1000,
                 laplace: bool = True) -> MAPResult:
    """Mode of ``ld.logdensity_fn`` by BFGS from its initial position (η = 0: the typical patient)."""
    flat0, unravel = ravel_pytree(ld.initial_position)

    def objective(z, _):
        return -ld.logdensity_fn(unravel(z))

    sol = optx.minimise(objective, optx.BFGS(rtol=rtol, atol=atol), flat0, max_steps=max_steps, throw=False)
    z = sol.value
    cov = jnp.linalg.inv(jax.hessian(lambda x: objective(x, None))(z)) if laplace else None
    position = unravel(z)
    return MAPResult(position=position, parameters=ld.parameters(position), covariance=cov,
                     log_density=float(-objective(z, None)),
                     converged=bool(sol.result == optx.RESULTS.successful), steps=int(sol.stats["num_steps"]))
