"""Enumerate every well-typed program of a space up to N operations (SPEC §3.1).

Our grammar is the original's C7 curiosity list (RC4 for combiners) over our registry, with
the reference's bugs fixed (§13.1): the detach operations are reachable, ``Add`` is a true
a + b and commutative, the Gaussian-noise source is generated, norms use one normalisation,
and the budget rule is an exact lower bound (no false terminations). Every pruning rule is a
named predicate of ``search.prune``; the funnel counts the candidates each one removed.
``compat=True`` runs the original's rules instead (``search.compat``), for checking counts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, Sequence

from rich.console import Console
from rich.table import Table

from metacurio.arguments import check_max_ops
from metacurio.core import program_io
from metacurio.core.program import COMBINER, CURIOSITY, INPUTS, Program, ProgramBuilder
from operations import types as T
from operations.base import OpDef, TypeRuleError, collapses, derive_facts
from operations.registry import get_op
from operations.state_types import STATE_TYPES
from operations.types import GradFacts
from search import prune
from search.compat import CompatGrammar
from search.engine import Term, enumerate_grammar

CURIOSITY_OPS = (
    "Add", "RunningNorm", "RunningScale", "Buffer", "NearestNeighbour", "MinusOneTenth", "Noise", "Subtract",
    "SqrtAbs", "PairMLP", "PairToAction", "FeatToAction", "ActionToFeat", "Predict", "Encode", "EncodeDetached",
    "EnsembleEncode", "FeatEnsemble", "FeatActionEnsemble", "AddToLoss", "L2Norm", "L2Distance", "ActionNLL", "Dot",
    "AddVectors", "Detach", "MeanOfReals", "ListVariance", "ListMean", "ListNorms", "ListAverageDistance",
    "ListMinusVector",
)
"""The C7 list in our names (its Counter and two-feature-ensemble entries can never be fed)."""

COMBINER_OPS = (
    "Add", "Max", "Min", "WeightedSum", "RunningNorm", "RunningScale", "Buffer", "Noise", "Subtract", "Multiply",
    "SqrtAbs", "MeanOfReals",
)
"""The RC4 list in our names."""

CURIOSITY_STATES = (
    ("PairNet", 1), ("ObsNet", 2), ("FeatToActionNet", 1), ("ActionToFeatNet", 1), ("PairToActionNet", 1),
    ("ObsEnsemble", 1), ("FeatEnsemble", 1), ("FeatActionEnsemble", 1), ("FeatNet", 1), ("RunningStats", 1),
    ("Buffer", 1), ("KnnMemory", 1), ("NoiseSource", 1),
)
"""State slots a curiosity program may use, as in the original's variable list (two encoders)."""

COMBINER_STATES = (("RunningStats", 1), ("Buffer", 1), ("NoiseSource", 1))

CONSTANTS = tuple(sign * 2.0**-k for k in range(5) for sign in (1, -1))
"""Combiner constants ±2^-k, k = 0..4 (SPEC §4.4)."""


REPEAT_BANS = {
    "RunningNorm": frozenset({"RunningNorm", "RunningScale"}),
    "RunningScale": frozenset({"RunningNorm", "RunningScale"}),
    "MinusOneTenth": frozenset({"MinusOneTenth"}),
    "NearestNeighbour": frozenset({"NearestNeighbour"}),
    "PairMLP": frozenset({"PairMLP"}),
    "PairToAction": frozenset({"PairToAction"}),
}
NORM_LIKE = frozenset({"SqrtAbs", "L2Distance", "L2Norm"})
PAIR_NETS = frozenset({"PairMLP", "PairToAction"})
MUTATING = frozenset({"AddToLoss", "Predict", "NearestNeighbour"})
"""Operations that train a network or write a memory: a curiosity program needs one."""


@dataclasses.dataclass(frozen=True)
class StateSlot:
    type_name: str


@dataclasses.dataclass(frozen=True)
class NamedInput:
    """A slot only one program input may fill."""

    name: str


WEIGHTED_SUM_SLOTS = {("WeightedSum", 1): NamedInput("intrinsic"), ("WeightedSum", 3): NamedInput("extrinsic")}
"""The weighted sum's summands are the two rewards; its weights are free."""


