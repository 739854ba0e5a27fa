"""Evaluate curiosity programs by training PPO agents with them on the gridworld.

One ``Evaluator`` compiles the whole lifetime (PPO + interpreted program) once for a layout,
environment and agent configuration; every program of the layout then runs as data. A lifetime
runs in checkpoint chunks (paper: every 108 env steps) so the search can stop a weak program
early against per-checkpoint cutoffs. Trials are vmapped; on a GPU, ``evaluate_batch`` also
vmaps over programs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from envs import gridworld, gridworld_config
from metacurio.agent.config import CHECKPOINT_EVERY, GRIDWORLD_PAPER, PAPER_SEEDS, PPOConfig
from metacurio.agent.ppo import make_train
from metacurio.core.interpreter import InterpretedProgram, Interpreter
from metacurio.core.layout import Encoding, Layout, encode, stack_encodings
from metacurio.core.program import Program
from metacurio.core.specs import EnvSpec



@dataclasses.dataclass(frozen=True)
class EvalResult:
    """One program's evaluation. Curves hold the coverage at each checkpoint reached."""

    program_id: str
    seeds: tuple[int, ...]
    scores: np.ndarray
    """(trials,) coverage at the end of the run (at the stop if stopped early)."""
    paper_scores: np.ndarray
    """(trials,) the paper's counting of the same run: coverage of completed episodes only."""
    curves: np.ndarray
    """(trials, checkpoints reached) coverage at each checkpoint."""
    checkpoint_steps: tuple[int, ...]
    """Env steps per environment at each checkpoint reached."""
    stopped_early: bool
    error: str | None
    env_steps: int
    """Environment steps actually simulated, all trials and environments together."""
    seconds: float

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def stderr(self) -> float:
        n = len(self.scores)
        return float(np.std(self.scores, ddof=1) / math.sqrt(n)) if n > 1 else 0.0


def gridworld_spec(config: gridworld_config.GridConfig, ppo: PPOConfig) -> EnvSpec:
    return EnvSpec(obs_shape=(config.size, config.size, 3), action_dim=gridworld.NUM_ACTIONS, discrete=True, batch_size=ppo.num_envs)


