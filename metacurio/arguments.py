"""Checks at the door: command-line values and JSON files are refused in one line before any work.

Every check raises ``ArgumentError`` (a ``ValueError``: the CLI prints it as one line and exits
with status 2) before a run directory or store is created.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path
from typing import Any, Sequence

MAX_SEED = 2**32 - 1
"""Largest trial seed: JAX's PRNG keys and gymnasium's seeding both take 32-bit seeds."""
MAX_OPS = {"curiosity": 7, "combiner": 3}
"""Largest program size per space: the paper's. Curiosity: ≤ 7 ops is 143,193 candidates, about
3 minutes to enumerate on one core, and each further op multiplies the count by about ten.
Combiner: the paper searched ≤ 3 ops (10,746 candidates under the original's rules)."""
MAX_JSON_BYTES = 1 << 20
"""Largest program or config file: real ones are a few kilobytes."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects in a program or config file (real ones: 4)."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class ArgumentError(ValueError):
    """A command-line value or input file is out of bounds (one line)."""


def check_seeds(seeds: Sequence[int], flag: str = "--seeds") -> tuple[int, ...]:
    """Seeds are integers in [0, MAX_SEED], each given once."""
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ArgumentError(f"{flag}: every seed must be an integer from 0 to {MAX_SEED} (2**32 - 1), got {seed!r}")
    repeated = sorted(seed for seed, count in collections.Counter(seeds).items() if count > 1)
    if repeated:
        raise ArgumentError(f"{flag}: seed {repeated[0]} is given more than once; trials with one seed are the same trial")
    return tuple(seeds)


def check_at_least(value: int | None, minimum: int, flag: str) -> None:
    """An optional integer flag that, when given, is at least ``minimum``."""
    if value is not None and value < minimum:
        raise ArgumentError(f"{flag} must be at least {minimum}, got {value}")


def check_max_ops(value: int | None, space: str, flag: str = "--max-ops") -> None:
    """Program sizes from 1 to ``MAX_OPS[space]``, with the reason for the bound."""
    if value is None:
        return
    limit = MAX_OPS[space]
    if not 1 <= value <= limit:
        raise ArgumentError(
            f"{flag} must be from 1 to {limit} for {space} programs, got {value}: "
            + (
                "the ≤ 7-op space (the paper's) has 143,193 candidates and takes about 3 minutes to enumerate; "
                "every further op multiplies that by about ten"
                if space == "curiosity"
                else "the paper searched combiners of ≤ 3 ops (10,746 candidates under the original's rules)"
            )
        )


def loads(text: str, source: str) -> Any:
    """JSON text of at most ``MAX_JSON_BYTES`` and ``MAX_JSON_DEPTH`` levels, checked before parsing."""
    if len(text) > MAX_JSON_BYTES:
        raise ArgumentError(f"{source} is {len(text):,} characters long; at most {MAX_JSON_BYTES:,} are read")
    depth = deepest = 0
    for bracket in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            raise ArgumentError(f"{source} nests arrays or objects more than {MAX_JSON_DEPTH} levels deep")
    return json.loads(text)


def read_text(path: Path, what: str) -> str:
    """A file's text, refused before reading when it is larger than ``MAX_JSON_BYTES``."""
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ArgumentError(f"{what} {path} is {size:,} bytes; at most {MAX_JSON_BYTES:,} are read")
    return path.read_text(encoding="utf-8")
