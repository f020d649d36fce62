"""Progress for long work: a live bar in a terminal, plain log lines when output is piped or logged."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["is_terminal", "progress", "log"]

T = TypeVar("T")


def is_terminal() -> bool:
    """True when stderr is an interactive terminal."""
    return sys.stderr.isatty()


def log(message: str) -> None:
    """One plain progress line on stderr (stdout stays clean for results and JSON)."""
    print(message, file=sys.stderr, flush=True)


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "", every: float = 10.0) -> Iterator[T]:
    """Iterate ``items`` showing progress on stderr.

    In a terminal this is a rich progress bar; otherwise a plain line ``desc: i/total (elapsed)`` at most every
    ``every`` seconds and at the end, so logs stay readable.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if is_terminal():
        from rich.progress import Progress

        with Progress(transient=True, console=_console()) as bar:
            task = bar.add_task(desc, total=total)
            for item in items:
                yield item
                bar.advance(task)
        return
    start = last = time.monotonic()
    i = 0
    for i, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if now - last >= every:
            last = now
            log(f"{desc}: {i}/{total if total is not None else '?'} ({now - start:.0f} s)")
    log(f"{desc}: {i}/{total if total is not None else i} done ({time.monotonic() - start:.1f} s)")


def _console():  # noqa: ANN202 - rich is imported lazily
    from rich.console import Console

    return Console(stderr=True)
