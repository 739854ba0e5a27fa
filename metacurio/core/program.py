"""The program IR: an immutable typed DAG, its validation, canonical form and stable id.

A program has fixed inputs (s, a, s' for curiosity programs; intrinsic and extrinsic reward and
τ for reward combiners), named state slots (networks, memories, statistics), op nodes split in
a forward part (computes the reward) and an update part (builds extra losses), one ℝ output
node, and loss terms (from AddToLoss and Predict nodes). Arguments reference inputs, nodes, or
numeric constants.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import re
from typing import Union

from operations import types as T
from operations.base import OpDef, TypeRuleError, derive_facts
from operations.registry import UnknownOpError, get_op, get_state_type
from operations.types import GradFacts, ValueType

CURIOSITY = "curiosity"
COMBINER = "combiner"
FORWARD = "forward"
UPDATE = "update"

INPUTS: dict[str, dict[str, ValueType]] = {
    CURIOSITY: {"obs": T.Obs, "action": T.Action, "next_obs": T.Obs},
    COMBINER: {"intrinsic": T.Real, "extrinsic": T.Real, "tau": T.Real},
}
INPUT_SHORT = {"obs": "s", "action": "a", "next_obs": "s'", "intrinsic": "i", "extrinsic": "e", "tau": "τ"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_']{0,39}$")
_MAX_STATE_PERMUTATIONS = 40320

Ref = Union[str, float]


class ProgramError(ValueError):
    """A program is malformed; the message names the problem in one line."""


@dataclasses.dataclass(frozen=True)
class Node:
    id: str
    op: str
    args: tuple[Ref, ...]
    state: str | None = None
    phase: str = FORWARD


@dataclasses.dataclass(frozen=True)
class Program:
    kind: str
    states: tuple[tuple[str, str], ...]
    nodes: tuple[Node, ...]
    output: str | None
    name: str | None = None
    description: str | None = None

    @functools.cached_property
    def analysis(self) -> "Analysis":
        return analyse(self)

    @property
    def id(self) -> str:
        return self.analysis.program_id

    def node(self, node_id: str) -> Node:
        return self.analysis.nodes[node_id]

    @property
    def forward(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.phase == FORWARD)

    @property
    def update(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.phase == UPDATE)

    @property
    def size(self) -> int:
        return len(self.nodes)

    def loss_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if get_op(n.op).produces_loss)


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Everything validation derives: execution order, types, gradient facts, canonical form."""

    order: tuple[Node, ...]
    nodes: dict[str, Node]
    types: dict[str, ValueType]
    facts: dict[str, GradFacts]
    state_types: dict[str, str]
    canonical_state_names: dict[str, str]
    canonical_text: str

    @property
    def program_id(self) -> str:
        return hashlib.sha256(self.canonical_text.encode()).hexdigest()[:12]


def is_constant(ref: Ref) -> bool:
    return isinstance(ref, (int, float)) and not isinstance(ref, bool)


def analyse(program: Program) -> Analysis:
    """Validate a program completely; raise ProgramError with a precise message on the first fault."""
    if program.kind not in INPUTS:
        raise ProgramError(f"unknown program kind {program.kind!r}; expected curiosity or combiner")
    inputs = INPUTS[program.kind]
    state_types = _check_states(program, inputs)
    nodes = _check_nodes(program, inputs, state_types)
    order = _topological_order(program, nodes, inputs)
    types, facts = _infer(program, order, inputs, state_types)
    _check_output(program, nodes, types)
    _check_usage(program, nodes, types, state_types)
    _check_losses(program, nodes, types, facts)
    canonical_names, text = _canonical(program, nodes, state_types)
    return Analysis(
        order=order,
        nodes=nodes,
        types=types,
        facts=facts,
        state_types=state_types,
        canonical_state_names=canonical_names,
        canonical_text=text,
    )


def validate(program: Program) -> Program:
    program.analysis  # noqa: B018 - analysis raises on any fault
    return program


def _check_states(program: Program, inputs) -> dict[str, str]:
    state_types: dict[str, str] = {}
    for name, type_name in program.states:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ProgramError(f"state name {name!r} is not a valid identifier")
        if name in state_types or name in inputs:
            raise ProgramError(f"state name {name!r} is declared twice or shadows an input")
        try:
            get_state_type(type_name)
        except UnknownOpError as err:
            raise ProgramError(f"state {name!r}: {err}") from None
        state_types[name] = type_name
    return state_types


