"""Typed errors: every user-facing failure is an :class:`HSNetError` whose message says what is valid."""

__all__ = ["HSNetError"]


class HSNetError(Exception):
    """Base class of errors caused by user input; the CLI prints it as one line, exit 1."""
