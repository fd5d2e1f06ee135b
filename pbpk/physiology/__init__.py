"""Reference physiology (human, mouse), tissue partition coefficients and a whole-body PBPK model.

>>> from pbpk.physiology import human, kp_rodgers_rowland, whole_body
>>> phys = human("female")                           # ICRP 89 reference adult, 60 kg
>>> kp = kp_rodgers_rowland(logp=2.0, pka=9.0, fu=0.3, bp=1.1, kind="base")
>>> model = whole_body(phys, kp, cl_hepatic=30.0, cl_renal=5.0, bp=1.1)   # a pbpk.Model spec

Units: body weight kg, volumes L, blood flows and cardiac output L/h.  Organ masses are taken
as volumes with a density of 1 kg/L for every tissue.  Each organ carries a ``source`` naming
the table its volume and flow come from; values not in the cited sources are flagged
"ASSUMPTION" in that text (see ``_reference.py`` for the tables and how they were transcribed).

Mass balance by construction: the organ "rest" closes body weight (BW = organs + arterial +
venous blood) and cardiac output (the blood flows of all non-lung organs sum to the cardiac
output; the lung receives all of it).  The liver's ``blood_flow`` is its hepatic-arterial flow;
gut, spleen, pancreas and stomach drain into the liver (``drains_to="liver"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..errors import ModelError, did_you_mean
from . import _reference as ref
from ._reference import PORTAL, TISSUES

__all__ = ["Organ", "Physiology", "human", "mouse", "TISSUES", "KpTable", "kp_rodgers_rowland", "kp_poulin_theil",
           "whole_body", "allometric_exponent", "allometric_scale", "scale_parameters", "human_equivalent_dose",
           "KM_FACTORS"]

_UNITS = MappingProxyType({"body_weight": "kg", "volume": "L", "blood_flow": "L/h",
                           "cardiac_output": "L/h", "hematocrit": "1"})
_DRAINS = ("venous", "arterial", "liver")


@dataclass(frozen=True)
class Organ:
    """One tissue: ``volume`` (L), ``blood_flow`` (L/h, arterial inflow), optional
    ``vascular_fraction`` (regional blood volume / tissue volume, informational: the whole-body
    model keeps all blood in its arterial and venous pools), the ``source`` of the numbers and
    where its venous blood goes (``drains_to``: "venous", "liver" (portal) or "arterial" (lung))."""

    volume: float
    blood_flow: float
    vascular_fraction: float | None = None
    source: str = ""
    drains_to: str = "venous"


@dataclass(frozen=True)
class Physiology:
    """An immutable reference individual.

    Attributes: ``species``, ``sex``, ``body_weight`` (kg), ``cardiac_output`` (L/h),
    ``hematocrit``, ``organs`` (read-only mapping name -> :class:`Organ`), ``arterial_volume``
    and ``venous_volume`` (L), ``sources`` (name of each scalar -> its source) and ``units``.
    Construction checks that volumes are positive and that the non-lung blood flows sum to the
    cardiac output (the lung must carry exactly the cardiac output).
    """

    species: str
    sex: str
    body_weight: float
    cardiac_output: float
    hematocrit: float
    organs: Mapping[str, Organ]
    arterial_volume: float
    venous_volume: float
    sources: Mapping[str, str] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=lambda: dict(_UNITS))

    def __post_init__(self):
        what = f"Physiology({self.species}, {self.sex})"
        for name in ("body_weight", "cardiac_output", "arterial_volume", "venous_volume"):
            _positive(getattr(self, name), f"{what}: {name}")
        if not 0.0 < self.hematocrit < 1.0:
            raise ModelError(f"{what}: hematocrit={self.hematocrit!r} must lie in (0, 1).")
        organs = dict(self.organs)
        if "lung" not in organs:
            raise ModelError(f"{what}: organs must include 'lung' (it carries the cardiac output).")
        for name, o in organs.items():
            if not isinstance(o, Organ):
                raise ModelError(f"{what}: organs[{name!r}] is {type(o).__name__}, expected an Organ.")
            _positive(o.volume, f"{what}: organ {name!r} volume (L)")
            _positive(o.blood_flow, f"{what}: organ {name!r} blood_flow (L/h)")
            if o.drains_to not in _DRAINS:
                raise ModelError(f"{what}: organ {name!r} drains_to={o.drains_to!r}; expected one of {_DRAINS}."
                                 + did_you_mean(o.drains_to, _DRAINS))
        if organs["lung"].drains_to != "arterial":
            raise ModelError(f"{what}: the lung must drain to 'arterial'.")
        if any(o.drains_to == "liver" for o in organs.values()) and "liver" not in organs:
            raise ModelError(f"{what}: organs drain to 'liver' but there is no liver.")
        tol = 1e-9 * self.cardiac_output
        if abs(organs["lung"].blood_flow - self.cardiac_output) > tol:
            raise ModelError(f"{what}: lung blood_flow {organs['lung'].blood_flow} L/h must equal the cardiac "
                             f"output {self.cardiac_output} L/h.")
        total = sum(o.blood_flow for n, o in organs.items() if n != "lung")
        if abs(total - self.cardiac_output) > tol:
            raise ModelError(f"{what}: non-lung blood flows sum to {total:.6g} L/h but the cardiac output is "
                             f"{self.cardiac_output:.6g} L/h; adjust an organ (e.g. 'rest') so they match.")
        object.__setattr__(self, "organs", MappingProxyType(organs))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))
        object.__setattr__(self, "units", MappingProxyType(dict(self.units)))

    @property
    def tissues(self) -> tuple[str, ...]:
        return tuple(self.organs)

    @property
    def blood_volume(self) -> float:
        return self.arterial_volume + self.venous_volume

    @property
    def hepatic_blood_flow(self) -> float:
        """Total liver blood flow Q_H: hepatic artery plus the organs draining into the liver (L/h)."""
        if "liver" not in self.organs:
            return 0.0
        return self.organs["liver"].blood_flow + sum(o.blood_flow for o in self.organs.values()
                                                     if o.drains_to == "liver")

    def organ(self, name: str) -> Organ:
        """The organ called ``name`` (a clear error with suggestions when there is none)."""
        if name not in self.organs:
            raise ModelError(f"{self.species} physiology has no organ {name!r}; organs are {list(self.organs)}."
                             + did_you_mean(name, self.organs))
        return self.organs[name]

    def scaled(self, body_weight: float) -> "Physiology":
        """This physiology scaled to another body weight (kg).

        Volumes (organs and blood) scale linearly with body weight; blood flows and cardiac
        output allometrically with BW^0.75 (e.g. West, Brown & Enquist 1997 Science 276:122;
        the exponent used for cardiac output in Brown et al. 1997).  Both balances survive the
        scaling: every volume gets one factor and every flow another.  Composition-like
        quantities (hematocrit, vascular fractions) are unchanged.  This is a simple scaling,
        not a model of how organs differ in obese or paediatric subjects.
        """
        _positive(body_weight, "scaled(body_weight) (kg)")
        fv = float(body_weight) / self.body_weight
        fq = fv ** 0.75
        note = (f"; scaled from {self.body_weight:g} kg to {float(body_weight):g} kg "
                "(volumes x BW ratio, flows x BW ratio^0.75)")
        organs = {n: replace(o, volume=o.volume * fv, blood_flow=o.blood_flow * fq, source=o.source + note)
                  for n, o in self.organs.items()}
        sources = dict(self.sources)
        sources["body_weight"] = f"scaled: {float(body_weight):g} kg (reference {sources.get('body_weight', '')})"
        return replace(self, body_weight=float(body_weight), cardiac_output=self.cardiac_output * fq,
                       organs=organs, arterial_volume=self.arterial_volume * fv,
                       venous_volume=self.venous_volume * fv, sources=sources)

    def table(self) -> list[dict]:
        """One row per organ (name, volume_L, blood_flow_L_h, drains_to, source) for display."""
        return [dict(name=n, volume_L=o.volume, blood_flow_L_h=o.blood_flow, drains_to=o.drains_to,
                     source=o.source) for n, o in self.organs.items()]

    def __repr__(self) -> str:
        return (f"Physiology({self.species}, {self.sex}, BW={self.body_weight:g} kg, "
                f"CO={self.cardiac_output:g} L/h, Hct={self.hematocrit:.3g}, {len(self.organs)} organs)")


def _positive(value, what: str) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ModelError(f"{what} = {value!r} is not a number; expected a positive number.") from None
    if not math.isfinite(v) or v <= 0:
        raise ModelError(f"{what} = {value!r}; expected a finite number > 0.")


def _close(species, sex, bw, co_L_h, hct, organs: dict, blood, arterial_fraction, sources, rest_source):
    """Add 'rest' closing body weight and cardiac output, and build the Physiology."""
    what = f"{species} ({sex}) reference physiology"
    rest_v = bw - sum(o.volume for o in organs.values()) - blood
    rest_q = co_L_h - sum(o.blood_flow for n, o in organs.items() if n != "lung")
    if rest_v <= 0 or rest_q <= 0:   # only reachable if a table is edited inconsistently
        raise ModelError(f"{what}: explicit organs exceed body weight or cardiac output "
                         f"(rest volume {rest_v:g} L, rest flow {rest_q:g} L/h).")
    organs["rest"] = Organ(rest_v, rest_q, None, rest_source)
    return Physiology(species, sex, bw, co_L_h, hct, {n: organs[n] for n in TISSUES},
                      blood * arterial_fraction, blood * (1.0 - arterial_fraction), sources)


def human(sex: str = "male") -> Physiology:
    """ICRP Publication 89 reference adult: male 73 kg, female 60 kg.

    Organ masses from ICRP 89 Table 2.8 (taken as volumes at 1 kg/L), blood flows from Table
    2.40 (% of cardiac output; cardiac output 6.5 L/min male, 5.9 L/min female, Table 2.39),
    blood volume and hematocrit from Table 2.12 (5.3 L / 3.9 L; red cells 2.3 L / 1.5 L, so a
    whole-body hematocrit of 0.434 / 0.385), arterial:venous split 29.5:70.5 from Table 2.13,
    regional blood volumes (``vascular_fraction``) from Table 2.14.  Gut = small + large
    intestine walls; stomach = stomach wall with the "stomach and oesophagus" flow.  "rest"
    closes the body-weight and cardiac-output balances (male 4.55 L, 7.5 % of CO: bronchial,
    thyroid, lymph nodes, gonads, adrenals, bladder and other tissues; female 4.51 L, 8.0 %).
    Each organ's ``source`` names its table entries.
    """
    if sex not in ref.HUMAN_SCALARS:
        raise ModelError(f"human(sex={sex!r}): expected 'male' or 'female'." + did_you_mean(sex, ref.HUMAN_SCALARS))
    i = 0 if sex == "male" else 1
    s = ref.HUMAN_SCALARS[sex]
    co = s["cardiac_output_L_min"] * 60.0
    blood = s["blood_volume"]
    organs = {}
    for name, row in ref.HUMAN_ORGANS.items():
        mass, flow_pct, blood_pct, source = row[i], row[2 + i], row[4][i], row[5]
        flow = co if name == "lung" else flow_pct / 100.0 * co
        drains = "arterial" if name == "lung" else "liver" if name in PORTAL else "venous"
        organs[name] = Organ(mass, flow, blood_pct / 100.0 * blood / mass, f"{source} ({sex})", drains)
    sources = dict(ref.HUMAN_SCALAR_SOURCES)
    return _close("human", sex, s["body_weight"], co, s["rbc_volume"] / blood, organs, blood,
                  ref.HUMAN_ARTERIAL_FRACTION, sources,
                  "closure: volume = BW - organs - blood; flow = CO - other non-lung flows "
                  "(ICRP 89 Table 2.40: bronchial, thyroid, lymph nodes, gonads, adrenals, bladder, other)")


def mouse() -> Physiology:
    """Reference mouse (25 g) from Brown et al. 1997, Toxicol Ind Health 13:407.

    Organ weights as % BW (Brown Table 4; stomach and intestines separately), blood 4.9 % BW
    (Table 21), cardiac output 0.275 L/min x BW^0.75 = 1.04 L/h (p. 440), regional flows as % CO
    (Table 24), spleen flow 1.1 % CO from Davies & Morris 1993 (Pharm Res 10:1093).  Brown 1997
    gives no mouse value for the pancreas mass and the stomach/pancreas/gut flows; those are
    flagged ASSUMPTION in the organ ``source`` (pancreas 0.5 % BW; the portal flow left after the
    spleen split in proportion to mass).  Hematocrit 0.45 and a 1/3 arterial : 2/3 venous blood
    split are assumptions too.  "rest" closes body weight and cardiac output.
    """
    s = ref.MOUSE_SCALARS
    bw = s["body_weight"]
    co = s["co_coefficient_L_min"] * bw ** 0.75 * 60.0
    unassigned = [n for n, row in ref.MOUSE_ORGANS.items() if row[1] is None and n != "lung"]
    split_mass = sum(ref.MOUSE_ORGANS[n][0] for n in unassigned)
    split_flow = ref.MOUSE_PORTAL_TOTAL - ref.MOUSE_ORGANS["spleen"][1]
    organs = {}
    for name, (pct_bw, flow_pct, source) in ref.MOUSE_ORGANS.items():
        if name == "lung":
            flow = co
        else:
            pct = flow_pct if flow_pct is not None else split_flow * pct_bw / split_mass
            flow = pct / 100.0 * co
        drains = "arterial" if name == "lung" else "liver" if name in PORTAL else "venous"
        organs[name] = Organ(pct_bw / 100.0 * bw, flow, None, source, drains)
    return _close("mouse", "male", bw, co, s["hematocrit"], organs, s["blood_percent_bw"] / 100.0 * bw,
                  s["arterial_fraction"], dict(ref.MOUSE_SCALAR_SOURCES),
                  "closure: volume = BW - organs - blood; flow = CO - other non-lung flows")


from .kp import KpTable, kp_poulin_theil, kp_rodgers_rowland  # noqa: E402
from .whole_body import whole_body  # noqa: E402
from .allometry import (KM_FACTORS, allometric_exponent, allometric_scale,  # noqa: E402
                        human_equivalent_dose, scale_parameters)
