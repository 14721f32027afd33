"""What every add-on backup store shares (berth.addons.store: the folder; berth.addons.store_s3: S3): the store's
interface, its error, a stored object's size and sha256, and the chunk streams a backup goes in and comes out as."""

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

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
