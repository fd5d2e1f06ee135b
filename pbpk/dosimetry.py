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

from .errors import DosimetryError, did_you_mean
from .spec.units import convert_factor, parse_unit

__all__ = ["Radionuclide", "LU177", "add_time_integrated_activity", "add_absorbed_dose", "absorbed_dose",
           "bed_monoexponential", "surviving_fraction", "tumour_control_probability", "administration",
           "OrganLimit", "check_limits", "cycle_table", "KIDNEY_ALPHA_BETA", "KIDNEY_REPAIR_HALF_LIFE"]

MEV_IN_J = 1.602176634e-13          # exact (SI 2019: e = 1.602176634e-19 C)
AVOGADRO = 6.02214076e23            # 1/mol, exact (SI 2019)

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

    @property
    def molar_activity(self) -> float:
        """Activity of one nmol of the pure (carrier-free) nuclide, λ·N_A, in MBq/nmol."""
        return self.decay_constant / 3600.0 * AVOGADRO * 1e-9 / 1e6


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


def add_absorbed_dose(model, name: str, activity, mass, *, nuclide: Radionuclide = LU177, activity_unit: str = "MBq",
                      mass_unit: str = "g", alpha_beta=None, repair_half_life=None):
    """Declare the self-dose absorbed dose ``D_<name>`` (Gy) of a source organ, integrated with the
    model: dD/dt = R(t) = A(t)·Δ/m.  ``activity`` is an expression in ``activity_unit``; ``mass``
    a number (in ``mass_unit``) or an expression of the model with a mass unit.

    With ``alpha_beta`` (Gy) and ``repair_half_life`` (h), the linear-quadratic BED of the actual
    dose-rate history is integrated too, for any time course (not only mono-exponential):

        BED = D + (2/(α/β))·∫R(t)·Y(t) dt,   Y(t) = ∫₀ᵗ R(s)·e^{−μ(t−s)} ds,   μ = ln2/T_rep,

    as two more states, ``Y_<name>`` (Gy, dY/dt = R − μY) and ``Q_<name>`` (Gy², dQ/dt = R·Y), and
    an output ``BED_<name>`` (Gy).  Cycles weeks apart add their BEDs, as in the Dale formula.
    Returns the symbol of ``D_<name>``.
    """
    what = f"add_absorbed_dose({name!r})"
    if (alpha_beta is None) != (repair_half_life is None):
        raise DosimetryError(f"{what}: give both alpha_beta and repair_half_life for the BED, or neither.")
    if isinstance(mass, (int, float)):
        _check_positive("mass", mass)
        mass = model.quantity(float(mass), mass_unit)
    # Δ per decay, as J per (activity_unit × s): the unit system converts to Gy per model time.
    bq = convert_factor(parse_unit(activity_unit), parse_unit("Bq"), what=f"{what} activity_unit")
    per_decay = model.quantity(nuclide.electron_energy * MEV_IN_J * bq, f"J/({activity_unit}*s)")
    rate = activity * per_decay / mass
    dose = model.state(f"D_{name}", initial=0.0, unit="Gy", description=f"absorbed dose to {name} ({nuclide.name})")
    model.ode(dose, rate, label=f"absorbed-dose rate of {name}")
    if alpha_beta is not None:
        _check_positive("alpha_beta", alpha_beta)
        _check_positive("repair_half_life", repair_half_life)
        mu = model.quantity(math.log(2.0) / float(repair_half_life), "1/h")
        y = model.state(f"Y_{name}", initial=0.0, unit="Gy", description=f"repair-weighted dose of {name} (LQ)")
        q = model.state(f"Q_{name}", initial=0.0, unit="Gy**2", description=f"LQ dose-rate product of {name}")
        model.ode(y, rate, label=f"absorbed-dose rate of {name} (repair kernel)")
        model.ode(y, -mu * y, label=f"repair of {name}")
        model.ode(q, rate * y, label=f"LQ product of {name}")
        model.observe(f"BED_{name}", dose + 2 * q / model.quantity(float(alpha_beta), "Gy"), "Gy")
    return dose


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


