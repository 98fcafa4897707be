"""The batch writer: the only path by which events enter the index.

Invariants (tested in tests/test_fold_*.py and tests/test_replay.py):
- the log append, the fold and the source cursor commit in ONE transaction: a crash replays, never skips;
- a cursor moves only past items that are durable (events, rejections and checkpoints alike);
- delivery is at-least-once: a duplicate is stored once and folds to nothing;
- bounded memory: sources are pulled through a bounded queue, batches are bounded in size and time;
- no input can stall ingest: a batch that Postgres refuses is split until the one bad item is isolated and
  kept as a rejection; a lost connection is retried with backoff until the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from indexer.atproto.identity.handles import HandleVerifier, TrustingVerifier
from indexer.atproto.lexicon import Validator
from indexer.audio import refs as audio_refs
from indexer.events import Checkpoint, Event, Item, Malformed
from indexer.fold import sql
from indexer.fold.rows import EventRow, Rejected, RejectionRow, event_row, malformed_row, rejection
from indexer.metrics import Metrics

log = logging.getLogger(__name__)

FOLD_SQL = ";\n".join(sql.FOLD)


@dataclass
class WriteStats:
    batches: int = 0
    items: int = 0
    appended: int = 0
    rejected: int = 0
    skipped: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    def add(self, other: WriteStats) -> None:
        self.batches += other.batches
        self.items += other.items
        self.appended += other.appended
        self.rejected += other.rejected
        self.skipped += other.skipped
        self.by_reason.update(other.by_reason)


@dataclass
class _Prepared:
    events: list[EventRow]
    rejections: list[RejectionRow]
    cursors: dict[str, tuple[int, dt.datetime | None]]
    stats: WriteStats
    # Tracks in the batch whose audioUrl names audio stored here: checked once the batch is folded.
    own_audio: list[audio_refs.OwnAudio] = field(default_factory=list)
    flagged: list[tuple[str, str, str]] = field(default_factory=list)


def _event_time(item: Event | Malformed | Checkpoint) -> dt.datetime | None:
    time_us = getattr(item, "time_us", None)
    if isinstance(time_us, int) and 0 < time_us < 253402300799_000000:
        return dt.datetime.fromtimestamp(time_us / 1e6, tz=dt.UTC)
    return None


def _end_now(queue: asyncio.Queue[Any]) -> None:
    """The end marker on a shutdown: nobody reads the queue any more and it may be full (the database is slow or
    gone), so waiting for room, as a normal end does, would hang the shutdown forever."""
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(None)


class BatchWriter:
    def __init__(
        self,
        conninfo: str,
        *,
        validator: Validator,
        metrics: Metrics | None = None,
        verifier: HandleVerifier | None = None,
        batch_size: int = 5000,
        batch_seconds: float = 0.5,
        max_backoff: float = 30.0,
        own_audio_host: str | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._validator = validator
        self._metrics = metrics or Metrics()
        self._verifier = verifier or TrustingVerifier()
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self._max_backoff = max_backoff
        # Our public host: tracks whose audioUrl names an object uploaded here are checked at ingest (flagged
        # when the object is missing). A check beside the fold, never part of it: projections do not depend on it.
        self._own_audio_host = own_audio_host
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def __aenter__(self) -> BatchWriter:
        await self._connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        for stmt in sql.TEMP_TABLES:
            await conn.execute(stmt)
        self._conn = conn
        return conn

    # -- the pipeline -------------------------------------------------------------------------------------

    async def run(
        self, items: AsyncIterable[Item], *, on_batch: Callable[[WriteStats], None] | None = None
    ) -> WriteStats:
        """Consume `items` until exhausted, in three stages joined by bounded queues: the source (parsing), the
        batcher (validation and row building) and the database writer. Python prepares the next batch while
        Postgres folds the current one; a slow database pushes back on the source, never grows a buffer."""
        raw: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=self.batch_size * 2)
        ready: asyncio.Queue[tuple[Sequence[Item], _Prepared] | None] = asyncio.Queue(maxsize=2)
        total = WriteStats()

        async def pump() -> None:
            try:
                async for item in items:
                    await raw.put(item)
            except asyncio.CancelledError:
                _end_now(raw)
                raise
            except BaseException:
                await raw.put(None)
                raise
            await raw.put(None)

        async def batcher() -> None:
            try:
                ended = False
                while not ended:
                    batch, ended = await self._collect(raw)
                    if batch:
                        await ready.put((batch, await self._prepare(batch)))
            except asyncio.CancelledError:
                _end_now(ready)
                raise
            except BaseException:
                await ready.put(None)
                raise
            await ready.put(None)

        stages = [asyncio.create_task(pump()), asyncio.create_task(batcher())]
        try:
            while (entry := await ready.get()) is not None:
                stats = await self._write_batch(*entry)
                total.add(stats)
                if on_batch is not None:
                    on_batch(stats)
            for stage in stages:
                await stage  # re-raise a source failure
        finally:
            for stage in stages:
                if not stage.done():
                    stage.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await stage
        return total

    async def _collect(self, queue: asyncio.Queue[Item | None]) -> tuple[list[Item], bool]:
        """Up to batch_size items, waiting at most batch_seconds after the first; True once the source ended."""
        first = await queue.get()
        if first is None:
            return [], True
        batch: list[Item] = [first]
        deadline = time.monotonic() + self.batch_seconds
        while len(batch) < self.batch_size:
            try:
                nxt = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False

    # -- one batch ------------------------------------------------------------------------------------------

    async def _prepare(self, items: Sequence[Item]) -> _Prepared:
        stats = WriteStats(batches=1, items=len(items))
        events: list[EventRow] = []
        rejections: list[RejectionRow] = []
        cursors: dict[str, tuple[int, dt.datetime | None]] = {}
        identities = [it for it in items if isinstance(it, Event) and it.kind == "identity"]
        if identities:
            verified = await asyncio.gather(*(self._verifier.verify(ev.did, ev.handle) for ev in identities))
            for ev, handle in zip(identities, verified, strict=True):
                ev.handle = handle
        for ord_, item in enumerate(items):
            if isinstance(item, Event):
                row = event_row(item, ord_, self._validator)
                if row is None:
                    stats.skipped += 1
                elif isinstance(row, Rejected):
                    rejections.append(row.row)
                    stats.by_reason[row.row[2]] += 1
                    if row.event_row is not None:
                        events.append(row.event_row)
                else:
                    events.append(row)
            elif isinstance(item, Malformed):
                rejections.append(malformed_row(item))
                stats.by_reason[item.reason] += 1
            if item.cursor is not None and item.source:
                cursors[item.source] = (item.cursor, _event_time(item))
        stats.rejected = len(rejections)
        own_audio: set[audio_refs.OwnAudio] = set()
        host = self._own_audio_host
        if host is not None:
            for it in items:
                if isinstance(it, Event) and it.collection == sql.TRACK and it.record is not None and it.rkey:
                    url = it.record.get("audioUrl")
                    if audio_refs.mentions_own(url, host):
                        sha256 = audio_refs.own_sha256(str(url), host)
                        if sha256 is not None:
                            own_audio.add((it.did, it.rkey, str(url), sha256))
        if rejections:
            # One line per batch, not per item: a flood of bad input must not become a flood of logs.
            sample = rejections[0]
            log.warning(
                "rejected items",
                extra={
                    "by_reason": dict(stats.by_reason),
                    "sample_reason": sample[2],
                    "sample_detail": sample[3][:300],
                    "sample_did": sample[4],
                },
            )
        return _Prepared(events, rejections, cursors, stats, sorted(own_audio))

    async def write(self, items: Sequence[Item]) -> WriteStats:
        """Write one batch in one transaction; retried on connection loss, split on a refused statement."""
        return await self._write_batch(items, await self._prepare(items))

    async def _write_batch(self, items: Sequence[Item], prepared: _Prepared) -> WriteStats:
        started = time.perf_counter()
        backoff = 0.5
        while True:
            try:
                appended = await self._write_prepared(prepared)
                break
            except psycopg.OperationalError as exc:
                log.warning(
                    "database unavailable or transaction aborted; retrying batch",
                    extra={"error": str(exc), "retry_in": backoff},
                )
                await self.close()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self._max_backoff)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                # Data-dependent refusals: find the one bad item. Anything else (a bug, a schema mismatch) is
                # raised: the cursor has not moved, so a fixed process replays the batch.
                await self.close()  # the transaction was rolled back; start from a known-good connection
                return await self._split(items, exc)
        stats = prepared.stats
        for kind, count in appended.items():
            stats.appended += count
            self._metrics.events_accepted.labels(kind).inc(count)
        self._metrics.events_duplicate.inc(max(0, len(prepared.events) - stats.appended))
        for reason, count in stats.by_reason.items():
            self._metrics.events_rejected.labels(reason).inc(count)
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_events.observe(len(items))
        if prepared.flagged:
            self._metrics.audio_flagged.labels("missing_object").inc(len(prepared.flagged))
            did, rkey, sha256 = prepared.flagged[0]
            log.warning(
                "tracks point at uploaded audio that is not stored",
                extra={"count": len(prepared.flagged), "sample_did": did, "sample_rkey": rkey, "sample_sha256": sha256},
            )
        now = time.time()
        for source, (cursor, event_time) in prepared.cursors.items():
            self._metrics.cursor.labels(source).set(cursor)
            if event_time is not None:
                self._metrics.lag_seconds.labels(source).set(max(0.0, now - event_time.timestamp()))
        return stats

    async def _split(self, items: Sequence[Item], exc: psycopg.Error) -> WriteStats:
        if len(items) > 1:
            mid = len(items) // 2
            log.warning("batch refused; splitting", extra={"items": len(items), "error": str(exc)[:500]})
            stats = await self.write(items[:mid])
            stats.add(await self.write(items[mid:]))
            return stats
        (item,) = items
        log.error("item refused by the database; kept as a rejection", extra={"error": str(exc)[:500]})
        if isinstance(item, Checkpoint):
            return WriteStats(batches=1, items=1)
        poison = _Prepared(
            events=[],
            rejections=[rejection(item, "unstorable", f"refused by the database: {exc}"[:2000])],
            cursors={item.source: (item.cursor, None)} if item.cursor is not None and item.source else {},
            stats=WriteStats(batches=1, items=1, rejected=1, by_reason=Counter({"unstorable": 1})),
        )
        await self._write_prepared(poison)
        self._metrics.events_rejected.labels("unstorable").inc()
        return poison.stats

    async def _write_prepared(self, p: _Prepared) -> Counter[str]:
        conn = await self._connect()
        appended: Counter[str] = Counter()
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(sql.LOCK_SHARED)
            if p.events:
                async with cur.copy(sql.COPY_EVENTS) as copy:
                    for row in p.events:
                        await copy.write_row(row)
                await cur.execute(sql.APPEND_EVENTS)
                if cur.rowcount:
                    await cur.execute("SELECT kind, count(*) FROM fold_batch GROUP BY kind")
                    for kind, count in await cur.fetchall():
                        appended[str(kind)] = int(str(count))
                    await cur.execute(FOLD_SQL)
                # Also for events already in the log: a record folded first by another writer (e.g. the write
                # proxy's) is checked when its firehose echo arrives here.
                if p.own_audio:
                    p.flagged = await audio_refs.flag_missing(cur, p.own_audio)
            await write_rejections_and_cursors(cur, p)
        return appended


async def write_rejections_and_cursors(cur: psycopg.AsyncCursor[tuple[object, ...]], p: _Prepared) -> None:
    """The end of every batch transaction: its rejections, then the cursors it moves past."""
    if p.rejections:
        async with cur.copy(sql.COPY_REJECTIONS) as copy:
            for rej in p.rejections:
                await copy.write_row(rej)
        await cur.execute(sql.INSERT_REJECTIONS)
    for source, (cursor, event_time) in p.cursors.items():
        await cur.execute(sql.SAVE_CURSOR, {"source": source, "cursor": cursor, "event_time": event_time})
