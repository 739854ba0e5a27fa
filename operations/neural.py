"""Neural operations: encoders, MLPs, ensembles, the predictor with its own loss, the policy."""

from __future__ import annotations

from operations import types as T
from operations.base import ALWAYS, NEVER, OpDef, Slot, exactly

CURIOSITY = frozenset({"curiosity"})
OBS_IN = Slot("obs", exactly(T.Obs))
FEAT_IN = Slot("x", exactly(T.Feature))


def _net_op(name, short, doc, inputs, output, state):
    """A trainable network applied to its inputs: output differentiable in the parameters."""
    return OpDef(
        name=name,
        short=short,
        doc=doc,
        family="neural",
        inputs=inputs,
        output=output,
        spaces=CURIOSITY,
        state=state,
        grad_from_params=True,
        collapse=ALWAYS,
    )


OPS = [
    _net_op("Encode", "enc", "trainable observation encoder 𝕊→𝔽 (CNN for images, MLP for vectors)", (OBS_IN,), T.Feature, "ObsNet"),
    OpDef(
        name="EncodeDetached",
        short="enc_sg",
        doc="observation encoder with its output detached: a fixed random net unless trained elsewhere",
        family="neural",
        inputs=(Slot("obs", exactly(T.Obs), passes_gradient=False),),
        output=T.Feature,
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
    _net_op("FeatEnsemble", "mlp5", "five independent MLPs 𝔽→𝔽, a list of five features", (FEAT_IN,), T.ListOf(T.Feature), "FeatEnsemble"),
    _net_op(
        "FeatActionEnsemble",
        "fwd5",
        "five independent forward models 𝔽×𝔸→𝔽, a list of five features",
        (FEAT_IN, Slot("a", exactly(T.Action))),
        T.ListOf(T.Feature),
        "FeatActionEnsemble",
    ),
    OpDef(
        name="Predict",
        short="predict",
        doc="MLP prediction of target from query, trained on ‖pred − sg(target)‖/√d (its own loss)",
        family="neural",
        inputs=(Slot("query", exactly(T.Feature)), Slot("target", exactly(T.Feature), passes_gradient=False)),
        output=T.Feature,
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
        spaces=CURIOSITY,
        state="AgentPolicy",
    ),
]
