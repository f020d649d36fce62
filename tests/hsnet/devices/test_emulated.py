"""The emulated aarch64 device (``qemu:CORE``, built by hsnet/devices/emulated/build.sh from .ci/install): real
qemu-aarch64, real aarch64 onnxruntime and LiteRT, the real TCG plugin; and the same device behind a real sshd
on loopback (the ``arm`` key of the ``sshd`` fixture), so that push, run and counts go through ssh end to end.

Where the device is not built the tests skip, except under ``HSNET_REQUIRE_EMULATED=1`` (set by .ci/run), where
they fail: CI must exercise it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hsnet.cli import main
from hsnet.devices.emulated.device import Emulated, device_home
from hsnet.devices.push import push, remote_base
from hsnet.devices.remote import probe, run
from hsnet.errors import ToolFailure

pytestmark = pytest.mark.usefixtures("emulated")  # tests/conftest.py: skip, or fail under HSNET_REQUIRE_EMULATED=1


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_check_reads_an_emulated_aarch64_device_with_the_hosts_versions() -> None:
    from hsnet.toolbox.machine import package_version

    result = _cli("device", "check", "qemu:cortex-a76", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["arch"] == "aarch64" and info["emulated"] == "qemu-aarch64 -cpu cortex-a76"
    assert {c["name"] for c in info["core_names"]} == {"Cortex-A76"}
    assert "asimddp" in info["core_names"][0]["features"]  # the A76's dot product, which int8 kernels use
    for dist in ("numpy", "onnxruntime", "ai-edge-litert"):
        assert info["versions"][dist] == package_version(dist)
    a53 = json.loads(_cli("device", "check", "qemu:cortex-a53", "--json").stdout)
    assert {c["name"] for c in a53["core_names"]} == {"Cortex-A53"} and "asimddp" not in a53["core_names"][0][
        "features"
    ]


def test_exec_runs_the_emulated_python_with_stdio_and_status_passed_through() -> None:
    code = "import platform, sys; print(platform.machine(), sys.stdin.read().strip()); sys.exit(7)"
    done = subprocess.run([sys.executable, "-m", "hsnet", "device", "exec", "qemu:cortex-a53", "--", "python3", "-c",
                           code], input=b"hello\n", capture_output=True, timeout=120)  # fmt: skip
    assert (done.returncode, done.stdout) == (7, b"aarch64 hello\n"), done.stderr


def test_a_device_that_is_not_built_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HSNET_ARM_HOME", str(tmp_path / "none"))
    result = _cli("device", "check", "qemu:cortex-a76")
    assert result.exit_code == 3, result.output
    assert "is not built" in result.stderr and "bash hsnet/devices/emulated/build.sh" in result.stderr


def test_push_is_content_addressed_and_refuses_foreign_tar_members(tmp_path: Path) -> None:
    device = Emulated.parse("qemu:cortex-a72")
    home = probe(device)["home"]
    f = tmp_path / f"blob {time.time_ns()}.bin"  # a name with a space: stored under a safe name
    f.write_bytes(os.urandom(1000))
    said: list[str] = []
    where = push(device, [f], home, log=said.append)
    assert "pushing 1 file(s)" in said[-1] and Path(where[f]).read_bytes() == f.read_bytes()
    assert " " not in Path(where[f]).name
    push(device, [f], home, log=said.append)
    assert "nothing pushed" in said[-1]
    # A stream that tries to write outside the cache is refused, and nothing of it is left.
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        tf.add(f, arcname="../../escaped.bin")
    from hsnet.devices import push as push_module

    with pytest.raises(ToolFailure, match="refused tar member"):
        run(device, ["python3", "-c", push_module._UNPACK, remote_base(home), "24"], stdin=evil.read_bytes())
    assert not list(Path(remote_base(home)).glob("incoming-*"))
    assert not (Path(remote_base(home)).parent / "escaped.bin").exists()


def test_a_worker_killed_on_the_device_becomes_a_failure_naming_it(artifacts: dict) -> None:
    from hsnet.devices.handle import WorkerFailed
    from hsnet.devices.session import open_worker

    device = Emulated.parse("qemu:cortex-a76")
    w, _ = open_worker(device, artifacts["small"], "onnxruntime", log=lambda _: None)
    try:
        ready = w.ready
        os.kill(ready["pid"], signal.SIGKILL)  # qemu-user: the guest's pid is the emulator's
        with pytest.raises(WorkerFailed, match="killed by SIGKILL"):
            w.request({"cmd": "run", "n": 3}, 60)
    finally:
        w.close()


def test_a_full_disk_on_the_device_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import tmpfs

    own = tmp_path / "device"  # the built device, with a home of its own (the shared one is left alone)
    own.mkdir()
    for entry in device_home().iterdir():
        if entry.name != "home":
            (own / entry.name).symlink_to(entry)
    monkeypatch.setenv("HSNET_ARM_HOME", str(own))
    device = Emulated.parse("qemu:cortex-a76")
    home = probe(device)["home"]
    assert home == str(own / "home")
    with tmpfs(Path(remote_base(home))) as base:  # the device's cache on a 300 KB disk
        big = tmp_path / "big.onnx"
        big.write_bytes(os.urandom(1 << 20))
        with pytest.raises(ToolFailure, match=r"qemu:cortex-a76: the push failed \(.*No space left on device"):
            push(device, [big], home, log=lambda _: None)
        assert not any(base.glob("incoming-*")) and not any(base.glob("files/*/big.onnx"))
