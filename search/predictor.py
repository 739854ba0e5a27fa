"""Performance predictor and batch selection (SPEC §3.3).

Programs are described by which operations they use (one bit per op present and one bit per
unordered pair of distinct ops present, optionally the node count) and by how they are wired
(``structure_tokens``: input-to-op edges, gradient flags, output op and depth). The original system
(reference §7) repeated its feature block twice under a gradient flag that never differed;
here every block appears once. A k-nearest-neighbour regressor (Manhattan distance, as the
original's knn-10 model) gives the mean of the neighbours' scores and their spread as the
uncertainty.

Batch selection takes ``ceil(epsilon * batch)`` programs at random and the rest by best
predicted score (mean + kappa * spread); with too few known scores it is fully random.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from metacurio.core.program import CURIOSITY, is_constant
from operations.registry import get_op, ops_for_space

NEIGHBOURS = 10
MIN_KNOWN = 10
"""With this many known scores or fewer, selection is fully random (as the original)."""


def default_vocabulary() -> tuple[str, ...]:
    """Sorted names of the enumerable curiosity operations."""
    return tuple(sorted(op.name for op in ops_for_space(CURIOSITY, enumerable_only=True)))


def program_features(
    programs: Sequence[Sequence[str]],
    vocabulary: Sequence[str] | None = None,
    pairs: bool = True,
    size: bool = False,
) -> np.ndarray:
    """(programs, features) float array: op presence bits, op-pair bits, optionally node count.

    Each program is given as the sequence of its op names (repeats allowed).
    """
    vocabulary = tuple(vocabulary) if vocabulary is not None else default_vocabulary()
    if len(set(vocabulary)) != len(vocabulary):
        raise ValueError("feature vocabulary has repeated op names")
    index = {name: i for i, name in enumerate(vocabulary)}
    count = len(vocabulary)
    presence = np.zeros((len(programs), count), dtype=np.float64)
    for row, ops in enumerate(programs):
        if isinstance(ops, str):
            raise ValueError("each program must be a sequence of op names, not one string")
        for name in ops:
            if name not in index:
                raise ValueError(f"op {name!r} is not in the feature vocabulary")
            presence[row, index[name]] = 1.0
    blocks = [presence]
    if pairs:
        first, second = np.triu_indices(count, k=1)
        blocks.append(presence[:, first] * presence[:, second])
    if size:
        blocks.append(np.array([len(ops) for ops in programs], dtype=np.float64).reshape(-1, 1))
    return np.concatenate(blocks, axis=1)


def structure_tokens(program) -> frozenset[str]:
    """What a program computes from what, beyond which ops it uses (a ``metacurio.core.program.Program``).

    - ``SRC>OP#i``: argument ``i`` of an ``OP`` node comes from ``SRC``, a program input (``obs``,
      ``next_obs``, ``action``, ...), ``const`` or the producing node's op (no ``#i`` for a
      commutative op). This tells an s↔s′ mirror pair apart: ``Encode(obs)`` and
      ``Encode(next_obs)`` give different tokens.
    - ``OP:grad`` / ``OP:detached``: the node's gradient facts.
    - ``out:OP`` and ``depth:D``: the op that makes the reward and its depth in the graph.
    """
    nodes = {node.id: node for node in program.nodes}
    facts = program.analysis.facts
    tokens = set()
    for node in program.nodes:
        # A commutative op's argument order is arbitrary: its slots are one.
        commutative = get_op(node.op).commutative
        for i, ref in enumerate(node.args):
            source = "const" if is_constant(ref) else nodes[ref].op if ref in nodes else str(ref)
            tokens.add(f"{source}>{node.op}" + ("" if commutative else f"#{i}"))
        if facts[node.id].carries_gradient:
            tokens.add(f"{node.op}:grad")
        if facts[node.id].detached:
            tokens.add(f"{node.op}:detached")
    depths: dict[str, int] = {}

    def depth(ref) -> int:
        if ref not in nodes:
            return 0
        if ref not in depths:
            depths[ref] = 1 + max((depth(a) for a in nodes[ref].args), default=0)
        return depths[ref]

    tokens.add(f"out:{nodes[program.output].op}")
    tokens.add(f"depth:{depth(program.output)}")
    return frozenset(tokens)


def token_features(token_sets: Sequence[frozenset[str]], vocabulary: Sequence[str] | None = None) -> np.ndarray:
    """(programs, tokens) presence bits; the vocabulary defaults to every token seen, sorted."""
    vocabulary = tuple(vocabulary) if vocabulary is not None else tuple(sorted(set().union(*token_sets)))
    index = {token: i for i, token in enumerate(vocabulary)}
    bits = np.zeros((len(token_sets), len(vocabulary)), dtype=np.float64)
    for row, tokens in enumerate(token_sets):
        bits[row, [index[t] for t in tokens if t in index]] = 1.0
    return bits


def search_features(programs: Sequence) -> np.ndarray:
    """The features a search ranks programs by: op presence and pairs, then structure tokens."""
    ops = [[node.op for node in p.nodes] for p in programs]
    vocabulary = sorted(set(default_vocabulary()).union(*map(set, ops)))
    return np.concatenate(
        [program_features(ops, vocabulary=vocabulary), token_features([structure_tokens(p) for p in programs])], axis=1
    )


class Predictor:
    """k-nearest-neighbour regressor (Manhattan distance, uniform weights) with uncertainty.

    The prediction is the mean of the k nearest known programs' scores and the uncertainty
    their standard deviation. Distances on the 0/1 feature columns come from one matrix
    product, which is exact and many times faster than a generic Manhattan search on a few
    hundred columns (the search refits on every batch).
    """

    def __init__(self, neighbours: int = NEIGHBOURS):
        if neighbours < 1:
            raise ValueError(f"neighbours must be at least 1, got {neighbours}")
        self.neighbours = neighbours
        self._features: np.ndarray | None = None
        self._scores: np.ndarray | None = None

    def fit(self, features: np.ndarray, scores: np.ndarray) -> "Predictor":
        features = _matrix(features, "features")
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (features.shape[0],):
            raise ValueError(f"{features.shape[0]} feature rows but scores of shape {scores.shape}")
        if features.shape[0] == 0:
            raise ValueError("cannot fit the predictor on no programs")
        if not np.all(np.isfinite(scores)):
            raise ValueError("scores to fit must all be finite")
        self._features, self._scores = features, scores
        return self

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the nearest known programs' scores for each row."""
        if self._features is None or self._scores is None:
            raise ValueError("predictor used before fit")
        features = _matrix(features, "features")
        if features.shape[1] != self._features.shape[1]:
            raise ValueError(f"predictor was fit on {self._features.shape[1]} features, got {features.shape[1]}")
        # Fewer known programs than neighbours: average over all of them rather than refuse.
        k = min(self.neighbours, self._features.shape[0])
        means, stds = [], []
        for start in range(0, features.shape[0], _CHUNK):
            distances = manhattan(features[start : start + _CHUNK], self._features)
            nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
            targets = self._scores[nearest]
            means.append(targets.mean(axis=1))
            stds.append(targets.std(axis=1))
        if not means:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(means), np.concatenate(stds)


