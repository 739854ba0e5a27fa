"""The SQLite store of one run (SPEC §3.5), written by one process at a time (``search.run_lock``).

``RUN_DIR/store.sqlite`` (WAL mode) holds the run's config and versions (``meta``), the
enumeration funnel, every program with its status, one evaluation row per
(program, stage, env, seed) and one decision row per (program, stage). Every write is one
transaction, so a run killed at any moment keeps whole programs only.

Stages: ``search`` (progressive elimination), ``recheck`` (full evaluation of a sample of
stopped programs), ``fresh`` (the best programs on fresh seeds); a program is done for a
stage iff it has that stage's decision row. Batch selections are decisions too, under the
stage ``select`` (decision ``selected``, detail ``{"batch", "predicted", "random", "cutoffs"}``),
so that a resumed run re-runs an interrupted batch with the cutoffs it was given. The control
programs (meta ``controls``: plain PPO and reference methods) run in full in ``control-search``
on the search seeds and in ``control-fresh`` on the fresh seeds: their own stages, because a
control may also be one of the searched programs.

``transfer`` (``metacurio transfer``) is a stage without decisions: a decision is one per
(program, stage), but a program is transferred to several environments, seed by seed. Each
lifetime is its own row and transaction, and a stored (program, env, seed) row is done.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sqlite3
import time
from importlib import metadata
from pathlib import Path
from typing import Iterable, Sequence

from search.config import ConfigError, SearchConfig

FILE = "store.sqlite"
SEARCH, RECHECK, FRESH, SELECT, TRANSFER = "search", "recheck", "fresh", "select", "transfer"
CONTROL_SEARCH, CONTROL_FRESH = "control-search", "control-fresh"
CONTROL_OF = {SEARCH: CONTROL_SEARCH, FRESH: CONTROL_FRESH}
"""The stage where the controls ran on the same seeds as a scoring stage."""
STAGES = (SEARCH, RECHECK, FRESH, CONTROL_SEARCH, CONTROL_FRESH)
CONTROLS_META = "controls"
"""Meta key: JSON object control program id -> {"name", "json"} of the run's control programs."""
TRANSFER_PROGRAMS_META = "transfer_programs"
"""Meta key: JSON object program id -> {"name", "json"} of everything transferred in the run
(``json`` null for plain PPO)."""
"""The search's stages, each with a decision per program."""
COMPLETED, STOPPED, FAILED, SELECTED = "completed", "stopped", "failed", "selected"

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE funnel(position INTEGER, step TEXT PRIMARY KEY, count INTEGER, detail TEXT);
CREATE TABLE programs(id TEXT PRIMARY KEY, position INTEGER, size INTEGER, ops TEXT, json TEXT,
                      status TEXT, class_of TEXT, error TEXT);
CREATE TABLE evaluations(program_id TEXT, stage TEXT, env TEXT, seed INTEGER, score REAL, curve TEXT,
                         checkpoint_steps TEXT, stopped_early INTEGER, error TEXT, env_steps INTEGER,
                         seconds REAL, worker TEXT, created REAL,
                         PRIMARY KEY (program_id, stage, env, seed));
CREATE TABLE decisions(program_id TEXT, stage TEXT, decision TEXT, detail TEXT, created REAL,
                       PRIMARY KEY (program_id, stage));
"""


class StoreError(ValueError):
    """The run directory or its store is missing, unreadable or inconsistent (one line)."""


@dataclasses.dataclass(frozen=True)
class ProgramRow:
    id: str
    position: int
    size: int
    ops: str
    """Space-separated op names, in node order."""
    json: str
    status: str
    """'unique' (to evaluate), 'duplicate' (see class_of) or 'failed' (see error)."""
    class_of: str | None
    error: str | None


@dataclasses.dataclass(frozen=True)
class EvaluationRow:
    program_id: str
    stage: str
    env: str
    seed: int
    score: float | None
    """Coverage at the end of the trial (at the stop if stopped early); None if it raised."""
    curve: tuple[float, ...]
    checkpoint_steps: tuple[int, ...]
    stopped_early: bool
    error: str | None
    env_steps: int
    seconds: float
    worker: str
    created: float


@dataclasses.dataclass(frozen=True)
class DecisionRow:
    program_id: str
    stage: str
    decision: str
    detail: str
    created: float


@dataclasses.dataclass(frozen=True)
class ProgramResult:
    """One program's outcome in one stage, aggregated over its trials."""

    program_id: str
    mean: float
    """Mean score over trials (nan when every trial raised)."""
    stderr: float
    """Standard error of the mean over trials (0 for one trial)."""
    trials: int
    stopped_early: bool
    error: str | None
    env_steps: int
    seconds: float


