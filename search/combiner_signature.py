"""Behavioural duplicate removal for reward combiners (design §4.4), the counterpart of ``search.signature``.

Every candidate combines the same seeded stream of (intrinsic, extrinsic, τ) inputs over
``STREAM_ENVS`` environments, shaped like a Lunar Lander lifetime: intrinsic rewards are
non-negative with a heavy tail (a curiosity bonus), extrinsic ones are small shaped rewards
with a rare ±100 when an episode ends (a landing or a crash), and τ rises from 0 to 1. Each
combined stream is scaled the way PPO scales rewards (``search.signature.normalise``:
running std of the discounted return, clip ±10), so combiners that differ by a positive
factor look alike; streams that agree within rtol/atol are one class, kept as its smallest
member. A combiner whose output is ever non-finite is dropped with its error.

All candidates share one layout and one compile: the interpreter runs them as data, a chunk of
programs vmapped together (a combiner's instructions are a few scalar operations, so computing
every branch of the dispatch, as ``vmap`` does, costs less than running programs in turn).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metacurio.core.interpreter import Interpreter
from metacurio.core.layout import Layout, encode, stack_encodings
from metacurio.core.program import COMBINER, Program
from metacurio.core.specs import CombinerBatch, EnvSpec
from metacurio.errors import failure
from search.signature import Dedup, check_arguments, dedup_from_signatures, normalise

STREAM_ENVS = 8
"""Parallel environments of the input stream (rows of every combiner call)."""
STREAM_ENV = EnvSpec(obs_shape=(8,), action_dim=4, discrete=True, batch_size=STREAM_ENVS)
"""What a combiner's state initialisers see; only the batch size matters to combiners."""
EPISODE_STEPS = 100
"""Mean episode length of the stream, so that even short signatures see episode ends."""
CHUNK = 256
"""Combiners per compiled call."""


def combiner_stream(steps: int, seed: int) -> tuple[CombinerBatch, np.ndarray]:
    """(steps, STREAM_ENVS) inputs and episode ends, drawn from ``seed``; see the module doc."""
    rng = np.random.default_rng(seed)
    shape = (steps, STREAM_ENVS)
    intrinsic = rng.lognormal(mean=-2.0, sigma=1.5, size=shape)
    done = rng.random(shape) < 1.0 / EPISODE_STEPS
    extrinsic = rng.normal(-0.3, 1.5, size=shape) + done * rng.choice([-100.0, 100.0], size=shape)
    tau = np.broadcast_to(np.linspace(0.0, 1.0, steps)[:, None], shape)
    batch = CombinerBatch(intrinsic.astype(np.float32), extrinsic.astype(np.float32), tau.astype(np.float32))
    return batch, done


@functools.lru_cache(maxsize=8)
def _signature_fn(layout: Layout):
    """(initial state, stream, done, stacked encodings) -> (scaled rewards, ok) per program, vmapped."""
    interpreter = Interpreter(layout)

    def one(state, stream: CombinerBatch, done, encoding):
        def body(state, batch):
            reward, state, _ = interpreter.step(state, batch, encoding)
            return state, reward

        _, rewards = jax.lax.scan(body, state, stream)
        scaled = normalise(rewards, done)
        return scaled, jnp.all(jnp.isfinite(rewards)) & jnp.all(jnp.isfinite(scaled))

    return jax.jit(jax.vmap(one, in_axes=(None, None, None, 0)))


def combiner_signatures(
    programs: Sequence[Program], steps: int, seed: int = 0, chunk: int = CHUNK
) -> tuple[np.ndarray, list[str | None]]:
    """(programs, steps·STREAM_ENVS) normalised combined streams (NaN rows for failures) and each
    program's error (None when its signature is complete)."""
    programs = list(programs)
    check_arguments(programs, steps, chunk, COMBINER, "combiner signatures run combiners")
    rows = np.full((len(programs), steps * STREAM_ENVS), np.nan)
    errors: list[str | None] = [None] * len(programs)
    if not programs:
        return rows, errors
    layout = Layout.for_programs(programs, COMBINER)
    encodings, positions = [], []
    for i, program in enumerate(programs):
        try:
            encodings.append(encode(program, layout))
            positions.append(i)
        except Exception as err:  # noqa: BLE001 - whatever a program raises is its recorded failure
            errors[i] = failure(err)
    stream, done = combiner_stream(steps, seed)
    interpreter = Interpreter(layout)
    state = jax.jit(interpreter.init, static_argnums=1)(jax.random.PRNGKey(seed), STREAM_ENV)
    run = _signature_fn(layout)
    for start in range(0, len(positions), chunk):
        members = positions[start : start + chunk]
        # Pad the last chunk with its last program, so that every call has one shape (one compile).
        padded = encodings[start : start + chunk] + [encodings[start + len(members) - 1]] * (chunk - len(members))
        scaled, ok = jax.device_get(run(state, stream, done, stack_encodings(padded)))
        for j, i in enumerate(members):
            if ok[j]:
                rows[i] = scaled[j].reshape(-1)
            else:
                errors[i] = "non-finite combined or normalised reward"
    return rows, errors


def deduplicate_combiners(
    programs: Sequence[Program], steps: int, seed: int = 0, rtol: float = 1e-3, atol: float = 1e-5, chunk: int = CHUNK
) -> Dedup:
    """Drop failing combiners and keep the smallest (fewest ops, then earliest) of each class."""
    if rtol < 0 or atol < 0:
        raise ValueError(f"tolerances must be non-negative, got rtol={rtol}, atol={atol}")
    programs = list(programs)
    rows, errors = combiner_signatures(programs, steps, seed, chunk)
    return dedup_from_signatures(programs, rows, errors, rtol, atol)
