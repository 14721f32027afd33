"""The backup store: a folder under BERTH_HOME, or an S3-compatible store (a moto server this module starts on
127.0.0.1, stopped by its PID after; the client is the real boto3). Objects go in as streams with their sha256."""

import hashlib

import boto3
import pytest
from berth.addons.store import BackupStoreError, FolderStore, backup_store
from berth.addons.store_s3 import S3Store


def _chunks(total: int, size: int = 256 * 1024):
    """A stream of `total` bytes that are not all alike, made as it is read."""
    sent = 0
    n = 0
    while sent < total:
        part = hashlib.sha256(str(n).encode()).digest() * (size // 32)
        part = part[: total - sent]
        sent += len(part)
        n += 1
        yield part


def _expected(total: int) -> str:
    digest = hashlib.sha256()
    for chunk in _chunks(total):
        digest.update(chunk)
    return digest.hexdigest()


def test_folder_store_streams_a_backup_in_and_out_with_its_checksum(tmp_path):
    store = FolderStore(tmp_path / "backups")
    stored = store.put("acme/db/b001.dump", _chunks(5 * 1024 * 1024 + 17))
    assert stored.size == 5 * 1024 * 1024 + 17
    assert stored.sha256 == _expected(stored.size)
    path = tmp_path / "backups/acme/db/b001.dump"
    assert path.with_name("b001.dump.sha256").read_text().strip() == stored.sha256
    with store.open("acme/db/b001.dump") as f:
        assert hashlib.sha256(f.read()).hexdigest() == stored.sha256
    store.delete("acme/db/b001.dump")
    assert not store.exists("acme/db/b001.dump")
    assert list(path.parent.iterdir()) == []


def test_folder_store_keeps_no_object_of_a_failed_stream(tmp_path):
    store = FolderStore(tmp_path)

    def broken():
        yield b"x" * 1000
        raise RuntimeError("the dump died")

    with pytest.raises(RuntimeError):
        store.put("t/a/b002.dump", broken())
    assert not store.exists("t/a/b002.dump")
    assert [p.name for p in (tmp_path / "t/a").iterdir()] == []


def test_folder_store_refuses_a_key_outside_it(tmp_path):
    with pytest.raises(BackupStoreError):
        FolderStore(tmp_path / "b").put("../escape", [b"x"])


def test_the_default_store_is_a_folder_under_berth_home(settings, tmp_path):
    settings.BERTH_BACKUP_URL = ""
    settings.BERTH_HOME = tmp_path
    store = backup_store()
    assert isinstance(store, FolderStore) and store.root == tmp_path / "backups"


def test_s3_store_streams_a_multipart_backup_in_and_out(s3_env, settings):
    endpoint, bucket = s3_env
    settings.BERTH_BACKUP_URL = f"s3://{bucket}/nightly"
    settings.BERTH_BACKUP_S3_ENDPOINT = endpoint
    store = backup_store()
    assert isinstance(store, S3Store)
    total = 40 * 1024 * 1024 + 5  # more than two 16 MB parts
    stored = store.put("acme/db/b001.dump", _chunks(total))
    assert stored.size == total and stored.sha256 == _expected(total)
    raw = boto3.client("s3", endpoint_url=endpoint)
    sidecar = raw.get_object(Bucket=bucket, Key="nightly/acme/db/b001.dump.sha256")["Body"].read()
    assert sidecar.decode().strip() == stored.sha256
    digest = hashlib.sha256()
    body = store.open("acme/db/b001.dump")
    while chunk := body.read(1024 * 1024):
        digest.update(chunk)
    assert digest.hexdigest() == stored.sha256
    store.delete("acme/db/b001.dump")
    assert not store.exists("acme/db/b001.dump")


def test_s3_store_names_a_missing_object(s3_env, settings):
    endpoint, bucket = s3_env
    store = S3Store(f"s3://{bucket}", endpoint=endpoint)
    with pytest.raises(BackupStoreError, match="could not read backup"):
        store.open("nothing/here.dump")
