"""Human-readable dumps of a program: pseudo-code text, Graphviz DOT and SVG."""

from __future__ import annotations

import shutil
import subprocess

from metacurio.core.program import INPUT_SHORT, INPUTS, Program, is_constant
from operations.registry import get_op


class RenderError(RuntimeError):
    pass


def _ref(ref) -> str:
    if is_constant(ref):
        return f"{float(ref):g}"
    return INPUT_SHORT.get(ref, ref)


def _call(node) -> str:
    state = f"[{node.state}]" if node.state else ""
    return f"{node.op}{state}({', '.join(_ref(a) for a in node.args)})"


def to_text(program: Program) -> str:
    """One line per node, forward then update, with types; the reward and the losses marked."""
    analysis = program.analysis
    title = program.name or "program"
    lines = [f"# {title}  (id {program.id}, {program.kind}, {program.size} ops)"]
    if program.description:
        lines.append(f"# {program.description}")
    if program.states:
        lines.append("# state: " + ", ".join(f"{name} = {type_name}" for name, type_name in program.states))
    width = max((len(n.id) for n in program.nodes), default=1)
    call_width = max((len(_call(n)) for n in program.nodes), default=1)
    for phase, nodes in (("forward", program.forward), ("update", program.update)):
        if not nodes:
            continue
        lines.append(f"{phase}:")
        for node in nodes:
            value_type = analysis.types[node.id]
            marks = []
            if node.id == program.output:
                marks.append("← reward")
            if get_op(node.op).produces_loss:
                marks.append("← loss")
            flags = analysis.facts[node.id].flags()
            comment = "  ".join(x for x in (f"{value_type!s:<4}", flags, " ".join(marks)) if x)
            lines.append(f"  {node.id:<{width}} = {_call(node):<{call_width}}  # {comment}")
    return "\n".join(lines) + "\n"


def gradient_edges(program: Program) -> set[tuple[str, str]]:
    """Edges (source, node) along which a loss gradient flows; sources include state slots."""
    analysis = program.analysis
    flowing: set[tuple[str, str]] = set()
    reached: list[str] = [n.id for n in program.nodes if get_op(n.op).produces_loss]
    seen: set[str] = set()
    while reached:
        node_id = reached.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = analysis.nodes[node_id]
        op = get_op(node.op)
        if op.grad_from_params and node.state:
            flowing.add((node.state, node_id))
        for slot, ref in zip(op.inputs, node.args):
            if isinstance(ref, str) and ref in analysis.nodes and slot.passes_gradient and analysis.facts[ref].carries_gradient:
                flowing.add((ref, node_id))
                reached.append(ref)
    return flowing


def to_dot(program: Program) -> str:
    """Graphviz DOT: inputs blue, states grey, the reward green, losses violet, detached edges
    dashed, and edges that carry a loss gradient drawn in violet."""
    analysis = program.analysis
    flowing = gradient_edges(program)
    name = (program.name or program.id).replace('"', "'")
    out = [f'digraph "{name}" {{', "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=11];']
    used_inputs = {a for n in program.nodes for a in n.args if isinstance(a, str) and a in INPUTS[program.kind]}
    for inp in INPUTS[program.kind]:
        if inp in used_inputs:
            out.append(f'  "{inp}" [label="{_ref(inp)}", shape=ellipse, style=filled, fillcolor=lightblue];')
    for state, type_name in program.states:
        out.append(f'  "{state}" [label="{state}\\n{type_name}", shape=box, style="filled,rounded", fillcolor=lightgrey];')
    for node in program.nodes:
        op = get_op(node.op)
        value_type = analysis.types[node.id]
        fill = "palegreen" if node.id == program.output else "violet" if op.produces_loss else "white"
        shape = "box" if node.phase == "forward" else "box3d"
        periph = 2 if value_type.is_list else 1
        label = f"{node.id} = {node.op}\\n{value_type}"
        out.append(f'  "{node.id}" [label="{label}", shape={shape}, style=filled, fillcolor={fill}, peripheries={periph}];')
    constant_count = 0
    for node in program.nodes:
        op = get_op(node.op)
        if node.state:
            colour = "violet" if (node.state, node.id) in flowing else "grey40"
            out.append(f'  "{node.state}" -> "{node.id}" [color={colour}, style=dotted];')
        for slot, ref in zip(op.inputs, node.args):
            if is_constant(ref):
                constant_count += 1
                const_id = f"const{constant_count}"
                out.append(f'  "{const_id}" [label="{float(ref):g}", shape=plaintext];')
                source = const_id
            else:
                source = ref
            attrs = [f'label="{slot.name}"']
            if (source, node.id) in flowing:
                attrs.append("color=violet, penwidth=2")
            if not slot.passes_gradient:
                attrs.append("style=dashed")
            out.append(f'  "{source}" -> "{node.id}" [{", ".join(attrs)}];')
    out.append("}")
    return "\n".join(out) + "\n"


def to_svg(program: Program) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise RenderError("the Graphviz 'dot' binary is not installed; install graphviz or use --format dot")
    result = subprocess.run([dot, "-Tsvg"], input=to_dot(program), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RenderError(f"dot failed: {result.stderr.strip().splitlines()[-1] if result.stderr else result.returncode}")
    return result.stdout
