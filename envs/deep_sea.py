"""bsuite's DeepSea (0.3.6, deterministic) in pure JAX: a hard-exploration target.

An N×N grid; the agent starts in the top-left cell and falls one row per step, so every
episode lasts exactly N steps. In each cell one of the two actions moves it one column right
(paying ``unscaled_move_cost / N``) and the other one column left (free); columns are clipped
to the grid. Moving right from the last column earns +1: only the policy that goes right at
every one of the N steps finds the treasure, for a return of 1 - unscaled_move_cost, while
dithering exploration finds it with probability 2^-N per episode.

Which action means "right" differs per cell (bsuite's ``randomize_actions``): the mapping is
drawn once per environment and kept for its whole lifetime, across episode resets, as bsuite
draws it once in the constructor. It therefore lives in the state, and the automatic reset of
``step`` keeps it.

Same stateless gymnax-style API as ``envs.gridworld``:

* ``reset(key, config) -> (obs, state)`` draws the mapping from ``key``; ``with_mapping``
  builds the start state for a given mapping (for example bsuite's ``_action_mapping``);
* ``step(key, state, action, config) -> (obs, state, reward, terminated, truncated, info)``
  resets automatically; ``step_env`` is the same without the reset.

Only the deterministic variant exists here: bsuite's stochastic one (right fails with
probability 1/N, noisy end rewards) is not implemented.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

NUM_ACTIONS = 2


@dataclasses.dataclass(frozen=True)
class DeepSeaConfig:
    """Static description of a DeepSea; hashable so jit can key its cache on it.

    Deterministic transitions only (bsuite's ``deterministic=True``).
    """

    size: int = 10
    """N: the grid is N×N and every episode lasts exactly N steps."""

    unscaled_move_cost: float = 0.01
    """Cost of the whole optimal path: each "right" move costs ``unscaled_move_cost / N``
    (bsuite's default 0.01, so the optimal return is 0.99)."""

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"size must be positive, got {self.size}")
        if self.unscaled_move_cost < 0:
            raise ValueError(f"unscaled_move_cost must be non-negative, got {self.unscaled_move_cost}")

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """The observation as the agent sees it: the N×N one-hot flattened to a vector.

        Flat rather than an (N, N, 1) image because the image networks do not fit DeepSea:
        the agent's CNN (three 2×2 valid convs around a 2×2 pool) needs N >= 7, the curiosity
        programs' ObsNet adds its own 3×3 conv, and the agent scales images by 1/255 (MiniGrid
        codes), which would shrink the one-hot to 0.004. Vector observations go through MLPs
        in both the agent and every observation network, for any N.
        """
        return (self.size * self.size,)


# Static config: no array leaves, passes through jit and vmap (in_axes=None) unchanged.
jax.tree_util.register_static(DeepSeaConfig)


@struct.dataclass
class DeepSeaState:
    """Position in the current episode, the lifetime's action mapping and bsuite's counters."""

    row: jax.Array
    """int32 scalar: the row, equal to the steps taken this episode (N at the terminal step)."""
    column: jax.Array
    """int32 scalar: the column, 0 (left) to N - 1 (right)."""
    action_mapping: jax.Array
    """int32 ``(N, N)`` indexed ``[row, column]``: the action (0 or 1) that moves right there,
    bsuite's ``_action_mapping``; fixed for the environment's lifetime."""
    episodes: jax.Array
    """int32 scalar: episodes this environment has completed in its lifetime."""
    treasures: jax.Array
    """int32 scalar: times this environment reached the treasure in its lifetime (bsuite's
    ``denoised_return`` in the deterministic variant)."""
    first_treasure_episode: jax.Array
    """int32 scalar: the 1-based episode of this environment in which it first reached the
    treasure, 0 while it never has."""


def draw_mapping(key: jax.Array, config: DeepSeaConfig) -> jax.Array:
    """A fresh per-cell action mapping: int32 ``(N, N)``, each cell 0 or 1 with probability ½."""
    return jax.random.bernoulli(key, 0.5, (config.size, config.size)).astype(jnp.int32)


def with_mapping(action_mapping: jax.Array) -> DeepSeaState:
    """The start state of a new environment whose cells map right to ``action_mapping``."""
    zero = jnp.zeros((), jnp.int32)
    return DeepSeaState(
        row=zero,
        column=zero,
        action_mapping=jnp.asarray(action_mapping, jnp.int32),
        episodes=zero,
        treasures=zero,
        first_treasure_episode=zero,
    )


def right_action(state: DeepSeaState) -> jax.Array:
    """The action that moves right from the current cell (the treasure-seeking action)."""
    return state.action_mapping[state.row, state.column]


def get_obs(state: DeepSeaState, config: DeepSeaConfig) -> jax.Array:
    """float32 ``(N * N,)``: one-hot of ``row * N + column``, all zeros once the episode ended."""
    cell = state.row * config.size + state.column
    hot = (jnp.arange(config.size * config.size) == cell) & (state.row < config.size)
    return hot.astype(jnp.float32)


def reset(key: jax.Array, config: DeepSeaConfig) -> tuple[jax.Array, DeepSeaState]:
    """A new environment: its action mapping drawn from ``key``, at the start of an episode."""
    state = with_mapping(draw_mapping(key, config))
    return get_obs(state, config), state


def step_env(key: jax.Array, state: DeepSeaState, action: jax.Array, config: DeepSeaConfig):
    """One step without automatic reset, bsuite's ``DeepSea._step`` with deterministic moves.

    ``key`` is unused (deterministic dynamics) but kept for ``step``'s signature. ``info`` has
    ``final_obs`` (here simply ``obs``) and ``treasure``: this step reached the treasure.
    """
    del key
    last = config.size - 1
    moves_right = action == right_action(state)
    treasure = (state.column == last) & moves_right
    # bsuite adds the treasure first and then subtracts the move cost; same order, same rounding.
    reward = jnp.where(treasure, 1.0, 0.0) - jnp.where(moves_right, config.unscaled_move_cost / config.size, 0.0)
    column = jnp.clip(state.column + jnp.where(moves_right, 1, -1), 0, last)
    row = state.row + 1
    terminated = row == config.size
    episodes = state.episodes + terminated
    first_find = (state.first_treasure_episode == 0) & treasure
    state = state.replace(
        row=row,
        column=column,
        episodes=episodes,
        treasures=state.treasures + treasure,
        # The treasure is only reachable on an episode's last step, so ``episodes`` already counts it.
        first_treasure_episode=jnp.where(first_find, episodes, state.first_treasure_episode),
    )
    obs = get_obs(state, config)
    info = {"final_obs": obs, "treasure": treasure}
    return obs, state, reward.astype(jnp.float32), terminated, jnp.zeros((), bool), info


def step(key: jax.Array, state: DeepSeaState, action: jax.Array, config: DeepSeaConfig):
    """One step that starts the next episode when this one ends.

    The next episode keeps the environment's action mapping and lifetime counters (bsuite
    draws the mapping once per environment); ``info["final_obs"]`` is the true, all-zero,
    terminal observation.
    """
    obs_step, state_step, reward, terminated, truncated, info = step_env(key, state, action, config)
    zero = jnp.zeros((), jnp.int32)
    state = state_step.replace(
        row=jnp.where(terminated, zero, state_step.row),
        column=jnp.where(terminated, zero, state_step.column),
    )
    obs = jnp.where(terminated, get_obs(state, config), obs_step)
    return obs, state, reward, terminated, truncated, info
