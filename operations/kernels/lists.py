"""Kernels of the list operations over ensemble outputs and buffer contents. Only valid items count."""

from __future__ import annotations

import jax.numpy as jnp

from operations.kernels.base import Kernel, no_state
from operations.kernels.values import ListValue
from operations.kernels.vectors import norm


def _weights(lst: ListValue):
    return lst.mask.astype(lst.items.dtype)[None, :]


def _count(lst: ListValue):
    return jnp.maximum(jnp.sum(lst.mask), 1)


def _variance(lst: ListValue):
    centred = lst.items - lst.masked_mean()[:, None]
    per_item = jnp.sum(centred**2, axis=-1) / lst.items.shape[-1]
    return jnp.sum(per_item * _weights(lst), axis=1) / _count(lst)


def _average_distance(lst: ListValue, v):
    distances = norm(lst.items - v[:, None])
    return jnp.sum(distances * _weights(lst), axis=1) / _count(lst)


def _slope(lst: ListValue):
    """Least-squares slope of the valid items against their position, 0 with fewer than two."""
    w = _weights(lst)
    n = jnp.sum(w, axis=1)
    position = jnp.arange(lst.items.shape[1], dtype=lst.items.dtype)[None]
    mean_pos = jnp.sum(position * w, axis=1) / jnp.maximum(n, 1)
    mean_val = jnp.sum(lst.items * w, axis=1) / jnp.maximum(n, 1)
    dp = (position - mean_pos[:, None]) * w
    cov = jnp.sum(dp * (lst.items - mean_val[:, None]), axis=1)
    var = jnp.sum(dp**2, axis=1)
    return jnp.where(n >= 2, cov / jnp.where(var > 0, var, 1.0), 0.0)


KERNELS: dict[str, Kernel] = {
    "ListMean": no_state(lambda lst: lst.masked_mean()),
    "ListVariance": no_state(_variance),
    "ListNorms": no_state(lambda lst: ListValue(items=norm(lst.items), mask=lst.mask)),
    "ListAverageDistance": no_state(_average_distance),
    "ListMinusVector": no_state(lambda lst, v: ListValue(items=lst.items - v[:, None], mask=lst.mask)),
    "MeanOfReals": no_state(lambda lst: lst.masked_mean()),
    "Slope": no_state(_slope),
}
