"""Kernels of the neural operations: encoders, MLPs, ensembles, the predictor, the policy."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metacurio.core import networks
from operations.kernels.base import Kernel
from operations.kernels.values import ListValue


def _encode(inputs, state, params, env):
    return networks.apply_obs_encoder(params, inputs[0]), state, ()


def _encode_detached(inputs, state, params, env):
    return jax.lax.stop_gradient(networks.apply_obs_encoder(params, inputs[0])), state, ()


def _mlp(inputs, state, params, env):
    return networks.apply_mlp(params, jnp.concatenate(inputs, axis=-1)), state, ()


def _ensemble_encode(inputs, state, params, env):
    return _as_list(networks.apply_ensemble(networks.apply_obs_encoder, params, inputs[0])), state, ()


def _ensemble_mlp(inputs, state, params, env):
    x = jnp.concatenate(inputs, axis=-1)
    return _as_list(networks.apply_ensemble(networks.apply_mlp, params, x)), state, ()


def _as_list(items):
    return ListValue(items=items, mask=jnp.ones(items.shape[1], bool))


def _predict(inputs, state, params, env):
    query, target = inputs
    prediction = networks.apply_mlp(params, query)
    error = prediction - jax.lax.stop_gradient(target)
    loss = jnp.sqrt(jnp.sum(error**2, axis=-1) + 1e-12) / jnp.sqrt(error.shape[-1])
    return prediction, state, (loss,)


def _policy(inputs, state, params, env):
    out, _value = networks.apply_actor_critic(params, inputs[0])
    probs = jax.nn.softmax(out) if env.discrete else out[0]
    return jax.lax.stop_gradient(probs), state, ()


KERNELS: dict[str, Kernel] = {
    "Encode": _encode,
    "EncodeDetached": _encode_detached,
    "EnsembleEncode": _ensemble_encode,
    "FeatMLP": _mlp,
    "PairMLP": _mlp,
    "PairToAction": _mlp,
    "FeatToAction": _mlp,
    "ActionToFeat": _mlp,
    "FeatEnsemble": _ensemble_mlp,
    "FeatActionEnsemble": _ensemble_mlp,
    "Predict": _predict,
    "Policy": _policy,
}
