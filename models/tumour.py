"""Tumour dynamics: growth inhibition (Simeoni 2004, Claret 2009) and tumour–immune models
(Kuznetsov 1994; de Pillis 2005 and 2009).

Each is a PD part driven by the drug exposure through the input ``C`` (a concentration; for
Claret the exposure the paper used), to be connected to a PK model with ``pbpk.compose``.
Unconnected, the input is 0 and the untreated dynamics of the paper result.  The de Pillis
2009 model keeps its own drug and IL-2 compartments, as published.
"""

from __future__ import annotations

import sympy as sp

from pbpk.errors import ModelError, did_you_mean
from pbpk.residual import Additive, Proportional
from pbpk.spec import Model

from . import register

SIMEONI_2004 = ("Simeoni M, Magni P, Cammia C, et al. Predictive pharmacokinetic-pharmacodynamic modeling of tumor "
                "growth kinetics in xenograft models after administration of anticancer agents. Cancer Res "
                "2004;64(3):1094-1101. DOI 10.1158/0008-5472.CAN-03-2524")
CLARET_2009 = ("Claret L, Girard P, Hoff PM, et al. Model-based prediction of phase III overall survival in colorectal "
               "cancer on the basis of phase II tumor dynamics. J Clin Oncol 2009;27(25):4103-4108")
KUZNETSOV_1994 = ("Kuznetsov VA, Makalkin IA, Taylor MA, Perelson AS. Nonlinear dynamics of immunogenic tumors: "
                  "parameter estimation and global bifurcation analysis. Bull Math Biol 1994;56(2):295-321")
DEPILLIS_2005 = ("de Pillis LG, Radunskaya AE, Wiseman CL. A validated mathematical model of cell-mediated immune "
                 "response to tumor growth. Cancer Res 2005;65(17):7950-7958")
DEPILLIS_2009 = ("de Pillis LG, Fister KR, Gu W, et al. Mathematical model creation for cancer chemo-immunotherapy. "
                 "Comput Math Methods Med 2009;10(3):165-184. DOI 10.1080/17486700802216301")
_NLMIXR_SIMEONI = "Simeoni 2004 Table 2, paclitaxel exp. 1 (nlmixr2lib oncology_xenograft_simeoni_2004.R) [C]"
_BIOMD762 = "Kuznetsov 1994 BCL1 estimates (BioModels BIOMD0000000762) [C]"
_MEFAST = "de Pillis 2005 ligand-transduced baseline (MeFAST re-implementation, per-cell units) [C]"
_BIOMD779 = "de Pillis 2009 (BioModels BIOMD0000000779 XPP export) [C]"
_KILL = ("fractional-kill coupling K·(1 − exp(−δ·C)) with de Pillis 2009 K_T and δ (BIOMD0000000779) [C]; "
         "its use for this model is an assumption")


def _fractional_kill(m: Model, state, k: float, delta: float, drug_unit: str = "mg/L"):
    """De Pillis' drug kill term K·(1 − e^(−δ·C))·state, reading the input ``C``."""
    conc = m.input("C", drug_unit, default=0.0, description="drug concentration")
    kill = m.parameter("K_T", k, "1/day", description="maximal drug kill rate", source=_KILL)
    dlt = m.parameter("delta_T", delta, f"1/({drug_unit})", description="drug kill saturation", source=_KILL)
    return kill * (1 - sp.exp(-dlt * conc)) * state


def _lysis(m, d, s, exponent, effectors, tumour):
    """De Pillis' CD8⁺ kill rate d·(L/T)^λ/(s + (L/T)^λ), written as d·L^λ/(s·T^λ + L^λ) so that it
    stays finite (→ d) as the tumour is cleared and (→ 0) before any effector arrives; |·| guards
    the fractional power against the solver's tiny negative undershoots."""
    cell = m.quantity(1.0, "cell")    # fractional powers need dimensionless bases
    lp, tp = sp.Abs(effectors / cell) ** exponent, sp.Abs(tumour / cell) ** exponent
    return d * lp / (s * tp + lp)


