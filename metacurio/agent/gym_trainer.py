"""Any gymnasium environment with Box or Discrete spaces, trained by the project's PPO and reward pipeline.

Gymnasium environments run on the host, so the lifetime is a Python loop around jitted pieces:
per env timestep one jitted call samples the N actions and gymnasium's ``SyncVectorEnv``
steps the N environments; after every T steps one jitted call runs the reward pipeline of
``metacurio.agent.ppo`` (curiosity program once per timestep on the N transitions, combiner with τ,
return normalisation) as a ``lax.scan`` over the T timesteps, then GAE and the PPO update. The
curiosity program never influences actions within a rollout (the policy is fixed until the
update), so scanning it after the rollout gives exactly the per-timestep wiring of
``metacurio.agent.ppo.make_train``.

Spaces: vector (or image) Box observations reach agents and programs as float32 arrays,
Discrete observations one-hot. Discrete actions reach programs one-hot; Box actions (1-D) are
sampled from a Gaussian policy, clipped to the space's bounds for the environment, and the
executed (clipped) action is what programs see, since that is what produced the next state.

Episode ends: gymnasium's vector envs default to next-step autoreset, where the step after an
episode end ignores the action and returns the reset observation, a transition that never
happened. We ask for same-step autoreset instead: every step is a real transition, and the
true last observation of an ended episode comes in ``info["final_obs"]``, which is what
programs and the value bootstrap see. Time-limit truncation bootstraps from that observation's
value; termination does not (``PPOConfig.bootstrap_truncation``, True in every preset here).

Score: the mean extrinsic return of the episodes that ended during the lifetime (all N
environments); before any episode has ended, the partial returns of the running episodes stand
in, so that short smoke runs of long-episode environments still report a number.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, Sequence

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metacurio.agent.config import PPOConfig
from metacurio.agent.ppo import (
    ReturnNormalizer,
    SumCombiner,
    Transition,
    ZeroCuriosity,
    action_log_prob,
    learning_rate,
    make_optimizer,
    make_ppo_update,
    make_reward_step,
    sample_action,
)
from metacurio.core.networks import apply_actor_critic, init_actor_critic
from envs.gymnasium_envs import Spaces, inspect_env, make_env
from metacurio.agent.gym_presets import GymPreset
from metacurio.core.compiler import compile_program
from metacurio.core.interpreter import Interpreter, InterpretedProgram
from metacurio.core.layout import Encoding, Layout, blank_encoding
from metacurio.core.program import COMBINER, Program
from metacurio.core.specs import EnvSpec


class GymTrainError(RuntimeError):
    """A lifetime that cannot go on: a program produced non-finite rewards or parameters."""


# Training


@struct.dataclass
class GymTrainState:
    """What a gymnasium lifetime carries on the device between jitted calls."""

    params: Any
    opt_state: Any
    curiosity_state: Any
    combiner_state: Any
    reward_normalizer: ReturnNormalizer
    updates: jax.Array
    key: jax.Array


@struct.dataclass
class Rollout:
    """T steps of the N environments, as the host collected them; leading axes (T, N)."""

    obs: jax.Array
    action: jax.Array
    """The policy's samples (before clipping to a Box's bounds)."""
    next_obs: jax.Array
    """True next observation (the final one at an episode end)."""
    extrinsic: jax.Array
    terminated: jax.Array
    truncated: jax.Array


@dataclasses.dataclass(frozen=True)
class GymResult:
    """One trial's lifetime on a gymnasium environment."""

    seed: int
    score: float
    """Mean extrinsic return of the episodes that ended in the lifetime (see the module doc)."""
    curve: tuple[float, ...]
    """The score so far after every PPO update."""
    steps: tuple[int, ...]
    """Env steps per environment after every update."""
    episode_returns: tuple[float, ...]
    """Extrinsic return of every episode that ended, in order of ending."""
    metrics: dict[str, np.ndarray]
    """Per-update means of the reward pipeline's and PPO's diagnostics."""
    env_steps: int
    """Steps taken, all N environments together."""
    compile_seconds: float
    """Compilation of this trainer's jitted functions (zero when it was already compiled)."""
    seconds: float
    """Wall-clock time of the lifetime itself, compilation excluded."""
    params: Any = dataclasses.field(repr=False, compare=False, default=None)
    """The agent's actor-critic parameters at the end of the lifetime."""


