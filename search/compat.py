"""The original code's enumeration rules, bugs included (reference §2–§5), to check our counts.

This grammar models the published synthesizer: its registered type tree, its operation table for
the lists C7 (the ICLR curiosity search) and RC4 (reward combiners), its variables and their
numbers, its "program number" keys, and its pruning quirks (reference §3.4, §5.1–§5.3, §13.1):

- the inverted descendant check: ``CNNDetachOutput`` is never generated, and
  ``DetachFeatureVector`` only on a value that carries gradients, is not a ``CNN`` output, and
  passes the inverted recursion (in practice: its node has a direct variable input);
- the Void test that never matches: a loss node (``AddToLoss``) always counts as an unused
  value, so it can only end its stage (no side loss in the forward part, at most one loss in the
  update part), and it counts towards the budget;
- nullary operations never generated, the budget heuristic with its false terminations, and a
  collision of variable numbers across kinds.

What agrees: run through the shared engine, it gives exactly the [regen] counts of reference
§5.4, obtained there by running the published synthesizer. Curiosity (C7): 46 / 635 / 7,364 /
88,121 candidates and 169 / 987 / 8,786 / 89,442 "reached target" at ≤ 4 / 5 / 6 / 7 ops;
reward combiners (RC4): 512 / 10,746 candidates (the latter 10,744 reached + 2 seeds) at ≤ 2 / 3.
``tests/test_enumerate.py`` checks all of these (≤ 6 and ≤ 7 in the slow tier), and the ≤ 4
programs that detach (4, all on the action-to-32 network) against the reference's description.
At ≤ 6 the programs detaching each network's output also match the reference's per-network
counts (528 / 300 / 104 / 96), checked once by hand. Only counts are compared, never the
published program lists, which we do not have. Programs are described only for counting: they
are not translated into our DSL.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from search import prune
from search.engine import Term

TYPE = "Type"
PARENT = {
    "NonNeg": "Real",
    "Constant": "Real",
    "F32": "F",
    "FA": "F",
    "ListF": "List",
    "ListF32": "ListF",
    "ListFA": "ListF",
    "ListImage": "List",
    "ListReal": "List",
}
REAL_LIKE = frozenset({"Real", "NonNeg", "Constant"})
BUFFER_LIST = {"F32": "ListF32", "FA": "ListFA", "Image": "ListImage", "Real": "ListReal"}
LIST_CONTENTS = {"ListF32": "F32", "ListFA": "FA"}


def is_subtype(t: str, of: str) -> bool:
    while True:
        if t == of or of == TYPE:
            return True
        if t not in PARENT:
            return False
        t = PARENT[t]


@dataclasses.dataclass(frozen=True)
class CompatOp:
    name: str
    number: int
    """The original's operation_number: its index among Operation's direct subclasses."""
    slots: tuple[str, ...]
    output: Callable[[tuple[str, ...]], str | None]
    commutative: bool = False
    creates_gradients: bool = False
    propagates: bool = True
    bounded: bool = False
    """The class flag might_have_bounded_minimum, which AddToLoss reads from its input's op."""
    canopt: Callable[[tuple[Term, ...]], bool] = lambda args: False
    mutates: bool = False
    update_allowed: bool = True
    larger_set: bool = True
    larger_mask: tuple[int, ...] | None = None
    rules: tuple[tuple[str, Callable[[tuple[Term, ...]], bool]], ...] = ()


def _fixed(t: str):
    return lambda types: t


def _scalar_join(types):
    return "NonNeg" if all(t == "NonNeg" for t in types) else "Real"


def _same_type(out: str | None):
    def rule(types):
        if types[0] != types[1]:
            return None
        return out or types[0]

    return rule


def _buffer(types):
    for element, listed in BUFFER_LIST.items():
        if is_subtype(types[0], element):
            return listed
    return None


def _list_mean(types):
    return LIST_CONTENTS.get(types[0])


def _list_vector(out: str | None):
    def rule(types):
        if LIST_CONTENTS.get(types[0]) != types[1]:
            return None
        return out or types[0]

    return rule


def _all(*idx):
    return lambda args: all(args[i].collapse for i in idx)


