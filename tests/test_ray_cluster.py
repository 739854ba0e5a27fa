"""A search on a real two-node Ray cluster survives losing a node (slow: starts Ray three times).

The cluster is two raylets on this machine, one CPU each, started as a user would with
``ray start``; the search joins it with ``--address``. Mid-search the second node's raylet is
killed: its actors die with it, their chunks go back to the queue, and the search finishes on
the first node with every program decided once and the ranking an undisturbed run gives.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest
from helpers import PROGRAMS, ROOT

from metacurio.core import program_io
from search.config import TINY, with_fields
from search.driver import run_search
from search.store import RunStore

pytestmark = pytest.mark.slow

ENV = dict(os.environ, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled")
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
NAMES = ("fast", "rnd", "icm", "ccim", "disagreement", "knn_novelty", "inverse_model", "none")
FIELDS = {
    "dedup": False,
    "seeds": [4, 104],
    "lifetime_steps": 480,
    "num_envs": 2,
    "checkpoint_every": 48,
    "early_stopping": False,
    "batch_size": 2,
    "limit": None,
    "recheck_sample": 0,
    "fresh_top_k": 1,
    "fresh_seeds": [5, 105],
    "controls": ["none"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str) -> None:
    done = subprocess.run([RAY, *args], env=ENV, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def two_nodes():
    """(address, node manager port of the second node) of a fresh two-node cluster."""
    port, second = _free_port(), _free_port()
    common = ("--num-cpus", "1", "--disable-usage-stats")
    _ray("start", "--head", "--port", str(port), "--include-dashboard", "false", *common)
    try:
        _ray("start", "--address", f"127.0.0.1:{port}", "--node-manager-port", str(second), *common)
        yield f"127.0.0.1:{port}", second
    finally:
        subprocess.run([RAY, "stop", "--force"], env=ENV, capture_output=True, timeout=120, check=False)


def _raylet(node_manager_port: int) -> psutil.Process:
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "raylet" in (process.info["name"] or "") and f"--node_manager_port={node_manager_port}" in cmdline:
            return process
    raise AssertionError(f"no raylet with node manager port {node_manager_port}")


def _worker_pids(store_path) -> set[int]:
    try:
        db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=5)
        rows = db.execute("SELECT DISTINCT worker FROM evaluations").fetchall()
        db.close()
    except sqlite3.Error:
        return set()
    return {int(worker.rsplit(":", 1)[1]) for (worker,) in rows if worker.startswith("ray:")}


def _ranking(run_dir) -> list[tuple[str, float]]:
    with RunStore.open(run_dir) as store:
        return [(r.program_id, r.mean) for r in store.ranking()]


def test_losing_a_node_mid_search_loses_nothing_and_repeats_nothing(two_nodes, tmp_path):
    address, second_port = two_nodes
    config = tmp_path / "config.json"
    config.write_text(json.dumps(FIELDS))
    programs = [str(PROGRAMS / f"{name}.json") for name in NAMES]
    run = tmp_path / "cluster"
    command = [sys.executable, "-m", "metacurio", "search", "--config", str(config), "--programs", *programs,
               "--address", address, "--quiet", "--out", str(run)]  # fmt: skip
    search = subprocess.Popen(command, cwd=ROOT, env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        raylet = _raylet(second_port)
        # The second node's actors are the raylet's children; wait until one of them has stored work.
        deadline = time.monotonic() + 600
        while True:
            assert search.poll() is None, search.stderr.read()
            second = {child.pid for child in raylet.children(recursive=True)}
            if second & _worker_pids(run / "store.sqlite"):
                break
            assert time.monotonic() < deadline, "the second node never stored an evaluation"
            time.sleep(0.5)
        raylet.send_signal(signal.SIGKILL)
        _, stderr = search.communicate(timeout=900)
    finally:
        if search.poll() is None:
            search.kill()
    assert search.returncode == 0, stderr
    workers = _worker_pids(run / "store.sqlite")
    assert workers & second and workers - second, "the search ran on both nodes"
    with RunStore.open(run) as store:
        decided = store.decided("search")
        assert len(decided) == len(NAMES) and set(decided.values()) == {"completed"}
        keys = [(e.program_id, e.stage, e.seed) for e in store.evaluations()]
        assert len(keys) == len(set(keys))
    undisturbed = tmp_path / "undisturbed"
    run_search(with_fields(TINY, FIELDS), undisturbed, executor="local", progress=False, programs=[program_io.load(p) for p in programs])
    mine, reference = _ranking(run), _ranking(undisturbed)
    assert [pid for pid, _ in mine] == [pid for pid, _ in reference]
    assert [score for _, score in mine] == pytest.approx([score for _, score in reference], abs=1e-6)
