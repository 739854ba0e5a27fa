"""What a program is compiled against (the environment's shapes) and what it is called on."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class EnvSpec:
    """Static facts about an environment that programs and agents are built for.

    Hashable, so it can be a static argument of a jitted function.
    """

    obs_shape: tuple[int, ...] = struct.field(pytree_node=False)
    """Shape of one observation: (H, W, C) for images, (D,) for vectors."""
    action_dim: int = struct.field(pytree_node=False)
    """Number of discrete actions, or the dimension of a continuous action."""
    discrete: bool = struct.field(pytree_node=False, default=True)
    """True for a discrete action space (actions reach programs one-hot)."""
    batch_size: int = struct.field(pytree_node=False, default=5)
    """Transitions per program call: the number of parallel environments."""

    @property
    def image(self) -> bool:
        return len(self.obs_shape) == 3


@struct.dataclass
class CuriosityBatch:
    """One call's transitions (s, a, s'), batch axis first.

    ``action`` is one-hot (float) for discrete spaces and the raw action vector otherwise.
    ``policy_params`` are the agent's current actor-critic parameters, read by the Policy
    operation; None when no agent is attached (the program then uses its own random policy).
    """

    obs: jax.Array
    action: jax.Array
    next_obs: jax.Array
    policy_params: Any = None


@struct.dataclass
class CombinerBatch:
    """Inputs of a reward combiner, one entry per transition."""

    intrinsic: jax.Array
    extrinsic: jax.Array
    tau: jax.Array
    """Fraction of the agent's lifetime elapsed, in [0, 1]."""


def one_hot_actions(actions: jax.Array, spec: EnvSpec) -> jax.Array:
    if spec.discrete:
        return jax.nn.one_hot(actions, spec.action_dim)
    return jnp.asarray(actions, jnp.float32)
