"""A device over SSH: the system OpenSSH client, argument lists only, every remote word quoted; and
:func:`parse_device`, which also takes the emulated aarch64 device ``qemu:CORE`` (:mod:`hsnet.devices.emulated`).

``ssh://[user@]host[:port]`` names a device. The client is the user's own ``ssh`` (so ``~/.ssh/config``, agents,
jump hosts and known_hosts apply), always with ``BatchMode=yes`` (never a password prompt) and a connect timeout;
``ssh_options`` pass more (``-o KEY=VALUE``) and ``ssh_config`` replaces the config file (``-F``). The remote
command is one string the device's shell splits, so each argument is quoted with :func:`shlex.quote`: no word
from a user or a file is ever interpreted by a shell on either side.

:func:`probe` reads what the device is (architecture, cores decoded from ``/proc/cpuinfo``, governor and
frequencies, temperatures, kernel, Python and runtime versions, free space) with one Python program run there;
hsnet never installs anything on a device.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hsnet.devices.emulated.device import Emulated
from hsnet.errors import HSNetError, ToolFailure

__all__ = ["ARM_CORES", "Device", "Remote", "decode_cpuinfo", "parse_device", "probe", "run"]

#: ARM core names by (implementer, part) as /proc/cpuinfo gives them (Arm Ltd 0x41; Qualcomm 0x51 Kryo cores).
ARM_CORES = {
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD04): "Cortex-A35", (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57", (0x41, 0xD08): "Cortex-A72", (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75", (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD0D): "Cortex-A77", (0x41, 0xD41): "Cortex-A78", (0x41, 0xD44): "Cortex-X1",
    (0x41, 0xD46): "Cortex-A510", (0x41, 0xD47): "Cortex-A710", (0x41, 0xD48): "Cortex-X2",
    (0x41, 0xD49): "Neoverse-N2", (0x41, 0xD40): "Neoverse-V1", (0x41, 0xD4D): "Cortex-A715",
    (0x41, 0xD4E): "Cortex-X3", (0x41, 0xD80): "Cortex-A520", (0x41, 0xD81): "Cortex-A720",
    (0x41, 0xD82): "Cortex-X4", (0x51, 0x805): "Kryo 4xx Silver (Cortex-A55)",
    (0x51, 0x804): "Kryo 4xx Gold (Cortex-A76)",
}  # fmt: skip

_REMOTE = re.compile(
    r"ssh://(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\])(?::(?P<port>\d{1,5}))?/?"
)
_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9]*=[^\n]*")
_CONNECT_TIMEOUT_S = 10


class Device(Protocol):
    """What the bench and ``hsnet device`` need of a device: its name, whether it is emulated, and the local
    command that runs an argument list there."""

    @property
    def name(self) -> str: ...

    @property
    def emulated(self) -> bool: ...

    def argv(self, remote_argv: Sequence[str]) -> list[str]: ...


def parse_device(text: str, *, ssh_options: Sequence[str] = (), ssh_config: str | None = None) -> Device:
    """``ssh://[user@]host[:port]`` or ``qemu:cortex-a53|a72|a76``.

    Raises: HSNetError naming the valid forms (exit 2).
    """
    if text.startswith("qemu:"):
        if ssh_options or ssh_config:
            raise HSNetError(f"remote {text!r}: --ssh-option and --ssh-config are for ssh:// devices")
        return Emulated.parse(text)
    if not text.startswith("ssh://"):
        raise HSNetError(f"remote {text!r}: give ssh://[user@]host[:port] or qemu:cortex-a53|a72|a76")
    return Remote.parse(text, ssh_options=ssh_options, ssh_config=ssh_config)


@dataclass(frozen=True)
class Remote:
    """One device: ``ssh://[user@]host[:port]`` plus client options."""

    host: str
    user: str | None = None
    port: int | None = None
    ssh_options: tuple[str, ...] = ()
    ssh_config: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, text: str, *, ssh_options: Sequence[str] = (), ssh_config: str | None = None) -> Remote:
        """Raises: HSNetError naming the valid form (exit 2)."""
        m = _REMOTE.fullmatch(text)
        if m is None:
            raise HSNetError(f"remote {text!r}: give ssh://[user@]host[:port]")
        port = int(m["port"]) if m["port"] else None
        if port is not None and not 1 <= port <= 65535:
            raise HSNetError(f"remote {text!r}: port {port} is not in 1..65535")
        for opt in ssh_options:
            if not _OPTION.fullmatch(opt):
                raise HSNetError(f"--ssh-option {opt!r}: give KEY=VALUE (an ssh_config option, e.g. IdentityFile=~/k)")
        return cls(m["host"], m["user"], port, tuple(ssh_options), ssh_config)

    @property
    def name(self) -> str:
        """``ssh://user@host:port`` as given (for messages and the rows' device column)."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"ssh://{user}{self.host}{port}"

    emulated = False  # as far as the host can tell: an emulated device behind sshd says so in its probe

    def argv(self, remote_argv: Sequence[str]) -> list[str]:
        return self.ssh_argv(remote_argv)

    def ssh_argv(self, remote_argv: Sequence[str]) -> list[str]:
        """The local command that runs ``remote_argv`` on the device (each word quoted for its shell)."""
        argv = ["ssh"]
        if self.ssh_config is not None:
            argv += ["-F", self.ssh_config]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={_CONNECT_TIMEOUT_S}", "-o", "LogLevel=ERROR"]
        for opt in self.ssh_options:
            argv += ["-o", opt]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        target = f"{self.user}@{self.host}" if self.user else self.host
        return [*argv, "--", target, shlex.join(remote_argv)]


def run(device: Device, argv: Sequence[str], *, stdin: bytes | None = None, timeout_s: float = 60) -> str:
    """Run ``argv`` on the device and return its stdout.

    Raises:
        ToolFailure: the device cannot be reached (refused, unknown host key, key not accepted, timeout), or the
            command failed there (exit 3), in one line naming the device and what ssh or the command said.
    """
    try:
        done = subprocess.run(device.argv(argv), input=stdin, capture_output=True, timeout=timeout_s)
    except FileNotFoundError:
        raise ToolFailure("the ssh client is not installed here (Debian: apt-get install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise ToolFailure(f"{device.name}: no answer within {timeout_s:g} s") from None
    if done.returncode != 0:
        ssh = isinstance(device, Remote)
        raise ToolFailure(f"{device.name}: {_reason(done.returncode, done.stderr, ssh=ssh)}")
    return done.stdout.decode("utf-8", "replace")


def _reason(code: int, stderr: bytes, *, ssh: bool = True) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit status {code}"
    if code == 255 and ssh:  # ssh's own failure: the connection, not the command
        if "Permission denied" in last:
            return f"the device refused the key ({last})"
        if "Host key verification failed" in last or "REMOTE HOST IDENTIFICATION" in " ".join(lines):
            return f"unknown or changed host key ({last}); add it to known_hosts yourself"
        return f"unreachable ({last})"
    return f"the command failed with exit status {code} ({last[:300]})"


#: Run on the device with its ``python3 -c``: standard library only; prints one JSON object.
PROBE = r"""
import json, os, platform, shutil, glob
from importlib import metadata
def read(p):
    try:
        with open(p) as f: return f.read().strip()
    except OSError: return None
