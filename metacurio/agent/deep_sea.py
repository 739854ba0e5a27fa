"""Train PPO with a curiosity program on DeepSea, one compiled call for all seeds (issue #11).

For the hard-exploration table: on DeepSea of size N, does an agent whose intrinsic reward is
a given program ever reach the treasure, and after how many episodes? One trial per seed trains
``make_train``'s PPO lifetime on ``DEEP_SEA_PPO.num_envs`` parallel DeepSeas for a budget of
episodes per environment; the trials run vmapped in one jitted call.

The parallel environments of a trial share one action mapping (drawn from the seed alone, so
every program meets the same DeepSeas at a given seed): the agent observes only (row, column),
so with a different mapping per environment no policy could be right in all of them.

Every episode lasts exactly N steps and all environments start together, so the environments
finish their episodes in lockstep, N steps apart. With one rollout of N steps per PPO update,
update ``u`` collects exactly the ``u``-th episode of every environment.

Every program, plain PPO's zero-reward program ``results/programs/none.json`` included, goes
through the same reward combiner (the paper's by default) and return normalisation, as in the
transfer study (``metacurio.app.transfer``): plain PPO's row differs from the others in nothing
but the intrinsic reward.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from envs import deep_sea
from metacurio.agent.config import PPOConfig
from metacurio.agent.gym_presets import DEEP_SEA_PPO, deep_sea_ppo
from metacurio.agent.ppo import ZeroCuriosity, make_train
from metacurio.core import program_io
from metacurio.core.compiler import compile_program
from metacurio.core.program import Program
from metacurio.core.specs import EnvSpec

DEFAULT_COMBINER = "combiner_paper"
"""The reference combiner programs get, as in the transfer study: the paper's τ-weighting."""

_MAPPING_STREAM = 0x5EA
"""Folded into a trial's key to draw its action mapping apart from the agent's own keys."""


@dataclasses.dataclass(frozen=True)
class DeepSeaResult:
    """One trial (seed) of one program on one DeepSea size."""

    program_id: str
    """The curiosity program's id, ``"none"`` for plain PPO."""
    size: int
    """N of the DeepSea."""
    seed: int
    found: bool
    """Some environment of the trial reached the treasure during the lifetime."""
    first_find_episode: int | None
    """Episodes completed by all environments together when the treasure was first reached,
    the finding episode included; the environments run in lockstep, so this is ``num_envs``
    times the round of the first find. None if never found."""
    episodes: int
    """Episodes completed by all environments together over the lifetime."""
    mean_return: float
    """Mean extrinsic return over all those episodes (0.99 finds the treasure optimally)."""
    curve_steps: tuple[int, ...]
    """Env steps per environment at the end of each PPO update (one episode each)."""
    curve_finds: np.ndarray
    """Cumulative treasure finds of all environments together at each of ``curve_steps``."""
    curve_return: np.ndarray
    """Mean extrinsic return of the episodes completed in each update."""
    finite: bool
    """The intrinsic reward stayed finite throughout (False makes the trial meaningless)."""
    env_steps: int
    """Environment steps simulated in this trial, all environments together."""
    seconds: float
    """Wall time of the whole seed batch's call, compilation included (shared by its seeds)."""


def deep_sea_spec(config: deep_sea.DeepSeaConfig, ppo: PPOConfig) -> EnvSpec:
    return EnvSpec(obs_shape=config.obs_shape, action_dim=deep_sea.NUM_ACTIONS, discrete=True, batch_size=ppo.num_envs)


def _lifetimes(program: Program | None, combiner: Program | None, config: deep_sea.DeepSeaConfig, ppo: PPOConfig):
    """The unjitted per-trial lifetime: key -> (cumulative finds, return sums and episode
    counts per update, round of the first find or 0, whether the intrinsic reward stayed finite)."""
    curiosity = ZeroCuriosity() if program is None else compile_program(program)
    combiner_module = None if combiner is None else compile_program(combiner)
    trainer = make_train(
        deep_sea.reset, deep_sea.step, config, deep_sea_spec(config, ppo), ppo, curiosity, combiner_module
    )

    def one_update(state, _):
        state, metrics = trainer.run_updates(state, 1)
        finite = metrics.get("curiosity/finite", jnp.ones(1))[0] >= 1.0
        summary = (
            jnp.sum(state.env_state.treasures),
            metrics["episode_return_sum"][0],
            metrics["episode_count"][0],
            finite,
        )
        return state, summary

    def lifetime(key):
        state = trainer.init(key)
        mapping = deep_sea.draw_mapping(jax.random.fold_in(key, _MAPPING_STREAM), config)
        shared = jnp.broadcast_to(mapping, state.env_state.action_mapping.shape)
        state = state.replace(env_state=state.env_state.replace(action_mapping=shared))
        state, (finds, return_sum, count, finite) = jax.lax.scan(one_update, state, None, ppo.num_updates)
        first = state.env_state.first_treasure_episode
        # Envs that never found report 0; the lockstep makes the earliest round the same for all.
        first_round = jnp.min(jnp.where(first > 0, first, jnp.iinfo(jnp.int32).max))
        first_round = jnp.where(jnp.any(first > 0), first_round, 0)
        return finds, return_sum, count, first_round, jnp.all(finite)

    return lifetime


@functools.lru_cache(maxsize=16)
def _compiled(program: Program | None, combiner: Program | None, config: deep_sea.DeepSeaConfig, ppo: PPOConfig):
    """Memoised: the same (program, combiner, size, agent) reuses its compiled call."""
    return jax.jit(jax.vmap(_lifetimes(program, combiner, config, ppo)))


def run_deep_sea(
    program: Program | None,
    size: int,
    seeds: Sequence[int],
    episodes: int,
    ppo: PPOConfig | None = None,
    combiner: Program | None = None,
) -> list[DeepSeaResult]:
    """Train one lifetime per seed of ``program`` on DeepSea of ``size``, all seeds in one call.

    ``episodes`` is the budget per environment. ``ppo`` (default ``DEEP_SEA_PPO``) supplies the
    agent; its rollout and lifetime are replaced by ``deep_sea_ppo``. ``combiner`` defaults to
    the paper's combiner, for every program (None: no intrinsic reward, through the same combiner).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    if not seeds:
        raise ValueError("at least one seed is needed")
    config = deep_sea.DeepSeaConfig(size=size)
    agent = deep_sea_ppo(size, episodes, DEEP_SEA_PPO if ppo is None else ppo)
    if combiner is None:
        combiner = program_io.resolve(DEFAULT_COMBINER)
    run = _compiled(program, combiner, config, agent)

    start = time.perf_counter()
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    finds, return_sum, count, first_round, finite = jax.device_get(run(keys))
    seconds = time.perf_counter() - start

    steps = tuple(size * (u + 1) for u in range(agent.num_updates))
    program_id = "none" if program is None else program.id
    results = []
    for i, seed in enumerate(seeds):
        completed = int(count[i].sum())
        results.append(
            DeepSeaResult(
                program_id=program_id,
                size=size,
                seed=int(seed),
                found=bool(finds[i, -1] > 0),
                first_find_episode=int(first_round[i]) * agent.num_envs if first_round[i] > 0 else None,
                episodes=completed,
                mean_return=float(return_sum[i].sum() / max(completed, 1)),
                curve_steps=steps,
                curve_finds=np.asarray(finds[i]),
                curve_return=np.asarray(return_sum[i] / np.maximum(count[i], 1)),
                finite=bool(finite[i]),
                env_steps=agent.num_updates * agent.rollout_steps * agent.num_envs,
                seconds=seconds,
            )
        )
    return results
