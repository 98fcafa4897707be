"""How the batch writer sizes batches from a live source: a lone event is committed at once, on its own; what
arrives together, or while a batch commits, is grouped; `batch_seconds` makes a batch wait for company; the
cursor moves only with what is committed; a refused item is still isolated; the fold's temp tables, kept across
commits, are emptied after each one, and a failure to empty them costs a reconnection, never a batch.

No test here measures time: a source that waits for its last event to be visible before it sends the next would
wait forever for a writer that waits for company, and a commit held open stands in for a slow database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from bench.synth import BASE_US, commit, make_did, make_tid, track_record
from indexer.atproto.lexicon import Validator
from indexer.events import Event, Item
from indexer.fold import sql
from indexer.fold import writer as writer_module
from indexer.fold.apply import Applied, empty_temp_tables
from indexer.fold.prepare import Prepared
from indexer.fold.writer import BatchWriter, WriteStats
from tests.helpers import TRACK, one, rows_exec

ALICE = make_did(1)
SOURCE = "test:live"
# A hang guard, not a measurement: every test here finishes in well under a second when the writer behaves.
GUARD_SECONDS = 60


def _track(n: int, rkey: str | None = None) -> Event:
    event = commit(ALICE, TRACK, rkey or make_tid(BASE_US + n), make_tid(BASE_US + n), track_record(f"t{n}"))
    event.source = SOURCE
    event.cursor = n
    return event


async def _turns(n: int) -> None:
    """Let the event loop go round `n` times: events that arrive one by one, not in one burst."""
    for _ in range(n):
        await asyncio.sleep(0)


class GatedWriter(BatchWriter):
    """A writer whose next commit waits while `gate` is closed: a database slow to commit, on demand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = asyncio.Event()  # set once a commit waits at the closed gate

    async def _commit(self, prepared: Prepared) -> Applied:
        if not self.gate.is_set():
            self.held.set()
            await self.gate.wait()
        return await super()._commit(prepared)


