"""Transfer curiosity programs to gymnasium environments, next to the baselines (SPEC §4.3).

    metacurio transfer RUN --top K --env LunarLander-v3
    metacurio transfer fast ccim my_program.json --env Acrobot-v1 --preset quick

Every program and every baseline (plain PPO and the reference programs RND, ICM-style,
disagreement, kNN novelty, FAST, CCIM) trains one agent lifetime per seed on the same seeds,
through the same reward pipeline: the curiosity program's reward, the reward combiner (the
paper's by default) and return normalisation. Plain PPO is the zero-reward program
``results/programs/none.json``, so it differs from the others in nothing but its intrinsic
reward. One task per (program, seed), run by the search's executor (``search.executor``: Ray
actors in parallel, or one after another in this process) with ``TransferJob`` as every
worker's job.

Results go to the run's store as evaluations of stage ``transfer`` keyed by (program,
'transfer', target, seed), one transaction per lifetime, where the target names the
environment and the budget (``LunarLander-v3/paper``), so a reduced budget never mixes with
the paper's; a rerun skips what is stored, so an interrupted transfer resumes and repeats
nothing. The table gives the mean extrinsic episode return over the lifetime, mean ± standard
error over seeds, and each program's paired difference to plain PPO with a 95 % t-interval.

``DeepSea-N`` is bsuite's DeepSea of size N (``envs.deep_sea``, a JAX environment trained by
``metacurio.agent.deep_sea``), the hard-exploration target: its stored curve counts the
treasures found so far, from which the report reads whether and when each seed first found it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

from metacurio.agent import gym_presets
from metacurio.agent.gym_presets import GymPreset
from metacurio.app.report.data import PLAIN_PPO, PairedDifference, paired_difference
from metacurio.arguments import check_at_least, check_seeds
from metacurio.core import program_io
from metacurio.core.program import Program
from metacurio.jax_setup import set_up_process
from metacurio.progress import ProgressDisplay
from search import store as st
from search.config import SearchConfig
from search.executor import ADDRESS_HELP, check_address, make_executor
from search.interrupts import raise_if_requested
from search.run_lock import RunLock
from search.store import FILE, TRANSFER, EvaluationRow, RunStore, aggregate

STAGE = TRANSFER
BASELINES = (PLAIN_PPO, "rnd", "icm", "disagreement", "knn_novelty", "fast", "ccim")
"""Baselines run next to the programs: plain PPO and reference programs from results/programs/."""
PROGRAMS_META = st.TRANSFER_PROGRAMS_META


class TransferError(ValueError):
    """Bad transfer input: unknown run, program kinds, a preset clash with stored results (one line)."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row of the transfer table: a curiosity program, or plain PPO."""

    id: str
    name: str
    program: Program
    """Parsed and validated when it entered."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One lifetime: an entry with one seed, on the preset of its ``TransferJob``."""

    entry: Entry
    combiner: Program
    seed: int


@dataclasses.dataclass(frozen=True)
class Lifetime:
    """What one transfer task returns: the lifetime's score and curve, without the agent's
    parameters, which would travel back from a Ray worker for nothing."""

    score: float
    """Mean extrinsic return of the episodes that ended in the lifetime."""
    curve: tuple[float, ...]
    """Gymnasium: the score so far after every PPO update. DeepSea: treasures found so far
    (all environments of the trial), after every update, i.e. every episode round."""
    steps: tuple[int, ...]
    """Env steps per environment at each point of the curve."""
    env_steps: int


@dataclasses.dataclass(frozen=True)
class Row:
    """One result line of the transfer table."""

    entry: Entry
    mean: float
    stderr: float
    trials: int
    error: str | None
    env_steps: int
    seconds: float
    versus_plain: "PairedDifference | None" = None
    """This entry − plain PPO, paired by seed (None for plain PPO itself or without two shared seeds)."""


# Planning