_CHUNK = 2048
"""Query rows per distance block, to bound memory on large searches."""


def manhattan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Manhattan distances; 0/1 columns through |x| + |y| - 2 x·y."""
    binary = np.all((a == 0) | (a == 1), axis=0) & np.all((b == 0) | (b == 1), axis=0)
    # float32 products of 0/1 values are exact integers well past any feature count.
    a_bits, b_bits = a[:, binary].astype(np.float32), b[:, binary].astype(np.float32)
    shared = (a_bits @ b_bits.T).astype(np.float64)
    distances = a_bits.sum(axis=1, dtype=np.float64)[:, None] + b_bits.sum(axis=1, dtype=np.float64)[None, :] - 2.0 * shared
    for column in np.flatnonzero(~binary):
        distances += np.abs(a[:, column, None] - b[None, :, column])
    return distances


def _matrix(values, name: str) -> np.ndarray:
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {matrix.shape}")
    return matrix


@dataclasses.dataclass(frozen=True)
class Selection:
    """One program chosen for the next batch."""

    id: str
    predicted: float
    """Predicted mean score; nan when there was no prediction (fully random batch)."""
    random: bool
    """Picked at random (exploration) rather than by prediction."""


def select_batch(
    candidate_ids: Sequence[str],
    candidate_features: np.ndarray,
    known_features: np.ndarray,
    known_scores: Sequence[float],
    batch_size: int,
    epsilon: float,
    rng: np.random.Generator,
    kappa: float = 0.0,
) -> list[Selection]:
    """The next batch: best predicted first (by mean + kappa·std), then the random picks.

    Known scores that are nan (failed programs) are left out of the fit. With at most
    ``MIN_KNOWN`` usable scores the whole batch is random. Equal predictions are ordered at
    random so that ties do not favour the enumeration order. Deterministic given ``rng``.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    ids = list(candidate_ids)
    candidate_features = _matrix(candidate_features, "candidate features")
    if candidate_features.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} candidate ids but {candidate_features.shape[0]} feature rows")
    if len(set(ids)) != len(ids):
        raise ValueError("candidate ids are not unique")
    known_scores = np.asarray(known_scores, dtype=np.float64)
    if len(known_scores):
        known_features = _matrix(known_features, "known features")
    else:
        known_features = np.zeros((0, candidate_features.shape[1]))
    if known_features.shape[0] != len(known_scores):
        raise ValueError(f"{known_features.shape[0]} known feature rows but {len(known_scores)} known scores")
    size = min(batch_size, len(ids))
    usable = np.isfinite(known_scores)
    if usable.sum() <= MIN_KNOWN:
        picks = rng.permutation(len(ids))[:size]
        return [Selection(ids[i], math.nan, True) for i in picks]
    num_random = min(math.ceil(epsilon * batch_size), size)
    random_picks = rng.permutation(len(ids))[:num_random]
    rest = np.setdiff1d(np.arange(len(ids)), random_picks)
    predictor = Predictor().fit(known_features[usable], known_scores[usable])
    mean, std = predictor.predict(candidate_features[rest])
    order = np.lexsort((rng.random(len(rest)), -(mean + kappa * std)))[: size - num_random]
    best = [Selection(ids[rest[i]], float(mean[i]), False) for i in order]
    return best + [Selection(ids[i], math.nan, True) for i in random_picks]


