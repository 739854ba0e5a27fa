"""The operation registry: every operation of the DSL, by name, in a stable order."""

from __future__ import annotations

from operations import lists, memory, neural, scalars, vectors
from operations.base import OpDef
from operations.state_types import STATE_TYPES, StateType

SPACES = ("curiosity", "combiner")


class UnknownOpError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def _build() -> dict[str, OpDef]:
    ops: dict[str, OpDef] = {}
    for family in (neural, memory, vectors, lists, scalars):
        for op in family.OPS:
            if op.name in ops:
                raise ValueError(f"operation {op.name} declared twice")
            if op.state is not None and op.state not in STATE_TYPES:
                raise ValueError(f"operation {op.name} uses unknown state type {op.state}")
            if not op.spaces <= set(SPACES):
                raise ValueError(f"operation {op.name} names an unknown space")
            ops[op.name] = op
    return ops


REGISTRY: dict[str, OpDef] = _build()


def get_op(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownOpError(f"unknown operation {name!r}") from None


def get_state_type(name: str) -> StateType:
    try:
        return STATE_TYPES[name]
    except KeyError:
        raise UnknownOpError(f"unknown state type {name!r}") from None


def ops_for_space(space: str, enumerable_only: bool = False) -> list[OpDef]:
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; expected one of {', '.join(SPACES)}")
    return [op for op in REGISTRY.values() if space in op.spaces and (op.enumerable or not enumerable_only)]
