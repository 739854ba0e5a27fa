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
import itertools
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from metacurio.compiler import optimizer, program_inputs, slot_key
from metacurio.networks import ENSEMBLE_SIZE
from metacurio.program import INPUTS, Program, is_constant
from metacurio.specs import EnvSpec
from operations import types as T
from operations.base import ListValue, OpDef, TypeRuleError
from operations.registry import REGISTRY, get_op, ops_for_space
from operations.state_types import BUFFER_CAPACITY, STATE_TYPES

SCALAR, FEATURE, ACTION, OBS = "scalar", "feature", "action", "obs"
LIST_SCALAR, LIST_FEATURE, LIST_ACTION = "list_scalar", "list_feature", "list_action"
KINDS = (SCALAR, FEATURE, ACTION, OBS, LIST_SCALAR, LIST_FEATURE, LIST_ACTION)
_REPRESENTATIVE = {
    SCALAR: T.Real,
    FEATURE: T.Feature,
    ACTION: T.Action,
    OBS: T.Obs,
    LIST_SCALAR: T.ListOf(T.Real),
    LIST_FEATURE: T.ListOf(T.Feature),
    LIST_ACTION: T.ListOf(T.Action),
}
LIST_LENGTH = max(BUFFER_CAPACITY, ENSEMBLE_SIZE)
"""Every list register holds this many items; shorter lists are padded and masked."""
NOP = ("Nop", ())
MAX_ARGS = max(op.arity for op in REGISTRY.values())


def kind_of(t: T.ValueType) -> str:
    if t.is_scalar:
        return SCALAR
    if t.is_list:
        return "list_" + kind_of(t.elem)
    return {T.FEATURE: FEATURE, T.ACTION: ACTION, T.OBS: OBS}[t.kind]


def state_bank(op: OpDef, kinds: tuple[str, ...]) -> str | None:
    """Slot bank an instruction uses: its state type, split by element kind for buffers."""
    if op.state is None:
        return None
    return f"Buffer_{kinds[0]}" if op.state == "Buffer" else op.state


def _bank_type(bank: str) -> str:
    return bank.split("_")[0]


def _instruction_output(op: OpDef, kinds: tuple[str, ...]) -> str | None:
    try:
        out = op.output_type(tuple(_REPRESENTATIVE[k] for k in kinds))
    except TypeRuleError:
        return None
    return None if out == T.Void else kind_of(out)


