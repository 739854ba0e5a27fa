"""The reference compiler: every reference program runs, learns, and is deterministic."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CONTINUOUS_ENV, IMAGE_ENV, VECTOR_ENV, random_value, reference_programs

from envs import gridworld, gridworld_config
from metacurio.core import networks
from metacurio.core.compiler import compile_program
from metacurio.core.program import ProgramBuilder
from metacurio.core.specs import CombinerBatch, CuriosityBatch, EnvSpec
from operations import types as T

CURIOSITY = reference_programs("curiosity")
COMBINERS = reference_programs("combiner")


def gridworld_stream(steps: int, seed: int = 0) -> CuriosityBatch:
    """Real transitions of 5 gridworld envs under random actions, stacked on a time axis."""
    config = gridworld_config.EMPTY
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    obs, states = jax.vmap(gridworld.reset, in_axes=(0, None))(keys, config)

    def one_step(carry, key):
        obs, states = carry
        action_key, step_key = jax.random.split(key)
        actions = jax.random.randint(action_key, (5,), 0, 3)
        next_obs, states, _, _, _, info = jax.vmap(gridworld.step, in_axes=(0, 0, 0, None))(
            jax.random.split(step_key, 5), states, actions, config
        )
        batch = CuriosityBatch(obs=obs, action=jax.nn.one_hot(actions, 7), next_obs=info["final_obs"])
        return (next_obs, states), batch

    _, stream = jax.lax.scan(one_step, (obs, states), jax.random.split(jax.random.PRNGKey(seed + 1), steps))
    return stream


def random_stream(env: EnvSpec, steps: int, seed: int = 0) -> CuriosityBatch:
    def one(key):
        k1, k2, k3 = jax.random.split(key, 3)
        obs = random_value(k1, T.Obs, env) if env.image else jax.random.normal(k1, (env.batch_size,) + env.obs_shape)
        next_obs = random_value(k3, T.Obs, env) if env.image else jax.random.normal(k3, (env.batch_size,) + env.obs_shape)
        return CuriosityBatch(obs=obs, action=random_value(k2, T.Action, env), next_obs=next_obs)

    return jax.vmap(one)(jax.random.split(jax.random.PRNGKey(seed), steps))


@functools.lru_cache(maxsize=None)
def _scanned(compiled):
    def body(state, batch):
        reward, state, metrics = compiled.step(state, batch)
        return state, (reward, metrics)

    return jax.jit(lambda state, stream: jax.lax.scan(body, state, stream))


def run_stream(compiled, env, stream, seed=0):
    return _scanned(compiled)(compiled.init(jax.random.PRNGKey(seed), env), stream)


@pytest.mark.parametrize("name", sorted(CURIOSITY))
def test_reference_program_runs_on_image_observations(name):
    compiled = compile_program(CURIOSITY[name])
    _, (rewards, metrics) = run_stream(compiled, IMAGE_ENV, gridworld_stream(50))
    assert rewards.shape == (50, 5)
    assert bool(jnp.all(jnp.isfinite(rewards)))
    assert bool(jnp.all(metrics["finite"]))


@pytest.mark.parametrize("name", sorted(CURIOSITY))
@pytest.mark.parametrize("env", [VECTOR_ENV, CONTINUOUS_ENV], ids=["vector-discrete", "vector-continuous"])
def test_reference_program_runs_on_vector_observations(name, env):
    compiled = compile_program(CURIOSITY[name])
    _, (rewards, metrics) = run_stream(compiled, env, random_stream(env, 50))
    assert rewards.shape == (50, 5)
    assert bool(jnp.all(jnp.isfinite(rewards)))
    assert bool(jnp.all(metrics["finite"]))


@pytest.mark.parametrize("name", sorted(COMBINERS))
def test_reference_combiner_runs(name):
    compiled = compile_program(COMBINERS[name])
    state = compiled.init(jax.random.PRNGKey(0), IMAGE_ENV)
    step = jax.jit(compiled.step)
    for t in range(50):
        batch = CombinerBatch(intrinsic=jnp.linspace(0, 1, 5), extrinsic=jnp.ones(5), tau=jnp.asarray(t / 50))
        reward, state, metrics = step(state, batch)
        assert bool(metrics["finite"])
    assert reward.shape == (5,)


def test_paper_combiner_anneals_from_intrinsic_to_extrinsic():
    compiled = compile_program(COMBINERS["combiner_paper"])
    state = compiled.init(jax.random.PRNGKey(0), IMAGE_ENV)
    i, e = jnp.full(5, 0.5), jnp.full(5, 2.0)
    early, _, _ = compiled.step(state, CombinerBatch(intrinsic=i, extrinsic=e, tau=jnp.asarray(0.0)))
    late, _, _ = compiled.step(state, CombinerBatch(intrinsic=i, extrinsic=e, tau=jnp.asarray(1.0)))
    np.testing.assert_allclose(early, 0.5, rtol=1e-6)
    # ((1 + i − τ)·i + τ·e) / (|1 + i − τ| + τ) at τ = 1: (0.5·0.5 + 2) / 1.5
    np.testing.assert_allclose(late, (0.25 + 2.0) / 1.5, rtol=1e-6)


LEARNING_SEEDS = 2 * np.arange(16)
"""Stream and init seeds of the learning checks below (even, as stream s also uses key s + 1)."""


@functools.cache
def _ratio_function(name: str, metric: str):
    compiled = compile_program(CURIOSITY[name])

    def one(seed):
        state = compiled.init(jax.random.PRNGKey(seed), IMAGE_ENV)
        _, (rewards, metrics) = _scanned(compiled)(state, gridworld_stream(300, seed))
        curve = rewards if metric == "reward" else metrics[metric]
        return curve[-20:].mean() / curve[:20].mean()

    return jax.jit(jax.vmap(one))


def learning_ratios(name: str, metric: str, seeds=LEARNING_SEEDS) -> np.ndarray:
    """Per seed, the mean of ``metric`` over the last 20 of 300 gridworld steps over the first 20."""
    return np.asarray(_ratio_function(name, metric)(jnp.asarray(seeds)))


def test_rnd_prediction_error_falls():
    """The median over 16 seeds of late/early prediction error is below 0.6.

    One seed's ratio ranges 0.12 to 0.84 (320 seeds), so a single seed against the old 0.5 bound
    passed by luck. Observed offline: this exact median for the 20 seed sets 100·k +
    LEARNING_SEEDS, k = 0..19, XLA single-threaded as in conftest, ranges 0.346 to 0.464 (margin
    0.14) with the default code generation on an AVX-512 Xeon and with XLA_FLAGS
    --xla_cpu_max_isa=AVX2 or =SSE4_2 alike (they change it by ~1e-7).
    """
    ratios = learning_ratios("rnd", "reward")
    assert np.median(ratios) < 0.6, ratios


def test_fast_action_prediction_loss_falls():
    """The median over 16 seeds of late/early action-prediction loss is below 0.75.

    The action is recoverable from s' (turning changes the agent cell's direction code, forward
    moves it), so an encoder of s' can learn to predict it. One seed's ratio ranges 0.38 to 0.81
    (320 seeds; seed 0, the old test's only one, was under the old 0.6 bound by luck). Observed
    offline as for the RND test: the median ranges 0.568 to 0.625 (margin 0.125) with the
    default, AVX2 and SSE4_2 code generation alike.
    """
    ratios = learning_ratios("fast", "loss")
    assert np.median(ratios) < 0.75, ratios


def test_reward_is_computed_before_the_update():
    compiled = compile_program(CURIOSITY["rnd"])
    state = compiled.init(jax.random.PRNGKey(0), IMAGE_ENV)
    batch = jax.tree.map(lambda x: x[0], gridworld_stream(1))
    reward, new_state, _ = jax.jit(compiled.step)(state, batch)
    t = networks.apply_obs_encoder(state.params["predictor"], batch.next_obs)
    from metacurio.core.compiler import slot_key

    target_params = networks.init_obs_encoder(
        slot_key(jax.random.PRNGKey(0), CURIOSITY["rnd"].analysis.canonical_state_names["target_net"]), IMAGE_ENV.obs_shape
    )
    target = networks.apply_obs_encoder(target_params, batch.next_obs)
    expected = jnp.sqrt(jnp.sum((target - t) ** 2, axis=-1) + 1e-12) / jnp.sqrt(32.0)
    np.testing.assert_allclose(reward, expected, rtol=1e-5)
    assert not np.allclose(new_state.params["predictor"]["MLP_0"]["Dense_0"]["kernel"], state.params["predictor"]["MLP_0"]["Dense_0"]["kernel"])


def test_same_seed_same_rewards_and_vmap_over_seeds():
    compiled = compile_program(CURIOSITY["ccim"])
    stream = gridworld_stream(20)
    runs = [run_stream(compiled, IMAGE_ENV, stream, seed)[1][0] for seed in (0, 1, 0)]
    np.testing.assert_array_equal(runs[0], runs[2])
    assert not np.allclose(runs[0], runs[1])

    def lifetime(key):
        state = compiled.init(key, IMAGE_ENV)

        def body(state, batch):
            reward, state, _ = compiled.step(state, batch)
            return state, reward

        return jax.lax.scan(body, state, stream)[1]

    batched = jax.jit(jax.vmap(lifetime))(jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1)]))
    np.testing.assert_allclose(batched[0], runs[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched[1], runs[1], rtol=1e-5, atol=1e-6)


def test_only_used_structures_are_built_with_common_random_numbers():
    def encoder_program(state_name):
        b = ProgramBuilder("curiosity")
        enc = b.state(state_name, "ObsNet")
        x = b.forward("Encode", "next_obs", state=enc)
        y = b.forward("EncodeDetached", "obs", state=enc)
        r = b.forward("L2Distance", x, y)
        b.update("AddToLoss", r)
        return b.build(r)

    key = jax.random.PRNGKey(3)
    a = compile_program(encoder_program("alpha")).init(key, IMAGE_ENV)
    b = compile_program(encoder_program("beta")).init(key, IMAGE_ENV)
    fast = compile_program(CURIOSITY["fast"]).init(key, IMAGE_ENV)
    assert set(a.params) == {"alpha"} and not a.slots
    assert set(fast.params) == {"enc"}
    for x, y in zip(jax.tree.leaves(a.params["alpha"]), jax.tree.leaves(b.params["beta"])):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(jax.tree.leaves(a.params["alpha"]), jax.tree.leaves(fast.params["enc"])):
        np.testing.assert_array_equal(x, y)


def test_policy_op_reads_the_agents_parameters():
    b = ProgramBuilder("curiosity")
    pi = b.state("pi", "AgentPolicy")
    p = b.forward("Policy", "next_obs", state=pi)
    r = b.forward("ActionNLL", p, "action")
    program = b.build(r)
    compiled = compile_program(program)
    state = compiled.init(jax.random.PRNGKey(0), IMAGE_ENV)
    batch = jax.tree.map(lambda x: x[0], gridworld_stream(1))
    step = jax.jit(compiled.step)
    own, _, _ = step(state, batch)
    agent = networks.init_actor_critic(jax.random.PRNGKey(42), IMAGE_ENV.obs_shape, 7, True)
    agent = jax.tree.map(lambda x: x * 30.0, agent)
    with_agent, _, _ = step(state, batch.replace(policy_params=agent))
    logits, _ = networks.apply_actor_critic(agent, batch.next_obs)
    expected = -jnp.take_along_axis(jax.nn.log_softmax(jax.nn.softmax(logits)), jnp.argmax(batch.action, -1)[:, None], -1)[:, 0]
    np.testing.assert_allclose(with_agent, expected, rtol=1e-5)
    assert not np.allclose(own, with_agent)
