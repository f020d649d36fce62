"""The shared toolbox: output checks that create nothing, atomic writes, one digest, the exit-code decorator."""

from __future__ import annotations

import errno
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hsnet.errors import CheckFailed, HSNetError, ToolFailure
from hsnet.toolbox.atomic import (
    atomic_path,
    atomic_write_json,
    check_writable_dir,
    check_writable_file,
    remove_stale_partials,
)
from hsnet.toolbox.cli import user_errors
from hsnet.toolbox.digests import file_sha256, hash_path


def test_checks_create_nothing_and_name_the_path(tmp_path: Path) -> None:
    assert check_writable_dir(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b" / "c"
    assert check_writable_file(tmp_path / "x" / "out.json") == tmp_path / "x" / "out.json"
    assert list(tmp_path.iterdir()) == []  # no folder made, no probe left
    (tmp_path / "file").write_text("x")
    with pytest.raises(HSNetError, match=r"output folder .*file/sub cannot be created: .*file is a file, not a folder"):
        check_writable_dir(tmp_path / "file" / "sub")
    with pytest.raises(HSNetError, match=r"results .*file/x.json cannot be created"):
        check_writable_file(tmp_path / "file" / "x.json", what="results")
    with pytest.raises(HSNetError, match="is a folder; give a file path"):
        check_writable_file(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_one_digest_for_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"abc")
    assert file_sha256(tmp_path / "f.bin") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    folder = tmp_path / "pkg"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "w.bin").write_bytes(b"abc")
    first = hash_path(folder)
    assert first["size"] == 3 and first["files"]["sub/w.bin"]["sha256"] == file_sha256(tmp_path / "f.bin")
    (folder / "sub" / "w.bin").write_bytes(b"abd")
    assert hash_path(folder)["sha256"] != first["sha256"] and len(first["sha256"]) == 64


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (HSNetError("unknown model 'x'"), 2, "Error: unknown model 'x'\n"),
        (CheckFailed("parity: top-1 90 %"), 1, "Error: parity: top-1 90 %\n"),
        (ToolFailure("onnxruntime crashed on every row"), 3, "Error: onnxruntime crashed on every row\n"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/data/out.pt"),
            3,
            "Error: no space left on the device writing /data/out.pt\n",
        ),  # fmt: skip
        (
            PermissionError(errno.EACCES, "Permission denied", "/etc/x.json"),
            2,
            "Error: /etc/x.json: Permission denied\n",
        ),
        (KeyboardInterrupt(), 130, "Aborted!\n"),
    ],
)
def test_user_errors_applies_the_contract(error: BaseException, code: int, line: str) -> None:
    @click.command()
    @user_errors
    def cmd() -> None:
        raise error

    result = CliRunner().invoke(cmd, [])
    assert result.exit_code == code and result.stderr == line and "Traceback" not in result.output


def test_stale_partials_of_dead_writers_are_removed(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f".out.json.{pid}.k3j2.partial").write_text("half")
    (tmp_path / f".exports.{pid}.x1.partial").mkdir()
    (tmp_path / f".exports.{pid}.x1.partial" / "a.onnx").write_text("half")
    live = tmp_path / f".other.json.{os.getpid()}.q9.partial"
    live.write_text("being written")
    (tmp_path / "out.json").write_text("{}")
    removed = remove_stale_partials(tmp_path)
    assert sorted(p.name for p in removed) == [f".exports.{pid}.x1.partial", f".out.json.{pid}.k3j2.partial"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out.json"]
