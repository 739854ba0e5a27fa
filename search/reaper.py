"""Ends the processes of a local Ray when the process that started it dies without shutting it down.

A run killed with ``kill -9`` cannot run ``ray.shutdown()``; its GCS, raylet, agents and
evaluation workers would then linger for minutes, competing for the cores of whatever runs
next. ``watch(pid)`` starts ``python -m search.reaper PID`` in a session of its own (so a
Ctrl-C in the terminal does not reach it). The reaper notes the watched process's descendants
every ``POLL_S`` seconds; once that process is gone it terminates the ones still alive, with
their own descendants, and exits. After a clean ``ray.shutdown()`` there is nothing left to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

POLL_S = 0.5
"""Seconds between looks at the watched process."""
GRACE_S = 3.0
"""Seconds between SIGTERM and SIGKILL for the processes left behind."""


def watch(pid: int) -> None:
    """Start a reaper for ``pid``'s descendants, unless this process already has one for it."""
    command = [sys.executable, "-m", "search.reaper", str(pid)]
    for child in psutil.Process().children():
        try:
            if child.cmdline() == command:
                return
        except psutil.Error:
            continue
    subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": _import_path()},
    )


def _import_path() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rest = os.environ.get("PYTHONPATH", "")
    return root + (os.pathsep + rest if rest else "")


def reap(pid: int) -> None:
    """Follow ``pid`` until it exits, then end what it left running."""
    try:
        watched = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    me = os.getpid()
    known: dict[int, psutil.Process] = {}
    while watched.is_running() and watched.status() != psutil.STATUS_ZOMBIE:
        try:
            for child in watched.children(recursive=True):
                if child.pid != me:
                    known.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            break
        time.sleep(POLL_S)
    left = _alive_with_descendants(known.values(), me)
    for process in left:
        _signal(process.terminate)
    _, still = psutil.wait_procs(left, timeout=GRACE_S)
    for process in still:
        _signal(process.kill)


def _alive_with_descendants(processes, me: int) -> list:
    found: dict[int, psutil.Process] = {}
    for process in processes:
        # is_running() also checks the start time, so a recycled PID is never touched.
        if not process.is_running():
            continue
        found[process.pid] = process
        try:
            for child in process.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass
    found.pop(me, None)
    return list(found.values())


def _signal(action) -> None:
    try:
        action()
    except psutil.NoSuchProcess:
        pass


if __name__ == "__main__":
    reap(int(sys.argv[1]))
