"""Shared fixtures: seeds, BatchNorm statistics, a briefly trained checkpoint, small real artifacts for the
benchmark and device tests (tiny CNNs exported with torch in a second, a heavier twin with extra layers as a real
slowdown, a corrupt file), and a real sshd on loopback."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

# On a shared machine, OpenMP threads that spin-wait for descheduled peers make torch ops 10-50x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def randomize_bn(model: torch.nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms so folding is really exercised."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.fixture(scope="session")
def fmnist_checkpoint(tmp_path_factory):
    """``best.pt`` of HSNet (10 classes, 32x32) trained briefly on real Fashion-MNIST through hsnet.training.

    3000 class-balanced training images, 2 epochs, seed 0; evaluated on 2000 test images (81.5 % top-1 here, far
    above the 10 % of chance). The run folder (metrics.jsonl, curves, confusion) is the checkpoint's parent.
    """
    from hsnet.training import fit, make_config

    config = make_config(
        "fashion-quick",
        model="hsnet",
        input_size=32,
        epochs=2,
        subset=3000,
        test_subset=2000,
        batch_size=64,
        lr=0.05,
        warmup_epochs=0.2,
        augment=False,  # two epochs are too few to profit from augmentation
        seed=0,
    )
    result = fit(config, tmp_path_factory.mktemp("fmnist-hsnet"), show_progress=False)
    return result.best_checkpoint


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


@contextlib.contextmanager
def tmpfs(mount: Path, size: str = "300k"):
    """A small tmpfs mounted on ``mount`` for the block (a real full disk); the test skips without root."""
    mount.mkdir(parents=True, exist_ok=True)
    if (
        shutil.which("mount") is None
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture(scope="session")
def emulated() -> None:
    """The emulated aarch64 device must be built (hsnet/devices/emulated/build.sh): the test skips without it,
    except under ``HSNET_REQUIRE_EMULATED=1`` (set by .ci/run), where it fails: CI must exercise the device."""
    from hsnet.devices.emulated.device import device_home

    if not (device_home() / "stamp").is_file():
        what = f"the emulated aarch64 device is not built in {device_home()} (bash hsnet/devices/emulated/build.sh)"
        if os.environ.get("HSNET_REQUIRE_EMULATED") == "1":
            pytest.fail(what)
        pytest.skip(what)
