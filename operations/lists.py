"""List operations over ensemble outputs and buffer contents. Only valid items count."""

from __future__ import annotations

from operations import types as T
from operations.base import (
    ALL_INPUTS,
    FIRST_INPUT,
    LIST_OF_SCALARS,
    LIST_OF_VECTORS,
    VECTOR,
    OpDef,
    Slot,
    TypeRuleError,
)

CURIOSITY = frozenset({"curiosity"})
BOTH = frozenset({"curiosity", "combiner"})


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
        spaces=BOTH,
        collapse=FIRST_INPUT,
    ),
]
