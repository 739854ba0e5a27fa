"""How every failure is shown: one line, for the terminal and for stored failure rows."""

from __future__ import annotations

STORED_LIMIT = 500
"""Longest failure message kept in a store row; longer tracebacks carry nothing a user needs."""


def one_line(err: BaseException) -> str:
    """The exception's message on one line (its type's name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


def failure(err: BaseException) -> str:
    """The type and message of an exception that ended a program's evaluation, as stored."""
    return f"{type(err).__name__}: {one_line(err)}"[:STORED_LIMIT]
