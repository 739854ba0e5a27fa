"""Predictor features, kNN regression with spread, batch selection and the offline recall replay."""

import math

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsRegressor

from search.predictor import Predictor, default_vocabulary, manhattan, program_features, select_batch, simulate_recall


def test_features_by_hand():
    features = program_features([["A", "C", "C"], ["B"], []], vocabulary=["A", "B", "C"], size=True)
    # presence A B C | pairs AB AC BC | node count
    assert features.tolist() == [
        [1, 0, 1, 0, 1, 0, 3],
        [0, 1, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],
    ]
    assert program_features([["A", "B"]], vocabulary=["A", "B"], pairs=False).tolist() == [[1, 1]]


def test_default_vocabulary_is_the_enumerable_curiosity_ops_once():
    vocabulary = default_vocabulary()
    assert list(vocabulary) == sorted(set(vocabulary))
    assert {"Encode", "L2Distance", "Predict"} <= set(vocabulary)
    width = program_features([["Encode"]]).shape[1]
    assert width == len(vocabulary) + len(vocabulary) * (len(vocabulary) - 1) // 2


def test_features_reject_unknown_ops_and_bare_strings():
    with pytest.raises(ValueError, match="'Nope' is not in the feature vocabulary"):
        program_features([["Nope"]], vocabulary=["A"])
    with pytest.raises(ValueError, match="not one string"):
        program_features(["A B"], vocabulary=["A", "B"])


def test_manhattan_mixes_bit_and_count_columns_exactly():
    a = np.array([[1, 0, 1, 3.5], [0, 0, 0, 0]])
    b = np.array([[1, 1, 0, 1.0]])
    assert manhattan(a, b).tolist() == [[2 + 2.5], [1 + 1 + 1]]


def test_predictor_matches_sklearn_knn_on_untied_data():
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, size=(80, 12)).astype(float)
    known = np.concatenate([bits[:60], rng.normal(size=(60, 1))], axis=1)
    query = np.concatenate([bits[60:], rng.normal(size=(20, 1))], axis=1)
    scores = rng.normal(size=60)
    mean, std = Predictor(neighbours=10).fit(known, scores).predict(query)
    reference = KNeighborsRegressor(n_neighbors=10, metric="manhattan").fit(known, scores)
    np.testing.assert_allclose(mean, reference.predict(query))
    neighbour_scores = scores[reference.kneighbors(query, return_distance=False)]
    np.testing.assert_allclose(std, neighbour_scores.std(axis=1))


def test_predictor_with_fewer_programs_than_neighbours_averages_them_all():
    mean, std = Predictor().fit([[0.0], [1.0], [5.0]], [1.0, 2.0, 6.0]).predict([[0.0]])
    assert mean.tolist() == [3.0] and std[0] == pytest.approx(np.std([1.0, 2.0, 6.0]))


def test_predictor_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        Predictor().fit([[0.0], [1.0]], [1.0, math.nan])
    with pytest.raises(ValueError, match="before fit"):
        Predictor().predict([[0.0]])
    with pytest.raises(ValueError, match="fit on 1 features, got 2"):
        Predictor().fit([[0.0]], [1.0]).predict([[0.0, 1.0]])


def _two_op_world(n_candidates=100, n_known=40):
    """Programs use op A or not; score 10 with A, 0 without."""
    vocabulary = ["A", "B", "C"]
    rng = np.random.default_rng(0)

    def programs(n):
        return [["A", "B"] if i % 2 == 0 else [str(rng.choice(["B", "C"]))] for i in range(n)]

    candidates = programs(n_candidates)
    known = programs(n_known)
    scores = [10.0 if "A" in p else 0.0 for p in known]
    ids = [f"c{i}" for i in range(n_candidates)]
    return ids, candidates, program_features(candidates, vocabulary), program_features(known, vocabulary), scores


def test_select_batch_takes_best_predicted_plus_ceil_epsilon_random():
    ids, candidates, cand_x, known_x, scores = _two_op_world()
    batch = select_batch(ids, cand_x, known_x, scores, batch_size=20, epsilon=0.1, rng=np.random.default_rng(3))
    assert len(batch) == 20 and len({s.id for s in batch}) == 20
    random_picks = [s for s in batch if s.random]
    predicted = [s for s in batch if not s.random]
    assert len(random_picks) == math.ceil(0.1 * 20)
    assert all(math.isnan(s.predicted) for s in random_picks)
    assert all(s.predicted == 10.0 for s in predicted)
    assert all("A" in candidates[ids.index(s.id)] for s in predicted)
    assert batch[: len(predicted)] == predicted


def test_select_batch_is_deterministic_given_the_generator():
    ids, _, cand_x, known_x, scores = _two_op_world()

    def run(seed):
        return select_batch(ids, cand_x, known_x, scores, 20, 0.1, np.random.default_rng(seed))

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_select_batch_is_random_with_ten_or_fewer_usable_scores():
    ids, _, cand_x, known_x, scores = _two_op_world(n_known=15)
    scores = scores[:10] + [math.nan] * 5
    batch = select_batch(ids, cand_x, known_x, scores, 8, 0.1, np.random.default_rng(0))
    assert len(batch) == 8 and all(s.random and math.isnan(s.predicted) for s in batch)
    empty = select_batch(ids, cand_x, np.zeros((0, cand_x.shape[1])), [], 8, 0.1, np.random.default_rng(0))
    assert len(empty) == 8 and all(s.random for s in empty)


