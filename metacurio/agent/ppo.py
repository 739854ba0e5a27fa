"""PPO in JAX with the curiosity reward pipeline of the original system, minus its bugs.

One closure, ``make_train``, builds everything for one (environment, PPO config, curiosity
module, combiner) combination and returns pure functions:

* ``init(key) -> TrainState``: a fresh agent lifetime (agent, optimiser, N environments,
  curiosity and combiner state, reward normaliser, coverage, counters, key);
* ``run_updates(state, num_updates) -> (state, metrics)``: ``num_updates`` (static) PPO
  updates as a ``lax.scan``; metrics have a leading update axis. Running a lifetime in
  chunks gives the same result as running it at once, so an evaluator can stop at
  checkpoints to prune bad programs;
* ``train(key)``: a whole lifetime.

None of them is jitted here so that callers can ``jax.vmap`` over trial seeds first.

Per env timestep (the paper's "faithful" wiring): act in the N environments, call the
curiosity module once on the N transitions (s, a, s') where s' is the true next observation
(the final observation at an episode end, never the next episode's reset observation),
combine intrinsic and extrinsic rewards with τ = fraction of the lifetime elapsed, and
normalise by the running std of the discounted combined return. The return is reset where an
episode ended at this very step (the original used the previous step's done). After T steps:
GAE and the PPO update, with the original's hyper-parameters (see ``GRIDWORLD_PAPER``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax
from flax import struct

from envs.gridworld import coverage_count, empty_coverage, update_coverage, update_episode_coverage
from metacurio.agent.config import PPOConfig
from metacurio.core.networks import apply_actor_critic, init_actor_critic
from metacurio.core.specs import CombinerBatch, CuriosityBatch, EnvSpec, one_hot_actions


class CuriosityModule(Protocol):
    """What a compiled curiosity program is: an intrinsic reward with its own learning state.

    ``step`` receives one env timestep's N transitions and must compute the rewards before
    training on them.
    """

    def init(self, key: jax.Array, env_spec: EnvSpec) -> Any: ...

    def step(self, state: Any, batch: CuriosityBatch) -> tuple[jax.Array, Any, dict]: ...


class RewardCombiner(Protocol):
    """Merges intrinsic and extrinsic rewards, possibly depending on the lifetime fraction τ."""

    def init(self, key: jax.Array, env_spec: EnvSpec) -> Any: ...

    def step(self, state: Any, batch: CombinerBatch) -> tuple[jax.Array, Any, dict]: ...


class ZeroCuriosity:
    """No intrinsic reward: plain PPO through the same pipeline."""

    def init(self, key, env_spec):
        return ()

    def step(self, state, batch):
        return jnp.zeros(batch.obs.shape[0], jnp.float32), state, {}


class SumCombiner:
    """intrinsic + extrinsic, the original's behaviour when no combiner program is given."""

    def init(self, key, env_spec):
        return ()

    def step(self, state, batch):
        return batch.intrinsic + batch.extrinsic, state, {}


@struct.dataclass
class ReturnNormalizer:
    """Running statistics of the per-env discounted return (VecNormalize-style)."""

    ret: jax.Array
    """(N,) discounted combined return of each env's current episode."""
    mean: jax.Array
    """Running mean of all returns seen."""
    var: jax.Array
    """Running (population) variance of all returns seen."""
    count: jax.Array
    """Number of returns seen, plus the small prior weight of the initial mean 0 / var 1."""

    @classmethod
    def create(cls, num_envs: int) -> ReturnNormalizer:
        # The prior (mean 0, var 1, weight 1e-4) avoids dividing by a zero variance at the start.
        return cls(
            ret=jnp.zeros(num_envs, jnp.float32),
            mean=jnp.zeros((), jnp.float32),
            var=jnp.ones((), jnp.float32),
            count=jnp.full((), 1e-4, jnp.float32),
        )

    def normalize(self, reward, done, gamma: float, clip: float):
        """Scale one timestep's rewards; ``done`` marks episodes that ended at this step."""
        ret = gamma * self.ret + reward
        batch_mean = jnp.mean(ret)
        batch_var = jnp.var(ret)
        batch_count = ret.shape[0]
        total = self.count + batch_count
        delta = batch_mean - self.mean
        # Chan et al.'s parallel update merges this batch's moments into the running ones.
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        var = m2 / total
        scaled = jnp.clip(reward / jnp.sqrt(var + 1e-8), -clip, clip)
        new = ReturnNormalizer(
            ret=jnp.where(done, 0.0, ret),
            mean=self.mean + delta * batch_count / total,
            var=var,
            count=total,
        )
        return scaled, new


