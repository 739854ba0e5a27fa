"""The search driver and ``metacurio search`` (SPEC §3.5).

1. A fresh run enumerates the space, removes behavioural duplicates and stores every program
   with the funnel; a resumed run reads them back.
2. The search stage: batches chosen by the predictor, evaluated with the cutoffs current when
   the batch was chosen, each program's evaluations and decision written in one transaction.
3. ``recheck``: a seeded sample of stopped programs evaluated in full, to see what early
   stopping lost. ``fresh``: the best completed programs on fresh seeds.

Every seed set that scores programs also scores the control programs (``SearchConfig.controls``:
plain PPO and reference methods), in full and in the same harness: ``control-search`` on the
search seeds, before the search stage, and ``control-fresh`` on the fresh seeds. Comparisons
are made only within one seed set.

Everything the driver decides is a function of the store's content: a batch's selection and its
cutoffs are stored before it runs, its random picks come from (seed, batch number), and the
recheck sample and fresh top-k are drawn from stored results. A run killed at any moment and
resumed therefore re-runs only the programs whose decision was not committed, and ends with
the ranking an uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from metacurio.arguments import check_at_least, check_max_ops
from metacurio.core import program_io
from metacurio.core.program import Program
from metacurio.jax_setup import set_up_process
from metacurio.progress import ProgressDisplay
from search import store as st
from search.config import PRESETS, SPACES, SearchConfig, load_file, preset, with_fields
from search.enumerate import distinct_programs, enumerate_space
from search.executor import ADDRESS_HELP, GymWorkerSpec, Task, WorkerSpec, check_address, make_executor
from search.interrupts import raise_if_requested
from search.predictor import search_features, select_batch
from search.schedule import compute_cutoffs
from search.run_lock import RunLock
from search.store import EvaluationRow, ProgramResult, ProgramRow, RunStore, StoreError

SELECT_STREAM, RECHECK_STREAM = 0, 1
"""Independent random streams derived from the config's selection seed."""
CURIOSITY_META = "fixed_curiosity"
"""Store meta key of a combiner search's fixed curiosity program (JSON), so that a resumed run
does not depend on the file or name it was given as."""
DEFAULT_PRESETS = {"curiosity": "tiny", "combiner": "combiner-tiny"}


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a finished run reports on the command line."""

    run_dir: Path
    evaluated: dict[str, int]
    """Decided programs per stage."""
    best: list[ProgramResult]
    """The best programs that completed the search stage (stopped ones have partial scores)."""
    failures: list[tuple[str, str]]
    """(program id, error) of every search-stage program that failed, in id order."""
    controls: list[tuple[str, ProgramResult]] = dataclasses.field(default_factory=list)
    """(name, result) of every control on the search seeds, best first."""
    score_name: str = "coverage"
    """What the scores measure (``SearchConfig.score_name``)."""


@dataclasses.dataclass
class SearchState:
    """In-memory view of the search stage, rebuilt from the store on resume."""

    results: dict[str, ProgramResult] = dataclasses.field(default_factory=dict)
    curves: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """(trials, checkpoints) coverage of every completed program."""
    decisions: dict[str, str] = dataclasses.field(default_factory=dict)
    best: float = math.nan
    """Best mean score of a program that did not fail."""
    stopped: int = 0

    def add(self, program_id: str, rows: Sequence[EvaluationRow], decision: str) -> None:
        """One decided program; kept incrementally so that progress costs O(1) per program."""
        result = st.aggregate(program_id, rows)
        self.decisions[program_id] = decision
        self.results[program_id] = result
        if decision == st.COMPLETED:
            self.curves[program_id] = _curve_array(rows)
        if decision == st.STOPPED:
            self.stopped += 1
        if decision != st.FAILED and not result.mean <= self.best:
            self.best = result.mean


def run_search(
    config: SearchConfig | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    executor: str = "ray",
    address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    programs: Sequence | None = None,
    command: str = "",
) -> Summary:
    """Run (or resume) a search in ``run_dir``; see the module docstring.

    The run directory is locked for the whole run (``search.run_lock``), so a second process on
    it is refused in one line. ``programs`` replaces the enumeration by these programs. On
    resume, ``config`` and ``programs`` may be None (use the stored ones); if given, they must
    equal the stored ones.
    """
    run_dir = Path(run_dir)
    placement = Placement(executor, workers, address)
    if resume and not (run_dir / st.FILE).is_file():
        raise StoreError(f"not a metacurio run directory: {run_dir}")
    if not resume:
        if config is None:
            raise ValueError("a fresh run needs a config")
        _check_space(programs or (), config)
        resolve_controls(config.controls, config.space)
        fixed = fixed_curiosity(config)
    with RunLock(run_dir):
        if resume:
            store = RunStore.open(run_dir)
        else:
            meta = {"source": "enumeration" if programs is None else "programs"}
            if fixed is not None:
                meta[CURIOSITY_META] = program_io.to_json(fixed)
            store = RunStore.create(run_dir, config, command, meta)
        with store:
            if resume:
                _check_same_config(store, config, run_dir)
                _check_same_programs(store, programs, run_dir)
            config = store.config()
            if not store.funnel():
                _prepare(store, config, programs, placement)
            pool = _Pool(config, placement, stored_curiosity(store))
            display = ProgressDisplay(progress, unit="programs")
            try:
                _run_stages(store, config, pool, display)
            finally:
                display.close()
                pool.close()
            return _summary(store)


def _check_same_config(store: RunStore, config: SearchConfig | None, run_dir: Path) -> None:
    stored = store.config()
    if config is None or config == stored:
        return
    for field in dataclasses.fields(SearchConfig):
        ours, theirs = getattr(config, field.name), getattr(stored, field.name)
        if ours != theirs:
            raise StoreError(f"run {run_dir} was started with {field.name}={theirs!r}, not {ours!r}; resume it without overrides")


def _check_space(programs: Sequence, config: SearchConfig) -> None:
    for program in programs:
        if program.kind != config.space:
            raise ValueError(f"program {program.name or program.id} is a {program.kind} program; this search is over {config.space}")


def _check_same_programs(store: RunStore, programs: Sequence | None, run_dir: Path) -> None:
    stored = [row.id for row in store.programs()]
    if programs is None:
        if not stored and store.meta("source") == "programs":
            raise StoreError(f"run {run_dir} was stopped before it stored its programs; resume it with the same --programs")
        return
    if store.meta("source") != "programs" or (stored and [p.id for p in distinct_programs(programs)] != stored):
        raise StoreError(f"run {run_dir} was started with other programs; resume it with the programs it started with")


# Step 1: candidates


def _prepare(store: RunStore, config: SearchConfig, programs: Sequence | None, placement: "Placement") -> None:
    """Enumerate (or take the given programs), deduplicate, store programs, funnel and layout."""
    if programs is None:
        enumeration = enumerate_space(config.space, config.max_ops)
        candidates = list(enumeration.programs)
        funnel = list(enumeration.funnel)
        funnel.append(("candidates", len(candidates), f"programs of ≤ {config.max_ops} ops left after static pruning"))
    else:
        candidates = distinct_programs(programs)
        funnel = [("candidates", len(candidates), "programs given on the command line")]
    if not candidates:
        raise ValueError("the search has no candidate programs")
    if config.dedup:
        dedup = _deduplicate(candidates, config, placement)
        unique_ids = {p.id for p in dedup.unique}
        duplicate_of, failed = dict(dedup.duplicate_of), dict(dedup.failed)
        funnel += list(dedup.funnel)
    else:
        unique_ids = {p.id for p in candidates}
        duplicate_of, failed = {}, {}
        funnel.append(("unique", len(candidates), "duplicate removal off"))
    rows = [_program_row(i, p, unique_ids, duplicate_of, failed) for i, p in enumerate(candidates)]
    unique = [p for p in candidates if p.id in unique_ids]
    if not unique:
        reason = "".join(f"; {pid}: {error}" for pid, error in list(failed.items())[:1])
        raise ValueError(f"no program survived duplicate removal ({len(failed)} of {len(candidates)} failed){reason}")
    controls = resolve_controls(config.controls, config.space)
    stored = {pid: {"name": p.name, "json": program_io.to_json(p)} for pid, p in controls.items()}
    layout = _layout(unique + [p for pid, p in controls.items() if pid not in unique_ids])
    meta = {"layout": json.dumps(_layout_summary(layout)), st.CONTROLS_META: json.dumps(stored)}
    store.write_candidates(funnel, rows, meta)


def _deduplicate(candidates: list[Program], config: SearchConfig, placement: "Placement"):
    """The space's duplicate removal (``search.signature``, ``search.combiner_signature``)."""
    # Duplicate removal runs programs under JAX; imported only when a run gets this far.
    if config.space == "combiner":
        from search.combiner_signature import deduplicate_combiners

        return deduplicate_combiners(candidates, steps=config.dedup_steps, seed=config.selection_seed)
    from search.signature import deduplicate

    return deduplicate(
        candidates,
        steps=config.dedup_steps,
        seed=config.selection_seed,
        executor=placement.kind,
        workers=placement.workers,
        address=placement.address,
    )


