"""The filesystem blob store: content addressing, atomic and idempotent writes, corruption
detection on read, and names that can never become a path outside the store."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from signer.blobs import FilesystemBlobStore, blob_name
from signer.errors import BlobError, SignerError

DATA = b"%PDF-1.7\n" + "Giấy xác nhận thông tin về cư trú".encode() + bytes(range(256))


def files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_put_returns_the_sha256_and_get_returns_the_bytes(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    name = store.put(DATA)

    assert name == hashlib.sha256(DATA).hexdigest() == blob_name(DATA)
    assert store.get(name) == DATA
    path = tmp_path / "blobs" / name[:2] / name[2:4] / name
    assert store.path(name) == path
    assert files(tmp_path / "blobs") == [path]
    # Revisions hold personal data: owner-only files and directories.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.get(store.put(b"")) == b""


def test_put_is_idempotent_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    name = store.put(DATA)
    before = store.path(name).stat()

    assert store.put(DATA) == name
    after = store.path(name).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert files(tmp_path) == [store.path(name)]


def test_concurrent_puts_of_the_same_and_of_other_blobs(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    blobs = [DATA + bytes([i % 4]) for i in range(32)]
    barrier = threading.Barrier(8)
    names: list[str] = []

    def put_all(offset: int) -> None:
        barrier.wait()
        names.extend(store.put(blobs[(offset + i) % 32]) for i in range(32))

    threads = [threading.Thread(target=put_all, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(names) == 8 * 32
    assert set(names) == {blob_name(blob) for blob in blobs[:4]}
    assert [store.get(name) for name in sorted(set(names))] == sorted(blobs[:4], key=blob_name)
    assert len(files(tmp_path)) == 4


def test_corruption_is_detected_on_read_and_repaired_by_a_put(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    name = store.put(DATA)
    path = store.path(name)
    damaged = bytearray(DATA)
    damaged[100] ^= 0x01
    path.write_bytes(bytes(damaged))

    with pytest.raises(BlobError, match="corrupt") as raised:
        store.get(name)
    assert raised.value.code == "signer.blob_corrupt"
    assert isinstance(raised.value, SignerError)

    path.write_bytes(DATA[:-1])  # truncated
    with pytest.raises(BlobError, match="corrupt"):
        store.get(name)

    # Putting the right bytes again replaces the damaged copy.
    assert store.put(DATA) == name
    assert store.get(name) == DATA


def test_a_file_over_the_limit_is_not_read_whole(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path, max_size=64)
    name = store.put(b"x" * 64)
    store.path(name).write_bytes(b"x" * 10_000)
    with pytest.raises(BlobError) as raised:
        store.get(name)
    assert raised.value.code == "signer.blob_corrupt"


def test_size_limit_on_put(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path, max_size=10)
    assert store.put(b"0123456789")
    with pytest.raises(BlobError, match="11 bytes, the store's limit is 10") as raised:
        store.put(b"0123456789a")
    assert raised.value.code == "signer.blob_too_large"
    with pytest.raises(ValueError, match="max_size"):
        FilesystemBlobStore(tmp_path, max_size=0)


@pytest.mark.parametrize(
    "name",
    [
        "../../../etc/passwd",
        "/etc/passwd",
        "A" * 64,  # upper case is not the canonical name
        "a" * 63,
        "a" * 65,
        "a" * 62 + "/x",
        "a" * 63 + "\n",
        "",
        None,
        64,
    ],
)
def test_only_sha256_names_are_accepted(tmp_path: Path, name: object) -> None:
    store = FilesystemBlobStore(tmp_path / "store")
    with pytest.raises(BlobError, match="64 lower-case hex digits") as raised:
        store.get(name)  # type: ignore[arg-type]
    assert raised.value.code == "signer.blob_bad_name"
    with pytest.raises(BlobError):
        store.path(name)  # type: ignore[arg-type]


def test_missing_blob(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    with pytest.raises(BlobError, match="no blob") as raised:
        store.get("0" * 64)
    assert raised.value.code == "signer.blob_not_found"


def test_a_failed_write_leaves_neither_the_blob_nor_a_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemBlobStore(tmp_path)
    real_fsync = os.fsync

    def disk_full(descriptor: int) -> None:
        # Directories flush fine; the blob's own data does not reach the disk.
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(28, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(BlobError, match="No space left on device") as raised:
        store.put(DATA)
    assert raised.value.code == "signer.blob_storage"
    monkeypatch.undo()

    assert files(tmp_path) == []
    with pytest.raises(BlobError, match="no blob"):
        store.get(blob_name(DATA))
    # Nothing half-done blocks the next attempt.
    assert store.get(store.put(DATA)) == DATA


def test_a_crash_before_the_rename_never_exposes_a_partial_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemBlobStore(tmp_path)
    written: list[Path] = []
    real_replace = os.replace

    def crash(source: str, target: str) -> None:
        written.append(Path(source))
        assert Path(source).read_bytes() == DATA  # complete and flushed before the rename
        assert Path(source).parent == Path(target).parent  # same directory: atomic rename
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.put(DATA)
    monkeypatch.setattr(os, "replace", real_replace)

    assert written
    assert not store.path(blob_name(DATA)).exists()
    assert files(tmp_path) == []