def compute_gae(rewards, values, next_values, terminals, dones, gamma: float, gae_lambda: float):
    """Generalised advantage estimates and returns, all arrays (T, N), time first.

    ``next_values[t]`` is the value of the true next state of step t; ``terminals`` stop
    bootstrapping from it, ``dones`` (any episode end) stop the advantage from flowing back
    across the boundary. They differ only for bootstrapped time-limit truncations.
    """

    def backward(advantage, step):
        reward, value, next_value, terminal, done = step
        delta = reward + gamma * next_value * (1.0 - terminal) - value
        advantage = delta + gamma * gae_lambda * (1.0 - done) * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward,
        jnp.zeros_like(values[0]),
        (rewards, values, next_values, terminals.astype(values.dtype), dones.astype(values.dtype)),
        reverse=True,
    )
    return advantages, advantages + values


def sample_action(key, policy_out, discrete: bool):
    """``policy_out`` is the actor's output: logits, or (mean, log_std) for a Gaussian."""
    if discrete:
        return jax.random.categorical(key, policy_out)
    mean, log_std = policy_out
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)


def action_log_prob(policy_out, action, discrete: bool):
    if discrete:
        log_probs = jax.nn.log_softmax(policy_out)
        return jnp.take_along_axis(log_probs, action[..., None], axis=-1)[..., 0]
    mean, log_std = policy_out
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def policy_entropy(policy_out, discrete: bool):
    if discrete:
        log_probs = jax.nn.log_softmax(policy_out)
        return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)
    _, log_std = policy_out
    return jnp.sum(log_std + 0.5 * (1.0 + math.log(2 * math.pi)), axis=-1)


@struct.dataclass
class PPOBatch:
    """What the PPO loss needs of each transition, batch axis first."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    """Log-probability of ``action`` under the policy that collected it."""
    value: jax.Array
    """Value prediction when the transition was collected."""
    advantage: jax.Array
    target: jax.Array
    """Value target: the GAE return."""


def ppo_loss(params, batch: PPOBatch, config: PPOConfig, discrete: bool):
    """Clipped-surrogate PPO loss for either policy kind, with its diagnostics."""
    advantages, returns = batch.advantage, batch.target
    policy_out, value = apply_actor_critic(params, batch.obs)
    log_prob = action_log_prob(policy_out, batch.action, discrete)
    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    clipped_ratio = jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
    policy_loss = -jnp.mean(jnp.minimum(ratio * advantages, clipped_ratio * advantages))
    value_error = (value - returns) ** 2
    if config.clip_value_loss:
        clipped_value = batch.value + jnp.clip(value - batch.value, -config.clip_eps, config.clip_eps)
        value_error = jnp.maximum(value_error, (clipped_value - returns) ** 2)
    value_loss = 0.5 * jnp.mean(value_error)
    entropy = jnp.mean(policy_entropy(policy_out, discrete))
    total = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy
    return total, {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean(ratio - 1.0 - log_ratio),
        "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > config.clip_eps),
    }


@struct.dataclass
class Transition:
    """One env timestep of the N environments, as PPO stores it."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    """The normalised reward PPO optimises."""
    next_obs: jax.Array
    """True next observation (the final one at an episode end)."""
    terminal: jax.Array
    """No bootstrapping from ``next_obs``."""
    done: jax.Array
    """The episode ended at this step (terminated or truncated)."""


@struct.dataclass
class TrainState:
    """Everything that changes during one agent lifetime; batch over trials with vmap."""

    params: Any
    """Actor-critic parameters."""
    opt_state: Any
    """Optax state; its step count drives the learning-rate decay."""
    env_state: Any
    """The N environments' states (leading axis N)."""
    obs: jax.Array
    """(N, *obs_shape): the observations the agent acts on next."""
    curiosity_state: Any
    """The curiosity module's state."""
    combiner_state: Any
    """The reward combiner's state."""
    reward_normalizer: ReturnNormalizer
    """Running statistics of the discounted combined return."""
    coverage: jax.Array | None
    """(x, y, direction) states reached by any env this lifetime, for environments that report
    ``agent_pos``/``agent_dir``; None otherwise."""
    episode_coverage: tuple[jax.Array, jax.Array] | None
    """The paper's counting (``envs.gridworld.update_episode_coverage``): states reached in
    completed episodes, and each env's states of its current episode; None without a pose."""
    episode_return: jax.Array
    """(N,) undiscounted extrinsic return of each env's current episode."""
    episode_length: jax.Array
    """(N,) steps taken in each env's current episode."""
    env_steps: jax.Array
    """Steps per environment taken so far this lifetime."""
    updates: jax.Array
    """PPO updates done so far this lifetime."""
    key: jax.Array
    """PRNG key for actions, environments and minibatch shuffling."""


