"""The three clinical cases as dosing environments (DESIGN.md, "The three clinical cases").

| case | action | reward | costs |
|---|---|---|---|
| chemotherapy (TNBC, docetaxel q3w) | dose 0/40/50/60/75/100 mg/m² | tumour shrinkage (SLD, fraction of baseline) | grade-4 neutropenia lasting > 7 days |
| radioligand (177Lu-PSMA q6w) | activity 0/3.7/5.55/7.4/9.25 GBq | tumour BED (Gy/10) | kidney BED > 40 Gy; salivary dose > 25 Gy |
| nanoparticle (PEGylated liposomal doxorubicin) | dose 0–50 mg/m² × interval 14/21/28 d | tumour exposure (AUC of C_tumour) | peak skin above the 90th percentile under 40 mg/m² q4w; cumulative anthracycline > 450 mg/m² |

Each environment carries its standard protocol as ``env.standard`` (an action index).  The
limits, their sources and the reasoning are in each function's docstring; the models' own
citations are in models/.
"""

from __future__ import annotations

from .env import DosingEnv, Limit, Reward, Sample

__all__ = ["chemotherapy_env", "nanoparticle_env", "radioligand_env"]


def chemotherapy_env(model=None, *, doses=(0.0, 40.0, 50.0, 60.0, 75.0, 100.0), cycles: int = 6, missing: float = 0.0,
                     grid_hours: float = 6.0, standard: float = 75.0) -> DosingEnv:
    """Docetaxel every 3 weeks for a TNBC patient (``tnbc_docetaxel_patient``: Bruno PK → Kloft
    neutropenia and Claret tumour size).

    The clinic sees Cp 6 h after the infusion start, ANC on days 7 and 21 (pre-dose), and the
    tumour's sum of longest diameters on day 21; each sample may be missing (``missing``).
    Reward: the cycle's SLD decrease as a fraction of the patient's baseline, so the return is
    the fractional shrinkage.  Cost: ANC < 0.5 × 10⁹/L for more than 7 days in a cycle — the
    docetaxel label's trigger for a dose reduction (grade-4 neutropenia lasting > 7 days).  Any
    grade-4 episode would be the stricter choice, but at 75 mg/m² about half the patients have
    one, and the label does not treat it as dose-limiting.  The standard protocol is 75 mg/m².
    The label's levels are 100/75/60; 40 and 50 are offered too, because below 60 the label
    stops treatment while a personalised plan may prefer a lower dose to none.
    """
    from ..models.tnbc import tnbc_docetaxel_patient

    model = model or tnbc_docetaxel_patient().compile()
    samples = (Sample("Cp", days=(0.25,), scale=0.1, log=True, missing=missing),
               Sample("ANC", days=(7.0, 21.0), scale=5.0, log=True, missing=missing),
               Sample("SLD", days=(21.0,), scale=80.0, missing=missing))
    limits = (Limit("ANC", 0.5, "below", longer_than_days=7.0,
                    source="docetaxel label (Taxotere USPI): reduce after ANC < 500/mm³ for > 1 week"),)
    return DosingEnv(model, doses=doses, dose_unit="mg/m^2", into="central", interval_days=21.0, horizon=cycles,
                     infusion_hours=1.0, samples=samples, reward=Reward("SLD", "decrease", relative=True),
                     limits=limits, grid_hours=grid_hours, standard=(standard, 21.0))


