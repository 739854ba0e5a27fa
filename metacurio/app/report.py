"""``metacurio report`` and ``metacurio export``: what a search run found, as Markdown + PNG or a table.

The report reads the run's store only (never writes it) and is safe to run while the search
is still going: it describes whatever has been committed so far. Rankings are of *completed*
search-stage programs (stopped programs only have partial scores), best mean first, ties by id,
the same order the driver uses to pick the fresh re-evaluation.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import io
import json
import math
import os
import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from metacurio.core import program_io
from metacurio.core import render
from metacurio.core.program import Program
from search import store as st
from search.predictor import search_features, simulate_recall
from search.schedule import step_savings, top_threshold
from search.store import DecisionRow, EvaluationRow, ProgramResult, ProgramRow, RunStore, StoreError

REPORT_FILE = "report.md"
FORMATS = ("parquet", "csv")


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


# Sections


def _pm(mean: float, stderr: float) -> str:
    return "–" if mean is None or math.isnan(mean) else f"{mean:.1f} ± {stderr:.1f}"


def _program(data: RunData, program_id: str):
    row = data.programs.get(program_id)
    if row is None:
        raise StoreError(f"run store in {data.run_dir} has results for unknown program {program_id}")
    return program_io.from_json(row.json)


def _picked(data: RunData, program_id: str) -> str:
    row = data.decisions.get(st.SELECT, {}).get(program_id)
    if row is None:
        return "–"
    detail = json.loads(row.detail)
    if detail.get("random"):
        return f"batch {detail.get('batch')}, random"
    predicted = detail.get("predicted")
    return f"batch {detail.get('batch')}, predicted" + ("" if predicted is None else f" {predicted:.1f}")


def section_header(data: RunData) -> list[str]:
    config = data.store.config()
    created = data.store.meta("created")
    versions = json.loads(data.store.meta("versions") or "{}")
    unique = [p for p in data.programs.values() if p.status == "unique"]
    decided = len(data.decisions.get(st.SEARCH, {}))
    lines = [f"# Search run `{data.run_dir.name}`", ""]
    if created:
        lines.append(f"Started {_timestamp(float(created))}; command `{data.store.meta('command') or '?'}`.")
    target = len(unique) if config.limit is None else min(config.limit, len(unique))
    lines += [
        f"Search stage: {decided:,} of {target:,} programs decided.",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in sorted(dataclasses.asdict(config).items())]
    if versions:
        lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + "."]
    return lines + [""]


def _timestamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def section_funnel(data: RunData, report: ReportConfig) -> list[str]:
    lines = ["## Funnel", "", "| stage | programs | detail |", "|---|---:|---|"]
    lines += [f"| {step} | {count:,} | {detail or ''} |" for step, count, detail in funnel(data, report.top_k)]
    rules = pruning(data)
    if rules:
        lines += [
            "",
            "Static pruning, by rule: partial programs each rule rejected during enumeration (a rejected partial"
            " program would have grown into many candidates, so these do not add up to the stages above).",
            "",
            "| rule | rejected | why |",
            "|---|---:|---|",
        ]
        lines += [f"| {rule} | {count:,} | {detail or ''} |" for rule, count, detail in rules]
    return lines + ["", "![funnel](funnel.png)", ""]


def section_top(data: RunData, report: ReportConfig) -> list[str]:
    ranking = data.ranking
    if not ranking:
        return ["## Top programs", "", "No program has completed the search stage yet.", ""]
    fresh = data.results.get(st.FRESH, {})
    lines = [
        "## Top programs",
        "",
        "Search-stage coverage (mean ± s.e. over trials), the same programs on fresh seeds, and how each was picked.",
        "",
        "| rank | program | ops | search | fresh | picked | operations |",
        "|---:|---|---:|---:|---:|---|---|",
    ]
    for rank, result in enumerate(ranking[: report.top_k], start=1):
        row = data.programs[result.program_id]
        again = fresh.get(result.program_id)
        fresh_text = _pm(again.mean, again.stderr) if again and again.error is None else "–"
        lines.append(
            f"| {rank} | `{result.program_id}` | {row.size} | {_pm(result.mean, result.stderr)} | {fresh_text}"
            f" | {_picked(data, result.program_id)} | {row.ops} |"
        )
    lines += ["", "![sorted scores](sorted_scores.png)", "", "![score histogram](scores.png)", ""]
    lines += ["![learning curves of the top programs](curves.png)", "", "### Pseudo-code", ""]
    for rank, result in enumerate(ranking[: report.top_k], start=1):
        text = render.to_text(_program(data, result.program_id))
        lines += [f"**{rank}. `{result.program_id}`** — {_pm(result.mean, result.stderr)}", "", "```", text.rstrip(), "```", ""]
    return lines


def section_fresh(data: RunData) -> list[str]:
    fresh = [r for r in data.results.get(st.FRESH, {}).values() if r.error is None]
    lines = ["## Top programs on fresh seeds", ""]
    if not fresh:
        return lines + ["No program has been re-evaluated on fresh seeds yet.", ""]
    search_rank = {r.program_id: i for i, r in enumerate(data.ranking, start=1)}
    search = data.results[st.SEARCH]
    lines += ["| fresh rank | program | search rank | search | fresh |", "|---:|---|---:|---:|---:|"]
    ordered = sorted(fresh, key=lambda r: (-r.mean, r.program_id))
    for rank, result in enumerate(ordered, start=1):
        before = search.get(result.program_id)
        lines.append(
            f"| {rank} | `{result.program_id}` | {search_rank.get(result.program_id, '–')}"
            f" | {_pm(before.mean, before.stderr) if before else '–'} | {_pm(result.mean, result.stderr)} |"
        )
    fresh_order = [search_rank[r.program_id] for r in ordered if r.program_id in search_rank]
    if len(fresh_order) >= 3:
        rho = _spearman(range(len(fresh_order)), fresh_order)
        lines += ["", f"Rank correlation (Spearman) between the search order and the fresh order: {rho:.2f}."]
    return lines + [""]


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def section_recall(data: RunData, report: ReportConfig) -> list[str]:
    lines = ["## Predictor recall", ""]
    ranking = data.ranking
    if len(ranking) < report.recall_min_programs:
        return lines + [
            f"Too few completed programs ({len(ranking)}) for a recall estimate (needs {report.recall_min_programs}).",
            "",
        ]
    config = data.store.config()
    rng = np.random.default_rng(config.selection_seed)
    sample = ranking
    if len(ranking) > report.recall_max_programs:
        picks = np.sort(rng.choice(len(ranking), size=report.recall_max_programs, replace=False))
        sample = [ranking[i] for i in picks]
    result = simulate_recall(
        search_features([program_io.from_json(data.programs[r.program_id].json) for r in sample]),
        [r.mean for r in sample],
        budgets=(0.25, 0.5),
        top_fraction=report.top_fraction,
        batch_size=config.batch_size,
        epsilon=config.epsilon,
        seed=config.selection_seed,
        repeats=report.recall_repeats,
    )
    scope = "all" if len(sample) == len(ranking) else f"a seeded sample of {len(sample)} of the"
    lines += [
        f"Offline replay over {scope} {len(ranking)} completed programs (their search scores known): share of the true"
        f" top {report.top_fraction:.0%} ({result['top']} programs) found after evaluating a budget of the programs,"
        f" in predictor order (batches of {config.batch_size}, ε = {config.epsilon}) vs random order,"
        f" mean of {report.recall_repeats} replays.",
        "",
        "| budget | predictor | random |",
        "|---:|---:|---:|",
    ]
    for budget, ours, chance in zip(result["budgets"], result["predictor"], result["random"]):
        lines.append(f"| {budget:.0%} | {ours:.0%} | {chance:.0%} |")
    return lines + [""]


def section_elimination(data: RunData, report: ReportConfig) -> list[str]:
    lines = ["## Early stopping", ""]
    rows = data.rows.get(st.SEARCH, [])
    try:
        savings = step_savings(rows)
    except ValueError:
        return lines + ["No search-stage program has run its whole lifetime yet, so savings cannot be measured.", ""]
    stopped = [pid for pid, d in data.decisions.get(st.SEARCH, {}).items() if d.decision == st.STOPPED]
    lines.append(
        f"{len(stopped)} programs ({savings.stopped_rows} trials) stopped early. The search stage simulated"
        f" {savings.run:,} env steps instead of {savings.without_stopping:,}: stopping saved {savings.saved:,}"
        f" ({savings.fraction:.0%})."
    )
    rechecked = [r for r in data.results.get(st.RECHECK, {}).values() if r.error is None]
    ranking = data.ranking
    if not rechecked or not ranking:
        return lines + ["", "No stopped program has been re-checked with a full evaluation yet.", ""]
    fresh_top_k = data.store.config().fresh_top_k
    top = recheck_top(len(ranking), fresh_top_k, report.top_fraction)
    threshold = top_threshold([r.mean for r in ranking], top / len(ranking))
    lost = sorted((r for r in rechecked if r.mean >= threshold), key=lambda r: (-r.mean, r.program_id))
    estimate = len(lost) / len(rechecked) * len(stopped)
    verdict = (
        f"**Failed: early stopping lost {len(lost)} of the re-checked programs.**"
        if lost
        else "**Passed: no re-checked program would have made the top.**"
    )
    lines += [
        "",
        f"Re-checked in full: {len(rechecked)} of the {len(stopped)} stopped programs. Threshold: the {top} best completed"
        f" programs (the larger of the top {report.top_fraction:.0%} and the {fresh_top_k} carried to"
        f" fresh seeds), coverage ≥ {threshold:.1f}. {verdict} {len(lost)} would have been in that top;"
        f" scaled to all stopped programs, about {estimate:.1f} top programs lost.",
    ]
    if len(rechecked) < min(RECHECK_MIN, len(stopped)):
        lines += [
            "",
            f"Too few re-checked to trust a pass: a check needs at least {RECHECK_MIN} stopped programs (or all of them)"
            " before losing a top program would show.",
        ]
    if lost:
        lines += ["", "| program | full evaluation | stopped at |", "|---|---:|---|"]
        for r in lost:
            detail = data.decisions[st.SEARCH][r.program_id].detail
            lines.append(f"| `{r.program_id}` | {_pm(r.mean, r.stderr)} | {_stop_text(detail)} |")
    return lines + [""]


RECHECK_MIN = 20
"""Stopped programs a recheck must re-run (or all, if fewer stopped) before its pass means anything."""


def recheck_top(completed: int, fresh_top_k: int, top_fraction: float) -> int:
    """How many best completed programs count as "the top" a stopped program must not have reached:
    at least the top fraction, and at least the programs the search carries to fresh seeds."""
    return min(completed, max(math.ceil(top_fraction * completed), fresh_top_k, 1))


def _stop_text(detail: str) -> str:
    try:
        info = json.loads(detail)
        return f"step {info['step']} (mean {info['mean']:.1f} < cutoff {info['cutoff']:.1f})"
    except (TypeError, ValueError, KeyError):
        return detail or "–"


def locate(data: RunData, program_id: str) -> str:
    """Where one program landed in the run, in words."""
    row = data.programs.get(program_id)
    if row is None:
        return "outside the searched space (not enumerated)"
    prefix = ""
    if row.status == "duplicate":
        prefix = f"a behavioural duplicate of `{row.class_of}`, which is "
        row = data.programs.get(row.class_of)
        if row is None:
            return prefix + "missing from the store"
    if row.status == "failed":
        return prefix + f"dropped before evaluation: {row.error}"
    decision = data.decision(st.SEARCH, row.id)
    result = data.results.get(st.SEARCH, {}).get(row.id)
    if decision is None:
        limit = data.store.config().limit
        return prefix + (f"not selected within the search's limit of {limit} programs" if limit else "not evaluated yet")
    if decision == st.FAILED:
        return prefix + f"failed in evaluation: {result.error if result else 'no result'}"
    if decision == st.STOPPED:
        detail = data.decisions[st.SEARCH][row.id].detail
        return prefix + f"stopped early at {_stop_text(detail)}"
    ranking = data.ranking
    rank = next(i for i, r in enumerate(ranking, start=1) if r.program_id == row.id)
    return prefix + f"rank {rank} of {len(ranking)} completed ({_pm(result.mean, result.stderr)})"


def variants(data: RunData, program) -> str:
    """Where the run's programs with the same operations as ``program`` landed (e.g. FAST-like ones)."""
    ops = sorted(node.op for node in program.nodes)
    same = [pid for pid, row in data.programs.items() if sorted(row.ops.split()) == ops and pid != program.id]
    if not same:
        return "none in the space"
    ranks = {r.program_id: i for i, r in enumerate(data.ranking, start=1)}
    ranked = sorted(ranks[pid] for pid in same if pid in ranks)
    best = f"; best rank {ranked[0]} of {len(data.ranking)}" if ranked else ""
    return f"{len(same)} in the space, {len(ranked)} completed{best}"


