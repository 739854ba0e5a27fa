"""What a kernel is, and how a pure function of the inputs becomes one.

A kernel is ``apply(inputs, state, params, env) -> (output, new_state, loss_terms)``:
``inputs`` is a tuple of runtime values (batch axis first), ``state`` and ``params`` belong to
the state slot the node uses (None without one), ``env`` is the static EnvSpec, and
``loss_terms`` is a tuple of per-row losses whose batch means the program's optimizer
minimises. Everything has a fixed shape.
"""

from __future__ import annotations

from typing import Any, Callable

from metacurio.core.specs import EnvSpec

Kernel = Callable[[tuple, Any, Any, EnvSpec], tuple[Any, Any, tuple]]


def no_state(fn: Callable) -> Kernel:
    """Lift a pure function of the inputs to a kernel without state or losses."""

    def apply(inputs, state, params, env: EnvSpec):
        return fn(*inputs), state, ()

    return apply
