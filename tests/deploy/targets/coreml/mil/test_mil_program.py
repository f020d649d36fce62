"""The ML Program loader and evaluator on real coremltools output: blob constants, whole programs, bad packages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deploy.errors import DeployError, UnsupportedOperationError
from deploy.targets.coreml.mil import load_program, read_spec
from deploy.targets.coreml.mil._ct import import_coremltools

pytest.importorskip("coremltools")

W = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
KERNEL = np.random.default_rng(2).standard_normal((16, 8, 3, 3)).astype(np.float32)


def _convert(program, path: Path, precision: str = "fp32", *, as_written: bool = True) -> Path:
    ct = import_coremltools()
    mlmodel = ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS16,
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        skip_model_load=True,
        # The empty pipeline keeps the operations as written; the default one is needed for fp16 (it inserts
        # the casts and stores the weights in float16).
        pass_pipeline=ct.PassPipeline.EMPTY if as_written else ct.PassPipeline.DEFAULT,
    )
    mlmodel.save(str(path))
    return path


def _non_zoo_program():
    """Operations no registered model produces, chained, so that one conversion exercises them all."""
    ct = import_coremltools()
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 8, 6, 6))], opset_version=ct.target.iOS16)
    def program(x):
        a = mb.slice_by_index(x=x, begin=[0, 1, 0, 0], end=[1, 7, 6, 6], stride=[1, 2, 1, 1], name="sliced")
        b = mb.real_div(x=a, y=np.float32(3.0), name="div")
        c = mb.pad(x=b, pad=[1, 1, 2, 0], mode="reflect", name="padded")
        d = mb.softmax(x=c, axis=1, name="soft")
        e = mb.reduce_sum(x=d, axes=[2, 3], keep_dims=False, name="summed")
        f = mb.slice_by_size(x=e, begin=[0, 1], size=[1, 2], name="pair")
        return mb.matmul(x=f, y=W, name="logits")

    return program


def _conv_program():
    """A convolution with a weight large enough to live in the blob file."""
    ct = import_coremltools()
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 8, 5, 5))], opset_version=ct.target.iOS16)
    def program(x):
        y = mb.conv(x=x, weight=KERNEL, strides=[1, 1], pad_type="same", name="conv")
        return mb.relu(x=y, name="logits")

    return program


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mil")
    return {
        "ops": _convert(_non_zoo_program(), root / "ops.mlpackage"),
        "conv32": _convert(_conv_program(), root / "conv32.mlpackage"),
        "conv16": _convert(_conv_program(), root / "conv16.mlpackage", "fp16", as_written=False),
    }


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _weight_file(package: Path) -> Path:
    return package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"


def test_non_zoo_operations_match_torch(packages):
    program = load_program(packages["ops"])
    x = np.random.default_rng(3).standard_normal((1, 8, 6, 6)).astype(np.float32)
    got = program.run({"x": x})["logits"]
    t = torch.from_numpy(x)[:, 1:7:2] / 3.0
    t = F.pad(t, (2, 0, 1, 1), mode="reflect").softmax(1).sum((2, 3))[:, 1:3]
    want = (t @ torch.from_numpy(W)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert {"slice_by_index", "real_div", "pad", "softmax", "reduce_sum", "slice_by_size", "matmul"} <= set(
        program.op_counts()
    )


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_blob_constants_match_coremltools_reader(packages, precision):
    """Our bounds-checked reader gives the bytes coremltools' own C++ reader gives, for every blob constant."""
    from coremltools.libmilstoragepython import _BlobStorageReader

    package = packages["conv32" if precision == "fp32" else "conv16"]
    program = load_program(package)
    spec = read_spec(package)
    block = spec.mlProgram.functions["main"].block_specializations["CoreML6"]
    reader = _BlobStorageReader(str(_weight_file(package)))
    blobs = 0
    for op in block.operations:
        value = op.attributes.get("val")
        if op.type != "const" or value is None or not value.HasField("blobFileValue"):
            continue
        ours = program.constants[op.outputs[0].name]
        if ours.dtype == np.float16:  # coremltools returns the raw float16 bit patterns as uint16
            theirs = np.asarray(reader.read_fp16_data(value.blobFileValue.offset), dtype=np.uint16).view(np.float16)
        else:
            theirs = np.asarray(reader.read_float_data(value.blobFileValue.offset), dtype=np.float32)
        np.testing.assert_array_equal(ours.reshape(-1), theirs)
        blobs += 1
    assert blobs == 1


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_conv_program_matches_torch(packages, precision):
    program = load_program(packages["conv32" if precision == "fp32" else "conv16"])
    x = np.random.default_rng(4).standard_normal((1, 8, 5, 5)).astype(np.float32)
    got = program.run({"x": x})["logits"].astype(np.float32)
    want = F.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(KERNEL), padding=1)).numpy()
    tol = 1e-5 if precision == "fp32" else 2e-2
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    if precision == "fp16":
        assert program.op_counts()["cast"] == 2  # fp32 input -> fp16 compute -> fp32 output


