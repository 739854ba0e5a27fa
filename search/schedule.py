"""Progressive benchmark elimination (SPEC §3.4, reference §8.3) and what it saved.

Cutoffs come from the top-K completed programs by final mean score. At checkpoint t, with
m_p(t) and se_p(t) a program's mean and standard error of the mean over its trials::

    cutoff(t) = mean_p m_p(t) - num_stdevs * std_p m_p(t) - mean_p se_p(t)

The spread across programs is the population std (as the original); the within-program
standard error uses the sample std, like every other standard error we report. Unlike the
original, all trials of a program run together, so there is one cutoff per checkpoint rather
than one per (trial, checkpoint), and a program's curve never holds nan (failed programs are
not completed programs).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Protocol, Sequence

import numpy as np


def compute_cutoffs(curves: Sequence[np.ndarray], top_k: int, num_stdevs: float = 2.0) -> list[float]:
    """One cutoff per checkpoint from completed programs' (trials, checkpoints) coverage curves.

    Every cutoff is nan (never stop) with fewer than two programs.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    arrays = [np.asarray(c, dtype=np.float64) for c in curves]
    if not arrays:
        return []
    for array in arrays:
        if array.ndim != 2 or array.shape[0] == 0:
            raise ValueError(f"a curve must be a (trials, checkpoints) array with trials, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError("curves of completed programs must be finite")
    checkpoints = {a.shape[1] for a in arrays}
    if len(checkpoints) != 1:
        raise ValueError(f"completed curves have different numbers of checkpoints: {sorted(checkpoints)}")
    width = checkpoints.pop()
    if len(arrays) < 2:
        return [math.nan] * width
    means = np.stack([a.mean(axis=0) for a in arrays])
    best = np.argsort(-means[:, -1], kind="stable")[:top_k]
    if len(best) < 2:
        return [math.nan] * width
    stderrs = np.stack([_stderr(arrays[i]) for i in best])
    top = means[best]
    cutoffs = top.mean(axis=0) - num_stdevs * top.std(axis=0) - stderrs.mean(axis=0)
    return [float(c) for c in cutoffs]


def _stderr(curve: np.ndarray) -> np.ndarray:
    trials = curve.shape[0]
    if trials < 2:
        return np.zeros(curve.shape[1])
    return curve.std(axis=0, ddof=1) / math.sqrt(trials)


def stop_index(means: Sequence[float], cutoffs: Sequence[float]) -> int | None:
    """The checkpoint at which a program with these per-checkpoint mean scores is stopped, if any.

    Mirrors the evaluator: no check after the last checkpoint, and a nan or missing cutoff
    never stops.
    """
    for index, mean in enumerate(means[:-1]):
        if index < len(cutoffs) and not math.isnan(cutoffs[index]) and mean < cutoffs[index]:
            return index
    return None


class StepRow(Protocol):
    """What the savings need of one evaluation row (``search.store.EvaluationRow`` fits)."""

    env_steps: int
    stopped_early: bool
    error: str | None


@dataclasses.dataclass(frozen=True)
class StepSavings:
    """Env steps of one stage with and without early stopping."""

    run: int
    """Env steps actually simulated, all rows together."""
    saved: int
    """Env steps the stopped rows would still have needed to finish."""
    full_row: int
    """Env steps of one full (not stopped) row."""
    stopped_rows: int
    """Rows (trials) that were stopped early."""

    @property
    def without_stopping(self) -> int:
        return self.run + self.saved

    @property
    def fraction(self) -> float:
        """Share of the no-stopping cost that stopping saved."""
        return self.saved / self.without_stopping if self.without_stopping else 0.0


def step_savings(rows: Iterable[StepRow], full_row: int | None = None) -> StepSavings:
    """Savings of early stopping over evaluation rows.

    A full row's cost is the largest cost of a row that neither stopped nor failed (all full
    runs share one lifetime) unless ``full_row`` is given. Failed rows count as run, not saved.
    """
    rows = list(rows)
    if full_row is None:
        complete = [r.env_steps for r in rows if not r.stopped_early and r.error is None]
        if not complete:
            raise ValueError("no complete evaluation to measure a full run's env steps")
        full_row = max(complete)
    stopped = [r for r in rows if r.stopped_early and r.error is None]
    return StepSavings(
        run=sum(int(r.env_steps) for r in rows),
        saved=sum(max(full_row - int(r.env_steps), 0) for r in stopped),
        full_row=int(full_row),
        stopped_rows=len(stopped),
    )


def top_threshold(scores: Sequence[float], top_fraction: float = 0.01) -> float:
    """The lowest score inside the best ``ceil(top_fraction * n)`` of ``scores``."""
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top fraction must be in (0, 1], got {top_fraction}")
    values = np.sort(np.asarray([s for s in scores if math.isfinite(s)], dtype=np.float64))[::-1]
    if len(values) == 0:
        raise ValueError("no finite scores to take a top fraction of")
    return float(values[max(1, math.ceil(top_fraction * len(values))) - 1])
