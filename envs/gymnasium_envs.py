"""Gymnasium environments as the project's agents see them: supported spaces, one-line errors.

Box and Discrete spaces are supported: vector (or image) Box observations reach agents and
programs as float32 arrays, Discrete observations one-hot; Discrete actions reach programs
one-hot, Box actions (1-D) are clipped to the space's bounds for the environment.
"""

from __future__ import annotations

import dataclasses
import os

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from metacurio.core.specs import EnvSpec
from metacurio.errors import one_line

class GymEnvError(ValueError):
    """An environment id gymnasium does not know, or a space this adapter cannot run (one line)."""


class UnknownEnvError(GymEnvError):
    """Gymnasium has no environment of that id."""


@dataclasses.dataclass(frozen=True)
class Spaces:
    """What the agent and programs need to know about one environment's spaces."""

    env_id: str
    obs_shape: tuple[int, ...]
    """Shape of one observation as agents see it ((n,) one-hot for a Discrete space)."""
    obs_values: int | None
    """Number of values of a Discrete observation space; None for Box."""
    obs_start: int
    """Smallest value of a Discrete observation space."""
    action_dim: int
    """Number of discrete actions, or the length of a Box action."""
    discrete: bool
    action_start: int
    """Smallest value of a Discrete action space (gymnasium's ``start``)."""
    action_low: tuple[float, ...] | None
    """Bounds of a Box action, to clip the Gaussian policy's samples; None if discrete."""
    action_high: tuple[float, ...] | None

    def env_spec(self, num_envs: int) -> EnvSpec:
        return EnvSpec(obs_shape=self.obs_shape, action_dim=self.action_dim, discrete=self.discrete, batch_size=num_envs)

    def observations(self, raw) -> np.ndarray:
        """A batch of raw observations as agents see them: float32, Discrete ones one-hot."""
        raw = np.asarray(raw)
        if self.obs_values is None:
            return raw.astype(np.float32, copy=False).reshape((-1,) + self.obs_shape)
        return np.eye(self.obs_values, dtype=np.float32)[raw.reshape(-1).astype(np.int64) - self.obs_start]

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """The policy's actions as the environments take them."""
        if self.discrete:
            return actions.astype(np.int64) + self.action_start
        return np.clip(actions, self.action_low, self.action_high).astype(np.float32)

    def executed(self, actions: jax.Array) -> jax.Array:
        """The actions the environments executed, in the agent's coordinates (JAX)."""
        if self.discrete:
            return actions
        return jnp.clip(actions, jnp.asarray(self.action_low), jnp.asarray(self.action_high))


def spaces_of(env_id: str, observation_space: gym.Space, action_space: gym.Space) -> Spaces:
    """Check that an environment's spaces are supported and describe them."""
    obs_values, obs_start = None, 0
    if isinstance(observation_space, gym.spaces.Box):
        obs_shape = tuple(int(d) for d in observation_space.shape)
    elif isinstance(observation_space, gym.spaces.Discrete):
        obs_values, obs_start = int(observation_space.n), int(observation_space.start)
        obs_shape = (obs_values,)
    else:
        raise GymEnvError(
            f"{env_id}: unsupported observation space {type(observation_space).__name__} (supported: Box, Discrete)"
        )
    if isinstance(action_space, gym.spaces.Discrete):
        n, start = int(action_space.n), int(action_space.start)
        return Spaces(env_id, obs_shape, obs_values, obs_start, n, True, start, None, None)
    if isinstance(action_space, gym.spaces.Box):
        if len(action_space.shape) != 1:
            raise GymEnvError(f"{env_id}: unsupported action space Box{action_space.shape} (Box actions must be 1-D)")
        low = tuple(float(x) for x in action_space.low)
        high = tuple(float(x) for x in action_space.high)
        return Spaces(env_id, obs_shape, obs_values, obs_start, int(action_space.shape[0]), False, 0, low, high)
    raise GymEnvError(f"{env_id}: unsupported action space {type(action_space).__name__} (supported: Box, Discrete)")


def make_env(env_id: str, max_episode_steps: int | None = None, render_mode: str | None = None) -> gym.Env:
    """``gym.make`` with its many failure modes turned into one-line ``GymEnvError``s."""
    # MuJoCo reads this when it is first imported (by the first make of a MuJoCo env); EGL renders
    # without a display, for episode GIFs.
    os.environ.setdefault("MUJOCO_GL", "egl")
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        return gym.make(env_id, **kwargs)
    except (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound) as err:
        raise UnknownEnvError(f"unknown gymnasium environment {env_id!r}: {one_line(err)}") from None
    except (gym.error.Error, ImportError, TypeError, ValueError) as err:
        raise GymEnvError(f"cannot make gymnasium environment {env_id!r}: {one_line(err)}") from None


def inspect_env(env_id: str) -> Spaces:
    """The spaces of ``env_id``, after checking that it exists and is supported."""
    env = make_env(env_id)
    try:
        return spaces_of(env_id, env.observation_space, env.action_space)
    finally:
        env.close()
