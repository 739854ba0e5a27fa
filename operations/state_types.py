"""State types: the data structures a program owns (networks, memories, statistics).

Each state type builds its initial ``(params, state)`` from a key and the environment: params
are trained by the program's optimizer, state is updated functionally by the operations. Every
array has a fixed shape (buffers and memories are ring arrays with a fill count), so that a
compiled interpreter can hold any program's state without value-dependent shapes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from metacurio.core import networks
from metacurio.core.specs import EnvSpec
from operations import types as T

BUFFER_CAPACITY = 100
"""Entries (past calls) a FIFO buffer keeps; the original's 2-96 experiment used 100."""
KNN_CAPACITY = 1000
"""Rows a nearest-neighbour memory keeps (the original's KNN_BUFFER_SIZE_LARGE)."""
KNN_NEIGHBOURS = 5
"""Neighbours averaged by a nearest-neighbour lookup."""


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


@dataclasses.dataclass(frozen=True)
class StateType:
    name: str
    signature: str
    doc: str
    init: Callable[[jax.Array, EnvSpec, "T.ValueType | None"], tuple[Any, Any]]
    trainable: bool = False
    single_use: bool = False
    """Mutable state that only one node may own (memories, buffers, statistics)."""
    read_only: bool = False
    """Supplied from outside at every call (the agent's policy)."""

    @property
    def is_network(self) -> bool:
        return self.trainable or self.read_only


def _net(in_width: Callable[[EnvSpec], int], out_width: Callable[[EnvSpec], int]):
    def init(key, env, _elem):
        features = networks.MLP_HIDDEN + (out_width(env),)
        return networks.init_mlp(key, in_width(env), features), None

    return init


def _ensemble(init_one):
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


STATE_TYPES: dict[str, StateType] = {
    st.name: st
    for st in [
        StateType("ObsNet", "𝕊→𝔽", "observation encoder: small CNN for images, MLP for vectors", _obs_net, trainable=True),
        StateType("FeatNet", "𝔽→𝔽", "MLP 32→[32,32]→32", _net(_features, _features), trainable=True),
        StateType("PairNet", "𝔽×𝔽→𝔽", "MLP on the concatenation, 64→[32,32]→32", _net(_pair, _features), trainable=True),
        StateType("FeatToActionNet", "𝔽→𝔸", "MLP 32→[32,32]→A", _net(_features, _actions), trainable=True),
        StateType("PairToActionNet", "𝔽×𝔽→𝔸", "MLP 64→[32,32]→A", _net(_pair, _actions), trainable=True),
        StateType("ActionToFeatNet", "𝔸→𝔽", "MLP A→[32,32]→32", _net(_actions, _features), trainable=True),
        StateType("ObsEnsemble", "𝕊→[𝔽]", "5 independent observation encoders", _ensemble(_obs_net), trainable=True),
        StateType("FeatEnsemble", "𝔽→[𝔽]", "5 independent MLPs 32→32", _ensemble(_net(_features, _features)), trainable=True),
        StateType(
            "FeatActionEnsemble",
            "𝔽×𝔸→[𝔽]",
            "5 independent MLPs (32+A)→32",
            _ensemble(_net(_feature_action, _features)),
            trainable=True,
        ),
        StateType("RunningStats", "stats", "Welford mean and sample std of a scalar stream", _stats, single_use=True),
        StateType("Buffer", "fifo", f"FIFO of the last {BUFFER_CAPACITY} calls' values", _buffer, single_use=True),
        StateType("KnnMemory", "knn", f"nearest-neighbour memory of {KNN_CAPACITY} feature rows", _knn, single_use=True),
        StateType("NoiseSource", "rng", "a PRNG key advanced at every call", _noise, single_use=True),
        StateType("AgentPolicy", "policy", "the agent's actor-critic (read-only)", _policy, read_only=True),
    ]
}
