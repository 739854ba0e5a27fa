"""DeepSea in JAX against bsuite's own, and the trainer's behaviour on a small DeepSea."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import deep_sea

bsuite_deep_sea = pytest.importorskip("bsuite.environments.deep_sea")


def _rollout(config: deep_sea.DeepSeaConfig, action_mapping, actions):
    """Our env stepped through ``actions`` with autoreset, per step: (obs after the step's
    reset, final obs, reward, terminated, truncated)."""

    def one(state, action):
        obs, state, reward, terminated, truncated, info = deep_sea.step(jax.random.key(0), state, action, config)
        return state, (obs, info["final_obs"], reward, terminated, truncated)

    return jax.lax.scan(one, deep_sea.with_mapping(action_mapping), actions)


_rollout_jit = jax.jit(_rollout, static_argnums=0)


@pytest.mark.parametrize("size", [1, 2, 5, 8, 11])
@pytest.mark.parametrize("seed", [0, 7, 42])
def test_matches_bsuite_on_random_actions(size, seed):
    reference = bsuite_deep_sea.DeepSea(size=size, deterministic=True, randomize_actions=True, seed=seed, mapping_seed=seed)
    config = deep_sea.DeepSeaConfig(size=size)
    episodes = 6
    actions = np.random.default_rng(seed).integers(0, 2, size * episodes)
    mapping = np.asarray(reference._action_mapping)
    _, (obs, final_obs, reward, terminated, truncated) = _rollout_jit(config, mapping, jnp.asarray(actions, jnp.int32))

    timestep = reference.reset()
    start_obs = timestep.observation.reshape(-1)
    np.testing.assert_array_equal(deep_sea.get_obs(deep_sea.with_mapping(mapping), config), start_obs)
    for t, action in enumerate(actions):
        timestep = reference.step(int(action))
        np.testing.assert_array_equal(final_obs[t], timestep.observation.reshape(-1), err_msg=f"step {t}")
        assert reward[t] == pytest.approx(timestep.reward, abs=1e-6), f"step {t}"
        assert bool(terminated[t]) == timestep.last(), f"step {t}"
        assert not bool(truncated[t])
        if timestep.last():
            timestep = reference.reset()
        np.testing.assert_array_equal(obs[t], timestep.observation.reshape(-1), err_msg=f"step {t}")


@pytest.mark.parametrize("size", [3, 10])
def test_matches_bsuite_when_seeking_the_treasure(size):
    """Random actions almost never find the treasure at size 10; the right-per-mapping policy does."""
    reference = bsuite_deep_sea.DeepSea(size=size, seed=3, mapping_seed=3)
    mapping = np.asarray(reference._action_mapping)
    config = deep_sea.DeepSeaConfig(size=size)
    state = deep_sea.with_mapping(mapping)
    reference.reset()
    total, ours = 0.0, 0.0
    for _ in range(size):
        action = deep_sea.right_action(state)
        _, state, reward, terminated, _, info = deep_sea.step(jax.random.key(0), state, action, config)
        timestep = reference.step(int(action))
        total += timestep.reward
        ours += float(reward)
    assert bool(terminated) and bool(info["treasure"])
    assert ours == pytest.approx(total, abs=1e-5)
    assert ours == pytest.approx(0.99, abs=1e-5)
    assert int(state.treasures) == 1 and int(state.first_treasure_episode) == 1 and int(state.episodes) == 1


def test_mapping_is_drawn_from_the_key_and_kept_across_resets():
    config = deep_sea.DeepSeaConfig(size=8)
    _, a = deep_sea.reset(jax.random.key(1), config)
    _, b = deep_sea.reset(jax.random.key(2), config)
    assert not np.array_equal(a.action_mapping, b.action_mapping)
    state = a
    for t in range(3 * config.size):
        _, state, *_ = deep_sea.step(jax.random.key(t), state, jnp.int32(t % 2), config)
    np.testing.assert_array_equal(state.action_mapping, a.action_mapping)
    assert int(state.episodes) == 3 and int(state.row) == 0 and int(state.column) == 0


def test_always_right_finds_the_treasure_every_episode_under_jit_and_vmap():
    config = deep_sea.DeepSeaConfig(size=6)
    episodes = 3

    def lifetime(key):
        _, state = deep_sea.reset(key, config)

        def one(state, _):
            _, state, reward, terminated, _, info = deep_sea.step(key, state, deep_sea.right_action(state), config)
            return state, (reward, terminated, info["treasure"])

        return jax.lax.scan(one, state, None, episodes * config.size)

    state, (reward, terminated, treasure) = jax.jit(jax.vmap(lifetime))(jax.random.split(jax.random.key(0), 4))
    returns = reward.reshape(4, episodes, config.size).sum(axis=-1)
    np.testing.assert_allclose(returns, 0.99, atol=1e-5)
    assert int(terminated.sum()) == 4 * episodes and int(treasure.sum()) == 4 * episodes
    np.testing.assert_array_equal(state.treasures, episodes)
    np.testing.assert_array_equal(state.first_treasure_episode, 1)
    # Four keys, four different mappings.
    assert len({m.tobytes() for m in np.asarray(state.action_mapping)}) == 4


def test_never_right_never_finds_the_treasure():
    config = deep_sea.DeepSeaConfig(size=5)
    _, state = deep_sea.reset(jax.random.key(0), config)
    for _ in range(4 * config.size):
        _, state, reward, *_ = deep_sea.step(jax.random.key(0), state, 1 - deep_sea.right_action(state), config)
        assert float(reward) == 0.0
    assert int(state.treasures) == 0 and int(state.first_treasure_episode) == 0 and int(state.episodes) == 4


def test_plain_ppo_finds_a_small_deep_sea_that_never_right_cannot():
    """N=5, 60 episodes per env: plain PPO found the treasure on 16 of 16 seeds offline, by
    episode 96 of 480 at the latest; demanding 6 of 8 leaves margin."""
    from metacurio.agent.deep_sea import run_deep_sea

    size, episodes, seeds = 5, 60, range(8)
    results = run_deep_sea(None, size, seeds, episodes)
    assert sum(r.found for r in results) >= 6
    for r in results:
        assert r.program_id == "none" and r.finite and r.episodes == 8 * episodes
        assert r.env_steps == 8 * episodes * size and len(r.curve_steps) == episodes == len(r.curve_finds)
        assert r.found == (r.first_find_episode is not None) == (r.curve_finds[-1] > 0)
        if r.found:
            # The first find's round is the first update whose cumulative count is positive.
            assert r.first_find_episode == 8 * (int(np.argmax(r.curve_finds > 0)) + 1)

    config = deep_sea.DeepSeaConfig(size=size)

    def never_right(key):
        _, state = deep_sea.reset(key, config)

        def one(state, _):
            _, state, *_ = deep_sea.step(key, state, 1 - deep_sea.right_action(state), config)
            return state, None

        return jax.lax.scan(one, state, None, episodes * size)[0].treasures

    treasures = jax.jit(jax.vmap(never_right))(jax.random.split(jax.random.key(0), 8 * len(seeds)))
    assert int(treasures.sum()) == 0
