"""The meta-training gridworld: MiniGrid's empty room (and two variants) in pure JAX.

The API is gymnax-like and stateless so that whole lifetimes of many parallel
environments can run under ``jax.jit``/``jax.vmap``/``lax.scan``:

* ``reset(key, config) -> (obs, state)``
* ``step(key, state, action, config) -> (obs, state, reward, terminated, truncated, info)``
  resets automatically when an episode ends; ``step_env`` is the same without
  the reset.

``GridConfig`` is registered as a *static* pytree (it has no array leaves), so it
can be passed straight through ``jax.jit`` and ``jax.vmap`` (``in_axes=None``)
without ``static_argnums``; changing it triggers a recompile, as changing the
grid's shape must.

Observations follow MiniGrid's fully observable ``grid.encode()``: a
``(size, size, 3)`` array indexed ``[x, y, channel]`` of (object, colour,
state), returned as float32 because networks consume it.

Coverage (the paper's exploration score) is the number of distinct
``(x, y, direction)`` states that any of the parallel environments reaches by
an action over the whole lifetime. The original implementation read this count
at the end of the last *completed* episode and so missed the final partial
episode; we deliberately count every step of the lifetime instead, so scores
can be slightly higher than the original's for the same behaviour.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.gridworld_config import GridConfig

# MiniGrid action indices; pickup, drop, toggle and done exist so that policies
# have MiniGrid's 7-way action space, but they do nothing in these layouts.
TURN_LEFT, TURN_RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)
NUM_ACTIONS = 7

# Unit moves for directions 0 east, 1 south, 2 west, 3 north (y grows downward).
DIR_TO_VEC = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int32)

# MiniGrid's (object, colour, state) codes.
EMPTY_CODE = (1, 0, 0)
WALL_CODE = (2, 5, 0)
GOAL_CODE = (8, 1, 0)
AGENT_OBJECT = 10
AGENT_COLOUR = 0  # red

START_POS = (1, 1)
START_DIR = 0

jax.tree_util.register_static(GridConfig)


@struct.dataclass
class EnvState:
    """Everything that changes between steps or episodes, as arrays."""

    pos: jax.Array
    """int32 ``(2,)``: agent ``(x, y)``."""
    dir: jax.Array
    """int32 scalar: facing direction, 0 east, 1 south, 2 west, 3 north."""
    step_count: jax.Array
    """int32 scalar: actions taken in the current episode."""
    walls: jax.Array
    """bool ``(size, size)`` indexed ``[x, y]``: the layout, per episode because
    four_rooms redraws its doors."""
    goal_pos: jax.Array
    """int32 ``(2,)``: goal ``(x, y)``, or ``NO_GOAL`` when the layout has none."""


def door_positions(key: jax.Array, config: GridConfig) -> jax.Array:
    """Four-rooms door coordinates drawn from ``key``, as int32 ``(4,)``.

    Order: y of the door in the upper and lower halves of the vertical inner
    wall, then x of the door in the left and right halves of the horizontal
    inner wall. ``reset`` uses exactly this draw, so tests can rebuild a layout.
    """
    mid = config.size // 2
    low = np.array([1, mid + 1, 1, mid + 1], dtype=np.uint32)
    span = np.array([mid, config.size - 1, mid, config.size - 1], dtype=np.uint32) - low
    # Raw bits modulo the span rather than jax.random.randint: the bias is below
    # size / 2**32, and randint's extra machinery roughly doubled the compile
    # time of the batched step.
    return (low + jax.random.bits(key, (4,), jnp.uint32) % span).astype(jnp.int32)


def _cell_mask(config: GridConfig, pos: jax.Array) -> jax.Array:
    """bool ``(size, size)``, true only at ``pos``.

    Comparisons instead of indexed reads/writes keep the step elementwise; under
    vmap the indexed version became batched scatters that took about twice as
    long to compile."""
    x = jnp.arange(config.size)[:, None]
    y = jnp.arange(config.size)[None, :]
    return (x == pos[0]) & (y == pos[1])


def _walls(key: jax.Array, config: GridConfig) -> jax.Array:
    x = jnp.arange(config.size)[:, None]
    y = jnp.arange(config.size)[None, :]
    last = config.size - 1
    walls = (x == 0) | (y == 0) | (x == last) | (y == last)
    if config.layout == "four_rooms":
        mid = config.size // 2
        doors = door_positions(key, config)
        # Door ranges exclude mid, so the crossing (mid, mid) always stays wall.
        vertical = (x == mid) & (y != doors[0]) & (y != doors[1])
        horizontal = (y == mid) & (x != doors[2]) & (x != doors[3])
        walls = walls | vertical | horizontal
    return walls


def get_obs(state: EnvState, config: GridConfig) -> jax.Array:
    """MiniGrid's full-grid encoding of ``state``, float32 ``(size, size, 3)``."""
    codes = jnp.where(state.walls[..., None], jnp.array(WALL_CODE), jnp.array(EMPTY_CODE))
    # NO_GOAL matches no cell, so layouts without a goal need no special case.
    codes = jnp.where(_cell_mask(config, state.goal_pos)[..., None], jnp.array(GOAL_CODE), codes)
    agent = jnp.stack([AGENT_OBJECT, AGENT_COLOUR, state.dir])
    codes = jnp.where(_cell_mask(config, state.pos)[..., None], agent, codes)
    return codes.astype(jnp.float32)


