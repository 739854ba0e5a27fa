"""Test-session set-up: single-threaded XLA (faster on these CPUs) and a persistent compile cache."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

from metacurio.jax_setup import enable_compilation_cache  # noqa: E402

enable_compilation_cache()
