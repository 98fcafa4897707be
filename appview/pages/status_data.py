"""What the operator status page shows, read with statements whose cost does not grow with the log.

A refresh must stay cheap on a database of tens of millions of events, so nothing here scans a big table:
- row counts are `pg_class.reltuples` estimates, made exact (a capped count) only for small tables;
- events/s counts the newest events by walking the primary key backwards, at most `RATE_SAMPLE` of them;
- rejection reasons are found by skipping through `rejections_reason_idx`; each reason is counted up to
  REASON_COUNT_LIMIT, and beyond that estimated from the planner's most-common-value statistics;
- pending repos come from the partial index on pending `repo_sync` rows;
- the connection state of each live source is the handful of `source_status` rows the indexer keeps
  (indexer/source_status.py); replays (`replay:` cursors) are listed apart from live sources.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from psycopg import AsyncConnection

from indexer.source_status import REPLAY_PREFIX, HostState, read_ingest

# Counts above this are shown as estimates (or as "more than") instead of being counted.
EXACT_LIMIT = 100_000
# Events/s: at most this many newest events are looked at, over at most RATE_WINDOW seconds.
RATE_SAMPLE = 20_000
RATE_WINDOW = 60.0
# Counted exactly up to this per rejection reason; beyond, the planner's share of the table (or "at least").
REASON_COUNT_LIMIT = 1_000
EXAMPLES_PER_REASON = 3
MAX_REASONS = 50
EXAMPLE_CHARS = 400
TABLES = (
    "events",
    "rejections",
    "records",
    "actors",
    "tracks",
    "likes",
    "lists",
    "list_items",
    "comments",
    "profiles",
    "repo_sync",
    # Uploaded audio (shown once the migration that adds them has run).
    "audio_objects",
    "audio_flags",
)


class Count(msgspec.Struct, frozen=True):
    value: int
    # "exact", "at_least" (a capped count that hit its cap) or "estimate" (planner statistics).
    kind: str


class TableSize(msgspec.Struct, frozen=True):
    name: str
    rows: Count
    bytes: int


class SourceStatus(msgspec.Struct, frozen=True):
    source: str
    cursor: int | None
    lag_seconds: float | None
    last_commit_ago_seconds: float | None
    events_per_second: float
    # The connection state of each of its hosts, as the indexer reports it (empty: nothing reported).
    hosts: list[HostState] = msgspec.field(default_factory=list)

    @property
    def connected(self) -> bool | None:
        return any(h.up for h in self.hosts) if self.hosts else None


class RejectionExample(msgspec.Struct, frozen=True):
    id: int
    received_at: dt.datetime
    source: str
    did: str | None
    collection: str | None
    rkey: str | None
    detail: str
    event: str | None


class ReasonStatus(msgspec.Struct, frozen=True):
    reason: str
    count: Count
    examples: list[RejectionExample]


class SyncFailure(msgspec.Struct, frozen=True):
    did: str
    reason: str
    attempts: int
    last_error: str
    marked_at: dt.datetime


class SyncStatus(msgspec.Struct, frozen=True):
    total: Count
    pending: Count
    pending_by_reason: dict[str, int]
    failing: list[SyncFailure]


class StatusSnapshot(msgspec.Struct, frozen=True):
    taken_at: dt.datetime
    database_bytes: int
    tables: list[TableSize]
    # Live sources (Jetstream, firehose) and sources without a cursor that wrote events lately.
    sources: list[SourceStatus]
    # Capture replays: no connection, and a "lag" that is only the age of the file.
    replays: list[SourceStatus]
    # Why ingest is not healthy (`plyr-appview status --check` with its default threshold), or None.
    ingest_problem: str | None
    rate_window_seconds: float
    rejections: list[ReasonStatus]
    sync: SyncStatus


Conn = AsyncConnection[Any]


async def _rows(conn: Conn, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query, params)
    return list(await cur.fetchall())


async def _capped_count(
    conn: Conn, from_where: str, params: dict[str, Any] | None = None, cap: int | None = None
) -> Count:
    """An exact count up to `cap` (default EXACT_LIMIT), "at least `cap`" beyond: bounded work whatever the
    table size."""
    limit = EXACT_LIMIT if cap is None else cap
    query = f"SELECT count(*) FROM (SELECT 1 {from_where} LIMIT %(cap)s) AS c"
    rows = await _rows(conn, query, {**(params or {}), "cap": limit + 1})
    n = int(rows[0][0])
    return Count(limit, "at_least") if n > limit else Count(n, "exact")


_TABLE_STATS = """
SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname = ANY(%(names)s)
"""


async def _tables(conn: Conn) -> list[TableSize]:
    stats = await _rows(conn, _TABLE_STATS, {"names": list(TABLES)})
    found = {str(name): (int(estimate), int(size)) for name, estimate, size in stats}
    result = []
    for name in TABLES:
        if name not in found:
            continue
        estimate, size = found[name]
        # reltuples is -1 before the first ANALYZE and rough for small tables: those get a capped exact count.
        if estimate >= EXACT_LIMIT:
            rows = Count(estimate, "estimate")
        else:
            rows = await _capped_count(conn, f"FROM {name}")
        result.append(TableSize(name, rows, size))
    return result


# Newest events, by walking the primary key backwards: bounded whatever the log size. `received_at` is the
# commit transaction's time, so a batch shares one value.
_RATES = """
WITH recent AS (SELECT source, received_at FROM events ORDER BY id DESC LIMIT %(sample)s),
     window_ AS (SELECT * FROM recent WHERE received_at > now() - make_interval(secs => %(window)s))
