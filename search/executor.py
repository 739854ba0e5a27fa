"""Where work runs: in this process, or on long-lived Ray actors (SPEC §3.5).

The executor runs tasks without knowing what they mean. Every worker receives one *job*, a
picklable frozen value whose ``start()`` builds the worker's resources once (the search's
evaluator, which compiles the lifetime once and then runs every program as data; transfer's
trainers) and returns a runner whose ``run(task)`` turns one task into one result. A task that
raises becomes an outcome with that error, so one failing task never stops the others. Workers
only compute; they return ``Outcome``s and the calling process alone writes the store.

``WorkerSpec`` is the curiosity search's job (gridworld evaluation of ``Task``s), ``GymWorkerSpec``
the combiner search's (gymnasium evaluation of combiner ``Task``s with a fixed curiosity
program); ``metacurio.app.transfer.TransferJob`` is transfer's.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import signal
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence

import numpy as np

from envs import gridworld_config
from metacurio.agent.config import PPOConfig
from metacurio.agent.gym_presets import GymPreset
from metacurio.core.program import Program
from metacurio.errors import failure
from metacurio.jax_setup import CACHE_ENV, SINGLE_THREAD_XLA, cache_dir, set_up_process
from search import reaper

if TYPE_CHECKING:
    # Only carried here: the driver imports this module to build its parser, without JAX.
    from metacurio.core.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
MAX_WORKER_DEATHS = 3
"""Tries of a chunk whose worker keeps dying before its tasks are returned as failed."""


class ExecutorError(ValueError):
    """Workers cannot run at all (one line); nothing is recorded, so the run can be resumed."""


class Runner(Protocol):
    """One worker's resources, built by ``Job.start``."""

    def run(self, task) -> object:
        """The result of one task; an exception becomes the task's ``Outcome.error``."""


class Job(Protocol):
    """What every worker of an executor runs: picklable and frozen, so it travels to Ray actors."""

    def start(self) -> Runner:
        """Build this worker's resources; called once per worker, in the worker's process."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A task's result, or the one-line error that stopped it."""

    task: object
    result: object | None
    """What the job's runner returned; None when the task raised or its worker kept dying."""
    error: str | None
    worker: str
    seconds: float
    """Wall-clock time the worker spent on the task (0 when its worker died)."""


# The search's job: gridworld evaluation


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What every evaluation worker compiles: one layout, environment, agent and checkpoint spacing."""

    layout: Layout
    grid: gridworld_config.GridConfig
    ppo: PPOConfig
    checkpoint_every: int

    def start(self) -> "Evaluation":
        return Evaluation(build_evaluator(self))


@dataclasses.dataclass(frozen=True)
class Task:
    """One program to evaluate in one stage."""

    program_id: str
    program: Program
    """Parsed and validated by the driver; workers run it as it is."""
    stage: str
    seeds: tuple[int, ...]
    cutoffs: tuple[float, ...] | None
    """Per-checkpoint cutoffs (nan: no stop there); None evaluates the whole lifetime."""


@functools.lru_cache(maxsize=2)
def build_evaluator(spec: WorkerSpec):
    """One evaluator per spec and process: a second search in the same process (the test suite)
    skips the compile. The one cache kept between jobs; any other resource lives on its runner."""
    # In the worker's process only: planning jobs never needs JAX.
    from metacurio.agent.evaluator import Evaluator

    set_up_process()
    return Evaluator(spec.layout, spec.grid, spec.ppo, spec.checkpoint_every)


@dataclasses.dataclass(frozen=True)
class GymWorkerSpec:
    """What every combiner-evaluation worker compiles: one combiner layout, fixed curiosity
    program, gymnasium environment with its agent and lifetime, and checkpoint spacing."""

    layout: Layout
    curiosity: Program
    preset: GymPreset
    checkpoint_every: int

    def start(self) -> "Evaluation":
        return Evaluation(build_gym_evaluator(self))


@functools.lru_cache(maxsize=2)
def build_gym_evaluator(spec: GymWorkerSpec):
    """One gymnasium evaluator per spec and process (see ``build_evaluator``)."""
    # In the worker's process only: planning jobs never needs JAX or gymnasium.
    from metacurio.agent.gym_evaluator import GymEvaluator

    set_up_process()
    return GymEvaluator(spec.layout, spec.curiosity, spec.preset, spec.checkpoint_every)


class Evaluation:
    """A worker's runner for ``WorkerSpec`` and ``GymWorkerSpec``: ``Task`` ->
    ``metacurio.agent.evaluator.EvalResult``."""

    def __init__(self, evaluator):
        self._evaluator = evaluator

    def run(self, task: Task):
        """A non-finite score curve becomes the result's error: its scores would mean nothing."""
        result = self._evaluator.evaluate(task.program, task.seeds, task.cutoffs)
        if result.error is None and not np.all(np.isfinite(result.curves)):
            result = dataclasses.replace(result, error="non-finite score")
        return result


