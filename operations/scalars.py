"""Operations on ℝ: arithmetic, noise, the combiners' weighted sum, and the loss sink."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from operations import types as T
from operations.base import (
    ALL_INPUTS,
    ANY_INPUT,
    FIRST_INPUT,
    NEVER,
    SCALAR,
    OpDef,
    Slot,
    no_state,
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


def _binary(name, short, doc, fn, output, commutative, collapse, spaces=BOTH):
    return OpDef(
        name=name,
        short=short,
        doc=doc,
        family="scalar",
        inputs=(Slot("a", SCALAR), Slot("b", SCALAR)),
        output=output,
        apply=no_state(fn),
        spaces=spaces,
        commutative=commutative,
        collapse=collapse,
    )


def _unary(name, short, doc, fn, output, spaces=BOTH, enumerable=True):
    return OpDef(
        name=name,
        short=short,
        doc=doc,
        family="scalar",
        inputs=(Slot("x", SCALAR),),
        output=output,
        apply=no_state(fn),
        spaces=spaces,
        collapse=FIRST_INPUT,
        enumerable=enumerable,
    )


OPS = [
    _binary("Add", "+", "a + b", jnp.add, _join, True, ALL_INPUTS),
    _binary("Subtract", "-", "a − b", jnp.subtract, T.Real, False, ALL_INPUTS),
    _binary("Multiply", "*", "a · b", jnp.multiply, _join, True, ANY_INPUT),
    _binary("Max", "max", "element-wise max(a, b)", jnp.maximum, _any_nonneg, True, ALL_INPUTS),
    _binary("Min", "min", "element-wise min(a, b)", jnp.minimum, _join, True, ALL_INPUTS),
    _unary("MinusOneTenth", "-0.1", "x − 0.1", lambda x: x - 0.1, T.Real),
    _unary("SqrtAbs", "sqrt|.|", "√|x|", _sqrt_abs, T.NonNeg),
    _unary("Square", "sq", "x²", jnp.square, T.NonNeg),
    _unary("Identity", "id", "x (for hand-written programs whose reward is an input)", lambda x: x, _first, enumerable=False),
    OpDef(
        name="Clip",
        short="clip",
        doc="clamp x to [−|bound|, |bound|]",
        family="scalar",
        inputs=(Slot("x", SCALAR), Slot("bound", SCALAR)),
        output=T.Real,
        apply=no_state(lambda x, bound: jnp.clip(x, -jnp.abs(bound), jnp.abs(bound))),
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
        apply=_noise,
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
        apply=no_state(_weighted_sum),
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
        apply=_add_to_loss,
        spaces=frozenset({"curiosity"}),
        produces_loss=True,
    ),
]