def _any(*idx):
    return lambda args: any(args[i].collapse for i in idx)


def _true(args):
    return True


def _not_from(names, index=None):
    return ("repeated op", lambda args: prune.input_not_from(args, frozenset(names), index))


DISTINCT = ("distinct inputs", prune.distinct_inputs)
PAIR_NET_RULES = (DISTINCT, ("concat order", prune.concat_order))


DETACHING = frozenset({"DetachFeatureVector", "CNNDetachOutput"})


def _finds_detach(values: tuple[Term, ...]) -> bool:
    """The original's "is there a Detach/CNNDetach below?" recursion, with its inverted recursive call.

    A value counts as a hit when it is a detach or when the check over *its* inputs answers no;
    a variable's empty input list answers no, so every variable counts as a hit.
    """
    return any((v.op is not None and v.op.name in DETACHING) or not _finds_detach(v.args) for v in values)


def _descendant_check_passes(args: tuple[Term, ...]) -> bool:
    """The detach ops' "no Detach/CNNDetach descendant" rule as published (reference §3.4, §13.1 #1).

    It passes when the recursion finds nothing among the op's own inputs. ``CNNDetachOutput`` takes
    only variables, so it always fails. For ``DetachFeatureVector(x)`` it passes when x is not a
    detach and some input of x is a hit: in practice a direct variable input (a program input or
    a data structure); rarely a node whose inputs are all non-detach nodes with a direct variable
    input, e.g. Detach(Mean(CNNEnsemble(s) − CNN(s'))), which first adds 8 "reached target" at
    ≤ 6 ops and 96 candidates at ≤ 7.
    """
    return not _finds_detach(args)


def _add_to_loss_rules():
    return (
        ("loss needs a gradient", lambda args: args[0].grad),
        ("loss must be bounded below", lambda args: args[0].op is not None and args[0].op.bounded),
        ("loss trivially minimisable", lambda args: not args[0].collapse),
    )


@dataclasses.dataclass(frozen=True)
class NamedSlot:
    """A slot only one named variable may fill (the weighted sum's two rewards)."""

    type: str
    name: str


