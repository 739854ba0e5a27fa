"""Enumeration: pruning predicates, hand counts, the original's published counts, the CLI."""

import json
import tracemalloc

import pytest

from metacurio.core import program_io
from metacurio.app.cli import main
from search import prune
from search.engine import Term
from search.enumerate import enumerate_space


def _var(name):
    return Term(key=name, type="Real", name=name, sources=frozenset({name}))


def _node(name, *args, op_name="Op"):
    node = Term(key=name, type="Real", args=args, sources=frozenset().union(*(a.sources for a in args)))
    node.op = type("FakeOp", (), {"name": op_name})()
    return node


def test_larger_input_set_needs_new_information():
    s, t = _var("s"), _var("t")
    x = _node("x", s)
    assert prune.larger_input_set((x, t))
    assert not prune.larger_input_set((x, s))
    assert not prune.larger_input_set((x, x))
    assert prune.larger_input_set((x, s, t), mask=(0, 2))
    assert not prune.larger_input_set((x, s, t), mask=(0, 1))


def test_distinct_and_adjacent_inputs():
    a, b = _var("a"), _var("b")
    assert prune.distinct_inputs((a, b)) and not prune.distinct_inputs((a, a))
    assert prune.adjacent_inputs_differ((a, b, a, b))
    assert not prune.adjacent_inputs_differ((a, b, b, a))


def test_constant_and_repeated_op_rules():
    one = Term(key="1.0", type="Real", const=True, sources=frozenset({"1.0"}))
    a = _var("a")
    assert not prune.not_all_constant((one, one)) and prune.not_all_constant((one, a))
    norm = _node("n", a, op_name="RunningNorm")
    assert not prune.input_not_from((norm,), frozenset({"RunningNorm"}))
    assert prune.input_not_from((a, norm), frozenset({"RunningNorm"}), index=0)


def test_concat_order_and_loss_predicates():
    a, b = _var("b"), _var("a")
    assert prune.concat_order((a, b)) and not prune.concat_order((b, a))
    x = Term(key="x", type="Real", grad=True, collapse=True)
    assert prune.carries_gradient(x) and not prune.not_collapsible(x)


def test_curiosity_programs_of_three_ops_by_hand():
    """With three ops the only trainable, bounded, non-collapsible reward is the action NLL of an encoding.

    Encode(s) or Encode(s') (one encoder; the second needs the first), its NLL against the
    action (the reward), and AddToLoss of that NLL: 2 programs. Nothing smaller trains anything.
    """
    assert enumerate_space("curiosity", 2).count == 0
    found = enumerate_space("curiosity", 3)
    assert found.count == 2
    assert {tuple(n.op for n in p.nodes) for p in found.programs} == {("Encode", "ActionNLL", "AddToLoss")}
    assert {p.nodes[0].args for p in found.programs} == {("obs",), ("next_obs",)}


def test_combiner_programs_of_one_op_by_hand():
    """One op reading both rewards: Add, Max, Min, Multiply (commutative: 1 each), Subtract (2 orders),
    and the weighted sum (|w_a|·i + |w_b|·e)/(|w_a| + |w_b|) with w_a ∈ {e, τ, 10 constants} (not i,
    its neighbour) and w_b ∈ {τ, 10 constants} (not its neighbours i and e): 12 × 11 = 132."""
    found = enumerate_space("combiner", 1)
    assert found.count == 4 + 2 + 132


def test_enumeration_is_deterministic_unique_and_valid():
    first = enumerate_space("curiosity", 4)
    second = enumerate_space("curiosity", 4)
    ids = [p.id for p in first.programs]
    assert ids == [p.id for p in second.programs]
    assert len(set(ids)) == len(ids) == first.count
    for program in first.programs:
        assert program_io.from_json(program_io.to_json(program)).id == program.id


def test_our_fixes_reach_rnd_and_fast():
    ids = {p.id for p in enumerate_space("curiosity", 5).programs}
    for name in ("rnd", "fast", "inverse_model"):
        assert program_io.load(f"results/programs/{name}.json").id in ids, name


def test_a_loss_that_collapses_through_shared_weights_is_pruned():
    """The earlier shipped search's two best programs distil an encoder into its own detached output: a
    constant encoder minimises the loss, and their raw reward does collapse
    (results/self-distillation.md). RND's detached target is a network no loss trains: kept."""
    ids = {p.id for p in enumerate_space("curiosity", 4).programs}
    for name in ("01-262c67bcc67b", "02-01040ffc7d6a"):
        program = program_io.load(f"results/self-distillation/{name}.json")
        assert program.id not in ids, name
    assert program_io.load("results/programs/rnd.json").id in ids


def test_funnel_names_every_rule():
    found = enumerate_space("curiosity", 4)
    steps = [step for step, _, _ in found.funnel]
    assert steps[0] == "enumerated"
    for step, count, detail in found.funnel[1:]:
        assert step.startswith("pruned: ") and count > 0
        assert detail == prune.RULES[step.removeprefix("pruned: ")]


