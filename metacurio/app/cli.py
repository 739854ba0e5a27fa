"""The ``metacurio`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

from metacurio import arguments
from metacurio.agent.config import GRIDWORLD_PAPER
from metacurio.app import transfer
from metacurio.app.report import command as report
from metacurio.core import program_io, render
from metacurio.core.program import ProgramError
from operations.registry import REGISTRY
from operations.state_types import STATE_TYPES
from search import driver
from search import enumerate as enumeration
from search.interrupts import stop_on_signals

# Commands that train agents, search or plot import their modules when they run, so that
# `metacurio show`, `ops` and `--help` start without loading JAX, Ray or matplotlib.


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def cmd_show(args) -> None:
    program = program_io.resolve(args.program)
    if args.format == "text":
        text = render.to_text(program)
    elif args.format == "json":
        text = program_io.to_json(program)
    elif args.format == "dot":
        text = render.to_dot(program)
    else:
        text = render.to_svg(program)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def cmd_ops(args) -> None:
    console = Console()
    table = Table(title="operations", show_lines=False)
    for column in ("name", "signature", "meaning", "spaces", "flags"):
        table.add_column(column, overflow="fold")
    for op in REGISTRY.values():
        if args.space and args.space not in op.spaces:
            continue
        table.add_row(op.name, op.signature(), op.doc, ",".join(sorted(op.spaces)), op.flags())
    console.print(table)
    states = Table(title="state types")
    for column in ("name", "signature", "meaning", "kind"):
        states.add_column(column, overflow="fold")
    for st in STATE_TYPES.values():
        kind = "trainable" if st.trainable else "read-only" if st.read_only else "single-use"
        states.add_row(st.name, st.signature, st.doc, kind)
    console.print(states)


def _check_replay_args(args) -> None:
    arguments.check_at_least(args.trials, 1, "--trials")
    arguments.check_at_least(args.steps, 1, "--steps")
    if args.seeds:
        arguments.check_seeds(args.seeds)


def _replay_seeds(args, default: Sequence[int]) -> list[int]:
    return list(args.seeds or default)


def cmd_replay(args) -> None:
    from metacurio.app import replay  # JAX, gymnasium and matplotlib: only `replay` needs them

    _check_replay_args(args)
    if not replay.is_gridworld(args.env):
        cmd_replay_gym(args)
        return
    config = replay.env_config(args.env)
    program = program_io.resolve(args.program)
    seeds = _replay_seeds(args, [4 + 100 * i for i in range(5 if args.trials is None else args.trials)])
    ppo = dataclasses.replace(GRIDWORLD_PAPER, lifetime_steps=GRIDWORLD_PAPER.lifetime_steps if args.steps is None else args.steps)
    result = replay.replay(program, config, seeds, ppo)
    for seed, score in zip(seeds, result.scores):
        print(f"seed {seed:>5}: {score:6.0f}")
    print(f"{program.name or program.id}: {result.mean:.1f} ± {result.stderr:.1f} (mean ± s.e., {len(seeds)} trials)")
    out = Path(args.out or f"runs/replay-{program.id}")
    for path in replay.write_outputs(result, program, config, seeds, out):
        print(f"wrote {path}")


def cmd_replay_gym(args) -> None:
    from metacurio.agent import gym_trainer  # JAX and gymnasium: only `replay` needs them
    from metacurio.app import replay

    preset = replay.gym_preset(args.env, args.preset, args.steps)
    program = program_io.resolve(args.program)
    combiner = program_io.resolve(args.combiner)
    seeds = _replay_seeds(args, preset.seeds if args.trials is None else [4 + 100 * i for i in range(args.trials)])
    results = replay.gym_replay(program, preset, seeds, combiner)
    for result in results:
        print(f"seed {result.seed:>5}: {result.score:9.2f}  ({len(result.episode_returns)} episodes)")
    mean, stderr = gym_trainer.mean_and_stderr([r.score for r in results])
    print(f"{program.name or program.id} on {args.env}: {mean:.2f} ± {stderr:.2f} (mean episode return ± s.e., {len(seeds)} trials)")
    out = Path(args.out or f"runs/replay-{program.id}-{args.env}")
    for path in replay.write_gym_outputs(results, program, preset, out):
        print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metacurio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    show = sub.add_parser("show", help="print a program as pseudo-code, JSON, DOT or SVG")
    show.add_argument("program", help="a program JSON file, or a reference program name such as 'fast'")
    show.add_argument("--format", choices=("text", "json", "dot", "svg"), default="text")
    show.add_argument("--out", help="write to this file instead of standard output")
    show.set_defaults(func=cmd_show)

    replay = sub.add_parser("replay", help="train agents with a program and show what it did")
    replay.add_argument("program", help="a program JSON file, or a reference program name")
    replay.add_argument(
        "--env",
        default="gridworld",
        help="gridworld (the paper preset), gridworld-goal, gridworld-four_rooms, or a gymnasium id such as LunarLander-v3",
    )
    replay.add_argument("--trials", type=int, help="trials with the seeds 4, 104, 204, ... (default: 5; a gymnasium preset's own)")
    replay.add_argument("--seeds", type=int, nargs="+", help="explicit trial seeds (overrides --trials)")
    replay.add_argument("--steps", type=int, help="env steps per environment in a lifetime (default: the paper's / the preset's)")
    replay.add_argument("--preset", choices=("paper", "quick"), default="paper", help="gymnasium budget: the paper's, or a smoke run")
    replay.add_argument("--combiner", default="combiner_paper", help="gymnasium reward combiner program (combiner_sum: i + e)")
    replay.add_argument("--out", help="folder for the PNGs and the GIF (default runs/replay-ID)")
    replay.set_defaults(func=cmd_replay)

    ops = sub.add_parser("ops", help="list the operation registry and the state types")
    ops.add_argument("--space", choices=("curiosity", "combiner"), help="only the operations of this space")
    ops.set_defaults(func=cmd_ops)

    enumeration.add_parser(sub)
    driver.add_parser(sub)

    report.add_parsers(sub)

    transfer.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # A stop from a job scheduler or `kill` ends a run as Ctrl-C does: stored work kept, resume hint.
        with stop_on_signals():
            args.func(args)
    except (ProgramError, CliError, render.RenderError, ValueError, OSError) as err:
        print(f"metacurio: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metacurio: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
