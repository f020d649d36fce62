"""Quiet access to coremltools: its import and conversion chatter goes to a log, not to the user's terminal.

coremltools 9.0 prints, on every import on Linux, that torch 2.13 is untested and that ``libcoremlpython`` (the
macOS-only prediction library) cannot be loaded, and draws tqdm bars for every conversion pass. None of it is
actionable for a user of ``hsnet deploy``, so it is captured: each line is forwarded to the ``deploy.coreml``
logger at DEBUG level and kept in a list the caller can write to a log file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType

from deploy.deps import require

__all__ = ["LOGGER", "captured", "import_coremltools"]

LOGGER = logging.getLogger("deploy.coreml")
# coremltools' own logger, and torch's pytree logger, which warns about an Enum that coremltools registers.
_CHATTY_LOGGERS = ("coremltools", "torch.utils._pytree")


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.name} {record.levelname}: {record.getMessage()}")


@contextlib.contextmanager
def captured(sink: list[str] | None = None) -> Iterator[list[str]]:
    """Capture coremltools' log records, Python warnings and stray stdout/stderr text (tqdm bars) into a list.

    The lines are also logged to :data:`LOGGER` at DEBUG level when the block ends, even if it raises.

    Args:
        sink: list to append the captured lines to (a new one if ``None``); it is yielded.
    """
    lines: list[str] = [] if sink is None else sink
    start = len(lines)
    stream = io.StringIO()
    handler = _ListHandler(lines)
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    propagate = [lg.propagate for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(stream),
            contextlib.redirect_stderr(stream),
        ):
            warnings.simplefilter("always")
            try:
                yield lines
            finally:
                lines.extend(f"warning {w.category.__name__}: {w.message}" for w in caught)
    finally:
        for lg, p in zip(loggers, propagate, strict=True):
            lg.removeHandler(handler)
            lg.propagate = p
        # A tqdm bar rewrites its line with carriage returns: keep the final state of each line.
        lines.extend(s.rsplit("\r", 1)[-1].strip() for s in stream.getvalue().splitlines())
        lines[start:] = [s for s in lines[start:] if s]
        for line in lines[start:]:
            LOGGER.debug("%s", line)


def import_coremltools(sink: list[str] | None = None) -> ModuleType:
    """Import coremltools with its import-time chatter captured (see :func:`captured`).

    If TensorFlow is installed but not yet imported, it is hidden while coremltools is imported: coremltools
    probes for it at import time (about 3 s and a screen of TensorFlow log lines on this machine) although hsnet
    only converts from PyTorch. It is importable again right afterwards.

    Raises:
        MissingDependencyError: coremltools is not installed (names the ``coreml`` extra).
    """
    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    hide_tf = "tensorflow" not in sys.modules
    if hide_tf:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]  # makes `import tensorflow` fail fast
    try:
        with captured(sink):
            return require("coremltools", "coreml", "the CoreML target")
    finally:
        if hide_tf and sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]