def space_instructions(kind: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every (operation, input kinds) pair that type-checks in a program kind."""
    found = []
    for op in ops_for_space(kind):
        for kinds in itertools.product(KINDS, repeat=op.arity):
            try:
                op.output_type(tuple(_REPRESENTATIVE[k] for k in kinds))
            except TypeRuleError:
                continue
            found.append((op.name, kinds))
    return tuple(found)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Static shape of an interpreter: which instructions, how many nodes, slots and constants.

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
    banks: tuple[tuple[str, int], ...]
    """(slot bank, number of slots) for every state bank."""

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(INPUTS[self.kind])

    @property
    def num_registers(self) -> int:
        return len(self.inputs) + self.max_constants + self.max_nodes

    def fits(self, program: Program) -> bool:
        try:
            encode(program, self)
        except LayoutError:
            return False
        return True

    @staticmethod
    def for_programs(programs: Iterable[Program], kind: str | None = None, extra_nodes: int = 0) -> "Layout":
        """The smallest layout that runs all these programs."""
        programs = list(programs)
        kind = kind or programs[0].kind
        used: set = set()
        counts: dict[str, int] = {}
        max_nodes = max_constants = 1
        for program in programs:
            if program.kind != kind:
                raise LayoutError(f"program {program.id} is a {program.kind} program, not {kind}")
            max_nodes = max(max_nodes, program.size + extra_nodes)
            max_constants = max(max_constants, sum(is_constant(a) for n in program.nodes for a in n.args))
            for node, kinds in _node_instructions(program):
                used.add((node.op, kinds))
                bank = state_bank(get_op(node.op), kinds)
                if bank:
                    index = _slot_index(program, node.state)
                    counts[bank] = max(counts.get(bank, 0), index + 1)
        instructions = (NOP,) + tuple(i for i in space_instructions(kind) if i in used)
        return Layout(kind, instructions, max_nodes, max_constants, tuple(sorted(counts.items())))

    @staticmethod
    def for_space(kind: str, max_nodes: int, slots_per_bank: int = 2, max_constants: int = 4) -> "Layout":
        """A layout for every instruction of a space (what a search compiles once)."""
        instructions = space_instructions(kind)
        banks = sorted({state_bank(get_op(name), kinds) for name, kinds in instructions} - {None})
        return Layout(kind, (NOP,) + instructions, max_nodes, max_constants, tuple((b, slots_per_bank) for b in banks))


class LayoutError(ValueError):
    """A program does not fit a layout (too many nodes, slots or constants, or a missing op)."""


@struct.dataclass
class Encoding:
    """A program as arrays (one row per node position); stack these to batch programs."""

    instruction: jax.Array
    args: jax.Array
    slot: jax.Array
    output: jax.Array
    constants: jax.Array


def _input_kinds(program: Program, node) -> tuple[str, ...]:
    analysis = program.analysis
    kinds = []
    for ref in node.args:
        if is_constant(ref):
            kinds.append(SCALAR)
        elif ref in INPUTS[program.kind]:
            kinds.append(kind_of(INPUTS[program.kind][ref]))
        else:
            kinds.append(kind_of(analysis.types[ref]))
    return tuple(kinds)


def _node_instructions(program: Program):
    return [(node, _input_kinds(program, node)) for node in program.analysis.order]


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
    inputs = layout.inputs
    constants: list[float] = []
    registers = {name: i for i, name in enumerate(inputs)}
    first_node_register = len(inputs) + layout.max_constants
    instruction = np.zeros(layout.max_nodes, np.int32)
    args = np.zeros((layout.max_nodes, MAX_ARGS), np.int32)
    slot = np.zeros(layout.max_nodes, np.int32)
    for position, (node, kinds) in enumerate(_node_instructions(program)):
        key = (node.op, kinds)
        if key not in table:
            raise LayoutError(f"program {program.id} uses {node.op}{kinds}, which the layout lacks")
        instruction[position] = table[key]
        for j, ref in enumerate(node.args):
            if is_constant(ref):
                if len(constants) == layout.max_constants:
                    raise LayoutError(f"program {program.id} has more than {layout.max_constants} constants")
                args[position, j] = len(inputs) + len(constants)
                constants.append(float(ref))
            else:
                args[position, j] = registers[ref]
        bank = state_bank(get_op(node.op), kinds)
        if bank:
            index = _slot_index(program, node.state)
            if index >= banks.get(bank, 0):
                raise LayoutError(f"program {program.id} needs {bank} slot {index}; the layout has {banks.get(bank, 0)}")
            slot[position] = index
        registers[node.id] = first_node_register + position
    padded_constants = np.zeros(layout.max_constants, np.float32)
    padded_constants[: len(constants)] = constants
    return Encoding(
        instruction=instruction,
        args=args,
        slot=slot,
        output=np.asarray(registers[program.output], np.int32),
        constants=padded_constants,
    )


def stack_encodings(encodings: list[Encoding]) -> Encoding:
    return jax.tree.map(lambda *xs: np.stack(xs), *encodings)


@struct.dataclass
class InterpreterState:
    params: dict[str, Any]
    """Trainable slot banks: state type → parameters stacked over slots."""
    slots: dict[str, Any]
    """Mutable slot banks (memories, buffers, statistics, noise keys) and the policy."""
    opt_state: Any
    env: EnvSpec = struct.field(pytree_node=False)


def _row_shape(kind: str, env: EnvSpec) -> tuple[int, ...]:
    return _REPRESENTATIVE[kind].row_shape(env.obs_shape, env.action_dim, LIST_LENGTH)


def _tree_index(tree, i):
    return jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), tree)


def _tree_set(tree, i, value):
    return jax.tree.map(lambda x, v: jax.lax.dynamic_update_index_in_dim(x, v, i, 0), tree, value)


def _pad_list(value: ListValue) -> ListValue:
    missing = LIST_LENGTH - value.items.shape[1]
    if missing == 0:
        return value
    pad = [(0, 0), (0, missing)] + [(0, 0)] * (value.items.ndim - 2)
    return ListValue(items=jnp.pad(value.items, pad), mask=jnp.pad(value.mask, (0, missing)))


class Interpreter:
    """``init(key, env, encoding)`` and ``step(state, batch, encoding)`` for any program of a layout."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self._decoded = [(get_op(name), kinds) if name != NOP[0] else (None, ()) for name, kinds in layout.instructions]

    def init(self, key: jax.Array, env: EnvSpec, encoding: Encoding | None = None) -> InterpreterState:
        params, slots = {}, {}
        for bank, count in self.layout.banks:
            type_name = _bank_type(bank)
            state_type = STATE_TYPES[type_name]
            elem = _REPRESENTATIVE[bank.split("_", 1)[1]] if type_name == "Buffer" else None
            built = [state_type.init(slot_key(key, f"{type_name}{k}"), env, elem) for k in range(count)]
            stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[p if (state_type.trainable or state_type.read_only) else s for p, s in built])
            (params if state_type.trainable else slots)[bank] = stacked
        return InterpreterState(params=params, slots=slots, opt_state=optimizer().init(params), env=env)

    def _registers(self, env: EnvSpec, inputs: dict[str, jax.Array], encoding: Encoding):
        b = env.batch_size
        n = self.layout.num_registers
        banks = {}
        for kind in KINDS:
            if kind == OBS:
                continue
            shape = (n, b) + _row_shape(kind, env)
            if kind.startswith("list_"):
                banks[kind] = ListValue(items=jnp.zeros(shape, jnp.float32), mask=jnp.zeros((n, LIST_LENGTH), bool))
            else:
                banks[kind] = jnp.zeros(shape, jnp.float32)
        obs_bank = jnp.zeros((n, b) + tuple(env.obs_shape), jnp.float32)
        for i, name in enumerate(self.layout.inputs):
            kind = kind_of(INPUTS[self.layout.kind][name])
            if kind == OBS:
                obs_bank = obs_bank.at[i].set(inputs[name])
            else:
                banks[kind] = banks[kind].at[i].set(inputs[name])
        first_constant = len(self.layout.inputs)
        constant_rows = jnp.broadcast_to(encoding.constants[:, None], (self.layout.max_constants, b))
        banks[SCALAR] = jax.lax.dynamic_update_slice_in_dim(banks[SCALAR], constant_rows, first_constant, 0)
        return banks, obs_bank

    def _branches(self, env: EnvSpec, params, obs_bank):
        def read(banks, kind, register):
            if kind == OBS:
                return obs_bank[register]
            return _tree_index(banks[kind], register)

        def make(op: OpDef | None, kinds):
            if op is None:
                return lambda operand: operand[0]
            bank = state_bank(op, kinds)
            state_type = STATE_TYPES[op.state] if op.state else None
            out_kind = _instruction_output(op, kinds)

            def branch(operand):
                (banks, slots, loss), args, slot, out = operand
                inputs = tuple(read(banks, k, args[j]) for j, k in enumerate(kinds))
                slot_params = slot_state = None
                if state_type is not None and state_type.trainable:
                    slot_params = _tree_index(params[bank], slot)
                elif state_type is not None and state_type.read_only:
                    slot_params = _tree_index(slots[bank], slot)
                elif state_type is not None:
                    slot_state = _tree_index(slots[bank], slot)
                value, new_state, terms = op.apply(inputs, slot_state, slot_params, env)
                if state_type is not None and not (state_type.trainable or state_type.read_only):
                    slots = {**slots, bank: _tree_set(slots[bank], slot, new_state)}
                if out_kind is not None:
                    if isinstance(value, ListValue):
                        value = _pad_list(value)
                    banks = {**banks, out_kind: _tree_set(banks[out_kind], out, value)}
                for term in terms:
                    loss = loss + jnp.mean(term)
                return banks, slots, loss

            return branch

        return [make(op, kinds) for op, kinds in self._decoded]

    def _run(self, params, slots, inputs, encoding: Encoding, env: EnvSpec):
        banks, obs_bank = self._registers(env, inputs, encoding)
        branches = self._branches(env, params, obs_bank)
        first_node = len(self.layout.inputs) + self.layout.max_constants

        def body(carry, position):
            operand = (carry, encoding.args[position], encoding.slot[position], first_node + position)
            return jax.lax.switch(encoding.instruction[position], branches, operand), None

        carry = (banks, slots, jnp.zeros(()))
        (banks, slots, loss), _ = jax.lax.scan(body, carry, jnp.arange(self.layout.max_nodes))
        return loss, (banks[SCALAR][encoding.output], slots)

    def step(self, state: InterpreterState, batch, encoding: Encoding):
        env = state.env
        inputs = program_inputs(self.layout.kind, batch, env)
        slots = state.slots
        policy_params = getattr(batch, "policy_params", None)
        if policy_params is not None and "AgentPolicy" in slots:
            count = jax.tree.leaves(slots["AgentPolicy"])[0].shape[0]
            slots = {**slots, "AgentPolicy": jax.tree.map(lambda x: jnp.broadcast_to(x, (count,) + x.shape), policy_params)}
        if state.params:
            (loss, (reward, slots)), grads = jax.value_and_grad(self._run, has_aux=True)(
                state.params, slots, inputs, encoding, env
            )
            updates, opt_state = optimizer().update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        else:
            loss, (reward, slots) = self._run(state.params, slots, inputs, encoding, env)
            params, opt_state = state.params, state.opt_state
        reward = jax.lax.stop_gradient(reward)
        metrics = {"loss": loss, "finite": jnp.all(jnp.isfinite(reward)) & jnp.isfinite(loss)}
        return reward, InterpreterState(params=params, slots=slots, opt_state=opt_state, env=env), metrics


@dataclasses.dataclass(frozen=True)
class InterpretedProgram:
    """An encoded program bound to an interpreter: the reward-module protocol of the agent."""

    interpreter: Interpreter
    encoding: Encoding

    def init(self, key: jax.Array, env: EnvSpec) -> InterpreterState:
        return self.interpreter.init(key, env, self.encoding)

    def step(self, state: InterpreterState, batch):
        return self.interpreter.step(state, batch, self.encoding)