@register("simeoni2004", citation=SIMEONI_2004, flows=False)
def simeoni2004(w0: float = 0.1, damage: int = 3, psi: float = 20.0) -> Model:
    """Simeoni 2004 tumour growth inhibition (xenograft).

    Equations (w = total tumour weight; C the drug concentration, µg/mL = mg/L):
        w = x1 + x2 + … + x(n+1)
        dx1/dt = λ0·x1 / [1 + (λ0·w/λ1)^ψ]^(1/ψ) − k2·C·x1
        dx2/dt = k2·C·x1 − k1·x2
        dx(i)/dt = k1·(x(i−1) − x(i)),  i = 3 … n+1       (n = 3 damage stages)
    Growth is exponential (rate λ0) while w < λ1/λ0 and linear (rate λ1) beyond; ψ = 20 makes
    the switch sharp.

    | parameter | value | unit | source |
    |---|---|---|---|
    | lambda0 | 0.273 | 1/day | Simeoni 2004 Table 2, paclitaxel exp. 1 [C] |
    | lambda1 | 0.814 | g/day | idem |
    | k1 | 0.968 | 1/day | idem |
    | k2 | 0.629 | L/(mg·day) (= 6.29e-4 (ng/mL)⁻¹day⁻¹) | idem |
    | w0 | 0.1 (argument) | g | illustrative; the paper's inoculum weight is not verified [U] |
    | psi | 20 | – | Simeoni 2004 (fixed) |
    """
    m = Model("simeoni2004", time="day", amount="g", description="Simeoni 2004 tumour growth inhibition",
              citation=SIMEONI_2004)
    lam0 = m.parameter("lambda0", 0.273, "1/day", description="exponential growth rate", source=_NLMIXR_SIMEONI,
                       iiv=0.2)
    lam1 = m.parameter("lambda1", 0.814, "g/day", description="linear growth rate", source=_NLMIXR_SIMEONI, iiv=0.2)
    k1 = m.parameter("k1", 0.968, "1/day", description="transit rate of damaged cells", source=_NLMIXR_SIMEONI)
    k2 = m.parameter("k2", 0.629, "L/mg/day", description="drug potency", source=_NLMIXR_SIMEONI, iiv=0.3)
    w_init = m.parameter("w0", w0, "g", description="tumour weight at t = 0", source="illustrative [U]")
    conc = m.input("C", "mg/L", default=0.0, description="drug plasma concentration")
    xs = [m.state("x1", initial=w_init, unit="g", description="proliferating tumour")]
    xs += [m.state(f"x{i}", initial=0.0, unit="g", description=f"damage stage {i - 1}") for i in range(2, damage + 2)]
    w = m.define("W", sum(xs), "g")
    growth = lam0 * xs[0] / (1 + (lam0 * w / lam1) ** psi) ** (1 / psi)
    m.ode(xs[0], growth)
    m.ode(xs[0], -k2 * conc * xs[0])
    m.ode(xs[1], k2 * conc * xs[0] - k1 * xs[1])
    for up, x in zip(xs[1:], xs[2:]):
        m.ode(x, k1 * up - k1 * x)
    m.observe("TW", w, "g", error=Proportional(0.1))
    return m


