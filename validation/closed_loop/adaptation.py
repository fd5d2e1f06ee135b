"""Population → patient: a population-trained PPO-Lagrangian agent fine-tuned on one patient's
twin, against an agent trained from scratch on the same twin (chemotherapy case).

    python -m validation.closed_loop.adaptation [--quick]

For each of 6 virtual patients of the held-out cohort (key 2026): cycle 1 is given at the
standard 75 mg/m²; its samples (Cp at 6 h, ANC on days 7 and 21, SLD on day 21) update a
256-particle twin started from the population prior (``pbpk.control.ParticleTwin``), and 512
draws of that posterior become the patient's training pool.  On it, the population agent
(PPO-Lagrangian trained as in ``chemo.py``) is fine-tuned, and a fresh agent is trained from
scratch, with the same seed, frames and cost limit.  Adaptation speed: the frames until the
5-collection moving average of the episode return reaches 95 % of its final value.  Both
policies, and the population agent unchanged, are then run on the true patient (the course
from day 0, noise key fixed).

Warm starts compared (each fine-tuned with the same seed and frames):

* ``fine-tuned``: the population policy's weights, a fresh critic, λ from 0;
* ``resumed``: also the population critic and its final multiplier λ (``init_critic``,
  ``init_multiplier``) — the training simply continues on the twin;
* ``tempered``: the policy's output layer divided by 4, so its near-deterministic choices
  explore again;
* ``shrink-perturb``: every weight scaled by 0.3 plus N(0, 0.01²) noise (Ash & Adams,
  "On warm-starting neural network training", NeurIPS 2020), the remedy for warm starts that
  train slower than fresh networks.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from validation._record import Check, write_results


def frames_to_reach(history, share: float = 0.95) -> int:
    """Frames until the 5-collection moving-average return first reaches ``share`` of its final
    value: final − (1 − share)·|final|, which is share·final for a positive final return (tumour
    shrinkage) and stays reachable for a negative one (a tumour that grows whatever the dose)."""
    ret = np.convolve(np.asarray(history.episode_return), np.ones(5) / 5, mode="valid")
    hit = int(np.flatnonzero(ret >= ret[-1] - (1.0 - share) * abs(ret[-1]))[0])
    return int(history.frames[hit + 4])


def tempered(policy, temperature: float):
    """The same network with its logits divided by ``temperature``."""
    import equinox as eqx

    return eqx.tree_at(lambda p: (p.weights[-1], p.biases[-1]), policy, replace_fn=lambda x: x / temperature)


def shrunk_and_perturbed(policy, shrink: float, sigma: float, key):
    """Every weight scaled by ``shrink`` plus N(0, sigma²) noise; biases only scaled."""
    import equinox as eqx
    import jax

    keys = jax.random.split(key, len(policy.weights))
    weights = tuple(shrink * w + sigma * jax.random.normal(k, w.shape, w.dtype) for w, k in zip(policy.weights, keys))
    return eqx.tree_at(lambda p: (p.weights, p.biases), policy, (weights, tuple(shrink * b for b in policy.biases)))


def main(quick: bool = False) -> None:
    import jax

    from pbpk.control import FixedSchedule, ParticleTwin, Patients, chemotherapy_env, evaluate
    from pbpk.control.agents import train_ppo

    env = chemotherapy_env()
    n_patients, frames, pop_frames = (2, 12_288, 30_720) if quick else (6, 61_440, 368_640)
    pool = Patients.from_population(env.model.population(4096, jax.random.key(11)))
    population_agent, population = train_ppo(env, pool, frames=pop_frames, cost_limit=0.01, seed=0, progress=False)
    warm_starts = {
        "fine-tuned": dict(init=population_agent),
        "resumed": dict(init=population_agent, init_critic=population.critic, init_multiplier=population.multiplier[-1]),
        "tempered": dict(init=tempered(population_agent, 4.0)),
        "shrink-perturb": dict(init=shrunk_and_perturbed(population_agent, 0.3, 0.01, jax.random.key(7))),
        "scratch": {},
    }
    test = Patients.from_population(env.model.population(n_patients, jax.random.key(2026)))
    prior = Patients.from_population(env.model.population(256, jax.random.key(99)))
    standard = FixedSchedule(env, [env.standard])
    rows = []
    for i in range(n_patients):
        patient = Patients(test.theta[i:i + 1], test.covariates[i:i + 1], test.bsa[i:i + 1])
        key = jax.random.key(100 + i)
        obs, state = env.reset(key, patient)
        twin = ParticleTwin.from_prior(env, prior, obs)
        obs, state, *_ = env.step_env(key, state, env.standard)
        twin = twin.assimilate(env, env.standard, obs)
        own = twin.patients(jax.random.key(200 + i), 512, jitter=0.05)
        results = {}
        for name, start in warm_starts.items():
            t0 = time.perf_counter()
            agent, hist = train_ppo(env, own, frames=frames, batch=128, cost_limit=0.01, seed=1, progress=False,
                                    **start)
            results[name] = (agent, hist, time.perf_counter() - t0)
        truth = {}
        for name, policy in (("population", population_agent), *((n, r[0]) for n, r in results.items()),
                             ("protocol 75", standard)):
            out = evaluate(env, policy, patient, jax.random.key(0))
            truth[name] = (float(out.efficacy[0]), bool(out.violated[0]))
        row = {"patient": i, "twin_effective_size": round(float(twin.effective_size()), 1)}
        for name, (_, hist, seconds) in results.items():
            row[f"{name}_frames_to_95pct"] = frames_to_reach(hist)
            row[f"{name}_first_return"] = round(hist.episode_return[0], 4)
            row[f"{name}_final_return"] = round(float(np.mean(hist.episode_return[-5:])), 4)
            row[f"{name}_seconds"] = round(seconds, 1)
        for name, (eff, violated) in truth.items():
            row[f"true_{name}_shrinkage"] = round(eff, 4)
            row[f"true_{name}_violation"] = violated
        rows.append(row)
        print(row)
    scratch = np.asarray([r["scratch_frames_to_95pct"] for r in rows], float)
    speedup = {name: float(np.median(scratch / np.asarray([r[f"{name}_frames_to_95pct"] for r in rows], float)))
               for name in warm_starts if name != "scratch"}
    fine = speedup.pop("fine-tuned")
    checks = [Check("adaptation.speedup", "frames to 95 % of final return: scratch / fine-tuned (median over "
                    f"{n_patients} patients' twins)", "issue 8: adaptation speed measured", fine, "x", "> 1", fine > 1.0)]
    checks += [Check(f"adaptation.speedup_{name.replace('-', '_')}", f"as above, warm start '{name}' (see the "
                     "script's docstring)", "measured in this run", value, "x", "informational", True)
               for name, value in speedup.items()]
    on_truth = {name: {"mean_true_shrinkage": round(float(np.mean([r[f"true_{name}_shrinkage"] for r in rows])), 4),
                       "violations": int(sum(r[f"true_{name}_violation"] for r in rows))}
                for name in ("population", *warm_starts, "protocol 75")}
    print(on_truth)
    write_results("closed_loop", checks, part="adaptation", extra={"table": rows, "on_true_patients": on_truth, "details": {
        "patients": n_patients, "frames_per_run": frames, "population_frames": pop_frames, "twin_particles": 256,
        "pool_draws": 512, "quick": quick}})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    main(**vars(parser.parse_args()))
