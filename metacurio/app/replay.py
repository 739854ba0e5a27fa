"""Replay one program on the gridworld or any gymnasium environment: scores, learning curves, a GIF.

Replay uses the per-program compiled path (the semantic oracle), so what it shows is exactly
what the program means, whatever the evaluator's layout. Gridworld replays also draw a coverage
heatmap; gymnasium replays score the mean extrinsic episode return (``metacurio.agent.gym_trainer``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from envs import gridworld, gridworld_config, gymnasium_envs
from metacurio.agent import gym_presets, gym_trainer
from metacurio.agent.config import GRIDWORLD_PAPER, PAPER_SEEDS, PPOConfig
from metacurio.agent.evaluator import gridworld_spec
from metacurio.agent.ppo import make_train, sample_action
from metacurio.core.compiler import compile_program
from metacurio.core.networks import apply_actor_critic
from metacurio.core.program import Program
from metacurio.errors import one_line

GRIDWORLD_ENVS = {"gridworld": gridworld_config.EMPTY, **{f"gridworld-{name}": cfg for name, cfg in gridworld_config.PRESETS.items()}}


class ReplayError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    scores: np.ndarray
    """(trials,) final coverage."""
    curves: np.ndarray
    """(trials, updates) coverage after every PPO update."""
    steps: np.ndarray
    """(updates,) env steps per environment after every update."""
    coverage: np.ndarray
    """(trials, size, size, 4) visited (x, y, direction) states."""
    final_params: object
    """Actor-critic parameters of each trial at the end of its lifetime."""
    intrinsic_reward: np.ndarray
    """(trials, updates) raw intrinsic reward, mean over each update's steps and envs."""

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    @property
    def stderr(self) -> float:
        n = len(self.scores)
        return float(self.scores.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0


def env_config(name: str) -> gridworld_config.GridConfig:
    if name not in GRIDWORLD_ENVS:
        raise ReplayError(f"unknown environment {name!r}; known: {', '.join(GRIDWORLD_ENVS)}")
    return GRIDWORLD_ENVS[name]


def replay(program: Program, config: gridworld_config.GridConfig, seeds: Sequence[int] = PAPER_SEEDS, ppo: PPOConfig = GRIDWORLD_PAPER) -> ReplayResult:
    if program.kind != "curiosity":
        raise ReplayError(f"replay runs curiosity programs; {program.name or program.id} is a {program.kind} program")
    spec = gridworld_spec(config, ppo)
    trainer = make_train(gridworld.reset, gridworld.step, config, spec, ppo, compile_program(program))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    state, metrics = jax.jit(jax.vmap(trainer.train))(keys)
    _check_finite(program, np.asarray(metrics["curiosity/finite"]) >= 1.0, seeds, ppo.rollout_steps)
    curves = np.asarray(metrics["coverage"])
    steps = np.arange(1, curves.shape[1] + 1) * ppo.rollout_steps
    return ReplayResult(
        scores=curves[:, -1].astype(float),
        curves=curves,
        steps=steps,
        coverage=np.asarray(state.coverage),
        final_params=state.params,
        intrinsic_reward=np.asarray(metrics["intrinsic_reward"], dtype=np.float64),
    )


def _check_finite(program: Program, finite: np.ndarray, seeds: Sequence[int], rollout_steps: int) -> None:
    """A program whose reward went NaN/inf has no score: fail with the first trial and step where it did."""
    bad_trials = np.flatnonzero(~finite.all(axis=1))
    if bad_trials.size:
        trial = int(bad_trials[0])
        update = int(np.argmin(finite[trial]))
        raise ReplayError(
            f"{program.name or program.id} failed: non-finite intrinsic reward by env step {(update + 1) * rollout_steps} "
            f"(PPO update {update + 1}) of seed {seeds[trial]}; {bad_trials.size} of {len(seeds)} trials affected"
        )


def episode_frames(params, config: gridworld_config.GridConfig, seed: int, max_steps: int | None = None) -> list[np.ndarray]:
    """One episode of the trained (stochastic) policy, rendered frame by frame."""
    key = jax.random.PRNGKey(seed)
    obs, state = gridworld.reset(key, config)
    frames = [np.asarray(gridworld.render_rgb(state, config))]
    policy = jax.jit(lambda p, o: apply_actor_critic(p, o[None])[0])
    for _ in range(max_steps or config.max_steps):
        key, action_key, step_key = jax.random.split(key, 3)
        action = sample_action(action_key, policy(params, obs), True)[0]
        obs, state, _, terminated, truncated, _ = gridworld.step_env(step_key, state, action, config)
        frames.append(np.asarray(gridworld.render_rgb(state, config)))
        if bool(terminated | truncated):
            break
    return frames


def write_outputs(result: ReplayResult, program: Program, config: gridworld_config.GridConfig, seeds, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    title = program.name or program.id
    paths = []

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for seed, curve in zip(seeds, result.curves):
        ax.plot(result.steps, curve, alpha=0.4, label=f"seed {seed}")
    ax.plot(result.steps, result.curves.mean(axis=0), color="black", linewidth=2, label="mean")
    ax.set_xlabel("env steps per environment")
    ax.set_ylabel("distinct (x, y, dir) states visited")
    ax.set_title(f"{title}: {result.mean:.1f} ± {result.stderr:.1f}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "learning_curve.png")
    fig.savefig(paths[-1], dpi=120)

    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    visits = result.coverage.mean(axis=0).sum(axis=-1).T
    image = ax.imshow(visits, cmap="viridis", vmin=0, vmax=4)
    fig.colorbar(image, ax=ax, label="directions visited (mean over trials)")
    ax.set_title(f"{title}: coverage")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    fig.tight_layout()
    paths.append(out / "coverage_heatmap.png")
    fig.savefig(paths[-1], dpi=120)

    params = jax.tree.map(lambda x: x[0], result.final_params)
    frames = episode_frames(params, config, seed=int(seeds[0]))
    paths.append(out / "episode.gif")
    imageio.mimsave(paths[-1], frames, duration=0.08)
    return paths


# Gymnasium environments


def is_gridworld(name: str) -> bool:
    return name in GRIDWORLD_ENVS


def gym_preset(env_id: str, preset_name: str = "paper", lifetime_steps: int | None = None):
    """The gymnasium preset to replay on, after checking that the environment exists and is supported."""
    try:
        gymnasium_envs.inspect_env(env_id)
    except gymnasium_envs.UnknownEnvError as err:
        raise ReplayError(f"unknown environment {env_id!r}: not a gridworld ({', '.join(GRIDWORLD_ENVS)}) and {err}") from None
    preset = gym_presets.preset(env_id, preset_name)
    if lifetime_steps is not None:
        preset = dataclasses.replace(preset, ppo=dataclasses.replace(preset.ppo, lifetime_steps=lifetime_steps))
    return preset


def gym_replay(program: Program, preset, seeds: Sequence[int] | None = None, combiner: Program | None = None) -> list:
    """Lifetimes with ``program`` on a gymnasium preset (``metacurio.agent.gym_presets.GymPreset``), one per seed."""
    if program.kind != "curiosity":
        raise ReplayError(f"replay runs curiosity programs; {program.name or program.id} is a {program.kind} program")
    if combiner is not None and combiner.kind != "combiner":
        raise ReplayError(f"{combiner.name or combiner.id} is a {combiner.kind} program, not a reward combiner")
    try:
        return gym_trainer.train(preset, seeds, curiosity=program, combiner=combiner)
    except gym_trainer.GymTrainError as err:
        raise ReplayError(f"{program.name or program.id} failed on {preset.env_id}: {err}") from None


def write_gym_outputs(results: Sequence, program: Program, preset, out: Path) -> list[Path]:
    """A learning curve (mean episode return so far, per seed) and one rendered episode of the first seed."""
    out.mkdir(parents=True, exist_ok=True)
    title = program.name or program.id
    mean, stderr = gym_trainer.mean_and_stderr([r.score for r in results])
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for result in results:
        ax.plot(result.steps, result.curve, alpha=0.5, label=f"seed {result.seed}")
    ax.plot(results[0].steps, np.mean([r.curve for r in results], axis=0), color="black", linewidth=2, label="mean")
    ax.set_xlabel("env steps per environment")
    ax.set_ylabel("mean extrinsic episode return so far")
    ax.set_title(f"{title} on {preset.env_id}: {mean:.1f} ± {stderr:.1f}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [out / "learning_curve.png"]
    fig.savefig(paths[-1], dpi=120)

    spaces = gymnasium_envs.inspect_env(preset.env_id)
    try:
        frames = gym_trainer.episode_frames(spaces, results[0].params, results[0].seed, preset.max_episode_steps)
    except Exception as err:  # noqa: BLE001 - rendering back-ends fail in many ways; the curve is already written
        raise ReplayError(f"wrote {paths[0]}, but {preset.env_id} cannot render an episode: {one_line(err)}") from None
    paths.append(out / "episode.gif")
    imageio.mimsave(paths[-1], [_shrink(frame) for frame in frames], duration=0.04)
    return paths


def _shrink(frame: np.ndarray, max_width: int = 320) -> np.ndarray:
    """Keep GIFs small: every k-th pixel so that the width is at most ``max_width``."""
    stride = max(1, math.ceil(frame.shape[1] / max_width))
    return frame[::stride, ::stride]
