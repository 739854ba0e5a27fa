"""The DSL's types: value types with their runtime shapes, state types, and gradient facts.

Value types describe one batch row: ℝ is a scalar per transition, 𝔽 a 32-wide feature vector,
𝔸 an action (one-hot or continuous), 𝕊 an observation (image or vector, decided by the
environment), lists hold a fixed number of items (ensemble members or buffer entries).
ℝ≥0 is a subtype of ℝ, and [ℝ≥0] of [ℝ]; there is no other subtyping.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

REAL = "real"
NONNEG = "nonneg"
OBS = "obs"
ACTION = "action"
FEATURE = "feature"
LIST = "list"
VOID = "void"

FEATURE_WIDTH = 32
"""Width of 𝔽, the feature vectors networks produce."""

_SHORT = {REAL: "ℝ", NONNEG: "ℝ≥0", OBS: "𝕊", ACTION: "𝔸", FEATURE: "𝔽", VOID: "Void"}
_ASCII = {REAL: "R", NONNEG: "R+", OBS: "S", ACTION: "A", FEATURE: "F", VOID: "Void"}


@dataclasses.dataclass(frozen=True, order=True)
class ValueType:
    kind: str
    elem: "ValueType | None" = None

    def __post_init__(self):
        if (self.kind == LIST) != (self.elem is not None):
            raise ValueError("a list type needs an element type and only a list has one")
        if self.elem is not None and self.elem.kind in (LIST, VOID):
            raise ValueError(f"no lists of {self.elem}")

    def __str__(self) -> str:
        return f"[{self.elem}]" if self.kind == LIST else _SHORT[self.kind]

    @property
    def ascii(self) -> str:
        return f"[{self.elem.ascii}]" if self.kind == LIST else _ASCII[self.kind]

    def row_shape(self, obs_shape: tuple[int, ...], action_dim: int, length: int = 0) -> tuple[int, ...]:
        """Shape of one batch row of this type; ``length`` is a list's item count."""
        if self.is_list:
            return (length,) + self.elem.row_shape(obs_shape, action_dim)
        return {
            REAL: (),
            NONNEG: (),
            FEATURE: (FEATURE_WIDTH,),
            ACTION: (action_dim,),
            OBS: tuple(obs_shape),
        }[self.kind]

    @property
    def is_list(self) -> bool:
        return self.kind == LIST

    @property
    def is_vector(self) -> bool:
        return self.kind in (FEATURE, ACTION)

    @property
    def is_scalar(self) -> bool:
        return self.kind in (REAL, NONNEG)


Real = ValueType(REAL)
NonNeg = ValueType(NONNEG)
Obs = ValueType(OBS)
Action = ValueType(ACTION)
Feature = ValueType(FEATURE)
Void = ValueType(VOID)


def ListOf(elem: ValueType) -> ValueType:
    return ValueType(LIST, elem)


def is_subtype(t: ValueType, of: ValueType) -> bool:
    if t == of:
        return True
    if t.kind == NONNEG and of.kind == REAL:
        return True
    return t.is_list and of.is_list and is_subtype(t.elem, of.elem)


def join_scalar(types: Iterable[ValueType]) -> ValueType:
    """ℝ≥0 if every scalar is non-negative, else ℝ."""
    return NonNeg if all(t.kind == NONNEG for t in types) else Real


@dataclasses.dataclass(frozen=True)
class GradFacts:
    """Gradient facts of a value, derived by ``operations.registry.derive_facts`` only.

    carries_gradient: a loss on this value would move some trainable parameter.
    detached: computed from trainable or random networks, with the gradient cut on purpose.
    bounded_below: the value is ≥ 0 (its type is ℝ≥0), so minimising it is well posed.
    trivially_minimisable: SGD could drive it to its minimum without learning anything, e.g.
        the distance between two outputs of networks trained by that same distance.
    constant: depends on no program input (only on constants).
    """

    carries_gradient: bool = False
    detached: bool = False
    bounded_below: bool = False
    trivially_minimisable: bool = False
    constant: bool = False
    depends_on_network: bool = False

    def flags(self) -> str:
        names = [
            ("grad", self.carries_gradient),
            ("detached", self.detached),
            ("≥0", self.bounded_below),
            ("collapsible", self.trivially_minimisable),
            ("const", self.constant),
        ]
        return " ".join(name for name, on in names if on)
