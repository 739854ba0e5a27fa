"""Layouts: the static shape of a programs-as-data interpreter, and programs encoded for one.

A program becomes a list of instructions (an operation specialised to the kinds of its inputs),
each with argument registers, a state-slot index and an output register. Values live in typed
register banks (``RegisterKind``: scalars, features, actions, observations, and lists of a fixed
length), state in slot banks (``SlotBank``: one per state type, buffers split by element kind).
A ``Layout`` says which instructions a compiled interpreter dispatches and how many registers
and slots it holds; one layout is one compile, and every program that fits it runs as data.

This module owns that vocabulary for everyone: the interpreter executes layouts, the evaluator
and replay encode programs for them, and duplicate removal plans them (``search.signature``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metacurio.core.networks import ENSEMBLE_SIZE
from metacurio.core.program import INPUTS, Program, is_constant
from metacurio.core.specs import EnvSpec
from operations import kernels
from operations import types as T
from operations.base import OpDef, TypeRuleError
from operations.kernels.values import ListValue
from operations.registry import REGISTRY, get_op, ops_for_space
from operations.state_types import BUFFER_CAPACITY, STATE_TYPES

_ELEMENT_TYPES = {"scalar": T.Real, "feature": T.Feature, "action": T.Action, "obs": T.Obs}


@dataclasses.dataclass(frozen=True, order=True)
class RegisterKind:
    """What one register bank holds: an element kind, or a list of them of one fixed length."""

    element: str
    """``scalar``, ``feature``, ``action`` or ``obs``."""
    length: int = 0
    """Items of a list (an ensemble's 5, a buffer's 100); 0 for a single value."""

    def __post_init__(self):
        if self.element not in _ELEMENT_TYPES:
            raise ValueError(f"unknown register element {self.element!r}")
        if self.length and self.element == "obs":
            raise ValueError("observations never come in lists")

    @property
    def is_list(self) -> bool:
        return self.length > 0

    @property
    def value_type(self) -> T.ValueType:
        element = _ELEMENT_TYPES[self.element]
        return T.ListOf(element) if self.is_list else element

    def row_shape(self, env: EnvSpec) -> tuple[int, ...]:
        """Shape of one batch row of this kind's values."""
        return self.value_type.row_shape(env.obs_shape, env.action_dim, self.length)

    def __str__(self) -> str:
        return f"list{self.length}_{self.element}" if self.is_list else self.element


SCALAR, FEATURE, ACTION, OBS = (RegisterKind(e) for e in ("scalar", "feature", "action", "obs"))
LIST_LENGTHS = (ENSEMBLE_SIZE, BUFFER_CAPACITY)
"""Lists come from ensembles or buffers; each length gets its own registers, so an ensemble's
five items never pay for a buffer's hundred."""
KINDS = (SCALAR, FEATURE, ACTION, OBS) + tuple(RegisterKind(e.element, n) for n in LIST_LENGTHS for e in (SCALAR, FEATURE, ACTION))
WRITABLE = tuple(k for k in KINDS if k != OBS)
"""Kinds an instruction can write: observations are inputs only."""


@dataclasses.dataclass(frozen=True, order=True)
class SlotBank:
    """The slots of one state type; a buffer's slots are split by what they store."""

    state_type: str
    """A name of ``operations.state_types.STATE_TYPES``."""
    element: RegisterKind | None = None
    """What a buffer stores; None for every other state type."""

    def __str__(self) -> str:
        return self.state_type if self.element is None else f"{self.state_type}_{self.element}"


Instruction = tuple[str, tuple[RegisterKind, ...]]
"""An operation with the kinds of its inputs."""
NOP: Instruction = ("Nop", ())
MAX_ARGS = max(op.arity for op in REGISTRY.values())
_SHAPE_ENV = EnvSpec(obs_shape=(4, 4, 3), action_dim=3, discrete=True, batch_size=2)


