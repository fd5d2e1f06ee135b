"""Neural residual terms: a small equinox MLP added to a state's right-hand side.

Declared in the specification, next to the mechanism it completes:

    >>> m.neural("central", inputs=["Cp"], unit="mg/h", scales={"Cp": 5.0}, key=jax.random.key(0))

adds ``NN(Cp/5)`` (in mg/h, converted to the state's unit per time unit) to d(central)/dt.
``gate="Cp"`` multiplies the output by Cp/scale, so the term vanishes with the drug (an
elimination-like term that cannot drive an amount negative).
Inputs are names of states (amounts), observations (e.g. a concentration), covariates, or
``"t"``; each is divided by its scale (default 1) so the network sees numbers of order one.  The
network's last layer starts at zero, so an untrained hybrid *is* the mechanistic model; its
weights are leaves of the compiled model's pytree, so they are trained, saved and loaded like
any other array, and the hybrid simulates, fits and exports exactly like a mechanistic model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp

from ..errors import ModelError, did_you_mean

__all__ = ["NeuralDeclaration", "NeuralTerm", "NeuralResidual", "build_residual", "save_hybrid", "load_hybrid"]

_ACTIVATIONS = {"tanh": jnp.tanh, "softplus": jax.nn.softplus, "relu": jax.nn.relu, "gelu": jax.nn.gelu}


@dataclass(frozen=True)
class NeuralDeclaration:
    """What ``Model.neural`` records: the state, the inputs and their scales, the output unit,
    the network's width, depth and activation, and the key of its initial weights."""

    state: str
    inputs: tuple[str, ...]
    unit: str
    key: jax.Array = field(repr=False)
    scales: tuple[float, ...] = ()
    width: int = 16
    depth: int = 2
    activation: str = "tanh"
    gate: str | None = None

    def __post_init__(self):
        if not self.inputs:
            raise ModelError(f"neural term on {self.state!r}: give at least one input (a state, observation, "
                             "covariate or 't').")
        if self.activation not in _ACTIVATIONS:
            raise ModelError(f"neural term on {self.state!r}: activation={self.activation!r}; expected one of "
                             f"{sorted(_ACTIVATIONS)}." + did_you_mean(self.activation, _ACTIVATIONS))
        if not (isinstance(self.width, int) and self.width > 0 and isinstance(self.depth, int) and self.depth >= 1):
            raise ModelError(f"neural term on {self.state!r}: width and depth must be positive integers.")
        if not isinstance(self.key, jax.Array):
            raise ModelError(f"neural term on {self.state!r}: key must be a JAX PRNG key, e.g. jax.random.key(0).")
        if any(not (s > 0) for s in self.scales):
            raise ModelError(f"neural term on {self.state!r}: every input scale must be positive.")


class NeuralTerm(eqx.Module):
    """One learned term: MLP(inputs / scale) × out_factor added to d(state)/dt."""

    mlp: eqx.nn.MLP
    scale: jax.Array
    state: int = eqx.field(static=True)
    sources: tuple[tuple[str, int], ...] = eqx.field(static=True)   # ("y" | "obs" | "cov" | "t", index)
    gate: tuple[str, int] | None = eqx.field(static=True)          # output × this input (scaled)
    gate_scale: float = eqx.field(static=True)
    out_factor: float = eqx.field(static=True)
    label: str = eqx.field(static=True)

    @staticmethod
    def _pick(kind, i, t, y, cov, obs):
        return jnp.asarray({"y": y, "obs": obs, "cov": cov}[kind][i] if kind != "t" else t, dtype=y.dtype)

    def features(self, t, y, cov, obs):
        return jnp.stack([self._pick(kind, i, t, y, cov, obs) for kind, i in self.sources]) / self.scale

    def __call__(self, t, y, cov, obs):
        out = self.mlp(self.features(t, y, cov, obs)) * self.out_factor
        if self.gate is not None:
            out = out * self._pick(*self.gate, t, y, cov, obs) / self.gate_scale
        return out


class NeuralResidual(eqx.Module):
    """The sum of a model's neural terms, as the compiled model's residual hook."""

    terms: tuple[NeuralTerm, ...]
    observe: Callable | None = eqx.field(static=True)
    n_states: int = eqx.field(static=True)

    def __call__(self, t, y, theta, cov):
        obs = None
        if self.observe is not None:
            obs = jnp.stack([jnp.broadcast_to(jnp.asarray(v, dtype=y.dtype), ()) for v in self.observe(t, y, theta, cov)])
        out = jnp.zeros(self.n_states, dtype=y.dtype)
        for term in self.terms:
            out = out.at[term.state].add(term(t, y, cov, obs))
        return out


