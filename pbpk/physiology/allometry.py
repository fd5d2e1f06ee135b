"""Interspecies scaling: allometry by body weight, and the FDA body-surface dose conversion.

A parameter of an animal model scales to another species as ``value · (W_to/W_from)^b``.
The exponent ``b`` follows from the parameter's unit unless given:

    | unit dimension             | b     | e.g.                              |
    |---|---|---|
    | volume, mass               | 1     | organ or distribution volume      |
    | volume/time, mass/time     | 0.75  | clearance, blood flow, PS product |
    | time                       | 0.25  | half-life, mean residence time    |
    | 1/time                     | −0.25 | rate constant (release, uptake)   |
    | anything else              | 0     | partition coefficient, fraction   |

Sources: the 3/4-power law for clearance and flows (Hu TM, Hayton WL, AAPS PharmSci
2001;3:E29: b = 0.74 over 115 xenobiotics) with volumes proportional to weight.  Doses convert
between species by body surface area: ``human_equivalent_dose`` uses the Km factors (mg/kg →
mg/m²) of the FDA guidance "Estimating the Maximum Safe Starting Dose in Initial Clinical
Trials for Therapeutics in Adult Healthy Volunteers" (CDER, July 2005), Table 1.  For
liposomes and nanoparticles, simple allometry of clearance is known to err by more than 30 %
(Caron WP et al., J Pharmacokinet Pharmacodyn 2011;38:653): use it as a starting point to be
calibrated, not as a prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..errors import ModelError, did_you_mean
from ..spec.units import parse_unit

__all__ = ["allometric_exponent", "allometric_scale", "scale_parameters", "human_equivalent_dose", "KM_FACTORS"]

# FDA 2005 Table 1: species -> (reference body weight kg, Km = body weight / body surface area, kg/m²)
KM_FACTORS: Mapping[str, tuple[float, float]] = {
    "mouse": (0.02, 3.0), "hamster": (0.08, 5.0), "rat": (0.15, 6.0), "ferret": (0.30, 7.0),
    "guinea pig": (0.40, 8.0), "rabbit": (1.8, 12.0), "dog": (10.0, 20.0), "monkey": (3.0, 12.0),
    "marmoset": (0.35, 6.0), "squirrel monkey": (0.60, 7.0), "baboon": (12.0, 20.0),
    "micro-pig": (20.0, 27.0), "mini-pig": (40.0, 35.0), "human": (60.0, 37.0),
}

_EXPONENT_BY_DIMENSION = (
    ({"[length]": 3}, 1.0), ({"[mass]": 1}, 1.0),
    ({"[length]": 3, "[time]": -1}, 0.75), ({"[mass]": 1, "[time]": -1}, 0.75),
    ({"[time]": 1}, 0.25), ({"[time]": -1}, -0.25),
)


def allometric_exponent(unit: str) -> float:
    """The default body-weight exponent of a quantity with ``unit`` (table in the module doc)."""
    dims = dict(parse_unit(unit, what="allometric_exponent unit").dimensionality)
    for pattern, exponent in _EXPONENT_BY_DIMENSION:
        if dims == pattern:
            return exponent
    return 0.0


def allometric_scale(value: float, *, from_weight: float, to_weight: float, unit: str | None = None,
                     exponent: float | None = None) -> float:
    """``value`` of a species of ``from_weight`` kg scaled to one of ``to_weight`` kg, with the
    given ``exponent`` or the default for ``unit``."""
    for name, w in (("from_weight", from_weight), ("to_weight", to_weight)):
        if not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0):
            raise ModelError(f"allometric_scale: {name}={w!r} must be a positive body weight in kg.")
    if exponent is None:
        if unit is None:
            raise ModelError("allometric_scale: give the value's unit (to infer the exponent) or exponent=.")
        exponent = allometric_exponent(unit)
    return float(value) * (to_weight / from_weight) ** exponent


def scale_parameters(spec, *, from_weight: float, to_weight: float, only=None,
                     exponents: Mapping[str, float] | None = None) -> dict[str, float]:
    """Values of a model specification's parameters scaled from one body weight to another.

    Args:
        spec: a ``pbpk.Model``.
        only: names of the parameters to scale (default: all); the others keep their values.
        exponents: per-parameter exponents overriding the unit's default.

    Returns name -> value for every parameter (pass to ``compiled.with_params`` or use as priors).
    """
    exponents = dict(exponents or {})
    names = list(spec.parameters)
    for n in [*(only or ()), *exponents]:
        if n not in spec.parameters:
            raise ModelError(f"scale_parameters: model {spec.name!r} has no parameter {n!r}." + did_you_mean(n, names))
    chosen = set(names if only is None else only)
    out = {}
    for n, p in spec.parameters.items():
        out[n] = (allometric_scale(p.value, from_weight=from_weight, to_weight=to_weight, unit=p.unit,
                                   exponent=exponents.get(n)) if n in chosen else float(p.value))
    return out


def human_equivalent_dose(dose_mg_kg: float, species: str) -> float:
    """Human equivalent dose (mg/kg) of an animal dose by body surface area (FDA 2005 Km factors):
    ``dose · Km_animal / Km_human``; multiply by 37 kg/m² for mg/m²."""
    key = species.lower()
    if key not in KM_FACTORS:
        raise ModelError(f"human_equivalent_dose: unknown species {species!r}." + did_you_mean(key, KM_FACTORS)
                         + f" Known: {sorted(KM_FACTORS)}.")
    if not (dose_mg_kg >= 0 and math.isfinite(dose_mg_kg)):
        raise ModelError(f"human_equivalent_dose: dose {dose_mg_kg!r} mg/kg must be a non-negative number.")
    return float(dose_mg_kg) * KM_FACTORS[key][1] / KM_FACTORS["human"][1]
