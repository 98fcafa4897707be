"""Repos marked for a full fetch (`repo_sync`): who marks them, who picks them up, what counts as done.

A mark is written (and committed) before the stream item that caused it reaches the batch writer, so the
cursor never moves past a #sync, an OutdatedCursor or a rev gap whose mark could still be lost.

`synced_at` is set to the moment the fetch *started* (database clock), not when it ended: a mark that arrives
while a repo is being fetched is newer than that, so the repo stays pending and is fetched again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

AsyncConn = psycopg.AsyncConnection[Any]

_MARK = """
INSERT INTO repo_sync (did, reason) VALUES (%(did)s, %(reason)s)
ON CONFLICT (did) DO UPDATE SET reason = EXCLUDED.reason, marked_at = now()
"""
# Discovery (backfill listing) must not make a repo that was already fetched pending again: that is what lets a
# killed backfill resume instead of starting over.
_DISCOVER = "INSERT INTO repo_sync (did, reason) VALUES (%(did)s, %(reason)s) ON CONFLICT (did) DO NOTHING"
_MARK_KNOWN = """
INSERT INTO repo_sync (did, reason)
SELECT DISTINCT did, %(reason)s FROM records WHERE collection LIKE 'fm.plyr.%%'
ON CONFLICT (did) DO UPDATE SET reason = EXCLUDED.reason, marked_at = now()
"""
PENDING = "(synced_at IS NULL OR synced_at < marked_at)"


async def mark(conn: AsyncConn, did: str, reason: str) -> None:
    await conn.execute(_MARK, {"did": did, "reason": reason})


async def mark_known(conn: AsyncConn, reason: str) -> int:
    """Mark every repo we hold fm.plyr records of (a stream gap of unknown extent)."""
    cur = await conn.execute(_MARK_KNOWN, {"reason": reason})
    return cur.rowcount


async def discover(conn: AsyncConn, dids: Iterable[str], reason: str = "backfill") -> None:
    async with conn.cursor() as cur:
        await cur.executemany(_DISCOVER, [{"did": d, "reason": reason} for d in dids])


async def pending(conn: AsyncConn, *, limit: int | None = None, dids: Sequence[str] | None = None) -> list[str]:
    query = f"SELECT did FROM repo_sync WHERE {PENDING}"
    params: dict[str, Any] = {}
    if dids is not None:
        query += " AND did = ANY(%(dids)s)"
        params["dids"] = list(dids)
    query += " ORDER BY marked_at, did"
    if limit is not None:
        query += " LIMIT %(limit)s"
        params["limit"] = limit
    cur = await conn.execute(query, params)
    return [str(r[0]) for r in await cur.fetchall()]


async def count_pending(conn: AsyncConn) -> int:
    cur = await conn.execute(f"SELECT count(*) FROM repo_sync WHERE {PENDING}")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def started(conn: AsyncConn, did: str) -> dt.datetime:
    cur = await conn.execute(
        "UPDATE repo_sync SET attempts = attempts + 1 WHERE did = %(did)s RETURNING now()", {"did": did}
    )
    row = await cur.fetchone()
    if row is None:
        # Not marked (e.g. an explicit resync of an unknown repo): mark it so progress is recorded.
        await discover(conn, [did], "resync")
        return await started(conn, did)
    value = row[0]
    assert isinstance(value, dt.datetime)
    return value


async def done(conn: AsyncConn, did: str, started_at: dt.datetime, rev: str | None) -> None:
    await conn.execute(
        "UPDATE repo_sync SET synced_at = %(t)s, last_rev = greatest(last_rev, %(rev)s), attempts = 0,"
        " last_error = NULL WHERE did = %(did)s",
        {"did": did, "t": started_at, "rev": rev},
    )


async def failed(conn: AsyncConn, did: str, error: str) -> None:
    await conn.execute("UPDATE repo_sync SET last_error = %(e)s WHERE did = %(did)s", {"did": did, "e": error[:2000]})


async def confirm_rev(conn: AsyncConn, did: str, rev: str) -> None:
    """Record that the repo was seen at `rev` with nothing of ours missing (reconciliation)."""
    await conn.execute(
        "INSERT INTO repo_sync (did, reason, marked_at, synced_at, last_rev) VALUES (%(did)s, 'confirmed', now(),"
        " now(), %(rev)s) ON CONFLICT (did) DO UPDATE SET last_rev = greatest(repo_sync.last_rev, EXCLUDED.last_rev)",
        {"did": did, "rev": rev},
    )


async def last_revs(conn: AsyncConn, dids: Sequence[str]) -> dict[str, str]:
    """Per DID, the newest rev we know it at: the max folded fm.plyr rev or the last fetched/confirmed rev."""
    cur = await conn.execute(
        """
        SELECT d.did, greatest(
            (SELECT max(r.rev) FROM records r WHERE r.did = d.did AND r.collection LIKE 'fm.plyr.%%'),
            (SELECT s.last_rev FROM repo_sync s WHERE s.did = d.did))
        FROM unnest(%(dids)s::text[]) AS d(did)
        """,
        {"dids": list(dids)},
    )
    return {str(did): str(rev) for did, rev in await cur.fetchall() if rev is not None}


async def known_repos(conn: AsyncConn) -> list[str]:
    cur = await conn.execute(
        "SELECT did FROM records WHERE collection LIKE 'fm.plyr.%%' UNION SELECT did FROM repo_sync ORDER BY 1"
    )
    return [str(r[0]) for r in await cur.fetchall()]


class RepoMarker:
    """Marks repos from a stream, on a connection of its own (marks are rare; the writer's is busy)."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: AsyncConn | None = None
        self.marked = 0

    async def _connection(self) -> AsyncConn:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        return self._conn

    async def mark(self, did: str, reason: str) -> None:
        await mark(await self._connection(), did, reason)
        self.marked += 1

    async def mark_known(self, reason: str) -> int:
        n = await mark_known(await self._connection(), reason)
        self.marked += n
        return n

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
