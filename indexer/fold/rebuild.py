"""`plyr-appview rebuild`: derive the fold state and the projections again from the whole log.

Contract:
- The result is the index the live fold builds incrementally from the same log: same rows, same counts, same
  state hash (indexer/status.py), whatever the batches the live fold saw.
- It holds the exclusive fold lock from start to end: live writers wait until it is done, and a rebuild killed
  half-way leaves the old index untouched.
- `rebuild` is set-based: one statement per fold-state table over the whole log (the live fold's rules,
  indexer/fold/sql.py `REBUILD_*`), then each collection's own projection statements run once over every record
  of the collection, each read from the log as its latest event (`Collection.rebuild`: the live statements with
  another source of rows), then the counts.
- Default (online): the index is built in shadow tables (indexer/fold/shadow.py) by `workers` connections at
  once, as tasks that each wait for what they read (the records, split in shares by DID, and the actors; one
  task per collection, which reads the log and the actors; the counts; each table's indexes once its last writer
  is done), and swapped in at the end. The API serves the old index until the swap, which blocks readers only
  for itself. It needs the disk space of a second copy of the index while it runs.
- `online=False` (in place): one transaction on one connection empties the tables by TRUNCATE, drops their
  secondary indexes and builds them again after the load: no second copy on disk, but readers of the index wait
  until it commits (docs/benchmarks.md): for a maintenance window or a database short of space.
- `rebuild_batched` is the live fold run over the log range by range, readers never blocked: the reference
  the set-based pass is compared with (tests, bench/rebuild_bench.py).
- Every mode folds the whole log, so each clears the mark of the log's unfolded tail (`unfolded_log`, left by a
  bulk replay: indexer/capture/bulk.py) in the transaction that installs its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from indexer.db import locks
from indexer.db.schema import FOLD_STATE, PROJECTIONS
from indexer.fold import shadow, sql
from indexer.fold.apply import Connection, create_temp_tables
from indexer.fold.collections import COLLECTIONS, track

log = logging.getLogger(__name__)

_CLEAR_BATCH = "TRUNCATE fold_batch, fold_changed, fold_status, fold_deltas, fold_new_tracks"
_TABLES = FOLD_STATE + PROJECTIONS

# Memory for the whole-log sorts (DISTINCT ON, GROUP BY) and the index builds of one rebuild: one connection
# of an operator's command, not per query of a serving pool. The temp tables take every record key at once.
_SESSION = ("SET temp_buffers = '256MB'",)
_TRANSACTION = (
    "SET LOCAL work_mem = '256MB'",
    "SET LOCAL maintenance_work_mem = '512MB'",
    # The statistics the projection statements are planned with: row counts and rough distributions suffice.
    "SET LOCAL default_statistics_target = 10",
    # A rebuild lost in a crash is run again; it need not wait for its commit to be flushed.
    "SET LOCAL synchronous_commit = off",
)

# The plain secondary indexes of the rebuilt tables: dropped before an offline load and built again after it
# (one sort per index instead of one insertion per row). Unique indexes and constraints stay: statements may
# infer ON CONFLICT targets from them.
_SECONDARY_INDEXES = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
FROM pg_index i
WHERE i.indrelid = ANY(%(tables)s::regclass[]) AND NOT i.indisunique AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY 1
"""

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Step:
    name: str
    statements: tuple[str, ...]


def _steps() -> tuple[Step, ...]:
    """The set-based pass after the tables are emptied, in order; every registered collection is projected."""
    return (
        Step("records", (sql.REBUILD_RECORDS, "ANALYZE records")),
        Step("takedowns", (sql.REBUILD_TAKEDOWNS, "ANALYZE takedowns")),
        Step("actors", (sql.REBUILD_ACTORS, "ANALYZE actors")),
        # Each collection's statements over the whole log. The tables start empty, so their deletes find nothing
        # and the count deltas their inserts leave in `fold_deltas` are the full counts.
        Step("projections", sql.REBUILD_PROJECT),
        # With `fold_new_tracks` emptied, every track (all new here) takes its counts from those deltas, added
        # to its 0 in one join, rather than being counted in full one by one (a lookup per track and count,
        # and offline without the indexes to look up with).
        Step("counts", ("TRUNCATE fold_new_tracks", *sql.APPLY_COUNTS)),
    )


async def _count_events(conn: Connection) -> int:
    cur = await conn.execute("SELECT count(*) FROM events")
    row = await cur.fetchone()
    assert row is not None
    return int(str(row[0]))


async def rebuild(conninfo: str, *, online: bool = True, workers: int = 2, progress: Progress | None = None) -> int:
    """Derive state and projections from the whole log in one set-based pass; returns the events in the log.
    `progress(step, done, total)` is called as each step starts (and with done == total at the end)."""
    if online:
        return await _rebuild_in_shadow(conninfo, workers, progress)
    return await _rebuild_in_place(conninfo, progress)