def kind_of(t: T.ValueType, length: int = 0) -> RegisterKind:
    if t.is_list:
        return RegisterKind(kind_of(t.elem).element, length)
    if t.is_scalar:
        return SCALAR
    return {T.FEATURE: FEATURE, T.ACTION: ACTION, T.OBS: OBS}[t.kind]


def state_bank(op: OpDef, kinds: tuple[RegisterKind, ...]) -> SlotBank | None:
    """Slot bank an instruction uses: its state type, split by element kind for buffers."""
    if op.state is None:
        return None
    return SlotBank(op.state, kinds[0]) if op.state == "Buffer" else SlotBank(op.state)


def bank_element_type(bank: SlotBank) -> T.ValueType | None:
    """What a buffer bank's slots store (their initialiser needs it); None for other banks."""
    return None if bank.element is None else bank.element.value_type


def example_value(kind: RegisterKind, env: EnvSpec):
    """The abstract value (shapes only) a register of ``kind`` holds."""
    shape = (env.batch_size,) + kind.row_shape(env)
    if kind.is_list:
        return ListValue(items=jax.ShapeDtypeStruct(shape, jnp.float32), mask=jax.ShapeDtypeStruct(shape[1:2], bool))
    return jax.ShapeDtypeStruct(shape, jnp.float32)


@functools.lru_cache(maxsize=None)
def instruction_output(name: str, kinds: tuple[RegisterKind, ...]) -> RegisterKind | None:
    """Output kind of an instruction, list lengths included (found by tracing its shapes)."""
    op = get_op(name)
    out_type = op.output_type(tuple(k.value_type for k in kinds))
    if out_type == T.Void:
        return None
    if not out_type.is_list:
        return kind_of(out_type)
    env = _SHAPE_ENV
    bank = state_bank(op, kinds)
    state = params = None
    if bank:
        p, s = kernels.init_state(op.state, jax.random.PRNGKey(0), env, bank_element_type(bank))
        params, state = (p, None) if STATE_TYPES[op.state].is_network else (None, s)
    inputs = tuple(example_value(k, env) for k in kinds)
    apply = kernels.apply_fn(name)
    out = jax.eval_shape(lambda i, s, p: apply(i, s, p, env)[0], inputs, state, params)
    return kind_of(out_type, out.items.shape[1])


@functools.lru_cache(maxsize=None)
def space_instructions(kind: str) -> tuple[Instruction, ...]:
    """Every (operation, input kinds) pair that type-checks in a program kind, in a fixed order.

    Memoised: deriving it takes ~40 ms, and planning a space asks for it once per program."""
    found = []
    for op in ops_for_space(kind):
        for kinds in itertools.product(KINDS, repeat=op.arity):
            try:
                op.output_type(tuple(k.value_type for k in kinds))
            except TypeRuleError:
                continue
            found.append((op.name, kinds))
    return tuple(found)


def input_kinds(kind: str) -> dict[str, RegisterKind]:
    """Register kind of each input of a program kind, in input order."""
    return {name: kind_of(t) for name, t in INPUTS[kind].items()}


