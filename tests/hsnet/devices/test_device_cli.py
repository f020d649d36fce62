"""``hsnet device check|exec`` against a real sshd on loopback: 127.0.0.1 only, its own host key, config and
authorized keys in a temporary folder, key authentication only, stopped by its PID.

The sshd is the ``sshd`` fixture of tests/benchmarks/conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hsnet.cli import main
from hsnet.devices.remote import Remote, decode_cpuinfo


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_check_reads_the_device(sshd: dict) -> None:
    result = _cli("device", "check", "ssh://root@device", "--ssh-config", sshd["dir"] / "good.cfg", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["device"] == "ssh://root@device" and info["arch"] == os.uname().machine
    assert info["missing"] == [] and info["versions"]["numpy"] and info["versions"]["onnxruntime"]
    assert len(info["core_names"]) == os.cpu_count() and info["python"] == ".".join(map(str, sys.version_info[:3]))
    table = _cli("device", "check", "ssh://root@device", "--ssh-config", sshd["dir"] / "good.cfg")
    assert table.exit_code == 0 and "onnxruntime" in table.stdout and "nothing was installed" in table.stdout


def test_check_names_what_is_missing_and_how_to_install_it(sshd: dict) -> None:
    from hsnet.toolbox.machine import package_version

    result = _cli("device", "check", "ssh://root@device", "--ssh-config", sshd["dir"] / "bare.cfg")
    assert result.exit_code == 1, result.output
    assert f"missing: python3 -m pip install numpy=={package_version('numpy')}" in result.stdout
    assert "lacks numpy, onnxruntime, LiteRT; install there with:" in result.stderr


@pytest.mark.parametrize(
    ("cfg", "remote", "code", "message"),
    [
        ("nopython", "ssh://root@device", 3, "ssh://root@device: no python3 on the device"),
        ("stranger", "ssh://root@device", 3, "the device refused the key"),
        ("stranger_host", "ssh://root@device", 3, "unknown or changed host key"),
        ("good", "ssh://root@127.0.0.1:1", 3, "unreachable"),
        ("good", "ftp://device", 2, "give ssh://[user@]host[:port]"),
        ("good", "ssh://root@device:99999", 2, "port 99999 is not in 1..65535"),
    ],
)
def test_check_failures_are_one_line(sshd: dict, cfg: str, remote: str, code: int, message: str) -> None:
    result = _cli("device", "check", remote, "--ssh-config", sshd["dir"] / f"{cfg}.cfg")
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output


def test_exec_passes_stdio_and_status_through_and_quotes_every_word(sshd: dict, tmp_path: Path) -> None:
    base = ["hsnet", "device", "exec", "ssh://root@device", "--ssh-config", str(sshd["dir"] / "good.cfg"), "--"]
    done = subprocess.run([*base, "sh", "-c", "cat; echo to-stderr >&2; exit 7"], input=b"hello\n",
                          capture_output=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (7, b"hello\n", b"to-stderr\n")
    canary = tmp_path / "pwned"
    words = ["a b", "$(touch " + str(canary) + ")", "; touch " + str(canary), "'quoted'"]
    done = subprocess.run([*base, "printf", "%s\\n", *words], capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout.decode().splitlines() == words
    assert not canary.exists()  # no word reached a shell as code, on either side


def test_remote_argv_and_core_names() -> None:
    r = Remote.parse("ssh://pi@board.local:2222", ssh_options=["IdentityFile=~/k"])
    argv = r.ssh_argv(["python3", "-c", "print('x y')"])
    assert argv[:1] == ["ssh"] and "BatchMode=yes" in argv and argv[7:9] == ["-o", "IdentityFile=~/k"]
    assert argv[-3:] == ["--", "pi@board.local", "python3 -c 'print('\"'\"'x y'\"'\"')'"]
    cpuinfo = (
        "processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd03\nCPU revision\t: 4\n\n"
        "processor\t: 1\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n"
    )
    cores = decode_cpuinfo(cpuinfo)
    assert [c["name"] for c in cores] == ["Cortex-A53", "Cortex-A76"] and "asimddp" in cores[1]["features"]
    with pytest.raises(Exception, match="KEY=VALUE"):
        Remote.parse("ssh://x", ssh_options=["-oProxyCommand"])