def test_intermediate_outputs_and_bad_input(packages):
    program = load_program(packages["ops"])
    x = np.ones((1, 8, 6, 6), dtype=np.float32)
    out = program.run({"x": x}, outputs=["div", "logits"])
    np.testing.assert_allclose(out["div"], np.full((1, 3, 6, 6), 1 / 3, dtype=np.float32))
    with pytest.raises(DeployError, match=r"input 'x' must have shape \(1, 8, 6, 6\)"):
        program.run({"x": np.ones((1, 8, 6, 5), dtype=np.float32)})
    with pytest.raises(DeployError, match="input 'x' missing"):
        program.run({})


def test_unsupported_operation_is_named(tmp_path):
    ct = import_coremltools()
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))], opset_version=ct.target.iOS16)
    def program(x):
        return mb.sin(x=mb.relu(x=x, name="r"), name="wave")

    program = load_program(_convert(program, tmp_path / "sin.mlpackage"))
    assert [o.type for o in program.unsupported()] == ["sin"]
    with pytest.raises(UnsupportedOperationError, match=r"MIL operation 'sin' \(output 'wave'\) is not supported"):
        program.run({"x": np.zeros((2, 3), dtype=np.float32)})


def test_declared_shape_is_checked(packages, tmp_path):
    """A program whose declared output shape disagrees with what the operation computes is reported."""
    package = _copy(packages["ops"], tmp_path)
    spec = read_spec(package)
    model_file = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
    block = spec.mlProgram.functions["main"].block_specializations["CoreML6"]
    op = next(o for o in block.operations if o.type == "real_div")
    op.outputs[0].type.tensorType.dimensions[1].constant.size = 4
    model_file.write_bytes(spec.SerializeToString())
    with pytest.raises(DeployError, match=r"real_div \(output 'div'\) computed shape \(1, 3, 6, 6\)"):
        load_program(package).run({"x": np.zeros((1, 8, 6, 6), dtype=np.float32)})
    # A stranger's package cannot make the evaluator allocate without bound.
    op.outputs[0].type.tensorType.dimensions[2].constant.size = 2**20
    op.outputs[0].type.tensorType.dimensions[3].constant.size = 2**20
    model_file.write_bytes(spec.SerializeToString())
    with pytest.raises(DeployError, match="variable 'div' declares an unreasonable shape"):
        load_program(package)


def test_truncated_weight_file(packages, tmp_path):
    package = _copy(packages["conv32"], tmp_path)
    weights = _weight_file(package)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(DeployError, match="truncated weight file"):
        load_program(package)
    weights.write_bytes(data[:10])
    with pytest.raises(DeployError, match="no header"):
        load_program(package)


def test_corrupt_weight_record(packages, tmp_path):
    package = _copy(packages["conv32"], tmp_path)
    weights = _weight_file(package)
    data = bytearray(weights.read_bytes())
    data[64:68] = b"\0\0\0\0"  # the first record's sentinel
    weights.write_bytes(bytes(data))
    with pytest.raises(DeployError, match="bad sentinel"):
        load_program(package)


def test_missing_weight_file(packages, tmp_path):
    package = _copy(packages["conv32"], tmp_path)
    _weight_file(package).unlink()
    with pytest.raises(DeployError, match="weight file weights/weight.bin is missing"):
        load_program(package)


def test_corrupt_or_missing_model_file(packages, tmp_path):
    package = _copy(packages["ops"], tmp_path)
    model_file = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
    model_file.write_bytes(model_file.read_bytes()[:100])
    with pytest.raises(DeployError, match="corrupt model file model.mlmodel"):
        load_program(package)
    model_file.unlink()
    with pytest.raises(DeployError, match="root model .* is missing"):
        load_program(package)


def test_bad_manifest(packages, tmp_path):
    package = _copy(packages["ops"], tmp_path)
    manifest = package / "Manifest.json"
    info = json.loads(manifest.read_text())
    root = info["rootModelIdentifier"]
    info["itemInfoEntries"][root]["path"] = "../../../etc/passwd"
    manifest.write_text(json.dumps(info))
    with pytest.raises(DeployError, match="points outside the package"):
        load_program(package)
    manifest.write_text("{not json")
    with pytest.raises(DeployError, match="unreadable Manifest.json"):
        load_program(package)
    manifest.unlink()
    with pytest.raises(DeployError, match="no Manifest.json"):
        load_program(package)
    with pytest.raises(DeployError, match="not an .mlpackage folder"):
        load_program(tmp_path / "absent.mlpackage")


def test_weight_path_outside_package_is_refused(packages, tmp_path):
    package = _copy(packages["conv32"], tmp_path)
    spec = read_spec(package)
    block = spec.mlProgram.functions["main"].block_specializations["CoreML6"]
    for op in block.operations:
        value = op.attributes.get("val")
        if op.type == "const" and value is not None and value.HasField("blobFileValue"):
            value.blobFileValue.fileName = "@model_path/../../../../weights.bin"
    (package / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(spec.SerializeToString())
    with pytest.raises(DeployError, match="points outside the package"):
        load_program(package)
