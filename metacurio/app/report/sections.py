"""The Markdown sections of report.md and their assembly into its text."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Sequence

import numpy as np

from metacurio.app.report.data import (
    TransferTarget,
    first_find_episode,
    spearman,
    transfer_targets,
    PairedDifference,
    ReportConfig,
    RunData,
    funnel,
    paired_difference,
    parse_program,
    pruning,
)
from metacurio.core import program_io
from metacurio.core import render
from metacurio.core.program import Program
from search import store as st
from search.predictor import search_features, simulate_recall
from search.schedule import step_savings, top_threshold


def markdown(data: RunData, report: ReportConfig, references: Sequence[tuple[str, Program]]) -> str:
    """The text of report.md, every section in order; ``references`` are (name, program) pairs to locate."""
    sections = (
        section_header(data),
        section_funnel(data, report),
        section_references(data, references),
        section_top(data, report),
        section_controls(data, report),
        section_fresh(data),
        section_recall(data, report),
        section_elimination(data, report),
        section_transfer(data),
    )
    return "\n".join(line for section in sections for line in section)


def _pm(mean: float, stderr: float) -> str:
    return "–" if mean is None or math.isnan(mean) else f"{mean:.1f} ± {stderr:.1f}"


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
        f"Search-stage {data.score_name} (mean ± s.e. over trials), the same programs on fresh seeds, and how each was picked.",
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
        text = render.to_text(parse_program(data, result.program_id))
        lines += [f"**{rank}. `{result.program_id}`** — {_pm(result.mean, result.stderr)}", "", "```", text.rstrip(), "```", ""]
    return lines


def section_controls(data: RunData, report: ReportConfig) -> list[str]:
    """The controls on each seed set, and the top programs against them, paired by seed."""
    lines = ["## Against the controls", ""]
    if not data.controls:
        return lines + ["This run evaluated no control programs, so its scores stand without a same-seed baseline.", ""]
    search, fresh = data.results.get(st.CONTROL_SEARCH, {}), data.results.get(st.CONTROL_FRESH, {})
    lines += [
        "Each control ran its whole lifetime on the search seeds (stage `control-search`) and on the fresh seeds"
        f" (`control-fresh`), in the same harness as the programs. {data.score_name[:1].upper() + data.score_name[1:]}, mean ± s.e. over trials:",
        "",
        "| control | id | search seeds | fresh seeds |",
        "|---|---|---:|---:|",
    ]
    for pid, name in data.controls.items():
        lines.append(f"| {name} | `{pid}` | {_result_text(search.get(pid))} | {_result_text(fresh.get(pid))} |")
    lines.append("")
    top = data.ranking[: report.top_k]
    lines += _paired_table(data, "search seeds", st.SEARCH, st.CONTROL_SEARCH, [r.program_id for r in top])
    fresh_ranked = sorted(
        (r for r in data.results.get(st.FRESH, {}).values() if r.error is None), key=lambda r: (-r.mean, r.program_id)
    )
    lines += _paired_table(data, "fresh seeds", st.FRESH, st.CONTROL_FRESH, [r.program_id for r in fresh_ranked])
    return lines


def _result_text(result) -> str:
    if result is None:
        return "not run yet"
    return f"failed: {result.error}" if result.error else _pm(result.mean, result.stderr)


def _paired_table(data: RunData, seeds: str, stage: str, control_stage: str, program_ids: list[str]) -> list[str]:
    """program − control per seed, for ``program_ids`` in order, with how many intervals resolve."""
    controls = [(pid, name) for pid, name in data.controls.items() if data.stage_rows(control_stage, pid)]
    if not program_ids or not controls:
        return []
    header = " | ".join(f"− {name}" for _, name in controls)
    lines = [
        f"### Programs against the controls on the {seeds}",
        "",
        "Program − control, the mean over the seeds both ran with a 95 % t-interval of the per-seed differences;"
        " **bold** where the interval excludes 0. Stopped programs are not here: their scores are partial.",
        "",
        f"| program | score | {header} |",
        "|---|---:|" + "---:|" * len(controls),
    ]
    tallies = {pid: [0, 0, 0, 0] for pid, _ in controls}
    for program_id in program_ids:
        result = data.results[stage][program_id]
        cells = []
        for control_id, _ in controls:
            difference = paired_difference(data.stage_rows(stage, program_id), data.stage_rows(control_stage, control_id))
            cells.append(_difference_text(difference))
            if difference is None:
                tallies[control_id][3] += 1
            else:
                tallies[control_id][0 if difference.low > 0 else 1 if difference.high < 0 else 2] += 1
        lines.append(f"| `{program_id}` | {_pm(result.mean, result.stderr)} | " + " | ".join(cells) + " |")
    lines.append("")
    for control_id, name in controls:
        above, below, unresolved, unpaired = tallies[control_id]
        lines.append(
            f"- Against {name}: {above} of these {len(program_ids)} programs resolved above it, {below} below,"
            f" {unresolved} unresolved" + (f", {unpaired} without two shared seeds." if unpaired else ".")
        )
    return lines + [""]


def _difference_text(difference: PairedDifference | None) -> str:
    if difference is None:
        return "–"
    if math.isnan(difference.low):
        return f"{difference.mean:+.1f} (same on all {difference.seeds} seeds, no interval)"
    text = f"{difference.mean:+.1f} [{difference.low:+.1f}, {difference.high:+.1f}]"
    return f"**{text}**" if difference.resolved else text


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
        f" fresh seeds), {data.score_name} ≥ {threshold:.1f}. {verdict} {len(lost)} would have been in that top;"
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


def section_transfer(data: RunData) -> list[str]:
    """Transfer tables per environment and budget, against plain PPO, and whether the gridworld predicts them."""
    targets = [t for t in transfer_targets(data) if t.rows]
    if not targets:
        return []
    lines = [
        "## Transfer",
        "",
        "One agent lifetime per seed; every row of a table ran on the same seeds through the same reward pipeline"
        " (the program's intrinsic reward, the target's reward combiner, return normalisation). Plain PPO is the"
        " zero-reward program, so it differs from the other rows in nothing but the intrinsic reward. Return: the"
        " mean extrinsic return of the episodes that ended in the lifetime, mean ± s.e. over seeds. Against plain"
        " PPO: the difference paired by seed with a 95 % t-interval, in bold where the interval excludes 0."
        " Gridworld: the program's coverage on this run's fresh seeds, where it has one.",
        "",
    ]
    for target in targets:
        if target.deep_sea_size is None:
            lines += _transfer_table(target)
    lines += _deep_sea_table([t for t in targets if t.deep_sea_size is not None])
    return lines + ["![transfer learning curves](transfer_curves.png)", "", "![gridworld score against transfer return](transfer_scatter.png)", ""]


def _transfer_table(target: TransferTarget) -> list[str]:
    lines = [f"### {target.env_id} ({target.preset} budget)", "", _budget_text(target), ""]
    lines += ["| program | id | return | vs plain PPO | seeds | gridworld (fresh) | error |", "|---|---|---:|---:|---:|---:|---|"]
    for row in target.rows:
        gridworld = "–" if row.gridworld is None else _pm(row.gridworld.mean, row.gridworld.stderr)
        result = row.result
        lines.append(
            f"| {row.name} | `{row.program_id}` | {_pm(result.mean, result.stderr)} | {_difference_text(row.versus_plain)}"
            f" | {result.trials} | {gridworld} | {result.error or ''} |"
        )
    paired = [r.versus_plain for r in target.rows if r.versus_plain is not None]
    if paired:
        above = sum(d.low > 0 for d in paired)
        below = sum(d.high < 0 for d in paired)
        lines += ["", f"Against plain PPO: {above} of {len(paired)} programs resolve above it, {below} below, {len(paired) - above - below} unresolved."]
    both = [r for r in target.rows if r.gridworld is not None and r.result.error is None and not math.isnan(r.result.mean)]
    rho, p_value = spearman([r.gridworld.mean for r in both], [r.result.mean for r in both])
    if math.isnan(rho):
        lines += ["", f"Too few programs ({len(both)}) with both a gridworld score and a return here for a rank correlation."]
    else:
        lines += [
            "",
            f"Does the gridworld predict this target? Spearman's ρ between gridworld coverage and return over the"
            f" {len(both)} programs with both: {rho:+.2f} (two-sided p = {p_value:.2f}).",
        ]
    return lines + [""]


def _budget_text(target: TransferTarget) -> str:
    preset = target.settings.get("preset", {})
    ppo = preset.get("ppo", {})
    if not ppo:
        return "Budget not stored."
    updates = ppo["lifetime_steps"] // ppo["rollout_steps"]
    limit = preset.get("max_episode_steps")
    return (
        f"Budget: {ppo['num_envs']} env(s) × {updates} PPO updates of {ppo['rollout_steps']:,} steps"
        f" ({updates * ppo['rollout_steps']:,} steps per env)"
        + ("" if limit is None else f", episodes cut at {limit:,} steps")
        + f"; reward combiner `{target.settings.get('combiner', '?')}`."
    )


def _deep_sea_table(targets: Sequence[TransferTarget]) -> list[str]:
    """Per program and DeepSea size: on how many seeds the treasure was ever found, and when first."""
    if not targets:
        return []
    targets = sorted(targets, key=lambda t: (t.deep_sea_size, t.name))
    lines = [
        "### DeepSea (hard exploration)",
        "",
        "bsuite's deterministic DeepSea of size N: the treasure (+1) waits at the bottom right, every step right"
        " costs 0.01/N, and which action means right is drawn per cell from the seed. Per size: the seeds on which"
        " the agent ever reached the treasure, and the episodes the trial had completed (all its environments) by"
        " the end of the round of the first find, median and range over the seeds that found it.",
        "",
    ]
    lines += [_budget_text(t).replace("Budget:", f"DeepSea-{t.deep_sea_size} ({t.preset}):") for t in targets] + [""]
    header = " | ".join(f"N = {t.deep_sea_size} ({t.preset})" for t in targets)
    lines += [f"| program | id | {header} |", "|---|---|" + "---:|" * len(targets)]
    programs: dict[str, str] = {}
    for target in targets:
        for row in target.rows:
            programs.setdefault(row.program_id, row.name)
    for program_id, name in programs.items():
        cells = []
        for target in targets:
            row = next((r for r in target.rows if r.program_id == program_id), None)
            cells.append("–" if row is None else _finds_text(row.rows, target.settings["preset"]["ppo"]["num_envs"]))
        lines.append(f"| {name} | `{program_id}` | " + " | ".join(cells) + " |")
    return lines + [""]


def _finds_text(rows, num_envs: int) -> str:
    ran = [r for r in rows if r.error is None]
    firsts = [e for e in (first_find_episode(r, num_envs) for r in ran) if e is not None]
    text = f"{len(firsts)}/{len(ran)}"
    if firsts:
        text += f", {int(np.median(firsts)):,}" + (f" ({min(firsts):,}–{max(firsts):,})" if len(firsts) > 1 else "")
    return text
