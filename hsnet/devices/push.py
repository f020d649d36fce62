"""Put files on a device once: content-addressed, by a tar stream over the device's channel (scp and sftp do not
pass an SSH forced command; this does).

A file lands at ``~/.cache/hsnet-device/files/<sha256[:24]>/<name>`` on the device. One call lists what is already
there; only the rest travels, in one tar stream that the device's own ``python3`` unpacks (regular files with
the expected names only) into a private folder and then moves into place, so a dropped connection or a full disk
leaves nothing half-written under ``files/``. A second run pushes nothing.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

from hsnet.devices.remote import Device, run
from hsnet.errors import ToolFailure
from hsnet.toolbox.digests import file_sha256
from hsnet.toolbox.progress import log as _log

__all__ = ["push", "remote_base"]

_DIGEST_CHARS = 24

#: Run on the device: which of the given paths exist with the given size.
_HAVE = r"""
import json, os, sys
want = json.loads(sys.argv[1])
print(json.dumps([p for p, size in want if os.path.isfile(p) and os.path.getsize(p) == size]))
"""

#: Run on the device: unpack the tar stream on stdin into BASE/files (DIGEST/NAME regular files only).
_UNPACK = r"""
import os, re, shutil, sys, tarfile
base = sys.argv[1]
files = os.path.join(base, 'files')
os.makedirs(files, exist_ok=True)
incoming = os.path.join(base, 'incoming-%d' % os.getpid())
ok = re.compile(r'[0-9a-f]{%d}/[A-Za-z0-9._+-]{1,200}' % int(sys.argv[2]))
try:
    with tarfile.open(fileobj=sys.stdin.buffer, mode='r|') as tf:
        for m in tf:
            if not m.isfile() or not ok.fullmatch(m.name):
                raise SystemExit('push: refused tar member %r' % m.name)
            digest, name = m.name.split('/')
            os.makedirs(os.path.join(incoming, digest), exist_ok=True)
            src = tf.extractfile(m)
            with open(os.path.join(incoming, digest, name), 'wb') as out:
                shutil.copyfileobj(src, out, 1 << 20)
    for digest in os.listdir(incoming):
        for name in os.listdir(os.path.join(incoming, digest)):
            os.makedirs(os.path.join(files, digest), exist_ok=True)
            os.replace(os.path.join(incoming, digest, name), os.path.join(files, digest, name))
finally:
    shutil.rmtree(incoming, ignore_errors=True)
"""


def remote_base(home: str) -> str:
    """The device's cache folder for hsnet's files, under its home as the probe read it."""
    return f"{home.rstrip('/')}/.cache/hsnet-device"


def push(
    device: Device, files: Sequence[Path], home: str, *, timeout_s: float = 600, log: Callable[[str], None] = _log
) -> dict[Path, str]:
    """Copy ``files`` to the device unless they are there already; return each file's path on the device.

    Raises:
        ToolFailure: the device cannot be reached or the copy failed there (full disk...), in one line naming it.
    """
    base = remote_base(home)
    digests = {p: file_sha256(p)[:_DIGEST_CHARS] for p in dict.fromkeys(files)}
    names = {p: re.sub(r"[^A-Za-z0-9._+-]", "_", p.name)[-200:] for p in digests}
    where = {p: f"{base}/files/{d}/{names[p]}" for p, d in digests.items()}
    want = [[where[p], p.stat().st_size] for p in digests]
    out = run(device, ["python3", "-c", _HAVE, json.dumps(want)], timeout_s=timeout_s)
    try:
        have = set(json.loads(out.strip().splitlines()[-1]))
    except (IndexError, json.JSONDecodeError):
        raise ToolFailure(f"{device.name}: the file listing printed no JSON (got {out[:120]!r})") from None
    missing = [p for p in digests if where[p] not in have]
    if not missing:
        log(f"{device.name}: {len(digests)} file(s) already there, nothing pushed")
        return where
    size = sum(p.stat().st_size for p in missing)
    log(f"{device.name}: pushing {len(missing)} file(s), {size / 2**20:.1f} MiB ({len(digests) - len(missing)} there)")
    proc = subprocess.Popen(
        device.argv(["python3", "-c", _UNPACK, base, str(_DIGEST_CHARS)]),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    try:
        with tarfile.open(fileobj=proc.stdin, mode="w|") as tf:
            for p in missing:
                tf.add(p, arcname=f"{digests[p]}/{names[p]}", recursive=False)
    except (BrokenPipeError, OSError):
        pass  # the device stopped reading: its exit status and stderr say why
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        proc.stdin = None  # closed: communicate() must not flush it
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise ToolFailure(f"{device.name}: the push did not finish within {timeout_s:g} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise ToolFailure(f"{device.name}: the push failed ({lines[-1].strip()[:300] if lines else proc.returncode})")
    return where
