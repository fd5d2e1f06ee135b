"""Tissue:plasma partition coefficients (Kp) from drug physicochemistry.

Convention: every Kp returned here is TISSUE : PLASMA (total drug in tissue over total drug in
plasma at steady state, Kp = Kpu x fu).  A perfusion-limited tissue in a blood-flow model
releases venous blood at concentration C_tissue x B:P / Kp (``whole_body`` does this).

Methods
-------
``kp_rodgers_rowland``: the mechanistic method of
  * Rodgers T, Leahy D, Rowland M (2005) J Pharm Sci 94:1259-1276 — moderate-to-strong bases
    (a basic pKa >= 7): partitioning into tissue water (with pH-partition of the ionised base
    between plasma pH 7.4 and intracellular pH 7.0), neutral lipids and phospholipids, and
    electrostatic binding of the cation to acidic phospholipids, whose association constant is
    obtained from the blood-to-plasma ratio (erythrocyte pH 7.22);
  * Rodgers T, Rowland M (2006) J Pharm Sci 95:1238-1257 — acids, very weak bases (pKa < 7),
    neutrals and zwitterions without a strong basic group: the same water/lipid terms plus
    binding to extracellular albumin (acids, weak bases, zwitterions) or lipoproteins
    (neutrals), scaled from plasma binding (fu) by the tissue:plasma protein ratio.
  Tissue composition: rat, RLR 2005 / RR 2006 Table 1 (see ``_reference.RR_TISSUES``).
  Adipose neutral lipid uses the vegetable oil:water coefficient, log Pvo:w = 1.115 log P - 1.35
  (as in both papers).  Negative binding constants (inconsistent fu or B:P inputs) are set to
  zero as Rodgers & Rowland did, with a warning.

``kp_poulin_theil``: Poulin P, Theil FP (2002) J Pharm Sci 91:129-156, tissue-composition
  method with human composition (P&T 2002 Table 1): Kp = [P(Vn,t + 0.3 Vph,t) + (Vw,t + 0.7 Vph,t)] /
  [P(Vn,p + 0.3 Vph,p) + (Vw,p + 0.7 Vph,p)] x fu_p / fu_t, with fu_t = 1 / (1 + 0.5 (1 - fu_p)/fu_p)
  (interstitial:plasma albumin ratio 0.5); adipose uses D*vo:w at pH 7.4 and fu_t = 1.

Model tissues without their own composition row use a documented surrogate: stomach -> gut,
rest -> muscle (and pancreas -> gut for Poulin & Theil, whose table has no pancreas).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

from ..errors import ModelError, did_you_mean
from . import _reference as ref

__all__ = ["kp_rodgers_rowland", "kp_poulin_theil", "KpTable"]


class KpTable(dict):
    """A plain dict tissue -> Kp (tissue:plasma) that also records how it was obtained
    (``.source``, used by ``whole_body`` as the source of its Kp parameters)."""

    def __init__(self, values, source: str):
        super().__init__(values)
        self.source = source

_KINDS = ("base", "acid", "neutral", "zwitterion")
_LOGP_RANGE = (-10.0, 15.0)
_PKA_RANGE = (-5.0, 20.0)


def _number(value, name: str, lo: float, hi: float, *, lo_open=False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ModelError(f"{name}={value!r} is not a number; expected {_range(lo, hi, lo_open)}.") from None
    if not math.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
        raise ModelError(f"{name}={value!r} is out of range; expected {_range(lo, hi, lo_open)}.")
    return v


def _range(lo, hi, lo_open):
    return f"{lo:g} < value <= {hi:g}" if lo_open else f"{lo:g} <= value <= {hi:g}"


def _tissues(tissues, available: Iterable[str], method: str) -> list[str]:
    available = list(available)
    if tissues is None:
        return list(ref.TISSUES)
    if isinstance(tissues, str):
        tissues = [tissues]
    out = []
    for t in tissues:
        if t not in available:
            raise ModelError(f"{method}: unknown tissue {t!r}; known tissues are {available}."
                             + did_you_mean(str(t), available))
        out.append(t)
    return out


def _warn_negative(what: str, value: float) -> None:
    warnings.warn(f"{what} = {value:.3g} < 0 (the fu / B:P inputs are not mutually consistent with the "
                  "tissue composition); set to 0 as in Rodgers & Rowland.", RuntimeWarning, stacklevel=3)


def kp_rodgers_rowland(logp, pka, fu, bp, kind: str = "base", tissues=None, *,
                       hematocrit: float = ref.RR_HEMATOCRIT) -> "KpTable":
    """Rodgers & Rowland tissue:plasma Kp for each tissue.

    Args:
        logp: log10 n-octanol:water partition coefficient of the neutral species (-10..15).
        pka: the ionisable group's pKa (-5..20); ignored for ``kind="neutral"`` (may be None);
            for ``kind="zwitterion"`` a pair ``(pKa_acid, pKa_base)``.
        fu: fraction unbound in plasma, 0 < fu <= 1.
        bp: blood-to-plasma concentration ratio, > 1 - hematocrit (used for bases with pKa >= 7
            to calibrate acidic-phospholipid binding; checked but otherwise unused).
        kind: "base", "acid", "neutral" or "zwitterion".  Bases (and zwitterions) whose basic
            pKa >= 7 use RLR 2005; all others RR 2006.
        tissues: tissue names (default: the 14 whole-body tissues); composition rows exist for
            the 13 rat tissues of RR 2006 Table 1 (incl. thymus) plus the surrogates
            stomach -> gut and rest -> muscle.
        hematocrit: of the blood used to measure B:P (default 0.45, rat, as in RLR 2005).

    Returns: :class:`KpTable` (a dict) tissue -> Kp (tissue:plasma, dimensionless).
    """
    method = "kp_rodgers_rowland"
    if kind not in _KINDS:
        raise ModelError(f"{method}: kind={kind!r}; expected one of {_KINDS}." + did_you_mean(str(kind), _KINDS))
    logp = _number(logp, f"{method}: logp", *_LOGP_RANGE)
    fu = _number(fu, f"{method}: fu (fraction unbound in plasma)", 0.0, 1.0, lo_open=True)
    hct = _number(hematocrit, f"{method}: hematocrit", 0.0, 1.0, lo_open=True)
    bp = _number(bp, f"{method}: bp (blood:plasma ratio)", 0.0, 100.0, lo_open=True)
    if bp <= 1.0 - hct:
        raise ModelError(f"{method}: bp={bp!r} implies a negative red-cell concentration; expected "
                         f"bp > 1 - hematocrit = {1.0 - hct:.3g}.")
    pka_acid = pka_base = None
    if kind == "zwitterion":
        if not (isinstance(pka, (tuple, list)) and len(pka) == 2):
            raise ModelError(f"{method}: kind='zwitterion' needs pka=(pKa_acid, pKa_base), got {pka!r}.")
        pka_acid = _number(pka[0], f"{method}: pka[0] (acidic pKa)", *_PKA_RANGE)
        pka_base = _number(pka[1], f"{method}: pka[1] (basic pKa)", *_PKA_RANGE)
    elif kind == "acid":
        pka_acid = _number(pka, f"{method}: pka", *_PKA_RANGE)
    elif kind == "base":
        pka_base = _number(pka, f"{method}: pka", *_PKA_RANGE)

    def ionised(ph):   # total / neutral species ratio at this pH (1 + sum of ionised forms)
        r = 1.0
        if pka_base is not None:
            r += 10.0 ** (pka_base - ph)
        if pka_acid is not None:
            r += 10.0 ** (ph - pka_acid)
        return r

    ph = ref.RR_PH
    p = 10.0 ** logp
    p_vo = 10.0 ** (1.115 * logp - 1.35)   # vegetable oil:water, for adipose neutral lipid
    ion_p, ion_iw, ion_bc = ionised(ph["plasma"]), ionised(ph["intracellular"]), ionised(ph["erythrocyte"])
    strong_base = pka_base is not None and pka_base >= 7.0

    if strong_base:   # RLR 2005: calibrate acidic-phospholipid association on red cells
        e = ref.RR_ERYTHROCYTE
        kpu_bc = (hct - 1.0 + bp) / (fu * hct)
        cation_bc = 10.0 ** (pka_base - ph["erythrocyte"])
        ka_ap = (kpu_bc - ion_bc / ion_p * e["f_IW"]
                 - (p * e["f_NL"] + (0.3 * p + 0.7) * e["f_NP"]) / ion_p) * ion_p / (e["AP"] * cation_bc)
        if ka_ap < 0:
            _warn_negative(f"{method}: acidic-phospholipid association constant (from bp={bp})", ka_ap)
            ka_ap = 0.0
    else:             # RR 2006: plasma-protein binding from fu, minus plasma lipid partitioning
        pl = ref.RR_PLASMA
        ka_pr = 1.0 / fu - 1.0 - (p * pl["f_NL"] + (0.3 * p + 0.7) * pl["f_NP"]) / ion_p
        if ka_pr < 0:
            if ka_pr < -1e-2:   # fu = 1 gives a tiny negative value by construction; stay quiet then
                _warn_negative(f"{method}: plasma-protein binding term (from fu={fu})", ka_pr)
            ka_pr = 0.0
        protein = 6 if kind == "neutral" else 5   # lipoprotein for neutrals, albumin otherwise

    available = list(ref.RR_TISSUES) + list(ref.RR_SURROGATES)
    out = KpTable({}, ("Rodgers, Leahy & Rowland 2005 (J Pharm Sci 94:1259)" if strong_base else
                       "Rodgers & Rowland 2006 (J Pharm Sci 95:1238)")
                  + f" prediction, rat tissue composition ({kind}, logP {logp:g}, fu {fu:g})")
    for t in _tissues(tissues, available, method):
        row = ref.RR_TISSUES[ref.RR_SURROGATES.get(t, t)]
        f_ew, f_iw, f_nl, f_np, ap = row[:5]
        pn = p_vo if t == "adipose" else p
        kpu = f_ew + ion_iw / ion_p * f_iw + (pn * f_nl + (0.3 * pn + 0.7) * f_np) / ion_p
        if strong_base:
            kpu += ka_ap * ap * 10.0 ** (pka_base - ph["intracellular"]) / ion_p
        else:
            kpu += ka_pr * row[protein]
        out[t] = kpu * fu
    return out


def kp_poulin_theil(logp, fu, tissues=None, *, pka=None, kind: str = "neutral") -> "KpTable":
    """Poulin & Theil (2002) tissue:plasma Kp for each tissue (human tissue composition).

    Args:
        logp: log10 n-octanol:water partition coefficient (-10..15).
        fu: fraction unbound in plasma, 0 < fu <= 1.
        tissues: tissue names (default: the 14 whole-body tissues); rows exist for the 11
            tissues of P&T 2002 Table 1 plus surrogates stomach, pancreas -> gut, rest -> muscle.
        pka, kind: optional ionisation ("acid" or "base" with ``pka``) used, as in P&T 2002,
            only for adipose through D*vo:w at pH 7.4; default neutral.

    Returns: :class:`KpTable` (a dict) tissue -> Kp (tissue:plasma, dimensionless).
    """
    method = "kp_poulin_theil"
    logp = _number(logp, f"{method}: logp", *_LOGP_RANGE)
    fu = _number(fu, f"{method}: fu (fraction unbound in plasma)", 0.0, 1.0, lo_open=True)
    if kind not in ("neutral", "acid", "base"):
        raise ModelError(f"{method}: kind={kind!r}; expected 'neutral', 'acid' or 'base'."
                         + did_you_mean(str(kind), ("neutral", "acid", "base")))
    log_dvo = 1.115 * logp - 1.35
    if kind != "neutral":
        pka = _number(pka, f"{method}: pka", *_PKA_RANGE)
        log_dvo -= math.log10(1.0 + 10.0 ** ((7.4 - pka) if kind == "acid" else (pka - 7.4)))
    p, d_vo = 10.0 ** logp, 10.0 ** log_dvo
    fu_t = 1.0 / (1.0 + 0.5 * (1.0 - fu) / fu)
    vw_p, vn_p, vph_p = ref.PT_PLASMA
    available = list(ref.PT_TISSUES) + list(ref.PT_SURROGATES)
    out = KpTable({}, f"Poulin & Theil 2002 (J Pharm Sci 91:129) prediction, human tissue composition "
                      f"(logP {logp:g}, fu {fu:g})")
    for t in _tissues(tissues, available, method):
        vw, vn, vph = ref.PT_TISSUES[ref.PT_SURROGATES.get(t, t)]
        k = d_vo if t == "adipose" else p
        ratio = (k * (vn + 0.3 * vph) + (vw + 0.7 * vph)) / (k * (vn_p + 0.3 * vph_p) + (vw_p + 0.7 * vph_p))
        out[t] = ratio * (fu if t == "adipose" else fu / fu_t)
    return out
