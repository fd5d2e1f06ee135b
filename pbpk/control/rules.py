"""Clinical dose-modification rules as data, compiled into jit-able protocol simulation.

A ``Protocol`` is a list of dose levels (per m² or per patient), a cycle length and rules; it
runs a patient cycle by cycle with ``CycleSimulator`` inside one ``lax.scan`` (``vmap`` over
patients), the decisions made with ``jnp.where`` on the patient's simulated observations:

    HoldBelow("ANC", 1.5)                   no dose while ANC < 1.5 × 10⁹/L on the day of dosing;
                                            the dose is re-assessed after a delay (default 7 days)
    ReduceAfter("ANC", 0.5, longer_than=7)  one dose level down after ANC < 0.5 for > 7 days in a
                                            cycle; below the lowest level, treatment stops
    CumulativeCap(450)                      never exceed a lifetime cumulative dose (per m²)

The docetaxel label rules (hold if ANC < 1500/mm³; 100 → 75 → 60 mg/m² after ANC < 500/mm³ for
more than a week) are ``DOCETAXEL_LABEL`` in ``models/docetaxel.py``.  Febrile neutropenia, the
label's other trigger, is not modelled.  Times in these rules are in days.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..compile import CompiledModel
from ..errors import ModelError, did_you_mean
from ..spec.units import convert_factor, parse_unit
from .cycles import CycleSimulator


@dataclass(frozen=True)
class HoldBelow:
    """Hold the dose while ``observation`` < ``threshold`` on the day of dosing; re-assess after
    ``delay_days``."""

    observation: str
    threshold: float
    delay_days: float = 7.0


@dataclass(frozen=True)
class ReduceAfter:
    """One level down after ``observation`` < ``threshold`` for more than ``longer_than`` days
    within a cycle; stop treatment if already at the lowest level."""

    observation: str
    threshold: float
    longer_than: float = 7.0


@dataclass(frozen=True)
class CumulativeCap:
    """Limit each dose so that the cumulative dose (in the protocol's dose unit, e.g. mg/m²,
    counted exactly from the doses given, plus ``prior`` exposure before this protocol) never
    exceeds ``cap``."""

    cap: float
    prior: float = 0.0


class ProtocolResult(eqx.Module):
    """Per step (a dosing visit; a held dose makes a short step): start time (days), dose
    (amount unit), dose level index, held / stopped flags, days below each ReduceAfter
    threshold, the minimum of every observation over the step, and the observation grid."""

    start_day: jax.Array
    dose: jax.Array
    level: jax.Array
    held: jax.Array
    stopped: jax.Array
    days_below: jax.Array
    minimum: jax.Array
    grid_day: jax.Array
    observations: jax.Array
    inside: jax.Array
    ok: jax.Array
    observation_names: tuple[str, ...] = eqx.field(static=True)

    def __getitem__(self, name: str) -> jax.Array:
        """Observation ``name`` on the grid, (..., steps, grid)."""
        return self.observations[..., self.observation_names.index(name)]

    def nadir(self, name: str) -> jax.Array:
        return self.minimum[..., self.observation_names.index(name)]


@dataclass(frozen=True)
class Protocol:
    """Dose levels, schedule and rules.

    Args:
        levels: dose per level, highest first (e.g. (100, 75, 60)); the patient starts at level 0.
        dose_unit: unit of ``levels``: "mg/m^2" (scaled by BSA) or an amount unit ("mg", "GBq").
        cycle_days: days between doses when nothing is held.
        cycles: number of doses to give.
        into, infusion_hours: dosed compartment and infusion duration (0 for a bolus).
        rules: ``HoldBelow`` / ``ReduceAfter`` / ``CumulativeCap`` instances.
        grid_hours: spacing of the within-cycle grid on which nadirs and durations are read.
    """

    levels: tuple[float, ...]
    dose_unit: str = "mg/m^2"
    cycle_days: float = 21.0
    cycles: int = 6
    into: str = "central"
    infusion_hours: float = 1.0
    rules: tuple = ()
    grid_hours: float = 6.0

    def __post_init__(self):
        if not self.levels or any(not np.isfinite(v) or v < 0 for v in self.levels):
            raise ModelError(f"Protocol: levels={self.levels!r} must be non-negative dose levels, highest first.")
        if list(self.levels) != sorted(self.levels, reverse=True):
            raise ModelError(f"Protocol: levels={self.levels!r} must be ordered highest first.")
        if self.cycles < 1 or self.cycle_days <= 0:
            raise ModelError(f"Protocol: cycles={self.cycles} and cycle_days={self.cycle_days} must be positive.")
        for r in self.rules:
            if not isinstance(r, (HoldBelow, ReduceAfter, CumulativeCap)):
                raise ModelError(f"Protocol: rule {r!r} is not a HoldBelow, ReduceAfter or CumulativeCap.")

    @property
    def per_m2(self) -> bool:
        return "m^2" in self.dose_unit.replace("²", "^2")

    def simulator(self, model: CompiledModel, rtol: float = 1e-7, atol: float = 1e-9) -> CycleSimulator:
        day = _days_to_model_time(model)
        longest = max([self.cycle_days] + [r.delay_days for r in self.rules if isinstance(r, HoldBelow)])
        grid = np.arange(0.0, longest * 24.0 + 1e-9, self.grid_hours) / 24.0 * day
        return CycleSimulator(model, self.into, grid, infusion=self.infusion_hours / 24.0 * day, rtol=rtol, atol=atol)

    def run(self, model: CompiledModel, theta=None, cov=None, bsa=1.8, *, max_holds: int | None = None,
            rtol: float = 1e-7, atol: float = 1e-9) -> ProtocolResult:
        """Simulate one patient (``vmap`` this for a cohort; it is jit-compiled once)."""
        theta = model.theta if theta is None else jnp.asarray(theta, dtype=jnp.float64)
        cov = model.covariate_reference if cov is None else jnp.asarray(cov, dtype=jnp.float64)
        return _run(self, self.simulator(model, rtol, atol), self._plan(model), theta, cov, jnp.asarray(bsa, float),
                    self.cycles + (self.cycles if max_holds is None else max_holds))

    def run_cohort(self, model: CompiledModel, theta, cov=None, bsa=1.8, *, max_holds: int | None = None,
                   rtol: float = 1e-7, atol: float = 1e-9) -> ProtocolResult:
        """Simulate a cohort: ``theta`` (N, P) (e.g. ``model.population(...).theta``), ``cov`` (N, C)
        or None, ``bsa`` scalar or (N,).  One compilation per protocol and cohort size."""
        theta = jnp.asarray(theta, dtype=jnp.float64)
        if theta.ndim != 2:
            raise ModelError(f"Protocol.run_cohort: theta must be (patients, parameters), got shape {theta.shape}.")
        n = theta.shape[0]
        cov = jnp.broadcast_to(model.covariate_reference if cov is None else jnp.asarray(cov, dtype=jnp.float64),
                               (n, len(model.covariate_names)))
        bsa = jnp.broadcast_to(jnp.asarray(bsa, dtype=jnp.float64), (n,))
        return _run_cohort(self, self.simulator(model, rtol, atol), self._plan(model), theta, cov, bsa,
                           self.cycles + (self.cycles if max_holds is None else max_holds))

    def _plan(self, model: CompiledModel):
        """Rule data resolved against the model: observation indices, units to model units."""
        names = model.observation_names

        def index(rule):
            if rule.observation not in names:
                raise ModelError(f"Protocol rule {type(rule).__name__}: model {model.name!r} has no observation "
                                 f"{rule.observation!r}." + did_you_mean(rule.observation, names))
            return names.index(rule.observation)

        amount = self.dose_unit.replace("/m^2", "").replace("/m²", "") if self.per_m2 else self.dose_unit
        to_model = convert_factor(parse_unit(amount, what="Protocol dose unit"), parse_unit(model.amount_unit),
                                  what=f"Protocol doses in {amount!r} for a model with amounts in {model.amount_unit!r}")
        day = _days_to_model_time(model)
        hold = [(index(r), r.threshold, r.delay_days * day) for r in self.rules if isinstance(r, HoldBelow)]
        reduce = [(index(r), r.threshold, r.longer_than) for r in self.rules if isinstance(r, ReduceAfter)]
        cap = [r.cap - r.prior for r in self.rules if isinstance(r, CumulativeCap)]
        if len(hold) > 1:
            raise ModelError("Protocol: give at most one HoldBelow rule.")
        return dict(levels=jnp.asarray(self.levels + (0.0,), dtype=jnp.float64), to_model=to_model,
                    cycle=self.cycle_days * day, day=day, hold=tuple(hold), reduce=tuple(reduce), cap=tuple(cap))


def _days_to_model_time(model: CompiledModel) -> float:
    return convert_factor(parse_unit("day"), parse_unit(model.time_unit), what="Protocol time")


@eqx.filter_jit
def _run(protocol: Protocol, sim: CycleSimulator, plan, theta, cov, bsa, steps: int):
    levels, n_levels = plan["levels"], len(protocol.levels)
    scale = bsa if protocol.per_m2 else 1.0
    dt_days = jnp.diff(sim.grid, append=sim.grid[-1]) / plan["day"]

    def step(carry, _):
        t, y, level, given, stopped, obs_now, total = carry
        active = (given < protocol.cycles) & ~stopped
        held = jnp.array(False)
        delay = plan["cycle"]
        for i, thr, d in plan["hold"]:
            held = active & (obs_now[i] < thr)
            delay = jnp.where(held, d, plan["cycle"])
        dose = jnp.where(active & ~held, levels[jnp.minimum(level, n_levels)], 0.0)
        for cap in plan["cap"]:
            dose = jnp.minimum(dose, jnp.maximum(cap - total, 0.0))
        amount = dose * scale * plan["to_model"]
        y_end, _, obs, inside, ok = sim.run(t, y, amount, delay, theta, cov)
        below = [jnp.sum(jnp.where(inside & (obs[:, i] < thr), dt_days, 0.0)) for i, thr, _ in plan["reduce"]]
        toxic = jnp.array(False)
        for b, (_, _, longer) in zip(below, plan["reduce"]):
            toxic = toxic | (b > longer)
        dosed = dose > 0
        new_level = jnp.where(dosed & toxic, level + 1, level)
        stop = stopped | (new_level >= n_levels)
        minimum = jnp.min(jnp.where(inside[:, None], obs, jnp.inf), axis=0)
        obs_end = sim.model.observe(t + delay, y_end, theta, cov)
        record = (t / plan["day"], amount, level, held, stopped, jnp.stack(below) if below else jnp.zeros(0),
                  minimum, (t + sim.grid) / plan["day"], obs, inside, ok)
        return (t + delay, y_end, new_level, given + dosed.astype(int), stop, obs_end, total + dose), record

    y0 = sim.initial_state(theta, cov)
    obs0 = sim.model.observe(jnp.zeros(()), y0, theta, cov)
    init = (jnp.zeros(()), y0, jnp.zeros((), int), jnp.zeros((), int), jnp.array(False), obs0, jnp.zeros(()))
    _, rec = jax.lax.scan(step, init, None, length=steps)
    return ProtocolResult(*rec, observation_names=sim.model.observation_names)


@eqx.filter_jit
def _run_cohort(protocol, sim, plan, theta, cov, bsa, steps):
    return jax.vmap(lambda th, cv, b: _run(protocol, sim, plan, th, cv, b, steps))(theta, cov, bsa)
