"""Why this dose: an explained recommendation from a twin-holding policy at one decision.

    rec = explain(env, policy, carry, obs, key)      # the policy's state and the latest samples
    rec.alternatives      # per action: forecast efficacy (mean, 90 % CrI), P(each limit), allowed
    rec.binding           # the limit that excludes the next more intense action, if one does
    rec.parameters        # elasticities of the forecast to the patient's parameters (autodiff)
    rec.observations      # elasticities of the forecast to the samples just seen (autodiff)
    rec.global_indices    # with explain(..., sobol_samples=N): Sobol' indices over the posterior
    print(rec.text())

The forecast is the twin's (``ParticleTwin``): every particle advanced one cycle under every
action.  Parameter elasticities are ∂(forecast)/∂(log parameter), averaged over the particles
with their weights, holding each particle's current state — "10 % more clearance changes the
forecast by 0.1 × this".  Observation elasticities differentiate the posterior mean forecast
through the weights the last samples gave the particles (∂/∂ log sample), i.e. which samples
pulled the twin, and so the decision, where it is.  Two forecasts are explained: the next
cycle's efficacy (the env's reward) and, per limit, the cycle's extreme of the limited output
(its minimum for a "below" limit, maximum for "above") — the continuous quantity behind P(limit).

Elasticities are local (a derivative at each particle).  ``global_sensitivity`` gives the
variance-based view with SALib: first-order and total Sobol' indices of the same forecasts over
the twin's posterior — which parameters' remaining uncertainty the forecast's spread comes from,
so which measurement would most sharpen the decision.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..errors import ModelError
from .closed_loop import _twin
from .env import DosingEnv
from .particles import ParticleTwin, weighted_quantile

__all__ = ["Recommendation", "explain", "global_sensitivity"]


@dataclasses.dataclass(frozen=True, eq=False)
class Recommendation:
    action: int
    dose: float
    interval_days: float
    dose_unit: str
    risk_level: float
    alternatives: pd.DataFrame
    binding: str | None
    parameters: pd.DataFrame
    observations: pd.DataFrame
    global_indices: pd.DataFrame | None = None

    def text(self) -> str:
        """The recommendation in three sentences: what, which limit binds, what drives it."""
        row = self.alternatives.loc[self.action]
        lines = [f"Give {self.dose:g} {self.dose_unit} (next cycle {self.interval_days:g} d): forecast efficacy "
                 f"{row['efficacy_mean']:.3g} (90 % CrI {row['efficacy_q05']:.3g} to {row['efficacy_q95']:.3g}), "
                 f"P(any limit) {row['P(any limit)']:.3f} against an allowed {self.risk_level:g}."]
        lines.append(self.binding or "No limit binds: this is the most intense action offered.")
        top = self.parameters["efficacy"].abs().sort_values(ascending=False).index[:3]
        lines.append("Efficacy forecast most sensitive to " + ", ".join(
            f"{p} ({self.parameters.loc[p, 'efficacy']:+.2g} per log-unit)" for p in top) + ".")
        if len(self.observations):
            key = self.observations.columns[-1]
            s = self.observations[key].abs().idxmax()
            lines.append(f"Of the samples just seen, {s} moved the forecast {key} most "
                         f"({self.observations.loc[s, key]:+.2g} per log-unit).")
        if self.global_indices is not None:
            st = self.global_indices.loc["efficacy", "ST"].sort_values(ascending=False)
            lines.append(f"Of the efficacy forecast's variance over the posterior, {st.index[0]} accounts for "
                         f"{st.iloc[0]:.0%} (total Sobol' index).")
        return "\n".join(lines)


def explain(env: DosingEnv, policy, carry, obs, key, *, sobol_samples: int | None = None) -> Recommendation:
    """The decision ``policy.act(key, carry, obs)`` explained (the policy must hold a
    ``ParticleTwin``: ``PrecisionDosing`` or ``ShieldedPolicy``); with ``sobol_samples`` also
    the global Sobol' indices of the chosen action's forecast (``global_sensitivity``)."""
    before = _twin(carry)
    if before is None:
        raise ModelError(f"explain: {type(policy).__name__} holds no ParticleTwin; explain a PrecisionDosing or "
                         "ShieldedPolicy decision.")
    action, new_carry = _act(policy, key, carry, obs)
    twin, action = _twin(new_carry), int(action)
    level = float(getattr(policy, "delta", getattr(policy, "max_risk", 1.0)))
    reward, _, violated = _forecast_all(env, twin)
    alternatives = _alternatives(env, twin, reward, violated, action, level)
    indices = None if sobol_samples is None else global_sensitivity(
        env, twin, action, jax.random.fold_in(key, 1), samples=sobol_samples)
    return Recommendation(action, float(env.doses[action]), float(env.intervals[action] / env.day), env.dose_unit,
                          level, alternatives, _binding(env, alternatives, action, level),
                          _parameter_elasticities(env, twin, action),
                          _observation_elasticities(env, carry, obs, action), indices)


def global_sensitivity(env: DosingEnv, twin: ParticleTwin, action: int, key, *, samples: int = 256) -> pd.DataFrame:
    """First-order (S1) and total (ST) Sobol' indices, with 95 % bootstrap half-widths, of the
    next cycle's forecast under ``action`` (efficacy and each limit's extreme) to the patient's
    parameters, over the twin's posterior (SALib: Saltelli's design, ``samples`` × (P + 2)
    forecasts, ``samples`` a power of 2).

    Sobol' indices need independent inputs, so each log-parameter is drawn from a normal with the
    posterior's weighted mean and SD (correlations dropped; the autodiff elasticities keep them),
    and the patient's current state is held at its posterior mean.  Parameters the posterior does
    not vary (no IIV) are left out.  Rows: (output, parameter)."""
    from SALib.analyze import sobol as sobol_analyze
    from SALib.sample import sobol as sobol_sample

    if not isinstance(samples, int) or samples < 2 or samples & (samples - 1):
        raise ModelError(f"global_sensitivity: samples={samples!r} must be a power of 2 (Sobol' sequence).")
    w = np.asarray(twin.weights)
    log_theta = np.log(np.asarray(twin.states.theta))
    mean = w @ log_theta
    sd = np.sqrt(np.maximum(w @ (log_theta - mean) ** 2, 0.0))
    varied = np.flatnonzero(sd > 1e-8)
    names = [env.model.parameter_names[i] for i in varied]
    if not names:
        raise ModelError("global_sensitivity: the twin's posterior varies no parameter.")
    problem = {"num_vars": len(names), "names": names, "bounds": [[mean[i], sd[i]] for i in varied],
               "dists": ["norm"] * len(names)}
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    design = sobol_sample.sample(problem, samples, calc_second_order=False, seed=seed)
    theta = np.broadcast_to(np.exp(mean), (design.shape[0], mean.size)).copy()
    theta[:, varied] = np.exp(design)
    outputs = np.asarray(_outcomes_at_mean_state(env, twin, jnp.asarray(theta), jnp.asarray(action)))
    rows = []
    for j, output in enumerate(_columns(env)):
        si = sobol_analyze.analyze(problem, outputs[:, j], calc_second_order=False, seed=seed)
        rows += [{"output": output, "parameter": p, "S1": si["S1"][i], "S1 ±95%": si["S1_conf"][i],
                  "ST": si["ST"][i], "ST ±95%": si["ST_conf"][i]} for i, p in enumerate(names)]
    return pd.DataFrame(rows).set_index(["output", "parameter"])


@eqx.filter_jit
def _outcomes_at_mean_state(env, twin: ParticleTwin, theta, action):
    w = twin.weights
    state = jax.tree.map(lambda x: x[jnp.argmax(w)], twin.states)
    state = eqx.tree_at(lambda s: s.y, state, w @ twin.states.y)

    def one(t):
        reward, extreme, _ = _outcomes(env, eqx.tree_at(lambda s: s.theta, state, t), action)
        return jnp.concatenate([reward[None], extreme])

    return jax.vmap(one)(theta)


@eqx.filter_jit
def _act(policy, key, carry, obs):
    return policy.act(key, carry, obs)


def _outcomes(env: DosingEnv, state, action):
    """One particle's next cycle: reward, per-limit extreme of the limited output, violations."""
    _, grid, reward, violated, *_ = env.transition(state, action)
    inside = env.sim.grid <= env.intervals[action] + 1e-9
    extremes = [env.cycle_extreme(grid[:, env._names.index(lim.observation)], inside, lowest=lim.side == "below")
                for lim in env.limits]
    return reward, jnp.stack(extremes) if extremes else jnp.zeros((0,)), violated