class RunStore:
    """Read and write access to one run's ``store.sqlite``."""

    def __init__(self, run_dir: Path, connection: sqlite3.Connection):
        self.run_dir = run_dir
        self._db = connection

    @classmethod
    def create(cls, run_dir: str | Path, config: SearchConfig, command: str, meta: dict[str, str] | None = None) -> "RunStore":
        """A new store in ``run_dir`` (created if needed); refuses a directory that has one.

        The store is built under another name and linked into place, so a kill never leaves a
        half-created store that could neither be resumed nor replaced. Callers that write hold
        the directory's ``search.run_lock.RunLock`` first.
        """
        run_dir = Path(run_dir)
        path = run_dir / FILE
        taken = StoreError(f"run directory {run_dir} already holds a run; resume it with --resume or pick another --out")
        if path.exists():
            raise taken
        partial = run_dir / f"{FILE}.partial-{os.getpid()}"
        values = {"config": config.to_json(), "versions": json.dumps(_versions()), "command": command, "created": str(time.time())}
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            for leftover in run_dir.glob(f"{FILE}.partial*"):
                leftover.unlink(missing_ok=True)
            db = _connect(partial, create=True)
            with db:
                db.executescript(SCHEMA)
                db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", {**values, **(meta or {})}.items())
            db.close()
            # A hard link never replaces an existing file, so two creators cannot overwrite each other.
            os.link(partial, path)
            partial.unlink()
            return cls(run_dir, _connect(path, create=False))
        except FileExistsError:
            partial.unlink(missing_ok=True)
            raise taken from None
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"cannot create a run store in {run_dir}: {err}") from None

    @classmethod
    def open(cls, run_dir: str | Path) -> "RunStore":
        """The store of an existing run; one-line error if there is none or it is unreadable."""
        run_dir = Path(run_dir)
        path = run_dir / FILE
        if not path.is_file():
            raise StoreError(f"not a metacurio run directory: {run_dir}")
        try:
            db = _connect(path, create=False)
            row = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        except sqlite3.Error:
            raise StoreError(f"not a metacurio run directory: {run_dir}") from None
        if row is None:
            db.close()
            raise StoreError(f"not a metacurio run directory: {run_dir}")
        store = cls(run_dir, db)
        try:
            store.config()
        except StoreError:
            db.close()
            raise
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Reading

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def config(self) -> SearchConfig:
        try:
            return SearchConfig.from_json(self.meta("config"))
        except ConfigError as err:
            raise StoreError(f"run {self.run_dir} has a malformed config: {err}") from None

    def funnel(self) -> list[tuple[str, int, str]]:
        rows = self._db.execute("SELECT step, count, detail FROM funnel ORDER BY position")
        return [(step, int(count), detail) for step, count, detail in rows]

    def programs(self, status: str | None = None) -> list[ProgramRow]:
        query = "SELECT id, position, size, ops, json, status, class_of, error FROM programs"
        rows = self._select(query, "status", status, "position")
        return [ProgramRow(*row) for row in rows]

    def evaluations(self, stage: str | None = None) -> list[EvaluationRow]:
        query = (
            "SELECT program_id, stage, env, seed, score, curve, checkpoint_steps, stopped_early, error,"
            " env_steps, seconds, worker, created FROM evaluations"
        )
        rows = self._select(query, "stage", stage, "program_id, stage, env, seed")
        return [_evaluation(row) for row in rows]

    def decisions(self, stage: str | None = None) -> list[DecisionRow]:
        query = "SELECT program_id, stage, decision, detail, created FROM decisions"
        return [DecisionRow(*row) for row in self._select(query, "stage", stage, "created, program_id")]

    def decided(self, stage: str) -> dict[str, str]:
        """program id -> decision for one stage."""
        rows = self._db.execute("SELECT program_id, decision FROM decisions WHERE stage = ?", (stage,))
        return dict(rows.fetchall())

    def program_results(self, stage: str = SEARCH) -> list[ProgramResult]:
        """Per-program aggregates of one stage's evaluations, in program id order."""
        by_program: dict[str, list[EvaluationRow]] = {}
        for row in self.evaluations(stage):
            by_program.setdefault(row.program_id, []).append(row)
        return [aggregate(pid, rows) for pid, rows in sorted(by_program.items())]

    def ranking(self, stage: str = SEARCH) -> list[ProgramResult]:
        """Programs without an error, best mean first, ties by id."""
        results = [r for r in self.program_results(stage) if r.error is None]
        return sorted(results, key=lambda r: (-r.mean, r.program_id))

    def _select(self, query: str, column: str, value: str | None, order: str):
        if value is None:
            return self._db.execute(f"{query} ORDER BY {order}").fetchall()
        return self._db.execute(f"{query} WHERE {column} = ? ORDER BY {order}", (value,)).fetchall()

    # Writing (the holder of the run lock only)

    def set_meta(self, values: dict[str, str]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", values.items())

    def write_candidates(
        self, funnel: Sequence[tuple[str, int, str]], programs: Iterable[ProgramRow], meta: dict[str, str]
    ) -> None:
        """The enumeration funnel, every program and what was derived from them, in one transaction."""
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", meta.items())
            self._db.executemany(
                "INSERT INTO funnel(position, step, count, detail) VALUES (?, ?, ?, ?)",
                [(i, step, int(count), detail) for i, (step, count, detail) in enumerate(funnel)],
            )
            self._db.executemany(
                "INSERT INTO programs(id, position, size, ops, json, status, class_of, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [dataclasses.astuple(p) for p in programs],
            )

    def record_selection(self, batch: int, selections: Sequence[tuple[str, float, bool]], cutoffs: Sequence[float]) -> None:
        """A search batch: (program id, predicted score, random pick) with the batch's cutoffs."""
        now = time.time()
        cutoff_list = [None if math.isnan(c) else float(c) for c in cutoffs]
        rows = []
        for pid, predicted, rnd in selections:
            detail = {"batch": batch, "predicted": _finite(predicted), "random": bool(rnd), "cutoffs": cutoff_list}
            rows.append((pid, SELECT, SELECTED, json.dumps(detail), now))
        with self._db:
            self._db.executemany(
                "INSERT INTO decisions(program_id, stage, decision, detail, created) VALUES (?, ?, ?, ?, ?)", rows
            )

    def record_outcome(self, program_id: str, stage: str, evaluations: Sequence[EvaluationRow], decision: str, detail: str) -> None:
        """One program's evaluations in one stage of the search and its decision, in one transaction.

        A key already present raises (sqlite3.IntegrityError): evaluating twice is a bug.
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        with self._db:
            self._insert_evaluations(evaluations)
            self._db.execute(
                "INSERT INTO decisions(program_id, stage, decision, detail, created) VALUES (?, ?, ?, ?, ?)",
                (program_id, stage, decision, detail, time.time()),
            )

    def record_transfer(self, evaluation: EvaluationRow) -> None:
        """One transfer lifetime in its own transaction, without a decision (see the module doc).

        A key already present raises (sqlite3.IntegrityError): transferring twice is a bug.
        """
        if evaluation.stage != TRANSFER:
            raise ValueError(f"a transfer row must have stage {TRANSFER!r}, not {evaluation.stage!r}")
        with self._db:
            self._insert_evaluations([evaluation])

    def _insert_evaluations(self, evaluations: Sequence[EvaluationRow]) -> None:
        self._db.executemany(
            "INSERT INTO evaluations(program_id, stage, env, seed, score, curve, checkpoint_steps, stopped_early, error,"
            " env_steps, seconds, worker, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_evaluation_values(e) for e in evaluations],
        )


def _connect(path: Path, create: bool) -> sqlite3.Connection:
    # mode=rw never creates a file, so opening a wrong path cannot leave an empty store behind.
    uri = path.resolve().as_uri() + ("?mode=rwc" if create else "?mode=rw")
    db = sqlite3.connect(uri, uri=True, timeout=30.0)
    if create:
        # WAL persists in the file; readers (the report) then never block the driver's writes.
        db.execute("PRAGMA journal_mode=WAL")
    return db


def _evaluation(row) -> EvaluationRow:
    values = list(row)
    values[5] = tuple(json.loads(values[5]))
    values[6] = tuple(json.loads(values[6]))
    values[7] = bool(values[7])
    return EvaluationRow(*values)


def _evaluation_values(e: EvaluationRow) -> tuple:
    return (
        e.program_id, e.stage, e.env, int(e.seed), None if e.score is None else float(e.score),
        json.dumps([float(c) for c in e.curve]), json.dumps([int(s) for s in e.checkpoint_steps]),
        int(e.stopped_early), e.error, int(e.env_steps), float(e.seconds), e.worker, float(e.created),
    )  # fmt: skip


def aggregate(program_id: str, rows: Sequence[EvaluationRow]) -> ProgramResult:
    """One program's trials in one stage: mean, standard error, and what went wrong if anything."""
    scores = [r.score for r in rows if r.score is not None]
    n = len(scores)
    mean = math.fsum(scores) / n if n else math.nan
    stderr = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / (n - 1) / n) if n > 1 else 0.0
    errors = sorted({r.error for r in rows if r.error})
    return ProgramResult(
        program_id=program_id,
        mean=mean,
        stderr=stderr,
        trials=len(rows),
        stopped_early=any(r.stopped_early for r in rows),
        error=errors[0] if errors else None,
        env_steps=sum(r.env_steps for r in rows),
        seconds=math.fsum(r.seconds for r in rows),
    )


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("metacurio", "jax", "jaxlib", "flax", "optax", "numpy", "scikit-learn", "ray"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
