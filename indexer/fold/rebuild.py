"""`plyr-appview rebuild`: drop the fold state and projections and refold the whole log.

It runs in one transaction under the exclusive fold lock: live writers wait, readers keep seeing the old index
until the new one commits, and a rebuild killed half-way leaves the old index untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg

from indexer.db import locks
from indexer.db.schema import FOLD_STATE, PROJECTIONS
from indexer.fold import sql
from indexer.fold.apply import create_temp_tables

log = logging.getLogger(__name__)

_CLEAR_BATCH = "TRUNCATE fold_batch, fold_changed, fold_status, fold_deltas, fold_new_tracks"


async def rebuild(
    conninfo: str, *, batch_size: int = 20_000, progress: Callable[[int, int], None] | None = None
) -> int:
    """Refold every event; returns the number of events folded. `progress(done, total)` is called per batch."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await create_temp_tables(conn, "DELETE ROWS")
        async with conn.transaction():
            await conn.execute(locks.LOCK_FOLD_EXCLUSIVE)
            # DELETE, not TRUNCATE: TRUNCATE would lock readers out for the whole rebuild.
            for table in FOLD_STATE + PROJECTIONS:
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
        log.info("rebuild complete", extra={"events": done})
        return done
