"""177Lu-PSMA radioligand therapy: a whole-body PBPK model of the Kletting/Begum family with hot
and cold ligand, receptor binding, renal handling, physical decay and in-model dosimetry.

Kletting P, Schuchardt C, Kulkarni HR, et al. PLoS One 2016;11(9):e0162303 (ligand amount and
activity); Begum NJ, Thieme A, Eberhardt N, et al. J Nucl Med 2018;59(6):929-933 (total tumour
volume); Fele-Paranj A, Saboury B, Uribe C, Rahmim A. EJNMMI Radiopharm Chem 2024;9:6,
DOI 10.1186/s41181-023-00236-w (the open PyCNO SBML, github.com/qurit/PyCNO, models/PSMA.sbml).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pbpk.dosimetry import (KIDNEY_ALPHA_BETA, KIDNEY_REPAIR_HALF_LIFE, LU177, OrganLimit, add_absorbed_dose,
                            administration)
from pbpk.errors import ModelError
from pbpk.residual import Combined, Proportional
from pbpk.spec import Model

from . import register

__all__ = ["psma_pbpk", "label_regimen", "cycle_regimen", "PSMA_LIMITS", "SPECIFIC_ACTIVITY", "LESIONS",
           "DOSE_ORGANS"]

CITATION = ("Kletting P et al. PLoS One 2016;11:e0162303; Begum NJ et al. J Nucl Med 2018;59:929; "
            "Fele-Paranj A et al. EJNMMI Radiopharm Chem 2024;9:6 (PyCNO SBML, github.com/qurit/PyCNO)")
_PYCNO = "PyCNO SBML models/PSMA.sbml (Fele-Paranj 2024) [C]"
_AMS = "Amsterdam PSMA-617 PBPK code (ibartelink/Target-Site-PBPK-in-oncology) [C]"
_VISION = "calibrated: VISION dosimetry (J Nucl Med 2024;65:71; ASCO-GU 2022 abstract 97) — validation/published/psma_dosimetry.py"
_KABASAKAL = "calibrated: 24-h urinary excretion 56.5 % (Mol Imaging Radionucl Ther, PMC5472088) — validation/published/psma_dosimetry.py"

# Ligand per administration: PSMA-617 at 82 MBq/nmol (total ligand), so 7.4 GBq ≈ 90 nmol.
SPECIFIC_ACTIVITY = 82.0          # MBq/nmol, Amsterdam PSMA-617 model [C]
LESIONS = {"tumour": (0.40, 50.0)}  # L, nmol/L: PyCNO's three lesions lumped (0.40 L, R0 = 20 nmol)


@dataclass(frozen=True)
class _Organ:
    """Plasma flow ``flow`` (fraction of cardiac plasma flow F) or ``perfusion`` (1/min per L of
    organ); vascular volume as a fraction of plasma volume (``vas_of_plasma``) or of the organ
    (``vas_of_organ``); interstitial volume as a fraction of the organ (``int_of_organ``) or a
    multiple of the vascular volume (``int_of_vas``); PS = kPS·V (1/min per L of organ)."""

    volume: float                   # L (× BW/71 kg when ``scaled``)
    scaled: bool = True
    flow: float | None = None
    perfusion: float | None = None
    vas_of_plasma: float | None = None
    vas_of_organ: float | None = None
    int_of_organ: float | None = None
    int_of_vas: float | None = None
    k_ps: float = 0.02
    receptor: str | None = None      # receptor organ: name of its release-rate parameter


# PyCNO values (volumes: coefficient × BW/71 kg unless ``scaled=False``).  Corrections to the SBML
# (listed in the docstring): liver returns its portal inflow; lung flow = Σ organ flows.
_ORGANS: dict[str, _Organ] = {
    "lungs": _Organ(1.0, vas_of_plasma=0.105, int_of_vas=5.5, k_ps=2.0),
    "brain": _Organ(1.45, flow=0.12, vas_of_plasma=0.012, k_ps=0.0),
    "heart": _Organ(0.341, flow=0.04, vas_of_plasma=0.01, int_of_vas=3.7),
    "bone": _Organ(10.165 - 1.1, flow=0.05, vas_of_plasma=0.03, int_of_vas=8.4),
    "red_marrow": _Organ(1.1, flow=0.03, vas_of_plasma=0.04, int_of_vas=3.7, k_ps=2.0),
    "adipose": _Organ(13.465, flow=0.05, vas_of_plasma=0.05, int_of_vas=15.5),
    "skin": _Organ(3.408, flow=0.05, vas_of_plasma=0.03, int_of_vas=8.9),
    "muscle": _Organ(30.078, flow=0.17, vas_of_plasma=0.14, int_of_vas=5.9),
    "gi": _Organ(1.187, flow=0.16, vas_of_plasma=0.076, int_of_vas=8.8, receptor="normal"),
    "spleen": _Organ(0.183, scaled=False, flow=0.03, vas_of_organ=0.12, int_of_organ=0.2, k_ps=2.0,
                     receptor="normal"),
    "liver": _Organ(1.91, scaled=False, flow=0.065, vas_of_organ=0.085, int_of_organ=0.2, k_ps=2.0, receptor="normal"),
    "salivary": _Organ(0.021, scaled=False, perfusion=0.074, vas_of_organ=0.03 * 0.6, int_of_organ=0.23, k_ps=2.0,
                       receptor="salivary"),
    "lacrimal": _Organ(0.0014, scaled=False, perfusion=0.074, vas_of_organ=0.03 * 0.6, int_of_organ=0.23, k_ps=2.0,
                       receptor="salivary"),
}
_RECEPTOR_DENSITY = {  # nmol/L of organ; normal organs from PyCNO's prostate-relative densities
    "gi": (1.596, _PYCNO + ": 0.06 × prostate (0.1 × 266)"),
    "spleen": (0.532, _PYCNO + ": 0.02 × prostate"),
    "liver": (1.33, _PYCNO + ": 0.05 × prostate"),
}
# Calibrated typical values (validation/published/psma_dosimetry.py fits them to the published
# targets named in the source; the PyCNO defaults are in the docstring).
_CALIBRATED = {"PHI": 0.1575, "Rden_kidney": 12.72, "Rden_salivary": 25.63, "Rden_lacrimal": 93.53}
DOSE_ORGANS = ("kidney", "salivary", "lacrimal", "red_marrow", "liver", "spleen")
TUMOUR_ALPHA_BETA, TUMOUR_REPAIR_HALF_LIFE = 1.5, 1.5     # Gy, h (prostate cancer, [U])

PSMA_LIMITS = (
    OrganLimit("kidney", "bed", 40.0, "Bodei L et al. EJNMMI 2008;35:1847 (DOI 10.1007/s00259-008-0778-1)",
               "no risk factors"),
    OrganLimit("kidney", "bed", 28.0, "Bodei L et al. EJNMMI 2008;35:1847", "risk factors (hypertension, diabetes)"),
    OrganLimit("kidney", "absorbed_dose", 23.0, "EBRT TD5/5 (Emami 1991), commonly quoted for RLT [U]"),
    OrganLimit("red_marrow", "absorbed_dose", 2.0, "commonly quoted red-marrow limit [U]"),
    OrganLimit("salivary", "absorbed_dose", 25.0, "QUANTEC parotid mean-dose guidance (EBRT) [U]"),
)


def label_regimen(activity: float = 7.4, *, cycles: int = 6, interval_weeks: float = 6.0,
                  specific_activity: float = SPECIFIC_ACTIVITY):
    """The VISION / Pluvicto label regimen: ``activity`` GBq IV every ``interval_weeks`` weeks,
    ``cycles`` times (7.4 GBq q6w × 6 = 44.4 GBq).  Times in h."""
    if not (isinstance(cycles, int) and cycles >= 1):
        raise ModelError(f"label_regimen: cycles={cycles!r} must be a positive integer.")
    return cycle_regimen([activity] * cycles, interval_weeks=interval_weeks, specific_activity=specific_activity)


def cycle_regimen(activities, *, interval_weeks: float = 6.0, specific_activity: float = SPECIFIC_ACTIVITY,
                  start: float = 0.0):
    """One administration per cycle with the given activities (GBq), ``interval_weeks`` apart,
    the first at ``start`` (h)."""
    from pbpk.dosing import Regimen

    doses = []
    for i, a in enumerate(activities):
        doses += administration(a, specific_activity=specific_activity, time=start + i * interval_weeks * 7 * 24.0)
    return Regimen.of(*doses)


@register("psma_pbpk", citation=CITATION)
def psma_pbpk(lesions: Mapping[str, tuple[float, float]] | None = None, *, dosimetry: bool = True,
              decay_per_min: float | None = None) -> Model:
    """Whole-body PBPK model of 177Lu-PSMA-617 (Kletting/Begum family, PyCNO parameters).

    Arguments: ``lesions`` maps a lesion name to (volume L, PSMA density nmol/L) — each lesion
    becomes a tumour organ with covariate ``TV_<name>`` (its volume) and parameter
    ``Rden_<name>``; ``dosimetry`` adds the absorbed-dose (and BED) states; ``decay_per_min``
    overrides λ (e.g. PyCNO's 7.15e-5 to reproduce its output).  Time h, amounts nmol, volumes L.

    Structure (every compartment twice, hot and cold ligand; hot decays into cold at λ):
    venous plasma → lungs → arterial plasma → organs → venous plasma, spleen and GI draining into
    the liver.  Receptor organs (lesions, kidneys, salivary and lacrimal glands, liver, spleen,
    GI) have vascular, interstitial, receptor-bound and internalised sub-compartments; the other
    organs (lungs, brain, heart, bone, red marrow, adipose, skin, muscle, rest) vascular and
    interstitial ones (brain vascular only).  Urine and released (catabolised) ligand are sinks.

    Equations, per organ i and species (C = amount/volume; R_i free receptor, nmol):
        dA_vas,i/dt  = F_i·(C_art − C_vas,i) + PS_i·(C_int,i − C_vas,i)   [liver: + portal inflow]
        dA_int,i/dt  = PS_i·(C_vas,i − C_int,i) + koff·A_b,i − kon·R_i·C_int,i
        dA_b,i/dt    = kon·R_i·C_int,i − (koff + λint)·A_b,i
        dA_in,i/dt   = λint·A_b,i − λrel,i·A_in,i        (released ligand leaves: catabolised)
        R_i          = Rden_i·V_i − A_b,i(hot) − A_b,i(cold)   (receptors recycle on internalisation)
        dA_hot/dt   += −λ·A_hot,  dA_cold/dt += +λ·A_hot   (every compartment)
    Kidney (no PS; the filtrate/interstitium is the binding site):
        filtration φ·GFR·C_vas → int;  int → urine at f_exc·φ·GFR·C_int;
        int → reabsorption pool at (1 − f_exc)·φ·GFR·C_int;  pool → vas at (1 − f_exc)·φ·GFR·C_pool
    Plasma volume V_p = 2.8·(1 − Hct)·BSA (L/m²); cardiac plasma flow F = 1.23·V_p per min;
    organ flows = fraction·F (or perfusion × volume for glands and lesions); rest closes F;
    lung flow = sum of all organ flows.  PS = kPS·V_organ.  Activity = hot nmol × λ·N_A
    (726.8 MBq/nmol).  Dosimetry: D_organ (Gy, self-dose, Δ = 147.9 keV per decay) and, for
    kidneys and lesions, the LQ BED of the actual dose-rate history (``pbpk.dosimetry``).

    | parameter | value | unit | source |
    |---|---|---|---|
    | LAMBDA | 7.242e-5 (T½ 6.647 d) | 1/min | Pluvicto SmPC (PyCNO uses 7.15e-5) |
    | KON | 0.046 | L/nmol/min | PyCNO |
    | KOFF | 0.368 | 1/min | PyCNO (K_D 8 nM) |
    | LAMBDA_INT | 0.001 | 1/min | PyCNO (all organs) |
    | LAMBDA_REL_tumour / kidney / salivary / normal | 1.5e-4 / 2.9e-4 / 4.2e-4 / 2.9e-4 | 1/min | PyCNO (lacrimal = salivary, assumption) |
    | HCT | 0.4 | – | PyCNO |
    | PHI | calibrated (PyCNO 0.66) | – | 24-h urinary excretion 56.5 % (Kabasakal, PMC5472088) |
    | F_EXC | 0.96 | – | PyCNO / Amsterdam |
    | V_kidney | 0.311 | L | PyCNO |
    | Rden_kidney | calibrated (PyCNO 14) | nmol/L | VISION kidney 0.43 Gy/GBq |
    | Rden_salivary | calibrated (PyCNO 38) | nmol/L | VISION salivary 0.63 Gy/GBq |
    | Rden_lacrimal | calibrated (no PyCNO value) | nmol/L | VISION lacrimal 2.1 Gy/GBq |
    | Rden_liver / spleen / gi | 1.33 / 0.532 / 1.596 | nmol/L | PyCNO (0.05 / 0.02 / 0.06 × prostate 26.6) |
    | Rden_<lesion> | 50 (default lesion) | nmol/L | PyCNO lesions (57, 19, 266 nmol/L; 20 nmol) lumped |
    | covariates BW, BSA, GFR, TV_<lesion> | 100 kg, 1.9 m², 88.74 mL/min, 0.40 L | | PyCNO (GFR = TER/3·201/151) |

    Organ geometry (volume × BW/71 kg unless fixed; vascular, interstitial fractions; kPS /min):

    | quantity | value | unit | source |
    |---|---|---|---|
    | lungs | 1.0·BW/71, vas 0.105 V_p, int 5.5 vas, kPS 2 | L | PyCNO |
    | brain | 1.45·BW/71, vas 0.012 V_p, kPS 0 | L | PyCNO |
    | heart / bone / red marrow | 0.341 / 9.065 / 1.1 ·BW/71; vas 0.01 / 0.03 / 0.04 V_p; int 3.7 / 8.4 / 3.7 vas | L | PyCNO |
    | adipose / skin / muscle | 13.465 / 3.408 / 30.078 ·BW/71; vas 0.05 / 0.03 / 0.14 V_p; int 15.5 / 8.9 / 5.9 vas | L | PyCNO |
    | GI | 1.187·BW/71, vas 0.076 V_p, int 8.8 vas, flow 0.16 F | L | PyCNO |
    | spleen / liver | 0.183 / 1.91 fixed; vas 0.12 / 0.085 V; int 0.2 V; kPS 2; flow 0.03 / 0.065 F | L | PyCNO |
    | kidneys | V_kidney; vas 0.055 V; int 0.15 V; pool (V − int − vas)·2/3; flow 0.19 F | L | PyCNO |
    | salivary glands | 0.021 fixed; vas 0.03(1−Hct) V; int 0.23 V; perfusion 0.074/min; kPS 2 | L | PyCNO |
    | lacrimal glands | 0.0014 fixed (2 × 0.7 g); as salivary | L | assumption [U] |
    | lesions | TV; vas 0.05(1−Hct) TV; int 0.38 TV; perfusion 0.5/min; kPS 0.6 | L | PyCNO |
    | flows: muscle 0.17, brain 0.12, skin / adipose / bone 0.05, red marrow 0.03, heart 0.04 | fraction of F | – | PyCNO |
    | specific activity | 82 | MBq/nmol | Amsterdam PSMA-617 model (7.4 GBq ≈ 90 nmol) |

    Corrections to the PyCNO SBML (all deliberate): λ of Lu-177 (7.242e-5, not 7.15e-5 /min);
    the liver returns its portal inflow (the SBML returns only the hepatic-arterial flow); the
    lungs carry the sum of organ flows including lesions (the SBML: F only); the reabsorption
    pool returns at its own volume (the SBML divides by the internalised volume) and decays;
    skin back-flux uses the interstitial volume for both species; arterial and venous plasma are
    subtracted from the rest-of-body vascular volume; urine and released ligand are kept as
    compartments so that mass balance can be checked.  A lacrimal gland was added (absent from
    the SBML) with salivary-gland kinetics; the prostate was left out (post-prostatectomy mCRPC).
    """
    lesions = dict(LESIONS if lesions is None else lesions)
    for name, spec in lesions.items():
        if not (isinstance(name, str) and name.isidentifier()) or name in _ORGANS or name == "kidney":
            raise ModelError(f"psma_pbpk: lesion name {name!r} must be an identifier other than an organ name.")
        if not (isinstance(spec, tuple) and len(spec) == 2 and all(float(v) > 0 for v in spec)):
            raise ModelError(f"psma_pbpk: lesion {name!r} must be (volume in L, receptor density in nmol/L), "
                             f"both > 0; got {spec!r}.")
    return _Builder(lesions, dosimetry, decay_per_min).build()


class _Builder:
    def __init__(self, lesions, dosimetry, decay_per_min):
        self.lesions, self.dosimetry = lesions, dosimetry
        self.m = m = Model("psma_pbpk", time="h", amount="nmol", volume="L",
                           description="177Lu-PSMA whole-body PBPK (hot/cold ligand, receptor binding)",
                           citation=CITATION)
        self.bw = m.covariate("BW", "kg", reference=100.0, description="body weight")
        self.bsa = m.covariate("BSA", "m**2", reference=1.9, description="body surface area")
        self.gfr = m.covariate("GFR", "mL/min", reference=88.74, description="glomerular filtration rate")
        lam = LU177.decay_constant / 60.0 if decay_per_min is None else decay_per_min
        self.lam = m.parameter("LAMBDA", lam, "1/min", source=f"Lu-177 T½ 6.647 d ({LU177.source.split(':')[0]})",
                               description="physical decay constant (hot → cold)")
        self.kon = m.parameter("KON", 0.046, "L/nmol/min", source=_PYCNO, description="association rate constant")
        self.koff = m.parameter("KOFF", 0.368, "1/min", source=_PYCNO + " (K_D 8 nM)", description="dissociation rate")
        self.kint = m.parameter("LAMBDA_INT", 0.001, "1/min", source=_PYCNO, description="internalisation rate (all organs)")
        self.krel = {
            "tumour": m.parameter("LAMBDA_REL_tumour", 1.5e-4, "1/min", source=_PYCNO, description="release, lesions"),
            "kidney": m.parameter("LAMBDA_REL_kidney", 2.9e-4, "1/min", source=_PYCNO, iiv=0.3,
                                  description="release from kidney cells"),
            "salivary": m.parameter("LAMBDA_REL_salivary", 4.2e-4, "1/min", source=_PYCNO + " (SG; lacrimal assumed equal)",
                                    description="release, salivary and lacrimal glands"),
            "normal": m.parameter("LAMBDA_REL_normal", 2.9e-4, "1/min", source=_PYCNO, description="release, liver/spleen/GI"),
        }
        self.hct = m.parameter("HCT", 0.4, "", source=_PYCNO, description="haematocrit", bounds=(0.0, 1.0))
        self.phi = m.parameter("PHI", _CALIBRATED["PHI"], "", source=_KABASAKAL + " (PyCNO 0.66)", bounds=(0.0, 1.0),
                               description="filtered fraction of the ligand (φ·GFR is the filtration clearance)")
        self.fexc = m.parameter("F_EXC", 0.96, "", source=_PYCNO, bounds=(0.0, 1.0),
                                description="fraction of the filtrate excreted (rest reabsorbed)")
        self.v_kidney = m.parameter("V_kidney", 0.311, "L", source=_PYCNO, iiv=0.2, description="kidney volume")
        self.rden = {o: m.parameter(f"Rden_{o}", v, "nmol/L", source=s, description=f"PSMA density, {o}")
                     for o, (v, s) in _RECEPTOR_DENSITY.items()}
        for o in ("kidney", "salivary", "lacrimal"):
            self.rden[o] = m.parameter(f"Rden_{o}", _CALIBRATED[f"Rden_{o}"], "nmol/L", source=_VISION, iiv=0.3,
                                       description=f"PSMA density, {o}")
        self.tv = {}
        for name, (vol, dens) in self.lesions.items():
            self.rden[name] = m.parameter(f"Rden_{name}", dens, "nmol/L", iiv=0.5, description=f"PSMA density, {name}",
                                          source="PyCNO lesions (57, 19, 266 nmol/L; 20 nmol in 0.40 L) lumped [C]")
            self.tv[name] = m.covariate(f"TV_{name}", "L", reference=vol, description=f"volume of lesion {name} (CT)")
        self.vp = 2.8 * (1 - self.hct) * self.bsa * m.quantity(1.0, "L/m**2")
        self.f_total = 1.23 * self.vp / m.quantity(1.0, "min")
        self.cmt: dict[tuple[str, str, str], object] = {}

    # ------------------------------------------------------------------ structure
    def build(self) -> Model:
        m, vp = self.m, self.vp
        pools = (("vein", 0.225 * vp, "venous plasma"), ("art", 0.105 * vp, "arterial plasma"),
                 ("urine", 1.0, "cumulative urine"), ("released", 1.0, "ligand released from cells (catabolised)"))
        for pool, volume, text in pools:
            for s in ("hot", "cold"):
                self.cmt[pool, "", s] = m.compartment(f"{pool}_{s}", volume=volume, description=f"{text} ({s})")
        volumes, flows = self._organ_geometry()
        self.volumes = volumes
        for organ, o in _ORGANS.items():
            self._tissue(organ, *volumes[organ], k_ps=o.k_ps, release=self.krel.get(o.receptor))
        for organ in self.lesions:
            self._tissue(organ, *volumes[organ], k_ps=0.6, release=self.krel["tumour"])
        self._tissue("rest", *volumes["rest"], k_ps=_Organ.k_ps, release=None)
        self._kidney()
        self._circulation(flows)
        self._decay()
        self._observations()
        return m

    def _organ_geometry(self):
        m, vp = self.m, self.vp
        scale = self.bw / m.quantity(71.0, "kg")
        volumes, flows = {}, {}
        vas_sum = 0
        for name, o in _ORGANS.items():
            v = m.quantity(o.volume, "L") * (scale if o.scaled else 1)
            vas = o.vas_of_plasma * vp if o.vas_of_plasma is not None else o.vas_of_organ * v
            inter = (None if o.k_ps == 0 else o.int_of_organ * v if o.int_of_organ is not None else o.int_of_vas * vas)
            volumes[name] = (v, vas, inter)
            vas_sum += vas
            if o.flow is not None:
                flows[name] = o.flow * self.f_total
            elif o.perfusion is not None:
                flows[name] = m.quantity(o.perfusion, "1/min") * v
        for name, tv in self.tv.items():
            vas = 0.05 * (1 - self.hct) * tv
            volumes[name] = (tv, vas, 0.38 * tv)
            flows[name] = m.quantity(0.5, "1/min") * tv
        vk = self.v_kidney
        volumes["kidney"] = (vk, 0.055 * vk, 0.15 * vk)
        flows["kidney"] = 0.19 * self.f_total
        # Rest of body closes volume (BW) and plasma flow (F) as in PyCNO; its vascular volume is
        # the plasma not elsewhere (PyCNO forgot the arterial and venous pools here).
        named = sum(v for v, _, _ in (volumes[o] for o in (*_ORGANS, "kidney")))
        v_rest = self.bw * m.quantity(1.0, "L/kg") - named
        vas_rest = vp - vas_sum - 0.33 * vp - 0.055 * vk
        volumes["rest"] = (v_rest, vas_rest, 4.1 * vas_rest)
        flows["rest"] = self.f_total - sum(flows[o] for o in _ORGANS if _ORGANS[o].flow is not None) - flows["kidney"] \
            - flows["salivary"] - flows["lacrimal"]
        return volumes, flows

    def _tissue(self, organ, v, vas_v, int_v, *, k_ps, release):
        """Vascular and interstitial spaces; with a ``release`` rate, receptor binding too."""
        m = self.m
        receptor = release is not None
        ps = m.quantity(k_ps, "1/min") * v
        for s in ("hot", "cold"):
            vas = m.compartment(f"{organ}_vas_{s}", volume=vas_v, description=f"{organ} vascular plasma ({s})")
            self.cmt[organ, "vas", s] = vas
            if int_v is None:        # no exchange (brain: blood–brain barrier, kPS = 0)
                continue
            inter = m.compartment(f"{organ}_int_{s}", volume=int_v, description=f"{organ} interstitium ({s})")
            self.cmt[organ, "int", s] = inter
            m.flow(vas, inter, ps * vas.conc)
            m.flow(inter, vas, ps * inter.conc)
            if receptor:
                for sub in ("bound", "intern"):
                    self.cmt[organ, sub, s] = m.compartment(f"{organ}_{sub}_{s}", volume=v,
                                                            description=f"{organ} {sub} ligand ({s})")
        if receptor:
            self._binding(organ, v, release)

    def _binding(self, organ, v, release):
        m = self.m
        free = self.rden[organ] * v - self.cmt[organ, "bound", "hot"].amount - self.cmt[organ, "bound", "cold"].amount
        for s in ("hot", "cold"):
            inter, bound, intern = (self.cmt[organ, sub, s] for sub in ("int", "bound", "intern"))
            m.flow(inter, bound, self.kon * free * inter.conc)
            m.flow(bound, inter, self.koff * bound.amount)
            m.flow(bound, intern, self.kint * bound.amount)
            m.flow(intern, self.cmt["released", "", s], release * intern.amount)

    def _kidney(self):
        m, vk = self.m, self.v_kidney
        filtrate = self.phi * self.gfr
        for s in ("hot", "cold"):
            vas = m.compartment(f"kidney_vas_{s}", volume=0.055 * vk, description=f"kidney vascular plasma ({s})")
            tub = m.compartment(f"kidney_int_{s}", volume=0.15 * vk,
                                description=f"kidney filtrate / interstitium, the binding site ({s})")
            reab = m.compartment(f"kidney_reabs_{s}", volume=(1 - 0.15 - 0.055) * 2 / 3 * vk,
                                 description=f"kidney reabsorption pool ({s})")
            self.cmt["kidney", "vas", s], self.cmt["kidney", "int", s], self.cmt["kidney", "reabs", s] = vas, tub, reab
            for sub in ("bound", "intern"):
                self.cmt["kidney", sub, s] = m.compartment(f"kidney_{sub}_{s}", volume=vk,
                                                           description=f"kidney {sub} ligand ({s})")
            m.flow(vas, tub, filtrate * vas.conc, label=f"glomerular filtration ({s})")
            m.flow(tub, self.cmt["urine", "", s], self.fexc * filtrate * tub.conc, label=f"urinary excretion ({s})")
            m.flow(tub, reab, (1 - self.fexc) * filtrate * tub.conc, label=f"tubular reabsorption ({s})")
            m.flow(reab, vas, (1 - self.fexc) * filtrate * reab.conc, label=f"return to blood ({s})")
        self._binding("kidney", vk, self.krel["kidney"])

    def _circulation(self, flows):
        m = self.m
        lung_flow = sum(flows.values())          # the lungs carry every organ's return, tumours included
        portal = flows["spleen"] + flows["gi"]
        for s in ("hot", "cold"):
            art, vein, lung = self.cmt["art", "", s], self.cmt["vein", "", s], self.cmt["lungs", "vas", s]
            m.flow(vein, lung, lung_flow * vein.conc)
            m.flow(lung, art, lung_flow * lung.conc)
            for organ, q in flows.items():
                vas = self.cmt[organ, "vas", s]
                m.flow(art, vas, q * art.conc)
                if organ in ("spleen", "gi"):
                    m.flow(vas, self.cmt["liver", "vas", s], q * vas.conc)
                else:   # the liver returns its hepatic-arterial and portal inflow (PyCNO: arterial only)
                    m.flow(vas, vein, (q + portal if organ == "liver" else q) * vas.conc)

    def _decay(self):
        for (organ, sub, s), cmt in list(self.cmt.items()):
            if s == "hot":
                self.m.flow(cmt, self.cmt[organ, sub, "cold"], self.lam * cmt.amount, label=f"decay {cmt.name}")

    def _organ_hot(self, organ):
        return sum(c.amount for (o, _, s), c in self.cmt.items() if o == organ and s == "hot")

    def _observations(self):
        m = self.m
        mbq = m.quantity(LU177.molar_activity, "MBq/nmol")
        imaging = Proportional(0.15)
        for organ in ("kidney", "salivary", "lacrimal", "liver", "spleen", *self.lesions):
            m.observe(f"A_{organ}", mbq * self._organ_hot(organ), "MBq", error=imaging)
        m.observe("A_body", mbq * sum(c.amount for (o, _, s), c in self.cmt.items()
                                      if s == "hot" and o not in ("urine", "released")), "MBq", error=imaging)
        m.observe("A_urine", mbq * self.cmt["urine", "", "hot"].amount, "MBq")
        vein = self.cmt["vein", "", "hot"]
        m.observe("C_blood", mbq * vein.conc * (1 - self.hct), "kBq/mL", error=Combined(0.01, 0.1))
        if self.dosimetry:
            kidney_lq = dict(alpha_beta=KIDNEY_ALPHA_BETA, repair_half_life=KIDNEY_REPAIR_HALF_LIFE)
            tumour_lq = dict(alpha_beta=TUMOUR_ALPHA_BETA, repair_half_life=TUMOUR_REPAIR_HALF_LIFE)
            for organ in (*DOSE_ORGANS, *self.lesions):
                lq = kidney_lq if organ == "kidney" else tumour_lq if organ in self.lesions else {}
                mass = self.volumes[organ][0] * m.quantity(1.0, "kg/L")     # tissue density 1 kg/L
                add_absorbed_dose(m, organ, mbq * self._organ_hot(organ), mass, **lq)
