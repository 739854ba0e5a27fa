"""The JAX side of the DSL: every operation's kernel and every state type's init, by name.

Declarations (``operations.registry``) say what an operation is; this package says how it
runs. Each family module holds a ``KERNELS`` table for the operations its namesake declares;
they are merged once here, so a name is looked up in one place.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import jax

from metacurio.core.specs import EnvSpec
from operations import types as T
from operations.kernels import lists, memory, neural, scalars, state, vectors
from operations.kernels.base import Kernel
from operations.kernels.state import StateInit
from operations.registry import UnknownOpError


def _merged(tables: Iterable[Mapping[str, Kernel]]) -> dict[str, Kernel]:
    merged: dict[str, Kernel] = {}
    for table in tables:
        for name, kernel in table.items():
            if name in merged:
                raise ValueError(f"kernel {name} defined twice")
            merged[name] = kernel
    return merged


KERNELS: dict[str, Kernel] = _merged(family.KERNELS for family in (neural, memory, vectors, lists, scalars))
STATE_INITS: dict[str, StateInit] = state.STATE_INITS


def apply_fn(op_name: str) -> Kernel:
    """The kernel of an operation (see ``operations.kernels.base`` for its signature)."""
    try:
        return KERNELS[op_name]
    except KeyError:
        raise UnknownOpError(f"no kernel for operation {op_name!r}") from None


def init_state(state_type_name: str, key: jax.Array, env: EnvSpec, elem: T.ValueType | None) -> tuple[Any, Any]:
    """Initial ``(params, state)`` of a state type; ``elem`` is a buffer's element type, else None."""
    try:
        init = STATE_INITS[state_type_name]
    except KeyError:
        raise UnknownOpError(f"no init for state type {state_type_name!r}") from None
    return init(key, env, elem)
