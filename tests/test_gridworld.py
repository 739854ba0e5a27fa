"""The JAX gridworld against its NumPy twin, hand-counted trajectories, and batching."""

import dataclasses
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import gridworld as gw
from envs import gridworld_config as gwc
from envs.gridworld_reference import GridworldReference

L, R, F, DONE = gw.TURN_LEFT, gw.TURN_RIGHT, gw.FORWARD, gw.DONE


def _rollout(reset_key, step_keys, actions, config):
    obs0, state0 = gw.reset(reset_key, config)

    def body(state, xs):
        key, action = xs
        obs, state, reward, terminated, truncated, info = gw.step(key, state, action, config)
        out = dict(obs=obs, pos=state.pos, dir=state.dir, step_count=state.step_count,
                   reward=reward, terminated=terminated, truncated=truncated, info=info)
        return state, out

    _, traj = jax.lax.scan(body, state0, (step_keys, actions))
    return obs0, traj


rollout = jax.jit(_rollout)
reset = jax.jit(gw.reset)
step = jax.jit(gw.step)


def _keys(seed, n):
    reset_key, step_key = jax.random.split(jax.random.key(seed))
    return reset_key, jax.random.split(step_key, n)


def _run(config, actions, seed=0):
    """Unbatched scan rollout, as NumPy."""
    reset_key, step_keys = _keys(seed, len(actions))
    obs0, traj = rollout(reset_key, step_keys, jnp.asarray(actions, jnp.int32), config)
    return np.asarray(obs0), jax.tree_util.tree_map(np.asarray, traj)


def _reached_states(config, actions):
    """(x, y, dir) reached by each action, stepping the jitted ``step`` one action at a time."""
    _, state = reset(jax.random.key(0), config)
    reached = []
    for action in actions:
        _, state, *_, info = step(jax.random.key(1), state, action, config)
        reached.append((info["agent_pos"], info["agent_dir"]))
    return reached


def _coverage(config, actions):
    visited = gw.empty_coverage(config)
    for pos, direction in _reached_states(config, actions):
        visited = gw.update_coverage(visited, pos, direction)
    return int(gw.coverage_count(visited))


PARITY_CONFIGS = [
    gwc.EMPTY,
    dataclasses.replace(gwc.EMPTY, size=7, max_steps=25),
    # A 3x3 interior makes random walks reach the goal often enough to exercise termination.
    dataclasses.replace(gwc.GOAL, size=5, max_steps=30),
    dataclasses.replace(gwc.FOUR_ROOMS, size=9, max_steps=30),
    dataclasses.replace(gwc.FOUR_ROOMS, size=8, max_steps=30),
]


@pytest.mark.parametrize("config", PARITY_CONFIGS, ids=lambda c: f"{c.layout}-{c.size}")
def test_parity_with_numpy_twin(config):
    n_steps = 300
    terminations = truncations = 0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        actions = rng.choice(gw.NUM_ACTIONS, size=n_steps, p=[0.2, 0.2, 0.4, 0.05, 0.05, 0.05, 0.05])
        reset_key, step_keys = _keys(seed, n_steps)
        obs0, traj = rollout(reset_key, step_keys, jnp.asarray(actions, jnp.int32), config)
        traj = jax.tree_util.tree_map(np.asarray, traj)
        doors_at_reset = np.asarray(jax.vmap(gw.door_positions, in_axes=(0, None))(step_keys, config))

        ref = GridworldReference(config.layout, config.size, config.max_steps)
        doors = np.asarray(gw.door_positions(reset_key, config)) if config.layout == "four_rooms" else None
        np.testing.assert_array_equal(np.asarray(obs0), ref.reset(doors))
        for t, action in enumerate(actions):
            ref_obs, reward, terminated, truncated = ref.step(int(action))
            np.testing.assert_array_equal(traj["info"]["final_obs"][t], ref_obs, err_msg=f"step {t}")
            np.testing.assert_allclose(traj["reward"][t], reward, rtol=1e-6)
            assert traj["terminated"][t] == terminated and traj["truncated"][t] == truncated
            assert tuple(traj["info"]["agent_pos"][t]) == ref.pos and traj["info"]["agent_dir"][t] == ref.dir
            if terminated or truncated:
                terminations += terminated
                truncations += truncated
                ref_obs = ref.reset(doors_at_reset[t] if config.layout == "four_rooms" else None)
            np.testing.assert_array_equal(traj["obs"][t], ref_obs, err_msg=f"step {t}")
            assert tuple(traj["pos"][t]) == ref.pos and traj["dir"][t] == ref.dir
            assert traj["step_count"][t] == ref.step_count
    assert truncations > 0
    if config.has_goal:
        assert terminations > 0


