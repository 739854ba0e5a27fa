"""Elimination cutoffs by hand, stopping on synthetic curves, and the savings accounting."""

import dataclasses
import math

import numpy as np
import pytest

from search.schedule import compute_cutoffs, step_savings, stop_index, top_threshold

# Three programs, two trials, two checkpoints.
P1 = np.array([[2.0, 10.0], [4.0, 12.0]])  # means (3, 11), standard errors (1, 1)
P2 = np.array([[1.0, 8.0], [1.0, 6.0]])  # means (1, 7), standard errors (0, 1)
P3 = np.array([[0.0, 1.0], [0.0, 1.0]])  # final mean 1: outside the top 2


def test_cutoffs_by_hand():
    # Top 2 by final mean: P1, P2. Mean of means (2, 9), population std (1, 2), mean s.e. (0.5, 1).
    assert compute_cutoffs([P3, P1, P2], top_k=2) == pytest.approx([2 - 2 * 1 - 0.5, 9 - 2 * 2 - 1])
    assert compute_cutoffs([P3, P1, P2], top_k=2, num_stdevs=1.0) == pytest.approx([0.5, 6.0])


def test_cutoffs_use_every_program_when_top_k_is_large():
    # Means (4/3, 19/3) at the checkpoints; population std and mean s.e. over all three.
    means = np.array([[3.0, 11.0], [1.0, 7.0], [0.0, 1.0]])
    expected = means.mean(axis=0) - 2 * means.std(axis=0) - np.array([1 / 3, 2 / 3])
    assert compute_cutoffs([P1, P2, P3], top_k=250) == pytest.approx(expected.tolist())


def test_cutoffs_never_stop_with_fewer_than_two_programs():
    assert all(math.isnan(c) for c in compute_cutoffs([P1], top_k=10))
    assert all(math.isnan(c) for c in compute_cutoffs([P1, P2], top_k=1))
    assert compute_cutoffs([], top_k=10) == []


def test_one_trial_programs_have_no_standard_error():
    curves = [np.array([[1.0, 2.0]]), np.array([[3.0, 6.0]])]
    assert compute_cutoffs(curves, top_k=2, num_stdevs=0.0) == pytest.approx([2.0, 4.0])


def test_cutoffs_reject_mismatched_or_non_finite_curves():
    with pytest.raises(ValueError, match="different numbers of checkpoints"):
        compute_cutoffs([P1, np.zeros((2, 3))], top_k=5)
    with pytest.raises(ValueError, match="finite"):
        compute_cutoffs([P1, np.array([[1.0, math.nan], [1.0, 2.0]])], top_k=5)
    with pytest.raises(ValueError, match="top_k"):
        compute_cutoffs([P1, P2], top_k=0)


def _synthetic_curves(rng, n, slope, trials=5, checkpoints=9):
    steps = np.arange(1, checkpoints + 1)
    return [slope * rng.uniform(0.8, 1.2) * steps + rng.normal(0, 1.0, size=(trials, checkpoints)) for _ in range(n)]


def test_elimination_stops_a_clearly_bad_program_and_never_one_above_the_cutoffs():
    rng = np.random.default_rng(0)
    completed = _synthetic_curves(rng, 40, slope=10.0)
    cutoffs = compute_cutoffs(completed, top_k=20)
    assert all(np.isfinite(cutoffs))

    bad = np.full((5, 9), 2.0)
    assert stop_index(bad.mean(axis=0), cutoffs) == 0

    best = max(completed, key=lambda c: c[:, -1].mean())
    assert stop_index(best.mean(axis=0), cutoffs) is None

    outcomes = set()
    for slope in rng.uniform(2.0, 12.0, size=200):
        means = _synthetic_curves(rng, 1, slope)[0].mean(axis=0)
        index = stop_index(means, cutoffs)
        outcomes.add(index is None)
        beats = all(m >= c for m, c in zip(means[:-1], cutoffs))
        assert (index is None) == beats
        if index is not None:
            assert means[index] < cutoffs[index] and all(m >= c for m, c in zip(means[:index], cutoffs))
    assert outcomes == {True, False}


def test_stop_index_ignores_the_last_checkpoint_and_nan_cutoffs():
    assert stop_index([5.0, 0.0], [1.0, 1.0]) is None
    assert stop_index([0.0, 0.0, 9.0], [math.nan, 1.0]) == 1
    assert stop_index([0.0, 0.0, 0.0], [math.nan]) is None


@dataclasses.dataclass(frozen=True)
class Row:
    env_steps: int
    stopped_early: bool
    error: str | None = None


def test_step_savings_by_hand():
    rows = [Row(500, False), Row(500, False), Row(100, True), Row(200, True), Row(50, False, "boom")]
    savings = step_savings(rows)
    assert (savings.run, savings.saved, savings.full_row, savings.stopped_rows) == (1350, 700, 500, 2)
    assert savings.without_stopping == 2050
    assert savings.fraction == pytest.approx(700 / 2050)
    assert step_savings([Row(100, True)], full_row=1000).saved == 900


def test_step_savings_needs_a_full_run_to_compare_with():
    with pytest.raises(ValueError, match="no complete evaluation"):
        step_savings([Row(100, True)])


def test_top_threshold():
    assert top_threshold(range(1, 201)) == 199
    assert top_threshold([3.0, math.nan, 1.0], top_fraction=0.5) == 3.0
    with pytest.raises(ValueError, match="no finite scores"):
        top_threshold([math.nan])