def section_references(data: RunData, references: Sequence[tuple[str, Program]]) -> list[str]:
    """``references`` are (name, program) pairs."""
    if not references:
        return []
    lines = [
        "## Reference programs",
        "",
        "| program | id | where it landed | variants with the same operations |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | `{p.id}` | {locate(data, p.id)} | {variants(data, p)} |" for name, p in references]
    return lines + [""]


# Figures


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    figure.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, path)
    return path


def plot_funnel(data: RunData, report: ReportConfig, path: Path) -> Path:
    """The stages as a funnel (left) and the pruning rules' rejections as their own breakdown (right)."""
    stages, rules = funnel(data, report.top_k), pruning(data)
    rows = max(len(stages), len(rules))
    figure = Figure(figsize=(12 if rules else 7, 0.35 * rows + 1.2))
    panels = figure.subplots(1, 2 if rules else 1, squeeze=False)[0]
    _bars(panels[0], stages, "programs left at each stage", "programs (log scale)", "tab:blue")
    if rules:
        _bars(panels[1], rules, "static pruning: rejections by rule", "partial programs rejected (log scale)", "tab:gray")
    figure.tight_layout()
    return _save(figure, path)


def _bars(ax, rows, title: str, xlabel: str, color: str) -> None:
    labels = [name for name, _, _ in rows][::-1]
    counts = [max(count, 0) for _, count, _ in rows][::-1]
    ax.barh(labels, [max(c, 0.8) for c in counts], color=color)
    ax.set_xscale("log")
    for y, count in enumerate(counts):
        ax.text(max(count, 0.8), y, f" {count:,}", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)


