"""Shared pieces of every command line module: user errors as one line, JSON output, common option types."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from hsnet.errors import HSNetError

__all__ = ["INPUT_SIZE", "NUM_CLASSES", "emit_json", "user_errors"]

F = TypeVar("F", bound=Callable[..., Any])

INPUT_SIZE = click.IntRange(min=8, max=4096)
NUM_CLASSES = click.IntRange(min=1)


def user_errors(fn: F) -> F:
    """Turn :class:`HSNetError` into one ``Error: ...`` line on stderr and exit status 1, without a traceback.

    Ctrl-C becomes ``Aborted!`` and exit status 130 (the writers underneath leave no partial file).
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HSNetError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("Aborted!", err=True)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2))
