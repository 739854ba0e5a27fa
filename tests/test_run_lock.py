"""One process per run directory: races of two starts and two resumes, through the library and the CLI."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search import store as st
from search.config import TINY
from search.run_lock import RunInUseError, RunLock
from search.store import RunStore, StoreError

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunInUseError, match=rf"run {tmp_path / 'run'} is in use by PID {os.getpid()}"):
            RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run"):
        pass


def _create_when_released(run_dir: str, barrier, results) -> None:
    barrier.wait()
    try:
        with RunLock(run_dir):
            RunStore.create(run_dir, TINY, "race").close()
        results.put("created")
    except (RunInUseError, StoreError) as err:
        results.put(type(err).__name__)


def test_racing_creators_leave_exactly_one_whole_store(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(6):
        run_dir = str(tmp_path / f"run{attempt}")
        barrier, results = ctx.Barrier(2), ctx.Queue()
        workers = [ctx.Process(target=_create_when_released, args=(run_dir, barrier, results)) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        outcomes = sorted(results.get(timeout=5) for _ in workers)
        # The loser either finds the lock held or, if it came after, the finished store.
        assert outcomes in (["RunInUseError", "created"], ["StoreError", "created"]), outcomes
        with RunStore.open(run_dir) as store:
            assert store.config() == TINY
        assert [p.name for p in Path(run_dir).iterdir() if "partial" in p.name] == []


def _cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "metacurio", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _race(args: list[str]) -> tuple[subprocess.Popen, str]:
    """Two identical commands started together: the loser exits 2 naming the winner, which is then stopped."""
    first, second = _cli(*args), _cli(*args)
    deadline = time.monotonic() + 120
    while first.poll() is None and second.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    loser, winner = (first, second) if first.poll() is not None else (second, first)
    _, loser_err = loser.communicate(timeout=30)
    assert loser.returncode == 2, loser_err
    assert winner.poll() is None, "the winner must still be running its search"
    winner.send_signal(signal.SIGTERM)
    # The signal is handled when the winner's main thread is back in Python: an XLA compile
    # with an empty cache may take a minute or two to return.
    _, winner_err = winner.communicate(timeout=300)
    assert winner.returncode == 130, winner_err
    assert "--resume" in winner_err.strip().splitlines()[-1]
    return winner, loser_err


def test_two_cli_starts_and_two_resumes_on_one_run(tmp_path):
    run_dir = tmp_path / "run"
    start = ["search", "--preset", "tiny", "--executor", "local", "--quiet", "--out", str(run_dir)]
    winner, loser_err = _race(start)
    assert loser_err.strip() == f"metacurio: error: run {run_dir} is in use by PID {winner.pid}; wait for it to finish or stop it first"
    with RunStore.open(run_dir) as store:
        assert store.config() == TINY

    winner, loser_err = _race(["search", "--resume", "--executor", "local", "--quiet", "--out", str(run_dir)])
    assert loser_err.strip().endswith(f"is in use by PID {winner.pid}; wait for it to finish or stop it first")
    with RunStore.open(run_dir) as store:
        keys = [(e.program_id, e.stage, e.seed) for e in store.evaluations()]
        assert len(keys) == len(set(keys))
    leftovers = {p.name for p in run_dir.iterdir()} - {st.FILE, f"{st.FILE}-wal", f"{st.FILE}-shm", "run.lock"}
    assert leftovers == set()
