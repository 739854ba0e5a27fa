"""Neural networks used by curiosity programs and by the agent.

Every network is a flax.linen module plus a pair of pure functions ``init_*`` / ``apply_*``.
The ``apply_*`` functions recover the architecture from the parameter shapes, so an operation
can run a network knowing only its parameters: that keeps every operation a pure function
``(inputs, state, params)`` and lets one compiled interpreter run any program.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from operations.types import FEATURE_WIDTH

ENSEMBLE_SIZE = 5
MLP_HIDDEN = (32, 32)
VECTOR_ENCODER_HIDDEN = (16, 32, 64)


class MLP(nn.Module):
    """Dense layers with ReLU between them and a linear output layer."""

    features: tuple[int, ...]
    """Widths of every layer, the output layer last."""

    @nn.compact
    def __call__(self, x):
        for width in self.features[:-1]:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.features[-1])(x)


def init_mlp(key: jax.Array, in_width: int, features: Sequence[int]) -> dict:
    return MLP(tuple(features)).init(key, jnp.zeros((1, in_width)))["params"]


def mlp_features(params: dict) -> tuple[int, ...]:
    layers = sorted(params, key=lambda name: int(name.split("_")[1]))
    return tuple(params[name]["kernel"].shape[1] for name in layers)


def apply_mlp(params: dict, x: jax.Array) -> jax.Array:
    return MLP(mlp_features(params)).apply({"params": params}, x)


class PatchConv(nn.Module):
    """A VALID, stride-1 convolution written as shifted slices and one matrix multiply.

    Same parameters (and initialisation) as ``nn.Conv``. XLA on the CPU computes a
    convolution's weight gradient inside loops (every training loop here is a ``lax.scan``)
    with a slow generic kernel; a matrix multiply avoids it (~5× faster end to end).
    """

    features: int
    kernel_size: tuple[int, int]

    @nn.compact
    def __call__(self, x):
        kh, kw = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (kh, kw, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        h, w = x.shape[-3] - kh + 1, x.shape[-2] - kw + 1
        patches = jnp.concatenate([x[..., i : i + h, j : j + w, :] for i in range(kh) for j in range(kw)], axis=-1)
        return patches @ kernel.reshape(-1, self.features) + bias


def max_pool_2x2(x):
    h, w = x.shape[-3] // 2, x.shape[-2] // 2
    x = x[..., : 2 * h, : 2 * w, :]
    return x.reshape(x.shape[:-3] + (h, 2, w, 2, x.shape[-1])).max(axis=(-4, -2))


class ImageEncoder(nn.Module):
    """The original's small observation CNN: one 3×3 valid conv to one channel, then an MLP."""

    features: tuple[int, ...]

    @nn.compact
    def __call__(self, obs):
        x = PatchConv(1, (3, 3), name="Conv_0")(obs)
        x = x.reshape(x.shape[:-3] + (-1,))
        return MLP(self.features)(x)


def init_obs_encoder(key: jax.Array, obs_shape: tuple[int, ...]) -> dict:
    """A 𝕊→𝔽 network: a small CNN for image observations, an MLP for vector observations."""
    dummy = jnp.zeros((1,) + tuple(obs_shape))
    if len(obs_shape) == 3:
        return ImageEncoder(MLP_HIDDEN + (FEATURE_WIDTH,)).init(key, dummy)["params"]
    return {"mlp": init_mlp(key, int(np.prod(obs_shape)), VECTOR_ENCODER_HIDDEN + (FEATURE_WIDTH,))}


def apply_obs_encoder(params: dict, obs: jax.Array) -> jax.Array:
    if "Conv_0" in params:
        return ImageEncoder(mlp_features(params["MLP_0"])).apply({"params": params}, obs)
    return apply_mlp(params["mlp"], obs.reshape(obs.shape[0], -1))


def init_ensemble(key: jax.Array, init_one, size: int = ENSEMBLE_SIZE) -> dict:
    """Independently initialised members stacked on a leading axis, applied with vmap."""
    return jax.vmap(init_one)(jax.random.split(key, size))


def apply_ensemble(apply_one, params: dict, x: jax.Array) -> jax.Array:
    """Returns (batch, members, width): list values keep the batch axis first."""
    return jnp.swapaxes(jax.vmap(apply_one, in_axes=(0, None))(params, x), 0, 1)


class ActorCritic(nn.Module):
    """The agent of the original system (ikostrikov's PPO bases).

    Image observations: shared CNN trunk (16-32-64 channels, 2×2 kernels, one max-pool) and a
    64-unit dense layer feeding a categorical actor and a critic. Vector observations: separate
    actor and critic MLPs. Continuous actions: Gaussian head with a state-independent log-std.
    """

    action_dim: int
    """Number of discrete actions, or the dimension of a continuous action."""
    discrete: bool
    """Categorical policy if True, diagonal Gaussian if False."""
    obs_scale: float = 1.0 / 255.0
    """Image observations are multiplied by this (the original divided MiniGrid codes by 255)."""

    @nn.compact
    def __call__(self, obs):
        orth = nn.initializers.orthogonal
        if obs.ndim == 4:
            x = obs * self.obs_scale
            x = nn.relu(PatchConv(16, (2, 2), name="Conv_0")(x))
            x = max_pool_2x2(x)
            x = nn.relu(PatchConv(32, (2, 2), name="Conv_1")(x))
            x = nn.relu(PatchConv(64, (2, 2), name="Conv_2")(x))
            x = x.reshape(x.shape[0], -1)
            trunk = nn.relu(nn.Dense(64, kernel_init=orth(np.sqrt(2)))(x))
            actor_features, critic_features = trunk, trunk
        else:
            x = obs.reshape(obs.shape[0], -1)
            trunk_widths = VECTOR_ENCODER_HIDDEN + (FEATURE_WIDTH,)
            actor_features = MLP(trunk_widths, name="actor_trunk")(x)
            critic_features = MLP(trunk_widths, name="critic_trunk")(x)
        actor_out = nn.Dense(self.action_dim, kernel_init=orth(0.01), name="actor")(actor_features)
        value = nn.Dense(1, kernel_init=orth(1.0), name="critic")(critic_features)[:, 0]
        if self.discrete:
            return actor_out, value
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return (actor_out, jnp.broadcast_to(log_std, actor_out.shape)), value


def init_actor_critic(key: jax.Array, obs_shape, action_dim: int, discrete: bool) -> dict:
    module = ActorCritic(action_dim, discrete)
    return module.init(key, jnp.zeros((1,) + tuple(obs_shape)))["params"]


def apply_actor_critic(params: dict, obs: jax.Array):
    """(policy output, value); the policy output is logits, or (mean, log_std) if continuous."""
    discrete = "log_std" not in params
    action_dim = params["actor"]["kernel"].shape[1]
    return ActorCritic(action_dim, discrete).apply({"params": params}, obs)