def reset(key: jax.Array, config: GridConfig) -> tuple[jax.Array, EnvState]:
    """Start an episode; ``key`` only matters for four_rooms' doors."""
    state = EnvState(
        pos=jnp.array(START_POS, jnp.int32),
        dir=jnp.array(START_DIR, jnp.int32),
        step_count=jnp.array(0, jnp.int32),
        walls=_walls(key, config),
        goal_pos=jnp.array(config.goal_pos, jnp.int32),
    )
    return get_obs(state, config), state


def step_env(key: jax.Array, state: EnvState, action: jax.Array, config: GridConfig):
    """One MiniGrid step without automatic reset.

    ``key`` is unused (the dynamics are deterministic) but kept so that this has
    the same signature as ``step``. ``info`` has the same keys as ``step``'s;
    here ``final_obs`` is simply ``obs``.
    """
    del key
    step_count = state.step_count + 1
    turn = jnp.where(action == TURN_LEFT, -1, jnp.where(action == TURN_RIGHT, 1, 0))
    direction = (state.dir + turn) % 4
    target = state.pos + jnp.asarray(DIR_TO_VEC)[state.dir]
    moves = (action == FORWARD) & ~jnp.any(state.walls & _cell_mask(config, target))
    pos = jnp.where(moves, target, state.pos)
    # MiniGrid counts the step before computing the reward, so the first step earns 1 - 0.9/max_steps.
    terminated = moves & jnp.all(target == state.goal_pos)
    reward = jnp.where(terminated, 1.0 - 0.9 * (step_count / config.max_steps), 0.0).astype(jnp.float32)
    # MiniGrid sets truncation independently, so reaching the goal on the last step sets both.
    truncated = step_count >= config.max_steps
    state = state.replace(pos=pos, dir=direction, step_count=step_count)
    obs = get_obs(state, config)
    info = {"final_obs": obs, "agent_pos": pos, "agent_dir": direction}
    return obs, state, reward, terminated, truncated, info


def step(key: jax.Array, state: EnvState, action: jax.Array, config: GridConfig):
    """One step that resets automatically when the episode ends.

    On episode end the returned ``obs``/``state`` start the next episode (its
    layout drawn from ``key``); ``info["final_obs"]`` is the true last
    observation, and ``info["agent_pos"]``/``info["agent_dir"]`` describe the
    state the action reached, before any reset.
    """
    obs_step, state_step, reward, terminated, truncated, info = step_env(key, state, action, config)
    obs_reset, state_reset = reset(key, config)
    done = terminated | truncated
    state = jax.tree_util.tree_map(lambda r, s: jnp.where(done, r, s), state_reset, state_step)
    obs = jnp.where(done, obs_reset, obs_step)
    return obs, state, reward, terminated, truncated, info