def zero_output(net):
    """``net`` (an equinox Linear or MLP) with its output layer zeroed: it starts as the zero
    function, so a model that adds it starts as the model without it."""
    layer = (lambda m: m.layers[-1]) if isinstance(net, eqx.nn.MLP) else (lambda m: m)
    last = layer(net)
    return eqx.tree_at(lambda m: (layer(m).weight, layer(m).bias), net,
                       (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))


def build_residual(compiled, declarations: Sequence[NeuralDeclaration]) -> NeuralResidual:
    """The ``NeuralResidual`` of ``declarations`` for a compiled model (names resolved, units
    converted, last layers zero)."""
    from ..spec.units import convert_factor, parse_unit

    terms, needs_obs = [], False
    for decl in declarations:
        if decl.state not in compiled.state_names:
            raise ModelError(f"neural term: model {compiled.name!r} has no state {decl.state!r}."
                             + did_you_mean(decl.state, compiled.state_names))
        sources = []
        for name in decl.inputs + ((decl.gate,) if decl.gate else ()):
            if name in ("t", "time"):
                sources.append(("t", 0))
            elif name in compiled.state_names:
                sources.append(("y", compiled.state_names.index(name)))
            elif name in compiled.observation_names:
                sources.append(("obs", compiled.observation_names.index(name)))
                needs_obs = True
            elif name in compiled.covariate_names:
                sources.append(("cov", compiled.covariate_names.index(name)))
            else:
                known = [*compiled.state_names, *compiled.observation_names, *compiled.covariate_names, "t"]
                raise ModelError(f"neural term on {decl.state!r}: input {name!r} is not a state, observation, "
                                 "covariate or 't'." + did_you_mean(name, known))
        gate = sources.pop() if decl.gate else None
        scales = decl.scales or (1.0,) * len(sources)
        gate_scale = scales[decl.inputs.index(decl.gate)] if decl.gate in decl.inputs else 1.0
        if len(scales) != len(sources):
            raise ModelError(f"neural term on {decl.state!r}: {len(scales)} scales for {len(sources)} inputs.")
        state_unit = dict(compiled.unit_table)[decl.state]
        target = parse_unit(state_unit, what="state unit") / parse_unit(compiled.time_unit, what="time unit")
        factor = convert_factor(parse_unit(decl.unit, what=f"neural term on {decl.state!r} unit"), target,
                                what=f"neural term on {decl.state!r} (unit {decl.unit!r} vs d{decl.state}/dt)")
        mlp = zero_output(eqx.nn.MLP(len(sources), "scalar", decl.width, decl.depth,
                                     activation=_ACTIVATIONS[decl.activation], key=decl.key, dtype=jnp.float64))
        terms.append(NeuralTerm(mlp=mlp, scale=jnp.asarray(scales, dtype=jnp.float64),
                                state=compiled.state_names.index(decl.state), sources=tuple(sources),
                                gate=gate, gate_scale=float(gate_scale),
                                out_factor=float(factor), label=f"NN({', '.join(decl.inputs)}) -> d{decl.state}/dt"))
    return NeuralResidual(terms=tuple(terms), observe=compiled._observe if needs_obs else None,
                          n_states=len(compiled.state_names))


def save_hybrid(model, path) -> None:
    """Write the trained network weights of a hybrid compiled model (equinox serialisation)."""
    if not isinstance(model.residual, NeuralResidual):
        raise ModelError(f"save_hybrid: model {model.name!r} has no neural terms (declare them with Model.neural).")
    eqx.tree_serialise_leaves(path, model.residual)


def load_hybrid(model, path):
    """``model`` (compiled from the same specification) with the network weights read from ``path``."""
    if not isinstance(model.residual, NeuralResidual):
        raise ModelError(f"load_hybrid: model {model.name!r} has no neural terms to load into.")
    try:
        residual = eqx.tree_deserialise_leaves(path, model.residual)
    except Exception as exc:   # a file of another architecture gives a shape error deep in equinox
        raise ModelError(f"load_hybrid: {path} does not hold the weights of {model.name!r}'s neural terms "
                         f"({len(model.residual.terms)} term(s)): {exc}") from None
    return model.with_residual(residual)


def declare(model_spec, state, inputs, unit, *, key, scales: Mapping[str, float] | None = None, width=16, depth=2,
            activation="tanh", gate: str | None = None) -> NeuralDeclaration:
    """Validate and build a declaration for ``Model.neural``."""
    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    scales = dict(scales or {})
    unknown = [k for k in scales if k not in inputs]
    if unknown:
        raise ModelError(f"neural term on {state!r}: scale given for {unknown[0]!r}, which is not an input "
                         f"{list(inputs)}." + did_you_mean(unknown[0], inputs))
    return NeuralDeclaration(state=state, inputs=inputs, unit=unit, key=key,
                             scales=tuple(float(scales.get(n, 1.0)) for n in inputs), width=int(width),
                             depth=int(depth), activation=activation, gate=gate)