@eqx.filter_jit
def _forecast_all(env, twin: ParticleTwin):
    per_action = lambda a: jax.vmap(lambda s: _outcomes(env, s, a))(twin.states)
    return jax.vmap(per_action)(jnp.arange(env.action_space.n))


def _alternatives(env, twin, reward, violated, action, level) -> pd.DataFrame:
    w = twin.weights
    rows = pd.DataFrame({"dose": np.asarray(env.doses), "interval_days": np.asarray(env.intervals) / env.day,
                         "efficacy_mean": np.asarray(reward @ w)})
    for q, name in ((0.05, "efficacy_q05"), (0.95, "efficacy_q95")):
        rows[name] = np.asarray(weighted_quantile(reward, w, q))
    v = np.asarray(violated, dtype=float)                                # (actions, particles, limits)
    for j, lim in enumerate(env.limits):
        rows[f"P({lim.label()})"] = v[:, :, j] @ np.asarray(w)
    rows["P(any limit)"] = v.max(axis=2) @ np.asarray(w) if env.limits else 0.0
    rows["allowed"] = rows["P(any limit)"] <= level
    rows["chosen"] = rows.index == action
    return rows.rename_axis("action")


def _binding(env, alt: pd.DataFrame, action: int, level: float) -> str | None:
    intensity = alt["dose"] / alt["interval_days"]
    above = alt[intensity > intensity[action] + 1e-12]
    if above.empty:
        return None
    nxt = above.loc[(intensity[above.index]).idxmin()]
    risks = {lim.label(): nxt[f"P({lim.label()})"] for lim in env.limits}
    if not risks or max(risks.values()) <= level:
        return (f"The next more intense action ({nxt['dose']:g} {env.dose_unit} every {nxt['interval_days']:g} d) "
                f"is within the risk level; the policy preferred {alt.loc[action, 'dose']:g}.")
    label = max(risks, key=risks.get)
    return (f"Binding limit: {label} — the next more intense action ({nxt['dose']:g} {env.dose_unit} every "
            f"{nxt['interval_days']:g} d) would cross it with probability {risks[label]:.3f} > {level:g}.")


