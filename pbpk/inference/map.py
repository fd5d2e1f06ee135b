"""Maximum a posteriori (empirical-Bayes) estimates with optimistix, and the Laplace covariance."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jax.flatten_util import ravel_pytree

__all__ = ["MAPResult", "map_estimate", "find_mode"]


@dataclass(frozen=True)
class MAPResult:
    position: dict                 # unconstrained position at the mode
    parameters: dict               # natural-scale individual parameters at the mode
    covariance: np.ndarray | None  # Laplace: inverse Hessian of -log density (flattened position)
    log_density: float
    converged: bool
    steps: int

    def draws(self, key, n: int) -> dict:
        """``n`` draws of the position from the Laplace approximation N(mode, covariance)."""
        from .fit import laplace_draws

        return laplace_draws(self.position, self.covariance, key, n)


def map_estimate(ld, *, rtol: float = 1e-9, atol: float = 1e-9, max_steps: int = 1000,
                 laplace: bool = True) -> MAPResult:
    """Mode of a ``SubjectLogDensity`` by BFGS from its initial position (η = 0: the typical patient)."""
    position, hess, ok, steps, lp = find_mode(ld.spec, ld.data, ld.initial_position, rtol=rtol, atol=atol,
                                              max_steps=max_steps)
    cov = laplace_covariance(hess) if laplace else None
    return MAPResult(position=position, parameters=ld.parameters(position), covariance=cov,
                     log_density=lp, converged=ok, steps=steps)


def find_mode(density, data, position0, *, rtol=1e-9, atol=1e-9, max_steps=1000):
    """Mode of ``density(position, data)``: (position, Hessian of -log density, converged, steps, log density)."""
    z, hess, result, steps, lp = _mode(density, data, position0, rtol, atol, max_steps)
    _, unravel = ravel_pytree(position0)
    return (unravel(z), np.asarray(hess), bool(result == optx.RESULTS.successful), int(steps), float(lp))


def laplace_covariance(hess) -> np.ndarray:
    """Inverse Hessian, symmetrised; a non-positive-definite Hessian (not a mode) gives NaN."""
    hess = 0.5 * (np.asarray(hess) + np.asarray(hess).T)
    try:
        np.linalg.cholesky(hess)
    except np.linalg.LinAlgError:
        return np.full_like(hess, np.nan)
    return np.linalg.inv(hess)


@eqx.filter_jit
def _mode(density, data, position0, rtol, atol, max_steps):
    flat0, unravel = ravel_pytree(position0)
    closed_form = density.opts.method in ("spectral", "expm")
    if not closed_form:
        # Forward sensitivities: with a handful of parameters, P tangents carried through the
        # adaptive solve cost less to compile and run than diffrax's checkpointed reverse pass.
        density = dataclasses.replace(density, opts=dataclasses.replace(density.opts, adjoint="forward"))

    def objective(z, _):
        return -density(unravel(z), data)

    sol = optx.minimise(objective, optx.BFGS(rtol=rtol, atol=atol), flat0, max_steps=max_steps, throw=False,
                        options={"autodiff_mode": "bwd" if closed_form else "fwd"})
    f = lambda z: objective(z, None)
    hess = jax.hessian(f)(sol.value) if closed_form else _gradient_difference_hessian(f, sol.value)
    return sol.value, hess, sol.result, sol.stats["num_steps"], -objective(sol.value, None)


def _gradient_difference_hessian(f, z, step=1e-3):
    """Central differences of the exact forward-mode gradient, for adaptive ODE solves:
    ``jax.hessian`` (forward over reverse) cannot run through diffrax's ForwardMode adjoint."""
    shift = step * jnp.eye(z.size)
    # lax.map, not vmap: batching diffrax's while loops costs more to trace and compile than the
    # 2P sequential gradients cost to run (an adaptive batch steps as its slowest member anyway).
    g = jax.lax.map(jax.jacfwd(f), jnp.concatenate([z + shift, z - shift]))
    h = (g[: z.size] - g[z.size:]) / (2 * step)
    return 0.5 * (h + h.T)
