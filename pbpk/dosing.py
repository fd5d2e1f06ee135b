"""Dosing vocabulary: bolus, infusion, reset and regimens, independent of any model.

Amounts are in the model's amount unit unless ``unit=`` names another unit of the same
dimension (converted when the regimen meets a model).  Times are in the model's time unit.
Doses are immutable; a ``Regimen`` is an ordered tuple of them.  Dose amounts may be JAX
values so that gradients with respect to a dose flow through ``simulate``.

NONMEM semantics carried here: ``ss=True`` with ``ii`` is a steady-state dose (SS=1: the
system is reset and brought to the steady state of repeated dosing every ``ii`` before this
dose); an infusion given with ``rate`` keeps its rate when bioavailability scales the amount
(its duration changes), one given with ``duration`` keeps its duration; ``Reset`` is EVID=3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import jax
import numpy as np

from .errors import DosingError

__all__ = ["Bolus", "Infusion", "Reset", "Regimen", "bsa", "Dose"]


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_nonneg(value, field: str, what: str) -> None:
    if value is None or not _is_concrete(value):
        return
    if isinstance(value, (str, bytes, bool)):
        raise DosingError(f"{what}: {field}={value!r} is not a number.")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise DosingError(f"{what}: {field}={value!r} is not a number.") from None
    if not np.all(np.isfinite(arr)):
        raise DosingError(f"{what}: {field}={value!r} is not a finite number.")
    if np.any(arr < 0):
        raise DosingError(f"{what}: {field}={value!r} is negative; expected {field} >= 0.")


def _check_positive(value, field: str, what: str) -> None:
    _check_nonneg(value, field, what)
    if value is not None and _is_concrete(value) and np.any(np.asarray(value, dtype=float) == 0):
        raise DosingError(f"{what}: {field}={value!r} must be > 0.")


def _check_ii(ii, what: str) -> None:
    if ii is None:
        raise DosingError(f"{what}: ss=True needs the dosing interval ii= (NONMEM SS=1 requires II > 0).")
    _check_positive(ii, "ii", what + " (steady state needs the dosing interval ii)")


class _DoseBase:
    __slots__ = ()

    def _set(self, **fields):
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, key, value):
        raise AttributeError(f"{type(self).__name__} is immutable; use shifted() or build a new dose.")

    def __delattr__(self, key):
        raise AttributeError(f"{type(self).__name__} is immutable.")

    def shifted(self, dt):
        """The same dose ``dt`` time units later."""
        return self._replace(time=self.time + dt)

    def _replace(self, **changes):
        fields = {k: getattr(self, k) for k in self.__slots__}
        fields.update(changes)
        return type(self)(**fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__ if getattr(self, k) is not None)
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and all(
            np.array_equal(np.asarray(getattr(self, k), dtype=object), np.asarray(getattr(other, k), dtype=object))
            for k in self.__slots__
        )

    __hash__ = None


class Bolus(_DoseBase):
    """An instantaneous dose of ``amount`` into compartment ``into`` at ``time``."""

    __slots__ = ("amount", "into", "time", "unit", "ss", "ii")

    def __init__(self, amount, into: str, time=0.0, *, unit: str | None = None, ss: bool = False, ii=None):
        what = f"Bolus into {into!r} at time {time!r}"
        if not isinstance(into, str) or not into:
            raise DosingError(f"Bolus: into={into!r} must name a compartment (a non-empty string).")
        _check_nonneg(amount, "amount", what)
        _check_nonneg(time, "time", what)
        if ss:
            _check_ii(ii, what)
        self._set(amount=amount, into=into, time=time, unit=unit, ss=bool(ss), ii=ii)


class Infusion(_DoseBase):
    """A zero-order input of ``amount`` into ``into`` starting at ``time``, given either over
    ``duration`` or at ``rate`` (amount per time unit), not both.

    ``amount=None`` with ``ss=True`` and a ``rate`` is a continuous infusion at steady state.
    """

    __slots__ = ("amount", "into", "time", "duration", "rate", "unit", "ss", "ii")

    def __init__(self, amount, into: str, time=0.0, *, duration=None, rate=None, unit: str | None = None,
                 ss: bool = False, ii=None):
        what = f"Infusion into {into!r} at time {time!r}"
        if not isinstance(into, str) or not into:
            raise DosingError(f"Infusion: into={into!r} must name a compartment (a non-empty string).")
        if (duration is None) == (rate is None):
            raise DosingError(f"{what}: give exactly one of duration= or rate= (got duration={duration!r}, rate={rate!r}).")
        continuous = amount is None
        if continuous and not (ss and rate is not None):
            raise DosingError(f"{what}: amount is required (only a steady-state rate infusion may omit it).")
        _check_nonneg(amount, "amount", what)
        if duration != "model":
            _check_positive(duration, "duration", what)
        if rate != "model":
            _check_positive(rate, "rate", what)
        _check_nonneg(time, "time", what)
        if ss and not continuous:
            _check_ii(ii, what)
            if isinstance(duration, (int, float)) and ii is not None and _is_concrete(duration) and _is_concrete(ii) and duration > ii:
                raise DosingError(f"{what}: steady-state infusion duration {duration} exceeds the interval ii={ii}.")
        self._set(amount=amount, into=into, time=time, duration=duration, rate=rate, unit=unit, ss=bool(ss), ii=ii)


class Reset(_DoseBase):
    """Reset every state to its initial condition and stop running infusions (NONMEM EVID=3)."""

    __slots__ = ("time",)

    def __init__(self, time=0.0):
        _check_nonneg(time, "time", "Reset")
        self._set(time=time)


Dose = Union[Bolus, Infusion, Reset]


class Regimen:
    """An ordered, immutable sequence of doses.

    Doses at equal times keep the order given (NONMEM record order).  Build with the
    constructor, ``Regimen.repeat``, ``+`` (concatenation) or ``Regimen.of``.
    """

    __slots__ = ("doses",)

    def __init__(self, doses: Sequence[Dose] = ()):
        doses = tuple(doses)
        for i, d in enumerate(doses):
            if not isinstance(d, (Bolus, Infusion, Reset)):
                raise DosingError(f"Regimen: item {i} is {type(d).__name__}, expected Bolus, Infusion or Reset.")
        if all(_is_concrete(d.time) for d in doses):
            order = sorted(range(len(doses)), key=lambda i: (float(np.asarray(doses[i].time)), i))
            doses = tuple(doses[i] for i in order)
        object.__setattr__(self, "doses", doses)

    def __setattr__(self, key, value):
        raise AttributeError("Regimen is immutable; build a new one (e.g. with + or shifted()).")

    @classmethod
    def of(cls, *doses: Dose) -> "Regimen":
        return cls(doses)

    @classmethod
    def repeat(cls, dose: Dose, every, count: int, start=None) -> "Regimen":
        """``count`` copies of ``dose`` every ``every`` time units, the first at ``start``
        (default: the dose's own time).  The NONMEM equivalent is ADDL=count-1, II=every."""
        if not isinstance(count, (int, np.integer)) or count < 1:
            raise DosingError(f"Regimen.repeat: count={count!r} must be a positive integer.")
        _check_positive(every, "every", "Regimen.repeat")
        first = dose.time if start is None else start
        return cls(dose._replace(time=first + k * every) for k in range(int(count)))

    def __add__(self, other: "Regimen | Dose") -> "Regimen":
        if isinstance(other, (Bolus, Infusion, Reset)):
            other = Regimen((other,))
        if not isinstance(other, Regimen):
            return NotImplemented
        return Regimen(self.doses + other.doses)

    def shifted(self, dt) -> "Regimen":
        return Regimen(d.shifted(dt) for d in self.doses)

    def scaled(self, factor) -> "Regimen":
        """Every amount (and infusion rate) multiplied by ``factor``: dose levels as one number."""
        out = []
        for d in self.doses:
            if isinstance(d, Reset):
                out.append(d)
            elif isinstance(d, Infusion) and d.rate is not None and d.rate != "model":
                out.append(d._replace(amount=None if d.amount is None else d.amount * factor, rate=d.rate * factor))
            else:
                out.append(d._replace(amount=d.amount * factor))
        return Regimen(out)

    def __len__(self) -> int:
        return len(self.doses)

    def __iter__(self):
        return iter(self.doses)

    def __repr__(self) -> str:
        return f"Regimen({list(self.doses)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Regimen) and self.doses == other.doses

    __hash__ = None

    def total(self, into: str | None = None):
        """Total nominal amount (before bioavailability) given, optionally into one compartment."""
        total = 0.0
        for d in self.doses:
            if isinstance(d, Reset) or d.amount is None or (into is not None and d.into != into):
                continue
            total = total + d.amount
        return total

    def to_dataframe(self):
        """The dose records as a NONMEM-style table (TIME, EVID, AMT, CMT, SS, II, RATE).

        RATE follows NONMEM: 0 for a bolus (and a reset), the rate (or AMT/duration) of an
        infusion, -1 when the rate and -2 when the duration is modelled; a steady-state
        continuous infusion has AMT=0, SS=1, II=0.
        """
        import pandas as pd

        rows = []
        for d in self.doses:
            row = {"TIME": d.time, "EVID": 3 if isinstance(d, Reset) else 1}
            if isinstance(d, Reset):
                row.update(AMT=0.0, CMT=None, SS=0, II=0.0, RATE=0.0)
            else:
                row.update(AMT=0.0 if d.amount is None else d.amount, CMT=d.into, SS=int(d.ss),
                           II=d.ii or 0.0, RATE=0.0)
                if isinstance(d, Infusion):
                    if d.rate == "model" or d.duration == "model":
                        row["RATE"] = -1 if d.rate == "model" else -2
                    else:
                        row["RATE"] = d.rate if d.rate is not None else d.amount / d.duration
            rows.append(row)
        return pd.DataFrame(rows)

    def per_kg(self, weight_kg) -> "Regimen":
        """Interpret the amounts as per kg of body weight and return absolute amounts."""
        return self.scaled(weight_kg)

    def per_m2(self, bsa_m2) -> "Regimen":
        """Interpret the amounts as per m² of body-surface area and return absolute amounts."""
        return self.scaled(bsa_m2)


_BSA_FORMULAS = {
    # cm, kg -> m²; each formula's original publication.
    "dubois": lambda h, w: 0.007184 * h**0.725 * w**0.425,      # Du Bois & Du Bois, Arch Intern Med 1916;17:863
    "mosteller": lambda h, w: (h * w / 3600.0) ** 0.5,          # Mosteller, NEJM 1987;317:1098
    "haycock": lambda h, w: 0.024265 * h**0.3964 * w**0.5378,   # J Pediatr 1978;93:62
    "gehan": lambda h, w: 0.0235 * h**0.42246 * w**0.51456,     # Cancer Chemother Rep 1970;54:225
}


def bsa(height_cm, weight_kg, formula: str = "dubois"):
    """Body-surface area in m² from height (cm) and weight (kg)."""
    from .errors import did_you_mean

    key = formula.lower().replace(" ", "").replace("_", "")
    if key not in _BSA_FORMULAS:
        raise DosingError(f"bsa: unknown formula {formula!r}; expected one of {sorted(_BSA_FORMULAS)}."
                          + did_you_mean(key, _BSA_FORMULAS))
    for name, v in (("height_cm", height_cm), ("weight_kg", weight_kg)):
        _check_positive(v, name, "bsa")
        if _is_concrete(v) and name == "height_cm" and np.any(np.asarray(v) < 3):
            raise DosingError(f"bsa: height_cm={v!r} looks like metres; expected centimetres.")
    return _BSA_FORMULAS[key](height_cm, weight_kg)