async def _rebuild_in_place(conninfo: str, progress: Progress | None) -> int:
    steps = _steps()
    names = ["clear", *(s.name for s in steps), "indexes"]
    timings: dict[str, float] = {}

    def begin(name: str) -> float:
        if progress is not None:
            progress(name, names.index(name), len(names))
        return time.perf_counter()

    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        for stmt in _SESSION:
            await conn.execute(stmt)
        await create_temp_tables(conn, "DELETE ROWS")
        async with conn.transaction():
            await conn.execute(locks.LOCK_FOLD_EXCLUSIVE)
            for stmt in _TRANSACTION:
                await conn.execute(stmt)
            started = begin("clear")
            total = await _count_events(conn)
            await conn.execute(f"TRUNCATE {', '.join(_TABLES)}")
            cur = await conn.execute(_SECONDARY_INDEXES, {"tables": list(_TABLES)})
            indexes = [(str(name), str(ddl)) for name, ddl in await cur.fetchall()]
            for name, _ in indexes:
                await conn.execute(f"DROP INDEX {name}")
            timings["clear"] = time.perf_counter() - started
            for step in steps:
                started = begin(step.name)
                for stmt in step.statements:
                    await conn.execute(stmt)
                timings[step.name] = time.perf_counter() - started
            started = begin("indexes")
            for _, ddl in indexes:
                await conn.execute(ddl)
            timings["indexes"] = time.perf_counter() - started
            await conn.execute(_CLEAR_BATCH)
            await conn.execute(sql.CLEAR_UNFOLDED)
        if progress is not None:
            progress("done", len(names), len(names))
    log.info(
        "rebuild complete",
        extra={"events": total, "online": False, "seconds": {k: round(v, 3) for k, v in timings.items()}},
    )
    return total