def _program_row(position: int, program, unique_ids: set[str], duplicate_of: dict, failed: dict) -> ProgramRow:
    if program.id in unique_ids:
        status, class_of, error = "unique", None, None
    elif program.id in failed:
        status, class_of, error = "failed", None, failed[program.id]
    elif program.id in duplicate_of:
        status, class_of, error = "duplicate", duplicate_of[program.id], None
    else:
        raise ValueError(f"duplicate removal gave no verdict for program {program.id}")
    ops = " ".join(node.op for node in program.nodes)
    return ProgramRow(program.id, position, program.size, ops, program_io.to_json(program), status, class_of, error)


def _layout(programs: Sequence):
    # Layouts load JAX; `metacurio --help` and a finished run's resume never need it.
    from metacurio.core.layout import Layout

    return Layout.for_programs(programs)


def _layout_summary(layout) -> dict:
    return {"instructions": len(layout.instructions), "max_nodes": layout.max_nodes, "max_constants": layout.max_constants}


# Steps 2 and 3: stages


def _run_stages(store: RunStore, config: SearchConfig, pool: "_Pool", display: ProgressDisplay) -> None:
    # Parsed and validated once here; from now on programs travel as ``Program``s, to workers too.
    unique = [program_io.from_json(row.json) for row in store.programs("unique")]
    controls = stored_controls(store)
    catalog = {p.id: p for p in unique} | {p.id: p for p in controls.values()}
    state = _load_state(store)
    # Controls first: every later comparison needs them, and a short run still gets them.
    _plain_stage(store, config, st.CONTROL_SEARCH, list(controls), config.seeds, catalog, pool, display)
    _search_stage(store, config, unique, catalog, state, pool, display)
    recheck = _recheck_sample(config, state)
    _plain_stage(store, config, st.RECHECK, recheck, config.seeds, catalog, pool, display)
    fresh = _fresh_top(config, state)
    _plain_stage(store, config, st.FRESH, fresh, config.fresh_seeds, catalog, pool, display)
    if fresh:
        _plain_stage(store, config, st.CONTROL_FRESH, list(controls), config.fresh_seeds, catalog, pool, display)


