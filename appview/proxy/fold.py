"""Read-your-writes: a write the PDS accepted is folded into the index at once, by the indexer's own batch writer.

The events carry what the firehose will later say about the same commit (did, collection, rkey, the commit's
rev, the operation), so the echo has the same dedup key and folds to nothing. They are written to the primary
database through a few `BatchWriter`s created on first use, each owning one connection (the fold's temp tables
live per connection). A writer retries a lost database forever, which suits ingest but not a request: here
each fold is bounded by `timeout`, and a writer interrupted mid-batch is closed and replaced.

One difference, in how the fold's temp tables are emptied: the indexer's are `ON COMMIT DELETE ROWS`, i.e.
truncated by every commit. Measured on the reference machine under load, those truncations made the commit of a
one-event batch take about 30 ms instead of under 1 ms, which is most of what a proxied write would add. Here the
same tables are created `ON COMMIT PRESERVE ROWS` and emptied with DELETE after each batch, in the background
once the batch has committed; a writer is replaced after `RECYCLE_AFTER` batches so that the dead rows this
leaves in them stay few.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any, Literal

import psycopg

from indexer.atproto.lexicon import Validator
from indexer.events import Event
from indexer.fold import sql
from indexer.fold.writer import BatchWriter
from indexer.metrics import Metrics

log = logging.getLogger(__name__)

SOURCE = "proxy"

# op column of `records`: 0 create, 1 update, 2 delete (tombstone).
_RECORD_STATE = "SELECT op FROM records WHERE did = %s AND collection = %s AND rkey = %s"


RECYCLE_AFTER = 1000
_KEEP_ROWS = ("ON COMMIT DELETE ROWS", "ON COMMIT PRESERVE ROWS")


def _temp_table(stmt: str) -> tuple[str, str]:
    """(name, the statement creating it with rows kept across commits)."""
    found = re.search(r"CREATE TEMP TABLE IF NOT EXISTS (\w+)", stmt)
    if found is None or _KEEP_ROWS[0] not in stmt:
        raise RuntimeError(f"unexpected fold temp table statement: {stmt[:100]!r}")
    return found.group(1), stmt.replace(*_KEEP_ROWS)


_TEMP_TABLES = tuple(_temp_table(stmt) for stmt in sql.TEMP_TABLES)
_EMPTY = ";".join(f"DELETE FROM {name}" for name, _ in _TEMP_TABLES)


class _ProxyWriter(BatchWriter):
    """The indexer's batch writer, its temp tables emptied by DELETE instead of a truncation at each commit.
    Emptying is left for after the answer (`empty`, run by ProxyFold in the background); a batch that finds
    the tables not yet emptied (the writer's own retries and splits) empties them first."""

    batches = 0
    dirty = False

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        fresh = self._conn is None or self._conn.closed
        conn = await super()._connect()
        if fresh:
            self.batches = 0
            self.dirty = False
            for name, create in _TEMP_TABLES:
                await conn.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")  # type: ignore[arg-type]
                await conn.execute(create)  # type: ignore[arg-type]
        return conn

    async def _write_prepared(self, p: Any) -> Any:
        await self._connect()
        if self.dirty:
            await self.empty()
        self.dirty = True
        self.batches += 1
        return await super()._write_prepared(p)

    async def empty(self) -> None:
        if self._conn is not None and not self._conn.closed:
            await self._conn.execute(_EMPTY)  # type: ignore[arg-type]
        self.dirty = False


class ProxyFold:
    def __init__(
        self,
        database_url: str,
        *,
        validator: Validator,
        metrics: Metrics,
        writers: int = 4,
        timeout: float = 5.0,
        own_audio_host: str | None = None,
    ) -> None:
        self._url = database_url
        # As in the indexer: a track naming audio uploaded here but not stored is flagged when it is folded.
        self._own_audio_host = own_audio_host
        self._validator = validator
        self._metrics = metrics
        self._timeout = timeout
        self._slots = asyncio.Semaphore(writers)
        self._idle: list[_ProxyWriter] = []
        self._settling: set[asyncio.Task[None]] = set()
        self._lookup: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._lookup_lock = asyncio.Lock()

    async def apply(self, events: Sequence[Event]) -> None:
        """Fold `events` in one transaction; raises on failure (the caller logs and counts it). Returns once
        the batch is committed; the writer is made ready for the next batch in the background."""
        await self._slots.acquire()
        writer = self._idle.pop() if self._idle else self._new_writer()
        try:
            async with asyncio.timeout(self._timeout):
                await writer.write(list(events))
        except BaseException:
            await writer.close()
            self._slots.release()
            raise
        task = asyncio.create_task(self._settle(writer))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, writer: _ProxyWriter) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await writer.empty()
        except Exception as exc:
            log.warning("proxy fold writer could not be reset; replaced", extra={"error": repr(exc)[:300]})
            await writer.close()
        else:
            if writer.batches >= RECYCLE_AFTER:
                await writer.close()
            else:
                self._idle.append(writer)
        finally:
            self._slots.release()

    async def settled(self) -> None:
        """Wait until every writer used so far is ready again."""
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def live(self, did: str, collection: str, rkey: str) -> bool | None:
        """Whether the index holds the record as live (True), deleted (False) or not at all (None)."""
        async with self._lookup_lock, asyncio.timeout(self._timeout):
            try:
                if self._lookup is None or self._lookup.closed:
                    self._lookup = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                cur = await self._lookup.execute(_RECORD_STATE, (did, collection, rkey))
                row = await cur.fetchone()
            except psycopg.Error:
                if self._lookup is not None:
                    await self._lookup.close()
                self._lookup = None
                raise
        if row is None:
            return None
        return int(str(row[0])) < 2

    async def aclose(self) -> None:
        await self.settled()
        for writer in self._idle:
            await writer.close()
        self._idle.clear()
        if self._lookup is not None:
            await self._lookup.close()
            self._lookup = None

    def _new_writer(self) -> _ProxyWriter:
        return _ProxyWriter(
            self._url,
            validator=self._validator,
            metrics=self._metrics,
            max_backoff=1.0,
            own_audio_host=self._own_audio_host,
        )


Operation = Literal["create", "update", "delete"]


def commit_event(
    did: str,
    collection: str,
    rkey: str,
    rev: str,
    op: Operation,
    cid: str | None,
    record: dict[str, object] | None,
) -> Event:
    return Event(
        kind="commit",
        did=did,
        source=SOURCE,
        operation=op,
        collection=collection,
        rkey=rkey,
        rev=rev,
        cid=cid if op != "delete" else None,
        record=record if op != "delete" else None,
    )
