"""The figures report.md shows, as PNGs."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from metacurio.app.report.data import ReportConfig, RunData, TransferTarget, funnel, pruning, spearman, transfer_targets
from metacurio.core.program import Program
from search import store as st
from search.store import EvaluationRow


def plot_all(
    data: RunData, report: ReportConfig, references: Sequence[tuple[str, Program]], folder: Path
) -> list[Path]:
    """Every figure report.md links to, written into ``folder``; returns the paths written."""
    return [
        plot_funnel(data, report, folder / "funnel.png"),
        plot_scores(data, folder / "scores.png"),
        plot_sorted(data, references, folder / "sorted_scores.png"),
        plot_curves(data, report, folder / "curves.png"),
    ] + plot_transfer(data, folder)


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
    ax.set_xlabel(f"search-stage {data.score_name} (mean over trials)")
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
    ax.set_ylabel(f"{data.score_name} (mean ± s.e.)")
    ax.set_title("completed programs, best first")
    return _save(figure, path)


CONTROL_DASHES = ("--", ":", "-.", (0, (6, 2, 1, 2, 1, 2)))
"""Line styles that tell the controls apart: black, dashed differently, beside the coloured programs."""


def plot_curves(data: RunData, report: ReportConfig, path: Path) -> Path:
    by_program: dict[str, list[EvaluationRow]] = {}
    for row in data.rows.get(st.SEARCH, []):
        by_program.setdefault(row.program_id, []).append(row)
    figure = Figure(figsize=(7, 4.5))
    ax = figure.add_subplot()
    for rank, result in enumerate(data.ranking[: report.top_k], start=1):
        _mean_curve(ax, by_program.get(result.program_id, []), f"{rank}. {result.program_id}", marker=".")
    # The controls on the same seeds, so a top program's curve is read against them.
    for (control_id, name), dashes in zip(data.controls.items(), itertools.cycle(CONTROL_DASHES)):
        rows = data.stage_rows(st.CONTROL_SEARCH, control_id)
        _mean_curve(ax, rows, f"control: {name}", color="black", linewidth=1.6, linestyle=dashes)
    ax.set_xlabel("env steps per environment")
    ax.set_ylabel(f"{data.score_name} (mean ± s.e.)")
    ax.set_title(f"learning curves of the top {report.top_k}" + (" and the controls" if data.controls else ""))
    if ax.lines:
        ax.legend(fontsize=7)
    return _save(figure, path)


def _mean_curve(ax, rows: Sequence[EvaluationRow], label: str, **style) -> None:
    """Mean ± s.e. over a program's trials, on the checkpoints every trial reached."""
    rows = [r for r in rows if r.curve]
    if not rows:
        return
    width = min(len(r.curve) for r in rows)
    curves = np.array([r.curve[:width] for r in rows])
    steps = np.array(rows[0].checkpoint_steps[:width])
    mean = curves.mean(axis=0)
    spread = curves.std(axis=0, ddof=1) / math.sqrt(len(rows)) if len(rows) > 1 else np.zeros(width)
    (line,) = ax.plot(steps, mean, label=label, **style)
    ax.fill_between(steps, mean - spread, mean + spread, alpha=0.15, color=line.get_color())


def plot_transfer(data: RunData, folder: Path) -> list[Path]:
    """Learning curves per transfer target, and gridworld score against transfer return (none without transfers)."""
    targets = [t for t in transfer_targets(data) if t.rows]
    if not targets:
        return []
    return [plot_transfer_curves(targets, folder / "transfer_curves.png"), plot_transfer_scatter(targets, folder / "transfer_scatter.png")]


def _panels(count: int, width: float, height: float):
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns, height * rows))
    return figure, figure.subplots(rows, columns, squeeze=False).ravel()


def plot_transfer_curves(targets: Sequence[TransferTarget], path: Path) -> Path:
    figure, axes = _panels(len(targets), 5.5, 4.0)
    for ax, target in zip(axes, targets):
        for row in target.rows:
            style = {"color": "black", "linestyle": "--", "linewidth": 1.6} if row.is_plain else {}
            _mean_curve(ax, row.rows, row.name if len(row.name) <= 24 else row.program_id, **style)
        ax.set_title(f"{target.env_id} ({target.preset})", fontsize=9)
        ax.set_xlabel("env steps per environment")
        ax.set_ylabel("mean episode return so far" if target.deep_sea_size is None else "treasures found so far")
        if ax.lines:
            ax.legend(fontsize=6)
    for ax in axes[len(targets):]:
        ax.set_visible(False)
    return _save(figure, path)


def plot_transfer_scatter(targets: Sequence[TransferTarget], path: Path) -> Path:
    figure, axes = _panels(len(targets), 4.5, 4.0)
    for ax, target in zip(axes, targets):
        both = [r for r in target.rows if r.gridworld is not None and not math.isnan(r.result.mean)]
        x, y = [r.gridworld.mean for r in both], [r.result.mean for r in both]
        ax.errorbar(x, y, xerr=[r.gridworld.stderr for r in both], yerr=[r.result.stderr for r in both], fmt="o", ms=4)
        for row in both:
            label = "plain PPO" if row.is_plain else row.name if len(row.name) <= 16 else row.program_id
            ax.annotate(label, (row.gridworld.mean, row.result.mean), fontsize=6)
        rho, _ = spearman(x, y)
        rho_text = "ρ n/a" if math.isnan(rho) else f"Spearman ρ = {rho:+.2f}"
        ax.set_title(f"{target.env_id} ({target.preset}): {rho_text}, n = {len(both)}", fontsize=9)
        ax.set_xlabel("gridworld coverage (fresh seeds)")
        ax.set_ylabel("transfer return")
    for ax in axes[len(targets):]:
        ax.set_visible(False)
    return _save(figure, path)
