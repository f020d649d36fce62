"""``qemu:CORE``: the emulated aarch64 device, addressed like ``ssh://host`` (see :mod:`hsnet.devices.remote`).

Its ``python3`` is aarch64 Python under ``qemu-aarch64`` (user mode: no kernel, no chroot); every other command
(``tar``, ``sh``, ``env``) is the host's, run with the device's ``HOME``. So an SSH forced command can put it behind
sshd (``hsnet device exec qemu:cortex-a76 -- sh -c "$SSH_ORIGINAL_COMMAND"``), and the bench pushes, runs and
pulls through it exactly as through a board. Emulated *time* is not a latency (100-700x slower, +-40 %); its
instruction counts are exact, hence the bench's metric there.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hsnet.errors import HSNetError, ToolFailure

__all__ = ["CORES", "Emulated", "device_home"]

#: The core models the device emulates (each has its /proc/cpuinfo in ``cpuinfo/``).
CORES = ("cortex-a53", "cortex-a72", "cortex-a76")
_NAME = re.compile(r"qemu:(?P<cpu>[a-z0-9-]+)")
_BUILD = Path(__file__).resolve().parent / "build.sh"


def device_home() -> Path:
    """Where build.sh put the device (``HSNET_ARM_HOME``, default ``~/.cache/hsnet/arm64``)."""
    return Path(os.environ.get("HSNET_ARM_HOME") or Path.home() / ".cache" / "hsnet" / "arm64")


@dataclass(frozen=True)
class Emulated:
    """One emulated core model."""

    cpu: str
    emulated = True

    @classmethod
    def parse(cls, text: str) -> Emulated:
        """Raises: HSNetError naming the valid cores (exit 2)."""
        m = _NAME.fullmatch(text)
        if m is None or m["cpu"] not in CORES:
            raise HSNetError(f"remote {text!r}: give qemu:{'|'.join(CORES)} (an emulated aarch64 core)")
        return cls(m["cpu"])

    @property
    def name(self) -> str:
        return f"qemu:{self.cpu}"

    @property
    def root(self) -> Path:
        """The built device.

        Raises:
            ToolFailure: it is not built, or qemu-aarch64 is missing (exit 3), with the command that builds it.
        """
        root = device_home()
        if not (root / "stamp").is_file() or not (root / "bin" / "python3").is_file():
            build = _BUILD.relative_to(_BUILD.parents[3])
            raise ToolFailure(f"{self.name}: the emulated device is not built in {root}; build it with: bash {build} "
                              "(needs qemu-user and mmdebstrap)")  # fmt: skip
        if shutil.which("qemu-aarch64") is None:
            raise ToolFailure(f"{self.name}: qemu-aarch64 is not installed (Debian: apt-get install qemu-user)")
        return root

    def argv(self, remote_argv: Sequence[str]) -> list[str]:
        """The local command that runs ``remote_argv`` on the device: in its home, with its ``HOME`` and ``PATH``
        (whose ``python3`` is the emulated one)."""
        root = self.root
        home = root / "home"
        home.mkdir(exist_ok=True)
        words = list(remote_argv)
        if words and "=" in words[0]:  # env would take it for a variable
            raise HSNetError(f"{self.name}: a command name cannot contain '=' ({words[0]!r})")
        if words and words[0] in ("python3", "python"):
            words[0] = str(root / "bin" / "python3")
        path = f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
        return ["env", "-C", str(home), f"PATH={path}", f"HOME={home}", f"QEMU_CPU={self.cpu}",
                f"HSNET_EMULATED=qemu-aarch64 -cpu {self.cpu}", *words]  # fmt: skip
