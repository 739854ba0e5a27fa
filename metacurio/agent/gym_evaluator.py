"""Scores reward combiners on a gymnasium environment with one fixed curiosity program.

The combiner search's counterpart of ``metacurio.agent.evaluator``: it returns the same
``EvalResult``, with the environment's extrinsic return (``gym_trainer``'s score: mean return of
the episodes ended so far) where the gridworld evaluator has coverage. One ``GymTrainer`` with
a combiner layout serves every combiner: the combiner travels as its encoding, so the reward
pipeline compiles once per worker. The trials of a program run in step, one PPO update at a
time, so that a checkpoint can stop all of them when their mean score misses its cutoff.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from envs.gymnasium_envs import inspect_env
from metacurio.agent.evaluator import EvalResult, below_cutoff, chunk_sizes
from metacurio.agent.gym_presets import GymPreset
from metacurio.agent.gym_trainer import GymTrainer
from metacurio.core.compiler import compile_program
from metacurio.core.layout import Layout, encode
from metacurio.core.program import CURIOSITY, Program


class GymEvaluator:
    """One compiled trainer for (combiner layout, fixed curiosity program, environment budget)."""

    def __init__(self, layout: Layout, curiosity: Program, preset: GymPreset, checkpoint_every: int):
        if curiosity.kind != CURIOSITY:
            raise ValueError(f"the fixed program {curiosity.name or curiosity.id} is a {curiosity.kind} program, not curiosity")
        self.preset = preset
        self.trainer = GymTrainer(inspect_env(preset.env_id), preset.ppo, compile_program(curiosity), combiner_layout=layout)
        # Compiled when the worker starts, so that no program's seconds include it.
        self.compile_seconds = self.trainer.compile()
        self.chunks = chunk_sizes(preset.ppo, checkpoint_every)
        self.checkpoint_steps = tuple(int(s) * preset.ppo.rollout_steps for s in np.cumsum(self.chunks))

    def evaluate(self, program: Program, seeds: Sequence[int], cutoffs: Sequence[float] | None = None) -> EvalResult:
        """Run one combiner on every seed; stop after a checkpoint whose mean score falls below its cutoff.

        Non-finite rewards or parameters raise ``GymTrainError``: the program's error."""
        encoding = encode(program, self.trainer.combiner_layout)
        start = time.perf_counter()
        lifetimes = []
        try:
            for seed in seeds:
                lifetimes.append(self.trainer.start(seed, self.preset.max_episode_steps, encoding))
            curves, stopped = [], False
            for index, size in enumerate(self.chunks):
                for lifetime in lifetimes:
                    for _ in range(size):
                        lifetime.update()
                scores = np.array([lifetime.curve[-1] for lifetime in lifetimes], np.float64)
                curves.append(scores)
                last = index == len(self.chunks) - 1
                if not last and cutoffs is not None and below_cutoff(float(scores.mean()), cutoffs, index):
                    stopped = True
                    break
        finally:
            for lifetime in lifetimes:
                lifetime.close()
        reached = len(curves)
        return EvalResult(
            program_id=program.id,
            seeds=tuple(int(s) for s in seeds),
            scores=curves[-1],
            paper_scores=curves[-1],
            curves=np.stack(curves, axis=1),
            checkpoint_steps=self.checkpoint_steps[:reached],
            stopped_early=stopped,
            error=None,
            env_steps=self.checkpoint_steps[reached - 1] * self.preset.ppo.num_envs * len(seeds),
            seconds=time.perf_counter() - start,
        )