def plot_scores(data: RunData, path: Path) -> Path:
    figure = Figure(figsize=(7, 4))
    ax = figure.add_subplot()
    groups = {
        "completed": [r.mean for r in data.ranking],
        "stopped (partial)": [
            r.mean
            for pid, r in data.results.get(st.SEARCH, {}).items()
            if data.decision(st.SEARCH, pid) == st.STOPPED and not math.isnan(r.mean)
        ],
    }
    values = [v for group in groups.values() for v in group]
    bins = np.histogram_bin_edges(values, bins=30) if values else 10
    for label, group in groups.items():
        if group:
            ax.hist(group, bins=bins, alpha=0.6, label=f"{label} ({len(group)})")
    ax.set_xlabel("search-stage coverage (mean over trials)")
    ax.set_ylabel("programs")
    if values:
        ax.legend()
    ax.set_title("score histogram")
    return _save(figure, path)


def plot_sorted(data: RunData, references: Sequence[tuple[str, Program]], path: Path) -> Path:
    ranking = data.ranking
    figure = Figure(figsize=(7, 4))
    ax = figure.add_subplot()
    ranks = np.arange(1, len(ranking) + 1)
    ax.errorbar(ranks, [r.mean for r in ranking], yerr=[r.stderr for r in ranking], fmt=".", ms=3, elinewidth=0.6)
    position = {r.program_id: i for i, r in enumerate(ranking, start=1)}
    for name, program in references:
        pid = program.id
        row = data.programs.get(pid)
        target = row.class_of if row is not None and row.status == "duplicate" else pid
        if target in position:
            ax.axvline(position[target], color="tab:red", lw=0.8, ls="--")
            ax.annotate(name, (position[target], ax.get_ylim()[1]), fontsize=8, color="tab:red", va="top")
    ax.set_xlabel("rank among completed programs")
    ax.set_ylabel("coverage (mean ± s.e.)")
    ax.set_title("completed programs, best first")
    return _save(figure, path)


