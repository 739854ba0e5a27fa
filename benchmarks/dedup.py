"""Duplicate-removal throughput: compile and run time per layout, extrapolated to the ≤ 7-op space.

    python benchmarks/dedup.py [--programs N] [--jsonl programs.jsonl | --max-ops 7] [--end-to-end]

Programs are a seeded random sample of the enumerated ≤ 7-op space (``--jsonl`` of a
``metacurio enumerate`` run, or ``--max-ops`` to enumerate now), else drawn by a seeded random
generator of valid, learning curiosity programs with the original space's size mix. The
sample is planned as if it were the whole space (each program weighs 90,000 / N), so the
layouts are the ones a full run would compile; each layout's compile and run are timed
separately, then the grouping, and the total is extrapolated to 90,000 programs: compiles
once, everything else scaled by the weight. Times are CPU seconds of this
process (single-threaded XLA), which is what an idle core would take on this shared machine;
wall-clock seconds are printed beside them. By default the XLA cache is a fresh temporary
folder, so compile times are cold.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from metacurio.jax_setup import SINGLE_THREAD_XLA  # noqa: E402

os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA)

import numpy as np  # noqa: E402

from metacurio.core import program_io  # noqa: E402
from metacurio.core.layout import instruction_output, space_instructions  # noqa: E402
from metacurio.core.program import Program, ProgramBuilder, ProgramError  # noqa: E402
from operations.registry import get_op, get_state_type  # noqa: E402

SPACE_PROGRAMS = 90_000
"""Candidates of the ≤ 7-op curiosity space (the original enumerates 88,121)."""
TARGET_SECONDS = 600.0
"""Issue target: the whole space deduplicated in ≤ 10 minutes on this 2-core machine."""
ORIGINAL_SECONDS = 2 * 3600.0
"""The original's dedup of that space on this machine (STACK.md)."""
SIZE_MIX = {4: 46, 5: 589, 6: 6_729, 7: 80_757}
"""Programs of each size in the original's enumeration (reference §5.4, C7), for the generator."""
CONSTANTS = (-1.0, -0.5, 0.1, 0.5, 1.0, 2.0)


def generated_programs(count: int, seed: int = 0) -> list[Program]:
    """``count`` distinct valid curiosity programs that learn, drawn top-down from the type rules."""
    rng = np.random.default_rng(seed)
    sizes, weights = zip(*SIZE_MIX.items())
    probabilities = np.array(weights) / sum(weights)
    programs: dict[str, Program] = {}
    while len(programs) < count:
        program = _random_program(rng, int(rng.choice(sizes, p=probabilities)))
        if program is not None:
            programs.setdefault(program.id, program)
    return list(programs.values())


@functools.lru_cache(maxsize=None)
def _producers() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """Instructions by the kind of value they produce."""
    producers: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for name, kinds in space_instructions("curiosity"):
        out = instruction_output(name, kinds)
        if out is not None and get_op(name).enumerable:
            producers.setdefault(out, []).append((name, kinds))
    return producers


def _random_program(rng: np.random.Generator, size: int) -> Program | None:
    producers = _producers()
    builder = ProgramBuilder()
    values: dict[str, list] = {"obs": ["obs", "next_obs"], "action": ["action"]}
    slots: dict[str, list[str]] = {}
    budget = [size - 1]

    def slot_for(type_name: str) -> str:
        taken = slots.setdefault(type_name, [])
        if taken and not get_state_type(type_name).single_use and rng.random() < 0.5:
            return str(rng.choice(taken))
        name = builder.state(f"{type_name.lower()}{len(taken)}", type_name)
        taken.append(name)
        return name

    def make(kind: str, phase: str):
        if kind == "scalar" and rng.random() < 0.1:
            return float(rng.choice(CONSTANTS))
        fresh = budget[0] > 0 and kind in producers and (not values.get(kind) or rng.random() < 0.85)
        if not fresh:
            if not values.get(kind):
                raise ProgramError(f"no {kind} value to reuse")
            return values[kind][int(rng.integers(len(values[kind])))]
        budget[0] -= 1
        name, kinds = producers[kind][int(rng.integers(len(producers[kind])))]
        args = [make(k, phase) for k in kinds]
        state = slot_for(get_op(name).state) if get_op(name).state else None
        node = (builder.forward if phase == "forward" else builder.update)(name, *args, state=state)
        values.setdefault(kind, []).append(node)
        return node

    try:
        output = make("scalar", "forward")
        if budget[0] > 0:
            builder.update("AddToLoss", make("scalar", "update"))
        program = builder.build(output)
    except ProgramError:
        return None
    learns = program.loss_nodes() or any(n.op == "NearestNeighbour" for n in program.nodes)
    return program if learns and program.size == size else None


