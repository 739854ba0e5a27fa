"""How an operation is declared: input slots, output rule and flags.

Declarations are pure Python, so that type checking, enumeration and gradient facts run
without JAX; each operation's implementation is its kernel in ``operations.kernels``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from operations import types as T
from operations.state_types import STATE_TYPES
from operations.types import GradFacts, ValueType


class TypeRuleError(ValueError):
    """The input types do not fit an operation; the message says why."""


@dataclasses.dataclass(frozen=True)
class Pattern:
    """Which value types an input slot accepts."""

    name: str
    accepts: Callable[[ValueType], bool]

    def __str__(self) -> str:
        return self.name


def exactly(t: ValueType) -> Pattern:
    return Pattern(str(t), lambda v: T.is_subtype(v, t))


VECTOR = Pattern("𝔽|𝔸", lambda v: v.is_vector)
SCALAR = exactly(T.Real)
BUFFERABLE = Pattern("𝔽|𝔸|ℝ", lambda v: v.is_vector or v.is_scalar)
LIST_OF_VECTORS = Pattern("[𝔽|𝔸]", lambda v: v.is_list and v.elem.is_vector)
LIST_OF_SCALARS = exactly(T.ListOf(T.Real))

ALWAYS = "always"
NEVER = "never"
ALL_INPUTS = "all"
ANY_INPUT = "any"
FIRST_INPUT = "first"


@dataclasses.dataclass(frozen=True)
class Slot:
    name: str
    pattern: Pattern
    passes_gradient: bool = True
    """Whether d(output)/d(this input) can be non-zero."""


@dataclasses.dataclass(frozen=True)
class OpDef:
    name: str
    short: str
    doc: str
    family: str
    inputs: tuple[Slot, ...]
    output: ValueType | Callable[[tuple[ValueType, ...]], ValueType]
    spaces: frozenset[str]
    state: str | None = None
    """Name of the state type the node must be given (see state_types.STATE_TYPES)."""
    commutative: bool = False
    grad_from_params: bool = False
    """Whether the output is differentiable in the state slot's trainable parameters."""
    collapse: str = NEVER
    """When the output is trivially minimisable: always, never, or as all/any/first input."""
    produces_loss: bool = False
    update_allowed: bool = True
    """May appear in the update part (ops that write memories or own losses may not)."""
    enumerable: bool = True
    """Offered to the enumerator (False for helpers used only by hand-written programs)."""

    @property
    def arity(self) -> int:
        return len(self.inputs)

    def signature(self) -> str:
        ins = " × ".join(str(s.pattern) for s in self.inputs) or "()"
        state = f" [{self.state}]" if self.state else ""
        out = self.output if isinstance(self.output, ValueType) else (self.output.__doc__ or "see doc").strip()
        return f"{ins}{state} → {out}"

    def output_type(self, input_types: tuple[ValueType, ...]) -> ValueType:
        """The output type for these input types; raises TypeRuleError naming the problem."""
        if len(input_types) != self.arity:
            raise TypeRuleError(f"{self.name} takes {self.arity} inputs, got {len(input_types)}")
        for slot, t in zip(self.inputs, input_types):
            if not slot.pattern.accepts(t):
                raise TypeRuleError(f"{self.name} input {slot.name!r} expects {slot.pattern}, got {t}")
        if isinstance(self.output, ValueType):
            return self.output
        return self.output(input_types)

    def flags(self) -> str:
        names = [
            ("comm", self.commutative),
            ("trains", self.grad_from_params),
            ("loss", self.produces_loss),
            ("forward-only", not self.update_allowed),
            ("hand-only", not self.enumerable),
        ]
        return " ".join(n for n, on in names if on)


def collapses(op: OpDef, inputs: Sequence[bool]) -> bool:
    """Whether ``op``'s output can collapse, given which of its value inputs can (its ``collapse`` rule)."""
    return {
        ALWAYS: True,
        NEVER: False,
        ALL_INPUTS: bool(inputs) and all(inputs),
        ANY_INPUT: any(inputs),
        FIRST_INPUT: bool(inputs) and inputs[0],
    }[op.collapse]


def derive_facts(op: OpDef, inputs: tuple[GradFacts, ...], output: ValueType) -> GradFacts:
    """The single place where gradient facts of a node's output are computed."""
    state_type = STATE_TYPES[op.state] if op.state else None
    owns_network = state_type is not None and state_type.is_network
    carries = (op.grad_from_params and state_type is not None and state_type.trainable) or any(
        f.carries_gradient for f, slot in zip(inputs, op.inputs) if slot.passes_gradient
    )
    depends_on_network = owns_network or any(f.depends_on_network for f in inputs)
    detached = not carries and (depends_on_network or any(f.carries_gradient for f in inputs))
    rule = collapses(op, [f.trivially_minimisable for f in inputs])
    return GradFacts(
        carries_gradient=carries,
        detached=detached,
        bounded_below=output.is_scalar and T.is_subtype(output, T.NonNeg),
        trivially_minimisable=rule and carries,
        constant=bool(inputs) and all(f.constant for f in inputs),
        depends_on_network=depends_on_network,
    )