OPS: dict[str, CompatOp] = {
    op.name: op
    for op in (
        CompatOp("Add", 2, ("Real", "Real"), _scalar_join, commutative=True, canopt=_all(0, 1), rules=(DISTINCT,)),
        CompatOp("Max", 4, ("Real", "Real"), _scalar_join, commutative=True, canopt=_all(0, 1), rules=(DISTINCT,)),
        CompatOp("Min", 5, ("Real", "Real"), _scalar_join, commutative=True, canopt=_all(0, 1), rules=(DISTINCT,)),
        CompatOp(
            "IntrinsicExtrinsicWeightedNormalizedSum",
            6,
            ("Real", NamedSlot("Real", "intrinsic_reward"), "Real", NamedSlot("Real", "extrinsic_reward")),
            _fixed("Real"),
            canopt=_all(0, 1),
            rules=(("distinct inputs", prune.adjacent_inputs_differ),),
        ),
        CompatOp(
            "RunningNorm", 7, ("Real", "RunningNormData"), _fixed("Real"), propagates=False, canopt=_all(0),
            rules=(_not_from({"RunningNorm", "RunningNormDontCenter"}, 0),),
        ),
        CompatOp(
            "RunningNormDontCenter", 8, ("Real", "RunningNormData"), _fixed("Real"), propagates=False, canopt=_all(0),
            rules=(_not_from({"RunningNorm", "RunningNormDontCenter"}, 0),),
        ),
        CompatOp("VariableAsBuffer", 10, (TYPE, "VariableBuffer"), _buffer, propagates=False),
        CompatOp(
            "NearestNeighborLarge", 14, ("F32", "F32", "NNLarge"), _fixed("F32"), propagates=False, mutates=True,
            update_allowed=False, rules=(_not_from({"NearestNeighborLarge"}), DISTINCT),
        ),
        CompatOp("SubtractOneTenth", 16, ("Real",), _fixed("Real"), canopt=_all(0), rules=(_not_from({"SubtractOneTenth"}),)),
        CompatOp("NormalDistribution", 17, (), _fixed("Real")),
        CompatOp("Subtract", 22, ("Real", "Real"), _fixed("Real"), canopt=_all(0, 1), rules=(DISTINCT,)),
        CompatOp("Multiply", 23, ("Real", "Real"), _scalar_join, commutative=True, canopt=_any(0, 1), rules=(DISTINCT,)),
        CompatOp(
            "SquareRootAbs", 26, ("Real",), _fixed("NonNeg"), bounded=True, canopt=_all(0),
            rules=(("sqrt of a norm", lambda args: prune.input_not_from(args, frozenset({"SquareRootAbs", "L2Distance", "L2Norm"}))),),
        ),
        CompatOp(
            "FullyConnectedNetworkTwo32to32", 27, ("F32", "F32", "W64_32"), _fixed("F32"), creates_gradients=True,
            canopt=_true, larger_mask=(0, 1), rules=(_not_from({"FullyConnectedNetworkTwo32to32"}),) + PAIR_NET_RULES,
        ),
        CompatOp(
            "FullyConnectedNetworkTwo32toActionSpace", 28, ("F32", "F32", "W64_A"), _fixed("FA"), creates_gradients=True,
            canopt=_true, larger_mask=(0, 1), rules=(_not_from({"FullyConnectedNetworkTwo32toActionSpace"}),) + PAIR_NET_RULES,
        ),
        CompatOp("FullyConnectedNetwork32toActionSpace", 29, ("F32", "W32_A"), _fixed("FA"), creates_gradients=True, canopt=_true),
        CompatOp("FullyConnectedNetworkActionSpaceto32", 30, ("FA", "WA_32"), _fixed("F32"), creates_gradients=True, canopt=_true),
        CompatOp(
            "PredictFeatureVector32FromFeatureVector32", 31, ("F32", "F32", "W32_32"), _fixed("F32"), creates_gradients=True,
            canopt=_true, mutates=True, update_allowed=False, rules=(DISTINCT,),
        ),
        CompatOp("CNN", 33, ("Image", "WObs"), _fixed("F32"), creates_gradients=True, canopt=_true),
        CompatOp(
            "CNNDetachOutput", 34, ("Image", "WObs"), _fixed("F32"), propagates=False,
            # Its inputs are all variables, which the inverted check counts as hits: never generated.
            rules=(("detach below a detach (compat bug)", _descendant_check_passes),),
        ),
        CompatOp("CNNEnsemble", 35, ("Image", "EnsObs"), _fixed("ListF32"), creates_gradients=True, canopt=_true),
        CompatOp("FullyConnectedNetworkEnsemble32To32", 36, ("F32", "Ens32"), _fixed("ListF32"), creates_gradients=True, canopt=_true),
        CompatOp(
            "FullyConnectedNetworkEnsembleTwo32To32", 37, ("F32", "F32", "Ens64"), _fixed("ListF32"), creates_gradients=True,
            canopt=_true, larger_mask=(0, 1), rules=PAIR_NET_RULES,
        ),
        CompatOp(
            "FullyConnectedNetworkEnsemble32AndActionTo32", 38, ("F32", "FA", "Ens32A"), _fixed("ListF32"),
            creates_gradients=True, canopt=_true, larger_mask=(0, 1),
        ),
        CompatOp("AddToLoss", 39, ("Real",), _fixed("Void"), mutates=True, rules=_add_to_loss_rules()),
        CompatOp("L2Norm", 41, ("F",), _fixed("NonNeg"), bounded=True, canopt=_all(0)),
        CompatOp("L2Distance", 42, ("F", "F"), _same_type("NonNeg"), commutative=True, bounded=True, canopt=_all(0, 1)),
        CompatOp(
            "SoftmaxAndNLL", 43, ("F", "FA"), _fixed("NonNeg"), bounded=True, canopt=_all(0, 1),
            rules=(DISTINCT, ("prediction needs a gradient", lambda args: args[0].grad)),
        ),
        CompatOp("DotProduct", 45, ("F", "F"), _same_type("Real"), commutative=True, canopt=_any(0, 1)),
        CompatOp("AddFeatureVector", 46, ("F", "F"), _same_type(None), commutative=True, canopt=_all(0, 1)),
        CompatOp(
            "DetachFeatureVector", 47, ("F",), lambda types: types[0], propagates=False,
            rules=(
                ("detach needs a gradient", lambda args: args[0].grad),
                ("detach of an encoder", lambda args: prune.input_not_from(args, frozenset({"CNN"}))),
                ("detach below a detach (compat bug)", _descendant_check_passes),
            ),
        ),
        CompatOp("RealNumberListMean", 48, ("ListReal",), _fixed("Real"), canopt=_all(0)),
        CompatOp("ListVariance", 51, ("ListF",), _fixed("NonNeg"), bounded=True, canopt=_all(0)),
        CompatOp(
            "MeanOfFeatureVectorList", 52, ("ListF",), _list_mean, canopt=_all(0),
            rules=(("mean of an encoder ensemble", lambda args: prune.input_not_from(args, frozenset({"CNNEnsemble"}))),),
        ),
        CompatOp("FeatureVectorListL2Norm", 53, ("ListF",), _fixed("ListReal"), bounded=True, canopt=_all(0)),
        CompatOp(
            "FeatureVectorListAverageL2DistanceToFeatureVector", 54, ("ListF", "F"), _list_vector("NonNeg"), canopt=_all(0, 1)
        ),
        CompatOp("FeatureVectorListMinusFeatureVector", 55, ("ListF", "F"), _list_vector(None), canopt=_all(0, 1)),
    )
}

