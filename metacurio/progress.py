"""The one progress display: items done / total, rate, time left and a caller's status text, on stderr."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class ProgressDisplay:
    """A bar per stage of a long command; disabled (``--quiet``), it prints nothing."""

    def __init__(self, enabled: bool, unit: str):
        self._unit = unit
        self._task = None
        self._started = time.perf_counter()
        self._done_here = 0
        self._progress = None
        if enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
            )
            self._progress.start()

    def stage(self, name: str, total: int, done: int, status: str = "") -> None:
        """A new bar: ``done`` of ``total`` already finished (a resumed run), rates counted from now."""
        self._started, self._done_here = time.perf_counter(), 0
        if self._progress is not None:
            self._task = self._progress.add_task(name, total=total, completed=done, info=self._info(status))

    def advance(self, status: str = "") -> None:
        self._done_here += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, info=self._info(status))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _info(self, status: str) -> str:
        rate = self._done_here / max(time.perf_counter() - self._started, 1e-9)
        return f"{rate:.2f} {self._unit}/s" + (f" · {status}" if status else "")
