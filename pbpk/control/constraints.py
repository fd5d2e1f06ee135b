"""Exposure constraints as data: a limit on a statistic of one observation over a course.

    ExposureLimit("C_skin", 0.25, statistic="max")       peak skin concentration ≤ 0.25 mg/L
    ExposureLimit("CUMDOSE", 550, statistic="last")      lifetime anthracycline dose ≤ 550 mg/m²
    ExposureLimit("C_free", 0.05, statistic="mean")      time-averaged free drug ≤ 0.05 mg/L

``evaluate`` works on any ``Solution`` (batched or not) and is jit-able, so the same object
serves a schedule comparison, a shield and the cost of a dosing agent.  ``ExposureLimit.relative_to``
defines a limit by the exposure of a reference regimen that is known to be tolerated — how a
constraint is set when the absolute threshold is not published but the tolerated schedule is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax.numpy as jnp

from ..errors import ModelError, did_you_mean

__all__ = ["ExposureLimit"]

_STATISTICS = ("max", "mean", "auc", "last")


@dataclass(frozen=True)
class ExposureLimit:
    """``statistic`` of ``observation`` over the simulated times must not exceed ``limit``
    (in the observation's unit; "auc" in unit × model time, "mean" time-averaged)."""

    observation: str
    limit: float
    statistic: str = "max"
    description: str = ""

    def __post_init__(self):
        if self.statistic not in _STATISTICS:
            raise ModelError(f"ExposureLimit({self.observation!r}): statistic={self.statistic!r}; expected one of "
                             f"{list(_STATISTICS)}." + did_you_mean(self.statistic, _STATISTICS))
        if not (isinstance(self.limit, (int, float)) and self.limit > 0):
            raise ModelError(f"ExposureLimit({self.observation!r}): limit={self.limit!r} must be a positive number.")

    def value(self, solution):
        """The statistic per patient (shape of the solution's batch)."""
        names = solution.observation_names
        if self.observation not in names:
            raise ModelError(f"ExposureLimit: the model has no observation {self.observation!r}."
                             + did_you_mean(self.observation, names) + f" Observations: {list(names)}.")
        y, t = solution[self.observation], solution.times
        if self.statistic == "max":
            return jnp.max(y, axis=-1)
        if self.statistic == "last":
            return y[..., -1]
        auc = jnp.trapezoid(y, t, axis=-1)
        return auc if self.statistic == "auc" else auc / (t[..., -1] - t[..., 0])

    def evaluate(self, solution) -> dict:
        """value, limit, ratio (value / limit) and ok (ratio ≤ 1) per patient."""
        v = self.value(solution)
        return {"value": v, "limit": self.limit, "ratio": v / self.limit, "ok": v <= self.limit}

    def relative_to(self, model, regimen, times, fraction: float = 1.0, **simulate_options) -> "ExposureLimit":
        """This constraint with its limit set to ``fraction`` × the statistic under ``regimen``
        (a typical patient of ``model``) over ``times``."""
        sol = model.simulate(regimen, times, **simulate_options)
        return replace(self, limit=float(fraction * self.value(sol)))
