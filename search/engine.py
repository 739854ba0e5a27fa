"""The typed depth-first enumerator shared by our grammar and the original's (compat) grammar.

A grammar supplies the variables (program inputs and state slots), the operations, and one
function that builds a node from an operation and its arguments or names the pruning rule that
rejects it. The engine owns everything the two grammars share (reference §5.1):

- two stages: forward nodes until the first scalar node that leaves no intermediate unused
  (that node is the reward), then update nodes that build losses;
- canonical order: each node's key must exceed the previous node's in (length, text) order, so
  every DAG is produced in exactly one node order, and no key may repeat (no sub-expression is
  computed twice);
- state rules: a single-use state (memory, buffer, statistics) feeds one node; of several slots
  of the same state type, slot k is usable only once slot k-1 is; the update stage may only use
  states the forward stage already uses;
- emission: a curiosity program must train or write something (a mutating node); the update
  stage emits whenever it ends in a mutating node with nothing dangling.

Every rejected candidate is counted under the rule that rejected it.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from typing import Any, Callable, Protocol, Sequence

FORWARD = "forward"
UPDATE = "update"


@dataclasses.dataclass(eq=False)
class Term:
    """A variable or a node of the program being built."""

    key: str
    type: Any
    op: Any = None
    args: tuple["Term", ...] = ()
    sources: frozenset = frozenset()
    """Variables this value depends on (itself, for a variable)."""
    grad: bool = False
    collapse: bool = False
    const: bool = False
    mutates: bool = False
    void: bool = False
    state: str | None = None
    """For a state variable: its state type (None for program inputs and nodes)."""
    single_use: bool = False
    rank: int = 0
    """For a state variable: its index among the variables of the same state type."""
    name: str = ""
    """For a variable: the name programs use for it."""
    facts: Any = None
    """The grammar's own record of gradient facts, if it keeps one."""
    value: float | None = None
    """For a numeric constant: its value."""
    kind: int = -1
    """Set by the enumerator: an id shared by terms that fit the same slots."""


class Grammar(Protocol):
    variables: Sequence[Term]
    ops: Sequence[Any]
    require_update: bool
    """Curiosity programs must mutate state (train a network or write a memory)."""
    must_use: frozenset
    """Names of inputs every program must read (the combiner's two rewards)."""

    def slots(self, op) -> Sequence[Any]: ...

    def accepts(self, slot, term: Term) -> bool: ...

    def update_allowed(self, op) -> bool: ...

    def ordered(self, op, args: tuple[Term, ...]) -> bool: ...

    def key(self, op, args: tuple[Term, ...]) -> str: ...

    def make(self, op, args: tuple[Term, ...]) -> Term | str: ...

    def is_output(self, term: Term) -> bool: ...

    def over_budget(self, unused: int, remaining: int) -> bool: ...


def key_greater(a: str, b: str) -> bool:
    """(length, text) order: a longer key is greater, so every node sorts after its inputs."""
    return len(a) > len(b) or (len(a) == len(b) and a > b)


Emit = Callable[[tuple[Term, ...], tuple[Term, ...]], None]
"""Receives each program as it is found: (forward nodes, update nodes), in enumeration order."""


@dataclasses.dataclass
class Result:
    rejected: collections.Counter
    """Candidates rejected per rule."""
    count: int
    """Programs emitted (kept or not)."""
    reached_output: int
    seconds: float