class Trainer(NamedTuple):
    """The pure, unjitted functions ``make_train`` builds."""

    init: Callable[[jax.Array], TrainState]
    """A fresh lifetime from a trial key."""
    run_updates: Callable[[TrainState, int], tuple[TrainState, dict]]
    """``num_updates`` (static) PPO updates; metrics stacked on a leading update axis."""
    train: Callable[[jax.Array], tuple[TrainState, dict]]
    """``init`` then the whole lifetime, ``PPOConfig.num_updates`` updates."""


def _reports_agent_pose(env_reset, env_step, env_config, env_spec: EnvSpec) -> bool:
    """Whether the environment's ``info`` has the gridworld's agent position and direction."""

    def one_step(key):
        _, state = env_reset(key, env_config)
        action_shape = () if env_spec.discrete else (env_spec.action_dim,)
        action_dtype = jnp.int32 if env_spec.discrete else jnp.float32
        return env_step(key, state, jnp.zeros(action_shape, action_dtype), env_config)[-1]

    info = jax.eval_shape(one_step, jax.random.key(0))
    return "agent_pos" in info and "agent_dir" in info


def make_optimizer(config: PPOConfig) -> optax.GradientTransformation:
    """Adam with global-norm clipping; its learning rate decays linearly per PPO update."""
    steps_per_update = config.num_epochs * config.num_minibatches
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(lambda count: learning_rate(config, count // steps_per_update), eps=config.adam_eps),
    )


def learning_rate(config: PPOConfig, update_index):
    # Clamped so that running past the planned lifetime never turns into gradient ascent.
    return config.learning_rate * jnp.maximum(1.0 - update_index / config.num_updates, 0.0)


class ShapedReward(NamedTuple):
    """One env timestep's rewards through the pipeline, with the pipeline's new states."""

    reward: jax.Array
    """(N,) the normalised reward PPO optimises."""
    intrinsic: jax.Array
    combined: jax.Array
    curiosity_state: Any
    combiner_state: Any
    reward_normalizer: ReturnNormalizer
    metrics: dict
    """Batch means of the rewards and of the curiosity and combiner metrics."""


def make_reward_step(env_spec: EnvSpec, config: PPOConfig, curiosity: CuriosityModule, combiner: RewardCombiner):
    """The reward pipeline of one env timestep: curiosity, combiner, return normalisation.

    The returned ``reward_step(curiosity_state, combiner_state, reward_normalizer, obs, action,
    next_obs, extrinsic, done, tau, policy_params) -> ShapedReward`` takes the N transitions of
    one timestep; ``action`` is what the environment executed (indices if discrete), ``done``
    marks episodes that ended at this step and ``tau`` is the lifetime fraction.
    """

    def reward_step(curiosity_state, combiner_state, reward_normalizer, obs, action, next_obs, extrinsic, done, tau, policy_params):
        intrinsic, curiosity_state, curiosity_metrics = curiosity.step(
            curiosity_state, CuriosityBatch(obs, one_hot_actions(action, env_spec), next_obs, policy_params)
        )
        combined, combiner_state, combiner_metrics = combiner.step(combiner_state, CombinerBatch(intrinsic, extrinsic, tau))
        if config.normalize_reward:
            reward, reward_normalizer = reward_normalizer.normalize(combined, done, config.gamma, config.reward_clip)
        else:
            reward = combined
        metrics = {
            "intrinsic_reward": jnp.mean(intrinsic),
            "extrinsic_reward": jnp.mean(extrinsic),
            "combined_reward": jnp.mean(combined),
            "reward": jnp.mean(reward),
            **{f"curiosity/{name}": jnp.mean(v) for name, v in curiosity_metrics.items()},
            **{f"combiner/{name}": jnp.mean(v) for name, v in combiner_metrics.items()},
        }
        return ShapedReward(reward, intrinsic, combined, curiosity_state, combiner_state, reward_normalizer, metrics)

    return reward_step


def make_ppo_update(config: PPOConfig, discrete: bool, optimizer: optax.GradientTransformation):
    """GAE and ``num_epochs`` passes of minibatch PPO over one rollout.

    The returned ``ppo_update(params, opt_state, rollout, key) -> (params, opt_state,
    loss_metrics)`` takes a ``Transition`` with (T, N) leading axes collected by ``params``;
    loss metrics are means over every minibatch step.
    """

    def minibatch_step(params_and_opt, minibatch: PPOBatch):
        params, opt_state = params_and_opt
        grads, loss_metrics = jax.grad(ppo_loss, has_aux=True)(params, minibatch, config, discrete)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss_metrics

    def epoch(params_and_opt, key, batch: PPOBatch):
        order = jax.random.permutation(key, config.batch_size)
        minibatches = jax.tree_util.tree_map(
            lambda x: x[order].reshape((config.num_minibatches, config.minibatch_size) + x.shape[1:]),
            batch,
        )
        return jax.lax.scan(minibatch_step, params_and_opt, minibatches)

    def ppo_update(params, opt_state, rollout: Transition, key):
        # One batched pass gives V(true next state) for every step: at an episode end that is the
        # final observation's value, elsewhere the next step's observation.
        flat_next_obs = rollout.next_obs.reshape((config.batch_size,) + rollout.next_obs.shape[2:])
        _, next_values = apply_actor_critic(params, flat_next_obs)
        advantages, targets = compute_gae(
            rollout.reward,
            rollout.value,
            next_values.reshape(rollout.value.shape),
            rollout.terminal,
            rollout.done,
            config.gamma,
            config.gae_lambda,
        )
        if config.normalize_advantages:
            # ddof=1 as torch's std in the original.
            advantages = (advantages - advantages.mean()) / (advantages.std(ddof=1) + 1e-5)
        batch = jax.tree_util.tree_map(
            lambda x: x.reshape((config.batch_size,) + x.shape[2:]),
            PPOBatch(rollout.obs, rollout.action, rollout.log_prob, rollout.value, advantages, targets),
        )
        (params, opt_state), loss_metrics = jax.lax.scan(
            lambda carry, k: epoch(carry, k, batch),
            (params, opt_state),
            jax.random.split(key, config.num_epochs),
        )
        return params, opt_state, {name: value.mean() for name, value in loss_metrics.items()}

    return ppo_update


def make_train(
    env_reset,
    env_step,
    env_config,
    env_spec: EnvSpec,
    config: PPOConfig,
    curiosity: CuriosityModule,
    combiner: RewardCombiner | None = None,
) -> Trainer:
    """Build the lifetime functions for one environment, PPO config and reward pipeline.

    ``env_reset(key, env_config) -> (obs, state)`` and ``env_step(key, state, action,
    env_config) -> (obs, state, reward, terminated, truncated, info)`` act on one environment
    and reset automatically; ``info["final_obs"]`` must hold the true last observation of an
    episode that ended.
    """
    if env_spec.batch_size != config.num_envs:
        raise ValueError(
            f"env_spec.batch_size ({env_spec.batch_size}) must equal num_envs ({config.num_envs}): "
            "curiosity programs are built for one call per timestep on all envs"
        )
    combiner = SumCombiner() if combiner is None else combiner
    num_envs, discrete = config.num_envs, env_spec.discrete

    # Coverage is the gridworld's exploration score; other environments have no agent pose.
    tracks_coverage = _reports_agent_pose(env_reset, env_step, env_config, env_spec)

    optimizer = make_optimizer(config)
    reward_step = make_reward_step(env_spec, config, curiosity, combiner)
    ppo_update = make_ppo_update(config, discrete, optimizer)
    reset_envs = jax.vmap(lambda key: env_reset(key, env_config))
    step_envs = jax.vmap(lambda key, state, action: env_step(key, state, action, env_config))

    def init(key) -> TrainState:
        agent_key, env_key, curiosity_key, combiner_key, run_key = jax.random.split(key, 5)
        params = init_actor_critic(agent_key, env_spec.obs_shape, env_spec.action_dim, discrete)
        obs, env_state = reset_envs(jax.random.split(env_key, num_envs))
        return TrainState(
            params=params,
            opt_state=optimizer.init(params),
            env_state=env_state,
            obs=obs,
            curiosity_state=curiosity.init(curiosity_key, env_spec),
            combiner_state=combiner.init(combiner_key, env_spec),
            reward_normalizer=ReturnNormalizer.create(num_envs),
            coverage=empty_coverage(env_config) if tracks_coverage else None,
            episode_coverage=(
                (empty_coverage(env_config), jnp.stack([empty_coverage(env_config)] * num_envs))
                if tracks_coverage
                else None
            ),
            episode_return=jnp.zeros(num_envs, jnp.float32),
            episode_length=jnp.zeros(num_envs, jnp.int32),
            env_steps=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
            key=run_key,
        )

    def env_timestep(state: TrainState, _):
        key, action_key, env_key = jax.random.split(state.key, 3)
        policy_out, value = apply_actor_critic(state.params, state.obs)
        action = sample_action(action_key, policy_out, discrete)
        obs, env_state, extrinsic, terminated, truncated, info = step_envs(
            jax.random.split(env_key, num_envs), state.env_state, action
        )
        next_obs = info["final_obs"]
        tau = jnp.full(num_envs, state.env_steps / config.lifetime_steps, jnp.float32)
        done = terminated | truncated
        shaped = reward_step(
            state.curiosity_state, state.combiner_state, state.reward_normalizer,
            state.obs, action, next_obs, extrinsic, done, tau, state.params,
        )  # fmt: skip
        transition = Transition(
            obs=state.obs,
            action=action,
            log_prob=action_log_prob(policy_out, action, discrete),
            value=value,
            reward=shaped.reward,
            next_obs=next_obs,
            terminal=terminated if config.bootstrap_truncation else done,
            done=done,
        )
        episode_return = state.episode_return + extrinsic
        episode_length = state.episode_length + 1
        metrics = {
            **shaped.metrics,
            "episode_return_sum": jnp.sum(jnp.where(done, episode_return, 0.0)),
            "episode_length_sum": jnp.sum(jnp.where(done, episode_length, 0)),
            "episode_count": jnp.sum(done, dtype=jnp.int32),
        }
        state = state.replace(
            env_state=env_state,
            obs=obs,
            curiosity_state=shaped.curiosity_state,
            combiner_state=shaped.combiner_state,
            reward_normalizer=shaped.reward_normalizer,
            coverage=(
                update_coverage(state.coverage, info["agent_pos"], info["agent_dir"])
                if tracks_coverage
                else None
            ),
            episode_coverage=(
                update_episode_coverage(*state.episode_coverage, info["agent_pos"], info["agent_dir"], done)
                if tracks_coverage
                else None
            ),
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
            env_steps=state.env_steps + 1,
            key=key,
        )
        return state, (transition, metrics)

    def update(state: TrainState, _):
        state, (rollout, step_metrics) = jax.lax.scan(
            env_timestep, state, None, config.rollout_steps
        )
        key, shuffle_key = jax.random.split(state.key)
        params, opt_state, loss_metrics = ppo_update(state.params, state.opt_state, rollout, shuffle_key)
        metrics = {
            name: value.sum() if name.startswith("episode_") else value.mean()
            for name, value in step_metrics.items()
        }
        metrics.update(loss_metrics)
        metrics["learning_rate"] = learning_rate(config, state.updates)
        if tracks_coverage:
            metrics["coverage"] = coverage_count(state.coverage)
            metrics["coverage_completed_episodes"] = coverage_count(state.episode_coverage[0])
        state = state.replace(params=params, opt_state=opt_state, updates=state.updates + 1, key=key)
        return state, metrics

    def run_updates(state: TrainState, num_updates: int):
        return jax.lax.scan(update, state, None, num_updates)

    def train(key):
        return run_updates(init(key), config.num_updates)

    return Trainer(init, run_updates, train)