def simulate_recall(
    features: np.ndarray,
    scores: Sequence[float],
    budgets: Sequence[float] = (0.25, 0.5),
    top_fraction: float = 0.01,
    batch_size: int = 56,
    epsilon: float = 0.1,
    seed: int = 0,
    repeats: int = 3,
    kappa: float = 0.0,
) -> dict:
    """Replay a search over programs whose scores are known, in predictor order and in random order.

    Returns ``programs``, ``top`` (size of the true top set), ``budgets``, and for each of
    ``predictor`` and ``random`` the mean share of the true top set found after evaluating each
    budget fraction of the programs (``*_runs`` hold every repeat's shares).
    """
    features = _matrix(features, "features")
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if features.shape[0] != n:
        raise ValueError(f"{features.shape[0]} feature rows but {n} scores")
    if n == 0 or not np.all(np.isfinite(scores)):
        raise ValueError("recall needs at least one program and finite scores")
    if not budgets or any(not 0.0 < b <= 1.0 for b in budgets):
        raise ValueError(f"budgets must be fractions in (0, 1], got {tuple(budgets)}")
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top fraction must be in (0, 1], got {top_fraction}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    top = max(1, math.ceil(top_fraction * n))
    top_set = set(np.argsort(-scores, kind="stable")[:top].tolist())
    counts = [math.ceil(b * n) for b in budgets]
    predictor_runs, random_runs = [], []
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        order = _predictor_order(features, scores, max(counts), batch_size, epsilon, rng, kappa)
        predictor_runs.append([_share(order[:c], top_set) for c in counts])
        random_runs.append([_share(rng.permutation(n)[:c], top_set) for c in counts])
    return {
        "programs": n,
        "top": top,
        "budgets": list(budgets),
        "predictor": np.mean(predictor_runs, axis=0).tolist(),
        "random": np.mean(random_runs, axis=0).tolist(),
        "predictor_runs": predictor_runs,
        "random_runs": random_runs,
    }


def _predictor_order(features, scores, count, batch_size, epsilon, rng, kappa) -> list[int]:
    remaining = list(range(len(scores)))
    evaluated: list[int] = []
    while len(evaluated) < count and remaining:
        batch = select_batch(
            [str(i) for i in remaining],
            features[remaining],
            features[evaluated],
            scores[evaluated],
            batch_size,
            epsilon,
            rng,
            kappa,
        )
        picked = [int(s.id) for s in batch]
        evaluated.extend(picked)
        chosen = set(picked)
        remaining = [i for i in remaining if i not in chosen]
    return evaluated


def _share(indices, top_set: set[int]) -> float:
    return len(top_set.intersection(int(i) for i in indices)) / len(top_set)
