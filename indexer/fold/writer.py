"""The batch writer: how sources' items enter the index, batch by batch, each prepared (indexer/fold/prepare.py)
and applied in its own transaction (indexer/fold/apply.py).

Invariants (tested in tests/test_fold_*.py and tests/test_replay.py):
- the log append, the fold and the source cursor commit in ONE transaction: a crash replays, never skips;
- a cursor moves only past items that are durable (events, rejections and checkpoints alike);
- delivery is at-least-once: a duplicate is stored once and folds to nothing;
- bounded memory: sources are pulled through a bounded queue, batches are bounded in size;
- no input can stall ingest: a batch that Postgres refuses is split until the one bad item is isolated and
  kept as a rejection; a lost connection is retried with backoff until the database is back.

The first three hold for every batch `apply` commits; the last two are this module's: the pipeline (source,
batcher, database writer, joined by bounded queues), the retry and the split. It also counts each batch in the
metrics (`record_batch`, shared with the write proxy's fold), and what became of each item (`WriteStats`: every
item in exactly one of appended, duplicates, rejected, ignored and checkpoints).

Batches are as large as the load makes them, not as a timer makes them (`run`): a batch is handed to the
database writer as soon as the source has nothing more queued and the writer can take it, so a lone event is
committed at once; while the writer is busy, what arrives joins the next batch, up to `batch_size` (group
commit). Under a backlog (a replay, a catch-up, a slow database) every batch is full. `batch_seconds`, 0 by
default, makes a batch also wait that long after its first item for more company, trading latency for fewer,
larger transactions.

The fold's temp tables keep their rows across commits ("PRESERVE ROWS", indexer/fold/apply.py) and are emptied
right after each commit, before the next batch is taken: with "DELETE ROWS" Postgres would truncate them inside
every commit, which is most of the cost of committing a one-event batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from indexer.atproto.identity.handles import HandleVerifier, ResolvingVerifier, TrustingVerifier
from indexer.atproto.lexicon import Validator
from indexer.audio import refs as audio_refs
from indexer.events import Checkpoint, Item
from indexer.fold import sql
from indexer.fold.apply import Applied, apply, create_temp_tables, empty_temp_tables
from indexer.fold.collections import bsky_profile
from indexer.fold.prepare import Prepared, Preparer, refused
from indexer.metrics import Metrics
from indexer.settings import Settings

log = logging.getLogger(__name__)

# With "PRESERVE ROWS" temp tables: emptied by DELETE after a small batch (no file operations, but dead rows stay,
# and temp tables are never vacuumed), by TRUNCATE once this many items have gone through them since the last
# TRUNCATE (which a batch this large pays for at once, as "DELETE ROWS" would have).
TRUNCATE_AFTER_ITEMS = 1000
_TRUNCATE = "TRUNCATE " + ", ".join(sql.TEMP_TABLE_NAMES)


@dataclass
class WriteStats:
    """What became of the items a writer was given. Each item is counted in exactly one of `appended`,
    `duplicates`, `rejected`, `ignored` and `checkpoints`, so they add up to `items`:

    - `appended`: valid events new to the log;
    - `duplicates`: valid events already in the log (same dedup key: did, collection, rkey, rev and operation for
      a commit), delivered before or earlier in the same batch; stored once, they change nothing;
    - `rejected`: items refused, each with a row in `rejections` (`by_reason` counts them by reason). A record
      its lexicon refuses is one of them, although it also enters the log for its rev; an item refused again on
      a later delivery is counted again but stored once;
    - `ignored`: events that are not ours (a collection we do not want: `indexer.fold.collections.WANTED`, or a
      Bluesky profile of an actor the index does not know: indexer/fold/collections/bsky_profile.py);
    - `checkpoints`: source positions with nothing to store.
    """

    batches: int = 0
    items: int = 0
    appended: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored: int = 0
    checkpoints: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    def add(self, other: WriteStats) -> None:
        self.batches += other.batches
        self.items += other.items
        self.appended += other.appended
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.ignored += other.ignored
        self.checkpoints += other.checkpoints
        self.by_reason.update(other.by_reason)

    @classmethod
    def of(cls, prepared: Prepared, applied: Applied) -> WriteStats:
        """The stats of one committed batch."""
        # Bluesky profiles of actors the index does not know are left out by the fold: ignored, not ours.
        dropped = applied.dropped_rejections.total()
        valid = len(prepared.events) - prepared.invalid_events - applied.dropped_valid
        appended = applied.appended.total() - applied.invalid_appended
        return cls(
            batches=1,
            items=prepared.items,
            appended=appended,
            duplicates=valid - appended,
            rejected=len(prepared.rejections) - dropped,
            ignored=prepared.ignored + applied.dropped_valid + dropped,
            checkpoints=prepared.checkpoints,
            by_reason=prepared.by_reason - applied.dropped_rejections,
        )


def _end_now(queue: asyncio.Queue[Any]) -> None:
    """The end marker on a shutdown: nobody reads the queue any more and it may be full (the database is slow or
    gone), so waiting for room, as a normal end does, would hang the shutdown forever."""
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(None)


class BatchWriter:
    """Writes items batch by batch (see the module docstring). `on_commit` is how the fold's temp tables are
    emptied: "PRESERVE ROWS" (the default) right after each commit, "DELETE ROWS" by Postgres inside it."""

    def __init__(
        self,
        conninfo: str,
        *,
        validator: Validator,
        metrics: Metrics | None = None,
        verifier: HandleVerifier | None = None,
        batch_size: int = 5000,
        batch_seconds: float = 0.0,
        max_backoff: float = 30.0,
        own_audio_host: str | None = None,
        on_commit: sql.OnCommit = "PRESERVE ROWS",
        fold: bool = True,
    ) -> None:
        self._conninfo = conninfo
        # False: append to the log only, leaving the fold to a rebuild (indexer/capture/bulk.py); the tracks
        # naming audio stored here then gather in `unchecked_audio`, for the caller to check after that rebuild.
        self._fold = fold
        self.unchecked_audio: set[audio_refs.OwnAudio] = set()
        self._preparer = Preparer(validator, verifier=verifier, own_audio_host=own_audio_host)
        self._metrics = metrics or Metrics()
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self._max_backoff = max_backoff
        self._on_commit: sql.OnCommit = on_commit
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        # Whether the temp tables may hold rows of a committed batch (its emptying failed or was interrupted).
        self._dirty = False
        self._since_truncate = 0

    @classmethod
    def configured(
        cls,
        settings: Settings,
        url: str,
        *,
        metrics: Metrics | None = None,
        batch_size: int | None = None,
        fold: bool = True,
    ) -> BatchWriter:
        """The writer as the settings configure it: what live sources, replays and backfills fold through."""
        verifier: HandleVerifier = TrustingVerifier()
        if settings.resolve_identities:
            verifier = ResolvingVerifier(settings.plc_url, allow_private_hosts=settings.allow_private_hosts)
        return cls(
            url,
            validator=Validator.load(),
            metrics=metrics,
            verifier=verifier,
            batch_size=batch_size or settings.batch_size,
            batch_seconds=settings.batch_seconds,
            own_audio_host=settings.public_origin,
            fold=fold,
        )

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
        try:
            await create_temp_tables(conn, self._on_commit)
            if not self._fold:
                await conn.execute(bsky_profile.CREATE_UNFOLDED_DIDS)
                await conn.execute(bsky_profile.SEED_UNFOLDED_DIDS)
        except BaseException:
            await conn.close()
            raise
        self._conn, self._dirty, self._since_truncate = conn, False, 0
        return conn

    # -- the pipeline -------------------------------------------------------------------------------------

    async def run(
        self, items: AsyncIterable[Item], *, on_batch: Callable[[WriteStats], None] | None = None
    ) -> WriteStats:
        """Consume `items` until exhausted, in three stages joined by bounded queues: the source (parsing), the
        batcher (validation and row building) and the database writer. Python prepares the next batch while
        Postgres folds the current one; a slow database pushes back on the source, never grows a buffer.

        One prepared batch at most waits for the database writer (`ready`): the batcher closes a batch when
        that slot is free and the source has nothing more queued (after `batch_seconds`, if set), or when the
        batch is full; while the slot is taken, arrivals join the open batch."""
        raw: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=self.batch_size * 2)
        ready: asyncio.Queue[tuple[Sequence[Item], Prepared] | None] = asyncio.Queue(maxsize=1)
        # Set when an item arrives or the database writer takes the waiting batch: what an open batch waits for.
        wake = asyncio.Event()
        total = WriteStats()

        async def pump() -> None:
            try:
                async for item in items:
                    await raw.put(item)
                    wake.set()
            except asyncio.CancelledError:
                _end_now(raw)
                raise
            except BaseException:
                await raw.put(None)
                wake.set()
                raise
            await raw.put(None)
            wake.set()

        async def batcher() -> None:
            try:
                ended = False
                while not ended:
                    batch, ended = await self._collect(raw, ready, wake)
                    if batch:
                        await ready.put((batch, await self._preparer.prepare(batch)))
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
                wake.set()  # the slot is free: the batcher may close its batch
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

    async def _collect(
        self, queue: asyncio.Queue[Item | None], ready: asyncio.Queue[Any], wake: asyncio.Event
    ) -> tuple[list[Item], bool]:
        """The next batch: up to batch_size items, closed as soon as the source has nothing more queued, the
        database writer's slot (`ready`) is free and batch_seconds have passed since the first item. True once
        the source ended."""
        first = await queue.get()
        if first is None:
            return [], True
        batch: list[Item] = [first]
        linger_until = time.monotonic() + self.batch_seconds
        settled = False
        while len(batch) < self.batch_size:
            try:
                nxt = queue.get_nowait()
            except asyncio.QueueEmpty:
                if not settled:
                    # One turn of the event loop: a source holding more already-received items hands them over
                    # now, so a burst that arrived together is committed together.
                    settled = True
                    await asyncio.sleep(0)
                    continue
                lingering = time.monotonic() < linger_until
                if ready.empty() and not lingering:
                    break
                wake.clear()
                # With the slot taken, wait for an item or the slot; with it free, for an item or the window.
                timeout = linger_until - time.monotonic() if ready.empty() else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout)
                settled = False
                continue
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False

    # -- one batch ------------------------------------------------------------------------------------------

    async def write(self, items: Sequence[Item]) -> WriteStats:
        """Write one batch in one transaction; retried on connection loss, split on a refused statement."""
        return await self._write_batch(items, await self._preparer.prepare(items))

    async def _write_batch(self, items: Sequence[Item], prepared: Prepared) -> WriteStats:
        started = time.perf_counter()
        backoff = 0.5
        while True:
            try:
                applied = await self._commit(prepared)
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
        record_batch(self._metrics, prepared, applied, seconds=time.perf_counter() - started)
        self.unchecked_audio.update(applied.unchecked_audio)
        await self._settle()
        return WriteStats.of(prepared, applied)

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
            return WriteStats(batches=1, items=1, checkpoints=1)
        poison = refused(item, str(exc))
        await self._commit(poison)
        await self._settle()
        self._metrics.events_rejected.labels("unstorable").inc()
        return WriteStats(batches=1, items=1, rejected=1, by_reason=poison.by_reason)

    async def _commit(self, prepared: Prepared) -> Applied:
        if self._dirty:
            await self._settle()  # a committed batch's emptying was interrupted: `apply` needs empty tables
        conn = await self._connect()
        async with conn.transaction():
            applied = await apply(conn, prepared, fold=self._fold)
        if self._on_commit == "PRESERVE ROWS":
            self._dirty = True
            self._since_truncate += prepared.items
        return applied

    async def _settle(self) -> None:
        """Empty the temp tables of the batch just committed, off its commit (the batch is visible already).
        A connection that fails at it is replaced: its successor's tables start empty; the batch stays written."""
        conn = self._conn
        if not self._dirty or conn is None or conn.closed:
            self._dirty = False
            return
        try:
            if self._since_truncate >= TRUNCATE_AFTER_ITEMS:
                await conn.execute(_TRUNCATE)
                self._since_truncate = 0
            else:
                await empty_temp_tables(conn)
        except psycopg.Error as exc:
            log.warning("could not empty the fold's temp tables; reconnecting", extra={"error": str(exc)[:500]})
            await self.close()
        self._dirty = False


def record_batch(metrics: Metrics, prepared: Prepared, applied: Applied, *, seconds: float) -> None:
    """Count a committed batch (`seconds`: from its first attempt to its commit) in `metrics`."""
    for kind, count in applied.appended.items():
        metrics.events_accepted.labels(kind).inc(count)
    metrics.events_duplicate.inc(max(0, len(prepared.events) - applied.dropped_events - applied.appended.total()))
    for reason, count in (prepared.by_reason - applied.dropped_rejections).items():
        metrics.events_rejected.labels(reason).inc(count)
    metrics.batch_seconds.observe(seconds)
    metrics.batch_events.observe(prepared.items)
    if applied.flagged:
        metrics.audio_flagged.labels("missing_object").inc(len(applied.flagged))
        did, rkey, sha256 = applied.flagged[0]
        log.warning(
            "tracks point at uploaded audio that is not stored",
            extra={"count": len(applied.flagged), "sample_did": did, "sample_rkey": rkey, "sample_sha256": sha256},
        )
    now = time.time()
    for source, (cursor, event_time) in prepared.cursors.items():
        metrics.cursor.labels(source).set(cursor)
        if event_time is not None:
            metrics.lag_seconds.labels(source).set(max(0.0, now - event_time.timestamp()))