@pytest.mark.parametrize("max_ops, expected", [(2, 512), (3, 10_746)])
def test_compat_reproduces_the_published_combiner_counts(max_ops, expected):
    assert enumerate_space("combiner", max_ops, compat=True).count == expected


@pytest.mark.parametrize(
    "max_ops, candidates, reached",
    [
        (4, 46, 169),
        (5, 635, 987),
        pytest.param(6, 7_364, 8_786, marks=pytest.mark.slow),
        pytest.param(7, 88_121, 89_442, marks=pytest.mark.slow),
    ],
)
def test_compat_reproduces_the_published_curiosity_counts(max_ops, candidates, reached):
    """The published synthesizer's C7 candidates and "reached target" counts (reference §5.4)."""
    found = enumerate_space("curiosity", max_ops, compat=True)
    assert (found.count, found.reached_output) == (candidates, reached)


def test_compat_detach_only_on_nodes_with_a_direct_variable_input():
    """The inverted descendant check (reference §3.4): 4 of the 46 programs of ≤ 4 ops detach,
    all on the action-to-32 network's output, and the detached CNN output never appears."""
    from search.compat import CompatGrammar
    from search.engine import enumerate_grammar

    programs = []
    enumerate_grammar(CompatGrammar("curiosity"), 4, emit=lambda forward, update: programs.append(forward + update))
    names = [[t.op.name for t in nodes] for nodes in programs]
    detached = [t.args[0].op.name for nodes in programs for t in nodes if t.op.name == "DetachFeatureVector"]
    assert sum("DetachFeatureVector" in n for n in names) == 4
    assert set(detached) == {"FullyConnectedNetworkActionSpaceto32"}
    assert not any("CNNDetachOutput" in n for n in names)
    assert all(n.count("AddToLoss") <= 1 for n in names)


def test_compat_detach_check_is_the_inverted_recursion():
    """Detach passes when its input has a direct variable input, or (the recursion inverted
    again one level down) when all of the input's inputs do; CNNDetachOutput never passes."""
    from search.compat import OPS, CompatGrammar

    grammar = CompatGrammar("curiosity")
    v = {t.name: t for t in grammar.variables}

    def node(op, *args):
        term = grammar.make(OPS[op], args)
        assert not isinstance(term, str), term
        return term

    def rejection(op, *args):
        term = grammar.make(OPS[op], args)
        return term if isinstance(term, str) else None

    bug = "detach below a detach (compat bug)"
    s, s2 = v["observation_image"], v["new_observation_image"]
    cnn, cnn2 = node("CNN", s, v["CNN1"]), node("CNN", s2, v["CNN1"])
    assert rejection("CNNDetachOutput", s, v["CNN1"]) == bug
    assert rejection("DetachFeatureVector", cnn) == "detach of an encoder"
    embedded = node("FullyConnectedNetworkActionSpaceto32", v["action_one_hot"], v["FCN_Action_Space_to_32"])
    assert rejection("DetachFeatureVector", embedded) is None
    total = node("AddFeatureVector", cnn, cnn2)
    assert rejection("DetachFeatureVector", total) == bug
    ensemble = node("CNNEnsemble", s, v["EnsembleCNN1"])
    mean = node("MeanOfFeatureVectorList", node("FeatureVectorListMinusFeatureVector", ensemble, cnn2))
    assert rejection("DetachFeatureVector", mean) is None


def test_enumerate_cli_writes_programs_and_funnel(tmp_path, capsys):
    assert main(["enumerate", "--space", "curiosity", "--max-ops", "3", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "programs.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert all(program_io.from_dict(json.loads(line)).size == 3 for line in lines)
    funnel = json.loads((tmp_path / "funnel.json").read_text())
    assert funnel["funnel"][0] == {"step": "enumerated", "count": 2, "detail": funnel["funnel"][0]["detail"]}


def test_enumerate_cli_rejects_a_bad_size(capsys):
    assert main(["enumerate", "--max-ops", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--max-ops" in err


def test_streaming_enumeration_keeps_no_program_in_memory():
    def peak(**kwargs):
        tracemalloc.start()
        try:
            found = enumerate_space("curiosity", 5, **kwargs)
            return found, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    streamed_ids = []
    streamed, streamed_peak = peak(sink=lambda program: streamed_ids.append(program.id))
    kept, kept_peak = peak()
    assert streamed.programs == [] and streamed_ids == [p.id for p in kept.programs]
    assert streamed.count == kept.count and streamed.rejected == kept.rejected
    # Measured: 0.9 MB streamed against 4.3 MB kept at ≤ 5 ops; the kept list grows with the space.
    assert streamed_peak < kept_peak / 3
