"""Gymnasium budgets: an environment with an agent, a lifetime and trial seeds, importable
without JAX or gymnasium so that commands can plan and store transfer runs cheaply."""

from __future__ import annotations

import dataclasses
import json

from metacurio.agent.config import GRIDWORLD_PAPER, PPOConfig


class PresetError(ValueError):
    """No preset of that name (one line)."""


@dataclasses.dataclass(frozen=True)
class GymPreset:
    """One environment with an agent, a lifetime budget and trial seeds."""

    env_id: str
    """A gymnasium environment id."""
    ppo: PPOConfig
    """Agent and lifetime: N envs, T steps per rollout, steps per env per lifetime."""
    seeds: tuple[int, ...]
    """Trial seeds: each seeds the agent (JAX) and the N environments (seed, seed + 1, ...)."""
    max_episode_steps: int | None = None
    """Episode time limit; None keeps gymnasium's registered limit."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GymPreset":
        fields = json.loads(text)
        return cls(fields["env_id"], PPOConfig(**fields["ppo"]), tuple(fields["seeds"]), fields["max_episode_steps"])


CONTINUOUS_CONTROL_PPO = PPOConfig(
    num_envs=5,
    rollout_steps=256,
    lifetime_steps=10_000,
    learning_rate=3e-4,
    clip_eps=0.2,
    num_epochs=10,
    num_minibatches=32,
    bootstrap_truncation=True,
)
"""The original's "MuJoCo" PPO arguments with Lunar Lander's budget (experiment 2-100): 5 envs ×
39 updates of 256 steps = 9,984 steps per env, proper time limits."""

ATARI_PPO = PPOConfig(num_envs=5, rollout_steps=12, lifetime_steps=7_500, bootstrap_truncation=True)
"""The original's "Atari" PPO arguments with Acrobot's budget (experiment 2-98): 5 envs × 625
updates of 12 steps, proper time limits."""

ANT_PPO = dataclasses.replace(CONTINUOUS_CONTROL_PPO, num_envs=1, rollout_steps=2048, lifetime_steps=500_000)
"""Experiments 2-103 ff.: one env × 244 updates of 2,048 steps (≈500k steps)."""

DEEP_SEA_PPO = dataclasses.replace(GRIDWORLD_PAPER, num_envs=8)
"""The paper's gridworld agent with 8 parallel environments instead of 5, so that a rollout of
N steps (8·N transitions) always splits into the 4 minibatches. ``deep_sea_ppo`` sets its
rollout to one episode (N steps) and its lifetime to the episode budget."""

DEEP_SEA_EPISODES = {"reduced": 500, "quick": 4}
"""Episodes per environment of each DeepSea preset: 500 × 8 envs = 4,000 episodes per trial
(bsuite's DeepSea runs 10,000, hence "reduced"); ``quick`` is a smoke run. Measured in CPU time
for five seeds at 250 episodes, compilation first: plain PPO 11 + 1.4 s (N=10), 10 + 4.2 s
(N=20), 10 + 9.3 s (N=30); FAST 13 + 1.8 s, 12 + 5.5 s, 13 + 12.5 s; RND about 10 % more; the
run part grows linearly with the episodes."""

DEEP_SEA_PREFIX = "DeepSea-"
"""DeepSea of size N is the transfer target ``DeepSea-N`` (``envs.deep_sea``, not gymnasium)."""

TRANSFER_SEEDS = (4, 104, 204, 304, 404)
"""Trial seeds, the gridworld search's formula (3 + 100·i + offset 1); the original's transfer
seeds were offsets 1 and 2 of its own seeding, which has no counterpart here. Five seeds for the
cheap environments, so that paired differences have an interval worth reading; Ant takes the
first three (≈ 5 CPU-min per seed at the paper's budget)."""

ANT_REDUCED_PPO = dataclasses.replace(ANT_PPO, lifetime_steps=100_000)
"""A fifth of Ant's budget: one env × 48 updates of 2,048 steps (98,304 steps), for the rows the
paper's budget cannot afford; tables label it as reduced."""


def _quick(ppo: PPOConfig, rollout_steps: int, lifetime_steps: int, minibatches: int) -> PPOConfig:
    return dataclasses.replace(ppo, rollout_steps=rollout_steps, lifetime_steps=lifetime_steps, num_minibatches=minibatches)


PRESETS: dict[str, dict[str, GymPreset]] = {
    "LunarLander-v3": {
        "paper": GymPreset("LunarLander-v3", CONTINUOUS_CONTROL_PPO, TRANSFER_SEEDS, max_episode_steps=500),
        "quick": GymPreset("LunarLander-v3", _quick(CONTINUOUS_CONTROL_PPO, 64, 256, 4), TRANSFER_SEEDS[:2], 500),
    },
    "LunarLanderContinuous-v3": {
        "paper": GymPreset("LunarLanderContinuous-v3", CONTINUOUS_CONTROL_PPO, TRANSFER_SEEDS[:2], max_episode_steps=500),
        "quick": GymPreset("LunarLanderContinuous-v3", _quick(CONTINUOUS_CONTROL_PPO, 64, 256, 4), TRANSFER_SEEDS[:2], 500),
    },
    "Acrobot-v1": {
        "paper": GymPreset("Acrobot-v1", ATARI_PPO, TRANSFER_SEEDS, max_episode_steps=500),
        "quick": GymPreset("Acrobot-v1", _quick(ATARI_PPO, 12, 240, 4), TRANSFER_SEEDS[:2], 500),
    },
    "Ant-v5": {
        "paper": GymPreset("Ant-v5", ANT_PPO, TRANSFER_SEEDS[:3]),
        "reduced": GymPreset("Ant-v5", ANT_REDUCED_PPO, TRANSFER_SEEDS[:3]),
        "quick": GymPreset("Ant-v5", _quick(ANT_PPO, 128, 256, 4), TRANSFER_SEEDS[:2]),
    },
}
"""The paper's transfer budgets (reference §9.2), each with a ``quick`` preset for smoke runs, and
Ant's ``reduced`` one."""
PRESET_NAMES = ("paper", "reduced", "quick")
"""Every preset name some environment has."""

GENERIC = {
    "paper": GymPreset("", CONTINUOUS_CONTROL_PPO, TRANSFER_SEEDS[:2]),
    "quick": GymPreset("", dataclasses.replace(_quick(CONTINUOUS_CONTROL_PPO, 64, 256, 4), num_envs=2), TRANSFER_SEEDS[:2]),
}
"""Any other environment: the continuous-control agent (the paper's settings for vector
observations) with Lunar Lander's budget, or a small quick run."""


def deep_sea_ppo(size: int, episodes: int, base: PPOConfig = DEEP_SEA_PPO) -> PPOConfig:
    """``base`` with one episode (``size`` steps) per rollout and ``episodes`` per lifetime."""
    return dataclasses.replace(base, rollout_steps=size, lifetime_steps=size * episodes)


def deep_sea_size(env_id: str) -> int | None:
    """N of a ``DeepSea-N`` target; None for every other id; a malformed size is refused."""
    if not env_id.startswith(DEEP_SEA_PREFIX):
        return None
    size = env_id[len(DEEP_SEA_PREFIX):]
    if not size.isdigit() or not 1 <= int(size) <= 100:
        raise PresetError(f"{env_id}: DeepSea targets are DeepSea-N with N from 1 to 100")
    return int(size)


def preset(env_id: str, name: str = "paper") -> GymPreset:
    """The named preset of ``env_id`` (the generic one for environments the paper did not use)."""
    size = deep_sea_size(env_id)
    if size is not None:
        if name not in DEEP_SEA_EPISODES:
            raise PresetError(f"unknown preset {name!r} for {env_id}; known: {', '.join(DEEP_SEA_EPISODES)}")
        return GymPreset(env_id, deep_sea_ppo(size, DEEP_SEA_EPISODES[name]), TRANSFER_SEEDS)
    named = PRESETS.get(env_id)
    if named is None:
        if name not in GENERIC:
            raise PresetError(f"unknown preset {name!r}; known: {', '.join(GENERIC)}")
        return dataclasses.replace(GENERIC[name], env_id=env_id)
    if name not in named:
        raise PresetError(f"unknown preset {name!r} for {env_id}; known: {', '.join(named)}")
    return named[name]
