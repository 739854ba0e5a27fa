"""A run as the report sees it: read from the store once, with the views every part shares."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

from metacurio.agent import gym_presets
from metacurio.core import program_io
from metacurio.core.program import Program
from search import store as st
from search.store import DecisionRow, EvaluationRow, ProgramResult, ProgramRow, RunStore, StoreError


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """What the report shows and how much work it spends on it."""

    top_k: int = 10
    """Programs in the top table, the pseudo-code dumps and the learning-curve plot."""
    top_fraction: float = 0.01
    """The "true top" share for predictor recall and for what early stopping lost."""
    recall_min_programs: int = 100
    """Completed programs needed before the predictor recall replay means anything."""
    recall_max_programs: int = 4000
    """Larger runs replay the recall on a seeded sample of this many completed programs."""
    recall_repeats: int = 3
    """Independent replays averaged for the recall estimate."""

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"report top_k must be at least 1, got {self.top_k}")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"report top fraction must be in (0, 1], got {self.top_fraction}")


DEFAULT = ReportConfig()


@dataclasses.dataclass(frozen=True)
class RunData:
    """Everything the report needs, read from the store once."""

    run_dir: Path
    store: RunStore
    funnel: list[tuple[str, int, str]]
    programs: dict[str, ProgramRow]
    decisions: dict[str, dict[str, DecisionRow]]
    """stage -> program id -> decision (stages include ``select``)."""
    results: dict[str, dict[str, ProgramResult]]
    """stage -> program id -> per-program aggregate."""
    rows: dict[str, list[EvaluationRow]]
    """stage -> evaluation rows."""

    def decision(self, stage: str, program_id: str) -> str | None:
        row = self.decisions.get(stage, {}).get(program_id)
        return None if row is None else row.decision

    @functools.cached_property
    def score_name(self) -> str:
        """What the run's scores measure: coverage, or a combiner search's environment return."""
        return self.store.config().score_name

    @functools.cached_property
    def controls(self) -> dict[str, str]:
        """Control program id -> name, in the run's order (none for runs without controls)."""
        stored = json.loads(self.store.meta(st.CONTROLS_META) or "{}")
        return {pid: entry["name"] for pid, entry in stored.items()}

    @functools.cached_property
    def outside_programs(self) -> dict[str, str | None]:
        """JSON of the programs a run evaluated without searching them: its controls and what it
        transferred (None for plain PPO, which has no program)."""
        found: dict[str, str | None] = {}
        for key in (st.CONTROLS_META, st.TRANSFER_PROGRAMS_META):
            for pid, entry in json.loads(self.store.meta(key) or "{}").items():
                found.setdefault(pid, entry["json"])
        return found

    def stage_rows(self, stage: str, program_id: str) -> list[EvaluationRow]:
        """One program's evaluation rows in one stage, by seed."""
        return self._rows_by_program.get((stage, program_id), [])

    @functools.cached_property
    def _rows_by_program(self) -> dict[tuple[str, str], list[EvaluationRow]]:
        """(stage, program id) -> rows by seed, indexed once: tables and plots ask per program."""
        index: dict[tuple[str, str], list[EvaluationRow]] = {}
        for stage, rows in self.rows.items():
            for row in sorted(rows, key=lambda r: r.seed):
                index.setdefault((stage, row.program_id), []).append(row)
        return index

    @functools.cached_property
    def ranking(self) -> list[ProgramResult]:
        """Completed search-stage programs, best mean first, ties by id."""
        done = [r for pid, r in self.results[st.SEARCH].items() if self.decision(st.SEARCH, pid) == st.COMPLETED]
        return sorted(done, key=lambda r: (-r.mean, r.program_id))


