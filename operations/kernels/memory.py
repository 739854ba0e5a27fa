"""Kernels of the memory operations. Nothing they store carries a gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from operations.kernels.base import Kernel
from operations.kernels.state import Fifo, Ring, RunningStats
from operations.kernels.values import ListValue
from operations.state_types import KNN_NEIGHBOURS

sg = jax.lax.stop_gradient


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


def _running_norm(center: bool) -> Kernel:
    def apply(inputs, stats: RunningStats, params, env):
        x = inputs[0]
        stats = _updated_stats(stats, x)
        std = _sample_std(stats)
        shifted = x - stats.mean if center else x
        safe_std = jnp.where(std > 0, std, 1.0)
        return jnp.where(std > 0, shifted / safe_std, 0.0), stats, ()

    return apply


KERNELS: dict[str, Kernel] = {
    "NearestNeighbour": _nearest_neighbour,
    "Buffer": _buffer,
    "RunningNorm": _running_norm(center=True),
    "RunningScale": _running_norm(center=False),
}
