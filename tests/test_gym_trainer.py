"""The gymnasium adapter: spaces, episode ends, programs on vector and continuous envs, learning."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import jax.numpy as jnp
import numpy as np
import pytest

from envs import gymnasium_envs
from metacurio.agent import gym_presets
from metacurio.agent import gym_trainer as ga
from metacurio.core.compiler import compile_program
from helpers import reference_programs

COUNTDOWN = "metacurio-test/Countdown-v0"
COUNTDOWN_BOX = "metacurio-test/CountdownBox-v0"


class Countdown(gym.Env):
    """Observation = steps left; reward 1 per step; terminates after 3 steps.

    The action spaces are awkward on purpose (Discrete with start -1, a narrow Box) and every
    action is checked, so the adapter's offsets and clipping are exercised.
    """

    def __init__(self, box: bool = False):
        self.box = box
        if box:
            self.observation_space = gym.spaces.Box(0.0, 3.0, (1,), np.float32)
            self.action_space = gym.spaces.Box(-0.5, 0.5, (2,), np.float32)
        else:
            self.observation_space = gym.spaces.Discrete(4)
            self.action_space = gym.spaces.Discrete(2, start=-1)

    def _obs(self):
        return np.array([self.left], np.float32) if self.box else self.left

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.left = 3
        return self._obs(), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, self.action_space.dtype)), action
        self.left -= 1
        return self._obs(), 1.0, self.left == 0, False, {}


if COUNTDOWN not in gym.registry:
    gym.register(COUNTDOWN, entry_point=Countdown)
    gym.register(COUNTDOWN_BOX, entry_point=lambda: Countdown(box=True), max_episode_steps=2)


class Probe:
    """A curiosity module that reports what it is shown: s, s' (first feature or one-hot index), |a|."""

    def init(self, key, env_spec):
        return ()

    def step(self, state, batch):
        def code(x):
            return jnp.argmax(x, axis=-1) if x.shape[-1] == 4 else x[:, 0]

        metrics = {"obs": code(batch.obs), "next_obs": code(batch.next_obs), "max_abs_action": jnp.max(jnp.abs(batch.action), -1)}
        return jnp.zeros(batch.obs.shape[0]), state, metrics


def compiled(name: str):
    return compile_program(reference_programs()[name])


def tiny(env_id: str, num_envs: int, steps: int, rollout: int | None = None) -> gym_presets.GymPreset:
    ppo = dataclasses.replace(
        gym_presets.CONTINUOUS_CONTROL_PPO, num_envs=num_envs, rollout_steps=rollout or steps, lifetime_steps=steps, num_minibatches=1
    )
    return gym_presets.GymPreset(env_id, ppo, (4,))


# Spaces and errors


def test_supported_spaces_are_described():
    box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    spaces = gymnasium_envs.spaces_of("x", box, gym.spaces.Discrete(5, start=2))
    assert (spaces.obs_shape, spaces.action_dim, spaces.discrete, spaces.action_start) == ((3,), 5, True, 2)
    spaces = gymnasium_envs.spaces_of("x", gym.spaces.Discrete(6, start=1), gym.spaces.Box(-2.0, 2.0, (2,), np.float32))
    assert (spaces.obs_shape, spaces.action_dim, spaces.discrete) == ((6,), 2, False)
    assert spaces.action_low == (-2.0, -2.0) and spaces.action_high == (2.0, 2.0)
    assert spaces.env_spec(3).batch_size == 3
    np.testing.assert_array_equal(spaces.observations(np.array([1, 6])), np.eye(6, dtype=np.float32)[[0, 5]])
    np.testing.assert_array_equal(spaces.env_actions(np.array([[-3.0, 0.5]])), [[-2.0, 0.5]])


@pytest.mark.parametrize(
    "obs_space, action_space, words",
    [
        (gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), gym.spaces.Discrete(2), "unsupported observation space Dict"),
        (gym.spaces.Box(0, 1, (2,)), gym.spaces.MultiDiscrete([2, 2]), "unsupported action space MultiDiscrete"),
        (gym.spaces.Box(0, 1, (2,)), gym.spaces.Box(0, 1, (2, 2)), "Box actions must be 1-D"),
    ],
)
def test_unsupported_spaces_are_refused_in_one_line(obs_space, action_space, words):
    with pytest.raises(gymnasium_envs.GymEnvError, match=words) as err:
        gymnasium_envs.spaces_of("Some-v0", obs_space, action_space)
    assert "\n" not in str(err.value) and "Some-v0" in str(err.value)


