"""Programs as data: one compiled function runs any program of a layout.

Compiling a whole training loop per program costs more than running it, so the evaluator traces
this interpreter once per layout and feeds it programs as integer arrays. A program becomes a
list of instructions (an operation specialised to the kinds of its inputs), each with argument
registers, a state-slot index and an output register. Values live in typed register banks
(scalars, features, actions, lists), state in typed slot banks; a ``lax.scan`` over the node
positions dispatches every instruction with ``lax.switch``. On a CPU the switch is a real
branch; under ``vmap`` over programs it computes every branch and selects.

Semantics equal the reference compiler's (``compiler.py``) exactly: same order, same
initial weights per canonical slot name, same Adam step; only float rounding may differ.
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

from metacurio.core.compiler import ProgramState, learning_step, optimizer, program_inputs, slot_key
from metacurio.core.networks import ENSEMBLE_SIZE
from metacurio.core.program import INPUTS, Program, is_constant
from metacurio.core.specs import EnvSpec
from operations import kernels
from operations import types as T
from operations.base import OpDef, TypeRuleError
from operations.kernels.values import ListValue
from operations.registry import REGISTRY, get_op, ops_for_space
from operations.state_types import BUFFER_CAPACITY, STATE_TYPES

SCALAR, FEATURE, ACTION, OBS = "scalar", "feature", "action", "obs"
LIST_LENGTHS = (ENSEMBLE_SIZE, BUFFER_CAPACITY)
"""Lists come from ensembles or buffers; each length gets its own registers, so an ensemble's
five items never pay for a buffer's hundred."""
_ELEMENTS = {SCALAR: T.Real, FEATURE: T.Feature, ACTION: T.Action}
KINDS = (SCALAR, FEATURE, ACTION, OBS) + tuple(f"list{n}_{e}" for n in LIST_LENGTHS for e in _ELEMENTS)
WRITABLE = tuple(k for k in KINDS if k != OBS)
NOP = ("Nop", ())
MAX_ARGS = max(op.arity for op in REGISTRY.values())
_SHAPE_ENV = EnvSpec(obs_shape=(4, 4, 3), action_dim=3, discrete=True, batch_size=2)


def value_type(kind: str) -> T.ValueType:
    if kind == OBS:
        return T.Obs
    if kind.startswith("list"):
        return T.ListOf(_ELEMENTS[kind.split("_")[1]])
    return _ELEMENTS[kind]


def list_length(kind: str) -> int:
    return int(kind.split("_")[0][4:])


def kind_of(t: T.ValueType, length: int | None = None) -> str:
    if t.is_list:
        return f"list{length}_{kind_of(t.elem)}"
    if t.is_scalar:
        return SCALAR
    return {T.FEATURE: FEATURE, T.ACTION: ACTION, T.OBS: OBS}[t.kind]


def state_bank(op: OpDef, kinds: tuple[str, ...]) -> str | None:
    """Slot bank an instruction uses: its state type, split by element kind for buffers."""
    if op.state is None:
        return None
    return f"Buffer_{kinds[0]}" if op.state == "Buffer" else op.state


def _bank_type(bank: str) -> str:
    return bank.split("_")[0]


def _row_shape(kind: str, env: EnvSpec) -> tuple[int, ...]:
    length = list_length(kind) if kind.startswith("list") else 0
    return value_type(kind).row_shape(env.obs_shape, env.action_dim, length)


def _example(kind: str, env: EnvSpec):
    shape = (env.batch_size,) + _row_shape(kind, env)
    if kind.startswith("list"):
        return ListValue(items=jax.ShapeDtypeStruct(shape, jnp.float32), mask=jax.ShapeDtypeStruct(shape[1:2], bool))
    return jax.ShapeDtypeStruct(shape, jnp.float32)


