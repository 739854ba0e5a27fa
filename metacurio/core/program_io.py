"""Versioned JSON for programs (schema: metacurio/PROGRAM_FORMAT.md), loaded strictly.

Loading checks the document's shape field by field, then validates the program completely, so a
program that loads is a program that runs. Programs are data: never pickled, never executed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metacurio import arguments
from metacurio.core.program import FORWARD, UPDATE, Node, Program, ProgramError, is_constant, validate

REFERENCE_DIRS = (Path("results/programs"), Path(__file__).resolve().parents[2] / "results" / "programs")
"""Where reference programs are found by name: the working directory's results, then the project's."""
FORMAT = "metacurio.program"
VERSION = 1
_TOP_KEYS = {"format", "version", "kind", "name", "description", "states", "forward", "update", "output"}
_REQUIRED = {"format", "version", "kind", "states", "forward", "output"}
_NODE_KEYS = {"id", "op", "args", "state"}


def to_dict(program: Program) -> dict[str, Any]:
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "kind": program.kind}
    if program.name:
        doc["name"] = program.name
    if program.description:
        doc["description"] = program.description
    doc["states"] = dict(program.states)
    doc["forward"] = [_node_dict(n) for n in program.forward]
    doc["update"] = [_node_dict(n) for n in program.update]
    doc["output"] = program.output
    return doc


def _node_dict(node: Node) -> dict[str, Any]:
    d: dict[str, Any] = {"id": node.id, "op": node.op, "args": list(node.args)}
    if node.state is not None:
        d["state"] = node.state
    return d


def to_json(program: Program) -> str:
    return json.dumps(to_dict(program), indent=2, ensure_ascii=False) + "\n"


def from_dict(doc: Any) -> Program:
    if not isinstance(doc, dict):
        raise ProgramError("a program document must be a JSON object")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise ProgramError(f"unknown field(s) {', '.join(sorted(unknown))}")
    missing = _REQUIRED - set(doc)
    if missing:
        raise ProgramError(f"missing field(s) {', '.join(sorted(missing))}")
    if doc["format"] != FORMAT:
        raise ProgramError(f"format must be {FORMAT!r}, got {doc['format']!r}")
    if doc["version"] != VERSION:
        raise ProgramError(f"unsupported program format version {doc['version']!r} (this metacurio reads {VERSION})")
    for field in ("kind", "output"):
        _expect(isinstance(doc[field], str), f"{field} must be a string")
    for field in ("name", "description"):
        _expect(doc.get(field) is None or isinstance(doc[field], str), f"{field} must be a string")
    states = doc["states"]
    _expect(isinstance(states, dict), "states must be an object mapping names to state types")
    for name, type_name in states.items():
        _expect(isinstance(type_name, str), f"state {name!r} must name a state type")
    nodes = [_node(n, FORWARD) for n in _list(doc, "forward")]
    nodes += [_node(n, UPDATE) for n in _list(doc, "update")]
    program = Program(
        kind=doc["kind"],
        states=tuple(states.items()),
        nodes=tuple(nodes),
        output=doc["output"],
        name=doc.get("name"),
        description=doc.get("description"),
    )
    return validate(program)


def _list(doc: dict, field: str) -> list:
    value = doc.get(field, [])
    _expect(isinstance(value, list), f"{field} must be a list of nodes")
    return value


def _node(d: Any, phase: str) -> Node:
    _expect(isinstance(d, dict), f"each {phase} node must be an object")
    unknown = set(d) - _NODE_KEYS
    _expect(not unknown, f"{phase} node {d.get('id')!r} has unknown field(s) {', '.join(sorted(unknown))}")
    for field in ("id", "op", "args"):
        _expect(field in d, f"{phase} node {d.get('id')!r} is missing {field!r}")
    _expect(isinstance(d["id"], str), f"{phase} node id {d['id']!r} must be a string")
    _expect(isinstance(d["op"], str), f"node {d['id']!r}: op must be a string")
    _expect(isinstance(d["args"], list), f"node {d['id']!r}: args must be a list")
    for arg in d["args"]:
        _expect(isinstance(arg, str) or is_constant(arg), f"node {d['id']!r}: argument {arg!r} must be a name or a number")
    state = d.get("state")
    _expect(state is None or isinstance(state, str), f"node {d['id']!r}: state must be a string")
    return Node(id=d["id"], op=d["op"], args=tuple(d["args"]), state=state, phase=phase)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ProgramError(message)


def from_json(text: str) -> Program:
    try:
        doc = arguments.loads(text, "the program")
    except arguments.ArgumentError as err:
        raise ProgramError(str(err)) from None
    except json.JSONDecodeError as err:
        raise ProgramError(f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    return from_dict(doc)


def load(path: str | Path) -> Program:
    path = Path(path)
    try:
        text = arguments.read_text(path, "program file")
    except arguments.ArgumentError as err:
        raise ProgramError(str(err)) from None
    except FileNotFoundError:
        raise ProgramError(f"no such program file: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProgramError(f"cannot read {path}: {err}") from None
    try:
        return from_json(text)
    except ProgramError as err:
        raise ProgramError(f"{path}: {err}") from None


def save(program: Program, path: str | Path) -> None:
    Path(path).write_text(to_json(program), encoding="utf-8")


def resolve(spec: str) -> Program:
    """A program file path, or the name of a reference program in results/programs/."""
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return load(path)
    for folder in REFERENCE_DIRS:
        candidate = folder / f"{spec}.json"
        if candidate.exists():
            return load(candidate)
    raise ProgramError(f"no program file or reference program named {spec!r}")