def test_start_observation():
    obs, state = reset(jax.random.key(0), gwc.EMPTY)
    obs = np.asarray(obs)
    assert obs.shape == (15, 15, 3) and obs.dtype == np.float32
    assert tuple(obs[1, 1]) == (10, 0, 0)
    assert tuple(obs[0, 5]) == (2, 5, 0) and tuple(obs[14, 14]) == (2, 5, 0)
    assert tuple(obs[7, 3]) == (1, 0, 0)
    assert int(np.sum(obs[..., 0] == 2)) == 4 * 14  # border only
    goal_obs, _ = reset(jax.random.key(0), gwc.GOAL)
    assert tuple(np.asarray(goal_obs)[13, 13]) == (8, 1, 0)


def test_forward_into_wall_and_turning():
    # Left from east faces north; (1, 0) is border wall, so forward leaves the agent in place.
    reached = _reached_states(gwc.EMPTY, [L, F, R, R, F, DONE, 3, 4, 5])
    positions = [(tuple(np.asarray(p)), int(d)) for p, d in reached]
    assert positions == [
        ((1, 1), 3), ((1, 1), 3), ((1, 1), 0), ((1, 1), 1), ((1, 2), 1),
        ((1, 2), 1), ((1, 2), 1), ((1, 2), 1), ((1, 2), 1),
    ]


@pytest.mark.parametrize(
    "actions, expected",
    [
        # Nothing stepped: the start state is not counted just by resetting.
        ([], 0),
        # R x3 reaches (1,1) facing S, W, N: 3 new states; the start (E) is never reached.
        ([R, R, R], 3),
        # The 4th R returns to (1,1,E), which now counts because an action reached it.
        ([R, R, R, R], 4),
        # R x8 cycles through the same 4 states twice.
        ([R] * 8, 4),
        # R then L: (1,1,S), then back to the start (1,1,E): 2.
        ([R, L], 2),
        # L: (1,1,N); F into the border keeps (1,1,N), already counted: 1.
        ([L, F], 1),
        # 3 forwards: (2,1,E), (3,1,E), (4,1,E); no-op actions re-reach (4,1,E): 3.
        ([F, F, F, DONE, 3, 4, 5], 3),
        # F, R, F, L, F: (2,1,E), (2,1,S), (2,2,S), (2,2,E), (3,2,E): 5.
        ([F, R, F, L, F], 5),
    ],
)
def test_coverage_hand_counted(actions, expected):
    assert _coverage(gwc.EMPTY, actions) == expected


def test_coverage_union_across_envs():
    visited = gw.empty_coverage(gwc.EMPTY)
    # Env 0 turns right to (1,1,S), env 1 turns left to (1,1,N): 2 distinct states.
    visited = gw.update_coverage(visited, jnp.array([[1, 1], [1, 1]]), jnp.array([1, 3]))
    assert int(gw.coverage_count(visited)) == 2
    # Both turn right: env 0 to (1,1,W), env 1 back to (1,1,E): 4.
    visited = gw.update_coverage(visited, jnp.array([[1, 1], [1, 1]]), jnp.array([2, 0]))
    assert int(gw.coverage_count(visited)) == 4
    # Both envs reaching the same new state adds it once: 5.
    visited = gw.update_coverage(visited, jnp.array([[2, 1], [2, 1]]), jnp.array([0, 0]))
    assert int(gw.coverage_count(visited)) == 5


