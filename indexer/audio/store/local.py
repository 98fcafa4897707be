"""A directory as the audio store: `<root>/audio/<sha256>`.

Writes are atomic: the upload is spooled in `<root>/.incoming/` (same filesystem), hard-linked to a private
name and renamed over the final key, so a reader sees either nothing or the whole file, and a crash leaves at
most a stray file in `.incoming/`, never a partial object. The API serves these files itself (appview/
audio_files.py, with Range)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from indexer.audio.store import PREFIX, StoredObject, sha256_of_key


class LocalAudioStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def spool_dir(self) -> Path:
        path = self.root / ".incoming"
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def sweep_spool(self, older_than: float) -> int:
        """Remove spool files left by a process killed mid-upload; the count removed. Age-based, since several
        processes may share the directory and spool at the same time."""
        return await asyncio.to_thread(_sweep, self.root / ".incoming", older_than)

    def _path(self, key: str) -> Path:
        # Keys are built by audio_key(); anything else could name a path outside the root.
        if sha256_of_key(key) is None:
            raise ValueError(f"not an audio key: {key[:100]!r}")
        return self.root / key

    async def put_file(self, key: str, path: Path, *, content_type: str) -> bool:
        return await asyncio.to_thread(self._put, self._path(key), path)

    def _put(self, final: Path, source: Path) -> bool:
        if final.exists():
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = self.spool_dir / f"store-{uuid.uuid4().hex}"
        try:
            try:
                os.link(source, staged)
            except OSError:  # another filesystem, or no hard links: copy instead
                shutil.copyfile(source, staged)
            os.chmod(staged, 0o644)
            os.replace(staged, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
        return True

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(key).unlink)

    async def list(self) -> AsyncIterator[StoredObject]:
        directory = self.root / PREFIX.rstrip("/")
        found = await asyncio.to_thread(_scan, directory)
        for item in found:
            yield item

    async def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def url(self, key: str) -> str | None:
        return None

    @property
    def url_is_public(self) -> bool:
        return False


def _scan(directory: Path) -> list[StoredObject]:
    out: list[StoredObject] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return out
    for entry in entries:
        key = PREFIX + entry.name
        if sha256_of_key(key) is None or not entry.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            st = entry.stat()
            out.append(StoredObject(key=key, size=st.st_size, modified=st.st_mtime))
    return out


def _sweep(directory: Path, older_than: float) -> int:
    removed = 0
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
    return removed