@dataclasses.dataclass
class NativeGrammar:
    """Our enumeration rules over the registry's operations."""

    space: str
    variables: list[Term]
    ops: list[OpDef]
    require_update: bool
    must_use: frozenset
    seed_programs: int = 0
    _outputs: dict = dataclasses.field(default_factory=dict)
    _facts: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def for_space(cls, space: str) -> "NativeGrammar":
        if space == CURIOSITY:
            names, states, require, must = CURIOSITY_OPS, CURIOSITY_STATES, True, frozenset()
            constants: tuple[float, ...] = ()
        elif space == COMBINER:
            names, states, require, must = COMBINER_OPS, COMBINER_STATES, False, frozenset({"intrinsic", "extrinsic"})
            constants = CONSTANTS
        else:
            raise ValueError(f"unknown space {space!r}; expected curiosity or combiner")
        ops = [get_op(n) for n in names]
        variables = [_input(name, t) for name, t in INPUTS[space].items()]
        variables += [_constant(c) for c in constants]
        for type_name, count in states:
            for rank in range(count):
                variables.append(_state(type_name, rank))
        return cls(space, variables, ops, require, must)

    def slots(self, op: OpDef):
        values = tuple(WEIGHTED_SUM_SLOTS.get((op.name, i), s.pattern) for i, s in enumerate(op.inputs))
        return values + ((StateSlot(op.state),) if op.state else ())

    def accepts(self, slot, term: Term) -> bool:
        if isinstance(slot, StateSlot):
            return term.state == slot.type_name
        if isinstance(slot, NamedInput):
            return term.op is None and term.name == slot.name
        return term.state is None and not term.void and slot.accepts(term.type)

    def update_allowed(self, op: OpDef) -> bool:
        return op.update_allowed

    def ordered(self, op: OpDef, args) -> bool:
        return not op.commutative or args[0].key >= args[1].key

    def is_output(self, term: Term) -> bool:
        return term.type.is_scalar

    def over_budget(self, unused: int, remaining: int) -> bool:
        """The original's shape rule, kept on purpose: never more dangling values than operations left.

        It is not a true bound (one binary operation can consume two dangling values), but it
        defines the paper's space; the exact bound doubles the ≤ 5-op space with programs that
        are mostly wide sums of unrelated parts, at five times the enumeration cost.
        """
        return unused > remaining

    def key(self, op: OpDef, args: tuple[Term, ...]) -> str:
        return f"{op.name}(" + ",".join(a.key for a in args) + ")"

    def make(self, op: OpDef, args: tuple[Term, ...]) -> Term | str:
        values = args[: op.arity]
        out = self._output(op, tuple(a.type for a in values))
        if out is None:
            return "type"
        rule = _rejecting_rule(op, values, args)
        if rule:
            return rule
        facts = self._derive(op, tuple(a.facts for a in values), out)
        if op.name == "AddToLoss":
            rule = _loss_rule(values[0])
            if rule:
                return rule
        return Term(
            key="",
            type=out,
            op=op,
            args=args,
            sources=frozenset().union(*(a.sources for a in args)),
            grad=facts.carries_gradient,
            collapse=facts.trivially_minimisable,
            const=facts.constant,
            mutates=op.name in MUTATING,
            void=out == T.Void,
            facts=facts,
        )


    def _output(self, op: OpDef, types: tuple) -> T.ValueType | None:
        key = (op.name, types)
        if key not in self._outputs:
            try:
                self._outputs[key] = op.output_type(types)
            except TypeRuleError:
                self._outputs[key] = None
        return self._outputs[key]

    def _derive(self, op: OpDef, facts: tuple, out: T.ValueType) -> GradFacts:
        key = (op.name, facts, out)
        if key not in self._facts:
            self._facts[key] = derive_facts(op, facts, out)
        return self._facts[key]


def _rejecting_rule(op: OpDef, values: tuple[Term, ...], args: tuple[Term, ...]) -> str | None:
    if values and not prune.not_all_constant(values):
        return "constant inputs"
    # Over the values only when there are two (else kNN(x, Detach(x)) passes thanks to its memory);
    # over value and state for one value, so a network is never applied to its own output.
    mask = tuple(range(len(values))) if len(values) >= 2 else None
    if not prune.larger_input_set(args, mask):
        return "larger input set"
    if len(values) >= 2 and not prune.distinct_inputs(values):
        return "distinct inputs"
    if op.name == "WeightedSum" and not prune.adjacent_inputs_differ(values):
        return "distinct inputs"
    if op.name in REPEAT_BANS and not prune.input_not_from(values, REPEAT_BANS[op.name]):
        return "repeated op"
    if op.name == "SqrtAbs" and not prune.input_not_from(values, NORM_LIKE):
        return "sqrt of a norm"
    if op.name in PAIR_NETS and not prune.concat_order(values):
        return "concat order"
    if op.name == "ListMean" and not prune.input_not_from(values, frozenset({"EnsembleEncode"})):
        return "mean of an encoder ensemble"
    if op.name == "Detach":
        if not prune.carries_gradient(values[0]):
            return "detach needs a gradient"
        if not prune.input_not_from(values, frozenset({"Encode"})):
            return "detach of an encoder"
    if op.name == "ActionNLL" and not prune.carries_gradient(values[0]):
        return "prediction needs a gradient"
    return None


