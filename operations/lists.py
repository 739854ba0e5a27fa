"""List operations over ensemble outputs and buffer contents. Only valid items count."""

from __future__ import annotations

import jax.numpy as jnp

from operations import types as T
from operations.base import (
    ALL_INPUTS,
    FIRST_INPUT,
    LIST_OF_SCALARS,
    LIST_OF_VECTORS,
    VECTOR,
    ListValue,
    OpDef,
    Slot,
    TypeRuleError,
    no_state,
)
from operations.vectors import norm

CURIOSITY = frozenset({"curiosity"})
BOTH = frozenset({"curiosity", "combiner"})


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


def _list_elem_matches_vector(result):
    def rule(types):
        if types[0].elem != types[1]:
            raise TypeRuleError(f"list items {types[0].elem} and vector {types[1]} differ")
        return result if result is not None else types[0]

    rule.__doc__ = str(result) if result is not None else "type of the list (items match the vector)"
    return rule


def _elem(types):
    """item type"""
    return types[0].elem


def _norms(types):
    """[ℝ≥0]"""
    return T.ListOf(T.NonNeg)


def _scalar_elem(types):
    """ℝ (ℝ≥0 for [ℝ≥0])"""
    return T.join_scalar([types[0].elem])


OPS = [
    OpDef(
        name="ListMean",
        short="mean",
        doc="mean of the list's items",
        family="list",
        inputs=(Slot("xs", LIST_OF_VECTORS),),
        output=_elem,
        apply=no_state(lambda lst: lst.masked_mean()),
        spaces=CURIOSITY,
        collapse=FIRST_INPUT,
    ),
    OpDef(
        name="ListVariance",
        short="var",
        doc="variance of the items around their mean, averaged over dimensions",
        family="list",
        inputs=(Slot("xs", LIST_OF_VECTORS),),
        output=T.NonNeg,
        apply=no_state(_variance),
        spaces=CURIOSITY,
        collapse=FIRST_INPUT,
    ),
    OpDef(
        name="ListNorms",
        short="norms",
        doc="[‖x_i‖/√d]",
        family="list",
        inputs=(Slot("xs", LIST_OF_VECTORS),),
        output=_norms,
        apply=no_state(lambda lst: ListValue(items=norm(lst.items), mask=lst.mask)),
        spaces=CURIOSITY,
        collapse=FIRST_INPUT,
    ),
    OpDef(
        name="ListAverageDistance",
        short="avg_dist",
        doc="mean over items of ‖x_i − v‖/√d",
        family="list",
        inputs=(Slot("xs", LIST_OF_VECTORS), Slot("v", VECTOR)),
        output=_list_elem_matches_vector(T.NonNeg),
        apply=no_state(_average_distance),
        spaces=CURIOSITY,
        collapse=ALL_INPUTS,
    ),
    OpDef(
        name="ListMinusVector",
        short="minus",
        doc="[x_i − v]",
        family="list",
        inputs=(Slot("xs", LIST_OF_VECTORS), Slot("v", VECTOR)),
        output=_list_elem_matches_vector(None),
        apply=no_state(lambda lst, v: ListValue(items=lst.items - v[:, None], mask=lst.mask)),
        spaces=CURIOSITY,
        collapse=ALL_INPUTS,
    ),
    OpDef(
        name="MeanOfReals",
        short="mean",
        doc="mean of a list of reals",
        family="list",
        inputs=(Slot("xs", LIST_OF_SCALARS),),
        output=_scalar_elem,
        apply=no_state(lambda lst: lst.masked_mean()),
        spaces=BOTH,
        collapse=FIRST_INPUT,
    ),
    OpDef(
        name="Slope",
        short="slope",
        doc="least-squares slope of a list of reals against position (a trend)",
        family="list",
        inputs=(Slot("xs", LIST_OF_SCALARS),),
        output=T.Real,
        apply=no_state(_slope),
        spaces=BOTH,
        collapse=FIRST_INPUT,
    ),
]
