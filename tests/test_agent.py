"""PPO and the curiosity reward pipeline.

Compiling a training loop costs seconds on a CPU, so the tests share a few compiled
functions through module-scoped fixtures and use tiny budgets.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import gridworld as gw
from envs import gridworld_config as gwc
from metacurio.agent import config as agent_config
from metacurio.agent import ppo
from metacurio.core.specs import EnvSpec

ROOM = gwc.GridConfig(layout="empty", size=7, max_steps=3)
"""The smallest room the agent's CNN accepts, with episodes short enough to end often."""
SMALL = dataclasses.replace(agent_config.GRIDWORLD_PAPER, num_envs=2, rollout_steps=4, lifetime_steps=16)
SMALL_SPEC = EnvSpec(obs_shape=(7, 7, 3), action_dim=gw.NUM_ACTIONS, discrete=True, batch_size=2)


class RecordingCuriosity:
    """Keeps every transition it is called on; rewards how much the observation changed."""

    def __init__(self, capacity: int):
        self.capacity = capacity

    def init(self, key, env_spec):
        buffer = jnp.zeros((self.capacity, env_spec.batch_size) + env_spec.obs_shape)
        return {
            "obs": buffer,
            "next_obs": buffer,
            "action": jnp.zeros((self.capacity, env_spec.batch_size, env_spec.action_dim)),
            "calls": jnp.zeros((), jnp.int32),
        }

    def step(self, state, batch):
        i = state["calls"]
        state = {
            "obs": state["obs"].at[i].set(batch.obs),
            "next_obs": state["next_obs"].at[i].set(batch.next_obs),
            "action": state["action"].at[i].set(batch.action),
            "calls": i + 1,
        }
        reward = jnp.mean(jnp.abs(batch.next_obs - batch.obs), axis=(1, 2, 3))
        return reward, state, {"calls": i + 1}


class TauRecorder:
    """Sums the rewards like the default combiner and keeps the τ of every call."""

    def __init__(self, capacity: int):
        self.capacity = capacity

    def init(self, key, env_spec):
        return {"tau": jnp.zeros((self.capacity, env_spec.batch_size)), "calls": jnp.zeros((), jnp.int32)}

    def step(self, state, batch):
        i = state["calls"]
        state = {"tau": state["tau"].at[i].set(batch.tau), "calls": i + 1}
        return batch.intrinsic + batch.extrinsic, state, {"tau": batch.tau}


@pytest.fixture(scope="module")
def small():
    """A recording trainer on ROOM and its whole 4-update lifetime, compiled once."""
    trainer = ppo.make_train(
        gw.reset,
        gw.step,
        ROOM,
        SMALL_SPEC,
        SMALL,
        RecordingCuriosity(SMALL.lifetime_steps),
        TauRecorder(SMALL.lifetime_steps),
    )
    run_all = jax.jit(lambda state: trainer.run_updates(state, SMALL.num_updates))
    start = trainer.init(jax.random.key(7))
    return trainer, run_all, start, run_all(start)