def test_select_batch_returns_every_candidate_when_fewer_than_batch():
    ids, _, cand_x, known_x, scores = _two_op_world(n_candidates=5)
    batch = select_batch(ids, cand_x, known_x, scores, 56, 0.1, np.random.default_rng(0))
    assert sorted(s.id for s in batch) == sorted(ids)


def test_select_batch_kappa_trades_mean_for_spread():
    # Ten known [P] programs all score 5; ten known [Q] programs alternate 0 / 10 (mean 5, std 5).
    vocabulary = ["P", "Q"]
    known = program_features([["P"]] * 10 + [["Q"]] * 10, vocabulary)
    scores = [5.0] * 10 + [0.0, 10.0] * 5
    cands = program_features([["P"], ["Q"]], vocabulary)

    def pick(kappa):
        return select_batch(["p", "q"], cands, known, scores, 1, 0.0, np.random.default_rng(0), kappa=kappa)[0].id

    assert pick(1.0) == "q"
    assert pick(-1.0) == "p"


def test_select_batch_rejects_bad_arguments():
    ids, _, cand_x, known_x, scores = _two_op_world()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="epsilon"):
        select_batch(ids, cand_x, known_x, scores, 10, 1.5, rng)
    with pytest.raises(ValueError, match="batch size"):
        select_batch(ids, cand_x, known_x, scores, 0, 0.1, rng)
    with pytest.raises(ValueError, match="99 candidate ids but 100 feature rows"):
        select_batch(ids[:-1], cand_x, known_x, scores, 10, 0.1, rng)


def test_simulated_recall_beats_random_when_ops_explain_scores():
    rng = np.random.default_rng(2)
    vocabulary = [f"op{i}" for i in range(12)]
    programs = [list(rng.choice(vocabulary, size=rng.integers(2, 5), replace=False)) for _ in range(600)]
    features = program_features(programs, vocabulary)
    weights = rng.normal(size=len(vocabulary))
    scores = features[:, : len(vocabulary)] @ weights + 0.01 * rng.normal(size=len(programs))
    result = simulate_recall(features, scores, budgets=(0.25, 0.5), batch_size=30, epsilon=0.1, seed=0, repeats=2)
    assert result["programs"] == 600 and result["top"] == 6
    assert len(result["predictor_runs"]) == 2 and len(result["random_runs"]) == 2
    assert all(0.0 <= share <= 1.0 for run in result["predictor_runs"] + result["random_runs"] for share in run)
    assert result["predictor"][1] >= 0.8
    assert result["predictor"][1] > result["random"][1]
    assert result["predictor"][0] <= result["predictor"][1]
    again = simulate_recall(features, scores, budgets=(0.25, 0.5), batch_size=30, epsilon=0.1, seed=0, repeats=2)
    assert again == result


def test_simulated_recall_of_the_whole_space_is_complete():
    features = program_features([["A"], ["B"], ["A", "B"]] * 10, ["A", "B"])
    scores = np.arange(30.0)
    result = simulate_recall(features, scores, budgets=(1.0,), top_fraction=0.1, batch_size=4, repeats=1)
    assert result["predictor"] == [1.0] and result["random"] == [1.0] and result["top"] == 3


def test_simulated_recall_rejects_bad_input():
    with pytest.raises(ValueError, match="budgets"):
        simulate_recall(np.zeros((3, 1)), [1.0, 2.0, 3.0], budgets=(0.0,))
    with pytest.raises(ValueError, match="finite"):
        simulate_recall(np.zeros((2, 1)), [1.0, math.nan])


def test_structure_tokens_tell_a_mirror_pair_apart_and_ignore_commutative_order():
    from metacurio.core.program import ProgramBuilder
    from search.predictor import search_features, structure_tokens

    def distil(first, second, swap=False):
        b = ProgramBuilder("curiosity")
        b.state("net", "ObsNet")
        x, y = b.forward("Encode", first, state="net"), b.forward("EncodeDetached", second, state="net")
        r = b.forward("L2Distance", *((y, x) if swap else (x, y)))
        b.update("AddToLoss", r)
        return b.build(output=r)

    forward, mirror = distil("obs", "next_obs"), distil("next_obs", "obs")
    assert structure_tokens(forward) ^ structure_tokens(mirror) == {
        "obs>Encode#0", "next_obs>Encode#0", "next_obs>EncodeDetached#0", "obs>EncodeDetached#0"
    }  # fmt: skip
    assert structure_tokens(distil("obs", "next_obs", swap=True)) == structure_tokens(forward)
    assert {"depth:2", "out:L2Distance", "EncodeDetached:detached", "Encode:grad"} <= structure_tokens(forward)
    features = search_features([forward, mirror])
    # Same ops, so the op block agrees; the structure block differs in exactly those four tokens.
    assert np.abs(features[0] - features[1]).sum() == 4