@register("claret2009", citation=CLARET_2009, flows=False)
def claret2009(y0: float = 80.0, exposure_unit: str = "g", KD: float = 0.058, y0_iiv: float | None = None,
               KD_source: str = "") -> Model:
    """Claret 2009 clinical tumour growth inhibition (sum of longest diameters).

    Equations (y = SLD, E = drug exposure, t = time since the start of treatment):
        dy/dt = KL·y − KD·e^(−λ·t)·E(t)·y
    The kill rate decays with λ (resistance).  In the paper E is the daily dose (g); any
    exposure works (set ``exposure_unit``, the KD unit follows; give ``KD`` and its source).

    | parameter | value | unit | source |
    |---|---|---|---|
    | KL | 0.015 | 1/week | 5-FU phase III values in a Pumas exercise [C2]; check Claret Table 2 [U] |
    | KD | 0.058 | 1/(g·week) | idem |
    | LAMBDA | 0.042 | 1/week | idem |
    | y0 | 80 (argument) | mm | illustrative |
    | IIV ω² | 0.556 / 0.540 / 0.450 (KL/KD/λ) | – | idem |
    | residual | additive SD 14.9 | mm | idem |
    """
    src = "Claret 2009 5-FU (Pumas exercise values) [C2]"
    m = Model("claret2009", time="week", amount="mg", description="Claret 2009 tumour size model", citation=CLARET_2009)
    kl = m.parameter("KL", 0.015, "1/week", description="tumour growth rate", source=src, iiv=0.556 ** 0.5)
    kd = m.parameter("KD", KD, f"1/({exposure_unit})/week", description="drug kill rate", source=KD_source or src,
                     iiv=0.540 ** 0.5)
    lam = m.parameter("LAMBDA", 0.042, "1/week", description="resistance (decay of kill)", source=src,
                      iiv=0.450 ** 0.5)
    y_init = m.parameter("y0", y0, "mm", description="baseline sum of longest diameters", source="illustrative",
                         iiv=y0_iiv)
    exposure = m.input("C", exposure_unit, default=0.0, description="drug exposure")
    y = m.state("SLD_state", initial=y_init, unit="mm", description="sum of longest diameters")
    m.ode(y, kl * y - kd * sp.exp(-lam * m.t) * exposure * y)
    m.observe("SLD", y, "mm", error=Additive(14.9))
    return m


KUZNETSOV_PARAMETERS = {"s": 1.3e4, "p": 0.1245, "g": 2.019e7, "m": 3.422e-10, "d": 0.0412, "a": 0.18,
                        "b": 2.0e-9, "n": 1.101e-7}


@register("kuznetsov1994", citation=KUZNETSOV_1994, flows=False)
def kuznetsov1994(E0: float = 3.2e5, T0: float = 5.0e6) -> Model:
    """Kuznetsov 1994 effector–tumour model (BCL1 lymphoma in chimeric mice).

    Equations (E effector cells, T tumour cells; the drug term is this library's coupling):
        dE/dt = s + p·E·T/(g + T) − m·E·T − d·E
        dT/dt = a·T·(1 − b·T) − n·E·T − K_T·(1 − e^(−δ_T·C))·T
    The BioModels Octave export drops the source s; it is restored here (reference_models §4.4).

    | parameter | value | unit | source |
    |---|---|---|---|
    | s | 1.3e4 | cell/day | BIOMD0000000762 [C] |
    | p | 0.1245 | 1/day | idem |
    | g | 2.019e7 | cell | idem |
    | m | 3.422e-10 | 1/(cell·day) | idem |
    | d | 0.0412 | 1/day | idem |
    | a | 0.18 | 1/day | idem |
    | b | 2.0e-9 | 1/cell | idem |
    | n | 1.101e-7 | 1/(cell·day) | idem |
    | K_T, delta_T | 0.9, 1.8328 | 1/day, L/mg | de Pillis 2009 coupling (assumption) |
    | E0, T0 | 3.2e5, 5e6 (arguments) | cell | BioModels initial conditions [C] |
    """
    m = Model("kuznetsov1994", time="day", amount="mg", description="Kuznetsov 1994 effector-tumour",
              citation=KUZNETSOV_1994)
    units = {"s": "cell/day", "p": "1/day", "g": "cell", "m": "1/cell/day", "d": "1/day", "a": "1/day",
             "b": "1/cell", "n": "1/cell/day"}
    par = {k: m.parameter(k, v, units[k], source=_BIOMD762) for k, v in KUZNETSOV_PARAMETERS.items()}
    e = m.state("E", initial=m.quantity(E0, "cell"), unit="cell", description="effector cells")
    t = m.state("T", initial=m.quantity(T0, "cell"), unit="cell", description="tumour cells")
    m.ode(e, par["s"] + par["p"] * e * t / (par["g"] + t) - par["m"] * e * t - par["d"] * e)
    m.ode(t, par["a"] * t * (1 - par["b"] * t) - par["n"] * e * t)
    m.ode(t, -_fractional_kill(m, t, 0.9, 1.8328))
    m.observe("tumour_cells", t, "cell", error=Proportional(0.2))
    m.observe("effector_cells", e, "cell", error=Proportional(0.2))
    return m


