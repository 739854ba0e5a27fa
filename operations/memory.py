"""Memory operations: nearest-neighbour memory, FIFO buffer, running normalisation.

Their state is detached data: nothing they store carries a gradient.
"""

from __future__ import annotations

from operations import types as T
from operations.base import BUFFERABLE, FIRST_INPUT, NEVER, SCALAR, OpDef, Slot, exactly

BOTH = frozenset({"curiosity", "combiner"})


def _buffer_output(types):
    """[type of x]"""
    elem = types[0]
    return T.ListOf(elem)


def _same_scalar(types):
    """type of x"""
    return types[0]


OPS = [
    OpDef(
        name="NearestNeighbour",
        short="knn",
        doc="mean of the stored stream rows nearest to each query (memory before this call), then store stream",
        family="memory",
        inputs=(
            Slot("stream", exactly(T.Feature), passes_gradient=False),
            Slot("query", exactly(T.Feature), passes_gradient=False),
        ),
        output=T.Feature,
        spaces=frozenset({"curiosity"}),
        state="KnnMemory",
        collapse=NEVER,
        update_allowed=False,
    ),
    OpDef(
        name="Buffer",
        short="buf",
        doc="append this call's values to a FIFO and return its contents, oldest first",
        family="memory",
        inputs=(Slot("x", BUFFERABLE, passes_gradient=False),),
        output=_buffer_output,
        spaces=BOTH,
        state="Buffer",
        collapse=NEVER,
    ),
    OpDef(
        name="RunningNorm",
        short="norm",
        doc="(x − running mean) / running std over all values seen, this call's included; 0 while std is 0",
        family="memory",
        inputs=(Slot("x", SCALAR),),
        output=T.Real,
        spaces=BOTH,
        state="RunningStats",
        collapse=FIRST_INPUT,
    ),
    OpDef(
        name="RunningScale",
        short="scale",
        doc="x / running std (not centred), over all values seen; 0 while std is 0",
        family="memory",
        inputs=(Slot("x", SCALAR),),
        output=_same_scalar,
        spaces=BOTH,
        state="RunningStats",
        collapse=FIRST_INPUT,
    ),
]
