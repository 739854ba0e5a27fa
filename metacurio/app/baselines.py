"""Reference programs and plain PPO on the paper's gridworld preset, written as a Markdown table.

    python -m metacurio.app.baselines [--trials 5] [--out results]

Every curiosity program runs through the evaluator (one compile for all of them); plain PPO
(zero intrinsic reward) runs through the same agent with a zero curiosity module. Each run is
scored twice: over the whole lifetime (metacurio's score) and over completed episodes only (the
paper's counting), which is the one compared with the paper's and the published code's scores
(read from ``results/reference-scores.json``; they are measurements, not code).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from envs import gridworld, gridworld_config
from metacurio.agent.config import GRIDWORLD_PAPER
from metacurio.agent.evaluator import Evaluator, gridworld_spec
from metacurio.agent.ppo import ZeroCuriosity, make_train
from metacurio.core import program_io
from metacurio.core.layout import Layout
from metacurio.jax_setup import set_up_process

RESULTS = Path(__file__).resolve().parents[2] / "results"
PROGRAMS = RESULTS / "programs"
REFERENCE_SCORES = RESULTS / "reference-scores.json"
BASELINES = ("fast", "ccim", "rnd", "icm", "inverse_model", "disagreement", "knn_novelty")


def plain_ppo(seeds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lifetime scores, paper-counting scores and per-update coverage curves of zero-reward PPO."""
    spec = gridworld_spec(gridworld_config.EMPTY, GRIDWORLD_PAPER)
    trainer = make_train(gridworld.reset, gridworld.step, gridworld_config.EMPTY, spec, GRIDWORLD_PAPER, ZeroCuriosity())
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    _, metrics = jax.jit(jax.vmap(trainer.train))(keys)
    curves = np.asarray(metrics["coverage"])
    paper = np.asarray(metrics["coverage_completed_episodes"])[:, -1].astype(float)
    return curves[:, -1].astype(float), paper, curves


def _stats(scores: np.ndarray) -> tuple[float, float]:
    return float(scores.mean()), float(scores.std(ddof=1) / math.sqrt(len(scores)))


def _reference(scores: dict, name: str) -> str:
    entry = scores.get(name)
    if entry is None:
        return "–"
    return f"{entry['mean']:.1f}" + (f" ± {entry['stderr']:.1f}" if "stderr" in entry else "")


def reading(rows: dict, reference: dict, seeds) -> list[str]:
    """Sentences computed from the scores: each comparison on the paper's counting."""
    paper, original = reference["paper"]["scores"], reference["original_code_here"]
    lines = []
    for name, (title, _, paper_counting, _) in rows.items():
        mean, se = _stats(paper_counting)
        if name in paper:
            theirs = paper[name]
            gap = mean - theirs["mean"]
            combined = math.hypot(se, theirs["stderr"])
            lines.append(
                f"- **{title}** vs the paper: {mean:.1f} ± {se:.1f} against {theirs['mean']:.1f} ± {theirs['stderr']:.1f},"
                f" a difference of {gap:+.1f} ({gap / combined:+.1f} combined standard errors; the paper's seeds are unknown)."
            )
        if name in original["scores"] and list(seeds) == original["seeds"]:
            theirs = original["scores"][name]["mean"]
            lines.append(
                f"- **{title}** vs the published code on the same seed numbers ({', '.join(map(str, seeds))};"
                f" its random streams are torch's, not JAX's): {mean:.1f} against {theirs:.1f} ({mean - theirs:+.1f})."
            )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    set_up_process()
    reference = json.loads(REFERENCE_SCORES.read_text(encoding="utf-8"))
    seeds = tuple(4 + 100 * i for i in range(args.trials))
    programs = {name: program_io.load(PROGRAMS / f"{name}.json") for name in BASELINES}
    evaluator = Evaluator(Layout.for_programs(programs.values()))
    rows = {}
    start = time.perf_counter()
    for name, program in programs.items():
        result = evaluator.evaluate(program, seeds)
        rows[name] = (program.name, result.scores, result.paper_scores, result.curves)
        print(f"{program.name:<28} {result.mean:7.1f} ± {result.stderr:5.1f}  {result.scores}", flush=True)
    scores, paper_scores, curves = plain_ppo(seeds)
    checkpoints = np.cumsum(evaluator.chunks) - 1
    rows["none"] = ("No curiosity (plain PPO)", scores, paper_scores, curves[:, checkpoints])
    print(f"{'No curiosity':<28} {scores.mean():7.1f}  {scores}", flush=True)
    seconds = time.perf_counter() - start

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _plot({name: (title, curves) for name, (title, _, _, curves) in rows.items()}, evaluator.checkpoint_steps, out / "gridworld-baselines.png")
    lines = [
        "# Gridworld baselines",
        "",
        f"Paper preset: empty 15×15 room, 5 envs × 996 steps per trial, PPO as in the paper, {len(seeds)} trials "
        f"(seeds {', '.join(map(str, seeds))}). Score = distinct (x, y, direction) states visited by any env "
        "(max 676), counted two ways: over the whole lifetime (metacurio's score), and over completed episodes "
        "only, i.e. up to step 900 (the paper's counting, used for every comparison with the paper and the "
        "published code). Mean ± standard error over trials.",
        "",
        "| program | lifetime | paper's counting | trials (paper's counting) | paper | published code on this machine |",
        "|---|---|---|---|---|---|",
    ]
    paper, original = reference["paper"]["scores"], reference["original_code_here"]["scores"]
    for name, (title, trial_scores, trial_paper, _) in rows.items():
        mean, se = _stats(trial_scores)
        paper_mean, paper_se = _stats(trial_paper)
        trials = ", ".join(f"{s:.0f}" for s in trial_paper)
        lines.append(
            f"| {title} | {mean:.1f} ± {se:.1f} | {paper_mean:.1f} ± {paper_se:.1f} | {trials} |"
            f" {_reference(paper, name)} | {_reference(original, name)} |"
        )
    lines += ["", "![coverage curves (lifetime counting)](gridworld-baselines.png)", "", "## Comparisons", ""]
    lines += reading(rows, reference, seeds)
    lines += [
        "",
        f"Sources of the reference scores: `results/reference-scores.json`. Reproduce: `python -m metacurio.app.baselines"
        f" --trials {len(seeds)}` ({seconds / 60:.0f} min on this machine's 2 CPU cores).",
    ]
    (out / "gridworld-baselines.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'gridworld-baselines.md'}")
    return 0


def _plot(rows, checkpoint_steps, path: Path) -> None:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for title, curves in rows.values():
        mean = curves.mean(axis=0)
        se = curves.std(axis=0, ddof=1) / math.sqrt(curves.shape[0])
        steps = checkpoint_steps[: len(mean)]
        ax.plot(steps, mean, label=title)
        ax.fill_between(steps, mean - se, mean + se, alpha=0.2)
    ax.set_xlabel("env steps per environment")
    ax.set_ylabel("distinct (x, y, dir) states visited")
    ax.set_ylim(0, 676)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