DEPILLIS_2005_PARAMETERS = {
    "a": (0.514, "1/day"), "b": (1.02e-9, "1/cell"), "c": (3.23e-7, "1/cell/day"), "d": (5.80, "1/day"),
    "lam": (1.36, ""), "s": (0.25, ""), "sigma": (1.3e4, "cell/day"), "f": (0.0412, "1/day"),
    "g": (0.0249, "1/day"), "h": (2.02e7, "cell^2"), "j": (0.0374, "1/day"), "k": (2.02e7, "cell^2"),
    "m": (0.02, "1/day"), "p": (1.0e-7, "1/cell/day"), "q": (3.42e-10, "1/cell/day"), "r": (1.1e-7, "1/cell/day"),
}


@register("depillis2005", citation=DEPILLIS_2005, flows=False)
def depillis2005(T0: float = 1e4, N0: float = 300.0, L0: float = 0.0) -> Model:
    """de Pillis, Radunskaya & Wiseman 2005 tumour–NK–CD8⁺ model (mouse).

    Equations (T tumour, N NK cells, L CD8⁺ T cells; drug kill is this library's coupling):
        D = d·(L/T)^λ / (s + (L/T)^λ)
        dT/dt = a·T·(1 − b·T) − c·N·T − D·T − K_T·(1 − e^(−δ_T·C))·T
        dN/dt = σ − f·N + g·T²/(h + T²)·N − p·N·T
        dL/dt = −m·L + j·D²T²/(k + D²T²)·L − q·L·T + r·N·T

    | parameter | value | unit | source |
    |---|---|---|---|
    | a, b | 0.514, 1.02e-9 | 1/day, 1/cell | MeFAST re-implementation, per-cell units [C] |
    | c, d | 3.23e-7, 5.80 | 1/(cell·day), 1/day | idem |
    | lam, s | 1.36, 0.25 | – | idem |
    | sigma, f, g, h | 1.3e4, 0.0412, 0.0249, 2.02e7 | cell/day, 1/day, 1/day, cell² | idem |
    | j, k, m | 0.0374, 2.02e7, 0.02 | 1/day, cell², 1/day | idem |
    | p, q, r | 1e-7, 3.42e-10, 1.1e-7 | 1/(cell·day) | idem |
    | K_T, delta_T | 0.9, 1.8328 | 1/day, L/mg | de Pillis 2009 coupling (assumption) |
    | T0, N0, L0 | 1e4, 300, 0 (arguments) | cell | paper's initial conditions [C] |
    """
    m = Model("depillis2005", time="day", amount="mg", description="de Pillis 2005 tumour-NK-CD8",
              citation=DEPILLIS_2005)
    P = {k: m.parameter(k, v, u, source=_MEFAST) for k, (v, u) in DEPILLIS_2005_PARAMETERS.items()}
    T = m.state("T", initial=m.quantity(T0, "cell"), unit="cell", description="tumour cells")
    N = m.state("N", initial=m.quantity(N0, "cell"), unit="cell", description="NK cells")
    L = m.state("L", initial=m.quantity(L0, "cell"), unit="cell", description="CD8+ T cells")
    D = m.define("D", _lysis(m, P["d"], P["s"], P["lam"], L, T), "1/day")
    m.ode(T, P["a"] * T * (1 - P["b"] * T) - P["c"] * N * T - D * T)
    m.ode(T, -_fractional_kill(m, T, 0.9, 1.8328))
    m.ode(N, P["sigma"] - P["f"] * N + P["g"] * T ** 2 / (P["h"] + T ** 2) * N - P["p"] * N * T)
    dt = D * T / m.quantity(1.0, "1/day")   # D·T as a cell count inside the saturating term
    m.ode(L, -P["m"] * L + P["j"] * dt ** 2 / (P["k"] + dt ** 2) * L - P["q"] * L * T + P["r"] * N * T)
    for name, state in (("tumour_cells", T), ("NK_cells", N), ("CD8_cells", L)):
        m.observe(name, state, "cell", error=Proportional(0.2))
    return m


