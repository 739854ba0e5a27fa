"""Agent and evaluation settings, importable without JAX: the PPO configuration with its
presets, and the paper's trial seeds and checkpoint spacing.

The search's configuration and store read these, and they must open without loading JAX.
"""

from __future__ import annotations

import dataclasses

@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO and reward-pipeline settings for one agent lifetime."""

    num_envs: int = 5
    """N: parallel environments sharing one agent and one curiosity module."""
    rollout_steps: int = 12
    """T: steps collected per environment before each PPO update."""
    lifetime_steps: int = 1000
    """Steps per environment in one lifetime. Only whole rollouts run, so the agent takes
    ``num_updates * rollout_steps`` of them; τ is still measured against this number, as in
    the original."""
    learning_rate: float = 2.5e-4
    """Initial Adam learning rate; it decays linearly to 0 over ``num_updates``."""
    adam_eps: float = 1e-5
    """Adam's epsilon."""
    max_grad_norm: float = 0.5
    """Gradients are clipped to this global norm before each Adam step."""
    num_epochs: int = 4
    """Passes over each rollout per update."""
    num_minibatches: int = 4
    """Minibatches per epoch; the N·T transitions are shuffled across time and envs."""
    clip_eps: float = 0.1
    """PPO ratio clip, also used to clip the value loss."""
    clip_value_loss: bool = True
    """Clip the value prediction around the rollout's value, as the original does."""
    value_coef: float = 0.5
    """Weight of the value loss (itself ½·squared error) in the total loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    gamma: float = 0.99
    """Discount, for GAE and for the discounted return that normalises rewards."""
    gae_lambda: float = 0.95
    """GAE λ."""
    normalize_advantages: bool = True
    """Standardise advantages over the whole rollout once per update."""
    normalize_reward: bool = True
    """Divide the combined reward by the running std of the discounted combined return."""
    reward_clip: float = 10.0
    """Normalised rewards are clipped to ±this."""
    bootstrap_truncation: bool = False
    """Bootstrap from the value of the final observation at a time-limit truncation. False
    treats truncation as terminal, as the original gridworld runs did
    (``use_proper_time_limits`` False)."""

    def __post_init__(self):
        if self.num_updates < 1:
            raise ValueError(
                f"lifetime_steps ({self.lifetime_steps}) must hold at least one rollout "
                f"of {self.rollout_steps} steps"
            )
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"num_envs * rollout_steps ({self.batch_size}) must be divisible by "
                f"num_minibatches ({self.num_minibatches})"
            )

    @property
    def num_updates(self) -> int:
        return self.lifetime_steps // self.rollout_steps

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.rollout_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches


GRIDWORLD_PAPER = PPOConfig()
"""The paper's gridworld agent ("Atari" PPO arguments, experiment 2-96): 5 envs × 1,000 steps,
i.e. 83 updates of 12 steps = 996 steps per env, 4,980 per lifetime."""

PRESETS = {"gridworld_paper": GRIDWORLD_PAPER}


PAPER_SEEDS = (4, 104, 204, 304, 404)
"""The original's trial seeds for the gridworld search (3 + 100·i + offset 1)."""
CHECKPOINT_EVERY = 108
"""Env steps per environment between early-stopping checks (the paper's 108 = 9 updates of 12)."""