def plain_ppo() -> Entry:
    """The zero-reward program: PPO through the same combiner and normalisation as every program."""
    return entry_of(program_io.resolve(PLAIN_PPO))


def target(env_id: str, preset_name: str) -> str:
    """What transfer rows are stored under: the environment with its budget."""
    return f"{env_id}/{preset_name}"


def entry_of(program: Program) -> Entry:
    if program.kind != "curiosity":
        raise TransferError(f"transfer runs curiosity programs; {program.name or program.id} is a {program.kind} program")
    return Entry(program.id, program.name or program.id, program)


def baseline_entries(names: Sequence[str], resolve) -> list[Entry]:
    """Entries of the named baselines; ``resolve(name) -> Program`` finds reference programs."""
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise TransferError(f"unknown baseline {unknown[0]!r}; known: {', '.join(BASELINES)}")
    return [entry_of(resolve(name)) for name in names]


def top_programs(store, k: int) -> list[Program]:
    """The run's best ``k`` programs: by fresh-seed score if the run has one, else by completed search score."""
    if k < 1:
        raise TransferError(f"--top must be at least 1, got {k}")
    ranking = store.ranking(st.FRESH)
    if not ranking:
        completed = store.decided(st.SEARCH)
        ranking = [r for r in store.ranking(st.SEARCH) if completed.get(r.program_id) == st.COMPLETED]
    if not ranking:
        raise TransferError(f"run {store.run_dir} has no completed programs to transfer yet")
    programs = {p.id: p.json for p in store.programs()}
    return [program_io.from_json(programs[r.program_id]) for r in ranking[:k]]


def unique(entries: Sequence[Entry]) -> list[Entry]:
    """First occurrence of each id: a program given twice (or also a baseline) runs once, under
    the first name that is more than its id (a searched program that is also FAST is shown as FAST)."""
    seen: dict[str, Entry] = {}
    for entry in entries:
        first = seen.setdefault(entry.id, entry)
        if first.name == first.id and entry.name != entry.id:
            seen[entry.id] = dataclasses.replace(first, name=entry.name)
    return list(seen.values())


def pending_tasks(entries: Sequence[Entry], preset, combiner: Program, done: set[tuple[str, int]]) -> list[Task]:
    """Tasks for every (entry, seed) not yet stored, grouped by entry so a worker reuses its compile."""
    return [
        Task(entry, combiner, seed)
        for entry in entries
        for seed in preset.seeds
        if (entry.id, seed) not in done
    ]


# Running tasks (in this process or on Ray actors)


@dataclasses.dataclass(frozen=True)
class TransferJob:
    """Every transfer worker's job (``search.executor.Job``): lifetimes on one preset."""

    preset_json: str
    """``metacurio.agent.gym_presets.GymPreset`` as JSON."""

    def start(self) -> "TransferWorker":
        set_up_process()
        return TransferWorker(GymPreset.from_json(self.preset_json))