# Executors


def run_task(runner: Runner, task, worker: str) -> Outcome:
    """One task into one outcome; any exception becomes the outcome's error."""
    start = time.perf_counter()
    try:
        result = runner.run(task)
    except Exception as err:  # noqa: BLE001 - any failure of one task must not stop the others
        return Outcome(task, None, failure(err), worker, time.perf_counter() - start)
    return Outcome(task, result, None, worker, time.perf_counter() - start)


def worker_environment() -> dict[str, str]:
    """Variables a worker process needs before JAX starts: XLA threading, compile cache, imports."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", SINGLE_THREAD_XLA),
        CACHE_ENV: str(cache_dir()),
        "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
    }


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LocalExecutor:
    """Runs tasks one after another in this process."""

    def __init__(self, job: Job):
        self._runner = job.start()
        self.workers = 1

    def map(self, tasks: Sequence) -> Iterator[Outcome]:
        name = f"local:{_worker_name()}"
        for task in tasks:
            yield run_task(self._runner, task, name)

    def close(self) -> None:
        self._runner = None


class Worker:
    """A Ray actor: one job's resources, many chunks of tasks."""

    def __init__(self, job: Job):
        self._runner = job.start()
        self._name = f"ray:{_worker_name()}"

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """The Ray node this actor runs on."""
        import ray  # loaded: this runs inside a Ray actor

        return ray.get_runtime_context().get_node_id()

    def run(self, tasks: Sequence) -> list[Outcome]:
        return [run_task(self._runner, task, self._name) for task in tasks]


NODE_DEATH_WAIT_S = 30.0
"""How long a dead actor's node may take to show as dead in Ray's control store (it notices a
lost raylet by missed health checks, 15 s or so by default) before the death counts as the
worker's own."""


NODE_DIED = "because its node has died"
"""What Ray's control store writes in an actor's death cause when the actor's node died."""