def test_unknown_and_unsupported_environments_are_refused():
    with pytest.raises(gymnasium_envs.GymEnvError, match="unknown gymnasium environment 'NoSuchEnv-v0'") as err:
        gymnasium_envs.inspect_env("NoSuchEnv-v0")
    assert "\n" not in str(err.value)
    with pytest.raises(gymnasium_envs.GymEnvError, match="Blackjack-v1: unsupported observation space Tuple"):
        gymnasium_envs.inspect_env("Blackjack-v1")


def test_presets_carry_the_paper_budgets():
    lunar = gym_presets.preset("LunarLander-v3")
    assert (lunar.ppo.num_envs, lunar.ppo.num_updates * lunar.ppo.rollout_steps, len(lunar.seeds)) == (5, 9_984, 5)
    assert (lunar.ppo.learning_rate, lunar.ppo.clip_eps, lunar.ppo.num_epochs, lunar.ppo.num_minibatches) == (3e-4, 0.2, 10, 32)
    assert gym_presets.preset("LunarLanderContinuous-v3").ppo == lunar.ppo
    acrobot = gym_presets.preset("Acrobot-v1").ppo
    assert (acrobot.num_envs, acrobot.num_updates, acrobot.rollout_steps) == (5, 625, 12)
    ant = gym_presets.preset("Ant-v5")
    assert (ant.ppo.num_envs, ant.ppo.rollout_steps, ant.ppo.num_updates, len(ant.seeds)) == (1, 2048, 244, 3)
    reduced = gym_presets.preset("Ant-v5", "reduced")
    assert (reduced.ppo.num_updates, reduced.seeds) == (48, ant.seeds) and reduced.ppo.num_envs == 1
    assert all(p.ppo.bootstrap_truncation for p in (lunar, ant))
    assert gym_presets.preset("CartPole-v1", "quick").env_id == "CartPole-v1"
    with pytest.raises(gym_presets.PresetError, match="unknown preset 'huge'"):
        gym_presets.preset("Ant-v5", "huge")


# Episode ends


def test_truncation_bootstraps_and_termination_does_not():
    terminated = np.array([[True, False]])
    truncated = np.array([[False, True]])
    rollout = ga.Rollout(np.zeros((1, 2, 1)), np.zeros((1, 2)), np.zeros((1, 2, 1)), np.zeros((1, 2)), terminated, truncated)
    proper = ga.rollout_transitions(rollout, np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), bootstrap_truncation=True)
    np.testing.assert_array_equal(proper.terminal, [[True, False]])
    np.testing.assert_array_equal(proper.done, [[True, True]])
    legacy = ga.rollout_transitions(rollout, np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), bootstrap_truncation=False)
    np.testing.assert_array_equal(legacy.terminal, [[True, True]])


def test_programs_see_final_observations_and_every_step_is_real():
    # 2 envs × 9 steps of 3-step episodes: same-step autoreset ends 3 episodes per env (next-step
    # autoreset would spend a step per reset and end only 2); s' runs 2, 1, 0 (the final
    # observation, not the reset one) and s runs 3, 2, 1.
    trainer = ga.GymTrainer(gymnasium_envs.inspect_env(COUNTDOWN), tiny(COUNTDOWN, 2, 9).ppo, Probe())
    result = trainer.run(seed=0)
    assert result.episode_returns == (3.0,) * 6
    assert result.score == 3.0 and result.env_steps == 18
    assert result.metrics["curiosity/next_obs"][0] == pytest.approx(1.0)
    assert result.metrics["curiosity/obs"][0] == pytest.approx(2.0)


def test_time_limits_truncate_and_box_actions_are_clipped():
    # The Box variant has a 2-step time limit, so every episode is truncated at s' = 1; its
    # actions lie in [-0.5, 0.5] while the initial Gaussian policy has std 1.
    trainer = ga.GymTrainer(gymnasium_envs.inspect_env(COUNTDOWN_BOX), tiny(COUNTDOWN_BOX, 3, 8).ppo, Probe())
    result = trainer.run(seed=1, max_episode_steps=2)
    assert result.episode_returns == (2.0,) * 12
    assert result.metrics["curiosity/next_obs"][0] == pytest.approx(1.5)
    assert 0.3 < result.metrics["curiosity/max_abs_action"][0] <= 0.5


