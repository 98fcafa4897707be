"""Uploaded audio as the API sees it: the object store plus the `audio_objects` table that records what it
holds. Playback decides from the table (one indexed lookup, no request to the store); uploads write the object
first and the row second, so a row always names an object that was stored.

Uploads and `audit-audio --delete-orphans` serialise per object on a transaction-scoped advisory lock: an
upload of bytes already stored refreshes `uploaded_at` under the lock, and cleanup deletes only under the lock
and only objects whose last upload is older than its grace period; an upload that finds its object deleted
meanwhile stores it again (see `appview/xrpc/upload_audio.py`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool

from indexer.audio.probe import Probed
from indexer.audio.store import AudioStore, open_store
from indexer.audio.store.local import LocalAudioStore
from indexer.db.locks import LOCK_AUDIO_OBJECT
from indexer.settings import StorageSettings

log = logging.getLogger(__name__)

# A spool file untouched this long belongs to an upload whose process died: no live upload pauses an hour.
_STALE_SPOOL = 3600.0

_RECORD = """
INSERT INTO audio_objects (sha256, size, mime_type, file_type, duration, uploaded_by)
VALUES (%(sha256)s, %(size)s, %(mime_type)s, %(file_type)s, %(duration)s, %(uploaded_by)s)
ON CONFLICT (sha256) DO UPDATE SET uploaded_at = now()
"""


class StoredAudio:
    def __init__(self, store: AudioStore, *, reads: AsyncConnectionPool, writes: AsyncConnectionPool) -> None:
        self.store = store
        self._reads = reads
        self._writes = writes

    async def record(self, sha256: str, size: int, probed: Probed, uploaded_by: str) -> None:
        async with self._writes.connection() as conn, conn.transaction():
            await conn.execute(LOCK_AUDIO_OBJECT, (sha256,))
            await conn.execute(
                _RECORD,
                {
                    "sha256": sha256,
                    "size": size,
                    "mime_type": probed.mime_type,
                    "file_type": probed.file_type,
                    "duration": probed.duration,
                    "uploaded_by": uploaded_by,
                },
            )
            # Tracks flagged at ingest for want of this object play from here on.
            await conn.execute("DELETE FROM audio_flags WHERE sha256 = %s", (sha256,))

    async def mime_type(self, sha256: str) -> str | None:
        """The stored object's type, None when no such object was uploaded."""
        async with self._reads.connection() as conn:
            cur = await conn.execute("SELECT mime_type FROM audio_objects WHERE sha256 = %s", (sha256,))
            row = await cur.fetchone()
        return None if row is None else str(row[0])


@asynccontextmanager
async def open_stored_audio(
    database_url: str, storage: StorageSettings, reads: AsyncConnectionPool
) -> AsyncIterator[StoredAudio]:
    """The configured store, swept of stale spool files, with a small pool on the primary for upload rows
    (`reads` may be a replica: playback only reads)."""
    async with open_store(storage) as store:
        if isinstance(store, LocalAudioStore):
            swept = await store.sweep_spool(_STALE_SPOOL)
            if swept:
                log.info("removed stale upload spool files", extra={"count": swept})
        writes = AsyncConnectionPool(database_url, min_size=0, max_size=4, open=False, kwargs={"autocommit": True})
        await writes.open(wait=False)
        try:
            yield StoredAudio(store, reads=reads, writes=writes)
        finally:
            await writes.close()