def resolve_controls(names: Sequence[str], space: str) -> dict[str, Program]:
    """Control programs by id, from reference program names; a missing one, or one of another
    space than the searched one, is refused."""
    controls = {}
    for name in names:
        program = program_io.resolve(name)
        if program.kind != space:
            raise ValueError(f"control {name!r} is a {program.kind} program; this search's controls are {space} programs")
        controls[program.id] = dataclasses.replace(program, name=program.name or name)
    return controls


def fixed_curiosity(config: SearchConfig) -> Program | None:
    """A combiner search's fixed curiosity program (``config.curiosity`` resolved); None for a curiosity search."""
    if config.space != "combiner":
        return None
    program = program_io.resolve(config.curiosity)
    if program.kind != "curiosity":
        raise ValueError(f"the fixed program {config.curiosity!r} is a {program.kind} program; a combiner search needs a curiosity program")
    return dataclasses.replace(program, name=program.name or config.curiosity)


def stored_curiosity(store: RunStore) -> Program | None:
    """The fixed curiosity program a combiner run started with; None for a curiosity run."""
    text = store.meta(CURIOSITY_META)
    return None if text is None else program_io.from_json(text)


def stored_controls(store: RunStore) -> dict[str, Program]:
    """The run's control programs by id (none for runs stored before searches ran controls)."""
    stored = json.loads(store.meta(st.CONTROLS_META) or "{}")
    return {pid: program_io.from_json(entry["json"]) for pid, entry in stored.items()}


