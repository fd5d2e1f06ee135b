"""Radionuclide dosimetry and radiobiology: time-integrated activity, MIRD absorbed dose, BED and
tumour response.

Time-integrated activity (TIA) is integrated *with the model*: ``add_time_integrated_activity``
declares a state whose derivative is the source's activity, so the simulator integrates it exactly
(closed form or matrix exponential for linear models) instead of trapezoids on a coarse grid, and
a per-cycle TIA is the difference of that state between two times.

Absorbed dose follows the MIRD scheme, D(target) = Σ_source Ã(source)·S(target ← source).  The
default is the self-dose of non-penetrating emissions, S = Δ/m, with Δ the mean electron energy
per decay (β, conversion and Auger electrons) and m the organ mass; S-value matrices (e.g. from
OLINDA or IDAC) are accepted in any unit pint can convert to Gy per (activity × time).

BED uses the linear-quadratic model for a mono-exponentially decaying dose rate with
instantaneous uptake (Dale 1985):  BED = D·[1 + D·T_rep / ((α/β)·(T_rep + T_eff))].  Cycles weeks
apart (≫ T_rep) add their BEDs.  Tumour response: surviving fraction exp(-α·BED) with
repopulation after a kick-off time, and the Poisson tumour control probability.

Functions take numbers or arrays (NumPy or JAX, so they vmap and differentiate) in the stated
units; concrete inputs out of range raise ``DosimetryError`` naming the argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .errors import DosimetryError
from .spec.units import convert_factor, parse_unit

__all__ = ["Radionuclide", "LU177", "add_time_integrated_activity", "absorbed_dose", "bed_monoexponential",
           "surviving_fraction", "tumour_control_probability", "KIDNEY_ALPHA_BETA", "KIDNEY_REPAIR_HALF_LIFE"]

MEV_IN_J = 1.602176634e-13          # exact (SI 2019: e = 1.602176634e-19 C)

# Kidney LQ parameters used with the Bodei 2008 BED limits (28 / 40 Gy): α/β 2.6 Gy, repair
# half-time 2.8 h (reference_models.md §1.7, tagged [U] there: the values as commonly quoted).
KIDNEY_ALPHA_BETA = 2.6             # Gy
KIDNEY_REPAIR_HALF_LIFE = 2.8       # h


@dataclass(frozen=True)
class Radionuclide:
    """Physical data of a radionuclide.

    Attributes:
        name: e.g. "Lu-177".
        half_life: physical half-life, h.
        electron_energy: mean energy of non-penetrating emissions per decay (β, conversion and
            Auger electrons), MeV — the self-dose energy absorbed locally.
        source: where the numbers come from.
    """

    name: str
    half_life: float
    electron_energy: float
    source: str = ""

    def __post_init__(self):
        for field in ("half_life", "electron_energy"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise DosimetryError(f"Radionuclide {self.name!r}: {field} must be a positive number, got {value!r}.")

    @property
    def decay_constant(self) -> float:
        """λ = ln 2 / T½, 1/h."""
        return math.log(2.0) / self.half_life


LU177 = Radionuclide(
    "Lu-177", half_life=6.647 * 24.0, electron_energy=0.1479,
    source="T½ 6.647 d: Pluvicto SmPC (reference_models.md §1.1). Electron energy per decay 147.9 keV "
           "(β mean 133.3 + conversion 13.5 + Auger 1.1 keV): EJNMMI Physics 2020;7:34, Table 1 (ICRP 107 data).")


# =========================================================================== time-integrated activity
def add_time_integrated_activity(model, name: str, activity, *, unit: str = "MBq*h"):
    """Declare a state ``TIA_<name>`` in ``unit`` whose derivative is ``activity`` (an expression
    of the model in activity units, e.g. the hot amount of an organ × specific activity).

    Returns the state's symbol.  Being a pure accumulator it keeps a linear model linear, and
    ``solution[f"TIA_{name}"]`` at the end of a cycle minus its value at the start is that cycle's
    TIA, integrated with the model.
    """
    q = parse_unit(unit, what=f"TIA unit of {name!r}")
    if not (q / parse_unit("Bq*s")).to_reduced_units().dimensionless:
        raise DosimetryError(f"add_time_integrated_activity({name!r}): unit {unit!r} is not activity × time "
                             "(e.g. 'MBq*h', 'GBq*d', 'Bq*s').")
    state = model.state(f"TIA_{name}", initial=0.0, unit=unit,
                        description=f"time-integrated activity of {name}")
    model.ode(state, activity, label=f"activity of {name} (integrated into TIA_{name})")
    return state


# =========================================================================== absorbed dose
def absorbed_dose(tia, mass=None, *, nuclide: Radionuclide = LU177, tia_unit: str = "MBq*h",
                  mass_unit: str = "g", s_values=None, s_unit: str = "mGy/(MBq*s)"):
    """Absorbed dose in Gy by the MIRD scheme.

    Self-dose (default): ``tia`` (..., organs) and ``mass`` (organs,) give D = Ã·Δ/m per organ.
    With ``s_values`` (targets, sources) in ``s_unit``: D = S·Ã, ``tia`` (..., sources).
    """
    tia = jnp.asarray(tia, dtype=jnp.float64)
    _check_nonnegative("tia", tia)
    if s_values is not None:
        s = jnp.asarray(s_values, dtype=jnp.float64)
        _check_nonnegative("s_values", s)
        if s.ndim != 2 or s.shape[1] != tia.shape[-1]:
            raise DosimetryError(f"absorbed_dose: s_values must be (targets, sources) with {tia.shape[-1]} sources "
                                 f"(the last axis of tia), got shape {s.shape}.")
        factor = convert_factor(parse_unit(tia_unit, what="tia_unit") * parse_unit(s_unit, what="s_unit"),
                                parse_unit("Gy"), what="absorbed_dose (tia_unit × s_unit)")
        return factor * jnp.einsum("ts,...s->...t", s, tia)
    if mass is None:
        raise DosimetryError("absorbed_dose: give the organ mass (self-dose) or an S-value matrix (s_values=...).")
    mass = jnp.asarray(mass, dtype=jnp.float64)
    _check_positive("mass", mass)
    decays = convert_factor(parse_unit(tia_unit, what="tia_unit"), parse_unit("Bq*s"), what="tia_unit")
    kg = convert_factor(parse_unit(mass_unit, what="mass_unit"), parse_unit("kg"), what="mass_unit")
    return tia * decays * nuclide.electron_energy * MEV_IN_J / (mass * kg)


# =========================================================================== radiobiology
def bed_monoexponential(dose, effective_half_life, *, alpha_beta=KIDNEY_ALPHA_BETA,
                        repair_half_life=KIDNEY_REPAIR_HALF_LIFE):
    """BED (Gy) of a dose D (Gy) delivered at a mono-exponentially decaying rate with effective
    half-life T_eff (h): D·[1 + D·T_rep / ((α/β)·(T_rep + T_eff))].  Defaults: kidney (α/β 2.6 Gy,
    T_rep 2.8 h).  For several cycles, add the per-cycle BEDs."""
    dose = jnp.asarray(dose, dtype=jnp.float64)
    _check_nonnegative("dose", dose)
    for name, value in (("effective_half_life", effective_half_life), ("alpha_beta", alpha_beta),
                        ("repair_half_life", repair_half_life)):
        _check_positive(name, value)
    g = repair_half_life / (repair_half_life + effective_half_life)      # the Lea–Catcheside factor λ/(λ+μ)
    return dose * (1.0 + dose * g / alpha_beta)


def surviving_fraction(bed, *, alpha, treatment_time=0.0, kickoff_time=0.0, doubling_time=None):
    """exp(-α·BED_eff) with BED_eff = BED − ln2·max(T − T_k, 0)/(α·T_pot) when a potential doubling
    time T_pot is given (repopulation after the kick-off time T_k; times in the same unit)."""
    _check_positive("alpha", alpha)
    return jnp.exp(-alpha * _effective_bed(bed, alpha, treatment_time, kickoff_time, doubling_time))


def tumour_control_probability(bed, *, alpha, clonogens, treatment_time=0.0, kickoff_time=0.0,
                               doubling_time=None):
    """Poisson TCP = exp(−N₀·SF) for N₀ clonogens (cell density × tumour volume)."""
    _check_positive("clonogens", clonogens)
    sf = surviving_fraction(bed, alpha=alpha, treatment_time=treatment_time, kickoff_time=kickoff_time,
                            doubling_time=doubling_time)
    return jnp.exp(-clonogens * sf)


def _effective_bed(bed, alpha, treatment_time, kickoff_time, doubling_time):
    bed = jnp.asarray(bed, dtype=jnp.float64)
    _check_nonnegative("bed", bed)
    if doubling_time is None:
        return bed
    _check_positive("doubling_time", doubling_time)
    return bed - math.log(2.0) * jnp.maximum(jnp.asarray(treatment_time) - kickoff_time, 0.0) / (alpha * doubling_time)


# =========================================================================== input checks
def _concrete(value):
    return None if isinstance(value, jax.core.Tracer) else np.asarray(value, dtype=float)


def _check_positive(name, value):
    v = _concrete(value)
    if v is not None and not (np.all(np.isfinite(v)) and np.all(v > 0)):
        raise DosimetryError(f"{name} must be positive and finite, got {value!r}.")


def _check_nonnegative(name, value):
    v = _concrete(value)
    if v is not None and not (np.all(np.isfinite(v)) and np.all(v >= 0)):
        bad = v[~(np.isfinite(v) & (v >= 0))].ravel()[:3]
        raise DosimetryError(f"{name} must be non-negative and finite; got {bad.tolist()}.")