def candidate_programs(count: int, jsonl: str | None, max_ops: int | None) -> tuple[list[Program], str]:
    """A seeded random sample of the enumerated space (from a ``programs.jsonl`` that ``metacurio
    enumerate`` wrote, or enumerated now), else generated programs."""
    rng = np.random.default_rng(0)
    if jsonl:
        lines = Path(jsonl).read_text(encoding="utf-8").splitlines()
        picks = sorted(rng.choice(len(lines), size=min(count, len(lines)), replace=False))
        return [program_io.from_json(lines[i]) for i in picks], f"a sample of {jsonl} ({len(lines):,} programs)"
    if max_ops:
        from search.enumerate import enumerate_space

        space = enumerate_space("curiosity", max_ops).programs
        picks = sorted(rng.choice(len(space), size=min(count, len(space)), replace=False))
        source = f"a sample of enumerate_space('curiosity', {max_ops}) ({len(space):,} programs)"
        return [space[i] for i in picks], source
    return generated_programs(count), "the random generator"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000, help="programs to deduplicate")
    parser.add_argument("--jsonl", help="sample the programs from this programs.jsonl (metacurio enumerate --out)")
    parser.add_argument("--max-ops", type=int, help="sample from enumerate_space('curiosity', MAX_OPS), enumerated now")
    parser.add_argument("--steps", type=int, default=8, help="signature steps")
    parser.add_argument("--chunk", type=int, default=64, help="programs per compiled call")
    parser.add_argument("--workers", type=int, default=2, help="processes assumed for the extrapolation")
    parser.add_argument("--end-to-end", action="store_true", help="also time deduplicate() on the sample")
    parser.add_argument("--warm-cache", action="store_true", help="use the persistent XLA cache (warm compiles)")
    args = parser.parse_args(argv)
    if not args.warm_cache:
        os.environ["METACURIO_CACHE_DIR"] = tempfile.mkdtemp(prefix="dedup-bench-xla-")
    import jax

    from metacurio.jax_setup import enable_compilation_cache
    from search.signature import (
        BATCH,
        LayoutRunner,
        compile_cost,
        deduplicate,
        encode_programs,
        equivalence_classes,
        plan_layouts,
        run_cost,
    )

    enable_compilation_cache()
    start = time.perf_counter()
    programs, source = candidate_programs(args.programs, args.jsonl, args.max_ops)
    n = len(programs)
    weight = SPACE_PROGRAMS / n
    print(f"{n} programs from {source} ({time.perf_counter() - start:.1f} s); each stands for {weight:.0f}")
    start = time.process_time()
    plan_layouts(programs, weight=weight)
    first_s = time.process_time() - start
    start = time.process_time()
    plans, errors = plan_layouts(programs, weight=weight)
    plan_s = time.process_time() - start
    # The first plan also traces every state type and instruction once: paid once, not per program.
    once_s = first_s - plan_s
    print(
        f"planned {len(plans)} layouts in {plan_s:.1f} s after {once_s:.1f} s of one-time tracing "
        f"({len(errors)} programs could not be laid out)"
    )
    encode_s = compile_s = run_s = 0.0
    wall = {"compile": 0.0, "run": 0.0}
    rows = np.full((n, args.steps * BATCH), np.nan)
    ok = np.zeros(n, bool)
    for layout, members in plans:
        t0 = time.process_time()
        stacked, positions, _ = encode_programs([programs[i] for i in members], layout)
        t1, w1 = time.process_time(), time.perf_counter()
        runner = LayoutRunner(layout, args.steps, 0, min(args.chunk, len(members)))
        runner.compile(jax.tree.map(lambda x: x[0], stacked))
        t2, w2 = time.process_time(), time.perf_counter()
        layout_rows, layout_errors = runner.run(stacked)
        t3, w3 = time.process_time(), time.perf_counter()
        wall["compile"] += w2 - w1
        wall["run"] += w3 - w2
        indices = [members[j] for j in positions]
        rows[indices] = layout_rows
        ok[indices] = [e is None for e in layout_errors]
        encode_s, compile_s, run_s = encode_s + t1 - t0, compile_s + t2 - t1, run_s + t3 - t2
        print(
            f"  {len(members):4d} programs, {len(layout.instructions):2d} instructions, {len(layout.banks):2d} banks: "
            f"compile {t2 - t1:5.1f} s (model {compile_cost(layout):3.0f}, wall {w2 - w1:5.1f}), "
            f"run {(t3 - t2) / len(members) * 1e3:5.1f} ms/program (model {run_cost(layout) * 1e3:5.1f})"
        )
    start = time.process_time()
    order = sorted(np.flatnonzero(ok), key=lambda i: (programs[i].size, i))
    representative = equivalence_classes(rows, order, 1e-3, 1e-5)
    group_s = time.process_time() - start
    unique = int(np.sum(representative == np.arange(n)))
    print(f"failed {int(n - ok.sum())}, duplicates {int(ok.sum()) - unique}, unique {unique}")
    print(
        f"sample, CPU s: plan {plan_s:.1f}, encode {encode_s:.1f}, compile {compile_s:.1f}, "
        f"run {run_s:.1f} ({n / run_s:.1f} programs/s), classes {group_s:.2f}; "
        f"wall s: compile {wall['compile']:.1f}, run {wall['run']:.1f}"
    )
    serial = once_s + weight * (plan_s + encode_s + group_s)
    one = serial + compile_s + weight * run_s
    many = serial + (compile_s + weight * run_s) / args.workers
    print(f"extrapolated to {SPACE_PROGRAMS:,} programs, CPU s (compiles once, the rest ×{weight:.0f}):")
    for label, total in ((
        "1 process", one), (f"{args.workers} worker processes (balanced)", many)):
        print(
            f"  {label}: {total:.0f} s = {total / 60:.1f} min; target {TARGET_SECONDS:.0f} s: "
            f"ratio {total / TARGET_SECONDS:.2f} ({'met' if total <= TARGET_SECONDS else 'NOT met'}); "
            f"original ≈ {ORIGINAL_SECONDS:.0f} s: {ORIGINAL_SECONDS / total:.1f}× faster"
        )
    if args.end_to_end:
        start = time.perf_counter()
        # On Ray actors, as a search's duplicate removal runs (in this process if the sample is small).
        result = deduplicate(programs, steps=args.steps, chunk=args.chunk, executor="ray", workers=args.workers)
        seconds = time.perf_counter() - start
        print(f"deduplicate() end to end on the sample: {seconds:.1f} s wall ({n / seconds:.1f} programs/s)")
        print(f"  {result.funnel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
