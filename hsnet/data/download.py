"""``--download``: fetch an official archive, verify its checksum, extract it safely, all or nothing.

A file is streamed into a hidden ``.partial`` sibling while it is hashed, and renamed into place only when its
checksum is one of the expected ones; a mismatch, an HTTP error or Ctrl-C leaves nothing behind. Archives are
extracted into a hidden staging folder with :func:`tarfile.data_filter` after every member has been checked
(relative path inside the expected top folder, regular file or folder only), then renamed into place.
Nothing here runs unless the user asks for a download.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hsnet.data.base import DataError, default_data_dir
from hsnet.data.mnist import DEBIAN_FASHION_GZ_SHA256, GZ_MD5, IDX_FILES
from hsnet.toolbox.atomic import atomic_path
from hsnet.toolbox.progress import progress

__all__ = ["SOURCES", "Source", "download", "ensure_downloaded", "extract_tar", "fetch"]


@dataclass(frozen=True)
class Source:
    """Where a dataset is published and how to check it.

    Attributes:
        url: the archive's URL, or the base URL of the files (ending in ``/``).
        files: file name -> accepted checksums (``"md5:<hex>"`` / ``"sha256:<hex>"``).
        folder: the folder the data ends up in, under the data dir.
        archive: True for one ``.tar.gz`` whose single top folder is ``folder``; False for plain files put in it.
    """

    url: str
    files: Mapping[str, tuple[str, ...]]
    folder: str
    archive: bool


_IDX_GZ = tuple(f"{stem}.gz" for split in ("train", "test") for stem in IDX_FILES[split])
SOURCES: dict[str, Source] = {
    "cifar10": Source(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        {"cifar-10-python.tar.gz": ("md5:c58f30108f718f92721af3b95e74349a",)},
        "cifar-10-batches-py",
        archive=True,
    ),
    "cifar100": Source(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        {"cifar-100-python.tar.gz": ("md5:eb9058c3a382ffc7106e4002c42a8d85",)},
        "cifar-100-python",
        archive=True,
    ),
    "fashion-mnist": Source(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {f: (f"md5:{GZ_MD5['fashion-mnist'][f]}", f"sha256:{DEBIAN_FASHION_GZ_SHA256[f]}") for f in _IDX_GZ},
        "fashion-mnist",
        archive=False,
    ),
    "mnist": Source(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {f: (f"md5:{GZ_MD5['mnist'][f]}",) for f in _IDX_GZ},
        "mnist",
        archive=False,
    ),
}
_CHUNK = 1 << 20


def _chunks(response, size: int) -> Iterator[bytes]:  # noqa: ANN001 - an http.client.HTTPResponse
    while chunk := response.read(size):
        yield chunk


def fetch(url: str, dest: str | Path, checksums: Sequence[str], *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` if its md5/sha256 is one of ``checksums``; otherwise leave no file at all.

    Raises:
        DataError: not an http(s) URL, a network or HTTP error, or a checksum mismatch (expected vs got).
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DataError(f"refusing to download {url!r}: only http and https URLs")
    if not checksums:
        raise DataError(f"refusing to download {url} without a checksum to verify it")
    dest = Path(dest)
    hashers = {a: hashlib.new(a) for a in sorted({c.split(":", 1)[0] for c in checksums})}
    try:
        with atomic_path(dest) as tmp, urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
            length = response.headers.get("Content-Length")
            total = -(-int(length) // _CHUNK) if length and length.isdigit() else None
            received = 0
            for chunk in progress(_chunks(response, _CHUNK), total=total, desc=f"downloading {dest.name} (MiB)"):
                f.write(chunk)
                received += len(chunk)
                for h in hashers.values():
                    h.update(chunk)
            if total is not None and received != int(length):
                raise DataError(f"cannot download {url}: connection closed after {received} of {length} bytes")
            got = {a: h.hexdigest() for a, h in hashers.items()}
            if not any(got[c.split(":", 1)[0]] == c.split(":", 1)[1].lower() for c in checksums):
                found = ", ".join(f"{a}:{h}" for a, h in got.items())
                raise DataError(
                    f"{url}: checksum mismatch: expected {' or '.join(checksums)}, got {found}; nothing was kept"
                )
            f.flush()
            os.fsync(f.fileno())
    except urllib.error.HTTPError as e:
        raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, a body cut short
        reason = getattr(e, "reason", None) or e
        raise DataError(f"cannot download {url}: {reason}") from None
    return dest


def _check_member(member: tarfile.TarInfo, top: str, archive: Path) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] != top:
        raise DataError(f"{archive}: refusing member {member.name!r}: outside the expected folder {top}/")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"{archive}: refusing member {member.name!r}: links and special files are not allowed")


def extract_tar(archive: str | Path, dest_dir: str | Path, top: str) -> Path:
    """Extract a ``.tar.gz`` whose members all live under ``top/`` into ``dest_dir/top``, atomically.

    Every member is checked before anything is written; the data is extracted into a hidden staging folder and
    renamed into place (replacing an old ``dest_dir/top``) only when extraction finished.

    Raises:
        DataError: the archive is unreadable, or a member escapes ``top/`` (absolute path, ``..``) or is a link or
            a special file; nothing is left in ``dest_dir``.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{top}.extract-", suffix=".partial"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, top, archive)
            if not any(m.isfile() for m in members):
                raise DataError(f"{archive}: archive holds no files under {top}/")
            tar.extractall(stage, members=members, filter="data")
        with atomic_path(dest_dir / top) as tmp:
            os.replace(stage / top, tmp)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{archive}: cannot extract ({e})") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest_dir / top