class TransferWorker:
    """One worker's trainer, kept for the next task of the same (program, combiner): later seeds
    skip the compile. Environments are inspected when a trainer is built, so a bad one fails
    its tasks, not the worker."""

    def __init__(self, preset):
        self._preset = preset
        self._key: tuple | None = None
        self._trainer_of_key = None

    def run(self, task: Task) -> Lifetime:
        size = gym_presets.deep_sea_size(self._preset.env_id)
        if size is not None:
            return self._deep_sea(task, size)
        result = self._trainer(task.entry.program, task.combiner).run(task.seed, self._preset.max_episode_steps)
        return Lifetime(result.score, result.curve, result.steps, result.env_steps)

    def _deep_sea(self, task: Task, size: int) -> Lifetime:
        # Workers only, like the gymnasium trainer: it loads JAX. It memoises its compiled
        # lifetime per program, so the later seeds of an entry skip the compile.
        from metacurio.agent.deep_sea import run_deep_sea

        ppo = self._preset.ppo
        [result] = run_deep_sea(task.entry.program, size, [task.seed], ppo.num_updates, ppo, task.combiner)
        if not result.finite:
            raise ValueError(f"non-finite intrinsic reward on {self._preset.env_id} with seed {task.seed}")
        return Lifetime(result.mean_return, tuple(float(f) for f in result.curve_finds), result.curve_steps, result.env_steps)

    def _trainer(self, program: Program, combiner: Program):
        # One trainer at a time: tasks come grouped by entry, and each holds its compiled functions.
        key = (program.id, combiner.id)
        if key != self._key:
            # Workers only: the command that plans and tabulates a transfer never loads JAX or gymnasium.
            from envs import gymnasium_envs
            from metacurio.agent import gym_trainer
            from metacurio.core.compiler import compile_program

            spaces = gymnasium_envs.inspect_env(self._preset.env_id)
            self._trainer_of_key = gym_trainer.GymTrainer(
                spaces, self._preset.ppo, compile_program(program), compile_program(combiner)
            )
            self._key = key
        return self._trainer_of_key


def row_of(outcome, target_name: str) -> EvaluationRow:
    """A task's ``search.executor.Outcome`` as its store row; a failure is the row's error."""
    task, result = outcome.task, outcome.result
    if result is None:
        return EvaluationRow(task.entry.id, STAGE, target_name, task.seed, None, (), (), False, outcome.error, 0,
                             outcome.seconds, outcome.worker, time.time())  # fmt: skip
    return EvaluationRow(
        program_id=task.entry.id,
        stage=STAGE,
        env=target_name,
        seed=task.seed,
        score=result.score,
        curve=result.curve,
        checkpoint_steps=result.steps,
        stopped_early=False,
        error=None,
        env_steps=result.env_steps,
        seconds=outcome.seconds,
        worker=outcome.worker,
        created=time.time(),
    )


# The store


def open_or_create_store(run_dir: Path, create: bool, command: str):
    """The run's store; without a RUN, a transfer run directory is created (or resumed)."""
    if create and not (run_dir / FILE).exists():
        # A transfer-only run has no search; its config is the default one and says so in meta.
        return RunStore.create(run_dir, SearchConfig(), command, meta={"kind": "transfer"})
    return RunStore.open(run_dir)


def check_settings(store, preset, preset_name: str, combiner_id: str) -> None:
    """One agent, budget and combiner per (run, target): results of different settings must never
    be averaged. Seeds may differ between invocations (each seed's lifetime is independent)."""
    key = f"transfer:{target(preset.env_id, preset_name)}"
    fields = {k: v for k, v in json.loads(preset.to_json()).items() if k != "seeds"}
    settings = json.dumps({"preset": fields, "combiner": combiner_id}, sort_keys=True)
    stored = store.meta(key)
    if stored is None:
        store.set_meta({key: settings})
    elif stored != settings:
        raise TransferError(
            f"run {store.run_dir} already holds {target(preset.env_id, preset_name)} transfer results with other "
            "settings or another combiner; use another --out (or the same --preset and --combiner)"
        )


def remember_entries(store, entries: Sequence[Entry]) -> None:
    known = json.loads(store.meta(PROGRAMS_META) or "{}")
    known.update({e.id: {"name": e.name, "json": None if e.program is None else program_io.to_json(e.program)} for e in entries})
    store.set_meta({PROGRAMS_META: json.dumps(known, sort_keys=True)})


def stored_keys(store, target_name: str) -> set[tuple[str, int]]:
    return {(r.program_id, r.seed) for r in store.evaluations(STAGE) if r.env == target_name}


