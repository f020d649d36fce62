"""``hsnet device check REMOTE`` and ``hsnet device exec REMOTE -- CMD...``: what a device has (over SSH, or the
emulated ``qemu:CORE``), and one command run on it with stdin, stdout, stderr and the exit status passed through
(:mod:`hsnet.devices.remote`).

Exit status of ``check``: 0 every runtime the bench needs is there, 1 something is missing (each with the one line
that would install it there: hsnet never installs anything on a device), 2 a malformed remote, 3 the device cannot
be reached or has no Python. ``exec`` exits with the command's own status (ssh's 255 when the connection fails).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from typing import Any

import click

from hsnet.devices.remote import parse_device, probe
from hsnet.errors import CheckFailed, HSNetError
from hsnet.toolbox.cli import emit_json, user_errors
from hsnet.toolbox.machine import package_version

__all__ = ["device"]

_SSH_OPTIONS = [
    click.option("--ssh-option", "ssh_options", multiple=True, help="An ssh -o KEY=VALUE option (repeatable)."),
    click.option("--ssh-config", default=None, help="An ssh config file instead of ~/.ssh/config (ssh -F)."),
]


def _ssh(fn: Any) -> Any:
    for option in reversed(_SSH_OPTIONS):
        fn = option(fn)
    return fn


@click.group("device")
def device() -> None:
    """A device (ssh://[user@]host[:port], or the emulated qemu:cortex-a53|a72|a76): what it has, and commands
    run on it."""


@device.command("check")
@click.argument("remote")
@_ssh
@click.option("--json", "as_json", is_flag=True, help="Print the probe as JSON.")
@user_errors
def check_cmd(remote: str, ssh_options: tuple[str, ...], ssh_config: str | None, as_json: bool) -> None:
    """What REMOTE has for hsnet's measuring worker: Python, numpy, onnxruntime, LiteRT, cores, governor, space."""
    from hsnet.toolbox.tables import format_table

    target = parse_device(remote, ssh_options=ssh_options, ssh_config=ssh_config)
    info = probe(target)
    rows, missing = device_rows(info)
    if as_json:
        emit_json({**info, "missing": missing})
    else:
        click.echo(format_table(["what", "on the device", "note"], rows, "lll"))
        click.echo(f"\n{target.name}: read on the device by its python3 (nothing was installed)")
        if info.get("emulated"):
            click.echo(f"emulated ({info['emulated']}): its governor, frequencies and temperatures are the host's; "
                       "its time is not a latency (hsnet bench counts instructions there)")  # fmt: skip
    if missing:
        raise CheckFailed(f"{target.name} lacks {', '.join(m['what'] for m in missing)}; install there with: "
                          f"{'; '.join(m['install'] for m in missing)}")  # fmt: skip


def device_rows(info: dict[str, Any]) -> tuple[list[list[str]], list[dict[str, str]]]:
    """The check's table and what is missing (each with the line that would install the host's version)."""
    versions = info.get("versions") or {}
    emulated = info.get("emulated")
    rows: list[list[str]] = [["device", f"{info['device']} ({info.get('arch')}, Linux {info.get('kernel')})",
                              f"emulated: {emulated}" if emulated else ""]]  # fmt: skip
    names = Counter(c["name"] for c in info.get("core_names") or [])
    rows.append(["cores", ", ".join(f"{n}x {name}" for name, n in names.items()) or str(info.get("cores")), ""])
    governors = sorted({f["governor"] for f in info.get("freq") or [] if f.get("governor")})
    top = [int(f["max_khz"]) for f in info.get("freq") or [] if (f.get("max_khz") or "").isdigit()]
    rows.append(["governor", ", ".join(governors) or "unreadable",
                 f"max {max(top) / 1000:.0f} MHz" if top else ""])  # fmt: skip
    temps = info.get("temps_c") or {}
    rows.append(["temperature", ", ".join(f"{k} {v:.0f} C" for k, v in temps.items()) or "no thermal zones", ""])
    rows.append(["free space", f"{info.get('free_bytes', 0) / 2**30:.1f} GiB in {info.get('home')}", ""])
    rows.append(["python", str(info.get("python")), ""])
    missing = []
    wanted = [("numpy", "numpy"), ("onnxruntime", "onnxruntime")]
    for what, dist in wanted:
        have = versions.get(dist)
        note = "" if have else f"missing: python3 -m pip install {dist}=={package_version(dist)}"
        rows.append([what, have or "-", note])
        if not have:
            missing.append({"what": what, "install": f"python3 -m pip install {dist}=={package_version(dist)}"})
    litert = versions.get("ai-edge-litert") or versions.get("tflite-runtime")
    which = "ai-edge-litert" if versions.get("ai-edge-litert") else "tflite-runtime"
    line = f"python3 -m pip install ai-edge-litert=={package_version('ai-edge-litert')}"
    rows.append(["LiteRT", f"{which} {litert}" if litert else "-", "" if litert else f"missing: {line}"])
    if not litert:
        missing.append({"what": "LiteRT", "install": line})
    return rows, missing


@device.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("remote")
@_ssh
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(remote: str, ssh_options: tuple[str, ...], ssh_config: str | None, command: tuple[str, ...]) -> None:
    """Run COMMAND on REMOTE (after --), stdin, stdout, stderr and exit status passed through unchanged."""
    argv = list(command[1:] if command and command[0] == "--" else command)
    try:
        target = parse_device(remote, ssh_options=ssh_options, ssh_config=ssh_config)
        if not argv:
            raise HSNetError("give the command after --, e.g. hsnet device exec ssh://board -- uname -m")
        local = target.argv(argv)
    except HSNetError as e:  # ToolFailure (an emulated device not built) included: one line, its exit status
        click.echo(f"Error: {e}", err=True)
        raise SystemExit(e.exit_code) from None
    try:
        code = subprocess.call(local)  # stdio inherited: passed through as they are
    except FileNotFoundError:
        click.echo("Error: the ssh client is not installed here (Debian: apt-get install openssh-client)", err=True)
        raise SystemExit(3) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    sys.exit(code)