def _loss_rule(value: Term) -> str | None:
    if not prune.carries_gradient(value):
        return "loss needs a gradient"
    if not value.facts.bounded_below:
        return "loss must be bounded below"
    if not prune.not_collapsible(value) or _collapses_through_shared_weights(value):
        return "loss trivially minimisable"
    return None


def _collapses_through_shared_weights(value: Term) -> bool:
    """The loss can reach its minimum by collapsing networks it trains, detached reads included.

    A detached read of a network (``EncodeDetached[N]``) is declared never to collapse, which holds
    for a fixed random network; but when this same loss trains ``N`` through another node, ``N``
    can become constant and the detached read with it. ``L2(Encode[N](s), EncodeDetached[N](s'))``
    is then a loss a constant encoder minimises: over 5× the paper's lifetime its raw reward fell
    below 1 % of its early level in 9 of 10 trials, FAST's in none (results/self-distillation.md).
    """
    trained = _trained_states(value)
    return bool(trained) and _collapsible(value, trained)


def _trained_states(term: Term) -> set[str]:
    """Network state slots whose parameters get gradient from ``term``."""
    found: set[str] = set()
    if term.op is not None and term.op.grad_from_params and term.grad and term.args and term.args[-1].state:
        found.add(term.args[-1].name)
    for arg in term.args:
        found |= _trained_states(arg)
    return found


def _collapsible(term: Term, trained: set[str]) -> bool:
    """``term.collapse``, with detached reads of a network in ``trained`` able to collapse too."""
    op = term.op
    if op is None:
        return term.collapse
    if op.state and not term.grad and term.args and term.args[-1].name in trained:
        return True
    return collapses(op, [_collapsible(a, trained) for a in term.args[: op.arity]]) and term.grad


def _input(name: str, t: T.ValueType) -> Term:
    return Term(key=name, type=t, name=name, sources=frozenset({name}), facts=GradFacts())


def _constant(value: float) -> Term:
    key = repr(value)
    return Term(key=key, type=T.Real, name=key, sources=frozenset({key}), const=True, facts=GradFacts(constant=True), value=value)


def _state(type_name: str, rank: int) -> Term:
    name = f"{type_name}{rank + 1}"
    single = STATE_TYPES[type_name].single_use
    return Term(key=name, type=None, name=name, sources=frozenset({name}), state=type_name, single_use=single, rank=rank)


@dataclasses.dataclass(frozen=True)
class Enumeration:
    space: str
    max_ops: int
    compat: bool
    programs: list[Program]
    """Our programs in enumeration order (empty in compat mode, which only counts, and when
    they went to a sink)."""
    count: int
    """Candidates emitted before behavioural dedup (seed programs included)."""
    reached_output: int
    rejected: dict[str, int]
    seconds: float

    @property
    def funnel(self) -> list[tuple[str, int, str]]:
        rows = [("enumerated", self.count, f"programs of ≤ {self.max_ops} ops, before behavioural dedup")]
        for rule, count in sorted(self.rejected.items(), key=lambda kv: -kv[1]):
            rows.append((f"pruned: {rule}", count, prune.RULES.get(rule, "")))
        return rows


def enumerate_space(
    space: str, max_ops: int, compat: bool = False, sink: Callable[[Program], None] | None = None
) -> Enumeration:
    """Every program of ``space`` with at most ``max_ops`` operations, deterministically ordered.

    With a ``sink``, each distinct program goes to it as it is found and none is kept (only their
    ids, to drop repeats of a canonical form): memory stays flat for any space. Without one, the
    programs come back in ``Enumeration.programs``.
    """
    if max_ops < 1:
        raise ValueError(f"max_ops must be at least 1, got {max_ops}")
    start = time.perf_counter()
    grammar = CompatGrammar(space) if compat else NativeGrammar.for_space(space)
    programs: list[Program] = []
    seen: set[str] = set()
    repeats = 0

    def emit(forward: tuple[Term, ...], update: tuple[Term, ...]) -> None:
        nonlocal repeats
        program = to_program(space, forward, update)
        if program.id in seen:
            repeats += 1
            return
        seen.add(program.id)
        if sink is None:
            programs.append(program)
        else:
            sink(program)

    result = enumerate_grammar(grammar, max_ops, None if compat else emit)
    rejected = dict(result.rejected)
    if not compat:
        rejected["same canonical form"] = repeats
    return Enumeration(
        space=space,
        max_ops=max_ops,
        compat=compat,
        programs=programs,
        count=(len(seen) if not compat else result.count) + grammar.seed_programs,
        reached_output=result.reached_output,
        rejected=rejected,
        seconds=time.perf_counter() - start,
    )


