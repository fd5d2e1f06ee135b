"""The TNBC docetaxel patient: Bruno 1996 PK + Kloft 2006 neutropenia + a Claret-type tumour
size model, composed with ``pbpk.compose`` from the library parts (nothing re-written)."""

from __future__ import annotations

from pbpk.spec import compose, renamed

from . import register
from .docetaxel import BRUNO_1996, docetaxel_bruno1996
from .myelosuppression import KLOFT_2006, friberg2002
from .tumour import CLARET_2009, claret2009

# Claret's KD for docetaxel plasma concentration is not published; this value makes the typical
# patient's sum of longest diameters fall by 30 % (the RECIST partial-response line) after four
# cycles of 75 mg/m² (validation/recovery/chemo_recovery.py checks it).
KD_DOCETAXEL = 7.7   # 1/((mg/L)·week)


@register("tnbc_docetaxel_patient", citation="; ".join((BRUNO_1996, KLOFT_2006, CLARET_2009)), flows=False)
def tnbc_docetaxel_patient(kd: float = KD_DOCETAXEL, sld0: float = 80.0):
    """Docetaxel PK → ANC (Friberg/Kloft) and → tumour size (Claret), one composed model.

    Equations: those of ``docetaxel_bruno1996``, ``friberg2002("docetaxel_kloft")`` with
    C = C_molar (µmol/L), and ``claret2009`` with exposure C = Cp (mg/L):
        dSLD/dt = KL·SLD − KD·e^(−λ·t)·Cp(t)·SLD

    | parameter | value | unit | source |
    |---|---|---|---|
    | CL, V1, Q2, V2, Q3, V3 | see docetaxel_bruno1996 | L/h, L | Bruno 1996 [C] |
    | Circ0, MTT, gamma, slope | 5.22, 84.2, 0.145, 15.57 | 10⁹/L, h, –, L/µmol | Kloft 2006 [C] |
    | KL, LAMBDA | 0.015, 0.042 | 1/week | Claret 2009 (5-FU) [C2] |
    | KD | 7.7 (argument) | 1/((mg/L)·week) | calibrated: typical −30 % after 4 × 75 mg/m² (assumption) |
    | y0 | 80 (argument), IIV ω 0.3 | mm | illustrative |
    """
    pk = docetaxel_bruno1996()
    pk.define("C_mass", pk.compartments["central"].conc, "mg/L")
    tumour = renamed(claret2009(y0=sld0, exposure_unit="mg/L", KD=kd, y0_iiv=0.3, KD_source=
                                "calibrated to a typical −30 % after 4 cycles of 75 mg/m² (assumption)"), {"C": "C_tumour"})
    return compose(pk, friberg2002("docetaxel_kloft"), tumour, links={"C": "C_molar", "C_tumour": "C_mass"},
                   name="tnbc_docetaxel_patient")
