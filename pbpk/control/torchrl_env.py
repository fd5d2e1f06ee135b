"""The TorchRL face of a ``DosingEnv``: a thin ``EnvBase`` over the JAX environment.

Batch size = number of patients; the JAX state lives on the adapter, the JAX functions are
compiled once (the first reset and step) and every later call reuses them; arrays cross with
DLPack.  The step's tensordict carries ``reward`` and a top-level ``cost`` (both declared in the
reward spec, so ``RewardSum`` and constrained losses see them), ``done``/``terminated``/
``truncated``, and an ``action_mask`` observation that a shield can narrow.

torch and torchrl are imported here only: ``import pbpk`` stays free of them.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from .env import DosingEnv, Patients


def _to_torch(x, dtype=None) -> torch.Tensor:
    t = torch.from_dlpack(jnp.asarray(x))
    return t if dtype is None else t.to(dtype)


def _to_jax(t: torch.Tensor) -> jax.Array:
    return jnp.from_dlpack(t.detach().contiguous())


class TorchRLDosingEnv(EnvBase):
    """``DosingEnv`` exported to torchrl (see ``DosingEnv.to_torchrl``)."""

    def __init__(self, env: DosingEnv, patients: Patients, batch_size: int, *, seed: int = 0, device="cpu"):
        super().__init__(device=device, batch_size=torch.Size([batch_size]))
        self.jax_env, self.patients = env, patients
        self._key = jax.random.key(seed)
        self._state = None
        n, b = env.action_space.n, (batch_size,)
        self.observation_spec = Composite(
            observation=Unbounded(shape=(*b, env.observation_space.shape[0]), dtype=torch.float32, device=device),
            action_mask=Categorical(2, shape=(*b, n), dtype=torch.bool, device=device),
            shape=b, device=device)
        self.action_spec = Categorical(n, shape=b, dtype=torch.int64, device=device)
        self.reward_spec = Composite(reward=Unbounded(shape=(*b, 1), dtype=torch.float32, device=device),
                                     cost=Unbounded(shape=(*b, 1), dtype=torch.float32, device=device),
                                     shape=b, device=device)
        done = Categorical(2, shape=(*b, 1), dtype=torch.bool, device=device)
        self.done_spec = Composite(done=done, terminated=done.clone(), truncated=done.clone(), shape=b, device=device)

    @property
    def state(self):
        """The JAX ``EnvState`` of every patient (the hidden truth)."""
        return self._state

    def _next_key(self):
        self._key, key = jax.random.split(self._key)
        return key

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        obs, state = _reset_batch(self.jax_env, self._next_key(), self.patients, self.batch_size[0])
        # Actions arrive through DLPack as committed arrays, and so is every later state; commit
        # the reset state too, or the second step compiles again for the other placement.
        obs, state = jax.device_put((obs, state), jax.devices("cpu")[0])
        if self._state is not None and tensordict is not None and "_reset" in tensordict.keys():
            mask = _to_jax(tensordict.get("_reset").reshape(-1).to(torch.bool))
            obs, state = _merge(mask, (obs, state), (self._last_obs, self._state))
        self._state, self._last_obs = state, obs
        return TensorDict({"observation": _to_torch(obs, torch.float32), "action_mask": self._mask()},
                          batch_size=self.batch_size, device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = _to_jax(tensordict.get("action").reshape(self.batch_size).to(torch.int64))
        obs, state, reward, cost, terminated, truncated, _ = _step_batch(self.jax_env, self._next_key(),
                                                                         self._state, action)
        self._state, self._last_obs = state, obs
        term, trunc = _to_torch(terminated).unsqueeze(-1), _to_torch(truncated).unsqueeze(-1)
        return TensorDict({"observation": _to_torch(obs, torch.float32), "action_mask": self._mask(),
                           "reward": _to_torch(reward, torch.float32).unsqueeze(-1),
                           "cost": _to_torch(cost, torch.float32).unsqueeze(-1),
                           "terminated": term, "truncated": trunc, "done": term | trunc},
                          batch_size=self.batch_size, device=self.device)

    def _mask(self) -> torch.Tensor:
        return torch.ones((*self.batch_size, self.jax_env.action_space.n), dtype=torch.bool, device=self.device)

    def _set_seed(self, seed: int | None):
        self._key = jax.random.key(0 if seed is None else int(seed))


@eqx.filter_jit
def _reset_batch(env, key, patients, n):
    return jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n), patients)


@eqx.filter_jit
def _step_batch(env, key, state, action):
    return jax.vmap(env.step_env)(jax.random.split(key, action.shape[0]), state, action)


@jax.jit
def _merge(mask, new, old):
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


__all__ = ["TorchRLDosingEnv"]