class GymTrainer:
    """Jitted agent and reward pipeline for one (environment, agent, curiosity, combiner) combination.

    ``curiosity`` and ``combiner`` are compiled programs or modules with ``init``/``step``
    (``metacurio.agent.ppo.CuriosityModule``); None means no intrinsic reward / intrinsic + extrinsic.
    With ``combiner_layout`` instead of ``combiner``, the combiner is any program of that layout,
    run as data by the interpreter: its encoding is an argument of the compiled reward pipeline,
    so one compile serves every combiner of the layout (a combiner search).
    Build once and call ``run`` for every trial seed: compilation happens on the first call. The
    policy and the PPO update depend only on the environment and the agent, so they are compiled
    once per process for all programs; only the reward pipeline is compiled per trainer.
    """

    def __init__(self, spaces: Spaces, ppo: PPOConfig, curiosity=None, combiner=None, combiner_layout: Layout | None = None):
        if combiner is not None and combiner_layout is not None:
            raise ValueError("give a combiner or a combiner layout, not both")
        if combiner_layout is not None and combiner_layout.kind != COMBINER:
            raise ValueError(f"a {combiner_layout.kind} layout cannot run combiners")
        self.spaces, self.ppo = spaces, ppo
        self.env_spec = spaces.env_spec(ppo.num_envs)
        self.combiner_layout = combiner_layout
        self._curiosity = ZeroCuriosity() if curiosity is None else curiosity
        if combiner_layout is not None:
            self._combiner = Interpreter(combiner_layout)
        else:
            self._combiner = SumCombiner() if combiner is None else combiner
        self.reward_pipeline = None
        """``(state, rollout, start_step, combiner_encoding) -> (state, rewards, metrics)``, compiled
        by ``compile``; the encoding is ``()`` without a combiner layout."""

    def init(self, seed: int) -> GymTrainState:
        agent_key, curiosity_key, combiner_key, run_key = jax.random.split(jax.random.PRNGKey(seed), 4)
        spec = self.env_spec
        params = init_actor_critic(agent_key, spec.obs_shape, spec.action_dim, spec.discrete)
        return GymTrainState(
            params=params,
            opt_state=make_optimizer(self.ppo).init(params),
            curiosity_state=self._curiosity.init(curiosity_key, spec),
            combiner_state=self._combiner.init(combiner_key, spec),
            reward_normalizer=ReturnNormalizer.create(self.ppo.num_envs),
            updates=jnp.zeros((), jnp.int32),
            key=run_key,
        )

    def _reward_pipeline(self, state: GymTrainState, rollout: Rollout, start_step, combiner_encoding):
        """The reward pipeline over one rollout, timestep by timestep, as ``make_train`` runs it."""
        ppo, spec = self.ppo, self.env_spec
        num_envs = rollout.extrinsic.shape[1]
        combiner = self._combiner
        if self.combiner_layout is not None:
            combiner = InterpretedProgram(self._combiner, combiner_encoding)
        reward_step = make_reward_step(spec, ppo, self._curiosity, combiner)

        def timestep(carry, inputs):
            obs, action, next_obs, extrinsic, terminated, truncated, t = inputs
            tau = jnp.full(num_envs, (start_step + t) / ppo.lifetime_steps, jnp.float32)
            shaped = reward_step(
                *carry, obs, self.spaces.executed(action), next_obs, extrinsic, terminated | truncated, tau, state.params
            )
            return (shaped.curiosity_state, shaped.combiner_state, shaped.reward_normalizer), (shaped.reward, shaped.metrics)

        (curiosity_state, combiner_state, reward_normalizer), (rewards, step_metrics) = jax.lax.scan(
            timestep,
            (state.curiosity_state, state.combiner_state, state.reward_normalizer),
            (
                rollout.obs, rollout.action, rollout.next_obs, rollout.extrinsic, rollout.terminated, rollout.truncated,
                jnp.arange(ppo.rollout_steps),
            ),  # fmt: skip
        )
        metrics = {name: jnp.mean(value) for name, value in step_metrics.items()}
        metrics["finite"] = jnp.all(jnp.isfinite(rewards))
        state = state.replace(
            curiosity_state=curiosity_state, combiner_state=combiner_state, reward_normalizer=reward_normalizer
        )
        return state, rewards, metrics

    def _encoding(self, combiner_encoding: Encoding | None):
        if self.combiner_layout is None:
            if combiner_encoding is not None:
                raise ValueError("a combiner encoding needs a trainer built with a combiner layout")
            return ()
        if combiner_encoding is None:
            raise ValueError("a trainer with a combiner layout needs the combiner's encoding")
        return combiner_encoding

    def compile(self) -> float:
        """Compile the jitted functions ahead of the first trial; returns the seconds it took."""
        if self.reward_pipeline is not None:
            return 0.0
        agent = compiled_agent(self.env_spec, self.ppo)
        agent_seconds, agent.seconds = agent.seconds, 0.0
        start = time.perf_counter()
        state = self.init(0)
        rollout = empty_rollout(self.ppo, self.env_spec)
        example = () if self.combiner_layout is None else blank_encoding(self.combiner_layout)
        step = jnp.zeros((), jnp.int32)
        self.reward_pipeline = jax.jit(self._reward_pipeline).lower(state, rollout, step, example).compile()
        return agent_seconds + time.perf_counter() - start

    def start(self, seed: int, max_episode_steps: int | None = None, combiner_encoding: Encoding | None = None) -> "Lifetime":
        """A lifetime with trial seed ``seed``, to advance one PPO update at a time; close it when done."""
        encoding = self._encoding(combiner_encoding)
        compile_seconds = self.compile()
        return Lifetime(self, seed, max_episode_steps, encoding, compile_seconds)

    def run(
        self,
        seed: int,
        max_episode_steps: int | None = None,
        on_update: Callable[[int, int], None] | None = None,
        combiner_encoding: Encoding | None = None,
    ) -> GymResult:
        """One lifetime with trial seed ``seed``; ``on_update(done, total)`` after every update."""
        lifetime = self.start(seed, max_episode_steps, combiner_encoding)
        try:
            while not lifetime.finished:
                lifetime.update()
                if on_update is not None:
                    on_update(lifetime.updates, self.ppo.num_updates)
        finally:
            lifetime.close()
        return lifetime.result()