@functools.lru_cache(maxsize=None)
def instruction_output(name: str, kinds: tuple[str, ...]) -> str | None:
    """Output kind of an instruction, list lengths included (found by tracing its shapes)."""
    op = get_op(name)
    out_type = op.output_type(tuple(value_type(k) for k in kinds))
    if out_type == T.Void:
        return None
    if not out_type.is_list:
        return kind_of(out_type)
    env = _SHAPE_ENV
    bank = state_bank(op, kinds)
    state = params = None
    if bank:
        elem = value_type(kinds[0]) if op.state == "Buffer" else None
        p, s = kernels.init_state(op.state, jax.random.PRNGKey(0), env, elem)
        params, state = (p, None) if STATE_TYPES[op.state].is_network else (None, s)
    inputs = tuple(_example(k, env) for k in kinds)
    apply = kernels.apply_fn(name)
    out = jax.eval_shape(lambda i, s, p: apply(i, s, p, env)[0], inputs, state, params)
    return kind_of(out_type, out.items.shape[1])


def space_instructions(kind: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every (operation, input kinds) pair that type-checks in a program kind."""
    found = []
    for op in ops_for_space(kind):
        for kinds in itertools.product(KINDS, repeat=op.arity):
            try:
                op.output_type(tuple(value_type(k) for k in kinds))
            except TypeRuleError:
                continue
            found.append((op.name, kinds))
    return tuple(found)


def _input_kinds(kind: str) -> dict[str, str]:
    return {name: kind_of(t) for name, t in INPUTS[kind].items()}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Static shape of an interpreter: which instructions, how many nodes, registers, slots.

    One layout is one compile; every program that fits it runs without recompiling.
    """

    kind: str
    """curiosity or combiner."""
    instructions: tuple[tuple[str, tuple[str, ...]], ...]
    """Dispatch table; index 0 is the no-op used to pad programs."""
    max_nodes: int
    """Node positions per program."""
    max_constants: int
    """Constant registers per program."""
    registers: tuple[tuple[str, int], ...]
    """(kind, node-output registers of that kind) for every writable kind."""
    banks: tuple[tuple[str, int], ...]
    """(slot bank, number of slots) for every state bank."""

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(INPUTS[self.kind])

    def bank_size(self, kind: str) -> int:
        """Registers of a kind: inputs, constants (scalars), node outputs, and one to discard."""
        inputs = sum(1 for k in _input_kinds(self.kind).values() if k == kind)
        constants = self.max_constants if kind == SCALAR else 0
        return inputs + constants + dict(self.registers).get(kind, 0) + 1

    def fits(self, program: Program) -> bool:
        try:
            encode(program, self)
        except LayoutError:
            return False
        return True

    @staticmethod
    def for_programs(programs: Iterable[Program], kind: str | None = None) -> "Layout":
        """The smallest layout that runs all these programs."""
        programs = list(programs)
        kind = kind or programs[0].kind
        used: set = set()
        registers: dict[str, int] = {}
        banks: dict[str, int] = {}
        max_nodes = max_constants = 1
        for program in programs:
            if program.kind != kind:
                raise LayoutError(f"program {program.id} is a {program.kind} program, not {kind}")
            max_nodes = max(max_nodes, program.size)
            max_constants = max(max_constants, sum(is_constant(a) for n in program.nodes for a in n.args))
            per_kind: dict[str, int] = {}
            for node, kinds in _node_instructions(program):
                used.add((node.op, kinds))
                out = instruction_output(node.op, kinds)
                if out:
                    per_kind[out] = per_kind.get(out, 0) + 1
                bank = state_bank(get_op(node.op), kinds)
                if bank:
                    banks[bank] = max(banks.get(bank, 0), _slot_index(program, node.state) + 1)
            for k, n in per_kind.items():
                registers[k] = max(registers.get(k, 0), n)
        instructions = (NOP,) + tuple(i for i in space_instructions(kind) if i in used)
        return Layout(kind, instructions, max_nodes, max_constants, tuple(sorted(registers.items())), tuple(sorted(banks.items())))

    @staticmethod
    def for_space(
        kind: str, max_nodes: int, slots_per_bank: int = 2, max_constants: int = 4, list_registers: int = 2
    ) -> "Layout":
        """A layout for every instruction of a space (what a search compiles once)."""
        instructions = space_instructions(kind)
        banks = sorted({state_bank(get_op(name), kinds) for name, kinds in instructions} - {None})
        registers = tuple((k, list_registers if k.startswith("list") else max_nodes) for k in WRITABLE)
        return Layout(
            kind, (NOP,) + instructions, max_nodes, max_constants, registers, tuple((b, slots_per_bank) for b in banks)
        )


class LayoutError(ValueError):
    """A program does not fit a layout (too many nodes, slots or constants, or a missing op)."""


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


def _node_instructions(program: Program):
    """Each node in execution order with the kinds of its inputs (list lengths resolved)."""
    kinds = _input_kinds(program.kind)
    result = []
    for node in program.analysis.order:
        arg_kinds = tuple(SCALAR if is_constant(ref) else kinds[ref] for ref in node.args)
        out = instruction_output(node.op, arg_kinds)
        if out:
            kinds[node.id] = out
        result.append((node, arg_kinds))
    return result


def _slot_index(program: Program, state: str) -> int:
    name = program.analysis.canonical_state_names[state]
    type_name = program.analysis.state_types[state]
    return int(name[len(type_name) :])


def encode(program: Program, layout: Layout) -> Encoding:
    if program.kind != layout.kind:
        raise LayoutError(f"a {program.kind} program cannot run in a {layout.kind} layout")
    if program.size > layout.max_nodes:
        raise LayoutError(f"program {program.id} has {program.size} nodes; the layout holds {layout.max_nodes}")
    table = {instr: i for i, instr in enumerate(layout.instructions)}
    banks = dict(layout.banks)
    registers: dict[str, tuple[str, int]] = {}
    used = {k: 0 for k in KINDS}
    for name, k in _input_kinds(layout.kind).items():
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
    for position, (node, kinds) in enumerate(_node_instructions(program)):
        if (node.op, kinds) not in table:
            raise LayoutError(f"program {program.id} uses {node.op}{kinds}, which the layout lacks")
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
            index = _slot_index(program, node.state)
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


def stack_encodings(encodings: list[Encoding]) -> Encoding:
    return jax.tree.map(lambda *xs: np.stack(xs), *encodings)


def _tree_index(tree, i):
    return jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), tree)