def _parameter_elasticities(env, twin: ParticleTwin, action: int) -> pd.DataFrame:
    jac = _parameter_jacobians(env, twin.states, jnp.asarray(action))          # (K, 1 + L, P)
    mean = np.einsum("k,kop->op", np.asarray(twin.weights), np.asarray(jac))
    return pd.DataFrame(mean.T, index=list(env.model.parameter_names), columns=_columns(env)).rename_axis("parameter")


# Module-level jitted functions with the action as an argument: compiled once per env, not per call.
@eqx.filter_jit
def _parameter_jacobians(env, states, action):
    def outcome(log_theta, state):
        state = eqx.tree_at(lambda s: s.theta, state, jnp.exp(log_theta))
        reward, extreme, _ = _outcomes(env, state, action)
        return jnp.concatenate([reward[None], extreme])

    return jax.vmap(lambda s: jax.jacrev(outcome)(jnp.log(s.theta), s))(states)


def _observation_elasticities(env, carry, obs, action) -> pd.DataFrame:
    """∂(posterior mean forecast)/∂(log sample) through the last assimilation's weights."""
    last_action = int(carry[-1])          # both twin policies keep the last action given last
    names = [f"{s.observation} day {d:g}" for s in env.samples for d in s.days]
    n = len(names)
    if last_action < 0:
        return pd.DataFrame(index=pd.Index([], name="sample"))
    jac = np.asarray(_sample_jacobian(env, _twin(carry), obs, jnp.asarray(last_action), jnp.asarray(action)))
    logs = np.asarray([s.log for s in env.samples for _ in s.days])
    seen = np.asarray(obs[n:2 * n]) == 0
    scale = np.where(logs, 1.0, np.asarray(obs[:n]))                    # to ∂/∂ log sample
    table = pd.DataFrame((jac * scale).T, index=names, columns=_columns(env)).rename_axis("sample")
    return table[seen]


@eqx.filter_jit
def _sample_jacobian(env, before: ParticleTwin, obs, last_action, action):
    n = int(env.sample_index.shape[0])
    advanced, predicted, present = before.advance(env, last_action)
    r, ext, _ = jax.vmap(lambda s: _outcomes(env, s, action))(advanced)

    def mean_forecast(samples):
        o = obs.at[:n].set(samples)
        ll = jax.vmap(lambda p: env.sample_loglik(o, p, present))(predicted)
        w = jax.nn.softmax(before.log_weights + ll)
        return jnp.concatenate([(w @ r)[None], w @ ext])

    return jax.jacrev(mean_forecast)(obs[:n])                              # (1 + L, n)


def _columns(env) -> list[str]:
    return ["efficacy"] + [f"{lim.observation} {'nadir' if lim.side == 'below' else 'peak'}" for lim in env.limits]
