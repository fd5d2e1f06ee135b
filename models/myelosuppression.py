"""Chemotherapy-induced myelosuppression: the Friberg 2002 semi-mechanistic model with its
drug-specific parameter sets, and CTCAE neutropenia grades.

Friberg LE, Henningsson A, Maas H, Nguyen L, Karlsson MO. Model of chemotherapy-induced
myelosuppression with parameter consistency across drugs. J Clin Oncol 2002;20(24):4713-4721.
DOI 10.1200/JCO.2002.02.140.

The model is a PD part: it reads the drug's plasma concentration through the input ``C``
(µmol/L), to be connected to a PK model with ``pbpk.compose`` (unconnected, C = 0 and the
counts stay at baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
import sympy as sp

from pbpk.errors import ModelError, did_you_mean
from pbpk.residual import AbstractResidualError, LogNormal, Proportional
from pbpk.spec import Model

from . import register

FRIBERG_2002 = ("Friberg LE, Henningsson A, Maas H, Nguyen L, Karlsson MO. J Clin Oncol 2002;20(24):4713-4721. "
                "DOI 10.1200/JCO.2002.02.140")
KLOFT_2006 = ("Kloft C, Wallin J, Henningsson A, Chatelut E, Karlsson MO. Clin Cancer Res 2006;12(18):5481-5490; "
              "as encoded by Netterberg I et al. 2017, DDMORE DDMODEL00000224")
ANC_UNIT = "1e9/L"


@dataclass(frozen=True)
class FribergSet:
    """One published parameter set: baseline, mean transit time, feedback, drug effect, IIV."""

    cell: str
    circ0: float             # 1e9/L
    mtt: float               # h
    gamma: float
    slope: float | None      # L/µmol (linear effect)
    emax: float | None       # Emax variant: E = Emax·C/(EC50 + C)
    ec50: float | None       # µmol/L
    omega: dict[str, float]  # SD of log η
    error: AbstractResidualError | None
    source: str


PARAMETER_SETS: dict[str, FribergSet] = {
    "docetaxel": FribergSet("neutrophils", 5.05, 88.7, 0.161, 8.58, None, None, {}, None,
                            "Friberg 2002, linear drug effect (myelo R package, radivot/myelo) [C]"),
    "docetaxel_emax": FribergSet("neutrophils", 5.05, 89.3, 0.163, None, 83.9, 7.17,
                                 {"Circ0": 0.42, "MTT": 0.16, "Emax": 0.33, "EC50": 0.50}, None,
                                 "Friberg 2002 Table 4 row 1, Emax variant; IIV (CV) as used in DTAT [C]"),
    "docetaxel_kloft": FribergSet("neutrophils", 5.22, 84.2, 0.145, 15.57, None, None,
                                  {"Circ0": math.sqrt(0.0640), "MTT": math.sqrt(0.0192),
                                   "slope": math.sqrt(0.128)}, LogNormal(0.424),
                                  "Kloft 2006 / Netterberg 2017 DDMODEL00000224 [C]"),
    "paclitaxel": FribergSet("leukocytes", 7.21, 124.0, 0.239, 28.9, None, None,
                             {"Circ0": math.sqrt(0.107), "MTT": math.sqrt(0.0296), "slope": math.sqrt(0.176)},
                             Proportional(0.286), "Friberg 2002 paclitaxel/leukocytes, DDMODEL00000186 [C]"),
}


@register("friberg2002", citation=FRIBERG_2002, flows=False)
def friberg2002(drug: str = "docetaxel_kloft", transit: int = 3) -> Model:
    """Friberg 2002 myelosuppression model (proliferating cells, transit chain, circulating cells).

    Equations (k_tr = (n + 1)/MTT with n = 3 transit compartments, E = slope·C or
    Emax·C/(EC50 + C), C the plasma concentration in µmol/L; every state starts at Circ0):
        dProl/dt = k_tr·Prol·(1 − E)·(Circ0/Circ)^γ − k_tr·Prol
        dT1/dt   = k_tr·(Prol − T1),  dT2/dt = k_tr·(T1 − T2),  dT3/dt = k_tr·(T2 − T3)
        dCirc/dt = k_tr·T3 − k_tr·Circ
    The observation is ``ANC`` (neutrophil sets) or ``WBC`` (the paclitaxel leukocyte set), in
    10⁹/L.  Rebound above baseline after the nadir is the feedback's doing, as published.

    | parameter | docetaxel_kloft | docetaxel | docetaxel_emax | paclitaxel | unit | source |
    |---|---|---|---|---|---|---|
    | Circ0 | 5.22 | 5.05 | 5.05 | 7.21 | 10⁹/L | see PARAMETER_SETS |
    | MTT | 84.2 | 88.7 | 89.3 | 124 | h | see PARAMETER_SETS |
    | gamma | 0.145 | 0.161 | 0.163 | 0.239 | – | see PARAMETER_SETS |
    | slope | 15.57 | 8.58 | – | 28.9 | L/µmol | see PARAMETER_SETS |
    | Emax, EC50 | – | – | 83.9, 7.17 µmol/L | – | –, µmol/L | Friberg 2002 Table 4 |
    | IIV ω (log) | Circ0 0.253, MTT 0.139, slope 0.358 | – | CV 0.42/0.16/0.33/0.50 | 0.327/0.172/0.420 | – | as above |
    | residual | log-additive SD 0.424 | – | – | proportional 0.286 | – | as above |

    Kloft's slope 15.57 L/µmol equals 19.27 L/mg (MW 807.9 g/mol); reference_models.md §3.
    """
    if drug not in PARAMETER_SETS:
        raise ModelError(f"friberg2002: no parameter set {drug!r}." + did_you_mean(drug, PARAMETER_SETS)
                         + f" Sets: {sorted(PARAMETER_SETS)}.")
    if not (isinstance(transit, int) and transit >= 1):
        raise ModelError(f"friberg2002: transit={transit!r} must be a positive integer (3 as published).")
    ps = PARAMETER_SETS[drug]
    m = Model(f"friberg2002_{drug}", description=f"Friberg 2002 myelosuppression ({drug}, {ps.cell})",
              citation=FRIBERG_2002 if drug != "docetaxel_kloft" else KLOFT_2006)
    omega = lambda name: ps.omega.get(name)
    circ0 = m.parameter("Circ0", ps.circ0, ANC_UNIT, description=f"baseline {ps.cell}", source=ps.source,
                        iiv=omega("Circ0"))
    mtt = m.parameter("MTT", ps.mtt, "h", description="mean transit time", source=ps.source, iiv=omega("MTT"))
    gamma = m.parameter("gamma", ps.gamma, "", description="feedback exponent", source=ps.source)
    conc = m.input("C", "umol/L", default=0.0, description="drug plasma concentration")
    if ps.slope is not None:
        slope = m.parameter("slope", ps.slope, "L/umol", description="linear drug effect", source=ps.source,
                            iiv=omega("slope"))
        effect = slope * conc
    else:
        emax = m.parameter("Emax", ps.emax, "", description="maximal drug effect", source=ps.source, iiv=omega("Emax"))
        ec50 = m.parameter("EC50", ps.ec50, "umol/L", description="concentration at half Emax", source=ps.source,
                           iiv=omega("EC50"))
        effect = emax * conc / (ec50 + conc)
    ktr = m.define("ktr", (transit + 1) / mtt, "1/h")
    m.define("E_drug", effect, "")
    chain = [m.state("Prol", initial=circ0, unit=ANC_UNIT, description="proliferating cells")]
    chain += [m.state(f"Transit{i}", initial=circ0, unit=ANC_UNIT, description="maturing cells")
              for i in range(1, transit + 1)]
    circ = m.state("Circ", initial=circ0, unit=ANC_UNIT, description=f"circulating {ps.cell}")
    # The floor never binds on a solution; it keeps a rejected solver stage with Circ < 0 from
    # putting NaN into reverse-mode gradients (0 · NaN in the adjoint of the discarded step).
    feedback = (circ0 / sp.Max(circ, 1e-9 * circ0)) ** gamma
    m.ode(chain[0], ktr * chain[0] * (1 - m.symbol("E_drug")) * feedback - ktr * chain[0])
    for upstream, state in zip(chain, chain[1:] + [circ]):
        m.ode(state, ktr * upstream - ktr * state)
    m.observe("ANC" if ps.cell == "neutrophils" else "WBC", circ, ANC_UNIT, error=ps.error)
    return m


CTCAE_NEUTROPENIA = ((4, 0.5), (3, 1.0), (2, 1.5))   # grade, ANC upper bound (10⁹/L), CTCAE v5.0


def neutropenia_grade(anc, lln: float = 2.0):
    """CTCAE v5.0 neutropenia grade (0–4) of ANC in 10⁹/L; ``lln`` is the laboratory's lower limit
    of normal (grade 1 is LLN > ANC ≥ 1.5).  Works on arrays and inside ``jit``."""
    anc = jnp.asarray(anc)
    grade = jnp.where(anc < lln, 1, 0)
    for g, bound in reversed(CTCAE_NEUTROPENIA):
        grade = jnp.where(anc < bound, g, grade)
    return grade
