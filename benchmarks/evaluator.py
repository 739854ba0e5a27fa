"""Evaluator speed on this machine: one compile for a layout, then programs as data.

Prints one table: the interpreter's one-time compile, its per-program run time at the paper
budget (5 trials × 5 envs × 996 steps), env-steps/s, the same programs through the
per-program compiled path (compile + run), PPO with no curiosity, and the ratios.

    python benchmarks/evaluator.py [--programs fast,rnd] [--trials 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from metacurio.jax_setup import SINGLE_THREAD_XLA  # noqa: E402

os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from envs import gridworld, gridworld_config  # noqa: E402
from metacurio.core import program_io  # noqa: E402
from metacurio.agent.config import GRIDWORLD_PAPER  # noqa: E402
from metacurio.agent.ppo import ZeroCuriosity, make_train  # noqa: E402
from metacurio.core.compiler import compile_program  # noqa: E402
from metacurio.agent.config import PAPER_SEEDS  # noqa: E402
from metacurio.agent.evaluator import Evaluator, gridworld_spec  # noqa: E402
from metacurio.core.layout import Layout  # noqa: E402

PROGRAMS = Path(__file__).resolve().parents[1] / "results" / "programs"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - start


def lifetime_with(module, seeds):
    """Seconds to compile and to run a whole vmapped lifetime with this curiosity module."""
    spec = gridworld_spec(gridworld_config.EMPTY, GRIDWORLD_PAPER)
    trainer = make_train(gridworld.reset, gridworld.step, gridworld_config.EMPTY, spec, GRIDWORLD_PAPER, module)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    train = jax.jit(jax.vmap(trainer.train))
    start = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    (_, metrics), run_seconds = timed(lambda: compiled(keys))
    return compile_seconds, run_seconds, metrics["coverage"][:, -1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", default="fast,rnd,ccim,disagreement,knn_novelty")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args(argv)
    programs = [program_io.load(PROGRAMS / f"{name}.json") for name in args.programs.split(",")]
    seeds = PAPER_SEEDS[: args.trials]
    steps = GRIDWORLD_PAPER.num_updates * GRIDWORLD_PAPER.rollout_steps * GRIDWORLD_PAPER.num_envs * len(seeds)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {len(seeds)} trials × {steps // len(seeds)} env steps")

    references = [program_io.load(path) for path in sorted(PROGRAMS.glob("*.json"))]
    layout = Layout.for_programs([p for p in references if p.kind == "curiosity"])
    evaluator, build_seconds = timed(lambda: Evaluator(layout))
    first, first_seconds = timed(lambda: evaluator.evaluate(programs[0], seeds))
    rows = []
    for program in programs:
        result, seconds = timed(lambda: evaluator.evaluate(program, seeds))
        rows.append((program, result, seconds))
    run_mean = sum(s for _, _, s in rows) / len(rows)
    compile_seconds = first_seconds - rows[0][2]

    ppo_compile, ppo_run, _ = lifetime_with(ZeroCuriosity(), seeds)
    print(f"\ninterpreter layout (all reference programs): {len(layout.instructions)} instructions, {layout.max_nodes} node positions")
    print(f"one-time compile (first program minus a warm run): {compile_seconds:8.1f} s")
    print(f"PPO with zero curiosity: compile {ppo_compile:.1f} s, run {ppo_run:.2f} s ({steps / ppo_run:,.0f} env-steps/s)\n")
    header = f"{'program':<14}{'interp run s':>13}{'env-steps/s':>13}{'compiled: compile s':>21}{'run s':>8}{'interp/compiled':>17}{'score':>9}"
    print(header)
    print("-" * len(header))
    ratios = []
    for program, result, seconds in rows:
        c_compile, c_run, c_scores = lifetime_with(compile_program(program), seeds)
        ratios.append(seconds / c_run)
        name = (program.name or program.id)[:13]
        print(
            f"{name:<14}{seconds:>13.2f}{steps / seconds:>13,.0f}{c_compile:>21.1f}{c_run:>8.2f}{seconds / c_run:>17.2f}"
            f"{result.mean:>9.1f}"
        )
    print(f"\nmean interpreted run per program: {run_mean:.2f} s (target ≤ 0.85 s)")
    print(f"mean interpreter/compiled run ratio: {sum(ratios) / len(ratios):.2f} (target ≤ 1.5)")
    print(f"interpreted run vs PPO alone: {run_mean / ppo_run:.2f}×")
    print(f"build {build_seconds:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
