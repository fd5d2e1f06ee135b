"""The exception hierarchy: every user-facing failure is one of these, with a message that names
the offending symbol, field or row and says what was expected."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PbpkError(Exception):
    """Base class of every pbpk error."""


class ModelError(PbpkError, ValueError):
    """A model specification is malformed (names, equations, initial conditions)."""


class UnitError(ModelError):
    """Units are missing, unknown or inconsistent."""


class DosingError(PbpkError, ValueError):
    """A dose or regimen is malformed or refers to something the model does not have."""


class DataError(PbpkError, ValueError):
    """A dataset (NONMEM-style or otherwise) is malformed."""


class DosimetryError(PbpkError, ValueError):
    """A dosimetry or radiobiology input is out of range (negative mass, half-life, α/β ...)."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ' Did you mean ...?' suffix for an unknown name, or '' when nothing is close.

    Matching ignores case, so 'Cl' suggests 'CL'.
    """
    names = [str(c) for c in candidates]
    by_lower: dict[str, list[str]] = {}
    for c in names:
        by_lower.setdefault(c.lower(), []).append(c)
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=3, cutoff=0.6)
    matches = [c for key in close for c in by_lower[key]][:3]
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in matches) + "?"
