"""Kernels of the operations on ℝ: arithmetic, noise, the combiners' weighted sum, the loss sink."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from operations.kernels.base import Kernel, no_state


def _sqrt_abs(x):
    # The epsilon keeps d/dx finite at 0; |x|'s zero subgradient there then gives 0.
    return jnp.sqrt(jnp.abs(x) + 1e-12)


def _weighted_sum(w_a, a, w_b, b):
    wa, wb = jnp.abs(w_a), jnp.abs(w_b)
    total = wa + wb
    return jnp.where(total > 0, (wa * a + wb * b) / jnp.where(total > 0, total, 1.0), 0.0)


def _noise(inputs, key, params, env):
    key, draw = jax.random.split(key)
    return jax.random.normal(draw, (env.batch_size,)), key, ()


def _add_to_loss(inputs, state, params, env):
    return None, state, (inputs[0],)


KERNELS: dict[str, Kernel] = {
    "Add": no_state(jnp.add),
    "Subtract": no_state(jnp.subtract),
    "Multiply": no_state(jnp.multiply),
    "Max": no_state(jnp.maximum),
    "Min": no_state(jnp.minimum),
    "MinusOneTenth": no_state(lambda x: x - 0.1),
    "SqrtAbs": no_state(_sqrt_abs),
    "Square": no_state(jnp.square),
    "Identity": no_state(lambda x: x),
    "Clip": no_state(lambda x, bound: jnp.clip(x, -jnp.abs(bound), jnp.abs(bound))),
    "Noise": _noise,
    "WeightedSum": no_state(_weighted_sum),
    "AddToLoss": _add_to_loss,
}
