"""Reinforcement-learning dosing agents trained with torchrl on an exported ``DosingEnv``.

``train_ppo`` runs torchrl's collector, GAE and clipped PPO loss; with ``cost_limit`` it is
PPO-Lagrangian: the agent maximises reward − λ·cost, and λ rises by dual ascent while the
episodes' mean cost exceeds the limit (Ray et al. 2019, "Benchmarking safe exploration").  With
``cvar`` the constrained quantity is the conditional value at risk of the episode cost instead —
the mean over the worst ``cvar`` share of each batch's episodes — so the multiplier answers to
the patients who fare worst rather than to the average (Chow et al., JMLR 18(167), 2018).  The
trained network comes back as ``MLPPolicy``, a pure-JAX greedy policy (argmax of the logits)
with the same weights, so an agent is evaluated by ``pbpk.control.policies.evaluate`` on exactly
the patients and noise of every baseline; its critic comes back as ``ValueNetwork``, from which
fine-tuning on one patient's twin can resume.

torch and torchrl are imported inside the functions (``import pbpk`` stays light).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import equinox as eqx

import jax.numpy as jnp

from .env import DosingEnv, Patients

__all__ = ["MLPPolicy", "TrainingHistory", "ValueNetwork", "episode_costs", "tail_mean", "train_ppo"]


class _MLP(eqx.Module):
    """A tanh MLP's weights in JAX, exchanged with torch networks of the same shape."""

    weights: tuple
    biases: tuple

    def forward(self, obs):
        h = obs
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w.T + b
            if i < len(self.weights) - 1:
                h = jnp.tanh(h)
        return h

    def load_into(self, mlp) -> None:
        """Copy these weights into a torch MLP of the same shape."""
        import numpy as np
        import torch

        linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
        if [tuple(m.weight.shape) for m in linears] != [tuple(w.shape) for w in self.weights]:
            from ..errors import ModelError

            raise ModelError(f"{type(self).__name__}.load_into: layer shapes {[tuple(w.shape) for w in self.weights]} "
                             f"do not match the network's {[tuple(m.weight.shape) for m in linears]} (check hidden=).")
        with torch.no_grad():
            for m, w, b in zip(linears, self.weights, self.biases):
                m.weight.copy_(torch.tensor(np.asarray(w)))      # a copy: JAX's buffers are read-only
                m.bias.copy_(torch.tensor(np.asarray(b)))

    @classmethod
    def from_torch(cls, mlp):
        import torch

        linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
        return cls(tuple(jnp.asarray(m.weight.detach().numpy()) for m in linears),
                   tuple(jnp.asarray(m.bias.detach().numpy()) for m in linears))


class MLPPolicy(_MLP):
    """A tanh MLP from the observation to action logits; acts greedily (or masked by ``mask``)."""

    def logits(self, obs):
        return self.forward(obs)

    def init(self, obs):
        return jnp.zeros(())

    def act(self, key, carry, obs):
        return jnp.argmax(self.logits(obs.astype(jnp.float32))), carry


class ValueNetwork(_MLP):
    """A trained critic: the expected (Lagrangian) return from an observation."""

    def value(self, obs):
        return self.forward(obs.astype(jnp.float32))[..., 0]


@dataclass
class TrainingHistory:
    frames: list = field(default_factory=list)
    episode_return: list = field(default_factory=list)
    episode_cost: list = field(default_factory=list)
    multiplier: list = field(default_factory=list)
    constrained_cost: list = field(default_factory=list)
    seconds: float = 0.0
    critic: ValueNetwork | None = None    # the trained value network: fine-tuning resumes from it


def episode_costs(cost, done):
    """Each finished episode's total cost from a collection's per-step ``cost`` and ``done``
    (leading axes: environments, then time)."""
    import numpy as np

    cost = np.asarray(cost).reshape(cost.shape[0], -1)
    done = np.asarray(done).reshape(done.shape[0], -1)
    totals = []
    for row_cost, row_done in zip(cost, done):
        running = np.cumsum(row_cost)
        ends = np.flatnonzero(row_done)
        starts = np.concatenate([[0.0], running[ends[:-1]]]) if ends.size else []
        totals.extend(running[ends] - starts)
    return np.asarray(totals, dtype=float)


def tail_mean(values, share: float) -> float:
    """The mean of the largest ``share`` of ``values`` (at least one): CVaR at level 1 − share."""
    import numpy as np

    values = np.sort(np.asarray(values, dtype=float))[::-1]
    k = max(int(np.ceil(share * values.size)), 1)
    return float(values[:k].mean())


