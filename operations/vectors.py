"""Vector operations on 𝔽 and 𝔸. Norms and distances are divided by √d throughout."""

from __future__ import annotations

from operations import types as T
from operations.base import (
    ALL_INPUTS,
    ANY_INPUT,
    FIRST_INPUT,
    NEVER,
    VECTOR,
    OpDef,
    Slot,
    TypeRuleError,
    exactly,
)

CURIOSITY = frozenset({"curiosity"})


def _same_vector_type(result):
    def rule(types):
        if types[0] != types[1]:
            raise TypeRuleError(f"inputs must have the same vector type, got {types[0]} and {types[1]}")
        return result if result is not None else types[0]

    rule.__doc__ = str(result) if result is not None else "type of the inputs (both the same)"
    return rule


def _first_type(types):
    """type of x"""
    return types[0]


def _pair(name):
    return (Slot(name + "1", VECTOR), Slot(name + "2", VECTOR))


OPS = [
    OpDef(
        name="L2Norm",
        short="norm",
        doc="‖x‖/√d",
        family="vector",
        inputs=(Slot("x", VECTOR),),
        output=T.NonNeg,
        spaces=CURIOSITY,
        collapse=FIRST_INPUT,
    ),
    OpDef(
        name="L2Distance",
        short="dist",
        doc="‖x − y‖/√d",
        family="vector",
        inputs=_pair("x"),
        output=_same_vector_type(T.NonNeg),
        spaces=CURIOSITY,
        commutative=True,
        collapse=ALL_INPUTS,
    ),
    OpDef(
        name="Dot",
        short="dot",
        doc="Σ x·y",
        family="vector",
        inputs=_pair("x"),
        output=_same_vector_type(T.Real),
        spaces=CURIOSITY,
        commutative=True,
        collapse=ANY_INPUT,
    ),
    OpDef(
        name="AddVectors",
        short="vadd",
        doc="x + y",
        family="vector",
        inputs=_pair("x"),
        output=_same_vector_type(None),
        spaces=CURIOSITY,
        commutative=True,
        collapse=ALL_INPUTS,
    ),
    OpDef(
        name="Detach",
        short="sg",
        doc="stop-gradient of x",
        family="vector",
        inputs=(Slot("x", VECTOR, passes_gradient=False),),
        output=_first_type,
        spaces=CURIOSITY,
        collapse=NEVER,
    ),
    OpDef(
        name="ActionNLL",
        short="act_nll",
        doc="action-prediction loss: softmax NLL of the taken action (discrete), squared error (continuous)",
        family="vector",
        inputs=(Slot("prediction", VECTOR), Slot("action", exactly(T.Action), passes_gradient=False)),
        output=T.NonNeg,
        spaces=CURIOSITY,
        collapse=ALL_INPUTS,
    ),
]
