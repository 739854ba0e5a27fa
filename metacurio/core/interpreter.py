"""Programs as data: one compiled function runs any program of a layout.

Compiling a whole training loop per program costs more than running it, so the evaluator traces
this interpreter once per layout (``metacurio.core.layout``) and feeds it programs encoded as
integer arrays. Values live in the layout's typed register banks, state in its slot banks; a
``lax.scan`` over the node positions dispatches every instruction with ``lax.switch``. On a CPU the switch is a real
branch; under ``vmap`` over programs it computes every branch and selects.

Semantics equal the reference compiler's (``compiler.py``) exactly: same order, same
initial weights per canonical slot name, same Adam step; only float rounding may differ.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from metacurio.core.compiler import ProgramState, learning_step, optimizer, program_inputs, slot_key
from metacurio.core.layout import (
    NOP,
    OBS,
    SCALAR,
    WRITABLE,
    Encoding,
    Layout,
    RegisterKind,
    SlotBank,
    bank_element_type,
    input_kinds,
    instruction_output,
    state_bank,
)
from metacurio.core.specs import EnvSpec
from operations import kernels
from operations.base import OpDef
from operations.kernels.values import ListValue
from operations.registry import get_op
from operations.state_types import STATE_TYPES


def _tree_index(tree, i):
    return jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), tree)


def _tree_set(tree, i, value):
    return jax.tree.map(lambda x, v: jax.lax.dynamic_update_index_in_dim(x, v, i, 0), tree, value)


def _zeros(kind: RegisterKind, env: EnvSpec, count: int | None = None):
    lead = () if count is None else (count,)
    shape = lead + (env.batch_size,) + kind.row_shape(env)
    if kind.is_list:
        return ListValue(items=jnp.zeros(shape, jnp.float32), mask=jnp.zeros(lead + (kind.length,), bool))
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
            bank for bank, _ in layout.banks if not (STATE_TYPES[bank.state_type].trainable or STATE_TYPES[bank.state_type].read_only)
        )

    def init(self, key: jax.Array, env: EnvSpec) -> ProgramState:
        params, slots = {}, {}
        for bank, count in self.layout.banks:
            type_name = bank.state_type
            state_type = STATE_TYPES[type_name]
            elem = bank_element_type(bank)
            built = [kernels.init_state(type_name, slot_key(key, f"{type_name}{k}"), env, elem) for k in range(count)]
            parts = [p if state_type.is_network else s for p, s in built]
            stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *parts)
            (params if state_type.trainable else slots)[bank] = stacked
        return ProgramState(params=params, slots=slots, opt_state=optimizer().init(params), env=env)

    def _registers(self, env: EnvSpec, inputs: dict[str, jax.Array], encoding: Encoding):
        banks = {k: _zeros(k, env, self.layout.bank_size(k)) for k in WRITABLE}
        obs_inputs = []
        counters = {k: 0 for k in (*WRITABLE, OBS)}
        for name, k in input_kinds(self.layout.kind).items():
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
        policy = SlotBank("AgentPolicy")
        if policy_params is not None and policy in slots:
            count = jax.tree.leaves(slots[policy])[0].shape[0]
            slots = {**slots, policy: jax.tree.map(lambda x: jnp.broadcast_to(x, (count,) + x.shape), policy_params)}

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
