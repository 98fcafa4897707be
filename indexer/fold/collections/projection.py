"""What a projected collection is, and the SQL its projection is written with.

A collection's projection is a function of the fold state (`records`, `events`, `actors`): its statements run
once per batch, after the records and actors are folded, and recompute exactly the rows of the records listed in
`fold_changed`, i.e. delete them and insert again those that are live. Its flip makes the rows of an author whose
active status changed follow the new status. Rows that count toward a track (likes, comments, plays) turn every
row they delete, insert or flip into a count delta in `fold_deltas`, applied once all collections are projected.

`rebuild` runs the same statements over the whole log (`over_log`): the changed records' rows, read from
`fold_changed` and `records` and each looked up in the log by id, become every record's latest event, taken from
the log in one sorted pass by the order `records` keeps (indexer/fold/sql.py). The two forms differ only in
where the rows come from, so the rules that decide what is projected, and how, are written once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Collection:
    nsid: str
    # Re-project the records of this collection changed in the batch (`fold_changed`), in this order.
    project: tuple[str, ...]
    # Its rows follow their author going (in)active (`fold_status`).
    flip: str
    # Whether its rows count toward their subject (track like/comment/play counts), so that its statements also
    # write count deltas.
    counted: bool = False
    # The record field holding its creation time (the log's `created_at`, which bounds the sort time).
    created_field: str = "createdAt"

    @property
    def rebuild(self) -> tuple[str, ...]:
        """`project` over the whole log, for `rebuild` (`over_log`): every record of the collection, projected
        into empty tables."""
        return tuple(over_log(s, self.nsid) for s in self.project)


# How the log orders the operations of one record's events that share a rev: the state keeps the greatest.
OP_RANK = "CASE operation WHEN 'create' THEN 0 WHEN 'update' THEN 1 WHEN 'delete' THEN 2 END"

# Where a batch's rows come from: each record listed in `fold_changed`, with its state (`r`) and the log event
# that state points at (`e`).
_CHANGED = """
FROM fold_changed c
JOIN records r ON c.collection = '{collection}' AND r.did = c.did AND r.collection = c.collection AND r.rkey = c.rkey
JOIN events e ON e.id = r.event_id"""

# Where a rebuild's rows come from: every record of the collection, as the latest of its events by the order
# `records` keeps (REBUILD_RECORDS in indexer/fold/sql.py), so `e` is the event `records` would point at and `r`
# carries the state columns the rules read. One sort of the collection's events replaces a lookup by id per
# record into the whole log, which was most of a rebuild's projection time.
_LATEST = f"""
FROM (SELECT DISTINCT ON (did COLLATE "C", rkey) *, {OP_RANK} AS op FROM events
      WHERE kind = 'commit' AND collection = '{{collection}}'
      ORDER BY did COLLATE "C", rkey, rev DESC, {OP_RANK} DESC, id DESC) e
CROSS JOIN LATERAL (SELECT e.did, e.collection, e.rkey, e.op) r"""

# Rows to (re)project: live, valid, author not deleted, neither the record nor its account taken down by the
# operator. Authors deactivated or taken down by their host keep their rows (hidden at read time and excluded
# from counts) so reactivation shows them again without a refold.
_LIVE = """
JOIN actors a ON a.did = r.did{extra}
WHERE r.op < 2 AND e.invalid IS NULL AND a.status <> 'deleted'
  AND NOT a.taken_down
  AND NOT EXISTS (SELECT 1 FROM takedowns k
                  WHERE k.did = r.did AND k.collection = r.collection AND k.rkey = r.rkey AND k.applied)
"""


def live(nsid: str, extra: str = "") -> str:
    """FROM/WHERE of the changed records of `nsid` that are to be projected; `extra` adds to the FROM list."""
    return _CHANGED.format(collection=nsid) + _LIVE.format(extra=extra)


# The rows of a table (`t`) projected from the changed records (to derive a second table from the first).
_PROJECTED = """
JOIN fold_changed c ON c.collection = '{collection}' AND c.did = t.did AND c.rkey = t.rkey"""


def projected(table: str, nsid: str) -> str:
    """FROM of the rows of `table` (as `t`) that this batch projected for the changed records of `nsid`; in a
    rebuild, every row of `table`."""
    return f"\nFROM {table} t" + _PROJECTED.format(collection=nsid)


def over_log(statement: str, nsid: str) -> str:
    """`statement`, a projection statement of `nsid`, made to read every record of the collection from the log
    instead of the batch's changed records, and every row of a `projected` table (for a rebuild, into empty
    tables: its deletes find nothing)."""
    statement = statement.replace(_CHANGED.format(collection=nsid), _LATEST.format(collection=nsid))
    return statement.replace(_PROJECTED.format(collection=nsid), "")


def uri(nsid: str) -> str:
    """The record's at:// URI, from `r` (records)."""
    return f"'at://' || r.did || '/{nsid}/' || r.rkey"


# When the network delivered the record's version: the source's event time (Jetstream `time_us`, the firehose
# commit's `time`), kept in the log with the event; the local receive time only for events that carry none
# (backfill, events logged before event times were kept). Taken from the log, never from the clock of the fold,
# so a replay of a capture into another database, or a rebuild, gives every row the same time as live ingest.
ARRIVAL = "coalesce(e.event_time, e.received_at)"
# The time a row sorts by: its claimed creation time, never later than its arrival (a future `createdAt` does
# not lift a record above what arrived after it).
SORT_AT = f"least(coalesce(e.created_at, {ARRIVAL}), {ARRIVAL})"


def delete(table: str, nsid: str, *, by_collection: bool = False) -> str:
    """Remove the rows of the changed records of `nsid` from `table` (keyed by did, rkey; or by did, collection,
    rkey for a table several collections share, whose record keys may meet)."""
    key = " AND t.collection = c.collection" if by_collection else ""
    return (
        f"DELETE FROM {table} t USING fold_changed c WHERE c.collection = '{nsid}'"
        f" AND t.did = c.did AND t.rkey = c.rkey{key}"
    )


# The counts a track carries, each moved by the rows of one projection (`fold_deltas` has a column per count).
COUNTS = ("likes", "comments", "plays")


def counted(statement: str, column: str, sign: str = "", subject: str = "subject_uri") -> str:
    """Wrap a DELETE/INSERT/UPDATE of likes, comments or plays so each row it touched becomes a count delta on
    its subject (the row's `subject` column; a row without one counts toward nothing): {sign}1 per row whose
    author is active (for a status flip, +1 or -1 by the new status)."""
    if column not in COUNTS:
        raise ValueError(f"{column!r} is not one of {COUNTS}")
    delta = f"{sign}count(*) FILTER (WHERE author_active)"
    if sign == "flip":
        delta = "sum(CASE WHEN author_active THEN 1 ELSE -1 END)"
    values = ", ".join(delta if c == column else "0" for c in COUNTS)
    return (
        f"WITH changed AS ({statement} RETURNING t.{subject} AS subject_uri, t.author_active)\n"
        f"INSERT INTO fold_deltas (uri, {', '.join(COUNTS)}) SELECT subject_uri, {values} FROM changed"
        " WHERE subject_uri IS NOT NULL GROUP BY subject_uri"
    )


def flip(table: str) -> str:
    """Rows of `table` take their author's new active status. Rows (re)projected in this batch already carry
    it; only older rows flip."""
    return (
        f"UPDATE {table} t SET author_active = a.active FROM fold_status s JOIN actors a ON a.did = s.did"
        " WHERE s.active_changed AND t.did = s.did AND t.author_active <> a.active"
    )