def _load_state(store: RunStore) -> SearchState:
    by_program: dict[str, list[EvaluationRow]] = {}
    for row in store.evaluations(st.SEARCH):
        by_program.setdefault(row.program_id, []).append(row)
    state = SearchState()
    for program_id, decision in sorted(store.decided(st.SEARCH).items()):
        state.add(program_id, by_program[program_id], decision)
    return state


def _curve_array(rows: Sequence[EvaluationRow]) -> np.ndarray:
    return np.array([row.curve for row in sorted(rows, key=lambda r: r.seed)], dtype=np.float64)


def _search_stage(store, config, unique: list[Program], catalog: dict[str, Program], state: SearchState, pool, display) -> None:
    target = min(config.limit or len(unique), len(unique))
    selections = _selections(store)
    display.stage("search", target, len(state.decisions), _status(state))
    pending = [pid for pid in selections if pid not in state.decisions]
    if pending:
        cutoffs = selections[pending[0]][1]
        _evaluate(store, config, st.SEARCH, pending, config.seeds, cutoffs, catalog, state, pool, display)
    features = None
    while len(selections) < target:
        if features is None:
            features = _features(unique)
        batch = 1 + max((b for b, _ in selections.values()), default=0)
        cutoffs = _cutoffs(config, state, unique)
        candidates = [i for i, p in enumerate(unique) if p.id not in selections]
        known = [i for i, p in enumerate(unique) if p.id in state.results]
        rng = np.random.default_rng([config.selection_seed, SELECT_STREAM, batch])
        chosen = select_batch(
            [unique[i].id for i in candidates],
            features[candidates],
            features[known],
            np.array([_known_score(state, unique[i].id) for i in known]),
            min(config.batch_size, target - len(selections)),
            config.epsilon,
            rng,
        )
        store.record_selection(batch, [(s.id, s.predicted, s.random) for s in chosen], cutoffs)
        for s in chosen:
            selections[s.id] = (batch, cutoffs)
        ids = [s.id for s in chosen]
        _evaluate(store, config, st.SEARCH, ids, config.seeds, cutoffs, catalog, state, pool, display)


def _known_score(state: SearchState, program_id: str) -> float:
    """What the predictor learns from: a failed program's partial score says nothing (nan: left out)."""
    return math.nan if state.decisions[program_id] == st.FAILED else state.results[program_id].mean


def _selections(store: RunStore) -> dict[str, tuple[int, tuple[float, ...]]]:
    """program id -> (batch, cutoffs) of every stored selection, in batch order."""
    result = {}
    rows = sorted(store.decisions(st.SELECT), key=lambda d: (json.loads(d.detail)["batch"], d.created, d.program_id))
    for row in rows:
        detail = json.loads(row.detail)
        result[row.program_id] = (detail["batch"], tuple(math.nan if c is None else c for c in detail["cutoffs"]))
    return result


def _features(unique: Sequence[Program]) -> np.ndarray:
    return search_features(unique)


def _cutoffs(config: SearchConfig, state: SearchState, unique: Sequence[Program]) -> tuple[float, ...]:
    if not config.early_stopping or not state.curves:
        return ()
    curves = [state.curves[p.id] for p in unique if p.id in state.curves]
    return tuple(float(c) for c in compute_cutoffs(curves, config.top_k, config.num_stdevs))


def _recheck_sample(config: SearchConfig, state: SearchState) -> list[str]:
    stopped = sorted(pid for pid, d in state.decisions.items() if d == st.STOPPED)
    size = min(config.recheck_sample, len(stopped))
    rng = np.random.default_rng([config.selection_seed, RECHECK_STREAM])
    return sorted(rng.choice(stopped, size=size, replace=False).tolist()) if size else []


def _fresh_top(config: SearchConfig, state: SearchState) -> list[str]:
    completed = [r for pid, r in state.results.items() if state.decisions.get(pid) == st.COMPLETED]
    return [r.program_id for r in sorted(completed, key=lambda r: (-r.mean, r.program_id))[: config.fresh_top_k]]


def _plain_stage(store, config, stage: str, ids: list[str], seeds, catalog: dict[str, Program], pool, display) -> None:
    """Full evaluations (no cutoffs) of ``ids`` that have no decision in ``stage`` yet."""
    done = store.decided(stage)
    display.stage(stage, len(ids), sum(pid in done for pid in ids))
    todo = [pid for pid in ids if pid not in done]
    if todo:
        _evaluate(store, config, stage, todo, seeds, None, catalog, None, pool, display)