C7 = (
    "Add", "RunningNorm", "RunningNormDontCenter", "VariableAsBuffer", "NearestNeighborLarge", "SubtractOneTenth",
    "NormalDistribution", "Subtract", "SquareRootAbs", "FullyConnectedNetworkTwo32to32",
    "FullyConnectedNetworkTwo32toActionSpace", "FullyConnectedNetwork32toActionSpace",
    "FullyConnectedNetworkActionSpaceto32", "PredictFeatureVector32FromFeatureVector32", "CNN", "CNNDetachOutput",
    "CNNEnsemble", "FullyConnectedNetworkEnsemble32To32", "FullyConnectedNetworkEnsembleTwo32To32",
    "FullyConnectedNetworkEnsemble32AndActionTo32", "AddToLoss", "L2Norm", "L2Distance", "SoftmaxAndNLL", "DotProduct",
    "AddFeatureVector", "DetachFeatureVector", "RealNumberListMean", "ListVariance", "MeanOfFeatureVectorList",
    "FeatureVectorListL2Norm", "FeatureVectorListAverageL2DistanceToFeatureVector", "FeatureVectorListMinusFeatureVector",
)
"""programs_curiosity_7_v7 without its two Counter operations, which no variable can feed."""

RC4 = (
    "Add", "Max", "Min", "IntrinsicExtrinsicWeightedNormalizedSum", "RunningNorm", "RunningNormDontCenter",
    "VariableAsBuffer", "NormalDistribution", "Subtract", "Multiply", "SquareRootAbs", "RealNumberListMean",
)
"""reward_combiner_programs_v4."""


def _var_key(number: int) -> str:
    return f"V{number}".zfill(3) + " "


def _variable(name: str, type_: str, number: int, state: str | None = None, single_use=False, const=False) -> Term:
    term = Term(key=_var_key(number), type=type_, name=name, state=state, single_use=single_use, const=const)
    term.sources = frozenset({id(term)})
    return term


def _ranked(variables: list[Term]) -> list[Term]:
    seen: dict[str, int] = {}
    for v in variables:
        if v.state is not None:
            v.rank = seen.get(v.state, 0)
            seen[v.state] = v.rank + 1
    return variables


