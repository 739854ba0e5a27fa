"""Process-wide JAX settings the project relies on, applied explicitly by entry points."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "METACURIO_CACHE_DIR"
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false"
"""XLA's intra-op threading more than halves throughput on these CPUs (STACK.md): one
single-threaded process per core is faster, so every entry point and worker uses this."""


def cache_dir() -> Path:
    """Where compiled XLA programs are kept between processes (``$METACURIO_CACHE_DIR``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "metacurio" / "xla"
    return Path(os.environ.get(CACHE_ENV, default))


def enable_compilation_cache() -> Path:
    """Persist every compilation: a re-run in a new process then skips XLA's compile step."""
    # Light modules import this one to read the cache path and flags; only this call needs JAX.
    import jax

    path = cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def set_up_process() -> Path:
    """Before this process's first JAX computation: single-threaded XLA (unless ``XLA_FLAGS``
    is already set, which the user's choice overrides) and the persistent compile cache.

    The one place that sets process-wide JAX state; entry points call it, imports never do.
    """
    os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA)
    return enable_compilation_cache()