def _check_nodes(program: Program, inputs, state_types) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for node in program.nodes:
        if not isinstance(node.id, str) or not _NAME.match(node.id):
            raise ProgramError(f"node id {node.id!r} is not a valid identifier")
        if node.id in nodes or node.id in inputs or node.id in state_types:
            raise ProgramError(f"node id {node.id!r} is used twice or shadows an input or state")
        if node.phase not in (FORWARD, UPDATE):
            raise ProgramError(f"node {node.id!r} has unknown phase {node.phase!r}")
        try:
            op = get_op(node.op)
        except UnknownOpError as err:
            raise ProgramError(f"node {node.id!r}: {err}") from None
        if program.kind not in op.spaces:
            raise ProgramError(f"node {node.id!r}: {op.name} is not available in {program.kind} programs")
        if len(node.args) != op.arity:
            raise ProgramError(f"node {node.id!r}: {op.name} takes {op.arity} arguments, got {len(node.args)}")
        _check_node_state(node, op, state_types)
        if node.phase == UPDATE and not op.update_allowed:
            raise ProgramError(f"node {node.id!r}: {op.name} may only appear in the forward part")
        nodes[node.id] = node
    for node in program.nodes:
        for ref in node.args:
            if is_constant(ref):
                if not math.isfinite(ref):
                    raise ProgramError(f"node {node.id!r} has a non-finite constant {ref!r}")
            elif not isinstance(ref, str) or (ref not in nodes and ref not in inputs):
                raise ProgramError(f"node {node.id!r} refers to unknown value {ref!r} (dangling reference)")
    return nodes


def _check_node_state(node: Node, op: OpDef, state_types) -> None:
    if op.state is None:
        if node.state is not None:
            raise ProgramError(f"node {node.id!r}: {op.name} takes no state, got {node.state!r}")
        return
    if node.state is None:
        raise ProgramError(f"node {node.id!r}: {op.name} needs a {op.state} state slot")
    if node.state not in state_types:
        raise ProgramError(f"node {node.id!r} uses undeclared state {node.state!r}")
    if state_types[node.state] != op.state:
        raise ProgramError(
            f"node {node.id!r}: {op.name} needs a {op.state} state, but {node.state!r} is a {state_types[node.state]}"
        )


def _topological_order(program: Program, nodes: dict[str, Node], inputs) -> tuple[Node, ...]:
    """Declared order when it is valid, else a dependency order; raises on cycles."""
    done: set[str] = set()
    visiting: list[str] = []
    order: list[Node] = []

    def visit(node_id: str) -> None:
        if node_id in done:
            return
        if node_id in visiting:
            cycle = visiting[visiting.index(node_id) :] + [node_id]
            raise ProgramError(f"cycle through nodes {' → '.join(cycle)}")
        visiting.append(node_id)
        node = nodes[node_id]
        for ref in node.args:
            if isinstance(ref, str) and ref in nodes:
                if node.phase == FORWARD and nodes[ref].phase == UPDATE:
                    raise ProgramError(f"forward node {node_id!r} uses update node {ref!r}")
                visit(ref)
        visiting.pop()
        done.add(node_id)
        order.append(node)

    for node in program.nodes:
        if node.phase == FORWARD:
            visit(node.id)
    for node in program.nodes:
        visit(node.id)
    return tuple(order)


def _ref_type_and_facts(ref: Ref, inputs, types, facts) -> tuple[ValueType, GradFacts]:
    if is_constant(ref):
        return T.NonNeg if ref >= 0 else T.Real, GradFacts(constant=True, bounded_below=ref >= 0)
    if ref in inputs:
        return inputs[ref], GradFacts(bounded_below=False)
    return types[ref], facts[ref]


def _infer(program: Program, order, inputs, state_types):
    types: dict[str, ValueType] = {}
    facts: dict[str, GradFacts] = {}
    for node in order:
        op = get_op(node.op)
        arg_types, arg_facts = zip(*[_ref_type_and_facts(r, inputs, types, facts) for r in node.args]) if node.args else ((), ())
        try:
            out = op.output_type(tuple(arg_types))
        except TypeRuleError as err:
            raise ProgramError(f"node {node.id!r}: type mismatch: {err}") from None
        types[node.id] = out
        facts[node.id] = derive_facts(op, tuple(arg_facts), out)
    return types, facts


def _check_usage(program: Program, nodes, types, state_types) -> None:
    consumers: dict[str, int] = {node_id: 0 for node_id in nodes}
    for node in program.nodes:
        for ref in node.args:
            if isinstance(ref, str) and ref in consumers:
                consumers[ref] += 1
    for node in program.nodes:
        if node.id != program.output and types[node.id] != T.Void and consumers[node.id] == 0:
            raise ProgramError(f"node {node.id!r} is computed but never used")
    users: dict[str, list[str]] = {name: [] for name in state_types}
    for node in program.nodes:
        if node.state is not None:
            users[node.state].append(node.id)
    for name, used_by in users.items():
        if not used_by:
            raise ProgramError(f"state {name!r} is declared but never used")
        if get_state_type(state_types[name]).single_use and len(used_by) > 1:
            raise ProgramError(
                f"state {name!r} ({state_types[name]}) is used by {len(used_by)} nodes ({', '.join(used_by)}); it can have one"
            )


def _check_output(program: Program, nodes, types) -> None:
    if program.output is None:
        raise ProgramError("program has no output")
    if program.output not in nodes:
        raise ProgramError(f"output {program.output!r} is not a node of the program")
    if nodes[program.output].phase != FORWARD:
        raise ProgramError(f"output {program.output!r} must be a forward node")
    out_type = types[program.output]
    if not T.is_subtype(out_type, T.Real):
        raise ProgramError(f"output {program.output!r} has type {out_type}; the reward must be ℝ")


