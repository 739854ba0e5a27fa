"""Runtime values beyond plain arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ListValue:
    """A list value: ``items`` is (batch, length, ...) and ``mask`` marks the valid items."""

    items: jax.Array
    mask: jax.Array

    def masked_mean(self) -> jax.Array:
        weights = self.mask.astype(self.items.dtype)
        weights = weights.reshape((1, -1) + (1,) * (self.items.ndim - 2))
        return jnp.sum(self.items * weights, axis=1) / jnp.maximum(jnp.sum(self.mask), 1)