DEPILLIS_2009_PARAMETERS = {
    "a": (0.431, "1/day"), "b": (1.02e-9, "1/cell"), "c": (2.9077e-13, "1/cell/day"),
    "K_T": (0.9, "1/day"), "delta_T": (1.8328, "L/mg"), "e_frac": (0.111, ""), "f": (0.0125, "1/day"),
    "p": (2.794e-13, "1/cell/day"), "p_N": (0.068, "1/day"), "g_N": (2.5036e5, "IU/L"), "K_N": (0.0675, "1/day"),
    "delta_N": (1.8328, "L/mg"), "m": (0.009, "1/day"), "theta": (2.5036e-3, "IU/L"), "q": (3.422e-10, "1/cell/day"),
    "r1": (2.9077e-11, "1/cell/day"), "r2": (5.8467e-13, "1/cell/day"), "p_I": (2.971, "1/day"),
    "g_I": (2503.6, "IU/L"), "u": (4.417e-14, "1/cell^2/day"), "kappa": (2503.6, "IU/L"), "j": (0.01245, "1/day"),
    "k": (2.019e7, "cell"), "K_L": (0.0486, "1/day"), "delta_L": (1.8328, "L/mg"), "alpha_beta": (2.25e9, "cell"),
    "beta": (0.0063, "1/day"), "K_C": (0.034, "1/day"), "delta_C": (1.8328, "L/mg"), "gamma": (0.5199, "1/day"),
    "mu_I": (11.7427, "1/day"), "phi": (2.38405e-7, "IU/L/cell/day"), "omega": (0.07874, "IU/L/cell/day"),
    "zeta": (2503.6, "IU/L"),
}
DEPILLIS_2009_PATIENTS = {9: (2.34, 2.09, 3.8e-3), 10: (1.88, 1.81, 3.5e-2)}   # d (1/day), l, s