def _tree_set(tree, i, value):
    return jax.tree.map(lambda x, v: jax.lax.dynamic_update_index_in_dim(x, v, i, 0), tree, value)


def _zeros(kind: str, env: EnvSpec, count: int | None = None):
    lead = () if count is None else (count,)
    shape = lead + (env.batch_size,) + _row_shape(kind, env)
    if kind.startswith("list"):
        return ListValue(items=jnp.zeros(shape, jnp.float32), mask=jnp.zeros(lead + (list_length(kind),), bool))
    return jnp.zeros(shape, jnp.float32)


class Interpreter:
    """``init(key, env)`` and ``step(state, batch, encoding)`` for any program of a layout.

    Each node position dispatches its instruction with ``lax.switch``. A branch reads its
    arguments from the register banks and returns a small record (one value per kind, the
    loss term, the touched slot of each mutable bank); the banks are written outside the
    switch, so no branch copies them.
    """

    def __init__(self, layout: Layout):
        self.layout = layout
        self._decoded = [(get_op(name), kinds) if name != NOP[0] else (None, ()) for name, kinds in layout.instructions]
        self._mutable = tuple(
            bank for bank, _ in layout.banks if not (STATE_TYPES[_bank_type(bank)].trainable or STATE_TYPES[_bank_type(bank)].read_only)
        )

    def init(self, key: jax.Array, env: EnvSpec) -> ProgramState:
        params, slots = {}, {}
        for bank, count in self.layout.banks:
            type_name = _bank_type(bank)
            state_type = STATE_TYPES[type_name]
            elem = value_type(bank.split("_", 1)[1]) if type_name == "Buffer" else None
            built = [kernels.init_state(type_name, slot_key(key, f"{type_name}{k}"), env, elem) for k in range(count)]
            parts = [p if state_type.is_network else s for p, s in built]
            stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *parts)
            (params if state_type.trainable else slots)[bank] = stacked
        return ProgramState(params=params, slots=slots, opt_state=optimizer().init(params), env=env)

    def _registers(self, env: EnvSpec, inputs: dict[str, jax.Array], encoding: Encoding):
        banks = {k: _zeros(k, env, self.layout.bank_size(k)) for k in WRITABLE}
        obs_inputs = []
        counters = {k: 0 for k in KINDS}
        for name, k in _input_kinds(self.layout.kind).items():
            if k == OBS:
                obs_inputs.append(inputs[name])
            else:
                banks[k] = banks[k].at[counters[k]].set(inputs[name])
            counters[k] += 1
        constant_rows = jnp.broadcast_to(encoding.constants[:, None], (self.layout.max_constants, env.batch_size))
        banks[SCALAR] = jax.lax.dynamic_update_slice_in_dim(banks[SCALAR], constant_rows, counters[SCALAR], 0)
        return banks, jnp.stack(obs_inputs) if obs_inputs else None

    def _branches(self, env: EnvSpec, params, obs_bank):
        def read(banks, kind, register):
            return obs_bank[register] if kind == OBS else _tree_index(banks[kind], register)

        def empty_record(slots, slot):
            values = {k: _zeros(k, env) for k in WRITABLE}
            touched = {bank: _tree_index(slots[bank], slot) for bank in self._mutable}
            return values, touched, jnp.zeros(())

        def make(op: OpDef | None, kinds):
            if op is None:
                return lambda operand: empty_record(operand[1], operand[3])
            bank = state_bank(op, kinds)
            state_type = STATE_TYPES[op.state] if op.state else None
            out_kind = instruction_output(op.name, kinds)
            apply = kernels.apply_fn(op.name)

            def branch(operand):
                banks, slots, args, slot = operand
                values, touched, _ = empty_record(slots, slot)
                inputs = tuple(read(banks, k, args[j]) for j, k in enumerate(kinds))
                slot_params = slot_state = None
                if state_type is not None and state_type.trainable:
                    slot_params = _tree_index(params[bank], slot)
                elif state_type is not None and state_type.read_only:
                    slot_params = _tree_index(slots[bank], slot)
                elif state_type is not None:
                    slot_state = touched[bank]
                value, new_state, terms = apply(inputs, slot_state, slot_params, env)
                if bank in touched:
                    touched[bank] = new_state
                if out_kind is not None:
                    values[out_kind] = value
                loss = sum((jnp.mean(t) for t in terms), jnp.zeros(()))
                return values, touched, loss

            return branch

        return [make(op, kinds) for op, kinds in self._decoded]

    def _run(self, params, slots, inputs, encoding: Encoding, env: EnvSpec):
        banks, obs_bank = self._registers(env, inputs, encoding)
        branches = self._branches(env, params, obs_bank)

        def body(carry, position):
            banks, slots, loss = carry
            slot = encoding.slot[position]
            operand = (banks, slots, encoding.args[position], slot)
            values, touched, term = jax.lax.switch(encoding.instruction[position], branches, operand)
            banks = {k: _tree_set(banks[k], encoding.dest[position, i], values[k]) for i, k in enumerate(WRITABLE)}
            slots = {**slots, **{bank: _tree_set(slots[bank], slot, touched[bank]) for bank in self._mutable}}
            return (banks, slots, loss + term), None

        (banks, slots, loss), _ = jax.lax.scan(body, (banks, slots, jnp.zeros(())), jnp.arange(self.layout.max_nodes))
        return loss, (banks[SCALAR][encoding.output], slots)

    def step(self, state: ProgramState, batch, encoding: Encoding):
        inputs = program_inputs(self.layout.kind, batch, state.env)
        slots = state.slots
        policy_params = getattr(batch, "policy_params", None)
        if policy_params is not None and "AgentPolicy" in slots:
            count = jax.tree.leaves(slots["AgentPolicy"])[0].shape[0]
            slots = {**slots, "AgentPolicy": jax.tree.map(lambda x: jnp.broadcast_to(x, (count,) + x.shape), policy_params)}

        def run(params, slots, inputs, env):
            return self._run(params, slots, inputs, encoding, env)

        return learning_step(run, state, slots, inputs, has_losses=True)


@dataclasses.dataclass(frozen=True)
class InterpretedProgram:
    """An encoded program bound to an interpreter: the reward-module protocol of the agent."""

    interpreter: Interpreter
    encoding: Encoding

    def init(self, key: jax.Array, env: EnvSpec) -> ProgramState:
        return self.interpreter.init(key, env)

    def step(self, state: ProgramState, batch):
        return self.interpreter.step(state, batch, self.encoding)
