"""Kernels of the vector operations on 𝔽 and 𝔸. Norms and distances are divided by √d throughout."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from operations.kernels.base import Kernel, no_state

_EPS = 1e-12


def norm(x):
    """‖x‖/√d, with a gradient that stays finite at 0."""
    return jnp.sqrt(jnp.sum(x**2, axis=-1) + _EPS) / jnp.sqrt(x.shape[-1])


def _action_nll(inputs, state, params, env):
    prediction, target = inputs
    target = jax.lax.stop_gradient(target)
    width = max(prediction.shape[-1], target.shape[-1])
    prediction = jnp.pad(prediction, ((0, 0), (0, width - prediction.shape[-1])))
    if env.discrete:
        label = jnp.argmax(target, axis=-1)
        log_probs = jax.nn.log_softmax(prediction)
        loss = -jnp.take_along_axis(log_probs, label[:, None], axis=-1)[:, 0]
    else:
        loss = jnp.mean((prediction[:, : target.shape[-1]] - target) ** 2, axis=-1)
    return loss, state, ()


KERNELS: dict[str, Kernel] = {
    "L2Norm": no_state(norm),
    "L2Distance": no_state(lambda x, y: norm(x - y)),
    "Dot": no_state(lambda x, y: jnp.sum(x * y, axis=-1)),
    "AddVectors": no_state(lambda x, y: x + y),
    "Detach": no_state(jax.lax.stop_gradient),
    "ActionNLL": _action_nll,
}