@register("depillis2009", citation=DEPILLIS_2009, flows=False)
def depillis2009(patient: int = 9, drug: str = "internal") -> Model:
    """de Pillis 2009 human chemo-immunotherapy model (tumour, NK, CD8⁺, circulating
    lymphocytes, chemotherapy drug, IL-2).

    Equations (kill(x) = K_x·(1 − e^(−δ_x·M)); D = d·(L/T)^l / (s + (L/T)^l)):
        dT/dt = a·T·(1 − b·T) − c·N·T − D·T − kill_T·T
        dN/dt = f·(e·C − N) − p·N·T + p_N·N·I/(g_N + I) − kill_N·N
        dL/dt = −θ·m·L/(θ + I) + j·T·L/(k + T) − q·L·T + (r1·N + r2·C)·T − u·L²·C·I/(κ + I)
                − kill_L·L + p_I·L·I/(g_I + I)
        dC/dt = β·(α/β − C) − kill_C·C
        dM/dt = −γ·M + v_M          (M: drug in the ``drug`` compartment of 1 L; doses are v_M)
        dI/dt = −μ_I·I + φ·C + ω·L·I/(ζ + I) + v_I     (v_I: IL-2 infusion, input, default 0)
    With ``drug="input"`` the drug compartment is replaced by the input ``C`` (mg/L) from a PK
    model.  The curated SBML sets d = l = s = 0 and writes φ for θ in the CD8 turnover; the
    paper's patient values and θ are used here (reference_models §4.5).  The circulating
    lymphocytes are the state ``C_lymph``.

    | parameter | value | unit | source |
    |---|---|---|---|
    | a, b, c | 0.431, 1.02e-9, 2.9077e-13 | 1/day, 1/cell, 1/(cell·day) | BIOMD0000000779 [C] |
    | K_T, K_N, K_L, K_C | 0.9, 0.0675, 0.0486, 0.034 | 1/day | idem |
    | delta_T = delta_N = delta_L = delta_C | 1.8328 | L/mg | idem |
    | e_frac (paper e), f, p | 0.111, 0.0125, 2.794e-13 | –, 1/day, 1/(cell·day) | idem |
    | p_N, g_N | 0.068, 2.5036e5 | 1/day, IU/L | idem |
    | m, theta, q | 0.009, 2.5036e-3, 3.422e-10 | 1/day, IU/L, 1/(cell·day) | idem |
    | r1, r2 | 2.9077e-11, 5.8467e-13 | 1/(cell·day) | idem |
    | p_I, g_I, u, kappa | 2.971, 2503.6, 4.417e-14, 2503.6 | 1/day, IU/L, 1/(cell²·day), IU/L | idem |
    | j, k | 0.01245, 2.019e7 | 1/day, cell | idem |
    | alpha_beta, beta | 2.25e9, 0.0063 | cell, 1/day | idem |
    | gamma, mu_I, phi, omega, zeta | 0.5199, 11.7427, 2.38405e-7, 0.07874, 2503.6 | 1/day, 1/day, IU/(L·cell·day), IU/(L·cell·day), IU/L | idem (ω unit: IL-2 produced per activated cell) |
    | d, l, s | patient 9: 2.34, 2.09, 3.8e-3; patient 10: 1.88, 1.81, 3.5e-2 | 1/day, –, – | idem |

    Initial conditions: T 1e7, N 2.5e8, L 5.268e5, C 2.25e9 cells, M 0, I 1073 IU/L [C].
    """
    if patient not in DEPILLIS_2009_PATIENTS:
        raise ModelError(f"depillis2009: patient={patient!r}; published patients are {sorted(DEPILLIS_2009_PATIENTS)}.")
    if drug not in ("internal", "input"):
        raise ModelError(f"depillis2009: drug={drug!r} must be 'internal' or 'input'." + did_you_mean(drug, ["internal", "input"]))
    m = Model("depillis2009", time="day", amount="mg", description="de Pillis 2009 chemo-immunotherapy",
              citation=DEPILLIS_2009)
    P = {k: m.parameter(k, v, u, source=_BIOMD779) for k, (v, u) in DEPILLIS_2009_PARAMETERS.items()}
    for k, v, u in zip(("d", "l", "s"), DEPILLIS_2009_PATIENTS[patient], ("1/day", "", "")):
        P[k] = m.parameter(k, v, u, source=f"de Pillis 2009 patient {patient} [C]")
    cells = lambda name, v, what: m.state(name, initial=m.quantity(v, "cell"), unit="cell", description=what)
    T, N = cells("T", 1e7, "tumour cells"), cells("N", 2.5e8, "NK cells")
    L, C = cells("L", 5.268e5, "CD8+ T cells"), cells("C_lymph", 2.25e9, "circulating lymphocytes")
    I = m.state("I", initial=m.quantity(1073.0, "IU/L"), unit="IU/L", description="IL-2")
    if drug == "internal":
        M = m.compartment("drug", volume=m.quantity(1.0, "L"), description="chemotherapy drug (paper's M)").conc
        m.flow("drug", None, P["gamma"] * m.symbol("drug"))
    else:
        M = m.input("C", "mg/L", default=0.0, description="drug concentration")
    v_i = m.input("v_I", "IU/L/day", default=0.0, description="IL-2 infusion rate")
    kill = lambda x: P[f"K_{x}"] * (1 - sp.exp(-P[f"delta_{x}"] * M))
    D = m.define("D", _lysis(m, P["d"], P["s"], P["l"], L, T), "1/day")
    m.ode(T, P["a"] * T * (1 - P["b"] * T) - P["c"] * N * T - D * T - kill("T") * T)
    m.ode(N, P["f"] * (P["e_frac"] * C - N) - P["p"] * N * T + P["p_N"] * N * I / (P["g_N"] + I) - kill("N") * N)
    m.ode(L, -P["theta"] * P["m"] * L / (P["theta"] + I) + P["j"] * T * L / (P["k"] + T) - P["q"] * L * T
          + (P["r1"] * N + P["r2"] * C) * T - P["u"] * L ** 2 * C * I / (P["kappa"] + I) - kill("L") * L
          + P["p_I"] * L * I / (P["g_I"] + I))
    m.ode(C, P["beta"] * (P["alpha_beta"] - C) - kill("C") * C)
    m.ode(I, -P["mu_I"] * I + P["phi"] * C + P["omega"] * L * I / (P["zeta"] + I) + v_i)
    for name, state in (("tumour_cells", T), ("NK_cells", N), ("CD8_cells", L), ("lymphocytes", C)):
        m.observe(name, state, "cell", error=Proportional(0.2))
    return m