class LayoutError(ValueError):
    """A program does not fit a layout (too many nodes, slots or constants, or a missing op)."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Static shape of an interpreter: which instructions, how many nodes, registers, slots.

    One layout is one compile; every program that fits it runs without recompiling.
    """

    kind: str
    """curiosity or combiner."""
    instructions: tuple[Instruction, ...]
    """Dispatch table; index 0 is the no-op used to pad programs."""
    max_nodes: int
    """Node positions per program."""
    max_constants: int
    """Constant registers per program."""
    registers: tuple[tuple[RegisterKind, int], ...]
    """(kind, node-output registers of that kind) for every writable kind a program uses."""
    banks: tuple[tuple[SlotBank, int], ...]
    """(slot bank, number of slots) for every state bank."""

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(INPUTS[self.kind])

    def bank_size(self, kind: RegisterKind) -> int:
        """Registers of a kind: inputs, constants (scalars), node outputs, and one to discard."""
        inputs = sum(1 for k in input_kinds(self.kind).values() if k == kind)
        constants = self.max_constants if kind == SCALAR else 0
        return inputs + constants + dict(self.registers).get(kind, 0) + 1

    def fits(self, program: Program) -> bool:
        try:
            encode(program, self)
        except LayoutError:
            return False
        return True

    def union(self, other: "Layout") -> "Layout":
        """The smallest layout that fits everything either fits (``for_programs`` of both sets)."""
        if other.kind != self.kind:
            raise LayoutError(f"a {self.kind} layout cannot join a {other.kind} layout")
        used = set(self.instructions) | set(other.instructions)
        return Layout(
            self.kind,
            (NOP,) + tuple(i for i in space_instructions(self.kind) if i in used),
            max(self.max_nodes, other.max_nodes),
            max(self.max_constants, other.max_constants),
            _max_counts(self.registers, other.registers),
            _max_counts(self.banks, other.banks),
        )

    @staticmethod
    def for_programs(programs: Iterable[Program], kind: str | None = None) -> "Layout":
        """The smallest layout that runs all these programs."""
        programs = list(programs)
        kind = kind or programs[0].kind
        used: set = set()
        registers: dict[RegisterKind, int] = {}
        banks: dict[SlotBank, int] = {}
        max_nodes = max_constants = 1
        for program in programs:
            if program.kind != kind:
                raise LayoutError(f"program {program.id} is a {program.kind} program, not {kind}")
            max_nodes = max(max_nodes, program.size)
            max_constants = max(max_constants, sum(is_constant(a) for n in program.nodes for a in n.args))
            per_kind: dict[RegisterKind, int] = {}
            for node, kinds in node_instructions(program):
                used.add((node.op, kinds))
                out = instruction_output(node.op, kinds)
                if out:
                    per_kind[out] = per_kind.get(out, 0) + 1
                bank = state_bank(get_op(node.op), kinds)
                if bank:
                    banks[bank] = max(banks.get(bank, 0), slot_index(program, node.state) + 1)
            for k, n in per_kind.items():
                registers[k] = max(registers.get(k, 0), n)
        instructions = (NOP,) + tuple(i for i in space_instructions(kind) if i in used)
        return Layout(kind, instructions, max_nodes, max_constants, tuple(sorted(registers.items())), tuple(sorted(banks.items())))

    @staticmethod
    def for_space(
        kind: str, max_nodes: int, slots_per_bank: int = 2, max_constants: int = 4, list_registers: int = 2
    ) -> "Layout":
        """A layout for every instruction of a space."""
        instructions = space_instructions(kind)
        banks = sorted({state_bank(get_op(name), kinds) for name, kinds in instructions} - {None})
        registers = tuple((k, list_registers if k.is_list else max_nodes) for k in sorted(WRITABLE))
        return Layout(
            kind, (NOP,) + instructions, max_nodes, max_constants, registers, tuple((b, slots_per_bank) for b in banks)
        )


def _max_counts(a: tuple, b: tuple) -> tuple:
    counts = dict(a)
    for key, count in b:
        counts[key] = max(counts.get(key, 0), count)
    return tuple(sorted(counts.items()))


@struct.dataclass
class Encoding:
    """A program as arrays (one row per node position); stack these to batch programs."""

    instruction: jax.Array
    """(nodes,) index into the layout's instructions; 0 pads."""
    args: jax.Array
    """(nodes, MAX_ARGS) register of each argument within its kind's bank."""
    slot: jax.Array
    """(nodes,) slot index within the instruction's state bank."""
    dest: jax.Array
    """(nodes, writable kinds) register each kind's result goes to; the discard register for
    every kind but the node's output kind."""
    output: jax.Array
    """Scalar register holding the reward."""
    constants: jax.Array
    """(max_constants,) values of the constant registers."""


def node_instructions(program: Program) -> list[tuple]:
    """Each node in execution order with the kinds of its inputs (list lengths resolved)."""
    kinds: dict[str, RegisterKind] = dict(input_kinds(program.kind))
    result = []
    for node in program.analysis.order:
        arg_kinds = tuple(SCALAR if is_constant(ref) else kinds[ref] for ref in node.args)
        out = instruction_output(node.op, arg_kinds)
        if out:
            kinds[node.id] = out
        result.append((node, arg_kinds))
    return result


