"""The emulated aarch64 device (``qemu:CORE``, built by benchmarks/emulated/build.sh from .ci/install): real
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

from benchmarks.emulated.device import Emulated, device_home
from benchmarks.push import push, remote_base
from benchmarks.remote import parse_device, probe, run
from hsnet.cli import main
from hsnet.errors import ToolFailure


def _built() -> bool:
    return (device_home() / "stamp").is_file()


@pytest.fixture(scope="module", autouse=True)
def _device_built() -> None:
    if not _built():
        if os.environ.get("HSNET_REQUIRE_EMULATED") == "1":
            pytest.fail(f"the emulated device is not built in {device_home()} (bash benchmarks/emulated/build.sh)")
        pytest.skip("the emulated aarch64 device is not built (bash benchmarks/emulated/build.sh)")


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


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["device", "check", "qemu:cortex-x1"], 2, "give qemu:cortex-a53|cortex-a72|cortex-a76"),
        (["device", "check", "qemu:cortex-a76", "--ssh-option", "Port=22"], 2, "are for ssh:// devices"),
        (["bench", "--remote", "qemu:cortex-a76", "--metric", "time"], 2, "emulated time is not a latency"),
        (["bench", "--remote", "qemu:cortex-a76", "--ops"], 2, "--ops profiles on this host only"),
        (["bench", "--cores", "big"], 2, "--cores need --remote DEVICE"),
        (["bench", "--remote", "telnet://board"], 2, "give ssh://[user@]host[:port] or qemu:"),
    ],
)
def test_bad_device_requests_are_one_line_usage_errors(args: list[str], code: int, message: str) -> None:
    result = _cli(*args)
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output


def test_a_device_that_is_not_built_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HSNET_ARM_HOME", str(tmp_path / "none"))
    result = _cli("device", "check", "qemu:cortex-a76")
    assert result.exit_code == 3, result.output
    assert "is not built" in result.stderr and "bash benchmarks/emulated/build.sh" in result.stderr


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
    from benchmarks import push as push_module

    with pytest.raises(ToolFailure, match="refused tar member"):
        run(device, ["python3", "-c", push_module._UNPACK, remote_base(home), "24"], stdin=evil.read_bytes())
    assert not list(Path(remote_base(home)).glob("incoming-*"))
    assert not (Path(remote_base(home)).parent / "escaped.bin").exists()


def test_bench_counts_guest_instructions_exactly_with_kernel_classes(artifacts: dict, tmp_path: Path) -> None:
    out = tmp_path / "arm.json"
    result = _cli("bench", "--remote", "qemu:cortex-a76", "--artifact", artifacts["small"], "--artifact",
                  artifacts["slow"], "--json", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    small, slow = data["rows"]
    for row in (small, slow):
        assert row["status"] == "ok" and row["device"] == "qemu:cortex-a76" and row["latency"] is None
        assert row["device_info"]["emulated"] == "qemu-aarch64 -cpu cortex-a76"
        assert row["device_info"]["cores"] == ["Cortex-A76", "Cortex-A76"] and row["device_info"]["arch"] == "aarch64"
        assert row["kernels"]["fmla"] > 0 and row["kernels"]["sve"] == 0 == row["kernels"]["sme"]  # NEON, no SVE
        assert row["flags"] == []  # the two processes agreed within 0.1 %
    # 4 extra 16->16 3x3 convolutions at 32x32: 4 x 2.36 M MACs more; NEON fmla does 4 of them per instruction.
    extra_macs = 4 * 16 * 16 * 9 * 32 * 32
    assert slow["instructions"] > small["instructions"] * 1.5
    assert slow["kernels"]["fmla"] - small["kernels"]["fmla"] >= extra_macs / 4 * 0.9
    assert "emulated Cortex-A76" in result.stdout and "M instr" in result.stdout and "median ms" not in result.stdout
    # A second, separate run of the same rows agrees within 0.1 % (the bar), and pushes nothing.
    b = tmp_path / "b.json"
    again = _cli("bench", "--remote", "qemu:cortex-a76", "--artifact", artifacts["small"], "--json", b)
    assert again.exit_code == 0, again.output
    second = json.loads(b.read_text())["rows"][0]
    assert abs(second["instructions"] - small["instructions"]) <= 1e-3 * small["instructions"]
    assert "nothing pushed" in again.stderr


def test_a_worker_killed_on_the_device_becomes_a_failure_naming_it(artifacts: dict) -> None:
    from benchmarks.on_device import DeviceLauncher
    from benchmarks.timing_handle import RUNNER_PATH, WorkerFailed, WorkerProcess

    device = Emulated.parse("qemu:cortex-a76")
    home = probe(device)["home"]
    where = push(device, [RUNNER_PATH, artifacts["small"]], home, log=lambda _: None)
    launch = DeviceLauncher(device, where[RUNNER_PATH], {str(artifacts["small"]): where[artifacts["small"]]})
    w = WorkerProcess({"runtime": "onnxruntime", "artifact": str(artifacts["small"]), "threads": 1}, launch=launch)
    try:
        ready = w.start(180)
        os.kill(ready["pid"], signal.SIGKILL)  # qemu-user: the guest's pid is the emulator's
        with pytest.raises(WorkerFailed, match="killed by SIGKILL"):
            w.request({"cmd": "run", "n": 3}, 60)
    finally:
        w.close()


def test_the_emulated_device_behind_sshd_is_measured_through_ssh(sshd: dict, artifacts: dict, tmp_path: Path) -> None:
    cfg = sshd["dir"] / "arm.cfg"
    check = _cli("device", "check", "ssh://root@device", "--ssh-config", cfg, "--json")
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)["emulated"] == "qemu-aarch64 -cpu cortex-a76"
    out = tmp_path / "ssh.json"
    result = _cli("bench", "--remote", "ssh://root@device", "--ssh-config", cfg, "--artifact", artifacts["small"],
                  "--json", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["rows"][0]
    assert row["status"] == "ok" and row["device"] == "ssh://root@device" and row["instructions"] > 1e5
    local = _cli(
        "bench", "--remote", "qemu:cortex-a76", "--artifact", artifacts["small"], "--json", tmp_path / "l.json"
    )
    assert local.exit_code == 0, local.output
    direct = json.loads((tmp_path / "l.json").read_text())["rows"][0]
    assert abs(row["instructions"] - direct["instructions"]) <= 1e-3 * direct["instructions"]  # the same device


def test_a_dropped_connection_leaves_nothing_running_on_the_device(sshd: dict, artifacts: dict) -> None:
    from benchmarks.on_device import DeviceLauncher
    from benchmarks.timing_handle import RUNNER_PATH, WorkerProcess

    device = parse_device("ssh://root@device", ssh_config=str(sshd["dir"] / "arm.cfg"))
    home = probe(device)["home"]
    where = push(device, [RUNNER_PATH, artifacts["small"]], home, log=lambda _: None)
    launch = DeviceLauncher(device, where[RUNNER_PATH], {str(artifacts["small"]): where[artifacts["small"]]})
    w = WorkerProcess({"runtime": "onnxruntime", "artifact": str(artifacts["small"]), "threads": 1}, launch=launch)
    try:
        pid = w.start(180)["pid"]
        assert Path(f"/proc/{pid}").exists()
        assert w.proc is not None
        os.killpg(w.proc.pid, signal.SIGKILL)  # the ssh client dies: the connection drops mid-run
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{pid}").exists(), "the worker outlived its connection"
    finally:
        w.close()