def version(d):
    try: return metadata.version(d)
    except Exception: return None
cpus = sorted(glob.glob('/sys/devices/system/cpu/cpu[0-9]*'), key=lambda p: int(p.rsplit('cpu', 1)[1]))
freq = [{'cpu': int(p.rsplit('cpu', 1)[1]), 'governor': read(p + '/cpufreq/scaling_governor'),
         'cur_khz': read(p + '/cpufreq/scaling_cur_freq'), 'max_khz': read(p + '/cpufreq/cpuinfo_max_freq')}
        for p in cpus]
temps = {}
for z in sorted(glob.glob('/sys/class/thermal/thermal_zone*')):
    t = read(z + '/temp')
    if t and t.lstrip('-').isdigit(): temps[read(z + '/type') or z] = int(t) / 1000
home = os.path.expanduser('~')
print(json.dumps({'arch': platform.machine(), 'kernel': platform.release(), 'python': platform.python_version(),
    'cpuinfo': read('/proc/cpuinfo') or '', 'cores': os.cpu_count(), 'freq': freq, 'temps_c': temps,
    'free_bytes': shutil.disk_usage(home).free, 'home': home, 'emulated': os.environ.get('HSNET_EMULATED'),
    'versions': {d: version(d) for d in ('numpy', 'onnxruntime', 'ai-edge-litert', 'tflite-runtime')}}))
"""


def probe(device: Device, *, timeout_s: float = 60) -> dict[str, Any]:
    """What the device is (see :data:`PROBE`), with its cores decoded (:func:`decode_cpuinfo`). ``emulated`` is
    what an emulated device says of itself (``qemu-aarch64 -cpu CORE``), else None; on it the governor,
    frequencies and temperatures are the host's.

    Raises:
        ToolFailure: unreachable, or no ``python3`` there (named), or an answer that is not the probe's.
    """
    try:
        out = run(device, ["python3", "-c", PROBE], timeout_s=timeout_s)
    except ToolFailure as e:
        if "exit status 127" in str(e):
            raise ToolFailure(f"{device.name}: no python3 on the device (install Python 3.9 or newer there)") from None
        raise
    try:
        info = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise ToolFailure(f"{device.name}: the probe printed no JSON (got {out[:120]!r})") from None
    info["device"] = device.name
    info["core_names"] = decode_cpuinfo(info.get("cpuinfo", ""))
    return info


def device_arch(device: Device) -> str:
    """The CPU family ``device`` runs (:data:`hsnet.toolbox.machine.ARCHES` spelling): aarch64 for the emulated
    device, else what its probe reads.

    Raises:
        ToolFailure: a board that cannot be reached.
    """
    if device.emulated:
        return "aarch64"
    from hsnet.toolbox.machine import arch_name

    return arch_name(str(probe(device).get("arch") or ""))


def decode_cpuinfo(text: str) -> list[dict[str, Any]]:
    """Per processor of ``/proc/cpuinfo``: its number and core name (ARM: from implementer and part, e.g.
    Cortex-A76; x86: the model name), and the ISA features it lists."""
    cores: list[dict[str, Any]] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        if "processor" not in fields or not fields["processor"].isdigit():
            continue
        name = fields.get("model name")
        if "cpu implementer" in fields and "cpu part" in fields:
            try:
                key = (int(fields["cpu implementer"], 16), int(fields["cpu part"], 16))
                name = ARM_CORES.get(key, f"implementer {key[0]:#x} part {key[1]:#x}")
            except ValueError:
                pass
        features = (fields.get("features") or fields.get("flags") or "").split()
        cores.append({"cpu": int(fields["processor"]), "name": name or "unknown", "features": features})
    return cores
