"""--download against a real HTTP server on loopback: verified, atomic, safe extraction, nothing left on failure."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from hsnet.data import DataError, load_arrays
from hsnet.data import download as dl
from hsnet.data.cifar import write_cifar_folder
from hsnet.data.mnist import DEBIAN_FASHION_MNIST_DIR


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@contextlib.contextmanager
def _serve(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 from a thread; yields the base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def server(tmp_path):
    """A loopback server of an empty folder; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    with _serve(root) as base:
        yield root, base


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _cifar_archive(tmp_path: Path, dest: Path) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    write_cifar_folder(
        tmp_path / "src", "cifar10", {"train": (images, np.arange(6) % 10), "test": (images[:2], [3, 4])}
    )
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return dest


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_download_verifies_and_extracts(server, tmp_path):
    www, base = server
    archive = _cifar_archive(tmp_path, www / "cifar-10-python.tar.gz")
    data = tmp_path / "data"
    folder = dl.download(
        "cifar10", data, url=base + archive.name, checksums={"cifar-10-python.tar.gz": [_sha256(archive)]}
    )
    assert folder == data / "cifar-10-batches-py"
    files = ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
    # the archive itself and every temporary are gone
    assert _listing(data) == ["cifar-10-batches-py", *(f"cifar-10-batches-py/{n}" for n in files)]
    arrays = load_arrays("cifar10", "test", data_dir=data, verify=False)
    assert arrays.labels.tolist() == [3, 4]


def test_load_arrays_downloads_only_when_asked(server, tmp_path, monkeypatch):
    www, base = server
    archive = _cifar_archive(tmp_path, www / "c10.tar.gz")
    source = dl.SOURCES["cifar10"]
    monkeypatch.setitem(
        dl.SOURCES, "cifar10", dl.Source(base + "c10.tar.gz", {source.folder + ".tgz": (_sha256(archive),)},
                                         source.folder, archive=True),
    )  # fmt: skip
    data = tmp_path / "data"
    with pytest.raises(DataError, match=r"cifar10 not found .*--download"):
        load_arrays("cifar10", "train", data_dir=data, verify=False)
    assert not data.exists()
    assert len(load_arrays("cifar10", "train", data_dir=data, download=True, verify=False)) == 6
    archive.unlink()  # found now: a second call does not download again
    assert len(load_arrays("cifar10", "train", data_dir=data, download=True, verify=False)) == 6


def test_corrupted_download_leaves_nothing(server, tmp_path):
    www, base = server
    archive = _cifar_archive(tmp_path, www / "cifar-10-python.tar.gz")
    expected = _sha256(archive)
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # the server now sends different bytes
    archive.write_bytes(bytes(raw))
    data = tmp_path / "data"
    with pytest.raises(DataError, match=rf"checksum mismatch: expected {expected}, got sha256:[0-9a-f]{{64}}; nothing"):
        dl.download("cifar10", data, url=base + archive.name, checksums={archive.name: [expected]})
    assert _listing(data) == []  # not even a hidden .partial


def test_official_checksum_table_is_used_by_default(server, tmp_path):
    www, base = server
    archive = _cifar_archive(tmp_path, www / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match=r"expected md5:c58f30108f718f92721af3b95e74349a, got md5:"):
        dl.download("cifar10", tmp_path / "data", url=base + archive.name)
    assert _listing(tmp_path / "data") == []


def _evil_archive(path: Path, name: str, kind: bytes = tarfile.REGTYPE) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    return path


@pytest.mark.parametrize(
    ("member", "kind"),
    [
        ("../evil.txt", tarfile.REGTYPE),
        ("cifar-10-batches-py/../../evil.txt", tarfile.REGTYPE),
        ("/tmp/evil.txt", tarfile.REGTYPE),
        ("other-folder/evil.txt", tarfile.REGTYPE),
        ("cifar-10-batches-py/link", tarfile.SYMTYPE),
    ],
)
def test_path_traversal_and_links_are_refused(server, tmp_path, member, kind):
    www, base = server
    archive = _evil_archive(www / "evil.tar.gz", member, kind)
    data = tmp_path / "data"
    with pytest.raises(DataError, match=rf"refusing member {member!r}"):
        dl.download("cifar10", data, url=base + archive.name, checksums={"cifar-10-python.tar.gz": [_sha256(archive)]})
    assert _listing(data) == [] and not (tmp_path / "evil.txt").exists()


def test_http_errors_and_bad_urls(server, tmp_path):
    _, base = server
    with pytest.raises(DataError, match=r"cannot download .*missing.tar.gz: HTTP 404"):
        dl.download(
            "cifar10", tmp_path / "d", url=base + "missing.tar.gz", checksums={"cifar-10-python.tar.gz": ["md5:0"]}
        )
    with pytest.raises(DataError, match=r"only http and https"):
        dl.fetch("file:///etc/passwd", tmp_path / "x", ["md5:0"])
    with pytest.raises(DataError, match=r"no download for 'folder'"):
        dl.download("folder", tmp_path)
    assert _listing(tmp_path / "d") == []


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_files_download_with_the_builtin_checksums(tmp_path):
    # Debian's own files served over loopback pass the built-in table (Debian sha256 or Zalando md5).
    with _serve(DEBIAN_FASHION_MNIST_DIR) as base:
        folder = dl.download("fashion-mnist", tmp_path / "data", url=base.rstrip("/"))
    assert folder == tmp_path / "data" / "fashion-mnist" and len(list(folder.iterdir())) == 4
    assert load_arrays("fashion-mnist", "test", data_dir=tmp_path / "data").class_counts().tolist() == [1000] * 10


class _CutShortHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - name fixed by the base class
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"x" * 1000)  # then the connection closes

    def log_message(self, format, *args):  # noqa: A002
        pass


def test_connection_cut_short_leaves_nothing(tmp_path):
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _CutShortHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with pytest.raises(DataError, match=r"a.tar.gz: connection closed after 1000 of 100000 bytes"):
            dl.fetch(f"http://127.0.0.1:{httpd.server_address[1]}/a.tar.gz", tmp_path / "d" / "a.tar.gz", ["md5:0"])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert _listing(tmp_path / "d") == []
