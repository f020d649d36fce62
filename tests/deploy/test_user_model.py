"""The user's own network, in no registry: through ``deploy.convert``, every target, ``hsnet deploy export
--model file.py:callable``, ``hsnet deploy verify`` without hsnet metadata, and ``hsnet bench --model``.

The network is defined here, the way a user writes one: standard ``nn.Conv2d`` + ``nn.BatchNorm2d`` pairs called
one after the other in a custom ``forward``, a residual addition, a ``Linear`` + ``BatchNorm1d`` head.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from hsnet.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HERE = Path(__file__).resolve()
SPEC = f"{HERE}:build"


class _Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class ResNetLite(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(_Block(16), _Block(16))
        self.fc = nn.Linear(16, 32)
        self.bn = nn.BatchNorm1d(32)
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x)).mean((2, 3))
        return self.head(torch.relu(self.bn(self.fc(x))))


def build() -> nn.Module:
    """The user's builder: seeded weights and non-trivial BatchNorm statistics (so that folding is exercised)."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = ResNetLite()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def not_a_module() -> int:
    return 3


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 of the user's own images (uint8 NHWC, 48x48 RGB: resized to the model's input by hsnet)."""
    path = tmp_path_factory.mktemp("user-images") / "mine.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (40, 48, 48, 3), dtype=np.uint8))
    return path


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_batchnorm_after_conv_or_linear_is_folded_wherever_it_is_called() -> None:
    from hsnet.layers.reparam import batchnorm_modules, reparameterize_model

    model = build()
    x = torch.randn(3, 3, 32, 32)
    fused = reparameterize_model(model)
    assert batchnorm_modules(model) and not batchnorm_modules(fused)
    with torch.no_grad():
        assert torch.allclose(fused(x), model(x), atol=1e-5, rtol=1e-5)


def test_a_batchnorm_without_a_conv_before_it_stays_and_is_reported(tmp_path: Path) -> None:
    import deploy

    class AddThenBN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.bn(self.a(x) + self.b(x)).mean((2, 3)))

    report = deploy.convert(AddThenBN().eval(), torch.zeros(1, 3, 16, 16), name="addbn", out_dir=tmp_path,
                            parity_images=8)  # fmt: skip
    assert report.artifacts[0].parity.passed
    assert any("BatchNorm bn has no Conv/Linear before it" in f.message for f in report.findings)


@pytest.mark.slow
def test_convert_goes_through_every_target_with_parity_on_the_users_images(tmp_path: Path, images: Path) -> None:
    import deploy

    report = deploy.convert(
        build(), torch.zeros(1, 3, 32, 32), name="resnetlite", labels=list("abcde"), targets=("all",),
        precisions=("fp32", "int8"), images=images, out_dir=tmp_path / "out",
    )  # fmt: skip
    got = {(a.target, a.precision) for a in report.artifacts}
    assert got == {("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8"), ("coreml", "fp32")}
    for a in report.artifacts:
        assert a.parity.passed and a.parity.images == 40 and a.parity.source == "mine.npy", a.parity.describe()
        assert a.path.exists()
    fp32 = [a.parity for a in report.artifacts if a.precision == "fp32"]
    assert max(p.max_rel_error for p in fp32) < 1e-5
    manifest = json.loads(report.manifest.read_text())
    assert manifest["weights"].startswith("module sha256:") and manifest["labels"] == list("abcde")
    assert manifest["options"]["calibration"] == "calibration data: 40 uint8 images from " + str(images)
    cross = manifest["graph"]["cross_check"]  # the graph's own counts equal the profiler's of the folded network
    assert cross["params_equal"] and cross["macs_equal"], cross
    # Only the default images get the warning that they say nothing about the user's domain.
    assert not any("Fashion-MNIST" in f.message for f in report.findings)


def test_cli_export_of_a_file_spec_and_its_verify_without_metadata(tmp_path: Path, images: Path) -> None:
    out = tmp_path / "out"
    result = _cli("deploy", "export", "--model", SPEC, "--input-shape", "1,3,32,32", "--target", "onnx,pt2",
                  "--images", images, "--out", out, "--parity-images", "16")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "test_user_model_fp32.onnx").is_file() and (out / "test_user_model_fp32.pt2").is_file()
    assert "on 16 uint8 images from" in result.stdout

    plain = tmp_path / "plain.onnx"  # what a user already has: a plain export, no hsnet metadata, no manifest
    torch.onnx.export(build(), (torch.zeros(1, 3, 32, 32),), str(plain), dynamo=False)
    refused = _cli("deploy", "verify", plain)
    assert refused.exit_code == 2 and "carries no hsnet metadata" in refused.stderr
    ok = _cli("deploy", "verify", plain, "--model", SPEC, "--images", images)
    assert ok.exit_code == 0, ok.output
    assert "top-1 agreement 100.0%" in ok.stdout and "40 mine.npy images" in ok.stdout

    from hsnet.data import to_model_input

    x = to_model_input(np.load(images), input_size=32, in_chans=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    with torch.no_grad():
        logits = build()(torch.from_numpy(x)).numpy()
    np.save(tmp_path / "ref.npy", logits)
    ok = _cli("deploy", "verify", plain, "--reference", tmp_path / "ref.npy", "--images", images)
    assert ok.exit_code == 0 and "(reference logits)" in ok.stdout, ok.output
    np.save(tmp_path / "wrong.npy", -logits)
    bad = _cli("deploy", "verify", plain, "--reference", tmp_path / "wrong.npy", "--images", images)
    assert bad.exit_code == 1 and "parity check failed" in bad.stderr, bad.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", SPEC], "give its input with --input-shape B,C,H,W"),
        (["--model", SPEC, "--input-shape", "1,3,32,48"], "square inputs only"),
        (["--model", SPEC, "--input-shape", "1,3,32"], "give batch,channels,height,width"),
        (["--model", f"{HERE}:nothing", "--input-shape", "1,3,32,32"], "has no attribute 'nothing'"),
        (["--model", f"{HERE}:not_a_module", "--input-shape", "1,3,32,32"], "returned int, not a torch.nn.Module"),
        (["--model", "/no/such/file.py:build", "--input-shape", "1,3,32,32"], "no such file"),
        (["--model", "no_such_pkg_xyz.nets:build", "--input-shape", "1,3,32,32"], "no module named 'no_such_pkg_xyz'"),
        (["--model", f"{HERE}:build", "--input-shape", "1,3,32,32", "--checkpoint", "x.pt"], "for registered models"),
        (["--model", "hsnet", "--input-shape", "1,3,32,32"], "describe your own network"),
        (["--model", SPEC, "--input-shape", "1,3,32,32", "--mean", "a,b"], "--mean takes comma-separated numbers"),
        (["--model", SPEC, "--input-shape", "1,3,32,32", "--labels", "a,b"], "2 labels given for 5 logits"),
        (["--model", SPEC, "--input-shape", "1,3,32,32", "--images", "/no/such/dir"], "no such file or folder"),
    ],
)
def test_bad_user_model_input_is_one_line_exit_2_and_no_folder(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "never"
    result = _cli("deploy", "export", *args, "--out", out)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()  # a failed validation creates no folder


def test_model_defaults_to_hsnet_and_killed_staging_folders_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stale = out / ".hsnet-export-999999999-abc"  # a pid that cannot be running: left by a kill -9
    stale.mkdir(parents=True)
    (stale / "exported.onnx").write_bytes(b"half")
    result = _cli("deploy", "export", "--target", "onnx", "--input-size", "32", "--num-classes", "10", "--out", out,
                  "--parity-images", "4")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "hsnet_fp32.onnx").is_file() and not stale.exists()
    assert f"removed {stale}, left by an export that was killed" in result.stderr
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_bench_measures_the_users_network_beside_the_zoo_and_a_plain_onnx_file(tmp_path: Path) -> None:
    from hsnet.profiling import profile_model

    plain = tmp_path / "plain.onnx"
    torch.onnx.export(build(), (torch.zeros(1, 3, 32, 32),), str(plain), dynamo=False)
    result = CliRunner(env={"HSNET_CACHE": str(tmp_path / "cache")}).invoke(
        main,
        ["bench", "--model", SPEC, "--artifact", str(plain), "--runtimes", "onnxruntime,torch", "--input-size", "32",
         "--runs", "6", "--rounds", "2", "--json", str(tmp_path / "b.json")],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["runtime"]): r for r in json.loads((tmp_path / "b.json").read_text())["rows"]}
    prof = profile_model(build(), 32)
    for runtime in ("onnxruntime", "torch"):
        row = rows[("test_user_model", runtime)]
        assert row["status"] == "ok" and row["parity"]["top1_agreement"] == 1.0, row
        assert (row["params"], row["macs"]) == (prof.params, prof.macs)
    given = rows[("plain", "onnxruntime")]
    assert given["status"] == "ok" and given["macs"] == prof.macs  # counted from the graph, no manifest needed
    assert 0 < given["params"] < prof.params  # the exporter folded BatchNorm into the convolutions
