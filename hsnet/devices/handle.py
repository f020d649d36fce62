"""The parent's handle on a measuring child: start :mod:`hsnet.devices.worker` in its own process, talk JSON
lines to it with a deadline on every reply, and turn a crash, a hang or a missing runtime into an exception that
:mod:`benchmarks.rounds` records as a status row."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hsnet.devices import worker

__all__ = ["RUNNER_PATH", "Launcher", "WorkerFailed", "WorkerProcess", "WorkerSkipped"]

#: Turns a job into the local command that starts its worker (on a device: the ssh or emulator command line).
Launcher = Callable[[Mapping[str, Any]], list[str]]

# The timing process is started by path, so it runs without importing the benchmarks package (as it will on a device).
RUNNER_PATH = Path(worker.__file__).resolve()


class WorkerFailed(Exception):
    """The worker crashed, hung past its deadline or reported an error; ``str(e)`` is the row's reason."""


class WorkerSkipped(Exception):
    """The worker's runtime is not installed or cannot run here; ``str(e)`` is the row's reason."""


class WorkerProcess:
    """One running :mod:`hsnet.devices.worker` process.

    Args:
        job: the runner's job (see :mod:`hsnet.devices.worker`).
        env: extra environment variables for the worker (on top of this process's and the thread caps).
        prefix: command words put before the Python interpreter (e.g. a valgrind command line).
        launch: builds the whole command instead (a worker on a device); ``prefix`` is then unused.
    """

    def __init__(
        self,
        job: Mapping[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
        launch: Launcher | None = None,
    ) -> None:
        self.job = dict(job)
        self.env = dict(env or {})
        self.prefix = list(prefix)
        self.launch = launch
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker; closed in close()
        self._sel: selectors.BaseSelector | None = None
        self.ready: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self, timeout_s: float) -> dict[str, Any]:
        """Start the worker and wait for its ``ready`` reply (import, load, first call, warm-up).

        Raises:
            WorkerSkipped: the runtime is not installed (or cannot run on this OS).
            WorkerFailed: load or first call failed, the worker died, or ``timeout_s`` passed.
        """
        env = {**os.environ, **worker.thread_env(int(self.job.get("threads", 1))), **self.env}
        if self.launch is not None:
            cmd = self.launch(self.job)
        else:
            cmd = [*self.prefix, sys.executable, str(RUNNER_PATH), json.dumps(self.job)]
        self.proc = subprocess.Popen(  # argument list, never a shell string
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            start_new_session=True,  # its own process group: a timeout kills the worker and its children only
        )
        assert self.proc.stdout is not None
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        reply = self._read(timeout_s, "start")
        if reply.get("event") == "skipped":
            self.close()
            raise WorkerSkipped(reply.get("reason", "runtime unavailable"))
        if reply.get("event") != "ready":
            self.close()
            raise WorkerFailed(_error_reason(reply))
        self.ready = reply
        return reply

    def request(self, cmd: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one command and wait for its reply.

        Raises:
            WorkerFailed: the worker replied an error, died or did not answer within ``timeout_s``.
        """
        if self.proc is None or self.proc.stdin is None:
            raise WorkerFailed("worker is not running")
        try:
            self.proc.stdin.write((json.dumps(dict(cmd)) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerFailed(self._death(f"{cmd.get('cmd')}")) from None
        reply = self._read(timeout_s, str(cmd.get("cmd")))
        if reply.get("event") == "error":
            self.close()
            raise WorkerFailed(_error_reason(reply))
        return reply

    def close(self, wait_s: float = 5.0) -> None:
        """Ask the worker to quit; kill its process group if it has not exited after ``wait_s`` seconds."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.write(b'{"cmd": "quit"}\n')
                proc.stdin.flush()
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                self._kill()
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        self._stderr.close()
        self.proc = None

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ internals

    def _kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group we created, identified by the worker's pid
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def _read(self, timeout_s: float, phase: str) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None and self._sel is not None
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                raise WorkerFailed(f"timed out after {timeout_s:g} s ({phase})")
            if not self._sel.select(timeout=left):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerFailed(self._death(phase))
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            self._kill()
            raise WorkerFailed(f"worker broke the protocol ({phase}): {line[:120]!r}") from None

    def _death(self, phase: str) -> str:
        """Why the worker's output ended: its exit status or signal, and the last line it wrote on stderr."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._kill()
            code = self.proc.returncode
        if code is not None and code < 0:
            try:
                what = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"killed by signal {-code}"
        else:
            what = f"exited with status {code}"
        tail = self.stderr_tail()
        return f"worker {what} ({phase})" + (f": {tail}" if tail else "")

    def stderr_tail(self, lines: int = 1) -> str:
        """The last non-empty line(s) the worker wrote on stderr, for failure reasons."""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 4096))
            text = self._stderr.read().decode("utf-8", "replace")
            kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
            return " | ".join(kept[-lines:])[:300]
        return ""


def _error_reason(reply: dict[str, Any]) -> str:
    if reply.get("event") == "error":
        return f"{reply.get('phase', '?')}: {reply.get('message', 'unknown error')}"
    return f"unexpected reply {reply.get('event')!r}"
