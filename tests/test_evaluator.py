"""The program-as-data interpreter and the evaluator agree with the per-program compiled path."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import IMAGE_ENV, reference_programs

from envs import gridworld, gridworld_config
from metacurio.agent.config import PPOConfig
from metacurio.agent.ppo import make_train
from metacurio.core.compiler import compile_program
from metacurio.agent.evaluator import Evaluator, chunk_sizes, gridworld_spec
from metacurio.core.interpreter import InterpretedProgram, Interpreter
from metacurio.core.layout import Layout, LayoutError, encode
from metacurio.core.program import ProgramBuilder
from test_compiler import gridworld_stream

CURIOSITY = reference_programs("curiosity")
SMALL = PPOConfig(lifetime_steps=36)
"""Three updates of 12 steps: enough to exercise rollouts, updates and checkpoints."""
SEEDS = (4, 104)


@functools.lru_cache(maxsize=None)
def reference_layout() -> Layout:
    return Layout.for_programs(CURIOSITY.values())


@functools.lru_cache(maxsize=None)
def small_evaluator() -> Evaluator:
    return Evaluator(reference_layout(), ppo=SMALL, checkpoint_every=12)


def lifetime_metrics(module, ppo=SMALL):
    spec = gridworld_spec(gridworld_config.EMPTY, ppo)
    trainer = make_train(gridworld.reset, gridworld.step, gridworld_config.EMPTY, spec, ppo, module)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in SEEDS])
    return jax.jit(jax.vmap(trainer.train))(keys)[1]


@functools.lru_cache(maxsize=None)
def _interpreted_lifetime():
    layout = reference_layout()
    interpreter = Interpreter(layout)
    spec = gridworld_spec(gridworld_config.EMPTY, SMALL)

    def run(encoding, keys):
        module = InterpretedProgram(interpreter, encoding)
        trainer = make_train(gridworld.reset, gridworld.step, gridworld_config.EMPTY, spec, SMALL, module)
        return jax.vmap(trainer.train)(keys)[1]

    return jax.jit(run)


def test_interpreter_matches_reference_step_by_step():
    layout = reference_layout()
    interpreter = Interpreter(layout)
    stream = gridworld_stream(25)

    @jax.jit
    def interpreted(encoding, key):
        state = interpreter.init(key, IMAGE_ENV)

        def body(s, batch):
            reward, s, metrics = interpreter.step(s, batch, encoding)
            return s, (reward, metrics["loss"])

        return jax.lax.scan(body, state, stream)[1]

    for name, program in CURIOSITY.items():
        compiled = compile_program(program)

        def reference(key):
            state = compiled.init(key, IMAGE_ENV)

            def body(s, batch):
                reward, s, metrics = compiled.step(s, batch)
                return s, (reward, metrics["loss"])

            return jax.lax.scan(body, state, stream)[1]

        key = jax.random.PRNGKey(11)
        (r_ref, l_ref), (r_int, l_int) = jax.jit(reference)(key), interpreted(encode(program, layout), key)
        np.testing.assert_allclose(r_int, r_ref, rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(l_int, l_ref, rtol=1e-4, atol=1e-5, err_msg=name)


DEFAULT_TIER_LIFETIMES = ("ccim", "fast", "none", "rnd")
"""Each lifetime comparison compiles its own reference (about 15 s with a cold cache); the step
by step comparison above covers every program in the default tier, the rest run under -m slow."""


@pytest.mark.parametrize(
    "name", [n if n in DEFAULT_TIER_LIFETIMES else pytest.param(n, marks=pytest.mark.slow) for n in sorted(CURIOSITY)]
)
def test_evaluator_matches_reference_lifetime(name):
    program = CURIOSITY[name]
    reference = lifetime_metrics(compile_program(program))
    interpreted = _interpreted_lifetime()(encode(program, reference_layout()), jnp.stack([jax.random.PRNGKey(s) for s in SEEDS]))
    np.testing.assert_allclose(interpreted["intrinsic_reward"], reference["intrinsic_reward"], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(interpreted["coverage"], reference["coverage"])
    result = small_evaluator().evaluate(program, SEEDS)
    np.testing.assert_array_equal(result.scores, np.asarray(reference["coverage"][:, -1]))
    np.testing.assert_array_equal(result.curves, np.asarray(reference["coverage"]))


def test_same_seed_same_score():
    first = small_evaluator().evaluate(CURIOSITY["fast"], SEEDS)
    second = small_evaluator().evaluate(CURIOSITY["fast"], SEEDS)
    np.testing.assert_array_equal(first.scores, second.scores)
    assert first.error is None and not first.stopped_early


def test_cutoffs_stop_at_the_expected_checkpoint():
    evaluator = small_evaluator()
    assert evaluator.chunks == (1, 1, 1) and evaluator.checkpoint_steps == (12, 24, 36)
    never = evaluator.evaluate(CURIOSITY["rnd"], SEEDS, cutoffs=[-np.inf, float("nan")])
    assert not never.stopped_early and never.curves.shape == (2, 3)
    stopped = evaluator.evaluate(CURIOSITY["rnd"], SEEDS, cutoffs=[-np.inf, np.inf])
    assert stopped.stopped_early and stopped.curves.shape == (2, 2)
    assert stopped.env_steps == 24 * SMALL.num_envs * len(SEEDS)
    np.testing.assert_array_equal(stopped.curves, never.curves[:, :2])


def test_non_finite_rewards_are_reported():
    b = ProgramBuilder("curiosity", name="overflow")
    enc = b.state("enc", "ObsNet")
    x = b.forward("Encode", "obs", state=enc)
    r = b.forward("Dot", x, x)
    for _ in range(7):
        r = b.forward("Square", r)
    program = b.build(r)
    evaluator = Evaluator(Layout.for_programs([program]), ppo=SMALL, checkpoint_every=12)
    result = evaluator.evaluate(program, SEEDS)
    assert result.error == "non-finite intrinsic reward before env step 12"
    assert result.curves.shape[1] == 1 and not result.stopped_early


def test_layout_rejects_programs_that_do_not_fit():
    small = Layout.for_programs([CURIOSITY["fast"]])
    with pytest.raises(LayoutError, match="layout"):
        encode(CURIOSITY["ccim"], small)
    assert not small.fits(CURIOSITY["disagreement"])
    assert small.fits(CURIOSITY["fast"])


def test_chunk_sizes_cover_the_lifetime():
    from metacurio.agent.config import GRIDWORLD_PAPER

    chunks = chunk_sizes(GRIDWORLD_PAPER, 108)
    assert chunks == (9,) * 9 + (2,)
    assert sum(chunks) == GRIDWORLD_PAPER.num_updates == 83