def load(run_dir: str | Path) -> RunData:
    """Read a run; a missing, foreign or damaged store gives a one-line StoreError."""
    run_dir = Path(run_dir)
    store = RunStore.open(run_dir)
    try:
        decisions: dict[str, dict[str, DecisionRow]] = {}
        for row in store.decisions():
            decisions.setdefault(row.stage, {})[row.program_id] = row
        rows: dict[str, list[EvaluationRow]] = {stage: [] for stage in st.STAGES}
        for row in store.evaluations():
            rows.setdefault(row.stage, []).append(row)
        results = {stage: {r.program_id: r for r in store.program_results(stage)} for stage in rows}
        return RunData(
            run_dir=run_dir,
            store=store,
            funnel=store.funnel(),
            programs={p.id: p for p in store.programs()},
            decisions=decisions,
            results=results,
            rows=rows,
        )
    except (sqlite3.Error, json.JSONDecodeError, TypeError) as err:
        store.close()
        raise StoreError(f"run store in {run_dir} is damaged: {err}") from None


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """program − control, paired by seed, with a 95 % t-interval."""

    mean: float
    low: float
    high: float
    seeds: int
    """Seeds both ran (the pairs)."""

    @property
    def resolved(self) -> bool:
        """The interval excludes 0 (never when the differences had no spread: no interval then)."""
        return self.low > 0 or self.high < 0


def paired_difference(program: Sequence[EvaluationRow], control: Sequence[EvaluationRow]) -> PairedDifference | None:
    """program − control over the seeds both scored; None with fewer than two such seeds.

    Scores of one seed share the environment draws, so pairing removes the seed's own luck from
    the comparison; the interval is Student's t over the per-seed differences (scipy).
    """
    mine = {r.seed: r.score for r in program if r.score is not None}
    theirs = {r.seed: r.score for r in control if r.score is not None}
    seeds = sorted(mine.keys() & theirs.keys())
    if len(seeds) < 2:
        return None
    differences = np.array([mine[s] - theirs[s] for s in seeds], dtype=np.float64)
    mean, error = float(differences.mean()), float(stats.sem(differences))
    if error == 0.0:
        # Identical differences on a few seeds (integer coverage makes them common) give no interval.
        return PairedDifference(mean, math.nan, math.nan, len(seeds))
    low, high = stats.t.interval(0.95, len(seeds) - 1, loc=mean, scale=error)
    return PairedDifference(mean, float(low), float(high), len(seeds))


@dataclasses.dataclass(frozen=True)
class TransferRow:
    """One program on one transfer target: its result, against plain PPO, and its gridworld score."""

    program_id: str
    name: str
    result: ProgramResult
    versus_plain: PairedDifference | None
    """This program − plain PPO, paired by seed (None for plain PPO itself)."""
    is_plain: bool
    """This row is plain PPO (the zero-reward program)."""
    gridworld: ProgramResult | None
    """The same program's gridworld score on the run's fresh seeds (fresh or control-fresh stage),
    where it has one: every program with one was scored on the same fresh seeds."""
    rows: list[EvaluationRow]


