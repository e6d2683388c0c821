"""The project's error types: an error caused by input says what is wrong and what to do, in one line."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input (a file, a flag, a setting) whose message says what is wrong and what to do.

    The command line prints it as one line, without a traceback. Every package's own errors derive from it.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries append advice and tracebacks below it)."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
