"""Result schema: round trip, versioning and malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.errors import BaselineError
from benchmarks.schema import KIND, SCHEMA_VERSION, BenchResult, Row, load_result, save_result


def make_result() -> BenchResult:
    ok = Row("hsnet", "onnxruntime", "fp32", 1, 1, 32, params=10, macs=1000, artifact_bytes=123)
    ok.set_samples([[0.0010, 0.0012], [0.0011, 0.0013]], [[0.0009, 0.0010], [0.0010, 0.0011]])
    skipped = Row("hsnet", "coreml", "fp32", 1, 1, 32, status="skipped: CoreML prediction needs macOS")
    return BenchResult(rows=[ok, skipped], environment={"cpu": "x"}, reference={"1": {"samples_ms": [[1.0]]}})


def test_round_trip(tmp_path: Path) -> None:
    res = make_result()
    path = save_result(res, tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["kind"] == KIND and data["schema_version"] == SCHEMA_VERSION
    back = load_result(path)
    assert back.to_dict() == res.to_dict()
    row = back.rows[0]
    assert row.latency is not None and row.latency.runs == 4
    assert row.latency.median_ms == pytest.approx(1.15)
    assert row.cpu_median_ms == pytest.approx(1.0)
    assert row.throughput_ips == pytest.approx(1 / 1.15e-3)
    assert row.samples_ms == [[1.0, 1.2], [1.1, 1.3]]
    assert back.rows[1].latency is None and not back.rows[1].ok
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left beside it


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    data = make_result().to_dict()
    data["rows"][0]["added_by_a_newer_minor_version"] = 1
    data["also_new"] = {}
    (tmp_path / "r.json").write_text(json.dumps(data))
    assert load_result(tmp_path / "r.json").rows[0].model == "hsnet"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"kind": "hsnet-bench", "schema_version": 2, "rows": []}', "schema version 2; this hsnet reads version 1"),
        ('{"schema_version": 1, "rows": []}', "is not an hsnet bench result"),
        ('{"kind": "hsnet-bench", "schema_version": 1}', "malformed: result lacks rows"),
        ('{"kind": "hsnet-bench", "schema_version": 1, "rows": [{"model": "x"}]}', "malformed: row lacks"),
        ('{"kind": "hsnet-bench", "schema_ver', "is not valid JSON"),
        ("[1, 2]", "is not an hsnet bench result"),
    ],
)
def test_bad_files_give_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=message) as e:
        load_result(path)
    assert "\n" not in str(e.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="no such file"):
        load_result(tmp_path / "absent.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BaselineError):
        load_result(tmp_path / "bin.json")
