"""The fold's transaction step: one prepared batch (indexer/fold/prepare.py) into the log, the fold, the
rejections and the source cursors.

Contract of `apply`:
- it runs in the caller's transaction and commits nothing itself: the log append, the fold, the rejections and
  the cursors commit together or not at all, so a crash replays a batch and never skips one;
- it holds the fold lock shared: a `rebuild` (exclusive) never interleaves with it;
- only events new to the log are folded: a duplicate is stored once and folds to nothing;
- Bluesky profiles of actors the index does not know never reach the log or the rejections (`Applied.dropped_*`);
- it raises what Postgres raises; whether to retry, split the batch or give up is the caller's decision.

`fold=False` (a bulk replay, indexer/capture/bulk.py) appends to the log without folding: the same rows, the same
rejections and cursors, but the events new to the log are left for the `rebuild` that ends the replay, and the
log's unfolded tail is marked (`unfolded_log`) in the same transaction, so a replay killed before its rebuild
leaves a mark that `status` shows and the next rebuild clears. Its connection needs `unfolded_dids`
(indexer/fold/collections/bsky_profile.py). Tracks naming audio stored here are returned unchecked
(`Applied.unchecked_audio`): the check joins the tracks, which only the rebuild projects.

The fold works through temp tables, private to the connection and created once per connection
(`create_temp_tables`), which must be empty when a batch starts. Their owner chooses when their rows go:
- "DELETE ROWS": at every commit. Simple, but Postgres then truncates each table at each commit: negligible
  next to a batch of thousands of events, most of the commit time of a one-event batch under load;
- "PRESERVE ROWS": kept across commits; the owner empties them (`empty_temp_tables`) before the next batch,
  e.g. after it has answered. Emptying by DELETE leaves dead rows behind, so such a connection is best replaced
  now and then.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from indexer.audio import refs as audio_refs
from indexer.db import locks
from indexer.fold import sql
from indexer.fold.collections import bsky_profile
from indexer.fold.prepare import Prepared

Connection = psycopg.AsyncConnection[tuple[object, ...]]
Cursor = psycopg.AsyncCursor[tuple[object, ...]]

_EMPTY = ";".join(f"DELETE FROM {name}" for name in sql.TEMP_TABLE_NAMES)


async def create_temp_tables(conn: Connection, on_commit: sql.OnCommit) -> None:
    for stmt in sql.create_temp_tables(on_commit):
        await conn.execute(stmt)


async def empty_temp_tables(conn: Connection) -> None:
    await conn.execute(_EMPTY)


# Of the rows just appended (`fold_batch`), those that are records their lexicon refuses. Only the batch's invalid
# rows are looked up (by their dedup key), and only in batches that have some: valid batches pay nothing.
_COUNT_INVALID_APPENDED = """
SELECT count(*) FROM events e
WHERE e.dedup IN (SELECT dedup FROM batch_in WHERE invalid IS NOT NULL)
  AND e.invalid IS NOT NULL
  AND e.id IN (SELECT id FROM fold_batch)
