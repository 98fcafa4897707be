"""Where uploaded audio lives: a small `AudioStore` protocol with two backends.

- `LocalAudioStore` (local.py): a directory, the embedded default; the API serves its files itself, with HTTP
  Range support. One node only: every API replica must see the same directory.
- `S3AudioStore` (s3.py): any S3-compatible service (Cloudflare R2, MinIO, AWS); players are redirected to a
  public bucket URL or to a presigned GET, so audio bytes never pass through the API on playback.

Objects are content-addressed: the key is `audio/<sha256 of the bytes>`. The same bytes uploaded twice are one
object, an object never changes once written, and a record's `audioUrl` stays valid whatever backend holds it.
The backend is chosen by configuration (`S3_BUCKET` set → S3, else the local directory), see settings.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import msgspec

from indexer.settings import StorageSettings

PREFIX = "audio/"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def audio_key(sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a lowercase hex sha256: {sha256[:80]!r}")
    return PREFIX + sha256


def sha256_of_key(key: str) -> str | None:
    """The digest an object key names, None for anything else found in the store (stray files, other data)."""
    sha = key.removeprefix(PREFIX)
    return sha if key.startswith(PREFIX) and _SHA256.fullmatch(sha) else None


class StoredObject(msgspec.Struct, frozen=True):
    key: str
    size: int
    # Seconds since the epoch: when the object was (last) written.
    modified: float


class AudioStore(Protocol):
    """Backends hold immutable, content-addressed objects; every method is safe to repeat."""

    @property
    def spool_dir(self) -> Path | None:
        """Where uploads are spooled before `put_file`; the local backend spools next to its objects so that
        storing is a rename, not a copy. None: the system temporary directory."""
        ...

    async def put_file(self, key: str, path: Path, *, content_type: str) -> bool:
        """Store the file at `path` under `key` unless an object is already there. True if it was written.
        Either the whole object is stored or nothing is (no partial object under `key`, ever)."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    def list(self) -> AsyncIterator[StoredObject]:
        """Every object under the audio prefix."""
        ...

    async def local_path(self, key: str) -> Path | None:
        """The file to serve (with Range) when this backend's objects are local files, else None."""
        ...

    async def url(self, key: str) -> str | None:
        """A URL players can fetch the object from directly (public or presigned), None for a local backend."""
        ...

    @property
    def url_is_public(self) -> bool:
        """Whether `url` is a permanent public address (else it expires)."""
        ...


@asynccontextmanager
async def open_store(settings: StorageSettings) -> AsyncIterator[AudioStore]:
    if settings.s3_bucket:
        from indexer.audio.store.s3 import S3AudioStore

        async with S3AudioStore.open(settings) as s3:
            yield s3
    else:
        from indexer.audio.store.local import LocalAudioStore

        yield LocalAudioStore(settings.audio_dir)


__all__ = ["PREFIX", "AudioStore", "StorageSettings", "StoredObject", "audio_key", "open_store", "sha256_of_key"]