def distinct_programs(programs) -> list[Program]:
    """The first program of each id, in order: programs that differ only by which of two same-typed
    state slots they use are one program."""
    seen: set[str] = set()
    kept = []
    for program in programs:
        if program.id not in seen:
            seen.add(program.id)
            kept.append(program)
    return kept


def to_program(space: str, forward: Sequence[Term], update: Sequence[Term]) -> Program:
    """Translate an enumerated node list into a validated program of our DSL."""
    builder = ProgramBuilder(space)
    ids: dict[int, object] = {}
    declared: set[str] = set()
    for phase, terms in (("forward", forward), ("update", update)):
        for term in terms:
            values = term.args[: term.op.arity]
            refs = [_ref(a, ids) for a in values]
            state = None
            if term.op.state:
                slot = term.args[term.op.arity]
                if slot.name not in declared:
                    builder.state(slot.name, slot.state)
                    declared.add(slot.name)
                state = slot.name
            add = builder.forward if phase == "forward" else builder.update
            ids[id(term)] = add(term.op.name, *refs, state=state)
    return builder.build(output=ids[id(forward[-1])])


def _ref(term: Term, ids: dict[int, object]):
    if id(term) in ids:
        return ids[id(term)]
    if term.value is not None:
        return term.value
    return term.name


class ProgramWriter:
    """Programs streamed to a JSON-lines file, one per line in our format, as they come; the file
    appears under its name only once complete (an interrupted run leaves no truncated file)."""

    def __init__(self, path: Path):
        self.path = path
        self._partial = path.with_name(path.name + ".partial")
        self._file = None

    def __enter__(self) -> "ProgramWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._partial.open("w", encoding="utf-8")
        return self

    def __call__(self, program: Program) -> None:
        self._file.write(json.dumps(program_io.to_dict(program), separators=(",", ":"), ensure_ascii=False) + "\n")

    def __exit__(self, kind, error, traceback) -> None:
        self._file.close()
        if kind is None:
            self._partial.replace(self.path)
        else:
            self._partial.unlink(missing_ok=True)


def add_parser(subparsers) -> None:
    """Register ``metacurio enumerate``."""
    parser = subparsers.add_parser("enumerate", help="enumerate a program space and print the pruning funnel")
    parser.add_argument("--space", choices=(CURIOSITY, COMBINER), default=CURIOSITY)
    parser.add_argument("--max-ops", type=int, default=4, help="largest program size (the paper's search: 7)")
    parser.add_argument("--compat", action="store_true", help="the original code's rules, bugs included (counts only)")
    parser.add_argument("--out", help="run directory for programs.jsonl and funnel.json (default runs/enumerate-SPACE-N)")
    parser.set_defaults(func=run_cli)


def run_cli(args) -> None:

    check_max_ops(args.max_ops, args.space)
    suffix = "-compat" if args.compat else ""
    out = Path(args.out or f"runs/enumerate-{args.space}-{args.max_ops}{suffix}")
    out.mkdir(parents=True, exist_ok=True)
    with ProgramWriter(out / "programs.jsonl") if not args.compat else contextlib.nullcontext() as writer:
        found = enumerate_space(args.space, args.max_ops, compat=args.compat, sink=writer)
    mode = "compat (the original's rules)" if args.compat else "metacurio rules"
    table = Table(title=f"{args.space} programs of ≤ {args.max_ops} ops, {mode}")
    for column in ("step", "count", "meaning"):
        table.add_column(column, overflow="fold")
    for step, count, detail in found.funnel:
        table.add_row(step, f"{count:,}", detail)
    console = Console()
    console.print(table)
    console.print(f"reached an output {found.reached_output:,} times; {found.seconds:.1f} s")
    funnel = {"space": args.space, "max_ops": args.max_ops, "compat": args.compat, "seconds": found.seconds}
    funnel["funnel"] = [{"step": s, "count": c, "detail": d} for s, c, d in found.funnel]
    (out / "funnel.json").write_text(json.dumps(funnel, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    console.print(f"wrote {out / 'funnel.json'}")
    if not args.compat:
        console.print(f"wrote {out / 'programs.jsonl'}")
