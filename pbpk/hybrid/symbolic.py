"""Reading out what a neural term learned: its values against its input, and a symbolic fit over
a small library of pharmacological forms (linear, Michaelis–Menten, Hill, Emax), offered back
as an expression to put in the specification in place of the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ModelError
from .neural import NeuralResidual

__all__ = ["learned_term", "symbolic_readout", "SymbolicFit", "FORMS"]

# name -> (function of x and parameters, initial guess from (x, y), parameter names, expression)
FORMS = {
    "linear": (lambda x, a: a * x, lambda x, y: [np.polyfit(x, y, 1)[0]], ("slope",), "{slope} * {x}"),
    "michaelis_menten": (lambda x, vmax, km: vmax * x / (km + x),
                         lambda x, y: [2 * y[np.argmax(np.abs(y))], np.median(x)], ("Vmax", "Km"),
                         "{Vmax} * {x} / ({Km} + {x})"),
    "hill": (lambda x, vmax, k50, n: vmax * np.abs(x) ** n / (np.abs(k50) ** n + np.abs(x) ** n),
             lambda x, y: [2 * y[np.argmax(np.abs(y))], np.median(x), 1.0], ("Vmax", "K50", "n"),
             "{Vmax} * {x}**{n} / ({K50}**{n} + {x}**{n})"),
    "emax": (lambda x, e0, emax, ec50: e0 + emax * x / (ec50 + x),
             lambda x, y: [y[0], 2 * (y[-1] - y[0]), np.median(x)], ("E0", "Emax", "EC50"),
             "{E0} + {Emax} * {x} / ({EC50} + {x})"),
}


def learned_term(model, values, *, term: int = 0, at=None, gate_value=None):
    """The learned term (in its declared unit converted to state unit per time) for the values
    of its first input, the other inputs held at ``at`` (a vector of the term's input values in
    input units; default zeros).  A gate that is one of the inputs takes its value from there;
    a gate that is not needs ``gate_value`` (in its unit).  Returns a numpy array like
    ``values``."""
    if not isinstance(model.residual, NeuralResidual):
        raise ModelError(f"learned_term: model {model.name!r} has no neural terms.")
    if not 0 <= term < len(model.residual.terms):
        raise ModelError(f"learned_term: term={term}; the model has {len(model.residual.terms)} neural term(s).")
    t = model.residual.terms[term]
    if t.gate is not None and t.gate not in t.sources and gate_value is None:
        raise ModelError(f"learned_term: the gate of {t.label} is not one of its inputs; give gate_value=.")
    base = jnp.zeros(len(t.sources)) if at is None else jnp.asarray(at, dtype=jnp.float64)
    if base.shape != (len(t.sources),):
        raise ModelError(f"learned_term: at= has shape {base.shape}; {t.label} has {len(t.sources)} input(s).")
    x = jnp.asarray(values, dtype=jnp.float64)

    def one(v):
        raw = base.at[0].set(v)
        out = t.mlp(raw / t.scale) * t.out_factor
        if t.gate is not None:
            gate = raw[t.sources.index(t.gate)] if t.gate in t.sources else gate_value
            out = out * gate / t.gate_scale
        return out

    return np.asarray(jax.vmap(one)(x))


@dataclass(frozen=True)
class SymbolicFit:
    form: str
    parameters: dict
    aic: float
    r2: float
    expression: str


def symbolic_readout(x, y, *, forms=tuple(FORMS), input_name: str = "C") -> list[SymbolicFit]:
    """Least-squares fits of each form to (x, y), best (lowest AIC) first; ``expression`` is a
    string for ``Model.flow``/``Model.ode`` with ``input_name`` as the input."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(x, float), np.asarray(y, float)
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        raise ModelError(f"symbolic_readout: unknown form {unknown[0]!r}; forms are {list(FORMS)}.")
    fits = []
    for name in forms:
        fn, guess, names, template = FORMS[name]
        try:
            p, _ = curve_fit(fn, x, y, p0=guess(x, y), maxfev=20000)
        except (RuntimeError, ValueError):
            continue
        rss = float(np.sum((fn(x, *p) - y) ** 2))
        n = len(x)
        aic = n * np.log(max(rss, 1e-300) / n) + 2 * len(p)
        r2 = 1.0 - rss / float(np.sum((y - y.mean()) ** 2))
        params = dict(zip(names, (float(v) for v in p)))
        fits.append(SymbolicFit(name, params, float(aic), float(r2),
                                template.format(x=input_name, **{k: f"{v:.6g}" for k, v in params.items()})))
    return sorted(fits, key=lambda f: f.aic)