def empty_coverage(config: GridConfig) -> jax.Array:
    """No ``(x, y, direction)`` visited yet: bool ``(size, size, 4)``."""
    return jnp.zeros((config.size, config.size, 4), dtype=bool)


def update_coverage(visited: jax.Array, pos: jax.Array, direction: jax.Array) -> jax.Array:
    """Mark the states reached by a step.

    ``pos`` is ``(..., 2)`` and ``direction`` ``(...)`` with the same leading
    (env) axes, so one call marks every parallel env. Feed it ``info["agent_pos"]``
    and ``info["agent_dir"]``: the reset state is never reached by an action, so
    the start state only counts if an action returns to it.
    """
    pos = jnp.reshape(pos, (-1, 2))
    direction = jnp.reshape(direction, (-1,))
    return visited.at[pos[:, 0], pos[:, 1], direction].set(True)


def update_episode_coverage(
    completed: jax.Array, pending: jax.Array, pos: jax.Array, direction: jax.Array, done: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The paper's counting: states reached in *completed* episodes only.

    ``pending`` is ``(envs, size, size, 4)``: what each env reached in its current episode.
    A step marks its reached state there; when the step ends the env's episode, the episode's
    states join ``completed`` and the env starts again from nothing. An episode cut by the end
    of the lifetime therefore never counts.
    """
    envs = jnp.arange(pending.shape[0])
    pending = pending.at[envs, pos[:, 0], pos[:, 1], direction].set(True)
    completed = completed | jnp.any(pending & done[:, None, None, None], axis=0)
    return completed, pending & ~done[:, None, None, None]


def coverage_count(visited: jax.Array) -> jax.Array:
    """Number of distinct visited states, as an int32 scalar (``int()`` it outside jit)."""
    return jnp.sum(visited, dtype=jnp.int32)


# RGB for empty, wall, goal and the agent marker.
_EMPTY_RGB = (0, 0, 0)
_WALL_RGB = (100, 100, 100)
_GOAL_RGB = (0, 200, 0)
_AGENT_RGB = (255, 0, 0)


def _agent_masks(tile: int) -> np.ndarray:
    """Triangle pointing east, rotated for each direction: bool ``(4, tile, tile)`` [row, col]."""
    centre = (np.arange(tile) + 0.5) / tile
    rows, cols = np.meshgrid(centre, centre, indexing="ij")
    east = (cols >= 0.15) & (cols <= 0.85) & (np.abs(rows - 0.5) <= 0.5 * (0.85 - cols))
    # Image rows grow southward, so a clockwise quarter turn (k=-1) takes east to south.
    return np.stack([np.rot90(east, k=-d) for d in range(4)])


def render_rgb(state: EnvState, config: GridConfig, tile: int = 8) -> jax.Array:
    """Unbatched ``state`` as uint8 ``(size * tile, size * tile, 3)``, image rows = y."""
    cells = jnp.where(state.walls[..., None], jnp.array(_WALL_RGB), jnp.array(_EMPTY_RGB))
    cells = jnp.where(_cell_mask(config, state.goal_pos)[..., None], jnp.array(_GOAL_RGB), cells)
    image = jnp.repeat(jnp.repeat(jnp.swapaxes(cells, 0, 1), tile, axis=0), tile, axis=1)
    cell_of_pixel = jnp.arange(config.size * tile) // tile
    in_agent_tile = (cell_of_pixel[:, None] == state.pos[1]) & (cell_of_pixel[None, :] == state.pos[0])
    marker = jnp.tile(jnp.asarray(_agent_masks(tile))[state.dir], (config.size, config.size))
    image = jnp.where((in_agent_tile & marker)[..., None], jnp.array(_AGENT_RGB), image)
    return image.astype(jnp.uint8)