def plot_curves(data: RunData, report: ReportConfig, path: Path) -> Path:
    by_program: dict[str, list[EvaluationRow]] = {}
    for row in data.rows.get(st.SEARCH, []):
        by_program.setdefault(row.program_id, []).append(row)
    figure = Figure(figsize=(7, 4.5))
    ax = figure.add_subplot()
    for rank, result in enumerate(data.ranking[: report.top_k], start=1):
        rows = [r for r in by_program.get(result.program_id, []) if r.curve]
        if not rows:
            continue
        width = min(len(r.curve) for r in rows)
        curves = np.array([r.curve[:width] for r in rows])
        steps = np.array(rows[0].checkpoint_steps[:width])
        mean = curves.mean(axis=0)
        spread = curves.std(axis=0, ddof=1) / math.sqrt(len(rows)) if len(rows) > 1 else np.zeros(width)
        ax.plot(steps, mean, marker=".", label=f"{rank}. {result.program_id}")
        ax.fill_between(steps, mean - spread, mean + spread, alpha=0.15)
    ax.set_xlabel("env steps per environment")
    ax.set_ylabel("coverage (mean ± s.e.)")
    ax.set_title(f"learning curves of the top {report.top_k}")
    if ax.lines:
        ax.legend(fontsize=7)
    return _save(figure, path)