"""


@dataclass
class Applied:
    # Events new to the log, by kind (commit, identity, account); those already there were not inserted.
    appended: Counter[str] = field(default_factory=Counter)
    # How many of `appended` are records their lexicon refuses (logged for their rev; also rejections).
    invalid_appended: int = 0
    # (did, rkey, sha256) of the tracks flagged: they point at audio uploaded here that is not stored.
    flagged: list[tuple[str, str, str]] = field(default_factory=list)
    # Items left out before the log append because they are not ours to keep: Bluesky profiles of actors the
    # index does not know (indexer/fold/collections/bsky_profile.py). `dropped_valid`: valid events among them;
    # `dropped_events`: their log rows (`dropped_valid` of them valid); `dropped_rejections`: their rejections, by
    # reason (refused records and malformed commits of that collection).
    dropped_events: int = 0
    dropped_valid: int = 0
    dropped_rejections: Counter[str] = field(default_factory=Counter)
    # Without the fold: the batch's tracks naming audio stored here, for the caller to check after its rebuild.
    unchecked_audio: list[audio_refs.OwnAudio] = field(default_factory=list)


async def apply(conn: Connection, p: Prepared, *, fold: bool = True) -> Applied:
    applied = Applied()
    async with conn.cursor() as cur:
        await cur.execute(locks.LOCK_FOLD_SHARED)
        if p.events:
            await copy_rows(cur, sql.COPY_EVENTS, p.events)
            if p.bsky_profiles:
                await cur.execute(
                    bsky_profile.DROP_UNKNOWN_EVENTS if fold else bsky_profile.DROP_UNKNOWN_EVENTS_UNFOLDED
                )
                dropped = await cur.fetchall()
                applied.dropped_events = len(dropped)
                applied.dropped_valid = sum(1 for (valid,) in dropped if valid)
            if fold:
                await _append_and_fold(cur, p, applied)
            else:
                await _append_unfolded(cur, applied)
                applied.unchecked_audio = list(p.own_audio)
        applied.dropped_rejections = await save_rejections_and_cursors(cur, p, fold=fold)
    return applied


async def _append_and_fold(cur: Cursor, p: Prepared, applied: Applied) -> None:
    await cur.execute(sql.APPEND_EVENTS)
    if cur.rowcount:
        await cur.execute("SELECT kind, count(*) FROM fold_batch GROUP BY kind")
        for kind, count in await cur.fetchall():
            applied.appended[str(kind)] = int(str(count))
        if p.invalid_events:
            await cur.execute(_COUNT_INVALID_APPENDED)
            counted = await cur.fetchone()
            applied.invalid_appended = 0 if counted is None else int(str(counted[0]))
        await cur.execute(sql.FOLD_SQL)
    # Also for events already in the log: a record folded first by another writer (e.g. the write proxy's) is
    # checked when its firehose echo arrives here.
    if p.own_audio:
        applied.flagged = await audio_refs.flag_missing(cur, p.own_audio)


async def _append_unfolded(cur: Cursor, applied: Applied) -> None:
    await cur.execute(sql.APPEND_UNFOLDED)
    by_kind = await cur.fetchall()
    for kind, count, invalid, _ in by_kind:
        applied.appended[str(kind)] = int(str(count))
        applied.invalid_appended += int(str(invalid))
    first = min((int(str(first_id)) for *_, first_id in by_kind), default=None)
    if first is not None:
        await cur.execute(sql.MARK_UNFOLDED, {"after": first - 1})
    # After the drop above, which read the batch's own rows: the authors known from now on.
    await cur.execute(bsky_profile.ADD_UNFOLDED_DIDS)


async def copy_rows(cur: Cursor, statement: str, rows: Sequence[Sequence[object]]) -> None:
    """COPY `rows` into the temp table `statement` names."""
    async with cur.copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)


async def save_rejections_and_cursors(cur: Cursor, p: Prepared, *, fold: bool = True) -> Counter[str]:
    """The batch's rejections (each stored once) and its sources' positions, last in the transaction. Returns
    the rejections left out, by reason (those of Bluesky profiles of unknown actors)."""
    dropped: Counter[str] = Counter()
    if p.rejections:
        await copy_rows(cur, sql.COPY_REJECTIONS, p.rejections)
        if p.bsky_profiles:
            # `batch_in` still holds the batch's rows of our namespace: a DID known by them keeps its rejections.
            await cur.execute(
                bsky_profile.DROP_UNKNOWN_REJECTIONS if fold else bsky_profile.DROP_UNKNOWN_REJECTIONS_UNFOLDED
            )
            dropped = Counter(str(reason) for (reason,) in await cur.fetchall())
        await cur.execute(sql.INSERT_REJECTIONS)
    for source, (cursor, event_time) in p.cursors.items():
        await cur.execute(sql.SAVE_CURSOR, {"source": source, "cursor": cursor, "event_time": event_time})
    return dropped