def table_rows(store, entries: Sequence[Entry], target_name: str, seeds: Sequence[int]) -> list[Row]:
    """Per-entry aggregates of the stored transfer results on ``target_name`` and ``seeds``, best
    mean first, each with its paired difference to plain PPO when plain PPO ran."""
    by_id: dict[str, list] = {}
    for row in store.evaluations(STAGE):
        if row.env == target_name and row.seed in seeds:
            by_id.setdefault(row.program_id, []).append(row)
    plain = by_id.get(program_io.resolve(PLAIN_PPO).id)
    rows = []
    for entry in entries:
        if entry.id in by_id:
            r = aggregate(entry.id, by_id[entry.id])
            versus = None if plain is None or by_id[entry.id] is plain else paired_difference(by_id[entry.id], plain)
            rows.append(Row(entry, r.mean, r.stderr, r.trials, r.error, r.env_steps, r.seconds, versus))
    # Entries whose every seed failed have no mean; they go last.
    return sorted(rows, key=lambda r: (math.isnan(r.mean), 0.0 if math.isnan(r.mean) else -r.mean, r.entry.id))


def print_table(rows: Sequence[Row], env_id: str, preset_name: str, file=None) -> None:
    title = (
        f"{env_id} ({preset_name}): mean extrinsic episode return over the lifetime, mean ± s.e. over seeds; "
        "vs plain PPO: paired by seed, 95 % t-interval"
    )
    table = Table(title=title)
    for column in ("program", "id", "return", "vs plain PPO", "seeds", "env steps", "seconds", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        score = "–" if math.isnan(row.mean) else f"{row.mean:.2f} ± {row.stderr:.2f}"
        steps, seconds = f"{row.env_steps:,}", f"{row.seconds:.0f}"
        versus = difference_text(row.versus_plain)
        table.add_row(row.entry.name, row.entry.id, score, versus, str(row.trials), steps, seconds, row.error or "")
    Console(file=file or sys.stdout, width=160).print(table)


# Command line


def add_parser(subparsers) -> None:
    """Register ``metacurio transfer``."""
    parser = subparsers.add_parser(
        "transfer",
        help="train agents with programs and the baselines on a gymnasium environment (resumable)",
        description="metacurio transfer (RUN --top K | PROGRAM...) --env ENV_ID",
    )
    parser.add_argument(
        "targets", nargs="+", metavar="RUN|PROGRAM", help="a run directory with --top, else program files or reference names"
    )
    parser.add_argument("--top", type=int, metavar="K", help="transfer the run's K best programs")
    parser.add_argument(
        "--env",
        required=True,
        help="a gymnasium id (LunarLander-v3, Acrobot-v1, Ant-v5, ...) or DeepSea-N (bsuite's DeepSea of size N, in JAX)",
    )
    parser.add_argument(
        "--preset",
        choices=gym_presets.PRESET_NAMES,
        help="the paper's budget (default), a reduced one (Ant-v5; DeepSea-N's default), or a smoke run",
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="trial seeds (default: the preset's)")
    parser.add_argument("--out", help="run directory for PROGRAM... (default runs/transfer-ENV-PRESET); not with RUN")
    parser.add_argument("--combiner", default="combiner_paper", help="reward combiner program (combiner_sum: i + e)")
    parser.add_argument(
        "--baselines",
        nargs="*",
        default=list(BASELINES),
        metavar="NAME",
        help=f"baselines to run (default: {' '.join(BASELINES)}; the flag alone: no baselines)",
    )
    parser.add_argument(
        "--executor", choices=("ray", "local"), default="ray", help="Ray actors in parallel (default) or this process"
    )
    parser.add_argument("--address", help=ADDRESS_HELP)
    parser.add_argument("--workers", type=int, help="Ray CPUs to start with (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(func=run_cli)


def run_cli(args) -> None:
    set_up_process()
    # Checks that the environment exists before anything is written; loads gymnasium.
    from envs import gymnasium_envs

    check_at_least(args.workers, 1, "--workers")
    check_at_least(args.top, 1, "--top")
    if args.seeds:
        check_seeds(args.seeds)
    check_address(args.executor, args.address)
    deep_sea = gym_presets.deep_sea_size(args.env) is not None
    if not deep_sea:
        gymnasium_envs.inspect_env(args.env)
    args.preset = args.preset or ("reduced" if deep_sea else "paper")
    preset = gym_presets.preset(args.env, args.preset)
    if args.seeds:
        preset = dataclasses.replace(preset, seeds=tuple(args.seeds))
    combiner = program_io.resolve(args.combiner)
    if combiner.kind != "combiner":
        raise TransferError(f"--combiner {args.combiner}: {combiner.name or combiner.id} is a {combiner.kind} program")
    command = " ".join(["metacurio"] + sys.argv[1:])

    if args.top is not None:
        if len(args.targets) != 1:
            raise TransferError("--top takes exactly one RUN directory")
        if args.out:
            raise TransferError("--out names a new run directory for PROGRAM...; with RUN the results go to RUN")
        run_dir = Path(args.targets[0])
        if not (run_dir / FILE).is_file():
            raise TransferError(f"not a metacurio run directory: {run_dir}")
        given = None
    else:
        given = [entry_of(program_io.resolve(spec)) for spec in args.targets]
        run_dir = Path(args.out or f"runs/transfer-{args.env}-{args.preset}")
    baselines = baseline_entries(args.baselines, program_io.resolve)
    with RunLock(run_dir):
        store = open_or_create_store(run_dir, create=given is not None, command=command)
        with store:
            if given is None:
                given = [entry_of(p) for p in top_programs(store, args.top)]
            entries = unique(given + baselines)
            check_settings(store, preset, args.preset, combiner.id)
            remember_entries(store, entries)
            target_name = target(args.env, args.preset)
            tasks = pending_tasks(entries, preset, combiner, stored_keys(store, target_name))
            run_tasks(tasks, store, preset, target_name, args, len(entries) * len(preset.seeds))
            rows = table_rows(store, entries, target_name, preset.seeds)
            print_table(rows, args.env, args.preset)
    print(f"results in {run_dir / 'store.sqlite'} (stage '{STAGE}', target '{target_name}')")
    _raise_on_failures(rows, target_name)


def difference_text(difference: PairedDifference | None) -> str:
    """"+12.3 [+1.2, +23.4]" (the interval when it exists), or "–"."""
    if difference is None:
        return "–"
    if math.isnan(difference.low):
        return f"{difference.mean:+.2f} (no spread)"
    return f"{difference.mean:+.2f} [{difference.low:+.2f}, {difference.high:+.2f}]"


def _raise_on_failures(rows: Sequence[Row], env_id: str) -> None:
    """A transfer whose programs failed (raised, non-finite rewards) must not exit 0."""
    failed = [row for row in rows if row.error]
    if failed:
        first = failed[0]
        raise TransferError(
            f"{len(failed)} of {len(rows)} programs failed on {env_id} (stored with their errors); "
            f"{first.entry.name}: {first.error}"
        )


def run_tasks(tasks: Sequence[Task], store, preset, target_name: str, args, total: int) -> None:
    """Run ``tasks`` and store each lifetime as it finishes, so a killed transfer keeps it."""
    if not tasks:
        return
    executor = make_executor(args.executor, TransferJob(preset.to_json()), args.workers, args.address)
    progress = ProgressDisplay(enabled=not args.quiet, unit="lifetimes")
    progress.stage("transfer", total, total - len(tasks))
    try:
        for outcome in executor.map(tasks):
            row = row_of(outcome, target_name)
            store.record_transfer(row)
            progress.advance(f"{row.program_id} seed {row.seed}: " + (f"{row.score:.2f}" if row.error is None else "failed"))
            raise_if_requested()
    except KeyboardInterrupt:
        raise TransferError("interrupted; rerun the same command to resume (finished lifetimes are kept)") from None
    finally:
        executor.close()
        progress.close()