def curiosity_variables() -> list[Term]:
    inputs = [
        _variable("observation_image", "Image", 0),
        _variable("action_one_hot", "FA", 1),
        _variable("new_observation_image", "Image", 2),
    ]
    states = [
        ("FCN_64_to_32", "W64_32", 0, False),
        ("CNN1", "WObs", 1, False),
        ("CNN2", "WObs", 2, False),
        ("FCN_32_to_Action_Space", "W32_A", 3, False),
        ("FCN_Action_Space_to_32", "WA_32", 4, False),
        ("FCN_64_to_Action_Space", "W64_A", 5, False),
        ("EnsembleCNN1", "EnsObs", 6, False),
        ("Ensemble_32_to_32_1", "Ens32", 7, False),
        ("Ensemble_32_Action_to_32_1", "Ens32A", 8, False),
        ("RunningNormData", "RunningNormData", 9, True),
        ("VariableBuffer", "VariableBuffer", 10, True),
        ("FeatureVectorRunningNormData", "FVRunningNormData", 11, True),
        ("NearestNeighbor", "NNLarge", 12, True),
        ("FCN_32_to_32", "W32_32", 13, False),
        ("Policy", "Policy", 14, False),
    ]
    data = [_variable(n, t, k, state=t, single_use=once) for n, t, k, once in states]
    optimizer = [_variable("Adam", "Adam", 0)]
    return _ranked(inputs + data + optimizer)


CONSTANTS = (1.0, -1.0, 0.5, -0.5, 0.25, -0.25, 0.125, -0.125, 0.0625, -0.0625)


def combiner_variables() -> list[Term]:
    inputs = [
        _variable("intrinsic_reward", "Real", 0),
        _variable("extrinsic_reward", "Real", 1),
        _variable("normalized_timestep", "Real", 2),
    ]
    data = [
        _variable("RunningNormData", "RunningNormData", 0, state="RunningNormData", single_use=True),
        _variable("VariableBuffer", "VariableBuffer", 1, state="VariableBuffer", single_use=True),
    ]
    constants = [
        _variable(f"constant_{c}", "Constant", 2 + i, state="Constant", const=True) for i, c in enumerate(CONSTANTS)
    ]
    return _ranked(inputs + data + constants)


class CompatGrammar:
    """The original synthesizer's rules for one operation list."""

    def __init__(self, space: str):
        if space == "curiosity":
            names, self.variables, self.require_update, self.must_use = C7, curiosity_variables(), True, frozenset()
            self.seed_programs = 0
        elif space == "combiner":
            names, self.variables, self.require_update = RC4, combiner_variables(), False
            self.must_use = frozenset({"intrinsic_reward", "extrinsic_reward"})
            self.seed_programs = 2
            """Identity(intrinsic) and Identity(extrinsic), which the original prepends to the list."""
        else:
            raise ValueError(f"unknown space {space!r}")
        self.ops = [OPS[n] for n in names]

    def slots(self, op: CompatOp):
        return op.slots

    def accepts(self, slot, term: Term) -> bool:
        if isinstance(slot, NamedSlot):
            return term.op is None and term.name == slot.name and is_subtype(term.type, slot.type)
        return is_subtype(term.type, slot)

    def update_allowed(self, op: CompatOp) -> bool:
        return op.update_allowed

    def ordered(self, op: CompatOp, args) -> bool:
        return not op.commutative or args[0].key >= args[1].key

    def is_output(self, term: Term) -> bool:
        return term.type in REAL_LIKE

    def over_budget(self, unused: int, remaining: int) -> bool:
        return unused > remaining

    def key(self, op: CompatOp, args: tuple[Term, ...]) -> str:
        """The original's program number: operation number, then the inputs' numbers."""
        return f"{op.number:03d} " + " ".join(a.key for a in args)

    def make(self, op: CompatOp, args: tuple[Term, ...]) -> Term | str:
        out = op.output(tuple(a.type for a in args))
        if out is None:
            return "type"
        if not op.slots:
            return "nullary op (compat bug)"
        if all(a.const for a in args):
            return "constant inputs"
        if op.larger_set and not prune.larger_input_set(args, op.larger_mask):
            return "larger input set"
        for rule, allowed in op.rules:
            if not allowed(args):
                return rule
        grad = op.creates_gradients or (op.propagates and any(a.grad for a in args))
        return Term(
            key="",
            type=out,
            op=op,
            args=args,
            sources=frozenset().union(*(a.sources for a in args)),
            grad=grad,
            collapse=op.canopt(args),
            const=all(a.const for a in args),
            mutates=op.mutates,
            # The original's "is it Void?" test compares a type instance with the Void class and
            # never matches, so a loss node counts as an unused value like any other (§3.4).
            void=False,
        )
