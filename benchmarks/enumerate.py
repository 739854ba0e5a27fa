"""Enumeration speed: our rules and the original's (compat) rules, against the original code's times.

The original's synthesizer, run on this machine (reference §5.6), took 29 s for the ≤ 6-op
curiosity space and 12 min for ≤ 7 without duplicate removal, and 21 s for the ≤ 3-op combiner
space. Usage: ``python benchmarks/enumerate.py [--max-ops 6]`` (7 takes minutes).
"""

from __future__ import annotations

import argparse
import platform
import time

from search.engine import enumerate_grammar
from search.compat import CompatGrammar
from search.enumerate import NativeGrammar, enumerate_space

ORIGINAL_SECONDS = {("curiosity", 5): 2.5, ("curiosity", 6): 29.0, ("curiosity", 7): 12 * 60.0, ("combiner", 3): 21.0}


def measure(space: str, max_ops: int, compat: bool) -> tuple[int, float]:
    start = time.perf_counter()
    grammar = CompatGrammar(space) if compat else NativeGrammar.for_space(space)
    result = enumerate_grammar(grammar, max_ops)
    return result.count + grammar.seed_programs, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-ops", type=int, default=6)
    args = parser.parse_args()
    print(f"# enumeration, {platform.processor() or platform.machine()}, one process")
    cases = [("combiner", 3, True), ("curiosity", args.max_ops, True), ("curiosity", args.max_ops, False)]
    for space, max_ops, compat in cases:
        count, seconds = measure(space, max_ops, compat)
        original = ORIGINAL_SECONDS.get((space, max_ops))
        ratio = f"{original / seconds:5.1f}× faster than the original" if original else "no original timing"
        rules = "compat" if compat else "ours  "
        print(f"{space:9s} ≤ {max_ops} ops, {rules}: {count:>8,} candidates in {seconds:7.1f} s  ({ratio})")
    start = time.perf_counter()
    found = enumerate_space("curiosity", min(args.max_ops, 5))
    print(f"curiosity ≤ {found.max_ops} ops, ours, as validated programs: {found.count:,} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
