"""Where add-on backups live: a folder under BERTH_HOME by default, any S3-compatible store when
BERTH_BACKUP_URL=s3://bucket/prefix (endpoint in BERTH_BACKUP_S3_ENDPOINT, credentials the AWS_* way boto3 reads).

A backup goes in as a stream of chunks and comes out as a binary stream: a dump is never held in memory whole.
Each object is written with its sha256 beside it (`<key>.sha256`), so a backup can be checked wherever it is read;
a local object appears under its name only once complete (written to `.partial`, then renamed).
"""

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

CHUNK = 1024 * 1024
S3_PART = 16 * 1024 * 1024  # multipart part size: at most this much of a dump in memory at once


class BackupStoreError(RuntimeError):
    pass


@dataclass(frozen=True)
class StoredObject:
    size: int
    sha256: str


class HashingChunks:
    """Counts and hashes the chunks that pass through it."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.digest = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            if chunk:
                self.digest.update(chunk)
                self.size += len(chunk)
                yield chunk

    @property
    def stored(self) -> StoredObject:
        return StoredObject(size=self.size, sha256=self.digest.hexdigest())


class ChunksReader:
    """A read()-able file over an iterator of chunks (what boto3's upload_fileobj takes)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


class BackupStore:
    """The interface: put a stream under a key, open it again, delete it."""

    description = ""

    def put(self, key: str, chunks: Iterable[bytes]) -> StoredObject:
        raise NotImplementedError

    def open(self, key: str) -> BinaryIO:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError


class FolderStore(BackupStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = str(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise BackupStoreError(f"backup key {key!r} leaves the store")
        return path

    def put(self, key: str, chunks: Iterable[bytes]) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(path.name + ".partial")
        hashing = HashingChunks(chunks)
        try:
            with open(partial, "wb") as f:
                for chunk in hashing:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            stored = hashing.stored
            path.with_name(path.name + ".sha256").write_text(stored.sha256 + "\n")
            partial.rename(path)
        finally:
            partial.unlink(missing_ok=True)
        return stored

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise BackupStoreError(f"backup object {key} is missing from {self.description}") from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        for each in (path, path.with_name(path.name + ".sha256"), path.with_name(path.name + ".partial")):
            each.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


def backup_store() -> BackupStore:
    """The store BERTH_BACKUP_URL names: s3://bucket/prefix, or a folder (default BERTH_HOME/backups)."""
    url = settings.BERTH_BACKUP_URL or ""
    if url.startswith("s3://"):
        # boto3 and botocore, ~20 MB of every process that imports them (the worker's main process and each of its
        # forks, issue 17's idle footprint), are imported only by an installation that keeps its backups in S3
        from berth.addons.store_s3 import S3Store

        return S3Store(url, endpoint=settings.BERTH_BACKUP_S3_ENDPOINT or None)
    if url and "://" in url and not url.startswith("file://"):
        raise ImproperlyConfigured(f"BERTH_BACKUP_URL={url!r}: use s3://bucket/prefix or a folder")
    folder = Path(url.removeprefix("file://")) if url else Path(settings.BERTH_HOME) / "backups"
    return FolderStore(folder)