def slot_index(program: Program, state: str) -> int:
    """Which slot of its bank a program's state slot takes: its canonical rank."""
    name = program.analysis.canonical_state_names[state]
    type_name = program.analysis.state_types[state]
    return int(name[len(type_name) :])


def encode(program: Program, layout: Layout) -> Encoding:
    """``program`` as arrays for ``layout``; a LayoutError names what does not fit."""
    if program.kind != layout.kind:
        raise LayoutError(f"a {program.kind} program cannot run in a {layout.kind} layout")
    if program.size > layout.max_nodes:
        raise LayoutError(f"program {program.id} has {program.size} nodes; the layout holds {layout.max_nodes}")
    table = {instr: i for i, instr in enumerate(layout.instructions)}
    banks = dict(layout.banks)
    registers: dict[str, tuple[RegisterKind, int]] = {}
    used = {k: 0 for k in KINDS}
    for name, k in input_kinds(layout.kind).items():
        registers[name] = (k, used[k])
        used[k] += 1
    first_constant = used[SCALAR]
    used[SCALAR] += layout.max_constants
    constants: list[float] = []
    discard = {k: layout.bank_size(k) - 1 for k in WRITABLE}
    instruction = np.zeros(layout.max_nodes, np.int32)
    args = np.zeros((layout.max_nodes, MAX_ARGS), np.int32)
    slot = np.zeros(layout.max_nodes, np.int32)
    dest = np.tile(np.array([discard[k] for k in WRITABLE], np.int32), (layout.max_nodes, 1))
    for position, (node, kinds) in enumerate(node_instructions(program)):
        if (node.op, kinds) not in table:
            raise LayoutError(f"program {program.id} uses {node.op}({', '.join(map(str, kinds))}), which the layout lacks")
        instruction[position] = table[(node.op, kinds)]
        for j, ref in enumerate(node.args):
            if is_constant(ref):
                if len(constants) == layout.max_constants:
                    raise LayoutError(f"program {program.id} has more than {layout.max_constants} constants")
                args[position, j] = first_constant + len(constants)
                constants.append(float(ref))
            else:
                args[position, j] = registers[ref][1]
        bank = state_bank(get_op(node.op), kinds)
        if bank:
            index = slot_index(program, node.state)
            if index >= banks.get(bank, 0):
                raise LayoutError(f"program {program.id} needs {bank} slot {index}; the layout has {banks.get(bank, 0)}")
            slot[position] = index
        out = instruction_output(node.op, kinds)
        if out:
            if used[out] >= discard[out]:
                raise LayoutError(f"program {program.id} needs more {out} registers than the layout has")
            registers[node.id] = (out, used[out])
            dest[position, WRITABLE.index(out)] = used[out]
            used[out] += 1
    padded_constants = np.zeros(layout.max_constants, np.float32)
    padded_constants[: len(constants)] = constants
    return Encoding(
        instruction=instruction,
        args=args,
        slot=slot,
        dest=dest,
        output=np.asarray(registers[program.output][1], np.int32),
        constants=padded_constants,
    )


def blank_encoding(layout: Layout) -> Encoding:
    """An all-padding encoding of ``layout`` (reward: the first scalar input), to compile against."""
    discard = np.array([layout.bank_size(k) - 1 for k in WRITABLE], np.int32)
    return Encoding(
        instruction=np.zeros(layout.max_nodes, np.int32),
        args=np.zeros((layout.max_nodes, MAX_ARGS), np.int32),
        slot=np.zeros(layout.max_nodes, np.int32),
        dest=np.tile(discard, (layout.max_nodes, 1)),
        output=np.asarray(0, np.int32),
        constants=np.zeros(layout.max_constants, np.float32),
    )


def stack_encodings(encodings: list[Encoding]) -> Encoding:
    return jax.tree.map(lambda *xs: np.stack(xs), *encodings)
