"""Operations on ℝ: arithmetic, noise, the combiners' weighted sum, and the loss sink."""

from __future__ import annotations

from operations import types as T
from operations.base import (
    ALL_INPUTS,
    ANY_INPUT,
    FIRST_INPUT,
    NEVER,
    SCALAR,
    OpDef,
    Slot,
)

BOTH = frozenset({"curiosity", "combiner"})
COMBINER = frozenset({"combiner"})


def _join(types):
    """ℝ (ℝ≥0 if all inputs are)"""
    return T.join_scalar(types)


def _any_nonneg(types):
    """ℝ (ℝ≥0 if any input is)"""
    return T.NonNeg if any(t.kind == T.NONNEG for t in types) else T.Real


def _first(types):
    """type of x"""
    return types[0]


def _binary(name, short, doc, output, commutative, collapse, spaces=BOTH):
    return OpDef(
        name=name,
        short=short,
        doc=doc,
        family="scalar",
        inputs=(Slot("a", SCALAR), Slot("b", SCALAR)),
        output=output,
        spaces=spaces,
        commutative=commutative,
        collapse=collapse,
    )


def _unary(name, short, doc, output, spaces=BOTH, enumerable=True):
    return OpDef(
        name=name,
        short=short,
        doc=doc,
        family="scalar",
        inputs=(Slot("x", SCALAR),),
        output=output,
        spaces=spaces,
        collapse=FIRST_INPUT,
        enumerable=enumerable,
    )


OPS = [
    _binary("Add", "+", "a + b", _join, True, ALL_INPUTS),
    _binary("Subtract", "-", "a − b", T.Real, False, ALL_INPUTS),
    _binary("Multiply", "*", "a · b", _join, True, ANY_INPUT),
    _binary("Max", "max", "element-wise max(a, b)", _any_nonneg, True, ALL_INPUTS),
    _binary("Min", "min", "element-wise min(a, b)", _join, True, ALL_INPUTS),
    _unary("MinusOneTenth", "-0.1", "x − 0.1", T.Real),
    _unary("SqrtAbs", "sqrt|.|", "√|x|", T.NonNeg),
    _unary("Square", "sq", "x²", T.NonNeg),
    _unary("Identity", "id", "x (for hand-written programs whose reward is an input)", _first, enumerable=False),
    OpDef(
        name="Clip",
        short="clip",
        doc="clamp x to [−|bound|, |bound|]",
        family="scalar",
        inputs=(Slot("x", SCALAR), Slot("bound", SCALAR)),
        output=T.Real,
        spaces=COMBINER,
        collapse=FIRST_INPUT,
    ),
    OpDef(
        name="Noise",
        short="noise",
        doc="a fresh N(0, 1) sample per transition",
        family="scalar",
        inputs=(),
        output=T.Real,
        spaces=BOTH,
        state="NoiseSource",
        collapse=NEVER,
    ),
    OpDef(
        name="WeightedSum",
        short="wsum",
        doc="(|w_a|·a + |w_b|·b) / (|w_a| + |w_b|), 0 when both weights are 0",
        family="scalar",
        inputs=(Slot("w_a", SCALAR), Slot("a", SCALAR), Slot("w_b", SCALAR), Slot("b", SCALAR)),
        output=T.Real,
        spaces=COMBINER,
        collapse=NEVER,
    ),
    OpDef(
        name="AddToLoss",
        short="loss",
        doc="add the batch mean of x to the program's loss (x must carry a gradient and be ≥ 0)",
        family="loss",
        inputs=(Slot("x", SCALAR),),
        output=T.Void,
        spaces=frozenset({"curiosity"}),
        produces_loss=True,
    ),
]