# Entry points


def write_report(
    run_dir: str | Path, report: ReportConfig = DEFAULT, references: Sequence[tuple[str, Program]] = ()
) -> list[Path]:
    """Write RUN/report.md, its PNGs and RUN/top/ (the top programs with their dumps); returns the paths
    written. ``references`` are (name, program) pairs to locate in the run."""
    data = load(run_dir)
    try:
        out = data.run_dir
        written = [
            plot_funnel(data, report, out / "funnel.png"),
            plot_scores(data, out / "scores.png"),
            plot_sorted(data, references, out / "sorted_scores.png"),
            plot_curves(data, report, out / "curves.png"),
        ]
        sections = (
            section_header(data),
            section_funnel(data, report),
            section_references(data, references),
            section_top(data, report),
            section_fresh(data),
            section_recall(data, report),
            section_elimination(data, report),
        )
        text = "\n".join(line for section in sections for line in section)
        written.insert(0, _write_text(out / REPORT_FILE, text))
        written += write_top_programs(data, report, out / "top")
        return written
    except sqlite3.Error as err:
        raise StoreError(f"run store in {data.run_dir} is damaged: {err}") from None
    finally:
        data.store.close()


def write_top_programs(data: RunData, report: ReportConfig, folder: Path) -> list[Path]:
    """The top-k completed programs as JSON with their text and DOT dumps, named by rank and id."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, result in enumerate(data.ranking[: report.top_k], start=1):
        program = _program(data, result.program_id)
        stem = folder / f"{rank:02d}-{program.id}"
        written.append(_write_text(stem.with_suffix(".json"), program_io.to_json(program)))
        written.append(_write_text(stem.with_suffix(".txt"), render.to_text(program)))
        written.append(_write_text(stem.with_suffix(".dot"), render.to_dot(program)))
    return written


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


EXPORT_COLUMNS = (
    "program_id", "size", "ops", "text", "stage", "env", "seed", "score", "stopped_early", "error",
    "env_steps", "seconds", "worker", "created", "curve", "checkpoint_steps",
)  # fmt: skip


def export_rows(run_dir: str | Path) -> list[dict]:
    """One dict per evaluation row, with the program's size, ops and pseudo-code."""
    data = load(run_dir)
    try:
        texts: dict[str, str] = {}
        records = []
        for stage in sorted(data.rows):
            for row in data.rows[stage]:
                program = data.programs.get(row.program_id)
                if program is None:
                    raise StoreError(f"run store in {data.run_dir} has an evaluation of unknown program {row.program_id}")
                if row.program_id not in texts:
                    texts[row.program_id] = render.to_text(program_io.from_json(program.json))
                record = dataclasses.asdict(row)
                record.update(size=program.size, ops=program.ops, text=texts[row.program_id])
                record["curve"] = list(row.curve)
                record["checkpoint_steps"] = list(row.checkpoint_steps)
                records.append({column: record[column] for column in EXPORT_COLUMNS})
        return records
    finally:
        data.store.close()


