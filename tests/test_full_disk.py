"""A full disk, for real: a 300 KB tmpfs mounted for the test. Every command says so in one line naming where it
was writing, exits 3 (the tool could not work; not 1, which would read as a failed check) and leaves nothing
half-written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hsnet.cli import main
from tests.conftest import tmpfs

BASELINE = Path(__file__).resolve().parents[1] / "benchmarks" / "baselines" / "ci-hsnet-96px" / "intel-xeon.json"


@pytest.fixture
def small_disk(tmp_path: Path):
    with tmpfs(tmp_path / "small") as mount:
        yield mount


def _invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_deploy_export_on_a_full_disk(small_disk: Path) -> None:
    result = _invoke("deploy", "export", "--model", "hsnet", "--input-size", "32", "--num-classes", "10",
                     "--out", small_disk / "exports" / "hsnet")  # fmt: skip
    assert result.exit_code == 3, result.output
    assert f"Error: no space left on the device writing into {small_disk / 'exports' / 'hsnet'}" in result.stderr
    assert "Traceback" not in result.output
    assert list(small_disk.iterdir()) == []  # no staging folder, no empty output folder


def test_json_outputs_on_a_full_disk(small_disk: Path) -> None:
    with open(small_disk / "fill", "wb", buffering=0) as f:  # fill it up to the last byte
        try:
            while True:
                f.write(bytes(1024))
        except OSError:
            pass
    result = _invoke("bench", "compare", BASELINE, BASELINE, "--json", small_disk / "verdicts.json")
    assert result.exit_code == 3, result.output
    assert "Error: no space left on the device" in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in small_disk.iterdir()) == ["fill"]  # no .partial left


def test_train_on_a_full_disk_names_the_checkpoint(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="1m") as mount:
        result = _invoke("train", "--recipe", "fashion-quick", "--epochs", "1", "--subset", "64", "--test-subset",
                         "32", "--batch-size", "32", "--out", mount / "run")  # fmt: skip
        assert result.exit_code == 3, result.output
        (line,) = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
        assert line.startswith(f"Error: no space left on the device writing {mount / 'run'}/") and line.endswith(".pt")
        assert "Traceback" not in result.output
        assert not [p for p in (mount / "run").iterdir() if p.name.endswith(".partial")]