# =========================================================================== administration
def administration(activity, *, specific_activity, nuclide: Radionuclide = LU177, hot: str = "vein_hot",
                   cold: str = "vein_cold", time=0.0, activity_unit: str = "GBq"):
    """The two boluses (in nmol) of one radioligand administration: ``activity`` at
    ``specific_activity`` (MBq/nmol of total ligand) is ``activity/molar_activity`` nmol of hot
    ligand into ``hot`` and the rest of the ligand, ``activity/specific_activity − hot``, into
    ``cold``.  The carrier-free molar activity λ·N_A bounds the specific activity."""
    from .dosing import Bolus

    mbq = float(activity) * convert_factor(parse_unit(activity_unit, what="activity_unit"), parse_unit("MBq"),
                                           what="activity_unit")
    _check_nonnegative("activity", mbq)
    _check_positive("specific_activity", specific_activity)
    if specific_activity > nuclide.molar_activity * (1 + 1e-12):
        raise DosimetryError(f"administration: specific_activity {specific_activity} MBq/nmol exceeds the carrier-free "
                             f"molar activity of {nuclide.name} ({nuclide.molar_activity:.1f} MBq/nmol).")
    hot_nmol = mbq / nuclide.molar_activity
    cold_nmol = max(mbq / float(specific_activity) - hot_nmol, 0.0)
    return [Bolus(hot_nmol, hot, time, unit="nmol"), Bolus(cold_nmol, cold, time, unit="nmol")]


@dataclass(frozen=True)
class OrganLimit:
    """A tolerance limit as data: ``quantity`` ("absorbed_dose" or "bed", cumulative over the
    treatment) of ``organ`` must stay ≤ ``limit`` (Gy); ``condition`` says to whom it applies."""

    organ: str
    quantity: str
    limit: float
    source: str
    condition: str = ""

    def __post_init__(self):
        if self.quantity not in ("absorbed_dose", "bed"):
            raise DosimetryError(f"OrganLimit({self.organ!r}): quantity {self.quantity!r} must be 'absorbed_dose' or 'bed'.")
        _check_positive("limit", self.limit)

    @property
    def column(self) -> str:
        return ("D_" if self.quantity == "absorbed_dose" else "BED_") + self.organ


def cycle_table(solution, organs, starts, activities=None, *, end=None):
    """Per-cycle and cumulative dosimetry as a pandas DataFrame.

    ``solution`` must contain ``D_<organ>`` (and ``BED_<organ>`` where declared) evaluated at the
    cycle start times ``starts`` and at ``end`` (the last time of the solution by default); a
    cycle's dose is the difference of the accumulators between consecutive starts.  With
    ``activities`` (GBq per cycle) the table gives Gy/GBq too.
    """
    import pandas as pd

    times = np.asarray(solution.times)
    bounds = list(np.asarray(starts, dtype=float)) + [float(times[-1] if end is None else end)]
    index = []
    for b in bounds:
        hit = np.flatnonzero(np.isclose(times, b, rtol=0, atol=1e-9 * max(1.0, abs(b))))
        if hit.size == 0:
            raise DosimetryError(f"cycle_table: the solution has no output at t = {b:g}; include the cycle starts "
                                 "and the end time in the simulation times.")
        index.append(int(hit[0]))
    rows = []
    for organ in organs:
        cols = {"dose": f"D_{organ}", "bed": f"BED_{organ}"}
        have = {k: c for k, c in cols.items() if c in solution.state_names + solution.observation_names}
        if "dose" not in have:
            raise DosimetryError(f"cycle_table: no absorbed dose D_{organ} in the solution."
                                 + did_you_mean(f"D_{organ}", solution.state_names))
        series = {k: np.asarray(solution[c])[..., index] for k, c in have.items()}
        for c in range(len(bounds) - 1):
            row = {"cycle": c + 1, "organ": organ, "start": bounds[c]}
            for k, v in series.items():
                row[f"{k}_Gy"] = float(v[c + 1] - v[c])
                row[f"cumulative_{k}_Gy"] = float(v[c + 1] - v[0])
            if activities is not None:
                row["activity_GBq"] = float(np.asarray(activities)[c])
                row["Gy_per_GBq"] = row["dose_Gy"] / row["activity_GBq"] if row["activity_GBq"] > 0 else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


def check_limits(table, limits):
    """The end-of-treatment cumulative value of each limit's quantity against the limit: a
    DataFrame with organ, quantity, value, limit, fraction of the limit and ``passed``."""
    import pandas as pd

    rows = []
    for lim in limits:
        key = "cumulative_dose_Gy" if lim.quantity == "absorbed_dose" else "cumulative_bed_Gy"
        sel = table[table["organ"] == lim.organ]
        if sel.empty or key not in sel:
            raise DosimetryError(f"check_limits: the table has no {key} for organ {lim.organ!r}."
                                 + did_you_mean(lim.organ, table["organ"].unique()))
        value = float(sel[key].iloc[-1])
        rows.append({"organ": lim.organ, "quantity": lim.quantity, "value_Gy": value, "limit_Gy": lim.limit,
                     "fraction": value / lim.limit, "passed": value <= lim.limit, "condition": lim.condition,
                     "source": lim.source})
    return pd.DataFrame(rows)


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
