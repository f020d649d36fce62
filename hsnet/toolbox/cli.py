"""Shared pieces of every command line module: the exit-code contract (one decorator), JSON output, common option
types."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from hsnet.errors import EXIT_INTERRUPTED, EXIT_TOOL_FAILURE, EXIT_USAGE, HSNetError

__all__ = ["INPUT_SIZE", "NUM_CLASSES", "emit_json", "user_errors"]

F = TypeVar("F", bound=Callable[..., Any])

INPUT_SIZE = click.IntRange(min=8, max=4096)
#: Classifier widths a model of this zoo can hold on any machine (1280 x 100 000 weights is 0.5 GB).
NUM_CLASSES = click.IntRange(min=1, max=100_000)

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def user_errors(fn: F) -> F:
    """Apply the exit-code contract of :mod:`hsnet.errors` to a command.

    An :class:`HSNetError` becomes one ``Error: ...`` line on stderr and its ``exit_code`` (2 for bad input, 1 for
    a failed check, 3 when the tool could not work); a full disk becomes one line naming the file and exit 3;
    Ctrl-C becomes ``Aborted!`` and 130 (the writers underneath leave no partial file). No traceback.
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HSNetError as e:
            click.echo(f"Error: {e}", err=True)
            raise SystemExit(e.exit_code) from None
        except OSError as e:
            if e.errno in _DISK_FULL:
                where = f" writing {e.filename}" if e.filename else ""
                click.echo(f"Error: no space left on the device{where}", err=True)
                raise SystemExit(EXIT_TOOL_FAILURE) from None
            if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM) and e.filename:
                click.echo(f"Error: {e.filename}: {e.strerror}", err=True)
                raise SystemExit(EXIT_USAGE) from None
            raise
        except KeyboardInterrupt:
            click.echo("Aborted!", err=True)
            raise SystemExit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2))
