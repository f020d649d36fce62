"""``hsnet deploy verify ARTIFACT --remote DEVICE``: parity on the device's own kernels (the emulated aarch64
device, directly and behind a real sshd on loopback), with the same images and tolerances as here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hsnet.cli import main

pytestmark = pytest.mark.usefixtures("emulated")  # tests/conftest.py: skip, or fail under HSNET_REQUIRE_EMULATED=1


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deploy import export_model

    out = tmp_path_factory.mktemp("verify-remote")
    export_model("hsnet", targets=("onnx", "tflite"), precisions=("fp32", "int8"), input_size=32, num_classes=10,
                 out_dir=out, parity_images=16)  # fmt: skip
    return out


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hsnet_fp32.onnx", "hsnet_int8.onnx", "hsnet_fp32.tflite", "hsnet_int8.tflite"])
def test_parity_on_the_emulated_arm_kernels_matches_the_hosts_tolerances(exported: Path, name: str) -> None:
    here = _cli("deploy", "verify", exported / name, "--count", 16, "--json")
    there = _cli("deploy", "verify", exported / name, "--count", 16, "--remote", "qemu:cortex-a76", "--json")
    assert here.exit_code == 0 and there.exit_code == 0, there.output
    a, b = json.loads(here.stdout)["parity"], json.loads(there.stdout)["parity"]
    assert "on qemu:cortex-a76 (emulated Cortex-A76)" in b["runtime_version"]
    assert b["passed"] and b["images"] == a["images"] == 16
    if "fp32" in name:
        assert b["max_abs_error"] < 1e-4  # ARM's float kernels, against PyTorch on x86
    else:  # int8 against the same artifact on this host: the bar is 99 % top-1 agreement
        from deploy.images import load_images
        from deploy.on_device import on_device
        from deploy.parity import predict
        from deploy.targets import load_artifact

        x = load_images(None, count=32, input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, seed=0).x
        art = load_artifact(exported / name, threads=1)
        host = predict(art, x)
        with on_device(art, "qemu:cortex-a53", log=lambda _: None):  # no dot product: other int8 kernels
            arm = predict(art, x)
        assert (host.argmax(1) == arm.argmax(1)).mean() >= 0.99
        assert np.abs(host - arm).max() < 0.05


def test_verify_through_sshd_and_bad_remote_requests(exported: Path, sshd: dict) -> None:
    cfg = sshd["dir"] / "arm.cfg"
    done = _cli("deploy", "verify", exported / "hsnet_int8.tflite", "--count", 8, "--remote", "ssh://root@device",
                "--ssh-config", cfg)  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "on ssh://root@device (emulated Cortex-A76)" in done.stdout
    for args, code, message in [
        (["--remote", "qemu:cortex-a99"], 2, "give qemu:cortex-a53|cortex-a72|cortex-a76"),
        (["--ssh-config", cfg], 2, "--ssh-option and --ssh-config need --remote DEVICE"),
        (["--remote", "qemu:cortex-a76", "--bisect"], 2, "does not combine with --remote"),
        (["--remote", "ssh://root@127.0.0.1:1", "--ssh-config", cfg], 3, "unreachable"),
    ]:
        bad = _cli("deploy", "verify", exported / "hsnet_fp32.onnx", "--count", 4, *args)
        assert bad.exit_code == code, (args, bad.output)
        errors = [line for line in bad.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and message in errors[0], (args, bad.stderr)


def test_a_device_without_the_runtime_is_named(exported: Path, sshd: dict) -> None:
    bare = _cli("deploy", "verify", exported / "hsnet_fp32.onnx", "--count", 4, "--remote", "ssh://root@device",
                "--ssh-config", sshd["dir"] / "bare.cfg")  # fmt: skip
    assert bare.exit_code == 3 and "ssh://root@device has no numpy" in bare.stderr, bare.output
