"""Nanoparticle PBPK in the mouse (Lin, Monteiro-Riviere & Riviere 2016 family), with phagocytic
uptake, an optional EPR tumour, and the tumour delivery efficiency (% injected dose) as output.

Lin Z, Monteiro-Riviere NA, Riviere JE. A physiologically based pharmacokinetic model for
polyethylene glycol-coated gold nanoparticles of different sizes in adult mice. Nanotoxicology
2016;10(2):162-172, DOI 10.3109/17435390.2015.1027314.  Structure and values as implemented by
the Lin lab in github.com/UFPBPK/Nano-AI-PBPK-G2 ``PBPK/NanoPBPK.R`` (commit 4e191e58, the
tumour-bearing-mouse model building on Cheng YH et al. ACS Nano 2020;14:3075) and
github.com/UFPBPK/Nano-AI-PBPK-G1 ``Main_Code.R`` (Chou WC et al. J Control Release
2023;361:53).  The Lin 2016 per-size (13 nm vs 100 nm) parameter tables were not available
offline: the partition and permeability coefficients below are the values that code attributes
to Lin 2016; the phagocytic-uptake and tumour values are the code's fitted defaults for a
generic nanoparticle (size not stated).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from pbpk.dosing import Bolus, Regimen
from pbpk.errors import ModelError
from pbpk.spec import Model

from . import register

__all__ = ["nanoparticle_mouse", "mouse_iv_regimen", "TUMOUR_SETS", "ORGANS"]

LIN_2016 = ("Lin Z, Monteiro-Riviere NA, Riviere JE. Nanotoxicology 2016;10:162-172 "
            "(DOI 10.3109/17435390.2015.1027314); code: github.com/UFPBPK/Nano-AI-PBPK-G2 PBPK/NanoPBPK.R")
_LIN = "Lin 2016, as attributed in Nano-AI-PBPK-G2 NanoPBPK.R [C]"
_G2 = "Nano-AI-PBPK-G2 NanoPBPK.R default, fitted generic NP (size not stated) [C]"
_G1 = "Nano-AI-PBPK-G1 Main_Code.R (Chou 2023) default [C]"
_BROWN = "mouse physiology in Nano-AI-PBPK-G2 (Brown et al. 1997) [C]"


@dataclass(frozen=True)
class _Organ:
    flow: float | None          # fraction of cardiac output (None: closes the balance)
    volume: float | None        # fraction of body weight (None: closes the balance)
    blood: float                # capillary-blood fraction of the organ volume
    partition: float            # tissue:blood partition coefficient P
    pac: float                  # permeability-surface area coefficient (PA = PAC · Q)
    res: tuple[float, float, float, float] | None   # phagocytic release, K_max (1/h), K50 (h), n
    capacity: float = 0.0       # phagocytic capacity (µg/g) for uptake="capacity"
    res_from_blood: bool = False


# lung: receives the whole cardiac output; liver: hepatic artery only, plus the spleen's outflow.
ORGANS: dict[str, _Organ] = {
    "lung":   _Organ(1.0,   0.007, 0.50, 0.15, 0.001, (0.003, 0.085, 48.0, 5.0), 100.0),
    "brain":  _Organ(0.033, 0.017, 0.03, 0.15, 1e-6,  None),
    "muscle": _Organ(0.159, 0.384, 0.04, 0.15, 5e-5,  (0.005, 0.4, 48.0, 5.0), 15.0),
    "kidney": _Organ(0.091, 0.017, 0.24, 0.15, 0.01,  (0.001, 0.12, 48.0, 5.0), 15.0),
    "spleen": _Organ(0.011, 0.005, 0.17, 0.15, 0.15,  (0.001, 5.0, 36.0, 5.0), 200.0),
    "liver":  _Organ(0.02,  0.055, 0.31, 0.08, 0.001, (0.0015, 0.3, 48.0, 5.0), 100.0, res_from_blood=True),
    "rest":   _Organ(None,  None,  0.04, 0.15, 5e-5,  (0.005, 0.4, 48.0, 5.0), 15.0),
}
# Two published tumour parameter sets (both fitted; nanoparticle not named in the code).
TUMOUR_SETS: dict[str, tuple[_Organ, str]] = {
    "G2": (_Organ(0.01, 0.024, 0.01, 0.00377, 0.00377, (0.0071, 0.00198, 2e-5, 0.61), 1.0), _G2),
    "G1": (_Organ(0.033, 0.04, 0.03, 0.15, 0.001, (0.005, 0.4, 24.0, 5.0), 1.0), _G1),
}
PLASMA_FRACTION = 0.0355      # plasma volume / BW, the volume of the arterial + venous pools [C]


def nanoparticle_mouse(tumour: str | None = "G2", uptake: str = "hill") -> Model:
    """Membrane-limited nanoparticle PBPK (mouse) with phagocytic (MPS) sub-compartments.

    Equations (organ i: capillary blood b, tissue t, phagocytic cells PC; C = A/V):
        dA_ib/dt  = Q_i (C_A − C_ib) − PA_i C_ib + PA_i C_it/P_i          (+ inflow from spleen, liver)
        dA_it/dt  = PA_i C_ib − PA_i C_it/P_i − K_up,i A_it + K_rel,i A_iPC
        dA_iPC/dt = K_up,i A_it − K_rel,i A_iPC
        PA_i = PAC_i Q_i (lung: PAC · QC); the liver's phagocytes take up from its capillary
        blood (K_up A_Lb) and release into it; the brain has no phagocytic compartment.
        K_up(t) = K_max (t/K50)^n / (1 + (t/K50)^n)        uptake="hill" (t since the first dose)
        K_up    = K_max (1 − A_PC/(A_cap V_i))              uptake="capacity"
        arterial pool 20 %, venous pool 80 % of the plasma volume; the lung receives QC from the
        venous pool and feeds the arterial pool; spleen outflow enters the liver's capillary blood
        and the liver returns (Q_L + Q_S) C_Lb to the venous pool; bile Kbile C_Lt from liver
        tissue, urine Kurine C_Kb from kidney blood (both kept as compartments);
        QC = QCC (BW/1 kg)^0.75, Kbile = KbileC (BW/1 kg)^0.75, Kurine = KurineC (BW/1 kg)^0.75.
        DE = 100 (A_Tt + A_TPC) / (amount administered) — tumour delivery efficiency, % ID.

    Correction to NanoPBPK.R: the code returns only Q_L C_Lb from the liver although the liver
    receives Q_L + Q_S, so blood flow does not balance; here the liver returns Q_L + Q_S.

    | parameter | value | unit | source |
    |---|---|---|---|
    | QCC | 16.5 | L/h (at 1 kg; × BW^0.75) | Brown 1997 via NanoPBPK.R [C] |
    | QC_<organ> | liver 0.02 (artery), kidney 0.091, brain 0.033, spleen 0.011, muscle 0.159 | – | idem |
    | VC_<organ> | liver 0.055, lung 0.007, kidney 0.017, brain 0.017, spleen 0.005, muscle 0.384 | – | idem |
    | BV_<organ> | liver 0.31, lung 0.5, kidney 0.24, spleen 0.17, brain 0.03, muscle/rest 0.04 | – | idem |
    | VPLASC | 0.0355 | – | idem |
    | P_<organ> | liver 0.08, others 0.15 | – | Lin 2016 via NanoPBPK.R [C] |
    | PAC_<organ> | liver 0.001, brain 1e-6, kidney 0.01, spleen 0.15, lung 0.001, muscle/rest 5e-5 | – | idem |
    | KREL_<organ> | liver 0.0015, spleen 0.001, kidney 0.001, lung 0.003, muscle/rest 0.005 | 1/h | NanoPBPK.R fitted default [C] |
    | KMAX_<organ> | liver 0.3, spleen 5, kidney 0.12, lung 0.085, muscle/rest 0.4 | 1/h | idem |
    | K50_<organ> | 48 (spleen 36) | h | idem |
    | N_<organ> | 5 | – | idem |
    | ACAP_<organ> | liver 100, spleen 200, lung 100, kidney/muscle/rest 15, tumour 1 | µg/g | Main_Code.R (G1) [C] |
    | KBILEC / KURINEC | 3e-5 / 3e-6 | L/h (at 1 kg) | NanoPBPK.R [C] |
    | tumour "G2" | QC 0.01, VC 0.024, BV 0.01, P 0.00377, PAC 0.00377, KREL 0.0071, KMAX 0.00198, K50 2e-5, N 0.61 | | NanoPBPK.R fitted [C] |
    | tumour "G1" | QC 0.033, VC 0.04, BV 0.03, P 0.15, PAC 0.001, KREL 0.005, KMAX 0.4, K50 24, N 5 | | Main_Code.R [C] |

    Body weight ``BW`` (kg) is a covariate (reference 0.02 kg).  Amounts in mg, volumes in L
    (1 L = 1 kg of tissue), so concentrations in mg/L are µg/g.
    """
    if uptake not in ("hill", "capacity"):
        raise ModelError(f"nanoparticle_mouse: uptake={uptake!r}; expected 'hill' or 'capacity'.")
    if tumour is not None and tumour not in TUMOUR_SETS:
        raise ModelError(f"nanoparticle_mouse: tumour={tumour!r}; expected one of {sorted(TUMOUR_SETS)} or None.")
    organs = dict(ORGANS)
    if tumour is not None:
        organs["tumour"] = TUMOUR_SETS[tumour][0]
    m = Model("nanoparticle_mouse" + (f"_tumour_{tumour}" if tumour else ""), citation=LIN_2016,
              description="Lin 2016 nanoparticle PBPK (mouse)" + (f", EPR tumour ({tumour})" if tumour else ""))
    bw = m.covariate("BW", "kg", reference=0.02, description="body weight")
    allometric = (bw / m.quantity(1.0, "kg")) ** sp.Rational(3, 4)
    qc = m.parameter("QCC", 16.5, "L/h", description="cardiac output at 1 kg (QC = QCC·BW^0.75)", source=_BROWN) * allometric
    vplasc = m.parameter("VPLASC", PLASMA_FRACTION, "", description="plasma volume / BW", source=_BROWN)
    v_plasma = vplasc * bw / m.quantity(1.0, "kg/L")
    art = m.compartment("arterial", volume=0.2 * v_plasma, description="arterial plasma pool")
    ven = m.compartment("venous", volume=0.8 * v_plasma, description="venous plasma pool (IV dose)")
    frac = {}
    for name, o in organs.items():
        src = TUMOUR_SETS[tumour][1] if name == "tumour" else _BROWN
        if o.flow is not None and name != "lung":
            frac[("Q", name)] = m.parameter(f"QC_{name}", o.flow, "", description=f"{name} blood flow / QC", source=src)
        if o.volume is not None:
            frac[("V", name)] = m.parameter(f"VC_{name}", o.volume, "", description=f"{name} volume / BW", source=src)
    q_rest = 1 - sum(v for (k, n), v in frac.items() if k == "Q")
    v_rest = 1 - sum(v for (k, n), v in frac.items() if k == "V") - vplasc
    litre_per_kg = bw / m.quantity(1.0, "kg/L")
    t = {}
    for name, o in organs.items():
        q = qc if name == "lung" else qc * (q_rest if name == "rest" else frac[("Q", name)])
        v = litre_per_kg * (v_rest if name == "rest" else frac[("V", name)])
        t[name] = _organ(m, name, o, q, v, uptake, TUMOUR_SETS[tumour][1] if name == "tumour" else None)
    # circulation: venous -> lung -> arterial -> organs -> venous (spleen via liver)
    m.flow(ven, t["lung"]["b"], qc * ven.conc)
    m.flow(t["lung"]["b"], art, qc * t["lung"]["b"].conc)
    for name in organs:
        if name == "lung":
            continue
        m.flow(art, t[name]["b"], t[name]["q"] * art.conc)
        into, q_out = (t["liver"]["b"], t[name]["q"]) if name == "spleen" else (ven, t[name]["q"])
        if name == "liver":
            q_out = t["liver"]["q"] + t["spleen"]["q"]
        m.flow(t[name]["b"], into, q_out * t[name]["b"].conc)
    scale = allometric
    bile = m.compartment("bile", description="cumulative biliary excretion")
    urine = m.compartment("urine", description="cumulative urinary excretion")
    m.flow(t["liver"]["t"], bile, m.parameter("KBILEC", 3e-5, "L/h", description="biliary clearance at 1 kg",
                                              source=_G2) * scale * t["liver"]["t"].conc)
    m.flow(t["kidney"]["b"], urine, m.parameter("KURINEC", 3e-6, "L/h", description="urinary clearance at 1 kg",
                                                source=_G2) * scale * t["kidney"]["b"].conc)
    everything = sum(c.amount for c in m.compartments.values())
    administered = sp.Max(everything, m.quantity(1e-30, "mg"))
    m.define("C_blood", (art.amount + ven.amount) / v_plasma, "mg/L")
    m.observe("C_plasma", ven.conc, "mg/L")
    for name in organs:
        amount = sum(c.amount for c in t[name]["all"])
        m.observe(f"C_{name}", amount / t[name]["v"], "mg/L")
        m.observe(f"ID_{name}", amount / administered, "%")
    m.observe("ID_blood", (art.amount + ven.amount) / administered, "%")
    m.observe("ID_excreted", (bile.amount + urine.amount) / administered, "%")
    if tumour is not None:
        tt = t["tumour"]
        m.observe("DE", (tt["t"].amount + tt["pc"].amount) / administered, "%")
    return m


def _organ(m: Model, name: str, o: _Organ, q, v, uptake: str, source: str | None) -> dict:
    """Blood, tissue and phagocytic compartments of one organ, and the flows between them."""
    src = source or _LIN
    bv = m.parameter(f"BV_{name}", o.blood, "", description=f"{name} capillary blood fraction", source=source or _BROWN)
    p = m.parameter(f"P_{name}", o.partition, "", description=f"{name} tissue:blood partition", source=src)
    pac = m.parameter(f"PAC_{name}", o.pac, "", description=f"{name} permeability coefficient (PA = PAC·Q)", source=src)
    blood = m.compartment(f"{name}_blood", volume=v * bv)
    tissue = m.compartment(f"{name}_tissue", volume=v * (1 - bv))
    pa = pac * q
    m.flow(blood, tissue, pa * blood.conc)
    m.flow(tissue, blood, pa * tissue.conc / p)
    out = {"b": blood, "t": tissue, "q": q, "v": v, "all": [blood, tissue]}
    if o.res is None:
        return out
    rel, kmax, k50, n = o.res
    src = source or _G2
    k_rel = m.parameter(f"KREL_{name}", rel, "1/h", description=f"{name} phagocytic release", source=src)
    k_max = m.parameter(f"KMAX_{name}", kmax, "1/h", description=f"{name} maximal phagocytic uptake", source=src)
    pc = m.compartment(f"{name}_pc", description=f"{name} phagocytic cells")
    if uptake == "hill":
        k50_s = m.parameter(f"K50_{name}", k50, "h", description=f"{name} time of half-maximal uptake", source=src)
        n_s = m.parameter(f"N_{name}", n, "", description=f"{name} Hill coefficient of uptake in time", source=src)
        x = (m.t / k50_s) ** n_s
        k_up = k_max * x / (1 + x)
    else:
        cap = m.parameter(f"ACAP_{name}", o.capacity, "ug/g", description=f"{name} phagocytic capacity",
                          source=_G1) * m.quantity(1.0, "kg/L")
        k_up = k_max * (1 - pc.amount / (cap * v))
    source_cmt = blood if o.res_from_blood else tissue
    m.flow(source_cmt, pc, k_up * source_cmt.amount)
    m.flow(pc, source_cmt, k_rel * pc.amount)
    out["pc"] = pc
    out["all"].append(pc)
    return out


def mouse_iv_regimen(dose_mg_kg: float = 0.85, body_weight_kg: float = 0.02) -> Regimen:
    """A single IV bolus of ``dose_mg_kg`` into the venous pool (Lin 2016: 0.85 mg/kg)."""
    if not (dose_mg_kg > 0 and body_weight_kg > 0):
        raise ModelError(f"mouse_iv_regimen: dose {dose_mg_kg!r} mg/kg and body weight {body_weight_kg!r} kg "
                         "must be positive.")
    return Regimen.of(Bolus(dose_mg_kg * body_weight_kg, "venous"))


@register("nanoparticle_lin2016", citation=LIN_2016)
def nanoparticle_lin2016() -> Model:
    return nanoparticle_mouse(tumour=None)


@register("nanoparticle_tumour_mouse", citation=LIN_2016)
def nanoparticle_tumour_mouse() -> Model:
    return nanoparticle_mouse(tumour="G2")


nanoparticle_lin2016.__doc__ = "Lin 2016 mouse nanoparticle PBPK without a tumour: " + nanoparticle_mouse.__doc__
nanoparticle_tumour_mouse.__doc__ = "Tumour-bearing mouse (tumour set 'G2'): " + nanoparticle_mouse.__doc__
