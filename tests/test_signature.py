"""Behavioural duplicate removal: known-equivalent programs merge, known-different ones stay apart."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import reference_programs

from metacurio.core.compiler import compile_program
from metacurio.core.program import ProgramBuilder
from search.signature import (
    BATCH,
    SIGNATURE_ENV,
    deduplicate,
    equivalence_classes,
    gridworld_transitions,
    normalise,
    plan_layouts,
    signatures,
)

CURIOSITY = reference_programs("curiosity")


def fast(scale: float | None = None, state: str = "enc", swap: bool = False, tail: tuple[str, ...] = ()):
    """FAST, optionally with its reward multiplied by ``scale`` and passed through unary ``tail`` ops."""
    b = ProgramBuilder()
    enc = b.state(state, "ObsNet")
    x = b.forward("Encode", "obs", state=enc)
    x2 = b.forward("Encode", "next_obs", state=enc)
    r = b.forward("L2Distance", *((x, x2) if swap else (x2, x)))
    if scale is not None:
        r = b.forward("Multiply", r, scale)
    for op in tail:
        r = b.forward(op, r)
    nll = b.update("ActionNLL", x2, "action")
    b.update("AddToLoss", nll)
    return b.build(r)


FAST = fast()
CANDIDATES = {
    "double": fast(2.0),
    "fast": FAST,
    "negated": fast(-1.0),
    "identity": fast(tail=("Identity",)),
    "rnd": CURIOSITY["rnd"],
    "overflow": fast(1e30, tail=("Square",)),
    "half": fast(0.5),
    "shifted": fast(tail=("MinusOneTenth",)),
}


@functools.lru_cache(maxsize=None)
def dedup_candidates():
    return deduplicate(list(CANDIDATES.values()))


def ids(*names):
    return [CANDIDATES[n].id for n in names]


def test_positive_rescalings_and_identity_merge_into_the_smallest():
    result = dedup_candidates()
    assert result.duplicate_of == {CANDIDATES[n].id: FAST.id for n in ("double", "identity", "half")}


def test_different_behaviour_stays_apart():
    result = dedup_candidates()
    assert [p.id for p in result.unique] == ids("fast", "negated", "rnd", "shifted")


def test_always_failing_program_is_dropped_with_its_error():
    result = dedup_candidates()
    assert result.failed == {CANDIDATES["overflow"].id: "non-finite reward at step 1 of 8"}
    assert np.isnan(result.signatures[list(CANDIDATES).index("overflow")]).all()
    assert result.funnel == [
        ("signature failed", 1, "e.g. non-finite reward at step 1 of 8"),
        ("duplicates", 3, ""),
        ("unique", 4, ""),
    ]


def test_signatures_are_normalised_rewards_of_a_learning_program():
    """The interpreted signature equals the reference compiler stepping on the same transitions."""
    result = dedup_candidates()
    steps = result.signatures.shape[1] // BATCH
    rollout_key, init_key = jax.random.split(jax.random.PRNGKey(0))
    transitions = gridworld_transitions(steps, rollout_key)
    compiled = compile_program(FAST)
    state = compiled.init(init_key, SIGNATURE_ENV)
    step = jax.jit(compiled.step)
    rewards = []
    for t in range(steps):
        reward, state, _ = step(state, jax.tree.map(lambda x: x[t], transitions.batches))
        rewards.append(reward)
    expected = normalise(jnp.stack(rewards), transitions.done).reshape(-1)
    np.testing.assert_allclose(result.signatures[list(CANDIDATES).index("fast")], expected, rtol=1e-4, atol=1e-5)


def test_renamed_states_and_swapped_commutative_arguments_give_the_same_signature():
    rows, errors = signatures([fast(state="other", swap=True)])
    assert errors == [None]
    np.testing.assert_array_equal(rows[0], dedup_candidates().signatures[list(CANDIDATES).index("fast")])


def test_deterministic():
    again = deduplicate(list(CANDIDATES.values()))
    np.testing.assert_array_equal(again.signatures, dedup_candidates().signatures)
    assert again.duplicate_of == dedup_candidates().duplicate_of


def test_normalise_scales_away_positive_factors_only():
    rewards = jax.random.uniform(jax.random.PRNGKey(1), (6, BATCH))
    done = jnp.zeros((6, BATCH), bool).at[3, 1].set(True)
    base = normalise(rewards, done)
    np.testing.assert_allclose(normalise(3.0 * rewards, done), base, rtol=1e-5)
    np.testing.assert_allclose(normalise(-rewards, done), -base, rtol=1e-5)
    assert not np.allclose(normalise(rewards + 1.0, done), base, rtol=1e-3)
    assert float(jnp.max(jnp.abs(normalise(1e6 * jnp.ones((6, BATCH)), done)))) == 10.0


def test_transitions_are_real_gridworld_steps():
    t = gridworld_transitions(4, jax.random.PRNGKey(3))
    assert t.batches.obs.shape == (4, BATCH, 15, 15, 3)
    np.testing.assert_array_equal(t.batches.action.sum(axis=-1), np.ones((4, BATCH)))
    np.testing.assert_array_equal(t.batches.next_obs[:-1], t.batches.obs[1:])
    other = gridworld_transitions(4, jax.random.PRNGKey(4))
    assert not np.array_equal(t.batches.action, other.batches.action)


def test_classes_join_the_earliest_matching_representative():
    tol = 1e-3
    rows = np.array([[1.0, 0.0], [1.0 + 0.8 * tol, 0.0], [1.0 + 1.6 * tol, 0.0], [5.0, 0.0], [1.0, 0.0]])
    # Row 2 is close to row 1 but not to the representative row 0: it starts its own class.
    rep = equivalence_classes(rows, [0, 1, 2, 3, 4], rtol=0.0, atol=tol)
    assert rep.tolist() == [0, 0, 2, 3, 0]
    assert equivalence_classes(rows, [1, 0, 2, 3], rtol=0.0, atol=tol).tolist() == [1, 1, 1, 3, -1]


def test_class_index_matches_brute_force():
    rng = np.random.default_rng(5)
    centres = rng.uniform(-10, 10, (40, 12))
    rows = centres[rng.integers(0, 40, 600)] * (1 + rng.uniform(-2e-3, 2e-3, (600, 12)))
    order = rng.permutation(600)
    rtol, atol = 1e-3, 1e-5
    kept: list[int] = []
    expected = np.full(600, -1)
    for row in order:
        match = next((k for k in kept if np.all(np.abs(rows[row] - rows[k]) <= atol + rtol * np.abs(rows[k]))), None)
        if match is None:
            kept.append(row)
        expected[row] = row if match is None else match
    np.testing.assert_array_equal(equivalence_classes(rows, order, rtol, atol), expected)


def test_layout_plan_covers_every_program_once_and_fits_it():
    programs = list(CURIOSITY.values()) + [CANDIDATES["double"]]
    plans, errors = plan_layouts(programs)
    assert errors == {}
    assert sorted(i for _, members in plans for i in members) == list(range(len(programs)))
    for layout, members in plans:
        assert all(layout.fits(programs[i]) for i in members)


def test_plan_trades_compiles_against_lighter_runs():
    """Few programs share one compile; when each stands for many, heavy programs get their own layout."""
    programs = [CURIOSITY["fast"], CANDIDATES["double"], CURIOSITY["disagreement"]]
    few, _ = plan_layouts(programs)
    assert [members for _, members in few] == [[0, 1, 2]]
    many, _ = plan_layouts(programs, weight=1e5)
    assert sorted(members for _, members in many) == [[0, 1], [2]]


@pytest.mark.parametrize(
    "programs, message",
    [
        ([CURIOSITY["fast"], CURIOSITY["fast"]], "appears twice"),
        ([reference_programs("combiner")["combiner_sum"]], "is a combiner program"),
    ],
)
def test_bad_input_is_rejected_with_one_line(programs, message):
    with pytest.raises(ValueError, match=message):
        deduplicate(programs)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="steps must be at least 1"):
        signatures([FAST], steps=0)
    with pytest.raises(ValueError, match="tolerances must be non-negative"):
        deduplicate([FAST], rtol=-1.0)


@pytest.mark.slow
def test_worker_processes_and_chunk_sizes_give_the_same_result():
    programs = list(CANDIDATES.values())
    here = signatures(programs, chunk=4)
    # Two workers take one batch each and find the compile in the persistent cache. Bitwise
    # equality across processes would need every process to run the same executable (same
    # cache, XLA_FLAGS and threads), so they are compared with a tolerance far below
    # deduplicate's rtol of 1e-3.
    np.testing.assert_allclose(signatures(programs, chunk=4, executor="ray", workers=2)[0], here[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(here[0], dedup_candidates().signatures)