def _evaluate(store, config, stage, ids, seeds, cutoffs, catalog: dict[str, Program], state: SearchState | None, pool, display) -> None:
    raise_if_requested()
    tasks = [Task(pid, catalog[pid], stage, tuple(seeds), cutoffs) for pid in ids]
    for outcome in pool.get(list(catalog.values())).map(tasks):
        rows, decision, detail = _outcome_rows(outcome, config, cutoffs)
        store.record_outcome(outcome.task.program_id, stage, rows, decision, detail)
        if state is not None:
            state.add(outcome.task.program_id, rows, decision)
        display.advance(_status(state))
        raise_if_requested()


def _outcome_rows(outcome, config: SearchConfig, cutoffs) -> tuple[list[EvaluationRow], str, str]:
    task, result, now = outcome.task, outcome.result, time.time()
    if result is None:
        rows = [
            EvaluationRow(
                task.program_id, task.stage, config.env_name, seed, None, (), (), False, outcome.error, 0, 0.0, outcome.worker, now
            )
            for seed in task.seeds
        ]
        return rows, st.FAILED, outcome.error
    trials = len(task.seeds)
    rows = [
        EvaluationRow(
            program_id=task.program_id,
            stage=task.stage,
            env=config.env_name,
            seed=seed,
            score=float(result.scores[i]),
            curve=tuple(float(c) for c in result.curves[i]),
            checkpoint_steps=tuple(result.checkpoint_steps),
            stopped_early=bool(result.stopped_early),
            error=result.error,
            env_steps=result.env_steps // trials,
            seconds=result.seconds / trials,
            worker=outcome.worker,
            created=now,
        )
        for i, seed in enumerate(task.seeds)
    ]
    if result.error is not None:
        return rows, st.FAILED, result.error
    if result.stopped_early:
        index = len(result.checkpoint_steps) - 1
        detail = {"checkpoint": index, "step": result.checkpoint_steps[index], "mean": result.mean, "cutoff": cutoffs[index]}
        return rows, st.STOPPED, json.dumps(detail)
    return rows, st.COMPLETED, json.dumps({"mean": result.mean})


def _summary(store: RunStore) -> Summary:
    evaluated = {stage: len(store.decided(stage)) for stage in st.STAGES}
    search = store.decided(st.SEARCH)
    completed = [r for r in store.ranking(st.SEARCH) if search[r.program_id] == st.COMPLETED]
    # A failed program's decision detail is its error.
    failures = sorted((d.program_id, d.detail) for d in store.decisions(st.SEARCH) if d.decision == st.FAILED)
    names = {pid: p.name for pid, p in stored_controls(store).items()}
    controls = [(names[r.program_id], r) for r in store.ranking(st.CONTROL_SEARCH) if r.program_id in names]
    return Summary(store.run_dir, evaluated, completed[:5], failures, controls, store.config().score_name)


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run's work runs (``search.executor.make_executor``): duplicate removal and evaluation alike."""

    kind: str = "ray"
    """``ray`` (actors on a private Ray or the cluster at ``address``) or ``local`` (this process)."""
    workers: int | None = None
    """Ray workers; None: one per CPU."""
    address: str | None = None
    """A running Ray cluster to join; None starts a private one."""


class _Pool:
    """Starts the evaluation executor on first use, so a finished run resumes without starting Ray."""

    def __init__(self, config: SearchConfig, placement: Placement, curiosity: Program | None):
        self._config = config
        self._placement = placement
        self._curiosity = curiosity
        """A combiner search's fixed curiosity program."""
        self._executor = None

    def get(self, programs: Sequence[Program]):
        """The executor, built on first use for a layout that holds ``programs`` (searched and controls)."""
        if self._executor is None:
            config, placement = self._config, self._placement
            if config.space == "combiner":
                spec = GymWorkerSpec(_layout(programs), self._curiosity, config.gym_preset(), config.checkpoint_every)
            else:
                spec = WorkerSpec(_layout(programs), config.grid(), config.ppo(), config.checkpoint_every)
            self._executor = make_executor(placement.kind, spec, workers=placement.workers, address=placement.address)
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None


def _status(state: SearchState | None) -> str:
    if state is None or not state.decisions:
        return ""
    return f"best {state.best:.1f} · stopped {state.stopped / len(state.decisions):.0%}"


# Command line