def download(
    name: str,
    data_dir: str | Path | None = None,
    *,
    url: str | None = None,
    checksums: Mapping[str, Sequence[str]] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download and verify a named dataset into ``data_dir`` (default: the cache), replacing what was there.

    Args:
        name: a key of :data:`SOURCES` (``"cifar10"``, ``"cifar100"``, ``"fashion-mnist"``, ``"mnist"``).
        data_dir: where the dataset folder is created (``cifar-10-batches-py``, ``fashion-mnist``, ...).
        url: replaces the official URL (a mirror, or a test server): the archive's URL, or for MNIST-style datasets
            the base URL the four ``.gz`` files are under.
        checksums: replaces the official checksums, file name -> accepted ``"md5:<hex>"``/``"sha256:<hex>"``.
        timeout: seconds to wait on the network per read.

    Returns:
        the dataset folder.

    Raises:
        DataError: unknown name, network failure, checksum mismatch, unsafe archive. Nothing partial is left.
    """
    if name not in SOURCES:
        raise DataError(f"no download for {name!r}; downloadable datasets: {', '.join(SOURCES)}")
    source = SOURCES[name]
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    expected = dict(checksums) if checksums is not None else source.files
    if source.archive:
        (archive_name,) = source.files
        with tempfile.TemporaryDirectory(dir=_mkdir(data_dir), prefix=f".{archive_name}.", suffix=".partial") as tmp:
            archive = fetch(
                url or source.url, Path(tmp) / archive_name, _expected(expected, archive_name), timeout=timeout
            )
            return extract_tar(archive, data_dir, source.folder)
    folder = _mkdir(data_dir / source.folder)
    base = url or source.url
    base = base if base.endswith("/") else base + "/"
    for file_name in source.files:
        checks = _expected(expected, file_name)
        fetch(urllib.parse.urljoin(base, file_name), folder / file_name, checks, timeout=timeout)
    return folder


def _expected(checksums: Mapping[str, Sequence[str]], file_name: str) -> tuple[str, ...]:
    if file_name not in checksums:
        raise DataError(f"no checksum given for {file_name}; checksums are known for {', '.join(checksums)}")
    return tuple(checksums[file_name])


def _mkdir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create data folder {path}: {e.strerror or e}") from None
    return path


def ensure_downloaded(name: str, data_dir: str | Path | None = None) -> None:
    """Download ``name`` into ``data_dir`` unless the data is already found there (for ``--download``).

    Raises:
        DataError: as :func:`download`.
    """
    from hsnet.data.cifar import find_cifar_dir
    from hsnet.data.mnist import find_idx_dir

    try:
        if name in ("mnist", "fashion-mnist"):
            find_idx_dir(name, "train", data_dir)
            find_idx_dir(name, "test", data_dir)
        else:
            find_cifar_dir(name, data_dir)
        return
    except DataError:
        pass
    download(name, data_dir)