def train_ppo(env: DosingEnv, patients: Patients, *, frames: int = 300_000, batch: int = 256,
              cost_limit: float | None = None, cvar: float | None = None, multiplier_lr: float = 0.5, epochs: int = 4,
              minibatch: int = 512, lr: float = 3e-4, hidden=(64, 64), gamma: float = 1.0,
              lmbda: float = 0.95, entropy: float = 0.01, seed: int = 0, progress: bool = True,
              init: MLPPolicy | None = None, init_critic: ValueNetwork | None = None, init_multiplier: float = 0.0):
    """Train PPO (``cost_limit=None``) or PPO-Lagrangian on ``env`` with patients drawn from
    ``patients``; ``batch`` patients per collection, one course each.  ``cost_limit`` is the
    allowed mean episode cost (the env's cost counts crossed limits per cycle, so 0.01 ≈ at most
    1 % of courses with one violating cycle); with ``cvar`` (a share in (0, 1]) it bounds the
    mean cost of the worst ``cvar`` share of episodes instead.  ``init``, ``init_critic``,
    ``init_multiplier``: resume from a trained agent — its policy, its value network
    (``history.critic``) and its multiplier (``history.multiplier[-1]``) — to fine-tune a
    population-trained agent on one patient's twin.  Returns (MLPPolicy, TrainingHistory)."""
    from ..errors import ModelError

    if cvar is not None and not 0.0 < cvar <= 1.0:
        raise ModelError(f"train_ppo: cvar={cvar!r} must be a share of episodes in (0, 1].")
    if not init_multiplier >= 0.0:
        raise ModelError(f"train_ppo: init_multiplier={init_multiplier!r} must be >= 0 (a Lagrange multiplier).")
    import time

    import torch
    from tensordict.nn import TensorDictModule
    from torchrl.collectors import Collector
    from torchrl.modules import MLP, ProbabilisticActor, ValueOperator
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    tenv = env.to_torchrl(patients, batch_size=batch, seed=seed)
    n_obs, n_act = env.observation_space.shape[0], env.action_space.n
    policy_net = MLP(in_features=n_obs, out_features=n_act, num_cells=list(hidden), activation_class=torch.nn.Tanh)
    value_net = MLP(in_features=n_obs, out_features=1, num_cells=list(hidden), activation_class=torch.nn.Tanh)
    if init is not None:
        init.load_into(policy_net)
    if init_critic is not None:
        init_critic.load_into(value_net)
    actor = ProbabilisticActor(TensorDictModule(policy_net, in_keys=["observation"], out_keys=["logits"]),
                               in_keys=["logits"], distribution_class=torch.distributions.Categorical,
                               spec=tenv.action_spec, return_log_prob=True)
    critic = ValueOperator(value_net, in_keys=["observation"])
    advantage = GAE(gamma=gamma, lmbda=lmbda, value_network=critic, average_gae=True)
    loss = ClipPPOLoss(actor, critic, clip_epsilon=0.2, entropy_coeff=entropy, normalize_advantage=True)
    optimiser = torch.optim.Adam(loss.parameters(), lr=lr)
    per_batch = batch * env.horizon
    collector = Collector(tenv, actor, frames_per_batch=per_batch, total_frames=frames,
                          auto_register_policy_transforms=False)
    lam, history, start = float(init_multiplier), TrainingHistory(), time.perf_counter()
    bar = tqdm(total=frames, desc="PPO-Lagrangian" if cost_limit is not None else "PPO", disable=not progress)
    seen = 0
    for data in collector:
        reward, cost = data["next", "reward"], data["next", "cost"]
        done = data["next", "done"]
        n_episodes = max(int(done.sum()), 1)
        ep_return, ep_cost = float(reward.sum()) / n_episodes, float(cost.sum()) / n_episodes
        constrained = ep_cost if cvar is None else tail_mean(episode_costs(cost, done), cvar)
        if cost_limit is not None:
            data["next", "reward"] = reward - lam * cost
        with torch.no_grad():
            advantage(data)
        flat = data.reshape(-1)
        for _ in range(epochs):
            for idx in torch.randperm(flat.shape[0]).split(minibatch):
                out = loss(flat[idx])
                total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                optimiser.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(loss.parameters(), 1.0)
                optimiser.step()
        if cost_limit is not None:
            lam = max(0.0, lam + multiplier_lr * (constrained - cost_limit))
        seen += data.numel()
        history.frames.append(seen)
        history.episode_return.append(ep_return)
        history.episode_cost.append(ep_cost)
        history.multiplier.append(lam)
        history.constrained_cost.append(constrained)
        bar.update(data.numel())
        bar.set_postfix(ret=f"{ep_return:.3f}", cost=f"{ep_cost:.3f}", lam=f"{lam:.2f}")
    bar.close()
    collector.shutdown()
    history.seconds = time.perf_counter() - start
    history.critic = ValueNetwork.from_torch(value_net)
    return MLPPolicy.from_torch(policy_net), history


