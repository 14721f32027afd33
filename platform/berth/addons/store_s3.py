"""Add-on backups in any S3-compatible store (BERTH_BACKUP_URL=s3://bucket/prefix; berth.addons.store picks it)."""

from collections.abc import Iterable
from typing import BinaryIO
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from django.core.exceptions import ImproperlyConfigured

from berth.addons.store_base import (
    S3_PART,
    BackupStore,
    BackupStoreError,
    ChunksReader,
    HashingChunks,
    StoredObject,
)


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
        hashing = HashingChunks(chunks)
        try:
            self.client.upload_fileobj(
                ChunksReader(hashing),
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