def export(run_dir: str | Path, fmt: str, out: str | Path | None = None) -> tuple[Path, int]:
    """Write every evaluation of a run as Parquet or CSV; returns (path, rows)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}")
    records = export_rows(run_dir)
    path = Path(out) if out else Path(run_dir) / f"evaluations.{fmt}"
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "csv":
        _write_csv(records, tmp)
    else:
        _write_parquet(records, tmp)
    os.replace(tmp, path)
    return path, len(records)


def _write_csv(records: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    for record in records:
        flat = dict(record)
        flat["curve"] = json.dumps(record["curve"])
        flat["checkpoint_steps"] = json.dumps(record["checkpoint_steps"])
        flat["stopped_early"] = int(record["stopped_early"])
        writer.writerow(flat)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _write_parquet(records: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("program_id", pa.string()), ("size", pa.int64()), ("ops", pa.string()), ("text", pa.string()),
            ("stage", pa.string()), ("env", pa.string()), ("seed", pa.int64()), ("score", pa.float64()),
            ("stopped_early", pa.bool_()), ("error", pa.string()), ("env_steps", pa.int64()), ("seconds", pa.float64()),
            ("worker", pa.string()), ("created", pa.float64()), ("curve", pa.list_(pa.float64())),
            ("checkpoint_steps", pa.list_(pa.int64())),
        ]
    )  # fmt: skip
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)


# Command line


REFERENCE_PROGRAMS = ("fast", "ccim")
"""Reference programs whose place in a run the report gives by default."""


def add_parsers(sub) -> None:
    """Register ``report`` and ``export`` on the ``metacurio`` subcommand parser."""
    report = sub.add_parser("report", help="write RUN/report.md with its figures: funnel, top programs, savings")
    report.add_argument("run", help="run directory (runs/NAME)")
    report.add_argument(
        "--top", type=int, default=DEFAULT.top_k, help="programs in the top table and plots (default %(default)s)"
    )
    report.add_argument(
        "--locate",
        nargs="*",
        default=list(REFERENCE_PROGRAMS),
        metavar="PROGRAM",
        help="reference programs (names in results/programs or JSON files) to find in the run (default: fast ccim)",
    )
    report.set_defaults(func=cmd_report)

    export = sub.add_parser("export", help="write one row per evaluation of a run (with program size, ops, pseudo-code)")
    export.add_argument("run", help="run directory (runs/NAME)")
    export.add_argument("--format", choices=FORMATS, default="parquet")
    export.add_argument("--out", help="output file (default RUN/evaluations.FORMAT)")
    export.set_defaults(func=cmd_export)


def cmd_report(args) -> None:

    references = []
    for spec in args.locate:
        program = program_io.resolve(spec)
        references.append((program.name or spec, program))
    for path in write_report(args.run, dataclasses.replace(DEFAULT, top_k=args.top), references):
        print(f"wrote {path}")


def cmd_export(args) -> None:
    path, rows = export(args.run, args.format, args.out)
    print(f"wrote {rows} evaluations to {path}")
