"""Memory operations: nearest-neighbour memory, FIFO buffer, running normalisation.

Their state is detached data: nothing they store carries a gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from operations import types as T
from operations.base import (
    BUFFERABLE,
    FIRST_INPUT,
    NEVER,
    SCALAR,
    ListValue,
    OpDef,
    Slot,
    exactly,
)
from operations.state_types import KNN_NEIGHBOURS, Fifo, Ring, RunningStats

sg = jax.lax.stop_gradient
BOTH = frozenset({"curiosity", "combiner"})


def _nearest_neighbour(inputs, memory: Ring, params, env):
    stream, query = sg(inputs[0]), sg(inputs[1])
    capacity = memory.items.shape[0]
    sq_dist = jnp.sum((query[:, None, :] - memory.items[None]) ** 2, axis=-1)
    valid = jnp.arange(capacity) < memory.filled
    neg_dist, idx = jax.lax.top_k(jnp.where(valid, -sq_dist, -jnp.inf), KNN_NEIGHBOURS)
    chosen = jnp.isfinite(neg_dist)[..., None]
    neighbours = memory.items[idx] * chosen
    mean = jnp.sum(neighbours, axis=1) / jnp.maximum(jnp.sum(chosen, axis=1), 1)
    rows = stream.shape[0]
    write_at = (memory.cursor + jnp.arange(rows)) % capacity
    new_memory = Ring(
        items=memory.items.at[write_at].set(stream),
        filled=jnp.minimum(memory.filled + rows, capacity),
        cursor=(memory.cursor + rows) % capacity,
    )
    return mean, new_memory, ()


def _buffer(inputs, fifo: Fifo, params, env):
    items = jnp.concatenate([fifo.items[1:], sg(inputs[0])[None]], axis=0)
    capacity = items.shape[0]
    filled = jnp.minimum(fifo.filled + 1, capacity)
    oldest_first = ListValue(items=jnp.swapaxes(items, 0, 1), mask=jnp.arange(capacity) >= capacity - filled)
    return oldest_first, Fifo(items=items, filled=filled), ()


def _updated_stats(stats: RunningStats, x) -> RunningStats:
    """Chan's parallel update of Welford statistics with a batch of scalars."""
    x = sg(x)
    n_b = jnp.asarray(x.shape[0], jnp.float32)
    mean_b = jnp.mean(x)
    m2_b = jnp.sum((x - mean_b) ** 2)
    n = stats.count + n_b
    delta = mean_b - stats.mean
    return RunningStats(
        count=n,
        mean=stats.mean + delta * n_b / n,
        m2=stats.m2 + m2_b + delta**2 * stats.count * n_b / n,
    )


def _sample_std(stats: RunningStats):
    return jnp.sqrt(jnp.where(stats.count > 1, stats.m2 / jnp.maximum(stats.count - 1, 1), 0.0))


def _running_norm(center: bool):
    def apply(inputs, stats: RunningStats, params, env):
        x = inputs[0]
        stats = _updated_stats(stats, x)
        std = _sample_std(stats)
        shifted = x - stats.mean if center else x
        safe_std = jnp.where(std > 0, std, 1.0)
        return jnp.where(std > 0, shifted / safe_std, 0.0), stats, ()

    return apply


def _buffer_output(types):
    """[type of x]"""
    elem = types[0]
    return T.ListOf(elem)


def _same_scalar(types):
    """type of x"""
    return types[0]


OPS = [
    OpDef(
        name="NearestNeighbour",
        short="knn",
        doc="mean of the stored stream rows nearest to each query (memory before this call), then store stream",
        family="memory",
        inputs=(
            Slot("stream", exactly(T.Feature), passes_gradient=False),
            Slot("query", exactly(T.Feature), passes_gradient=False),
        ),
        output=T.Feature,
        apply=_nearest_neighbour,
        spaces=frozenset({"curiosity"}),
        state="KnnMemory",
        collapse=NEVER,
        update_allowed=False,
    ),
    OpDef(
        name="Buffer",
        short="buf",
        doc="append this call's values to a FIFO and return its contents, oldest first",
        family="memory",
        inputs=(Slot("x", BUFFERABLE, passes_gradient=False),),
        output=_buffer_output,
        apply=_buffer,
        spaces=BOTH,
        state="Buffer",
        collapse=NEVER,
    ),
    OpDef(
        name="RunningNorm",
        short="norm",
        doc="(x − running mean) / running std over all values seen, this call's included; 0 while std is 0",
        family="memory",
        inputs=(Slot("x", SCALAR),),
        output=T.Real,
        apply=_running_norm(center=True),
        spaces=BOTH,
        state="RunningStats",
        collapse=FIRST_INPUT,
    ),
    OpDef(
        name="RunningScale",
        short="scale",
        doc="x / running std (not centred), over all values seen; 0 while std is 0",
        family="memory",
        inputs=(Slot("x", SCALAR),),
        output=_same_scalar,
        apply=_running_norm(center=False),
        spaces=BOTH,
        state="RunningStats",
        collapse=FIRST_INPUT,
    ),
]