def device_slots(resources: dict) -> tuple[int, dict]:
    """How many actors a cluster holds and what each claims: one per GPU where the cluster has
    GPUs, else one per CPU."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    return max(1, int(resources.get("CPU", 1))), {"num_cpus": 1}


class RayExecutor:
    """One actor per device (GPU, else CPU) on a local Ray it starts, or on the cluster at ``address``.

    A chunk whose actor dies is given to a fresh actor; after ``MAX_WORKER_DEATHS`` deaths its
    tasks are returned as failed, so one task that kills its process cannot stall the run. An
    actor lost with its node is not the chunk's fault: the chunk goes back to the queue as it
    was, the pool shrinks to the nodes left, and the run fails (resumably) only if none is left.
    """

    def __init__(self, job: Job, workers: int | None = None, address: str | None = None, chunk_size: int = 1):
        # Ray takes seconds to import; the local executor and every other command never need it.
        import ray

        self._ray = ray
        self._started = start_ray(workers, address)
        slots, claim = device_slots(ray.cluster_resources())
        self.workers = max(1, min(workers or slots, slots))
        self.chunk_size = chunk_size
        self.restarts = 0
        self.nodes_lost = 0
        self._job = ray.put(job)
        self._remote = ray.remote(max_restarts=0, **claim)(Worker)
        self.actors = [self._new_actor() for _ in range(self.workers)]
        self._nodes = [actor.node.remote() for actor in self.actors]

    def _new_actor(self):
        return self._remote.options(runtime_env={"env_vars": worker_environment()}).remote(self._job)

    def _replace(self, slot: int) -> None:
        self.actors[slot] = self._new_actor()
        self._nodes[slot] = self.actors[slot].node.remote()

    def _lost_with_its_node(self, slot: int, err: Exception) -> bool:
        """Whether the dead actor's node is gone: Ray says so, or the node drops out of the
        cluster within NODE_DEATH_WAIT_S (an actor's death can reach us before its node's)."""
        if NODE_DIED in str(err):
            return True
        ray = self._ray
        ready, _ = ray.wait([self._nodes[slot]], timeout=0)
        try:
            node = ray.get(ready[0]) if ready else None
        except ray.exceptions.RayError:
            node = None
        if node is None:
            return False
        deadline = time.monotonic() + NODE_DEATH_WAIT_S
        while any(n["NodeID"] == node and n["Alive"] for n in ray.nodes()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    def pids(self) -> list[int]:
        return self._ray.get([actor.pid.remote() for actor in self.actors if actor is not None])

    def map(self, tasks: Sequence) -> Iterator[Outcome]:
        """Outcomes in completion order; every task yields exactly one."""
        from ray.exceptions import RayActorError  # Ray is loaded by now (see __init__)

        ray = self._ray
        queue = collections.deque((list(tasks[i : i + self.chunk_size]), 0) for i in range(0, len(tasks), self.chunk_size))
        idle = [slot for slot, actor in enumerate(self.actors) if actor is not None]
        running: dict = {}
        while queue or running:
            while queue and idle:
                slot = idle.pop()
                chunk, deaths = queue.popleft()
                running[self.actors[slot].run.remote(chunk)] = (slot, chunk, deaths)
            ready, _ = ray.wait(list(running), num_returns=1)
            slot, chunk, deaths = running.pop(ready[0])
            try:
                outcomes = ray.get(ready[0])
            except RayActorError as err:
                if err.actor_init_failed:
                    # A worker that cannot even build its resources says nothing about the tasks.
                    raise ExecutorError(f"a Ray worker failed to start: {failure(err)}") from None
                if self._lost_with_its_node(slot, err):
                    self.nodes_lost += 1
                    self.actors[slot] = None
                    queue.appendleft((chunk, deaths))
                    if not any(self.actors):
                        raise ExecutorError("every Ray worker's node is gone; resume when the cluster is back") from None
                    continue
                self.restarts += 1
                self._replace(slot)
                idle.append(slot)
                if deaths + 1 < MAX_WORKER_DEATHS:
                    queue.appendleft((chunk, deaths + 1))
                    continue
                message = f"worker died {deaths + 1} times while evaluating this chunk: {failure(err)}"
                outcomes = [Outcome(task, None, message, "ray", 0.0) for task in chunk]
            else:
                idle.append(slot)
            yield from outcomes

    def close(self) -> None:
        for actor in self.actors:
            if actor is not None:
                self._ray.kill(actor)
        self.actors = []
        if self._started:
            self._ray.shutdown()


ADDRESS_HELP = (
    "HOST:PORT of a running Ray cluster to join ('auto': the one 'ray start' runs on this machine); "
    "without it metacurio starts a private Ray of its own, even when a cluster runs here"
)
"""What ``--address`` does, for every command that takes it."""
RAY_CONNECT_TIMEOUT_S = 5.0
"""How long ``--address`` may take to accept a TCP connection before the run is refused."""


def start_ray(workers: int | None = None, address: str | None = None) -> bool:
    """Join the cluster at ``address``, or start a private local Ray; False if Ray was already
    running in this process (then the caller must not shut it down).

    Without ``address`` a new local Ray is started even when a cluster (``ray start --head``)
    runs on this machine, so that the run's CPU count is its own; its dashboard is off, and a
    reaper process (``search.reaper``) ends its processes if this one dies without shutting
    it down. ``address`` must accept connections within ``RAY_CONNECT_TIMEOUT_S`` (Ray itself
    would retry for minutes).
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray  # not at the top: see RayExecutor.__init__

    if ray.is_initialized():
        return False
    if address:
        check_reachable(address)
    # ray.init makes SIGTERM exit with a crash dump; keep the caller's handling of it.
    previous_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with warnings.catch_warnings():
            # Ray's fork is subprocess's fork-and-exec: no Python (so no JAX thread state) runs in the child.
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            if address:
                ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            else:
                ray.init(
                    address="local",
                    num_cpus=workers or os.cpu_count(),
                    include_dashboard=False,
                    logging_level="WARNING",
                    log_to_driver=False,
                )
                reaper.watch(os.getpid())
    except ConnectionError as err:
        raise ExecutorError(f"cannot join the Ray cluster at {address}: {failure(err)}") from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous_sigterm)
    return True


def check_address(kind: str, address: str | None) -> None:
    """Before any work: ``--address`` only with the Ray executor, and something listening there."""
    if address:
        check_executor_address(kind, address)
        check_reachable(address)


def check_executor_address(kind: str, address: str | None) -> None:
    if address and kind != "ray":
        raise ExecutorError("--address needs the ray executor")


def check_reachable(address: str) -> None:
    """One-line ``ExecutorError`` unless something accepts TCP connections at ``host:port``."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ExecutorError(f"--address must be HOST:PORT of a Ray cluster's head (or 'auto'), got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ExecutorError(f"no Ray cluster at {address}: {reason} (start one with 'ray start --head')") from None


def make_executor(kind: str, job: Job, workers: int | None = None, address: str | None = None):
    """The executor ``--executor`` names, running ``job`` on every worker."""
    check_executor_address(kind, address)
    if kind == "local":
        return LocalExecutor(job)
    if kind == "ray":
        return RayExecutor(job, workers=workers, address=address)
    raise ValueError(f"unknown executor {kind!r}; known: ray, local")