# -- Online: shadow tables loaded by several connections ----------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """A unit of the online rebuild: its statements, run in one transaction on one connection once every task
    it names in `after` has committed. `tables` are those it writes."""

    name: str
    after: tuple[str, ...]
    statements: tuple[str, ...]
    tables: tuple[str, ...]


_WRITES = re.compile(r"\b(?:INSERT INTO|UPDATE|DELETE FROM)\s+(\w+)", re.IGNORECASE)


def _written(statements: Sequence[str]) -> tuple[str, ...]:
    """The index tables `statements` write (the targets of their INSERT, UPDATE and DELETE)."""
    return tuple(sorted({t for stmt in statements for t in _WRITES.findall(stmt) if t in _TABLES}))


def _tasks(tables: Sequence[shadow.TableDef], shares: int) -> list[Task]:
    """Every task of an online rebuild, the longest chains first (workers take the first task that is ready)."""
    # The actors first: every projection waits for them (and the takedowns), the records for nothing.
    tasks = [
        Task(
            "actors",
            (),
            (sql.REBUILD_TAKEDOWNS, "ANALYZE takedowns", sql.REBUILD_ACTORS, "ANALYZE actors"),
            ("takedowns", "actors"),
        )
    ]
    counted: list[str] = []
    for collection in sorted(COLLECTIONS, key=lambda c: c.nsid != track.NSID):  # the tracks start the longest chain
        name = f"project {collection.nsid}"
        statements = collection.rebuild
        if collection.counted:
            counted.append(name)
            statements = (
                *statements,
                f"INSERT INTO {shadow.COUNT_DELTAS} SELECT uri, likes, comments, plays FROM fold_deltas",
            )
        # A projection reads the log, the actors and the takedowns, not the records.
        tasks.append(Task(name, ("actors",), statements, _written(collection.project)))
    # The records (state that no projection reads) in shares by DID, filling the workers' gaps.
    tasks += [
        Task(f"records {i + 1}/{shares}", (), (sql.rebuild_records_share(i, shares),), ("records",))
        for i in range(shares)
    ]
    counts = (
        f"INSERT INTO fold_deltas (uri, likes, comments, plays)"
        f" SELECT uri, likes, comments, plays FROM {shadow.COUNT_DELTAS}",
        # No track is new to these counts (`fold_new_tracks` is empty): each takes the deltas every like, comment
        # and play inserted, added to its 0, in one join.
        *sql.APPLY_COUNTS,
    )
    tasks.append(Task("counts", (f"project {track.NSID}", *counted), counts, ("tracks",)))
    # Each plain index once the last task that writes its table has committed (those of one table are built at
    # once: CREATE INDEX only keeps writers out), the tracks' first, and then the table's statistics (which
    # include its expression indexes').
    for table in sorted(tables, key=lambda t: t.name != "tracks"):
        writers = tuple(t.name for t in tasks if table.name in t.tables)
        indexes = [Task(f"index {name}", writers, (ddl,), ()) for name, ddl in table.indexes]
        tasks += indexes
        # With the server's statistics target, not the rebuild's coarse one: the API plans with these.
        analyze = ("SET LOCAL default_statistics_target TO DEFAULT", f"ANALYZE {table.shadow}")
        tasks.append(Task(f"analyze {table.name}", (*writers, *(i.name for i in indexes)), analyze, ()))
    return tasks


async def _run_tasks(conninfo: str, tasks: list[Task], workers: int, report: Callable[[str], None]) -> dict[str, float]:
    """Run `tasks` on `workers` connections, each task once its `after` are done; returns each task's seconds.
    The first failure cancels the rest and is raised."""
    pending = list(tasks)
    done: set[str] = set()
    running = 0
    timings: dict[str, float] = {}
    changed = asyncio.Condition()

    async def work() -> None:
        nonlocal running
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.execute(f"SET search_path = {shadow.SCHEMA}, " + await _search_path(conn))
            for stmt in _SESSION:
                await conn.execute(stmt)
            await create_temp_tables(conn, "DELETE ROWS")
            while True:
                async with changed:
                    while True:
                        task = next((t for t in pending if all(a in done for a in t.after)), None)
                        if task is not None or not pending:
                            break
                        if not running:
                            raise RuntimeError(f"rebuild tasks wait for what never runs: {[t.name for t in pending]}")
                        await changed.wait()
                    if task is None:
                        return
                    pending.remove(task)
                    running += 1
                report(task.name)
                started = time.perf_counter()
                async with conn.transaction():
                    for stmt in _TRANSACTION:
                        await conn.execute(stmt)
                    for stmt in task.statements:
                        await conn.execute(stmt)
                timings[task.name] = time.perf_counter() - started
                async with changed:
                    running -= 1
                    done.add(task.name)
                    changed.notify_all()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(work())
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return timings


async def _search_path(conn: Connection) -> str:
    row = await (await conn.execute("SELECT current_setting('search_path')")).fetchone()
    assert row is not None
    return str(row[0])


async def _rebuild_in_shadow(conninfo: str, workers: int, progress: Progress | None) -> int:
    if workers < 1:
        raise ValueError("workers must be at least 1")
    timings: dict[str, float] = {}
    names: list[str] = []
    started: list[str] = []

    def report(name: str) -> None:
        started.append(name)
        if progress is not None:
            progress(name, len(started) - 1, len(names))

    created = False
    try:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            async with conn.transaction():
                await conn.execute(locks.LOCK_FOLD_EXCLUSIVE)
                total = await _count_events(conn)
                tables = await shadow.describe(conn, _TABLES)
                tasks = _tasks(tables, workers)
                names += ["shadow tables", *(t.name for t in tasks), "swap"]
                report("shadow tables")
                clock = time.perf_counter()
                # From here the shadow schema is this rebuild's (it holds the fold lock): its own to drop.
                created = True
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as setup:
                    await shadow.create(setup, tables)
                timings["shadow tables"] = time.perf_counter() - clock
                timings |= await _run_tasks(conninfo, tasks, workers, report)
                report("swap")
                clock = time.perf_counter()
                await shadow.swap(conn, tables)
                # The whole log is folded now (its writers waited for the fold lock since `total` was read).
                await conn.execute(sql.CLEAR_UNFOLDED)
                timings["swap"] = time.perf_counter() - clock
    except BaseException:
        # The rebuild's transaction has rolled back, the old index is untouched; what it built goes too. A rebuild
        # stopped while it waited for the fold lock built nothing: the schema, if any, is another rebuild's.
        if not created:
            raise
        with contextlib.suppress(Exception):
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as cleanup:
                await shadow.drop(cleanup)
        raise
    if progress is not None:
        progress("done", len(names), len(names))
    log.info(
        "rebuild complete",
        extra={
            "events": total,
            "online": True,
            "workers": workers,
            "seconds": {k: round(v, 3) for k, v in timings.items()},
        },
    )
    return total


async def rebuild_batched(
    conninfo: str, *, batch_size: int = 20_000, progress: Callable[[int, int], None] | None = None
) -> int:
    """The live fold over the log, `batch_size` events at a time, in one transaction (readers keep the old
    index); returns the events folded. `progress(done, total)` is called per batch."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await create_temp_tables(conn, "DELETE ROWS")
        async with conn.transaction():
            await conn.execute(locks.LOCK_FOLD_EXCLUSIVE)
            # DELETE, not TRUNCATE: TRUNCATE would lock readers out for the whole rebuild.
            for table in _TABLES:
                await conn.execute(f"DELETE FROM {table}")
            cur = await conn.execute("SELECT coalesce(min(id), 1) - 1, coalesce(max(id), 0), count(*) FROM events")
            row = await cur.fetchone()
            assert row is not None
            after, last, total = (int(v) for v in row)
            done = 0
            while after < last:
                upto = min(after + batch_size, last)
                await conn.execute(_CLEAR_BATCH)
                cur = await conn.execute(sql.LOAD_LOG_RANGE, {"after": after, "upto": upto})
                done += cur.rowcount
                await conn.execute(sql.FOLD_SQL)
                after = upto
                if progress is not None:
                    progress(done, total)
            await conn.execute(_CLEAR_BATCH)
            await conn.execute(sql.CLEAR_UNFOLDED)
        log.info("batched rebuild complete", extra={"events": done})
        return done