def radioligand_env(model=None, *, activities=(0.0, 3.7, 5.55, 7.4, 9.25), cycles: int = 6,
                    interval_weeks: float = 6.0, missing: float = 0.0, grid_hours: float = 12.0,
                    standard: float = 7.4, imaged=("kidney", "salivary", "tumour"), rtol: float = 1e-6,
                    atol: float = 1e-9) -> DosingEnv:
    """177Lu-PSMA-617 every 6 weeks (``psma_pbpk`` with dosimetry).

    One action is one administration: ``activity`` GBq at the model's specific activity, split
    into hot and cold ligand as ``pbpk.dosimetry.administration`` does.  The clinic sees
    quantitative SPECT/CT activities of the ``imaged`` organs at 24 h and 96 h: kidneys,
    salivary glands and tumour, the organs of post-therapy dosimetry.  Reward: the tumour BED
    added by the cycle (Gy/10).  Costs: cumulative kidney BED above 40 Gy (Bodei 2008, patients
    without risk factors) and salivary absorbed dose above 25 Gy (QUANTEC parotid mean dose, an
    external-beam figure [U]); both count in every cycle from their crossing on.  The standard
    protocol is the label's 7.4 GBq.

    The salivary limit binds before the kidney's: on 64 virtual patients the label's 6 × 7.4 GBq
    gave a median salivary dose of 28.4 Gy (5–95 %: 16.1–40.2 Gy, 67 % above 25 Gy) and a median
    kidney BED of 19.2 Gy (none above 40 Gy), consistent with the 0.63 Gy/GBq salivary dose
    of the VISION dosimetry sub-study (× 44.4 GBq = 28 Gy).  The protocol arm is therefore a
    "violator" in most patients: read this env's violation rates against it, not against zero.

    Each cycle integrates the 111-state model with the implicit solver (``rtol``, ``atol``): about
    1 s per patient-course at rtol 1e-4.  Cohorts of thousands and RL training replay
    per-patient tables instead (``pbpk.control.tabulate``; the cumulative quantities are
    BED_kidney, D_salivary and BED_tumour).
    """
    from ..dosimetry import LU177
    from ..models.psma import SPECIFIC_ACTIVITY, psma_pbpk

    model = model or psma_pbpk().compile()
    hot = 1000.0 / LU177.molar_activity                   # nmol per GBq
    cold = max(1000.0 / SPECIFIC_ACTIVITY - hot, 0.0)
    samples = tuple(Sample(f"A_{organ}", days=(1.0, 4.0), scale=100.0, log=True, missing=missing) for organ in imaged)
    limits = (Limit("BED_kidney", 40.0, "above", source="Bodei L et al. EJNMMI 2008;35:1847"),
              Limit("D_salivary", 25.0, "above", source="QUANTEC parotid mean dose (EBRT) [U]"))
    return DosingEnv(model, doses=activities, dose_unit="GBq", into={"vein_hot": hot, "vein_cold": cold},
                     interval_days=7.0 * interval_weeks, horizon=cycles, samples=samples,
                     reward=Reward("BED_tumour", "increase", scale=10.0), limits=limits, grid_hours=grid_hours,
                     standard=(standard, 7.0 * interval_weeks), rtol=rtol, atol=atol)


def nanoparticle_env(model=None, *, doses=(0.0, 20.0, 30.0, 40.0, 50.0), intervals=(14.0, 21.0, 28.0),
                     weeks: int = 24, missing: float = 0.0, grid_hours: float = 6.0,
                     standard=(40.0, 28.0), skin_quantile: float = 0.9) -> DosingEnv:
    """PEGylated liposomal doxorubicin (``pld_human``) over ``weeks`` weeks, dose and interval
    chosen each time.

    The clinic sees total doxorubicin in plasma on days 1 and 7 after each dose.  Reward: the
    tumour's doxorubicin exposure over the interval, AUC of C_tumour (mg·day/L).  Costs:

    * skin: the peak skin concentration above the ``skin_quantile`` (90th percentile) of the
      peaks of a virtual population (2,000 patients, fixed key) treated with 40 mg/m² every 4
      weeks — the schedule tolerated without grade-3 hand–foot syndrome (Markman 2000) and the
      usual HFS-sparing practice, hence the standard here.  A limit at the typical patient's
      peak would make half of the tolerated schedule's patients violators; the quantile keeps
      the constraint at "no worse than nine in ten patients on the tolerated schedule".
    * heart: the cumulative anthracycline dose above 450 mg/m².
    """
    from ..models.liposomal_doxorubicin import CUMULATIVE_LIMIT_MG_M2, pld_human

    model = model or pld_human().compile()
    samples = (Sample("C_total", days=(1.0, 7.0), scale=10.0, log=True, missing=missing),)
    limits = (Limit("C_skin", _skin_limit(model, weeks, skin_quantile), "above",
                    source=f"{skin_quantile:.0%} quantile of peak skin doxorubicin under 40 mg/m² q4w "
                           "(Markman 2000: no grade-3 hand–foot syndrome)"),
              Limit("CUMDOSE", CUMULATIVE_LIMIT_MG_M2, "above", source="anthracycline cardiotoxicity (label)"))
    return DosingEnv(model, doses=doses, dose_unit="mg/m^2", into="liposomal", interval_days=intervals,
                     horizon=-(-weeks * 7 // int(min(intervals))), horizon_days=weeks * 7.0, infusion_hours=1.0,
                     samples=samples, reward=Reward("C_tumour", "auc"), limits=limits, grid_hours=grid_hours,
                     standard=standard)


def _skin_limit(model, weeks, quantile):
    import jax
    import numpy as np

    from ..models.liposomal_doxorubicin import SKIN_REFERENCE_REGIMEN, pld_regimen

    mg_m2, days = SKIN_REFERENCE_REGIMEN
    cycles = int(weeks * 7 // days)
    pop = model.population(2000, jax.random.key(0))
    times = np.arange(0.0, cycles * days * 24.0 + 1e-9, 6.0)
    sol = model.simulate(pld_regimen(1.8, mg_m2, every_days=days, cycles=cycles), times, params=pop)
    return float(np.quantile(np.max(np.asarray(sol["C_skin"]), axis=-1), quantile))
