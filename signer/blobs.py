"""Content-addressed storage of document revisions (the PDF bytes).

A blob is named by the SHA-256 of its bytes, so a stored revision cannot change without its
name changing: :meth:`BlobStore.get` checks the hash of what it read and refuses a blob that
does not match (disk corruption, tampering). The database keeps the hashes; the bytes live
here.

:class:`FilesystemBlobStore` keeps ``<root>/ab/cd/<sha256>``. A write goes to a temporary
file in the same directory, is flushed to disk, renamed over the final name and the
directory entry flushed too, so a crash leaves either the whole blob or none (possibly a
``.tmp-*`` file, never read, safe to delete). Blobs are never deleted or rewritten in
place by Kyso: a revision's bytes are evidence.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from signer.errors import BlobError

DEFAULT_MAX_BLOB_SIZE = 256 * 1024 * 1024
"""Largest blob a store accepts by default: above any PDF Kyso lets in, plus the room a
B-LT/B-LTA signature's validation data takes."""

_SHA256_HEX = re.compile(r"[0-9a-f]{64}", re.ASCII)
_TEMP_PREFIX = ".tmp-"


def blob_name(data: bytes) -> str:
    """The name a blob of ``data`` gets: its SHA-256, lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def _check_name(sha256: object) -> str:
    # Only 64 lower-case hex digits become a path: no separator, no "..", nothing else.
    if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
        raise BlobError(
            f"a blob name is 64 lower-case hex digits (a SHA-256), got {sha256!r:.80}",
            code="signer.blob_bad_name",
        )
    return sha256


class BlobStore(Protocol):
    """Where revisions' bytes are kept. Implementations are thread-safe, ``put`` is
    idempotent and ``get`` returns only bytes whose SHA-256 is the name asked for."""

    @property
    def max_size(self) -> int:
        """Largest blob accepted, in bytes."""
        ...

    def put(self, data: bytes) -> str:
        """Store ``data`` durably (on return it survives a crash); returns its SHA-256 hex.

        Raises :class:`~signer.errors.BlobError` (``signer.blob_too_large``,
        ``signer.blob_storage``)."""
        ...

    def get(self, sha256: str) -> bytes:
        """The bytes stored under ``sha256``, verified against it.

        Raises :class:`~signer.errors.BlobError`: ``signer.blob_not_found``,
        ``signer.blob_corrupt``, ``signer.blob_bad_name``, ``signer.blob_storage``."""
        ...


class FilesystemBlobStore:
    """Blobs as files under ``root`` (created on first use, mode 0700 directories and 0600
    files: revisions hold citizens' personal data)."""

    def __init__(self, root: Path | str, *, max_size: int = DEFAULT_MAX_BLOB_SIZE) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError("max_size must be a positive number of bytes")
        self._root = Path(root)
        self._max_size = max_size

    @property
    def root(self) -> Path:
        return self._root

    @property
    def max_size(self) -> int:
        return self._max_size

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` is (or would be) kept."""
        name = _check_name(sha256)
        return self._root / name[:2] / name[2:4] / name

    def put(self, data: bytes) -> str:
        if not isinstance(data, bytes):
            raise TypeError("a blob is bytes")
        if len(data) > self._max_size:
            raise BlobError(
                f"the blob is {len(data)} bytes, the store's limit is {self._max_size}",
                code="signer.blob_too_large",
            )
        sha256 = blob_name(data)
        target = self.path(sha256)
        try:
            if self._holds(target, data):
                return sha256
            self._make_dirs(target.parent)
            self._write_atomically(target, data)
        except OSError as ex:
            raise BlobError(
                f"storing blob {sha256} failed: {ex.strerror or type(ex).__name__}",
                code="signer.blob_storage",
            ) from ex
        return sha256

    def get(self, sha256: str) -> bytes:
        path = self.path(sha256)
        try:
            with path.open("rb") as handle:
                # One byte over the limit is enough to know the file is not a blob we wrote.
                data = handle.read(self._max_size + 1)
        except FileNotFoundError:
            raise BlobError(f"no blob {sha256}", code="signer.blob_not_found") from None
        except OSError as ex:
            raise BlobError(
                f"reading blob {sha256} failed: {ex.strerror or type(ex).__name__}",
                code="signer.blob_storage",
            ) from ex
        if len(data) > self._max_size or blob_name(data) != sha256:
            raise BlobError(
                f"blob {sha256} is corrupt: its bytes no longer hash to its name",
                code="signer.blob_corrupt",
            )
        return data

    @staticmethod
    def _holds(target: Path, data: bytes) -> bool:
        """Whether ``target`` already holds exactly ``data``. A damaged copy (same name,
        other bytes) is replaced by the good one rather than kept."""
        try:
            if target.stat().st_size != len(data):
                return False
            return target.read_bytes() == data
        except FileNotFoundError:
            return False

    def _make_dirs(self, directory: Path) -> None:
        missing = []
        current = directory
        while not current.exists():
            missing.append(current)
            if current == current.parent:
                break
            current = current.parent
        for created in reversed(missing):
            with contextlib.suppress(FileExistsError):  # a concurrent put made it
                created.mkdir(mode=0o700)
            # The new directory's entry must reach the disk before a blob under it counts.
            _fsync_directory(created.parent)

    @staticmethod
    def _write_atomically(target: Path, data: bytes) -> None:
        descriptor, temporary = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
