"""Ctrl-C and SIGTERM stop a run the same way, even when Python loses the first KeyboardInterrupt.

A signal handler's exception is raised wherever the main thread happens to be. Raised inside a
finalizer (JAX and XLA run many) it is printed as "Exception ignored" and lost, and the run
would go on as if nothing had happened. The handler therefore also records the request, and
loops over units of work call ``raise_if_requested()`` between them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested = threading.Event()
"""Process-wide, like the signal dispositions it accompanies."""


def _stop(signum, frame) -> None:
    _requested.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt (and are remembered)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS}
    _requested.clear()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requested.clear()


def raise_if_requested() -> None:
    """KeyboardInterrupt if a stop was requested and its first KeyboardInterrupt was lost."""
    if _requested.is_set():
        raise KeyboardInterrupt
