"""Reference programs and plain PPO on the paper's gridworld preset, written as a Markdown table.

    python -m metacurio.baselines [--trials 5] [--out results]

Every curiosity program runs through the evaluator (one compile for all of them); plain PPO
(zero intrinsic reward) runs through the same agent with a zero curiosity module.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from envs import gridworld  # noqa: E402
from metacurio import program_io  # noqa: E402
from metacurio.agent import GRIDWORLD_PAPER, ZeroCuriosity, make_train  # noqa: E402
from metacurio.evaluator import Evaluator, gridworld_spec  # noqa: E402
from metacurio.interpreter import Layout  # noqa: E402
from metacurio.jax_setup import enable_compilation_cache  # noqa: E402

PROGRAMS = Path(__file__).resolve().parents[1] / "results" / "programs"
BASELINES = ("fast", "ccim", "rnd", "icm", "inverse_model", "disagreement", "knn_novelty")
PAPER = {"fast": "610.4 ± 8.2", "ccim": "573.6 ± 12.9"}
ORIGINAL_CODE_HERE = {"fast": "517.8", "rnd": "459.2", "none": "201.2"}


def plain_ppo(seeds) -> tuple[np.ndarray, np.ndarray]:
    spec = gridworld_spec(gridworld.EMPTY, GRIDWORLD_PAPER)
    trainer = make_train(gridworld.reset, gridworld.step, gridworld.EMPTY, spec, GRIDWORLD_PAPER, ZeroCuriosity())
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    _, metrics = jax.jit(jax.vmap(trainer.train))(keys)
    curves = np.asarray(metrics["coverage"])
    return curves[:, -1].astype(float), curves


def _stats(scores: np.ndarray) -> tuple[float, float]:
    return float(scores.mean()), float(scores.std(ddof=1) / math.sqrt(len(scores)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    seeds = tuple(4 + 100 * i for i in range(args.trials))
    programs = {name: program_io.load(PROGRAMS / f"{name}.json") for name in BASELINES}
    evaluator = Evaluator(Layout.for_programs(programs.values()))
    rows = {}
    start = time.perf_counter()
    for name, program in programs.items():
        result = evaluator.evaluate(program, seeds)
        rows[name] = (program.name, result.scores, result.curves)
        print(f"{program.name:<28} {result.mean:7.1f} ± {result.stderr:5.1f}  {result.scores}", flush=True)
    scores, curves = plain_ppo(seeds)
    checkpoints = np.cumsum(evaluator.chunks) - 1
    rows["none"] = ("No curiosity (plain PPO)", scores, curves[:, checkpoints])
    print(f"{'No curiosity':<28} {scores.mean():7.1f}  {scores}", flush=True)
    seconds = time.perf_counter() - start

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _plot(rows, evaluator.checkpoint_steps, out / "gridworld-baselines.png")
    lines = [
        "# Gridworld baselines",
        "",
        f"Paper preset: empty 15×15 room, 5 envs × 996 steps per trial, PPO as in the paper, {len(seeds)} trials "
        f"(seeds {', '.join(map(str, seeds))}). Score = distinct (x, y, direction) states visited by any env over "
        "the lifetime (max 676). Mean ± standard error over trials.",
        "",
        "| program | score | trials | paper | original code on this machine |",
        "|---|---|---|---|---|",
    ]
    for name, (title, trial_scores, _) in rows.items():
        mean, se = _stats(trial_scores)
        trials = ", ".join(f"{s:.0f}" for s in trial_scores)
        lines.append(f"| {title} | {mean:.1f} ± {se:.1f} | {trials} | {PAPER.get(name, '–')} | {ORIGINAL_CODE_HERE.get(name, '–')} |")
    lines += ["", "![coverage curves](gridworld-baselines.png)", "", f"Reproduce: `python -m metacurio.baselines --trials {len(seeds)}` ({seconds / 60:.0f} min on this machine's 2 CPU cores)."]
    (out / "gridworld-baselines.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'gridworld-baselines.md'}")
    return 0


def _plot(rows, checkpoint_steps, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for title, _, curves in rows.values():
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
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