class Batches:
    """What `run` reports batch by batch, and a way to wait until `n` items are committed."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.changed = asyncio.Event()

    def __call__(self, stats: WriteStats) -> None:
        self.sizes.append(stats.items)
        self.changed.set()

    async def until(self, n: int) -> None:
        while sum(self.sizes) < n:
            self.changed.clear()
            await self.changed.wait()


async def _cursor(db_url: str) -> int | None:
    found = await one(db_url, "SELECT max(cursor) FROM cursors WHERE source = %s", SOURCE)
    return None if found is None else int(found)


@pytest.mark.parametrize("on_commit", ["PRESERVE ROWS", "DELETE ROWS"])
async def test_a_lone_event_is_committed_at_once_in_its_own_batch(
    db_url: str, validator: Validator, on_commit: sql.OnCommit
) -> None:
    batches = Batches()
    visible: list[int] = []

    async def source() -> AsyncIterator[Item]:
        for n in (1, 2, 3):
            yield _track(n)
            # Nothing more comes until this event is committed: a writer waiting for company would wait forever.
            await batches.until(n)
            visible.append(await one(db_url, "SELECT count(*) FROM tracks"))

    async with BatchWriter(db_url, validator=validator, on_commit=on_commit) as writer, asyncio.timeout(GUARD_SECONDS):
        stats = await writer.run(source(), on_batch=batches)
    assert batches.sizes == [1, 1, 1]
    assert visible == [1, 2, 3]
    assert (stats.items, stats.appended) == (3, 3)


async def test_a_burst_is_one_batch(db_url: str, validator: Validator) -> None:
    batches = Batches()

    async def source() -> AsyncIterator[Item]:
        for n in range(1, 51):
            yield _track(n)
        await batches.until(50)  # the source stays open: the batch is not closed by its end

    async with BatchWriter(db_url, validator=validator) as writer, asyncio.timeout(GUARD_SECONDS):
        await writer.run(source(), on_batch=batches)
    assert batches.sizes == [50]
    assert await one(db_url, "SELECT count(*) FROM tracks") == 50


async def test_events_arriving_while_a_batch_commits_are_grouped(db_url: str, validator: Validator) -> None:
    batches = Batches()
    writer = GatedWriter(db_url, validator=validator)

    async def source() -> AsyncIterator[Item]:
        writer.gate.clear()
        yield _track(1)
        await writer.held.wait()  # the first batch is committing
        for n in range(2, 52):
            yield _track(n)
            await _turns(5)  # one by one: at this pace, an idle writer would take each in its own batch
        writer.gate.set()
        await batches.until(51)

    async with writer, asyncio.timeout(GUARD_SECONDS):
        await writer.run(source(), on_batch=batches)
    # The first event alone; of the 50 that arrived while it committed, one may have taken the free slot
    # (prepared, waiting for the writer), and all the others joined a single batch behind it.
    assert batches.sizes[0] == 1
    assert len(batches.sizes) <= 3
    assert sum(batches.sizes) == 51
    assert await one(db_url, "SELECT count(*) FROM tracks") == 51


async def test_the_cursor_moves_only_past_committed_events(db_url: str, validator: Validator) -> None:
    batches = Batches()
    writer = GatedWriter(db_url, validator=validator)
    seen: list[tuple[int | None, int]] = []

    async def source() -> AsyncIterator[Item]:
        yield _track(1)
        await batches.until(1)
        seen.append((await _cursor(db_url), await one(db_url, "SELECT count(*) FROM tracks")))
        writer.gate.clear()
        yield _track(2)
        yield _track(3)
        await writer.held.wait()  # delivered, not committed
        seen.append((await _cursor(db_url), await one(db_url, "SELECT count(*) FROM tracks")))
        writer.gate.set()
        await batches.until(3)
        seen.append((await _cursor(db_url), await one(db_url, "SELECT count(*) FROM tracks")))

    async with writer, asyncio.timeout(GUARD_SECONDS):
        await writer.run(source(), on_batch=batches)
    assert seen == [(1, 1), (1, 1), (3, 3)]


async def test_batch_seconds_makes_a_batch_wait_for_company(db_url: str, validator: Validator) -> None:
    async def source() -> AsyncIterator[Item]:
        yield _track(1)
        await _turns(20)
        yield _track(2)

    sizes: dict[float, list[int]] = {}
    for window in (0.0, 3600.0):
        batches = Batches()
        async with (
            BatchWriter(db_url, validator=validator, batch_seconds=window) as writer,
            asyncio.timeout(GUARD_SECONDS),
        ):
            await writer.run(source(), on_batch=batches)
        sizes[window] = batches.sizes
    # At once by default; with a window, the lone first event waits and the second joins it (the source's end
    # closes the batch long before the window would).
    assert sizes == {0.0: [1, 1], 3600.0: [2]}


async def test_a_refused_item_in_a_grouped_batch_is_still_isolated(db_url: str, validator: Validator) -> None:
    await rows_exec(db_url, "ALTER TABLE events ADD CONSTRAINT test_poison CHECK (rkey IS DISTINCT FROM 'poison')")
    batches = Batches()

    async def source() -> AsyncIterator[Item]:
        for n in range(1, 21):
            yield _track(n, "poison" if n == 7 else None)
        await batches.until(20)

    async with BatchWriter(db_url, validator=validator) as writer, asyncio.timeout(GUARD_SECONDS):
        stats = await writer.run(source(), on_batch=batches)
    assert batches.sizes == [20]  # one batch, split inside the writer
    assert (stats.appended, stats.rejected) == (19, 1)
    assert await one(db_url, "SELECT count(*) FROM rejections WHERE reason = 'unstorable'") == 1
    assert await _cursor(db_url) == 20
    # The splits left the connection's temp tables as the next batch needs them.
    async with BatchWriter(db_url, validator=validator) as writer:
        assert (await writer.write([_track(21)])).appended == 1
    assert await one(db_url, "SELECT count(*) FROM tracks") == 20


async def test_temp_tables_are_emptied_after_each_commit(
    db_url: str, validator: Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every other emptying is a TRUNCATE here, the rest DELETEs: both must leave the tables empty.
    monkeypatch.setattr(writer_module, "TRUNCATE_AFTER_ITEMS", 2)
    async with BatchWriter(db_url, validator=validator) as writer:
        for n in range(1, 6):
            assert (await writer.write([_track(n), _track(n)])).appended == 1  # and one duplicate
            left = await writer._connect()  # the writer's own connection: temp tables are per connection
            for table in sql.TEMP_TABLE_NAMES:
                cur = await left.execute(f"SELECT count(*) FROM {table}")  # type: ignore[arg-type]
                assert await cur.fetchone() == (0,), (n, table)
    assert await one(db_url, "SELECT count(*) FROM tracks") == 5


async def test_a_failure_to_empty_the_temp_tables_costs_a_connection_not_a_batch(
    db_url: str, validator: Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def flaky(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        await empty_temp_tables(conn)

    monkeypatch.setattr(writer_module, "empty_temp_tables", flaky)
    async with BatchWriter(db_url, validator=validator) as writer:
        first = await writer._connect()
        one_stats = await writer.write([_track(1)])
        assert first.closed  # replaced rather than reused with rows left in its tables
        two_stats = await writer.write([_track(2)])
    assert (one_stats.appended, one_stats.duplicates, two_stats.appended) == (1, 0, 1)
    assert await one(db_url, "SELECT count(*) FROM tracks") == 2
    assert await _cursor(db_url) == 2
