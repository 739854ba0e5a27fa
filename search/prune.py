"""Static pruning rules (reference §5.3), each a small named predicate over candidate arguments.

A predicate returns True when the candidate is allowed. ``RULES`` gives every rule's one-line
description; the enumerators count rejections under these names, and `metacurio enumerate`
prints the counts.
"""

from __future__ import annotations

from typing import Sequence

from search.engine import Term

RULES: dict[str, str] = {
    "type": "an input's type does not fit the operation's slot or output rule",
    "budget": "more unused values than the remaining operations can consume",
    "canonical order": "node keys must increase, so each DAG is produced in one node order only",
    "commutative order": "a commutative operation takes its arguments in sorted order only",
    "repeated sub-expression": "the same sub-expression computed twice",
    "same canonical form": "the same program up to renaming same-typed state slots (one copy is kept)",
    "single-use state": "a memory, buffer or statistics slot feeds one node only",
    "state symmetry": "of same-typed state slots, slot k is used only after slot k-1",
    "update uses only states of the forward part": "the update part trains only states the reward uses",
    "constant inputs": "every input constant (the result would be a constant)",
    "nullary op (compat bug)": "the original rejects operations without inputs (its all-constant rule is vacuous for them)",
    "larger input set": "a multi-input operation must combine information from different sources",
    "distinct inputs": "a binary operation on the same value twice",
    "concat order": "a network on a concatenation takes its two features in one fixed order",
    "repeated op": "an operation applied to its own output (RunningNorm, MinusOneTenth, kNN, pair networks)",
    "sqrt of a norm": "√|x| of a value that is already a norm, distance or square root",
    "mean of an encoder ensemble": "the mean of an encoder ensemble is just another encoder",
    "detach needs a gradient": "detaching a value that carries no gradient does nothing",
    "detach of an encoder": "Detach(Encode(s)) is EncodeDetached(s)",
    "detach below a detach (compat bug)": (
        "the original's inverted descendant check: it rejects CNNDetach always, and Detach unless its inputs reach a variable"
    ),
    "loss needs a gradient": "a loss on a value that trains nothing",
    "loss must be bounded below": "a loss must be non-negative (a norm, distance, NLL, variance or square root)",
    "loss trivially minimisable": (
        "SGD could drive the loss to its minimum without learning anything (also by collapsing a network"
        " that the loss trains and reads detached elsewhere)"
    ),
    "prediction needs a gradient": "the action-prediction loss needs a trainable prediction",
    "combiner reads both rewards": "a reward combiner must read the intrinsic and the extrinsic reward",
}


def larger_input_set(args: Sequence[Term], mask: Sequence[int] | None = None) -> bool:
    """The union of the inputs' sources is strictly larger than any single input's sources."""
    chosen = [args[i] for i in mask] if mask is not None else list(args)
    if len(chosen) < 2:
        return True
    union = frozenset().union(*(a.sources for a in chosen))
    return len(union) > max(len(a.sources) for a in chosen)


def distinct_inputs(args: Sequence[Term], first: int = 0, second: int = 1) -> bool:
    return args[first] is not args[second]


def adjacent_inputs_differ(args: Sequence[Term]) -> bool:
    return all(a is not b for a, b in zip(args, args[1:]))


def not_all_constant(args: Sequence[Term]) -> bool:
    return not all(a.const for a in args)


def input_not_from(args: Sequence[Term], names: frozenset[str], index: int | None = None) -> bool:
    """The input (or every input) is not produced by one of the named operations."""
    chosen = args if index is None else (args[index],)
    return not any(a.op is not None and a.op.name in names for a in chosen)


def concat_order(args: Sequence[Term]) -> bool:
    return args[0].key > args[1].key


def carries_gradient(arg: Term) -> bool:
    return arg.grad


def not_collapsible(arg: Term) -> bool:
    return not arg.collapse
