"""The executor on a job of its own: one runner per worker, failures as outcomes, deaths retried.

The search's job (``WorkerSpec``) is exercised by tests/test_driver.py and transfer's by
tests/test_transfer.py; this toy job needs no JAX, so it shows the executor's own rules.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from search.executor import MAX_WORKER_DEATHS, ExecutorError, LocalExecutor, make_executor

DIE = "die"
"""A task that ends its worker's process."""


@dataclasses.dataclass(frozen=True)
class Reciprocal:
    """Tasks are numbers; a runner answers (tasks it has run so far, 1 / task)."""

    def start(self) -> "ReciprocalRunner":
        return ReciprocalRunner()


class ReciprocalRunner:
    def __init__(self):
        self.runs = 0

    def run(self, task):
        if task == DIE:
            os._exit(3)
        self.runs += 1
        return self.runs, 1 / task


def test_local_runs_in_order_on_one_runner_and_keeps_going_after_a_failure():
    executor = LocalExecutor(Reciprocal())
    outcomes = list(executor.map([2, 0, 4]))
    executor.close()
    assert [o.task for o in outcomes] == [2, 0, 4]
    assert [o.result for o in outcomes] == [(1, 0.5), None, (3, 0.25)]
    assert [o.error for o in outcomes] == [None, "ZeroDivisionError: division by zero", None]
    assert all(o.worker.startswith("local:") and o.worker.endswith(f":{os.getpid()}") and o.seconds >= 0 for o in outcomes)


def test_unknown_executors_and_an_address_without_ray_are_refused():
    with pytest.raises(ExecutorError, match="^--address needs the ray executor$"):
        make_executor("local", Reciprocal(), address="127.0.0.1:6379")
    with pytest.raises(ValueError, match="unknown executor 'threads'"):
        make_executor("threads", Reciprocal())


@pytest.mark.slow
def test_a_task_that_keeps_killing_its_worker_fails_alone(monkeypatch):
    import ray

    from search.executor import RayExecutor

    # Ray workers unpickle the job by reference: they must find this module.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    executor = RayExecutor(Reciprocal(), workers=2)
    try:
        outcomes = {o.task: o for o in executor.map([2, DIE, 4])}
        assert executor.restarts == MAX_WORKER_DEATHS
    finally:
        executor.close()
    assert not ray.is_initialized()
    assert outcomes[2].result[1] == 0.5 and outcomes[4].result[1] == 0.25
    assert outcomes[2].worker.startswith("ray:") and outcomes[2].error is None
    died = outcomes[DIE]
    assert died.result is None and died.worker == "ray" and died.seconds == 0.0
    assert died.error.startswith(f"worker died {MAX_WORKER_DEATHS} times while evaluating this chunk: ")


def test_one_actor_per_gpu_where_there_are_gpus_else_per_cpu():
    from search.executor import device_slots

    assert device_slots({"CPU": 16.0, "GPU": 2.0}) == (2, {"num_gpus": 1, "num_cpus": 1})
    assert device_slots({"CPU": 16.0}) == (16, {"num_cpus": 1})
    assert device_slots({}) == (1, {"num_cpus": 1})
