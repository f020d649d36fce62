"""Typed errors and the exit-code contract of every ``hsnet`` command.

Every user-facing failure is an :class:`HSNetError` whose message says what was wrong and what is valid; the CLI
prints it as one ``Error: ...`` line and exits with the error's :attr:`~HSNetError.exit_code`:

====  =========================================================================================================
0     success
1     a check ran and failed: a latency regression, a parity or accuracy bound (:class:`CheckFailed`)
2     the user's input is unusable: unknown name (with close matches), bad value, unreadable or wrong-kind
      file, unwritable output (:class:`HSNetError` itself, and every error not listed otherwise)
3     the tool could not do its work for another reason: nothing could be measured, a device is unreachable,
      the disk filled up (:class:`ToolFailure`)
4     inconclusive: the data cannot decide (a gate against a baseline from another CPU model, or too noisy)
130   interrupted (Ctrl-C); nothing partial is left behind
====  =========================================================================================================
"""

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_INCONCLUSIVE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TOOL_FAILURE",
    "EXIT_USAGE",
    "CheckFailed",
    "HSNetError",
    "ToolFailure",
]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_TOOL_FAILURE = 3
EXIT_INCONCLUSIVE = 4
EXIT_INTERRUPTED = 130


class HSNetError(Exception):
    """An error caused by user input; the CLI prints it as one line and exits 2."""

    exit_code = EXIT_USAGE


class CheckFailed(HSNetError):
    """A check ran and its answer is "no" (regression, parity, accuracy bound); exit 1."""

    exit_code = EXIT_CHECK_FAILED


class ToolFailure(HSNetError):
    """The tool could not do its work for a reason other than the input (nothing measured, disk full); exit 3."""

    exit_code = EXIT_TOOL_FAILURE