def add_parser(subparsers) -> None:
    """Register ``metacurio search``."""
    parser = subparsers.add_parser("search", help="search a program space with progressive elimination (resumable)")
    parser.add_argument(
        "--preset", choices=tuple(PRESETS), help="search size (fresh runs default to tiny, or combiner-tiny with --space combiner)"
    )
    parser.add_argument("--config", metavar="FILE", help="JSON object of config fields that replace the preset's")
    parser.add_argument("--space", choices=SPACES, help="program space (default: the preset's)")
    parser.add_argument(
        "--curiosity", metavar="PROGRAM", help="combiner searches: the fixed curiosity program (file or reference name)"
    )
    parser.add_argument("--max-ops", type=int, help="largest program size to enumerate")
    parser.add_argument("--trials", type=int, help="trials per program, with the original's seeds 4, 104, 204, ...")
    parser.add_argument("--limit", type=int, help="most programs to evaluate in the search stage")
    parser.add_argument(
        "--programs", nargs="+", metavar="PROGRAM", help="evaluate these program files or reference names instead of enumerating"
    )
    parser.add_argument("--name", help="run name (default SPACE-PRESET); the run lives in runs/NAME")
    parser.add_argument("--out", help="run directory (default runs/NAME)")
    parser.add_argument("--resume", action="store_true", help="continue the run in the run directory")
    parser.add_argument("--executor", choices=("ray", "local"), default="ray", help="Ray actors (default) or this process")
    parser.add_argument("--address", help=ADDRESS_HELP)
    parser.add_argument("--workers", type=int, help="Ray evaluation workers (default: one per CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(func=run_cli)


def config_from_args(args) -> SearchConfig | None:
    """The config the arguments ask for; None on --resume without preset or overrides."""
    overrides = {"space": args.space, "max_ops": args.max_ops, "limit": args.limit, "curiosity": args.curiosity}
    if args.trials is not None:
        overrides["seeds"] = tuple(4 + 100 * i for i in range(args.trials))
    given = {k: v for k, v in overrides.items() if v is not None}
    if args.resume and args.preset is None and args.config is None and not given:
        return None
    config = preset(args.preset or DEFAULT_PRESETS[args.space or "curiosity"])
    if args.config:
        config = load_file(args.config, config)
    return with_fields(config, given)


def run_dir_from_args(args) -> Path:
    if args.out:
        return Path(args.out)
    space = args.space or "curiosity"
    name = args.preset or DEFAULT_PRESETS[space]
    return Path("runs") / (args.name or (name if name.startswith(space) else f"{space}-{name}"))


def run_cli(args) -> None:
    set_up_process()
    check_at_least(args.workers, 1, "--workers")
    check_at_least(args.trials, 1, "--trials")
    check_at_least(args.limit, 1, "--limit")
    check_max_ops(args.max_ops, args.space or "curiosity")
    check_address(args.executor, args.address)
    config = config_from_args(args)
    programs = None
    if args.programs:
        programs = [program_io.resolve(spec) for spec in args.programs]
    run_dir = run_dir_from_args(args)
    try:
        summary = run_search(
            config,
            run_dir,
            resume=args.resume,
            executor=args.executor,
            address=args.address,
            workers=args.workers,
            progress=not args.quiet,
            programs=programs,
            command=shlex.join(["metacurio", *sys.argv[1:]]),
        )
    except KeyboardInterrupt:
        print(f"metacurio: interrupted; every decided program is stored; continue with --resume --out {run_dir}", file=sys.stderr)
        sys.exit(130)
    counts = ", ".join(f"{stage} {n}" for stage, n in summary.evaluated.items())
    print(f"run {summary.run_dir}: programs decided per stage: {counts}")
    if summary.best:
        print(f"best completed programs (mean {summary.score_name} ± s.e.):")
    for rank, result in enumerate(summary.best, 1):
        print(f"{rank:>2}. {result.program_id}  {result.mean:8.1f} ± {result.stderr:.1f}")
    if summary.controls:
        print("controls on the same seeds:")
    for name, result in summary.controls:
        print(f"    {result.program_id}  {result.mean:8.1f} ± {result.stderr:.1f}  {name}")
    if summary.failures and len(summary.failures) == summary.evaluated[st.SEARCH]:
        program_id, error = summary.failures[0]
        raise ValueError(f"every evaluated program failed ({len(summary.failures)}); {program_id}: {error}")
