"""Compile one program to pure JAX ``init`` and ``step`` functions (the reference semantics).

Per call on a batch of transitions: compute the reward with the current parameters, then take
one Adam step (lr 0.005) on the sum of the batch means of the loss terms; memories, buffers and
statistics update functionally. This per-program path is the oracle any faster evaluator must
match exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from metacurio.core.program import COMBINER, INPUTS, Program, is_constant
from metacurio.core.specs import CombinerBatch, CuriosityBatch, EnvSpec
from operations import kernels
from operations.registry import get_op, get_state_type

LEARNING_RATE = 0.005
"""The curiosity optimizer's Adam learning rate (the original's LEARNING_RATE)."""


@struct.dataclass
class ProgramState:
    """Everything a program carries between calls."""

    params: dict[str, Any]
    """Trainable parameters of the program's networks, by state-slot name (by slot bank, stacked
    over its slots, in the interpreter)."""
    slots: dict[str, Any]
    """Non-trainable state, keyed the same way: memories, buffers, statistics, noise keys, a policy."""
    opt_state: Any
    env: EnvSpec = struct.field(pytree_node=False)


def slot_key(key: jax.Array, canonical_name: str) -> jax.Array:
    """The same canonical slot name gets the same key in every program (common random numbers)."""
    digest = int.from_bytes(hashlib.sha256(canonical_name.encode()).digest()[:4], "little") & 0x7FFFFFFF
    return jax.random.fold_in(key, digest)


def optimizer() -> optax.GradientTransformation:
    return optax.adam(LEARNING_RATE)


@dataclasses.dataclass(frozen=True)
class CompiledProgram:
    program: Program
    init: Callable[[jax.Array, EnvSpec], ProgramState]
    step: Callable[[ProgramState, Any], tuple[jax.Array, ProgramState, dict[str, jax.Array]]]


def compile_program(program: Program) -> CompiledProgram:
    analysis = program.analysis
    order = analysis.order
    has_losses = any(get_op(n.op).produces_loss for n in order)
    buffer_elem = {n.state: _arg_type(program, n.args[0]) for n in order if n.op == "Buffer"}
    slot_roles = {name: _role(get_state_type(t)) for name, t in analysis.state_types.items()}

    def init(key: jax.Array, env: EnvSpec) -> ProgramState:
        params, slots = {}, {}
        for name, type_name in analysis.state_types.items():
            state_type = get_state_type(type_name)
            p, s = kernels.init_state(type_name, slot_key(key, analysis.canonical_state_names[name]), env, buffer_elem.get(name))
            if state_type.trainable:
                params[name] = p
            else:
                slots[name] = p if state_type.read_only else s
        return ProgramState(params=params, slots=slots, opt_state=optimizer().init(params), env=env)

    def run(params, slots, values, env):
        slots = dict(slots)
        losses = []
        for node in order:
            args = tuple(_value(values, ref, env) for ref in node.args)
            role = slot_roles.get(node.state)
            slot_params = params[node.state] if role == "trainable" else slots[node.state] if role == "read_only" else None
            slot_state = slots[node.state] if role == "mutable" else None
            out, new_state, terms = kernels.apply_fn(node.op)(args, slot_state, slot_params, env)
            if role == "mutable":
                slots[node.state] = new_state
            values[node.id] = out
            losses.extend(jnp.mean(t) for t in terms)
        total = sum(losses, jnp.zeros(()))
        return total, (values[program.output], slots)

    def step(state: ProgramState, batch) -> tuple[jax.Array, ProgramState, dict]:
        values = program_inputs(program.kind, batch, state.env)
        slots = _with_agent_policy(state.slots, analysis.state_types, batch)
        return learning_step(run, state, slots, values, has_losses)

    return CompiledProgram(program=program, init=init, step=step)


def learning_step(run, state: ProgramState, slots, inputs, has_losses: bool):
    """The reward with the current parameters, then one Adam step on the summed losses.

    ``run(params, slots, inputs, env) -> (loss, (reward, new_slots))`` is one forward pass.
    """
    env = state.env
    if has_losses and state.params:
        (loss, (reward, slots)), grads = jax.value_and_grad(run, has_aux=True)(state.params, slots, inputs, env)
        updates, opt_state = optimizer().update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
    else:
        loss, (reward, slots) = run(state.params, slots, inputs, env)
        params, opt_state = state.params, state.opt_state
    reward = jax.lax.stop_gradient(reward)
    metrics = {"loss": loss, "finite": jnp.all(jnp.isfinite(reward)) & jnp.isfinite(loss)}
    return reward, ProgramState(params=params, slots=slots, opt_state=opt_state, env=env), metrics


def _role(state_type) -> str:
    if state_type.trainable:
        return "trainable"
    return "read_only" if state_type.read_only else "mutable"


def _arg_type(program: Program, ref):
    if ref in INPUTS[program.kind]:
        return INPUTS[program.kind][ref]
    return program.analysis.types[ref]


def _value(values: dict, ref, env: EnvSpec):
    if is_constant(ref):
        return jnp.full((env.batch_size,), float(ref), jnp.float32)
    return values[ref]


def program_inputs(kind: str, batch, env: EnvSpec) -> dict[str, jax.Array]:
    """The program's input values by name, as float32 batches."""
    if kind == COMBINER:
        if not isinstance(batch, CombinerBatch):
            raise TypeError("a combiner program is called on a CombinerBatch")
        shape = (env.batch_size,)
        return {
            "intrinsic": jnp.broadcast_to(batch.intrinsic, shape).astype(jnp.float32),
            "extrinsic": jnp.broadcast_to(batch.extrinsic, shape).astype(jnp.float32),
            "tau": jnp.broadcast_to(batch.tau, shape).astype(jnp.float32),
        }
    if not isinstance(batch, CuriosityBatch):
        raise TypeError("a curiosity program is called on a CuriosityBatch")
    return {
        "obs": jnp.asarray(batch.obs, jnp.float32),
        "action": jnp.asarray(batch.action, jnp.float32),
        "next_obs": jnp.asarray(batch.next_obs, jnp.float32),
    }


def _with_agent_policy(slots: dict, state_types: dict[str, str], batch) -> dict:
    policy_params = getattr(batch, "policy_params", None)
    if policy_params is None:
        return slots
    return {name: policy_params if get_state_type(state_types[name]).read_only else s for name, s in slots.items()}
