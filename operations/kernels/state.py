"""Each state type's initial ``(params, state)``, and the structs of the non-network states.

An init is ``init(key, env, elem) -> (params, state)``; ``elem`` is the element type a buffer
holds (None for every other state type).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from metacurio.core import networks
from metacurio.core.specs import EnvSpec
from operations import types as T
from operations.state_types import BUFFER_CAPACITY, KNN_CAPACITY

StateInit = Callable[[jax.Array, EnvSpec, "T.ValueType | None"], tuple[Any, Any]]


@struct.dataclass
class RunningStats:
    """Welford statistics of every scalar seen so far."""

    count: jax.Array
    mean: jax.Array
    m2: jax.Array


@struct.dataclass
class Fifo:
    """A shift register of the last calls' values, oldest first; ``filled`` counts valid ones."""

    items: jax.Array
    filled: jax.Array


@struct.dataclass
class Ring:
    """A fixed-capacity FIFO: ``items[i]`` holds one write, ``filled`` counts valid writes."""

    items: jax.Array
    filled: jax.Array
    cursor: jax.Array


def _net(in_width: Callable[[EnvSpec], int], out_width: Callable[[EnvSpec], int]) -> StateInit:
    def init(key, env, _elem):
        features = networks.MLP_HIDDEN + (out_width(env),)
        return networks.init_mlp(key, in_width(env), features), None

    return init


def _ensemble(init_one: StateInit) -> StateInit:
    def init(key, env, elem):
        return networks.init_ensemble(key, lambda k: init_one(k, env, elem)[0]), None

    return init


def _obs_net(key, env, _elem):
    return networks.init_obs_encoder(key, env.obs_shape), None


def _features(_env):
    return networks.FEATURE_WIDTH


def _pair(_env):
    return 2 * networks.FEATURE_WIDTH


def _actions(env):
    return env.action_dim


def _feature_action(env):
    return networks.FEATURE_WIDTH + env.action_dim


def _stats(_key, _env, _elem):
    zero = jnp.zeros((), jnp.float32)
    return None, RunningStats(count=zero, mean=zero, m2=zero)


def _buffer(_key, env, elem):
    shape = (BUFFER_CAPACITY, env.batch_size) + elem.row_shape(env.obs_shape, env.action_dim)
    return None, Fifo(jnp.zeros(shape, jnp.float32), jnp.zeros((), jnp.int32))


def _knn(_key, _env, _elem):
    shape = (KNN_CAPACITY, T.FEATURE_WIDTH)
    return None, Ring(jnp.zeros(shape, jnp.float32), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def _noise(key, _env, _elem):
    return None, key


def _policy(key, env, _elem):
    return networks.init_actor_critic(key, env.obs_shape, env.action_dim, env.discrete), None


STATE_INITS: dict[str, StateInit] = {
    "ObsNet": _obs_net,
    "FeatNet": _net(_features, _features),
    "PairNet": _net(_pair, _features),
    "FeatToActionNet": _net(_features, _actions),
    "PairToActionNet": _net(_pair, _actions),
    "ActionToFeatNet": _net(_actions, _features),
    "ObsEnsemble": _ensemble(_obs_net),
    "FeatEnsemble": _ensemble(_net(_features, _features)),
    "FeatActionEnsemble": _ensemble(_net(_feature_action, _features)),
    "RunningStats": _stats,
    "Buffer": _buffer,
    "KnnMemory": _knn,
    "NoiseSource": _noise,
    "AgentPolicy": _policy,
}
