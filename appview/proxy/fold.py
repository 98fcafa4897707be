"""Read-your-writes: a write the PDS accepted is folded into the index at once, by the indexer's own fold.

The events carry what the firehose will later say about the same commit (did, collection, rkey, the commit's
rev, the operation), so the echo has the same dedup key and folds to nothing. They are prepared and applied as
the indexer's batch writer does (indexer/fold/prepare.py, indexer/fold/apply.py), one transaction per proxied
write, on the primary database through a few connections opened on first use (the fold's temp tables live per
connection). Unlike ingest, a fold here answers a request: it is bounded by `timeout`, within which a lost
connection is replaced and the write retried; a connection interrupted mid-batch is closed. A write Postgres
refuses is not split to isolate the bad item, as the batch writer does: the fold fails, and the firehose echo
goes through the batch writer, which keeps the bad item as a rejection.

How the fold's temp tables are emptied: `ON COMMIT DELETE ROWS` would truncate them at every commit. Measured
on the reference machine under load, those truncations made the commit of a one-event batch take about 30 ms
instead of under 1 ms, which is most of what a proxied write would add. Here (as in the indexer's batch writer)
the tables are created `ON COMMIT PRESERVE ROWS` and emptied with DELETE after each batch, in the background
once the batch has committed; a connection is replaced after `RECYCLE_AFTER` batches so that the dead rows this
leaves in them stay few.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from typing import Literal

import psycopg

from indexer.atproto.lexicon import Validator
from indexer.events import Event
from indexer.fold.apply import Applied, apply, create_temp_tables, empty_temp_tables
from indexer.fold.prepare import Prepared, Preparer
from indexer.fold.writer import record_batch
from indexer.metrics import Metrics

log = logging.getLogger(__name__)

SOURCE = "proxy"

# op column of `records`: 0 create, 1 update, 2 delete (tombstone).
_RECORD_STATE = "SELECT op FROM records WHERE did = %s AND collection = %s AND rkey = %s"

RECYCLE_AFTER = 1000
_MAX_BACKOFF = 1.0


class _Writer:
    """One connection of the proxy's fold. Its temp tables keep their rows across commits, and are empty
    whenever the writer is idle: emptied after each batch (`empty`), or new with a new connection."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self.batches = 0

    async def commit(self, prepared: Prepared) -> Applied:
        if self.conn is None or self.conn.closed:
            conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            try:
                await create_temp_tables(conn, "PRESERVE ROWS")
            except BaseException:
                await conn.close()
                raise
            self.conn, self.batches = conn, 0
        self.batches += 1
        async with self.conn.transaction():
            return await apply(self.conn, prepared)

    async def empty(self) -> None:
        if self.conn is not None and not self.conn.closed:
            await empty_temp_tables(self.conn)

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()
            self.conn = None


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
        self._preparer = Preparer(validator, own_audio_host=own_audio_host)
        self._metrics = metrics
        self._timeout = timeout
        self._slots = asyncio.Semaphore(writers)
        self._idle: list[_Writer] = []
        self._settling: set[asyncio.Task[None]] = set()
        self._lookup: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._lookup_lock = asyncio.Lock()

    async def apply(self, events: Sequence[Event]) -> None:
        """Fold `events` in one transaction; raises on failure (the caller logs and counts it). Returns once
        the batch is committed; the writer is made ready for the next batch in the background."""
        await self._slots.acquire()
        writer = self._idle.pop() if self._idle else _Writer(self._url)
        try:
            async with asyncio.timeout(self._timeout):
                await self._fold(writer, events)
        except BaseException:
            await writer.close()
            self._slots.release()
            raise
        task = asyncio.create_task(self._settle(writer))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _fold(self, writer: _Writer, events: Sequence[Event]) -> None:
        prepared = await self._preparer.prepare(events)
        started = time.perf_counter()
        backoff = 0.5
        while True:
            try:
                applied = await writer.commit(prepared)
                break
            except psycopg.OperationalError as exc:
                log.warning(
                    "database unavailable or transaction aborted; retrying proxied write",
                    extra={"error": str(exc), "retry_in": backoff},
                )
                await writer.close()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, _MAX_BACKOFF)
        record_batch(self._metrics, prepared, applied, seconds=time.perf_counter() - started)

    async def _settle(self, writer: _Writer) -> None:
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
