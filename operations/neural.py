"""Neural operations: encoders, MLPs, ensembles, the predictor with its own loss, the policy."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metacurio.core import networks
from operations import types as T
from operations.base import ALWAYS, NEVER, ListValue, OpDef, Slot, exactly

CURIOSITY = frozenset({"curiosity"})
OBS_IN = Slot("obs", exactly(T.Obs))
FEAT_IN = Slot("x", exactly(T.Feature))


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


def _net_op(name, short, doc, inputs, output, state, apply=_mlp):
    """A trainable network applied to its inputs: output differentiable in the parameters."""
    return OpDef(
        name=name,
        short=short,
        doc=doc,
        family="neural",
        inputs=inputs,
        output=output,
        apply=apply,
        spaces=CURIOSITY,
        state=state,
        grad_from_params=True,
        collapse=ALWAYS,
    )


OPS = [
    _net_op("Encode", "enc", "trainable observation encoder 𝕊→𝔽 (CNN for images, MLP for vectors)", (OBS_IN,), T.Feature, "ObsNet", _encode),
    OpDef(
        name="EncodeDetached",
        short="enc_sg",
        doc="observation encoder with its output detached: a fixed random net unless trained elsewhere",
        family="neural",
        inputs=(Slot("obs", exactly(T.Obs), passes_gradient=False),),
        output=T.Feature,
        apply=_encode_detached,
        spaces=CURIOSITY,
        state="ObsNet",
        collapse=NEVER,
    ),
    _net_op(
        "EnsembleEncode",
        "enc5",
        "five independent observation encoders, a list of five features",
        (OBS_IN,),
        T.ListOf(T.Feature),
        "ObsEnsemble",
        _ensemble_encode,
    ),
    _net_op("FeatMLP", "mlp", "MLP 𝔽→𝔽", (FEAT_IN,), T.Feature, "FeatNet"),
    _net_op("PairMLP", "mlp2", "MLP on the concatenation 𝔽×𝔽→𝔽", (Slot("a", exactly(T.Feature)), Slot("b", exactly(T.Feature))), T.Feature, "PairNet"),
    _net_op(
        "PairToAction",
        "mlp2a",
        "MLP 𝔽×𝔽→𝔸 (an inverse-dynamics head)",
        (Slot("a", exactly(T.Feature)), Slot("b", exactly(T.Feature))),
        T.Action,
        "PairToActionNet",
    ),
    _net_op("FeatToAction", "mlpa", "MLP 𝔽→𝔸", (FEAT_IN,), T.Action, "FeatToActionNet"),
    _net_op("ActionToFeat", "amlp", "MLP 𝔸→𝔽 (an action embedding)", (Slot("a", exactly(T.Action)),), T.Feature, "ActionToFeatNet"),
    _net_op("FeatEnsemble", "mlp5", "five independent MLPs 𝔽→𝔽, a list of five features", (FEAT_IN,), T.ListOf(T.Feature), "FeatEnsemble", _ensemble_mlp),
    _net_op(
        "FeatActionEnsemble",
        "fwd5",
        "five independent forward models 𝔽×𝔸→𝔽, a list of five features",
        (FEAT_IN, Slot("a", exactly(T.Action))),
        T.ListOf(T.Feature),
        "FeatActionEnsemble",
        _ensemble_mlp,
    ),
    OpDef(
        name="Predict",
        short="predict",
        doc="MLP prediction of target from query, trained on ‖pred − sg(target)‖/√d (its own loss)",
        family="neural",
        inputs=(Slot("query", exactly(T.Feature)), Slot("target", exactly(T.Feature), passes_gradient=False)),
        output=T.Feature,
        apply=_predict,
        spaces=CURIOSITY,
        state="FeatNet",
        grad_from_params=True,
        collapse=ALWAYS,
        produces_loss=True,
        update_allowed=False,
    ),
    OpDef(
        name="Policy",
        short="pi",
        doc="the agent's action probabilities (discrete) or mean action (continuous), detached",
        family="neural",
        inputs=(Slot("obs", exactly(T.Obs), passes_gradient=False),),
        output=T.Action,
        apply=_policy,
        spaces=CURIOSITY,
        state="AgentPolicy",
    ),
]
