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
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
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


class _Hashing:
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


class _ChunksReader:
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
        hashing = _Hashing(chunks)
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


class S3Store(BackupStore):
    def __init__(self, url: str, *, endpoint: str | None) -> None:
        parsed = urlparse(url)
        if not parsed.netloc:
            raise ImproperlyConfigured(f"BERTH_BACKUP_URL={url!r}: use s3://bucket/prefix")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.description = url
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint or None,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, chunks: Iterable[bytes]) -> StoredObject:
        hashing = _Hashing(chunks)
        try:
            self.client.upload_fileobj(
                _ChunksReader(hashing),
                self.bucket,
                self._key(key),
                Config=TransferConfig(
                    multipart_chunksize=S3_PART, multipart_threshold=S3_PART, max_concurrency=2
                ),
            )
            stored = hashing.stored
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key) + ".sha256", Body=(stored.sha256 + "\n").encode()
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise BackupStoreError(f"could not write backup {key} to {self.description}: {exc}") from exc
        return stored

    def open(self, key: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise BackupStoreError(f"could not read backup {key} from {self.description}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            for each in (key, key + ".sha256"):
                self.client.delete_object(Bucket=self.bucket, Key=self._key(each))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise BackupStoreError(f"could not delete backup {key} from {self.description}: {exc}") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except botocore.exceptions.ClientError:
            return False


def backup_store() -> BackupStore:
    """The store BERTH_BACKUP_URL names: s3://bucket/prefix, or a folder (default BERTH_HOME/backups)."""
    url = settings.BERTH_BACKUP_URL or ""
    if url.startswith("s3://"):
        return S3Store(url, endpoint=settings.BERTH_BACKUP_S3_ENDPOINT or None)
    if url and "://" in url and not url.startswith("file://"):
        raise ImproperlyConfigured(f"BERTH_BACKUP_URL={url!r}: use s3://bucket/prefix or a folder")
    folder = Path(url.removeprefix("file://")) if url else Path(settings.BERTH_HOME) / "backups"
    return FolderStore(folder)