def test_max_coverage_reachable():
    # Boustrophedon over the 13x13 interior, spinning R x4 in every cell to reach all
    # 4 directions there; one long episode so no reset interrupts the sweep.
    config = dataclasses.replace(gwc.EMPTY, max_steps=1000)
    interior = config.size - 2
    actions = []
    for row in range(interior):
        for col in range(interior):
            actions += [R] * 4
            if col < interior - 1:
                actions.append(F)
        if row < interior - 1:
            # Facing east at row end: R, F, R turns west one row down; facing west: L, F, L.
            turn = R if row % 2 == 0 else L
            actions += [turn, F, turn]
    assert len(actions) < config.max_steps
    _, traj = _run(config, actions)
    visited = gw.update_coverage(gw.empty_coverage(config), traj["info"]["agent_pos"], traj["info"]["agent_dir"])
    assert int(gw.coverage_count(visited)) == 676 == interior * interior * 4


def test_time_limit_truncates_and_resets():
    config = gwc.EMPTY
    reset_obs, _ = reset(jax.random.key(0), config)
    # 12 forwards reach (13,1); the rest of each episode bumps into the east wall.
    # 300 steps (three full episodes) shares the compiled rollout with the parity test.
    _, traj = _run(config, [F] * 300)
    assert not traj["terminated"].any()
    np.testing.assert_array_equal(np.flatnonzero(traj["truncated"]), [99, 199, 299])
    for end in (99, 199, 299):
        np.testing.assert_array_equal(traj["obs"][end], np.asarray(reset_obs))
        last = traj["info"]["final_obs"][end]
        assert tuple(last[13, 1]) == (10, 0, 0) and tuple(last[1, 1]) == (1, 0, 0)
        np.testing.assert_array_equal(last, traj["obs"][end - 1])
        assert tuple(traj["info"]["agent_pos"][end]) == (13, 1)
        assert tuple(traj["pos"][end]) == (1, 1) and traj["step_count"][end] == 0
    assert tuple(traj["pos"][100]) == (2, 1) and traj["step_count"][100] == 1
    visited = gw.update_coverage(gw.empty_coverage(config), traj["info"]["agent_pos"], traj["info"]["agent_dir"])
    # (2..13, 1, E); the post-reset start (1,1,E) is never reached by an action.
    assert int(gw.coverage_count(visited)) == 12


def test_goal_terminates_with_discounted_reward():
    config = gwc.GOAL
    # 12 forwards to (13,1), turn south, 12 forwards onto the goal at step 25.
    actions = [F] * 12 + [R] + [F] * 12
    reset_obs, _ = reset(jax.random.key(0), config)
    _, traj = _run(config, actions)
    assert traj["terminated"][24] and not traj["truncated"][24]
    assert not traj["terminated"][:24].any() and not traj["reward"][:24].any()
    np.testing.assert_allclose(traj["reward"][24], 1 - 0.9 * 25 / 100, rtol=1e-6)
    assert tuple(traj["info"]["final_obs"][24][13, 13]) == (10, 0, 1)
    np.testing.assert_array_equal(traj["obs"][24], np.asarray(reset_obs))


def test_four_rooms_doors_vary_and_connect():
    for size in (8, 19):
        config = dataclasses.replace(gwc.FOUR_ROOMS, size=size)
        mid = size // 2
        layouts = set()
        for seed in range(10):
            _, state = reset(jax.random.key(seed), config)
            walls = np.asarray(state.walls)
            layouts.add(walls.tobytes())
            inner = np.concatenate([walls[mid, 1:-1], walls[1:-1, mid]])
            assert np.sum(~inner) == 4 and walls[mid, mid]
            assert not walls[1, 1]
            free = {(x, y) for x in range(size) for y in range(size) if not walls[x, y]}
            seen, queue = {(1, 1)}, deque([(1, 1)])
            while queue:
                x, y = queue.popleft()
                for dx, dy in gw.DIR_TO_VEC:
                    nxt = (x + int(dx), y + int(dy))
                    if nxt in free and nxt not in seen:
                        seen.add(nxt)
                        queue.append(nxt)
            assert seen == free
        assert len(layouts) > 1


