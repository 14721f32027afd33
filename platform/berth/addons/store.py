"""Where add-on backups live: a folder under BERTH_HOME by default, any S3-compatible store when
BERTH_BACKUP_URL=s3://bucket/prefix (endpoint in BERTH_BACKUP_S3_ENDPOINT, credentials the AWS_* way boto3 reads).

A backup goes in as a stream of chunks and comes out as a binary stream: a dump is never held in memory whole.
Each object is written with its sha256 beside it (`<key>.sha256`), so a backup can be checked wherever it is read;
a local object appears under its name only once complete (written to `.partial`, then renamed).
"""

import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from berth.addons.store_base import CHUNK, BackupStore, BackupStoreError, HashingChunks, StoredObject

__all__ = ["CHUNK", "BackupStore", "BackupStoreError", "FolderStore", "StoredObject", "backup_store"]


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
        # Deferred, not for a cycle (store_s3 imports only store_base): boto3 and botocore are ~4 MB of every
        # process that imports them (the worker's main process, and each fork of it: issue 17's idle footprint),
        # and only an installation that keeps its backups in S3 needs them
        from berth.addons.store_s3 import S3Store

        return S3Store(url, endpoint=settings.BERTH_BACKUP_S3_ENDPOINT or None)
    if url and "://" in url and not url.startswith("file://"):
        raise ImproperlyConfigured(f"BERTH_BACKUP_URL={url!r}: use s3://bucket/prefix or a folder")
    folder = Path(url.removeprefix("file://")) if url else Path(settings.BERTH_HOME) / "backups"
    return FolderStore(folder)