@dataclasses.dataclass(frozen=True)
class TransferTarget:
    """Every program transferred to one environment at one budget (``env/preset``)."""

    name: str
    settings: dict
    """The stored preset (agent, budget, episode limit) and combiner id of this target."""
    rows: list[TransferRow]
    """Best mean first; programs whose every seed failed last."""

    @property
    def env_id(self) -> str:
        return self.name.rsplit("/", 1)[0]

    @property
    def preset(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def deep_sea_size(self) -> int | None:
        """N for a DeepSea-N target (its curves count treasures found), None for gymnasium ones."""
        return gym_presets.deep_sea_size(self.env_id)


def first_find_episode(row: EvaluationRow, num_envs: int) -> int | None:
    """Episodes the trial completed (all its environments) by the end of the episode round in
    which a DeepSea treasure was first found; None if it never was. DeepSea's episodes all last
    N steps and its environments start together, so each point of the curve is one round."""
    for index, found in enumerate(row.curve):
        if found > 0:
            return (index + 1) * num_envs
    return None


PLAIN_PPO = "none"
"""Reference name of the zero-reward program that is plain PPO in transfer runs and their tables."""
PRESET_ORDER = ("paper", "reduced", "quick")


def transfer_targets(data: RunData) -> list[TransferTarget]:
    """The run's transfer results per target, each program paired with plain PPO by seed."""
    names = {pid: entry["name"] for pid, entry in json.loads(data.store.meta(st.TRANSFER_PROGRAMS_META) or "{}").items()}
    plain_id = program_io.resolve(PLAIN_PPO).id
    by_target: dict[str, dict[str, list[EvaluationRow]]] = {}
    for row in sorted(data.rows.get(st.TRANSFER, []), key=lambda r: r.seed):
        by_target.setdefault(row.env, {}).setdefault(row.program_id, []).append(row)
    targets = []
    for name, programs in by_target.items():
        plain = programs.get(plain_id)
        rows = []
        for pid, evaluations in programs.items():
            versus = None if plain is None or pid == plain_id else paired_difference(evaluations, plain)
            gridworld = data.results.get(st.FRESH, {}).get(pid) or data.results.get(st.CONTROL_FRESH, {}).get(pid)
            result = st.aggregate(pid, evaluations)
            rows.append(TransferRow(pid, names.get(pid, pid), result, versus, pid == plain_id, gridworld, evaluations))
        rows.sort(key=lambda r: (math.isnan(r.result.mean), 0.0 if math.isnan(r.result.mean) else -r.result.mean, r.program_id))
        settings = json.loads(data.store.meta(f"transfer:{name}") or "{}")
        targets.append(TransferTarget(name, settings, rows))
    return sorted(targets, key=_target_order)


def _target_order(target: TransferTarget) -> tuple:
    preset = PRESET_ORDER.index(target.preset) if target.preset in PRESET_ORDER else len(PRESET_ORDER)
    return (target.env_id, preset, target.name)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's ρ and its two-sided p-value (scipy); nan for fewer than three pairs or no spread."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan, math.nan
    result = stats.spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


def parse_program(data: RunData, program_id: str) -> Program:
    """A stored program; results for a program the store does not hold mean a damaged store."""
    row = data.programs.get(program_id)
    if row is None:
        raise StoreError(f"run store in {data.run_dir} has results for unknown program {program_id}")
    return program_io.from_json(row.json)


# The funnel


PRUNED = "pruned: "
"""Prefix of the stored funnel rows that count one static pruning rule's rejections."""


def funnel(data: RunData, top_k: int) -> list[tuple[str, int, str]]:
    """The programs left at each stage: enumeration, dedup, then what the search stage did."""
    return [row for row in _all_steps(data, top_k) if not row[0].startswith(PRUNED)]


def pruning(data: RunData) -> list[tuple[str, int, str]]:
    """Candidates each static pruning rule rejected: partial programs, not programs left."""
    return [(step.removeprefix(PRUNED), count, detail) for step, count, detail in data.funnel if step.startswith(PRUNED)]


def _all_steps(data: RunData, top_k: int) -> list[tuple[str, int, str]]:
    """The stored enumeration funnel followed by what the search stage did with the unique programs."""
    search = data.decisions.get(st.SEARCH, {})
    counts = {d: sum(row.decision == d for row in search.values()) for d in (st.COMPLETED, st.STOPPED, st.FAILED)}
    ranked = len(data.ranking)
    return list(data.funnel) + [
        ("evaluated", len(search), "programs with a search-stage decision"),
        ("failed in evaluation", counts[st.FAILED], "raised or produced non-finite rewards"),
        ("stopped early", counts[st.STOPPED], "fell below an elimination cutoff"),
        ("completed", counts[st.COMPLETED], "ran the whole lifetime"),
        ("top", min(top_k, ranked), f"best completed programs shown below (of {ranked})"),
    ]
