"""Programs per minute on an accelerator: many programs × trials vmapped in one call.

Runs the reference programs (repeated to fill a batch) at the paper budget (5 trials × 5 envs ×
996 steps) through ``Evaluator.evaluate_batch`` for a few batch sizes and two layouts: the
smallest layout holding the reference programs, and the whole curiosity space's layout (what a
search compiles once). Prints a table and writes it as JSON to ``--json``.

    python benchmarks/evaluator_gpu.py [--batches 64,256] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax

from metacurio.core import program_io
from metacurio.agent.config import GRIDWORLD_PAPER, PPOConfig
from metacurio.agent.config import PAPER_SEEDS
from metacurio.agent.evaluator import Evaluator
from metacurio.core.layout import Layout

PROGRAMS = Path(__file__).resolve().parents[1] / "results" / "programs"
NAMES = ("fast", "ccim", "rnd", "icm", "inverse_model", "disagreement", "knn_novelty")


def measure(layout: Layout, programs, batch: int, ppo: PPOConfig) -> dict:
    evaluator = Evaluator(layout, ppo=ppo)
    chosen = [programs[i % len(programs)] for i in range(batch)]
    start = time.perf_counter()
    evaluator.evaluate_batch(chosen, PAPER_SEEDS)
    first = time.perf_counter() - start
    start = time.perf_counter()
    results = evaluator.evaluate_batch(chosen, PAPER_SEEDS)
    seconds = time.perf_counter() - start
    env_steps = sum(r.env_steps for r in results)
    scores = {p.name: float(r.mean) for p, r in zip(chosen, results)}
    return {
        "layout_instructions": len(layout.instructions),
        "layout_nodes": layout.max_nodes,
        "programs": batch,
        "compile_plus_first_s": round(first, 2),
        "run_s": round(seconds, 2),
        "programs_per_min": round(60 * batch / seconds, 1),
        "env_steps_per_s": round(env_steps / seconds),
        "scores": scores,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--layouts", default="reference,space")
    parser.add_argument("--lifetime-steps", type=int, default=GRIDWORLD_PAPER.lifetime_steps)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    programs = [program_io.load(PROGRAMS / f"{n}.json") for n in NAMES]
    layouts = {
        "reference": Layout.for_programs(programs),
        "space": Layout.for_space("curiosity", max_nodes=max(p.size for p in programs)),
    }
    print(f"jax {jax.__version__}, device {jax.devices()[0].device_kind}")
    rows = []
    for layout_name in args.layouts.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            ppo = dataclasses.replace(GRIDWORLD_PAPER, lifetime_steps=args.lifetime_steps)
            row = {"layout": layout_name, **measure(layouts[layout_name], programs, batch, ppo)}
            rows.append(row)
            print(
                f"{layout_name:<10} {row['layout_instructions']:>3} instr  {batch:>5} programs  "
                f"compile+first {row['compile_plus_first_s']:>7.1f} s  run {row['run_s']:>7.2f} s  "
                f"{row['programs_per_min']:>8.1f} programs/min  {row['env_steps_per_s']:>12,} env-steps/s",
                flush=True,
            )
    print("scores (mean coverage) of the last batch:", json.dumps(rows[-1]["scores"]))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": jax.devices()[0].device_kind, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
