"""Test-session set-up: single-threaded XLA (faster on these CPUs) and a persistent compile cache."""

from metacurio.jax_setup import set_up_process

set_up_process()
