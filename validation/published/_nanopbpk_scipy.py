"""An independent SciPy implementation of the Lin-lab nanoparticle PBPK (Nano-AI-PBPK-G2
``PBPK/NanoPBPK.R``), written line by line from the R code's ODEs rather than through pbpk's
symbolic compiler — the reference the compiled model is checked against.

``liver_returns_spleen``: True (pbpk's correction) returns (Q_L + Q_S)·C_Lb from the liver to the
venous blood; False reproduces the R code, which returns Q_L·C_Lb only.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

ORDER = ("lung", "brain", "muscle", "kidney", "spleen", "liver", "rest", "tumour")


def simulate(organs: dict, times, dose_mg: float, bw: float = 0.02, *, qcc=16.5, vplasc=0.0355,
             kbilec=3e-5, kurinec=3e-6, liver_returns_spleen: bool = True, rtol=1e-10, atol=1e-14):
    """Amounts (mg) per organ (blood + tissue + phagocytic), in blood, bile and urine at ``times``
    (h) after an IV bolus of ``dose_mg`` into the venous blood.  ``organs``: name -> an object with
    flow, volume, blood, partition, pac, res = (release, kmax, k50, n) or None, res_from_blood."""
    names = [n for n in ORDER if n in organs]
    qc = qcc * bw ** 0.75
    vplas = vplasc * bw
    q = {n: (qc if n == "lung" else qc * organs[n].flow) for n in names if organs[n].flow is not None}
    q["rest"] = qc * (1 - sum(organs[n].flow for n in names if n not in ("lung", "rest")))
    v = {n: bw * organs[n].volume for n in names if organs[n].volume is not None}
    v["rest"] = bw * (1 - sum(organs[n].volume for n in names if n != "rest") - vplasc)
    kbile, kurine = kbilec * bw ** 0.75, kurinec * bw ** 0.75
    idx, k = {}, 2                                # 0 arterial, 1 venous
    for n in names:
        idx[n] = (k, k + 1, k + 2 if organs[n].res else None)
        k += 3 if organs[n].res else 2
    bile, urine, size = k, k + 1, k + 2

    def rhs(t, y):
        dy = np.zeros(size)
        ca, cv = y[0] / (0.2 * vplas), y[1] / (0.8 * vplas)
        cb = {n: y[idx[n][0]] / (v[n] * organs[n].blood) for n in names}
        ct = {n: y[idx[n][1]] / (v[n] * (1 - organs[n].blood)) for n in names}
        venous_return = 0.0
        for n in names:
            o, (b, tt, pc) = organs[n], idx[n]
            pa = o.pac * q[n]
            if n == "lung":
                dy[b] += qc * (cv - cb[n])
            else:
                inflow = q[n] * ca + (q["spleen"] * cb["spleen"] if n == "liver" else 0.0)
                out_q = q[n] + (q["spleen"] if n == "liver" and liver_returns_spleen else 0.0)
                dy[b] += inflow - out_q * cb[n]
                if n != "spleen":
                    venous_return += out_q * cb[n]
            dy[b] += -pa * cb[n] + pa * ct[n] / o.partition
            dy[tt] += pa * cb[n] - pa * ct[n] / o.partition
            if pc is not None:
                rel, kmax, k50, hill = o.res
                x = (t / k50) ** hill
                up = kmax * x / (1 + x)
                src = b if o.res_from_blood else tt
                dy[src] += -up * y[src] + rel * y[pc]
                dy[pc] += up * y[src] - rel * y[pc]
        dy[0] = qc * cb["lung"] - qc * ca
        dy[1] = venous_return - qc * cv
        dy[idx["liver"][1]] -= kbile * ct["liver"]
        dy[bile] = kbile * ct["liver"]
        dy[idx["kidney"][0]] -= kurine * cb["kidney"]
        dy[urine] = kurine * cb["kidney"]
        return dy

    y0 = np.zeros(size)
    y0[1] = dose_mg
    times = np.asarray(times, float)
    sol = solve_ivp(rhs, (0.0, float(times[-1])), y0, method="LSODA", t_eval=times, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(sol.message)
    y = sol.y
    out = {n: sum(y[i] for i in idx[n] if i is not None) for n in names}
    out["blood"] = y[0] + y[1]
    out["bile"], out["urine"] = y[bile], y[urine]
    return out
