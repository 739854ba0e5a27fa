"""One process per run directory: an exclusive lock held for the whole life of a run's writer.

``RUN_DIR/run.lock`` is locked with ``flock`` before anything else in the directory is read or
written, and holds the owner's PID so that a second process can say who has the run. The kernel
drops the lock when the owner exits for any reason (``kill -9`` included), so a stale lock never
needs removing by hand; the file itself stays and is harmless.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

FILE = "run.lock"


class RunInUseError(ValueError):
    """Another live process holds the run directory (one line)."""


class RunLock:
    """The exclusive lock of one run directory; a context manager that releases it on exit."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock without waiting, or raise ``RunInUseError`` naming the holder's PID."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_pid(fd)
            os.close(fd)
            who = f"PID {holder}" if holder else "another process"
            raise RunInUseError(f"run {self.run_dir} is in use by {who}; wait for it to finish or stop it first") from None
        except OSError as err:
            os.close(fd)
            raise RunInUseError(f"cannot lock run {self.run_dir}: {err.strerror or err}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder_pid(fd: int, wait_s: float = 1.0) -> int | None:
    """The holder's PID; it writes it just after locking, so a racing reader may wait a moment."""
    deadline = time.monotonic() + wait_s
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit() or time.monotonic() > deadline:
            return int(text) if text.isdigit() else None
        time.sleep(0.02)