SELECT source, count(*), (SELECT count(*) FROM window_), (SELECT min(received_at) FROM window_), now()
FROM window_ GROUP BY source
"""

async def _sources(conn: Conn) -> tuple[list[SourceStatus], list[SourceStatus], str | None, float]:
    rates = await _rows(conn, _RATES, {"sample": RATE_SAMPLE, "window": RATE_WINDOW})
    window = RATE_WINDOW
    per_source: dict[str, int] = {}
    for source, n, total, oldest, now in rates:
        per_source[str(source)] = int(n)
        if int(total) >= RATE_SAMPLE:
            # The sample filled before the window did: the rate is over the span the sample covers.
            window = max(1.0, (now - oldest).total_seconds())
    ingest = await read_ingest(conn)
    result: list[SourceStatus] = []
    seen: set[str] = set()
    for src in ingest.sources:
        seen.add(src.source)
        result.append(
            SourceStatus(
                source=src.source,
                cursor=src.cursor,
                lag_seconds=src.lag_seconds,
                last_commit_ago_seconds=src.last_commit_ago_seconds,
                events_per_second=per_source.get(src.source, 0) / window,
                hosts=src.hosts,
            )
        )
    replays: list[SourceStatus] = []
    for rep in ingest.replays:
        seen.add(rep.source)
        replays.append(
            SourceStatus(
                source=rep.source,
                cursor=rep.cursor,
                lag_seconds=None,
                last_commit_ago_seconds=max(0.0, (ingest.now - rep.committed_at).total_seconds()),
                events_per_second=per_source.get(rep.source, 0) / window,
            )
        )
    # Sources that write events without keeping a cursor (e.g. backfill) still show their rate.
    for name, n in sorted(per_source.items()):
        if name not in seen:
            found = SourceStatus(name, None, None, None, n / window)
            (replays if name.startswith(REPLAY_PREFIX) else result).append(found)
    return result, replays, ingest.problem(), window


# Distinct reasons by skipping through (reason, id): one index probe per reason, however many rejections.
_REASONS = """
WITH RECURSIVE r(reason) AS (
  (SELECT reason FROM rejections ORDER BY reason LIMIT 1)
  UNION ALL
  SELECT (SELECT x.reason FROM rejections x WHERE x.reason > r.reason ORDER BY x.reason LIMIT 1)
  FROM r WHERE r.reason IS NOT NULL
)
SELECT reason FROM r WHERE reason IS NOT NULL LIMIT %(max)s
"""

# One reason's rows as a range of rejections_reason_idx. Written as a range, not `reason = x`, on purpose: with
# an equality the planner drops `reason` from the ORDER BY and may walk the primary key backwards filtering on
# reason, which reads the whole table when that reason's rows are all old. The range keeps (reason, id) order.
_ONE_REASON = "FROM rejections WHERE reason >= %(reason)s AND reason <= %(reason)s"

_EXAMPLES = f"""
SELECT id, received_at, source, did, collection, rkey, left(detail, %(chars)s), left(event, %(chars)s)
{_ONE_REASON} ORDER BY reason DESC, id DESC LIMIT %(n)s
"""


# Per-reason shares from the planner's statistics (most common values), for reasons too frequent to count.
_REASON_SHARES = """
SELECT v.reason, v.share * greatest(c.reltuples, 0)
FROM pg_stats s
CROSS JOIN LATERAL unnest(s.most_common_vals::text::text[], s.most_common_freqs) AS v(reason, share)
JOIN pg_class c ON c.relname = s.tablename AND c.relnamespace = to_regnamespace(s.schemaname)
WHERE s.schemaname = current_schema() AND s.tablename = 'rejections' AND s.attname = 'reason'
"""


async def _rejections(conn: Conn) -> list[ReasonStatus]:
    reasons = [str(r) for (r,) in await _rows(conn, _REASONS, {"max": MAX_REASONS})]
    shares: dict[str, int] | None = None
    result = []
    for reason in reasons:
        count = await _capped_count(
            conn, f"{_ONE_REASON} ORDER BY reason, id", {"reason": reason}, cap=REASON_COUNT_LIMIT
        )
        if count.kind == "at_least":
            if shares is None:
                shares = {str(r): int(n) for r, n in await _rows(conn, _REASON_SHARES)}
            if shares.get(reason, 0) > count.value:
                count = Count(shares[reason], "estimate")
        examples = [
            RejectionExample(
                id=int(i), received_at=at, source=str(src), did=did, collection=col, rkey=rkey, detail=str(detail),
                event=event,
            )
            for i, at, src, did, col, rkey, detail, event in await _rows(
                conn, _EXAMPLES, {"reason": reason, "n": EXAMPLES_PER_REASON, "chars": EXAMPLE_CHARS}
            )
        ]
        result.append(ReasonStatus(reason, count, examples))
    # Newest trouble first: an operator looks for what is going wrong now.
    result.sort(key=lambda r: r.examples[0].id if r.examples else 0, reverse=True)
    return result


_PENDING = "FROM repo_sync WHERE (synced_at IS NULL OR synced_at < marked_at)"

_PENDING_BY_REASON = f"""
SELECT reason, count(*) FROM (SELECT reason {_PENDING} LIMIT %(cap)s) AS p GROUP BY reason ORDER BY reason
"""

_FAILING = f"""
SELECT did, reason, attempts, left(last_error, %(chars)s), marked_at {_PENDING} AND attempts > 0
ORDER BY marked_at DESC LIMIT 10
"""


async def _sync(conn: Conn, tables: list[TableSize]) -> SyncStatus:
    total = next((t.rows for t in tables if t.name == "repo_sync"), Count(0, "exact"))
    pending = await _capped_count(conn, _PENDING)
    by_reason = {
        str(reason): int(n) for reason, n in await _rows(conn, _PENDING_BY_REASON, {"cap": EXACT_LIMIT})
    }
    failing = [
        SyncFailure(str(did), str(reason), int(attempts), str(error or ""), marked_at)
        for did, reason, attempts, error, marked_at in await _rows(conn, _FAILING, {"chars": EXAMPLE_CHARS})
    ]
    return SyncStatus(total=total, pending=pending, pending_by_reason=by_reason, failing=failing)


async def snapshot(conn: Conn) -> StatusSnapshot:
    rows = await _rows(conn, "SELECT pg_database_size(current_database()), now()")
    size, now = rows[0]
    tables = await _tables(conn)
    sources, replays, problem, window = await _sources(conn)
    return StatusSnapshot(
        taken_at=now,
        database_bytes=int(size),
        tables=tables,
        sources=sources,
        replays=replays,
        ingest_problem=problem,
        rate_window_seconds=window,
        rejections=await _rejections(conn),
        sync=await _sync(conn, tables),
    )