def chunk_sizes(ppo: PPOConfig, checkpoint_every: int) -> tuple[int, ...]:
    """PPO updates per checkpoint chunk; the last chunk takes the remainder of the lifetime."""
    per_chunk = max(checkpoint_every // ppo.rollout_steps, 1)
    full, rest = divmod(ppo.num_updates, per_chunk)
    return (per_chunk,) * full + ((rest,) if rest else ())


class Evaluator:
    """The compiled lifetime for one (layout, environment, agent) configuration."""

    def __init__(
        self,
        layout: Layout,
        env_config: gridworld_config.GridConfig = gridworld_config.EMPTY,
        ppo: PPOConfig = GRIDWORLD_PAPER,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ):
        self.layout = layout
        self.env_config = env_config
        self.ppo = ppo
        self.spec = gridworld_spec(env_config, ppo)
        self.interpreter = Interpreter(layout)
        self.chunks = chunk_sizes(ppo, checkpoint_every)
        self.checkpoint_steps = tuple(int(s) * ppo.rollout_steps for s in np.cumsum(self.chunks))
        self._init = jax.jit(self._init_trials)
        self._run = jax.jit(self._run_trials, static_argnums=2)
        self._init_many = jax.jit(jax.vmap(self._init_trials))
        self._run_many = jax.jit(jax.vmap(self._run_trials, in_axes=(0, 0, None)), static_argnums=2)

    def _trainer(self, encoding: Encoding):
        curiosity = InterpretedProgram(self.interpreter, encoding)
        return make_train(gridworld.reset, gridworld.step, self.env_config, self.spec, self.ppo, curiosity)

    def _init_trials(self, encoding: Encoding, keys: jax.Array):
        return jax.vmap(self._trainer(encoding).init)(keys)

    def _run_trials(self, encoding: Encoding, states, num_updates: int):
        trainer = self._trainer(encoding)
        states, metrics = jax.vmap(lambda s: trainer.run_updates(s, num_updates))(states)
        summary = {
            "coverage": metrics["coverage"][:, -1],
            "coverage_completed_episodes": metrics["coverage_completed_episodes"][:, -1],
            "finite": jnp.min(metrics["curiosity/finite"], axis=1) >= 1.0,
            "intrinsic_reward": metrics["intrinsic_reward"],
        }
        return states, summary

    def evaluate(
        self,
        program: Program | Encoding,
        seeds: Sequence[int] = PAPER_SEEDS,
        cutoffs: Sequence[float] | None = None,
    ) -> EvalResult:
        """Run one program; stop after a checkpoint whose mean coverage falls below its cutoff."""
        encoding, program_id = self._encoding(program)
        start = time.perf_counter()
        keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
        states = self._init(encoding, keys)
        curves, paper, stopped, error = [], [], False, None
        for index, size in enumerate(self.chunks):
            states, summary = self._run(encoding, states, size)
            coverage = np.asarray(summary["coverage"])
            curves.append(coverage)
            paper.append(np.asarray(summary["coverage_completed_episodes"]))
            if not bool(np.all(summary["finite"])):
                error = f"non-finite intrinsic reward before env step {self.checkpoint_steps[index]}"
                break
            last = index == len(self.chunks) - 1
            if not last and cutoffs is not None and below_cutoff(coverage.mean(), cutoffs, index):
                stopped = True
                break
        return self._result(program_id, seeds, curves, paper, stopped, error, time.perf_counter() - start)

    def evaluate_batch(self, programs: Sequence[Program | Encoding], seeds: Sequence[int] = PAPER_SEEDS) -> list[EvalResult]:
        """Programs vmapped together (for accelerators); no early stopping inside a batch."""
        pairs = [self._encoding(p) for p in programs]
        encodings = stack_encodings([e for e, _ in pairs])
        start = time.perf_counter()
        keys = jnp.broadcast_to(jnp.stack([jax.random.PRNGKey(s) for s in seeds]), (len(pairs), len(seeds), 2))
        states = self._init_many(encodings, keys)
        per_chunk = []
        for size in self.chunks:
            states, summary = self._run_many(encodings, states, size)
            per_chunk.append(jax.device_get(summary))
        seconds = (time.perf_counter() - start) / len(pairs)
        results = []
        for i, (_, program_id) in enumerate(pairs):
            finite = all(bool(np.all(s["finite"][i])) for s in per_chunk)
            curves = [np.asarray(s["coverage"][i]) for s in per_chunk]
            paper = [np.asarray(s["coverage_completed_episodes"][i]) for s in per_chunk]
            error = None if finite else "non-finite intrinsic reward"
            results.append(self._result(program_id, seeds, curves, paper, False, error, seconds))
        return results

    def _encoding(self, program: Program | Encoding) -> tuple[Encoding, str]:
        if isinstance(program, Program):
            return jax.tree.map(jnp.asarray, encode(program, self.layout)), program.id
        return program, "encoded"

    def _result(self, program_id, seeds, curves, paper, stopped, error, seconds) -> EvalResult:
        reached = len(curves)
        steps = self.checkpoint_steps[reached - 1] if reached else 0
        return EvalResult(
            program_id=program_id,
            seeds=tuple(int(s) for s in seeds),
            scores=curves[-1].astype(np.float64) if curves else np.zeros(len(seeds)),
            paper_scores=paper[-1].astype(np.float64) if paper else np.zeros(len(seeds)),
            curves=np.stack(curves, axis=1) if curves else np.zeros((len(seeds), 0)),
            checkpoint_steps=self.checkpoint_steps[:reached],
            stopped_early=stopped,
            error=error,
            env_steps=steps * self.ppo.num_envs * len(seeds),
            seconds=seconds,
        )


def below_cutoff(score: float, cutoffs: Sequence[float], index: int) -> bool:
    """Whether a mean score misses checkpoint ``index``'s cutoff; a nan or missing cutoff never stops."""
    if index >= len(cutoffs):
        return False
    cutoff = cutoffs[index]
    return cutoff is not None and not math.isnan(cutoff) and score < cutoff


@functools.lru_cache(maxsize=8)
def _cached_evaluator(layout: Layout, env_config, ppo: PPOConfig, checkpoint_every: int) -> Evaluator:
    return Evaluator(layout, env_config, ppo, checkpoint_every)


def evaluate(
    programs: Sequence[Program],
    env_config: gridworld_config.GridConfig = gridworld_config.EMPTY,
    ppo: PPOConfig = GRIDWORLD_PAPER,
    seeds: Sequence[int] = PAPER_SEEDS,
    cutoffs: Sequence[float] | None = None,
    layout: Layout | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> list[EvalResult]:
    """Evaluate programs one after another with one compiled lifetime for all of them."""
    layout = layout or Layout.for_programs(programs)
    evaluator = _cached_evaluator(layout, env_config, ppo, checkpoint_every)
    return [evaluator.evaluate(p, seeds, cutoffs) for p in programs]
