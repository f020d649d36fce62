"""``hsnet bench --remote``: on the emulated aarch64 device (instructions and kernel classes, exact from run to
run), on that device behind a real sshd on loopback (push, run and counts through ssh end to end; a dropped
connection), and on a "board" over ssh that is this host behind sshd (timed in interleaved rounds on it).

The emulated tests skip where the device is not built, except under ``HSNET_REQUIRE_EMULATED=1`` (set by
.ci/run), where they fail: CI must exercise it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hsnet.cli import main
from hsnet.devices.remote import parse_device


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


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


@pytest.mark.slow
def test_bench_counts_guest_instructions_exactly_with_kernel_classes(
    emulated: None, artifacts: dict, tmp_path: Path
) -> None:
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


@pytest.mark.slow
def test_the_emulated_device_behind_sshd_is_measured_through_ssh(
    emulated: None, sshd: dict, artifacts: dict, tmp_path: Path
) -> None:
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


def test_a_dropped_connection_leaves_nothing_running_on_the_device(emulated: None, sshd: dict, artifacts: dict) -> None:
    from hsnet.devices.session import open_worker

    device = parse_device("ssh://root@device", ssh_config=str(sshd["dir"] / "arm.cfg"))
    w, _ = open_worker(device, artifacts["small"], "onnxruntime", log=lambda _: None)
    try:
        pid = w.ready["pid"]
        assert Path(f"/proc/{pid}").exists()
        assert w.proc is not None
        os.killpg(w.proc.pid, signal.SIGKILL)  # the ssh client dies: the connection drops mid-run
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{pid}").exists(), "the worker outlived its connection"
    finally:
        w.close()


def test_a_board_over_ssh_is_timed_in_interleaved_rounds_on_it(sshd: dict, artifacts: dict, tmp_path: Path) -> None:
    out = tmp_path / "board.json"
    result = _cli("bench", "--remote", "ssh://root@device", "--ssh-config", sshd["dir"] / "good.cfg", "--artifact",
                  artifacts["small"], "--rounds", 4, "--runs", 16, "--json", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    row = data["rows"][0]
    assert row["status"] == "ok" and row["device"] == "ssh://root@device" and row["latency"]["median_ms"] > 0
    assert row["latency"]["runs"] == 16 and len(row["process_medians_ms"]) == 2
    info = row["device_info"]
    assert info["emulated"] is None and info["arch"] == os.uname().machine and info["versions"]["onnxruntime"]
    assert "temps_before_c" in info and "temps_after_c" in info
    assert f"ssh://root@device {row['threads']}" in data["reference"]  # the reference workload ran on the device
    assert "median ms" in result.stdout and "device ssh://root@device:" in result.stdout
    bare = _cli("bench", "--remote", "ssh://root@device", "--ssh-config", sshd["dir"] / "bare.cfg", "--artifact",
                artifacts["small"], "--rounds", 4, "--runs", 16)  # fmt: skip
    assert bare.exit_code == 3, bare.output  # no row could be measured: the device has no runtime
    assert "ssh://root@device has no numpy (see hsnet device check ssh://root@device)" in bare.output


@pytest.mark.parametrize(
    ("spec", "want"),
    [("big", (4, 5, 6, 7)), ("little", (0, 1, 2, 3)), ("1,3", (1, 3))],
)
def test_cores_big_and_little_come_from_the_devices_frequencies(spec: str, want: tuple) -> None:
    from benchmarks.on_device import pick_cores

    freq = [{"cpu": i, "max_khz": "1800000" if i < 4 else "2400000"} for i in range(8)]
    assert pick_cores(spec, {"device": "ssh://b", "cores": 8, "freq": freq}) == want


def test_cores_by_name_and_bad_lists() -> None:
    from benchmarks.on_device import pick_cores
    from hsnet.errors import HSNetError

    names = [{"cpu": i, "name": "Cortex-A55" if i < 6 else "Cortex-A76"} for i in range(8)]
    info = {"device": "ssh://b", "cores": 8, "freq": [], "core_names": names}
    assert pick_cores("big", info) == (6, 7) and pick_cores("little", info) == tuple(range(6))
    with pytest.raises(HSNetError, match="has CPUs 0..7"):
        pick_cores("9", info)
    with pytest.raises(HSNetError, match="one kind of core"):
        pick_cores("big", {"device": "ssh://b", "cores": 2, "core_names": names[:2]})


def test_ctrl_c_during_a_remote_run_leaves_nothing_running(emulated: None, artifacts: dict) -> None:
    import subprocess
    import sys

    marker = artifacts["slow"].name
    proc = subprocess.Popen([sys.executable, "-m", "hsnet", "bench", "--remote", "qemu:cortex-a76", "--artifact",
                             str(artifacts["slow"])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip

    def workers() -> list[int]:
        found = []
        for p in Path("/proc").iterdir():
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if p.name.isdigit() and b"watch_stdin" in cmd and marker.encode() in cmd and int(p.name) != proc.pid:
                found.append(int(p.name))
        return found

    deadline = time.monotonic() + 120
    while not workers() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert workers(), "no worker started on the device"
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    end = time.monotonic() + 15
    while workers() and time.monotonic() < end:
        time.sleep(0.2)
    assert workers() == []
