"""Small real artifacts for the benchmark tests: tiny CNNs exported with torch (no deploy, so they build in a
second), a heavier twin with extra layers (a real slowdown), and a corrupt file; a real sshd on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn


def tiny_cnn(extra_layers: int = 0) -> nn.Module:
    """A 32x32 classifier; ``extra_layers`` adds 3x3 convolutions at full resolution (each about doubles the work)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()]
    for _ in range(extra_layers):
        layers += [nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()]
    layers += [nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(32, 10)]  # fmt: skip
    return nn.Sequential(*layers).eval()


def export_onnx(model: nn.Module, path: Path, size: int = 32) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"])  # fmt: skip
    return path


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``small`` (.onnx), ``slow`` (.onnx, the same net with 4 extra conv layers), ``pt2`` (torch.export of
    ``small``) and ``corrupt`` (a truncated .onnx)."""
    d = tmp_path_factory.mktemp("bench-artifacts")
    small = export_onnx(tiny_cnn(), d / "tiny_fp32.onnx")
    slow = export_onnx(tiny_cnn(extra_layers=4), d / "tinyslow_fp32.onnx")
    pt2 = d / "tiny_fp32.pt2"
    torch.export.save(torch.export.export(tiny_cnn(), (torch.zeros(1, 3, 32, 32),)), pt2)
    corrupt = d / "corrupt_fp32.onnx"
    corrupt.write_bytes(small.read_bytes()[: small.stat().st_size // 3])
    return {"small": small, "slow": slow, "pt2": pt2, "corrupt": corrupt}


SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
HAS_SSH = bool(os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    """A real sshd on 127.0.0.1 (own host key, config and authorized keys; key authentication only; stopped by its
    PID). Client keys, each with a config ``<key>.cfg`` naming the host ``device``: ``good`` (a forced command
    puts this interpreter's folder first on PATH, as a device wrapper would, then runs the original command),
    ``bare`` (a ``python3`` that sees no installed distribution: no numpy, no runtimes), ``nopython`` (no Python
    at all), ``arm`` (the forced command ``hsnet device exec qemu:cortex-a76 -- sh -c "$SSH_ORIGINAL_COMMAND"``:
    the emulated aarch64 device behind sshd); ``stranger`` is never authorized."""
    if not HAS_SSH:
        pytest.skip("needs openssh-server and openssh-client (.ci/install installs them)")
    d = tmp_path_factory.mktemp("sshd")
    port = _free_port()
    host_pub = _keygen(d / "host_key")
    bindir = str(Path(sys.executable).parent)
    wrapper = f'command="PATH={bindir}:$PATH; eval \\"$SSH_ORIGINAL_COMMAND\\"",restrict'
    nopython = 'command="PATH=/nonexistent; eval \\"$SSH_ORIGINAL_COMMAND\\"",restrict'
    nosite = d / "nosite"  # a python3 that sees no installed distribution: a device without numpy or runtimes
    nosite.mkdir()
    (nosite / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    (nosite / "python3").chmod(0o755)
    bare = f'command="PATH={nosite}:/usr/bin:/bin; eval \\"$SSH_ORIGINAL_COMMAND\\"",restrict'
    hsnet = Path(sys.executable).parent / "hsnet"
    arm = f'command="exec {hsnet} device exec qemu:cortex-a76 -- sh -c \\"$SSH_ORIGINAL_COMMAND\\"",restrict'
    (d / "authorized_keys").write_text(
        f"{wrapper} {_keygen(d / 'good.key')}\n{bare} {_keygen(d / 'bare.key')}\n"
        f"{nopython} {_keygen(d / 'nopython.key')}\n{arm} {_keygen(d / 'arm.key')}\n"
    )
    _keygen(d / "stranger.key")
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        f"AllowUsers {os.environ.get('USER') or 'root'} root\n"
    )
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    for key in ("good", "bare", "nopython", "arm", "stranger"):
        (d / f"{key}.cfg").write_text(
            f"Host device\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {d / (key + '.key')}\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {d / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
        )
    (d / "stranger_host.cfg").write_text((d / "good.cfg").read_text().replace("known_hosts", "empty_known_hosts"))
    (d / "empty_known_hosts").write_text("")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # a root sshd wants its privilege-separation folder
    log = open(d / "sshd.log", "wb")  # noqa: SIM115 - sshd's log for the failure message; closed at the end
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()}")
    try:
        yield {"dir": d, "port": port}
    finally:
        proc.terminate()  # stopped by its PID
        proc.wait(timeout=10)
        log.close()