def plain(tree):
    """NumPy leaves, with PRNG keys as their raw bits, for comparisons."""

    def leaf(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return jax.tree_util.tree_map(leaf, tree)


def assert_trees_equal(a, b):
    jax.tree_util.tree_map(np.testing.assert_array_equal, plain(a), plain(b))


def gae_reference(rewards, values, next_values, terminals, dones, gamma, lam):
    """A_t = Σ_l (γλ)^(l-t) δ_l, summed until the episode of step t ends."""
    steps, envs = rewards.shape
    deltas = rewards + gamma * next_values * (1.0 - terminals) - values
    advantages = np.zeros_like(rewards)
    for n in range(envs):
        for t in range(steps):
            for l in range(t, steps):
                advantages[t, n] += (gamma * lam) ** (l - t) * deltas[l, n]
                if dones[l, n]:
                    break
    return advantages


def test_gae_scan_matches_plain_loop():
    rng = np.random.default_rng(0)
    shape = (9, 3)
    rewards, values, next_values = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
    dones = np.zeros(shape, bool)
    terminals = np.zeros(shape, bool)
    dones[[2, 5], 0] = True  # env 0: two terminations
    terminals[[2, 5], 0] = True
    dones[[3, 8], 1] = True  # env 1: a bootstrapped truncation, then a termination
    terminals[8, 1] = True
    advantages, returns = ppo.compute_gae(
        jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(next_values),
        jnp.asarray(terminals), jnp.asarray(dones), 0.9, 0.8,
    )
    expected = gae_reference(rewards, values, next_values, terminals, dones, 0.9, 0.8)
    np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(returns, expected + values, rtol=1e-5, atol=1e-6)


def test_return_normalizer_resets_where_the_episode_ended():
    normalizer = ppo.ReturnNormalizer.create(2)
    reward = jnp.array([1.0, 2.0])
    dones = [jnp.array([False, False]), jnp.array([True, False]), jnp.array([False, False])]
    scaled, rets = [], []
    for done in dones:
        out, normalizer = normalizer.normalize(reward, done, gamma=0.5, clip=10.0)
        scaled.append(out)
        rets.append(normalizer.ret)
    # Env 0 ends its episode at step 2, so step 3 starts a fresh return (the original, using
    # the previous step's done, would carry 0.5·1.5 + 1 = 1.75).
    np.testing.assert_allclose(np.stack(rets), [[1.0, 2.0], [0.0, 3.0], [1.0, 3.5]])
    # Returns seen: {1, 2}, then also {1.5, 3}, then also {1, 3.5}: population variances
    # 1/4, 35/64 and 11/12 (up to the tiny mean-0/var-1 prior).
    stds = np.sqrt([1 / 4, 35 / 64, 11 / 12])
    np.testing.assert_allclose(np.stack(scaled), np.array([1.0, 2.0]) / stds[:, None], rtol=1e-3)
    assert float(normalizer.count) == pytest.approx(6.0, abs=1e-3)

    # Equal returns in both envs leave only the prior's variance, so the first reward is large.
    clipped, _ = ppo.ReturnNormalizer.create(2).normalize(
        jnp.array([-3.0, -3.0]), jnp.array([False, False]), gamma=0.5, clip=10.0
    )
    np.testing.assert_allclose(clipped, [-10.0, -10.0])


def test_policy_distributions():
    logits = jnp.array([[0.5, -1.0, 2.0]])
    probs = np.exp([ppo.action_log_prob(logits, jnp.array([a]), True)[0] for a in range(3)])
    np.testing.assert_allclose(probs, jax.nn.softmax(logits)[0], rtol=1e-6)
    np.testing.assert_allclose(
        ppo.policy_entropy(logits, True), -np.sum(probs * np.log(probs)), rtol=1e-6
    )
    mean, log_std = jnp.array([[0.3, -1.0]]), jnp.array([[0.0, -0.5]])
    action = jnp.array([[1.0, -0.2]])
    expected = jax.scipy.stats.norm.logpdf(action, mean, jnp.exp(log_std)).sum()
    np.testing.assert_allclose(ppo.action_log_prob((mean, log_std), action, False), [expected], rtol=1e-6)
    sample = ppo.sample_action(jax.random.key(0), (mean, log_std), False)
    assert sample.shape == mean.shape


def agent_pose(obs):
    x, y = np.argwhere(obs[..., 0] == gw.AGENT_OBJECT)[0]
    return np.array([x, y]), int(obs[x, y, 2])


def test_curiosity_sees_true_final_observation(small):
    _, _, _, (final, metrics) = small
    record = jax.device_get(final.curiosity_state)
    steps = SMALL.num_updates * SMALL.rollout_steps
    assert int(record["calls"]) == steps
    reset_obs, reset_state = gw.reset(jax.random.key(0), ROOM)
    episode_ends = [t for t in range(steps) if (t + 1) % ROOM.max_steps == 0]
    distinct_final = 0
    for t in range(steps):
        for n in range(SMALL.num_envs):
            obs, next_obs = record["obs"][t, n], record["next_obs"][t, n]
            pos, direction = agent_pose(obs)
            state = reset_state.replace(
                pos=jnp.asarray(pos, jnp.int32), dir=jnp.asarray(direction, jnp.int32)
            )
            action = int(np.argmax(record["action"][t, n]))
            expected = gw.step_env(jax.random.key(0), state, action, ROOM)[0]
            # Every s' follows from (s, a) by the dynamics, episode ends included.
            np.testing.assert_array_equal(next_obs, expected)
            if t in episode_ends and t + 1 < steps:
                np.testing.assert_array_equal(record["obs"][t + 1, n], reset_obs)
                distinct_final += int(not np.array_equal(next_obs, reset_obs))
            elif t + 1 < steps:
                np.testing.assert_array_equal(record["obs"][t + 1, n], next_obs)
    assert distinct_final > 0, "the check needs an episode ending away from the start state"
    assert int(metrics["episode_count"].sum()) == SMALL.num_envs * len(episode_ends)
    # Module metrics are averaged over each update's steps.
    last_calls = np.arange(steps - SMALL.rollout_steps, steps) + 1
    np.testing.assert_allclose(metrics["curiosity/calls"][-1], last_calls.mean())


def test_combiner_gets_lifetime_fraction(small):
    _, _, _, (final, metrics) = small
    taus = np.asarray(final.combiner_state["tau"])
    steps = taus.shape[0]
    np.testing.assert_allclose(taus, np.repeat(np.arange(steps)[:, None], 2, 1) / SMALL.lifetime_steps)
    assert metrics["coverage"].shape == (SMALL.num_updates,)
    assert np.all(np.diff(metrics["coverage"]) >= 0) and metrics["coverage"][-1] > 0
    np.testing.assert_allclose(metrics["learning_rate"], SMALL.learning_rate * (1 - np.arange(4) / 4))


def test_paper_counting_stops_at_the_last_completed_episode():
    """Episodes end at steps 6 and 12 of a 16-step lifetime: the paper's count is the coverage
    after step 12 (the third update's), and the cut episode's steps 13-16 never count."""
    room = dataclasses.replace(ROOM, max_steps=6)
    trainer = ppo.make_train(gw.reset, gw.step, room, SMALL_SPEC, SMALL, ppo.ZeroCuriosity())
    _, metrics = jax.jit(trainer.train)(jax.random.key(5))
    paper, lifetime = np.asarray(metrics["coverage_completed_episodes"]), np.asarray(metrics["coverage"])
    assert paper[0] == 0 and 0 < paper[1] <= lifetime[1]
    assert paper[2] == paper[3] == lifetime[2] <= lifetime[3]


def test_same_seed_same_result(small):
    _, run_all, start, first = small
    assert_trees_equal(run_all(start), first)


def test_chunked_run_equals_one_run(small):
    trainer, _, start, whole = small
    run_half = jax.jit(lambda state: trainer.run_updates(state, SMALL.num_updates // 2))
    middle, first_metrics = run_half(start)
    end, second_metrics = run_half(middle)
    assert_trees_equal(end, whole[0])
    assert_trees_equal(
        jax.tree_util.tree_map(lambda a, b: np.concatenate([a, b]), first_metrics, second_metrics),
        whole[1],
    )


def test_vmap_over_trials_equals_separate_runs(small):
    trainer, run_all, _, _ = small
    # Initialised one by one and stacked because a vmapped init costs another long compile;
    # the learning test below runs vmap(init).
    starts = [trainer.init(key) for key in jax.random.split(jax.random.key(3), 2)]
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *starts)
    run_batched = jax.jit(jax.vmap(lambda state: trainer.run_updates(state, SMALL.num_updates)))
    batched = run_batched(stacked)
    for i, start in enumerate(starts):
        jax.tree_util.tree_map(
            lambda b, s: np.testing.assert_allclose(b[i], s, rtol=1e-4, atol=1e-5),
            plain(batched),
            plain(run_all(start)),
        )


GOAL_ROOM = gwc.GridConfig(layout="goal", size=7, max_steps=200)
"""The smallest room the agent's CNN accepts; a uniformly random policy reaches its goal in
about a quarter of the episodes, for a mean return of 0.11 (the optimum, 9 steps, earns 0.96)."""
LEARNING = dataclasses.replace(
    agent_config.GRIDWORLD_PAPER,
    num_envs=32,
    rollout_steps=16,
    lifetime_steps=960,
    learning_rate=1e-3,
    clip_eps=0.2,
    entropy_coef=0.01,
)
"""A budget that learns GOAL_ROOM on most seeds: the last fifth of a lifetime averages 0.5 to
0.79 per seed, but about one seed in 35 collapses onto a policy that hardly ever reaches the goal
(0.0 to 0.17; 14 of the 480 seeds behind the ranges below).
With 16 envs one seed in 10 stayed below 0.3 and seeds in the 0.4s were common, so the original
2-seed test with a 0.4 floor failed on other CPUs. The paper's lr 2.5e-4 without an entropy
bonus learns a sparse goal too slowly for a test; a larger entropy bonus (0.03, 0.05) learns
more slowly and fails more seeds."""
LEARNING_SEEDS = 8
LEARNING_FLOOR = 0.4
"""The median over LEARNING_SEEDS seeds must beat this: about 4x the random policy's 0.11. It
fails only if 4 of the 8 seeds collapse."""


def test_ppo_learns_to_reach_the_goal():
    """The median over 8 seeds of the last fifth's mean return clears LEARNING_FLOOR.

    A lifetime's outcome is chaotic in the floating-point details, which differ between CPUs
    (and XLA versions), so this asserts on a many-seed aggregate with a wide margin rather than
    on any one seed. Observed offline, running exactly this assertion with base keys
    ``jax.random.key(k)``, k = 0..19 (XLA single-threaded as in conftest), on an AVX-512 Xeon:

    ==========================================  ===============  ===============
    code generation (XLA_FLAGS)                 median, min-max  margin to floor
    ==========================================  ===============  ===============
    default                                     0.653 - 0.729    0.25
    ``--xla_cpu_max_isa=AVX2``                  0.647 - 0.725    0.25
    ``--xla_cpu_max_isa=SSE4_2`` (no FMA)       0.621 - 0.743    0.22
    ==========================================  ===============  ===============

    Each code generation gives different per-seed returns, as another CPU would.
    """
    spec = EnvSpec(obs_shape=(7, 7, 3), action_dim=gw.NUM_ACTIONS, discrete=True, batch_size=LEARNING.num_envs)
    trainer = ppo.make_train(gw.reset, gw.step, GOAL_ROOM, spec, LEARNING, ppo.ZeroCuriosity())
    _, metrics = jax.jit(jax.vmap(trainer.train))(jax.random.split(jax.random.key(0), LEARNING_SEEDS))
    last_fifth = slice(-(LEARNING.num_updates // 5), None)
    returns = np.asarray(metrics["episode_return_sum"])[:, last_fifth].sum(1)
    episodes = np.asarray(metrics["episode_count"])[:, last_fifth].sum(1)
    mean_returns = returns / episodes
    assert np.median(mean_returns) > LEARNING_FLOOR, mean_returns


def test_config_and_spec_are_checked():
    with pytest.raises(ValueError, match="divisible"):
        dataclasses.replace(SMALL, num_minibatches=3)
    with pytest.raises(ValueError, match="at least one rollout"):
        dataclasses.replace(SMALL, lifetime_steps=3)
    with pytest.raises(ValueError, match="batch_size"):
        ppo.make_train(gw.reset, gw.step, ROOM, SMALL_SPEC, agent_config.GRIDWORLD_PAPER, ppo.ZeroCuriosity())


def line_reset(key, config):
    position = jax.random.uniform(key, (1,), minval=-1.0, maxval=1.0)
    return position, {"position": position, "steps": jnp.zeros((), jnp.int32)}


def line_step(key, state, action, config):
    """A point on a line pushed by a continuous action; reward is closeness to 0."""
    position = state["position"] + jnp.clip(action, -1.0, 1.0)
    steps = state["steps"] + 1
    truncated = steps >= config
    reset_obs, reset_state = line_reset(key, config)
    state = jax.tree_util.tree_map(
        lambda r, s: jnp.where(truncated, r, s), reset_state, {"position": position, "steps": steps}
    )
    reward = -jnp.abs(position[0])
    return state["position"], state, reward, jnp.array(False), truncated, {"final_obs": position}


def test_continuous_actions_and_vector_observations():
    config = dataclasses.replace(SMALL, bootstrap_truncation=True)
    spec = EnvSpec(obs_shape=(1,), action_dim=1, discrete=False, batch_size=2)
    trainer = ppo.make_train(line_reset, line_step, 5, spec, config, ppo.ZeroCuriosity())
    final, metrics = jax.jit(trainer.train)(jax.random.key(0))
    assert final.coverage is None and "coverage" not in metrics
    assert int(metrics["episode_count"].sum()) == 2 * (16 // 5)
    assert all(np.all(np.isfinite(value)) for value in metrics.values())