class Enumerator:
    def __init__(self, grammar: Grammar, max_ops: int, emit: Emit | None = None):
        self.g = grammar
        self.max_ops = max_ops
        self.emit = emit
        self.rejected: collections.Counter = collections.Counter()
        self.count = 0
        self.reached = 0
        self.forward: list[Term] = []
        self.update: list[Term] = []
        self.uses: dict[int, int] = collections.defaultdict(int)
        self.keys: set[str] = set()
        self.available: list[Term] = list(grammar.variables)
        self.by_state: dict[str, list[Term]] = collections.defaultdict(list)
        for v in grammar.variables:
            if v.state is not None:
                self.by_state[v.state].append(v)
        self.kinds: dict[tuple, int] = {}
        self.kind_examples: dict[int, Term] = {}
        self.slot_kinds: dict[int, tuple[int, list[int]]] = {}
        slots = [tuple(grammar.slots(op)) for op in grammar.ops]
        self.ops = [
            (op, tuple(zip(itertools.count(i * 16), s)), grammar.update_allowed(op))
            for i, (op, s) in enumerate(zip(grammar.ops, slots))
        ]
        for v in grammar.variables:
            self._kind(v)

    def run(self) -> Result:
        start = time.perf_counter()
        self._recurse("", FORWARD)
        return Result(self.rejected, self.count, self.reached, time.perf_counter() - start)

    def _usable(self, term: Term, stage: str) -> str | None:
        """The rule that makes a variable unusable here, or None."""
        if term.state is None:
            return None
        used = self.uses[id(term)]
        if stage == UPDATE and used == 0:
            return "update uses only states of the forward part"
        if term.single_use and used:
            return "single-use state"
        if term.rank and not all(self.uses[id(v)] for v in self.by_state[term.state][: term.rank]):
            return "state symmetry"
        return None

    def _kind(self, term: Term) -> None:
        """Terms of one kind (type, state type, void, variable name) fit the same slots: slot checks are per kind."""
        term.kind = self.kinds.setdefault((term.type, term.state, term.void, term.name), len(self.kinds))
        self.kind_examples.setdefault(term.kind, term)

    def _slot_kinds(self, slot_id: int, slot) -> list[int]:
        known = len(self.kinds)
        cached = self.slot_kinds.get(slot_id)
        if cached is None or cached[0] != known:
            accepted = [k for k, t in self.kind_examples.items() if self.g.accepts(slot, t)]
            cached = self.slot_kinds[slot_id] = (known, accepted)
        return cached[1]

    def _usable_by_kind(self, stage: str) -> dict[int, list[Term]]:
        groups: dict[int, list[Term]] = collections.defaultdict(list)
        for term in self.available:
            if self._usable(term, stage) is None:
                groups[term.kind].append(term)
        return groups

    def _recurse(self, min_key: str, stage: str) -> None:
        current = self.forward if stage == FORWARD else self.update
        unused = sum(1 for t in current if not t.void and self.uses[id(t)] == 0)
        remaining = self.max_ops - len(self.forward) - len(self.update)
        if self.g.over_budget(unused, remaining):
            self.rejected["budget"] += 1
            return
        if remaining <= 0:
            return
        usable = self._usable_by_kind(stage)
        for op, slots, update_ok in self.ops:
            if stage == UPDATE and not update_ok:
                continue
            pools = [[t for k in self._slot_kinds(slot_id, slot) for t in usable.get(k, ())] for slot_id, slot in slots]
            for args in itertools.product(*pools):
                if not self.g.ordered(op, args):
                    self.rejected["commutative order"] += 1
                    continue
                key = self.g.key(op, args)
                if not key_greater(key, min_key):
                    self.rejected["canonical order"] += 1
                    continue
                if key in self.keys:
                    self.rejected["repeated sub-expression"] += 1
                    continue
                term = self.g.make(op, args)
                if isinstance(term, str):
                    self.rejected[term] += 1
                    continue
                term.key = key
                self._push(term, stage)

    def _push(self, term: Term, stage: str) -> None:
        self._kind(term)
        self.keys.add(term.key)
        for a in term.args:
            self.uses[id(a)] += 1
        self.available.append(term)
        if stage == FORWARD:
            self.forward.append(term)
            next_stage, next_key = FORWARD, term.key
            if self.g.is_output(term) and self._complete(self.forward[:-1]) and self._must_use_met():
                self.reached += 1
                next_stage, next_key = UPDATE, ""
                if not self.g.require_update or any(t.mutates for t in self.forward):
                    self._emit()
            self._recurse(next_key, next_stage)
            self.forward.pop()
        else:
            self.update.append(term)
            if term.mutates and self._complete(self.update[:-1]):
                self._emit()
            self._recurse(term.key, UPDATE)
            self.update.pop()
        self.available.pop()
        for a in term.args:
            self.uses[id(a)] -= 1
        self.keys.discard(term.key)

    def _complete(self, terms: Sequence[Term]) -> bool:
        return all(t.void or self.uses[id(t)] for t in terms)

    def _must_use_met(self) -> bool:
        return all(self.uses[id(v)] for v in self.g.variables if v.name in self.g.must_use)

    def _emit(self) -> None:
        self.count += 1
        if self.emit is not None:
            self.emit(tuple(self.forward), tuple(self.update))


def enumerate_grammar(grammar: Grammar, max_ops: int, emit: Emit | None = None) -> Result:
    """Counts of the whole space; each program goes to ``emit`` as it is found, never into a list,
    so memory stays flat however large the space."""
    return Enumerator(grammar, max_ops, emit).run()

