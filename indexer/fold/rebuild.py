"""`plyr-appview rebuild`: derive the fold state and the projections again from the whole log.

Contract:
- The result is the index the live fold builds incrementally from the same log: same rows, same counts, same
  state hash (indexer/status.py), whatever the batches the live fold saw.
- It runs in one transaction under the exclusive fold lock: live writers wait until it commits, and a rebuild
  killed half-way leaves the old index untouched.
- `rebuild` is set-based: one statement per fold-state table over the whole log (the live fold's rules,
  indexer/fold/sql.py `REBUILD_*`), then every record marked changed and each collection's own projection
  statements run once, then the counts. Default (online): the tables are emptied by DELETE with their indexes
  kept; the API keeps serving the old index until the rebuild commits. `online=False`: emptied by TRUNCATE and
  their secondary indexes dropped and built again after the load, about 1.7 times as fast, but readers of the
  index wait until it commits (docs/benchmarks.md): for a maintenance window.
- `rebuild_batched` is the live fold run over the log range by range, readers never blocked: the reference
  the set-based pass is compared with (tests, bench/rebuild_bench.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from indexer.db import locks
from indexer.db.schema import FOLD_STATE, PROJECTIONS
from indexer.fold import sql
from indexer.fold.apply import Connection, create_temp_tables

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
        Step("changed", (sql.REBUILD_CHANGED, "ANALYZE fold_changed")),
        # Each collection's statements, as the live fold runs them. The tables start empty, so their deletes
        # find nothing and the count deltas their inserts leave in `fold_deltas` are the full counts.
        Step("projections", sql.PROJECT),
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


async def rebuild(conninfo: str, *, online: bool = True, progress: Progress | None = None) -> int:
    """Derive state and projections from the whole log in one set-based pass; returns the events in the log.
    `progress(step, done, total)` is called as each step starts (and with done == total at the end)."""
    steps = _steps()
    names = ["clear", *(s.name for s in steps), *(() if online else ("indexes",))]
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
            indexes: list[tuple[str, str]] = []
            if online:
                # DELETE, not TRUNCATE: readers keep the old rows until this commits.
                for table in _TABLES:
                    await conn.execute(f"DELETE FROM {table}")
            else:
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
            if not online:
                started = begin("indexes")
                for _, ddl in indexes:
                    await conn.execute(ddl)
                timings["indexes"] = time.perf_counter() - started
            await conn.execute(_CLEAR_BATCH)
        if progress is not None:
            progress("done", len(names), len(names))
    log.info(
        "rebuild complete",
        extra={"events": total, "online": online, "seconds": {k: round(v, 3) for k, v in timings.items()}},
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
        log.info("batched rebuild complete", extra={"events": done})
        return done
