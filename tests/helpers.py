"""Shared builders for tests: environments, random values of any DSL type, reference programs."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from metacurio.core import program_io
from metacurio.core.specs import EnvSpec
from operations import types as T
from operations.kernels.values import ListValue

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "results" / "programs"

IMAGE_ENV = EnvSpec(obs_shape=(15, 15, 3), action_dim=7, discrete=True, batch_size=5)
VECTOR_ENV = EnvSpec(obs_shape=(8,), action_dim=4, discrete=True, batch_size=5)
CONTINUOUS_ENV = EnvSpec(obs_shape=(8,), action_dim=2, discrete=False, batch_size=5)
LIST_LENGTH = 5


def store_count(path: Path, query: str) -> int:
    """``SELECT COUNT(*) ...`` on a run's store while another process writes it (0 until readable)."""
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return db.execute(query).fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


def wait_for_count(path: Path, process, query: str, what: str, timeout: float = 120.0) -> int:
    """Until ``query`` counts at least one row committed by the run in ``process``; that count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        count = store_count(path, query)
        if count:
            return count
        time.sleep(0.05)
    raise AssertionError(f"no {what} was committed in time: {process.stderr.read() if process.poll() is not None else ''}")


def reference_programs(kind: str | None = None):
    programs = {p.stem: program_io.load(p) for p in sorted(PROGRAMS.glob("*.json"))}
    return {name: p for name, p in programs.items() if kind is None or p.kind == kind}


def random_value(key: jax.Array, t: T.ValueType, env: EnvSpec):
    """A batch of values of type ``t`` (lists get a mask with some invalid leading items)."""
    b = env.batch_size
    if t.is_list:
        keys = jax.random.split(key, LIST_LENGTH)
        items = jnp.stack([random_value(k, t.elem, env) for k in keys], axis=1)
        return ListValue(items=items, mask=jnp.arange(LIST_LENGTH) >= 1)
    if t.kind == T.REAL:
        return jax.random.normal(key, (b,))
    if t.kind == T.NONNEG:
        return jnp.abs(jax.random.normal(key, (b,)))
    if t.kind == T.FEATURE:
        return jax.random.normal(key, (b, 32))
    if t.kind == T.ACTION:
        if env.discrete:
            return jax.nn.one_hot(jax.random.randint(key, (b,), 0, env.action_dim), env.action_dim)
        return jax.random.normal(key, (b, env.action_dim))
    if t.kind == T.OBS:
        return jax.random.randint(key, (b,) + env.obs_shape, 0, 11).astype(jnp.float32)
    raise ValueError(t)