class Lifetime:
    """One trial's lifetime, advanced one PPO update at a time (``GymTrainer.start``), so that a
    caller can run several seeds in step and stop them all at a checkpoint."""

    def __init__(self, trainer: GymTrainer, seed: int, max_episode_steps: int | None, combiner_encoding, compile_seconds: float):
        ppo, spaces = trainer.ppo, trainer.spaces
        self._trainer, self._encoding, self.seed, self.compile_seconds = trainer, combiner_encoding, int(seed), compile_seconds
        self._agent = compiled_agent(trainer.env_spec, ppo)
        self._start = time.perf_counter()
        self.seconds = 0.0
        self._state = trainer.init(seed)
        self._envs = gym.vector.SyncVectorEnv(
            [lambda: make_env(spaces.env_id, max_episode_steps) for _ in range(ppo.num_envs)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        try:
            raw_obs, _ = self._envs.reset(seed=seed)
        except Exception:
            self._envs.close()
            raise
        self._obs = spaces.observations(raw_obs)
        self._buffers = _HostRollout(ppo, trainer.env_spec)
        self._episodes = _Episodes(ppo.num_envs)
        self.curve: list[float] = []
        """The score so far after every update."""
        self._per_update: list[dict] = []

    @property
    def updates(self) -> int:
        return len(self.curve)

    @property
    def finished(self) -> bool:
        return self.updates == self._trainer.ppo.num_updates

    def update(self) -> float:
        """One rollout and PPO update; returns the score so far. Non-finite rewards or
        parameters raise ``GymTrainError``."""
        trainer, agent = self._trainer, self._agent
        ppo, spaces, state, update = trainer.ppo, trainer.spaces, self._state, self.updates
        key = state.key
        for t in range(ppo.rollout_steps):
            action, key = agent.act(state.params, self._obs, key)
            action = np.asarray(action)
            raw_obs, reward, terminated, truncated, info = self._envs.step(spaces.env_actions(action))
            next_obs = spaces.observations(raw_obs)
            self._buffers.write(t, self._obs, action, _true_next_obs(spaces, next_obs, info), reward, terminated, truncated)
            self._episodes.add(reward, terminated | truncated)
            self._obs = next_obs
        rollout = self._buffers.rollout()
        start_step = jnp.asarray(update * ppo.rollout_steps, jnp.int32)
        state, rewards, metrics = trainer.reward_pipeline(state.replace(key=key), rollout, start_step, self._encoding)
        params, opt_state, key, learn_metrics = agent.learn(state.params, state.opt_state, state.updates, state.key, rollout, rewards)
        self._state = state.replace(params=params, opt_state=opt_state, updates=state.updates + 1, key=key)
        metrics = {name: float(value) for name, value in {**metrics, **learn_metrics}.items()}
        finite = metrics.pop("finite"), metrics.pop("params_finite")
        if not all(finite):
            end = (update + 1) * ppo.rollout_steps
            raise GymTrainError(
                f"non-finite rewards or agent parameters by env step {end} (PPO update {update + 1}) of seed {self.seed}"
            )
        self._per_update.append(metrics)
        self.curve.append(self._episodes.score())
        self.seconds = time.perf_counter() - self._start
        return self.curve[-1]

    def close(self) -> None:
        self._envs.close()

    def result(self) -> GymResult:
        """What the lifetime did so far (all of it once ``finished``)."""
        ppo = self._trainer.ppo
        return GymResult(
            seed=self.seed,
            score=self.curve[-1],
            curve=tuple(self.curve),
            steps=tuple((i + 1) * ppo.rollout_steps for i in range(self.updates)),
            episode_returns=tuple(self._episodes.returns),
            metrics={name: np.array([m[name] for m in self._per_update]) for name in self._per_update[0]},
            env_steps=self.updates * ppo.rollout_steps * ppo.num_envs,
            compile_seconds=self.compile_seconds,
            seconds=self.seconds,
            params=jax.device_get(self._state.params),
        )


@dataclasses.dataclass
class Agent:
    """The compiled policy and PPO update of one (environment spec, agent config)."""

    act: Callable
    """``(params, obs, key) -> (actions, key)``: sample the N environments' actions."""
    learn: Callable
    """``(params, opt_state, updates, key, rollout, rewards) -> (params, opt_state, key, metrics)``:
    GAE and the PPO update."""
    seconds: float
    """Compile time not yet charged to a trainer."""


@functools.lru_cache(maxsize=8)
def compiled_agent(spec: EnvSpec, ppo: PPOConfig) -> Agent:
    """The policy and the PPO update for one environment spec and agent, compiled once per process."""
    start = time.perf_counter()
    optimizer = make_optimizer(ppo)
    ppo_update = make_ppo_update(ppo, spec.discrete, optimizer)

    def act(params, obs, key):
        key, action_key = jax.random.split(key)
        policy_out, _ = apply_actor_critic(params, obs)
        return sample_action(action_key, policy_out, spec.discrete), key

    def learn(params, opt_state, updates, key, rollout: Rollout, rewards):
        steps, num_envs = rewards.shape
        flat = lambda x: x.reshape((steps * num_envs,) + x.shape[2:])  # noqa: E731
        policy_out, values = apply_actor_critic(params, flat(rollout.obs))
        log_probs = action_log_prob(policy_out, flat(rollout.action), spec.discrete)
        transitions = rollout_transitions(
            rollout, rewards, log_probs.reshape(steps, num_envs), values.reshape(steps, num_envs), ppo.bootstrap_truncation
        )
        key, shuffle_key = jax.random.split(key)
        params, opt_state, metrics = ppo_update(params, opt_state, transitions, shuffle_key)
        metrics["learning_rate"] = learning_rate(ppo, updates)
        metrics["params_finite"] = _all_finite(params)
        return params, opt_state, key, metrics

    params = init_actor_critic(jax.random.PRNGKey(0), spec.obs_shape, spec.action_dim, spec.discrete)
    key = jax.random.PRNGKey(0)
    obs = jnp.zeros((ppo.num_envs,) + spec.obs_shape, jnp.float32)
    rewards = jnp.zeros((ppo.rollout_steps, ppo.num_envs), jnp.float32)
    updates = jnp.zeros((), jnp.int32)
    act_compiled = jax.jit(act).lower(params, obs, key).compile()
    rollout = empty_rollout(ppo, spec)
    learn_compiled = jax.jit(learn).lower(params, optimizer.init(params), updates, key, rollout, rewards).compile()
    return Agent(act_compiled, learn_compiled, time.perf_counter() - start)


def rollout_transitions(rollout: Rollout, rewards, log_probs, values, bootstrap_truncation: bool) -> Transition:
    """What PPO learns from: a truncated episode bootstraps from its final observation's value
    (if ``bootstrap_truncation``), a terminated one never does; both end the advantage trace."""
    done = rollout.terminated | rollout.truncated
    return Transition(
        obs=rollout.obs,
        action=rollout.action,
        log_prob=log_probs,
        value=values,
        reward=rewards,
        next_obs=rollout.next_obs,
        terminal=rollout.terminated if bootstrap_truncation else done,
        done=done,
    )


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def empty_rollout(ppo: PPOConfig, spec: EnvSpec) -> Rollout:
    """A zero rollout of the right shapes and dtypes (for compiling ahead of time)."""
    return _HostRollout(ppo, spec).rollout()


def _true_next_obs(spaces: Spaces, next_obs: np.ndarray, info: dict) -> np.ndarray:
    """Same-step autoreset returns the reset observation; an ended episode's last one is in info."""
    ended = info.get("_final_obs")
    if ended is None or not np.any(ended):
        return next_obs
    true_next = next_obs.copy()
    for i in np.flatnonzero(ended):
        true_next[i] = spaces.observations(np.asarray(info["final_obs"][i])[None])[0]
    return true_next


class _HostRollout:
    """Preallocated host buffers for one rollout, shipped to the device once per update."""

    def __init__(self, ppo: PPOConfig, spec: EnvSpec):
        steps, n = ppo.rollout_steps, ppo.num_envs
        self.obs = np.zeros((steps, n) + spec.obs_shape, np.float32)
        self.next_obs = np.zeros_like(self.obs)
        action_shape = (steps, n) if spec.discrete else (steps, n, spec.action_dim)
        self.action = np.zeros(action_shape, np.int32 if spec.discrete else np.float32)
        self.extrinsic = np.zeros((steps, n), np.float32)
        self.terminated = np.zeros((steps, n), bool)
        self.truncated = np.zeros((steps, n), bool)

    def write(self, t, obs, action, next_obs, reward, terminated, truncated) -> None:
        self.obs[t], self.action[t], self.next_obs[t] = obs, action, next_obs
        self.extrinsic[t], self.terminated[t], self.truncated[t] = reward, terminated, truncated

    def rollout(self) -> Rollout:
        return Rollout(self.obs, self.action, self.next_obs, self.extrinsic, self.terminated, self.truncated)


class _Episodes:
    """Per-env running extrinsic returns and the returns of every ended episode."""

    def __init__(self, num_envs: int):
        self.running = np.zeros(num_envs, np.float64)
        self.returns: list[float] = []

    def add(self, reward, done) -> None:
        self.running += reward
        self.returns.extend(float(r) for r in self.running[done])
        self.running[done] = 0.0

    def score(self) -> float:
        values = self.returns if self.returns else self.running
        return float(np.mean(values))


def train(
    preset: GymPreset,
    seeds: Sequence[int] | None = None,
    curiosity=None,
    combiner=None,
    on_update: Callable[[int, int], None] | None = None,
) -> list[GymResult]:
    """Lifetimes of one agent + reward pipeline on ``preset`` for every seed (the preset's by default).

    ``curiosity`` and ``combiner`` are programs (``metacurio.core.program.Program``), compiled
    modules, or None (no intrinsic reward; intrinsic + extrinsic).
    """
    def module(value):
        return compile_program(value) if isinstance(value, Program) else value

    spaces = inspect_env(preset.env_id)
    trainer = GymTrainer(spaces, preset.ppo, module(curiosity), module(combiner))
    return [trainer.run(seed, preset.max_episode_steps, on_update) for seed in (preset.seeds if seeds is None else seeds)]


def mean_and_stderr(scores: Sequence[float]) -> tuple[float, float]:
    """Mean ± standard error over trials (0 for one trial)."""
    values = np.asarray(scores, np.float64)
    if len(values) < 2:
        return float(values.mean()), 0.0
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def episode_frames(
    spaces: Spaces, params, seed: int, max_episode_steps: int | None = None, max_frames: int = 300
) -> list[np.ndarray]:
    """One episode of a trained (stochastic) policy, rendered with ``render_mode="rgb_array"``."""
    env = make_env(spaces.env_id, max_episode_steps, render_mode="rgb_array")
    policy = jax.jit(lambda p, o, k: sample_action(k, apply_actor_critic(p, o)[0], spaces.discrete))
    key = jax.random.PRNGKey(seed)
    try:
        raw, _ = env.reset(seed=seed)
        frames = [np.asarray(env.render())]
        while len(frames) < max_frames:
            key, action_key = jax.random.split(key)
            action = np.asarray(policy(params, spaces.observations(np.asarray(raw)[None]), action_key))
            raw, _, terminated, truncated, _ = env.step(spaces.env_actions(action)[0])
            frames.append(np.asarray(env.render()))
            if terminated or truncated:
                break
    finally:
        env.close()
    return frames
