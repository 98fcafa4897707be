"""`plyr-appview status`: counts, cursors, rejections, live sources, replays and a state hash; and
`status --check`, the ingest health verdict.

The state hash is a digest over the logical content of the projections (which records are indexed, at which
CID, with which counts, whose handle and status, what the operator took down), leaving out what legitimately
differs between two indexes of the same data: event ids, revs (backfill sees one commit rev for a whole repo)
and indexing times.

`sources` are the live sources with the connection state the indexer reports for each host
(indexer/source_status.py); `replays` the capture replays, apart. `check()` reads only those (never the
counts or the hash, which take minutes on a big index) and says why ingest is not healthy, or None.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

from indexer.db.locks import FOLD_LOCK_KEY
from indexer.fold.shadow import SCHEMA as REBUILD_SCHEMA
from indexer.source_status import DEFAULT_MAX_LAG_SECONDS, IngestState, iso_time, read_ingest

# One query per projection, each yielding one text line per row.
_HASHED: dict[str, str] = {
    "actors": "SELECT concat_ws('|', did, coalesce(handle, ''), status, active::text, taken_down::text) FROM actors",
    "takedowns": "SELECT concat_ws('|', did, collection, rkey, coalesce(reason, '')) FROM takedowns WHERE applied",
    "tracks": "SELECT concat_ws('|', uri, cid, like_count, comment_count, play_count) FROM tracks",
    "likes": "SELECT concat_ws('|', uri, cid, subject_uri, subject_cid) FROM likes",
    "comments": "SELECT concat_ws('|', uri, cid, subject_uri, subject_cid) FROM comments",
    "lists": "SELECT concat_ws('|', uri, cid, item_count) FROM lists",
    "list_items": "SELECT concat_ws('|', did, rkey, position, subject_uri, subject_cid) FROM list_items",
    "profiles": "SELECT concat_ws('|', did, cid) FROM profiles",
    "bsky_profiles": "SELECT concat_ws('|', did, cid) FROM bsky_profiles",
    "plays": "SELECT concat_ws('|', uri, cid, coalesce(track_uri, '')) FROM plays",
    "actor_status": "SELECT concat_ws('|', uri, cid, coalesce(track_uri, '')) FROM actor_status",
}

_VISIBLE_COUNTS = """
SELECT
  (SELECT count(*) FROM tracks WHERE author_active),
  (SELECT count(*) FROM likes WHERE author_active),
  (SELECT count(*) FROM lists WHERE author_active),
  (SELECT count(*) FROM comments WHERE author_active),
  (SELECT count(*) FROM profiles WHERE author_active),
  (SELECT count(*) FROM actors WHERE active),
  (SELECT count(*) FROM events),
  (SELECT count(*) FROM rejections)
"""


async def state_hash(conn: psycopg.AsyncConnection[Any]) -> str:
    digest = hashlib.sha256()
    for name, query in _HASHED.items():
        cur = await conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(line, E'\\n' ORDER BY line COLLATE \"C\"), ''))"
            f" FROM ({query}) AS s(line)"
        )
        row = await cur.fetchone()
        assert row is not None
        digest.update(f"{name}:{row[0]}:{row[1]}\n".encode())
    return digest.hexdigest()


def ingest_json(state: IngestState) -> dict[str, Any]:
    """`sources` (live) and `replays` of `status --json`."""
    return {
        "sources": {
            s.source: {
                "cursor": s.cursor,
                "event_time": iso_time(s.event_time),
                "committed_at": iso_time(s.committed_at),
                "lag_seconds": None if s.lag_seconds is None else round(s.lag_seconds, 3),
                "connected": s.connected,
                "hosts": [h.report() for h in s.hosts],
            }
            for s in state.sources
        },
        "replays": {
            r.source: {
                "cursor": r.cursor,
                "event_time": iso_time(r.event_time),
                "committed_at": iso_time(r.committed_at),
            }
            for r in state.replays
        },
        "ingest_problem": state.problem(),
    }


# A rebuild's shadow tables (indexer/fold/shadow.py): there while an online rebuild runs (it holds the fold lock
# exclusively), or left by one killed outright, which the next rebuild drops. Their size is disk the index takes
# twice until then.
_REBUILD = """
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s),
       (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(schema)s AND c.relkind = 'r'),
       EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = %(key)s
               AND objsubid = 1 AND mode = 'ExclusiveLock' AND granted)
"""


async def _rebuild(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any] | None:
    row = await (await conn.execute(_REBUILD, {"schema": REBUILD_SCHEMA, "key": FOLD_LOCK_KEY})).fetchone()
    if row is None or not row[0]:
        return None
    running = bool(row[2])
    return {
        "schema": REBUILD_SCHEMA,
        "shadow_bytes": int(row[1]),
        "running": running,
        "note": "an online rebuild is loading the new index"
        if running
        else "left by a rebuild that was killed; the next rebuild drops it, or DROP SCHEMA plyr_rebuild CASCADE",
    }


# The log's unfolded tail (`unfolded_log`, migration 0017): events a bulk replay appended that no rebuild has
# folded yet, while its rebuild runs or after it was stopped. The index (and the state hash) does not show them.
_UNFOLDED = """
SELECT u.after_id, u.since, (SELECT count(*) FROM events e WHERE e.id > u.after_id) FROM unfolded_log u
"""


async def _unfolded(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any] | None:
    row = await (await conn.execute(_UNFOLDED)).fetchone()
    if row is None:
        return None
    return {
        "after_id": int(row[0]),
        "since": row[1].isoformat(),
        "events": int(row[2]),
        "note": "events a bulk replay appended that the index does not show yet: a bulk replay finishes with a"
        " rebuild; if none is running, `plyr-appview rebuild` folds them",
    }


async def read_ingest_state(conninfo: str) -> IngestState:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        state = await read_ingest(conn)
        await conn.execute("COMMIT")
    return state


async def check(conninfo: str, max_lag: float = DEFAULT_MAX_LAG_SECONDS) -> tuple[IngestState, str | None]:
    """The ingest state and why it is not healthy (None: healthy), for `status --check`."""
    state = await read_ingest_state(conninfo)
    return state, state.problem(max_lag)


async def status(conninfo: str) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        # One snapshot for every number, so counts and hash describe the same state.
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur = await conn.execute(_VISIBLE_COUNTS)
        row = await cur.fetchone()
        assert row is not None
        tracks, likes, lists, comments, profiles, actors, events, rejections = (int(v) for v in row)
        cur = await conn.execute("SELECT reason, count(*) FROM rejections GROUP BY reason ORDER BY reason")
        by_reason = {str(r): int(n) for r, n in await cur.fetchall()}
        cur = await conn.execute("SELECT source, cursor, event_time, updated_at FROM cursors ORDER BY source")
        cursors = {
            str(source): {
                "cursor": int(cursor),
                "event_time": None if event_time is None else event_time.isoformat(),
                "updated_at": updated_at.isoformat(),
            }
            for source, cursor, event_time, updated_at in await cur.fetchall()
        }
        ingest = await read_ingest(conn)
        digest = await state_hash(conn)
        rebuild = await _rebuild(conn)
        unfolded = await _unfolded(conn)
        await conn.execute("COMMIT")
    return {
        "counts": {
            "tracks": tracks,
            "likes": likes,
            "lists": lists,
            "comments": comments,
            "profiles": profiles,
            "actors": actors,
        },
        "log": {"events": events},
        "rejections": {"total": rejections, "by_reason": by_reason},
        "cursors": cursors,
        **ingest_json(ingest),
        "state_hash": digest,
        "rebuild": rebuild,
        "unfolded": unfolded,
    }