def _check_losses(program: Program, nodes, types, facts) -> None:
    for node in program.nodes:
        if node.op != "AddToLoss":
            continue
        ref = node.args[0]
        label = repr(ref)
        if is_constant(ref) or ref not in nodes:
            raise ProgramError(f"loss {node.id!r} minimises {label}, which carries no gradient")
        if not facts[ref].carries_gradient:
            raise ProgramError(f"loss {node.id!r} minimises {label}, which carries no gradient")
        if not facts[ref].bounded_below:
            raise ProgramError(f"loss {node.id!r} minimises {label} of type {types[ref]}, which is not bounded below")


def _node_keys(nodes, state_names: dict[str, str]) -> dict[str, str]:
    """A structural key per node: its whole expression, commutative arguments sorted."""
    keys: dict[str, str] = {}

    def key(ref: Ref) -> str:
        if is_constant(ref):
            return repr(float(ref))
        if ref not in nodes:
            return ref
        if ref not in keys:
            node = nodes[ref]
            args = [key(a) for a in node.args]
            if get_op(node.op).commutative:
                args.sort()
            state = f"[{state_names[node.state]}]" if node.state else ""
            keys[ref] = f"{node.phase[0]}:{node.op}{state}({','.join(args)})"
        return keys[ref]

    for node_id in nodes:
        key(node_id)
    return keys


def _serialise_canonical(program: Program, nodes, state_types, state_names) -> str:
    keys = _node_keys(nodes, state_names)
    depth = _depths(nodes)
    ordered = sorted(nodes.values(), key=lambda n: (n.phase != FORWARD, depth[n.id], keys[n.id]))
    canonical_id = {n.id: f"n{i}" for i, n in enumerate(ordered)}

    def arg_key(ref: Ref) -> str:
        return keys.get(ref, repr(float(ref)) if is_constant(ref) else ref)

    def canonical_ref(ref: Ref):
        return float(ref) if is_constant(ref) else canonical_id.get(ref, ref)

    body = []
    for n in ordered:
        args = sorted(n.args, key=arg_key) if get_op(n.op).commutative else list(n.args)
        body.append([n.phase, n.op, state_names[n.state] if n.state else None, [canonical_ref(a) for a in args]])
    states = sorted((state_names[name], state_types[name]) for name in state_types)
    return json.dumps([program.kind, states, body, canonical_id[program.output]], separators=(",", ":"))


def _depths(nodes) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(node_id: str) -> int:
        if node_id not in depth:
            deps = [visit(r) for r in nodes[node_id].args if isinstance(r, str) and r in nodes]
            depth[node_id] = 1 + max(deps, default=0)
        return depth[node_id]

    for node_id in nodes:
        visit(node_id)
    return depth


def _canonical(program: Program, nodes, state_types) -> tuple[dict[str, str], str]:
    """Minimum serialisation over all renamings of same-typed state slots.

    Renaming slots of one type among themselves gives the same program, so the canonical text is
    the smallest serialisation over those permutations; everything else is already ordered.
    """
    by_type: dict[str, list[str]] = {}
    for name, type_name in state_types.items():
        by_type.setdefault(type_name, []).append(name)
    groups = sorted(by_type.items())
    choices = [list(itertools.permutations(names)) for _, names in groups]
    if math.prod(len(c) for c in choices) > _MAX_STATE_PERMUTATIONS:
        raise ProgramError("program has too many state slots of one type to canonicalise")
    best: tuple[str, dict[str, str]] | None = None
    for assignment in itertools.product(*choices):
        names = {
            slot: f"{type_name}{i}" for (type_name, _), perm in zip(groups, assignment) for i, slot in enumerate(perm)
        }
        text = _serialise_canonical(program, nodes, state_types, names)
        if best is None or text < best[0]:
            best = (text, names)
    assert best is not None
    return best[1], best[0]


class ProgramBuilder:
    """Write programs by hand: ``b.forward(op, *args, state=...)`` returns the new node's id."""

    def __init__(self, kind: str = CURIOSITY, name: str | None = None, description: str | None = None):
        if kind not in INPUTS:
            raise ProgramError(f"unknown program kind {kind!r}; expected curiosity or combiner")
        self.kind = kind
        self.name = name
        self.description = description
        self._states: list[tuple[str, str]] = []
        self._nodes: list[Node] = []

    def state(self, name: str, type_name: str) -> str:
        self._states.append((name, type_name))
        return name

    def forward(self, op: str, *args: Ref, state: str | None = None, id: str | None = None) -> str:
        return self._add(op, args, state, id, FORWARD)

    def update(self, op: str, *args: Ref, state: str | None = None, id: str | None = None) -> str:
        return self._add(op, args, state, id, UPDATE)

    def _add(self, op: str, args, state, node_id, phase) -> str:
        node_id = node_id or f"v{len(self._nodes)}"
        self._nodes.append(Node(id=node_id, op=op, args=tuple(args), state=state, phase=phase))
        return node_id

    def build(self, output: str) -> Program:
        return validate(
            Program(
                kind=self.kind,
                states=tuple(self._states),
                nodes=tuple(self._nodes),
                output=output,
                name=self.name,
                description=self.description,
            )
        )