# Programs on real environments


def test_cartpole_with_rnd_is_deterministic():
    preset = tiny("CartPole-v1", 2, 128, rollout=64)
    trainer = ga.GymTrainer(gymnasium_envs.inspect_env("CartPole-v1"), preset.ppo, compiled("rnd"), compiled("combiner_paper"))
    first, second = trainer.run(7), trainer.run(7)
    assert first.score == second.score and first.episode_returns == second.episode_returns
    # CartPole pays 1 per step, so returns are episode lengths: they fit in the steps taken.
    assert sum(first.episode_returns) <= first.env_steps and len(first.curve) == 2
    assert first.score == pytest.approx(np.mean(first.episode_returns))
    assert first.metrics["intrinsic_reward"].min() > 0 and np.isfinite(first.metrics["value_loss"]).all()


def test_pendulum_with_an_action_prediction_program():
    # ICM's inverse model predicts continuous actions: its loss becomes a squared error.
    preset = tiny("Pendulum-v1", 2, 256, rollout=128)
    [result] = ga.train(preset, curiosity=reference_programs()["icm"], combiner=reference_programs()["combiner_paper"])
    assert len(result.episode_returns) == 2  # 200-step time limit, 2 envs × 256 steps
    assert all(-2000 < r < 0 for r in result.episode_returns)
    assert np.isfinite(result.metrics["curiosity/loss"]).all() and result.metrics["intrinsic_reward"].min() > 0


PENDULUM_SEEDS = (4, 104, 204, 304)
"""Trial seeds 100 apart, so the 8 env seeds of each trial (seed, seed + 1, ...) differ."""


def test_continuous_ppo_improves_on_pendulum():
    """Averaged over 4 trials, the last 16 episodes beat the first 16 by more than 200.

    A random policy scores about -1,250 per episode. One trial's improvement ranges -31 to 1,181
    over 192 trials (a few never learn, and some seed sets are harder on every ISA:
    5000 + PENDULUM_SEEDS gives 415 to 451), so the old single-seed check against 300 passed by
    luck.
    Observed offline: this exact mean for the 16 seed sets 1000·k + PENDULUM_SEEDS, k = 0..15,
    XLA single-threaded as in conftest, on an AVX-512 Xeon ranges 382 to 947 with the default
    code generation, 415 to 915 with XLA_FLAGS --xla_cpu_max_isa=AVX2 and 451 to 922 with
    --xla_cpu_max_isa=SSE4_2: a margin of at least 180 over 200.
    """
    ppo = dataclasses.replace(
        gym_presets.CONTINUOUS_CONTROL_PPO, num_envs=8, rollout_steps=200, lifetime_steps=4000, num_minibatches=16, learning_rate=1e-3
    )
    results = ga.train(gym_presets.GymPreset("Pendulum-v1", ppo, PENDULUM_SEEDS))
    improvements = []
    for result in results:
        returns = np.asarray(result.episode_returns)
        assert len(returns) == 160
        improvements.append(returns[-16:].mean() - returns[:16].mean())
    assert np.mean(improvements) > 200, improvements


def test_lunar_lander_smoke_run():
    [result] = ga.train(gym_presets.preset("LunarLander-v3", "quick"), seeds=[4], curiosity=reference_programs()["fast"])
    assert result.env_steps == 5 * 256 and np.isfinite(result.score)


def test_ant_smoke_run():
    [result] = ga.train(gym_presets.preset("Ant-v5", "quick"), seeds=[4], curiosity=reference_programs()["rnd"])
    assert result.env_steps == 256 and np.isfinite(result.score) and len(result.curve) == 2


def test_replay_on_a_gymnasium_environment(tmp_path, capsys):
    from metacurio.app import cli

    args = ["replay", "rnd", "--env", "CartPole-v1", "--preset", "quick", "--seeds", "4", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "seed     4:" in out and "mean episode return ± s.e., 1 trials" in out
    assert (tmp_path / "learning_curve.png").stat().st_size > 0
    assert (tmp_path / "episode.gif").stat().st_size > 0
    assert cli.main(["replay", "rnd", "--env", "Blackjack-v1"]) == 2
    assert "unsupported observation space Tuple" in capsys.readouterr().err