def test_jit_vmap_matches_unbatched_runs():
    # Same config and length as a parity case, so the unbatched rollout is already compiled.
    config = dataclasses.replace(gwc.FOUR_ROOMS, size=9, max_steps=30)
    n_envs, n_steps = 5, 300
    reset_keys = jax.random.split(jax.random.key(7), n_envs)
    step_keys = jax.vmap(lambda k: jax.random.split(k, n_steps))(jax.random.split(jax.random.key(8), n_envs))
    actions = jnp.asarray(np.random.default_rng(0).integers(0, 3, size=(n_envs, n_steps)), jnp.int32)
    batched = jax.jit(jax.vmap(_rollout, in_axes=(0, 0, 0, None)))(reset_keys, step_keys, actions, config)
    batched = jax.tree_util.tree_map(np.asarray, batched)
    batched_visited = gw.update_coverage(
        gw.empty_coverage(config), batched[1]["info"]["agent_pos"], batched[1]["info"]["agent_dir"]
    )
    union = gw.empty_coverage(config)
    for i in range(n_envs):
        single = rollout(reset_keys[i], step_keys[i], actions[i], config)
        jax.tree_util.tree_map(
            lambda b, s: np.testing.assert_array_equal(b[i], np.asarray(s)), batched, single
        )
        union = union | gw.update_coverage(
            gw.empty_coverage(config), single[1]["info"]["agent_pos"], single[1]["info"]["agent_dir"]
        )
    np.testing.assert_array_equal(np.asarray(batched_visited), np.asarray(union))
    assert int(gw.coverage_count(batched_visited)) > 0


def test_render_rgb():
    tile = 8
    _, state = reset(jax.random.key(0), gwc.GOAL)
    image = np.asarray(gw.render_rgb(state, gwc.GOAL, tile=tile))
    assert image.shape == (15 * tile, 15 * tile, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (100, 100, 100)
    assert tuple(image[13 * tile + 4, 13 * tile + 4]) == (0, 200, 0)

    def marker_centroid(state):
        img = np.asarray(gw.render_rgb(state, gwc.GOAL, tile=tile))
        agent_tile = img[tile:2 * tile, tile:2 * tile]
        rows, cols = np.nonzero(np.all(agent_tile == (255, 0, 0), axis=-1))
        assert rows.size > 0
        return rows.mean() - (tile - 1) / 2, cols.mean() - (tile - 1) / 2

    # The triangle's mass sits towards its base, opposite the way it points.
    offsets = [marker_centroid(state.replace(dir=jnp.int32(d))) for d in range(4)]
    assert offsets[0][1] < 0 and offsets[2][1] > 0  # east / west: horizontal
    assert offsets[1][0] < 0 and offsets[3][0] > 0  # south / north: vertical
    assert abs(offsets[0][0]) < 0.5 and abs(offsets[1][1]) < 0.5


def test_config_validation():
    with pytest.raises(ValueError):
        gwc.GridConfig(layout="maze")
    with pytest.raises(ValueError):
        gwc.GridConfig(layout="four_rooms", size=4)
    with pytest.raises(ValueError):
        gwc.GridConfig(max_steps=0)
    assert gwc.PRESETS["empty"] == gwc.GridConfig(size=15, max_steps=100)


def test_paper_counting_keeps_completed_episodes_only():
    """Two envs: env 0 ends an episode at its second step, env 1's episode is cut by the lifetime end."""
    completed = gw.empty_coverage(gwc.GridConfig(layout="empty", size=7))
    pending = jnp.stack([completed, completed])
    trajectory = [
        # (positions of env 0 and env 1, directions, done flags)
        ([[1, 1], [3, 3]], [0, 1], [False, False]),
        ([[1, 2], [3, 4]], [0, 1], [True, False]),
        ([[2, 2], [4, 4]], [2, 3], [False, False]),
    ]
    counts = []
    for pos, direction, done in trajectory:
        completed, pending = gw.update_episode_coverage(
            completed, pending, jnp.array(pos), jnp.array(direction), jnp.array(done)
        )
        counts.append(int(gw.coverage_count(completed)))
    assert counts == [0, 2, 2]
    assert {tuple(map(int, s)) for s in jnp.argwhere(completed)} == {(1, 1, 0), (1, 2, 0)}
    # What stays pending is the episodes still running: env 0's new one and env 1's cut one.
    assert int(pending[0].sum()) == 1 and int(pending[1].sum()) == 3
