"""The fold, as set-based SQL over one batch of newly appended events (`fold_batch`).

The same statements serve live ingest (the batch is what was just appended) and a refold of the log range by
range; `rebuild` derives the fold state from the whole log at once by the same rules (`REBUILD_*`, below) and
projects it with the same collection statements, so a rebuilt index equals the incrementally built one. The
fold is confluent, i.e. its result does not depend on how events are cut into batches:
- a record's state is the maximum (rev, op) over all its events: deletes (op 2) are tombstones kept forever,
  and an event whose rev is not newer than the stored one changes nothing;
- an actor's handle and status are the maximum (event time, seq, event id) over its identity/account events;
- an operator's takedown of a subject is its latest `takedown` event in log order (applied or undone); a
  taken-down record or account leaves the projections like a deleted one and comes back on undo;
- projections are a function of that state: each batch recomputes exactly the rows whose inputs changed;
  like/comment/play counts move by the exact delta of the rows changed, and a track (re)projected in the batch is
  counted in full, whichever side (like or track) arrived last.
"""

from __future__ import annotations

from typing import Literal

from indexer.fold.collections import COLLECTIONS
from indexer.fold.collections.projection import OP_RANK as _OP_RANK

# The batch tables, private to each connection that folds. One definition; the connection's owner chooses when
# their rows go (see indexer/fold/apply.py): at every commit, or when it empties them itself.
_TEMP_TABLES = {
    "batch_in": """
        ord int, source text, source_cursor bigint, did text, kind text, operation text, collection text,
        rkey text COLLATE "C", rev text COLLATE "C", cid text, record jsonb, invalid text,
        created_at timestamptz, handle text, active boolean, status text, seq bigint,
        event_time timestamptz, dedup bytea
    """,
    "rejections_in": """
        source text, source_cursor bigint, reason text, detail text, did text, collection text, rkey text,
        rev text, event text, dedup bytea
    """,
    "fold_batch": """
        id bigint PRIMARY KEY, did text NOT NULL, kind text NOT NULL, op smallint, collection text,
        rkey text COLLATE "C", rev text COLLATE "C", handle text, active boolean, status text, seq bigint,
        event_time timestamptz
    """,
    "fold_changed": 'did text, collection text, rkey text COLLATE "C", PRIMARY KEY (did, collection, rkey)',
    # reproject: all the DID's records (account deleted or taken down, or back); active_changed: its rows flip.
    "fold_status": "did text PRIMARY KEY, reproject boolean NOT NULL, active_changed boolean NOT NULL",
    "fold_deltas": "uri text, likes int, comments int, plays int",
    "fold_new_tracks": "uri text PRIMARY KEY",
}
TEMP_TABLE_NAMES = tuple(_TEMP_TABLES)

OnCommit = Literal["DELETE ROWS", "PRESERVE ROWS"]


def create_temp_tables(on_commit: OnCommit) -> tuple[str, ...]:
    return tuple(
        f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns}) ON COMMIT {on_commit}"
        for name, columns in _TEMP_TABLES.items()
    )


# Column order of the rows built by indexer/fold/prepare.py, as copied into `batch_in` and `rejections_in`.
EVENT_COLUMNS = (
    "ord",
    "source",
    "source_cursor",
    "did",
    "kind",
    "operation",
    "collection",
    "rkey",
    "rev",
    "cid",
    "record",
    "invalid",
    "created_at",
    "handle",
    "active",
    "status",
    "seq",
    "event_time",
    "dedup",
)
REJECTION_COLUMNS = (
    "source",
    "source_cursor",
    "reason",
    "detail",
    "did",
    "collection",
    "rkey",
    "rev",
    "event",
    "dedup",
)
COPY_EVENTS = f"COPY batch_in ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
COPY_REJECTIONS = f"COPY rejections_in ({', '.join(REJECTION_COLUMNS)}) FROM STDIN"

INSERT_REJECTIONS = """
INSERT INTO rejections (source, source_cursor, reason, detail, did, collection, rkey, rev, event, dedup)
SELECT source, source_cursor, reason, detail, did, collection, rkey, rev, event, dedup FROM rejections_in
ON CONFLICT (dedup) DO NOTHING
"""

_FOLD_BATCH_COLUMNS = "id, did, kind, op, collection, rkey, rev, handle, active, status, seq, event_time"

# The batch's rows into the log, each stored once (by its dedup key); the two appends below differ in what they
# do with the rows it returns.
_APPEND_TO_LOG = """
    INSERT INTO events (source, source_cursor, did, kind, operation, collection, rkey, rev, cid, record,
                        invalid, created_at, handle, active, status, seq, event_time, dedup)
    SELECT source, source_cursor, did, kind, operation, collection, rkey, rev, cid, record,
           invalid, created_at, handle, active, status, seq, event_time, dedup
    FROM batch_in ORDER BY ord
    ON CONFLICT (dedup) DO NOTHING"""

# Append to the log; only events not already there are folded (the log and the fold commit together, so an
# event present in the log has been folded).
APPEND_EVENTS = f"""
WITH ins AS ({_APPEND_TO_LOG}
    RETURNING id, did, kind, operation, collection, rkey, rev, handle, active, status, seq, event_time
)
INSERT INTO fold_batch ({_FOLD_BATCH_COLUMNS})
SELECT id, did, kind, {_OP_RANK}, collection, rkey, rev, handle, active, status, seq, event_time FROM ins
"""

# A bulk replay's append (indexer/capture/bulk.py): to the log only, the fold left to the rebuild that ends the
# replay. What went in, by kind: how many, how many are records their lexicon refuses, and the first id (where
# the log's unfolded tail starts, if it starts here).
APPEND_UNFOLDED = f"""
WITH ins AS ({_APPEND_TO_LOG}
    RETURNING id, kind, invalid IS NOT NULL AS invalid
)
SELECT kind, count(*), count(*) FILTER (WHERE invalid), min(id) FROM ins GROUP BY kind
"""

# The log's unfolded tail (`unfolded_log`, migration 0017): marked by the first append that leaves events unfolded
# (an earlier mark stays: the tail starts there), cleared by the rebuild that folds it, in the transaction that
# installs the rebuilt index.
MARK_UNFOLDED = "INSERT INTO unfolded_log (after_id) VALUES (%(after)s) ON CONFLICT (one) DO NOTHING"
CLEAR_UNFOLDED = "DELETE FROM unfolded_log"
UNFOLDED = "SELECT after_id, since FROM unfolded_log"

LOAD_LOG_RANGE = f"""
INSERT INTO fold_batch ({_FOLD_BATCH_COLUMNS})
SELECT id, did, kind, {_OP_RANK}, collection, rkey, rev, handle, active, status, seq, event_time
FROM events WHERE id > %(after)s AND id <= %(upto)s
"""

ENSURE_ACTORS = """
INSERT INTO actors (did) SELECT DISTINCT did FROM fold_batch WHERE did <> '' ORDER BY did ON CONFLICT (did) DO NOTHING
"""

_NEWER = """(coalesce({n}.event_time, '-infinity'), coalesce({n}.seq, -1), {n}.id)
          > (coalesce({o}_time, '-infinity'), coalesce({o}_seq, -1), {o}_event_id)"""

FOLD_IDENTITY = f"""
UPDATE actors a
SET handle = n.handle, handle_time = n.event_time, handle_seq = n.seq, handle_event_id = n.id
FROM (
    SELECT DISTINCT ON (did) did, id, handle, seq, event_time FROM fold_batch WHERE kind = 'identity'
    ORDER BY did, event_time DESC NULLS LAST, seq DESC NULLS LAST, id DESC
) n
WHERE a.did = n.did
  AND (a.handle_event_id IS NULL OR {_NEWER.format(n="n", o="a.handle")})
"""

FOLD_ACCOUNT = f"""
WITH n AS (
    SELECT DISTINCT ON (did) did, id, active, status, seq, event_time FROM fold_batch WHERE kind = 'account'
    ORDER BY did, event_time DESC NULLS LAST, seq DESC NULLS LAST, id DESC
), upd AS (
    UPDATE actors a
    SET active = n.active,
        status = CASE WHEN n.active THEN 'active' ELSE coalesce(nullif(n.status, ''), 'inactive') END,
        status_time = n.event_time, status_seq = n.seq, status_event_id = n.id
    FROM n, actors old
    WHERE a.did = n.did AND old.did = a.did
      AND (a.status_event_id IS NULL OR {_NEWER.format(n="n", o="a.status")})
    RETURNING a.did, old.status AS old_status, a.status AS new_status,
              old.active AS old_active, a.active AS new_active
)
INSERT INTO fold_status (did, reproject, active_changed)
SELECT did, (old_status = 'deleted') <> (new_status = 'deleted'), old_active <> new_active
FROM upd WHERE old_status <> new_status OR old_active <> new_active
"""

FOLD_RECORDS = """
WITH n AS (
    SELECT DISTINCT ON (did, collection, rkey) did, collection, rkey, rev, op, id
    FROM fold_batch WHERE kind = 'commit'
    ORDER BY did, collection, rkey, rev DESC, op DESC, id DESC
), up AS (
    INSERT INTO records AS r (did, collection, rkey, rev, op, event_id)
    SELECT did, collection, rkey, rev, op, id FROM n ORDER BY did, collection, rkey
    ON CONFLICT (did, collection, rkey) DO UPDATE
        SET rev = excluded.rev, op = excluded.op, event_id = excluded.event_id
        WHERE (excluded.rev, excluded.op) > (r.rev, r.op)
    RETURNING r.did, r.collection, r.rkey
)
INSERT INTO fold_changed (did, collection, rkey) SELECT did, collection, rkey FROM up
"""

# Takedowns are the operator's events (kind `takedown`, indexer/moderation/takedowns.py), ordered by their place
# in the log: a subject's latest wins. The records they name are re-projected (the projections' `live()` leaves
# out what is taken down); an account's flag flips and all its records are re-projected, as when an account
# is deleted. Re-projecting recounts exactly: the like/comment rows leave with deltas and a track returns
# counted in full, so an undo restores every count.
FOLD_TAKEDOWNS = """
WITH n AS (
    SELECT DISTINCT ON (b.did, b.collection, b.rkey) b.did, b.collection, b.rkey, b.op < 2 AS applied, b.id,
           b.event_time
    FROM (SELECT did, coalesce(collection, '') AS collection, coalesce(rkey, '') AS rkey, op, id, event_time
          FROM fold_batch WHERE kind = 'takedown') b
    ORDER BY b.did, b.collection, b.rkey, b.id DESC
), up AS (
    INSERT INTO takedowns AS t (did, collection, rkey, applied, reason, event_id, updated_at)
    SELECT n.did, n.collection, n.rkey, n.applied, e.record->>'reason', n.id, coalesce(n.event_time, e.received_at)
    FROM n JOIN events e ON e.id = n.id
    ORDER BY n.did, n.collection, n.rkey
    ON CONFLICT (did, collection, rkey) DO UPDATE
        SET applied = excluded.applied, reason = excluded.reason, event_id = excluded.event_id,
            updated_at = excluded.updated_at
        WHERE excluded.event_id > t.event_id
    RETURNING t.did, t.collection, t.rkey, t.applied
), accounts AS (
    UPDATE actors a SET taken_down = up.applied FROM up
    WHERE up.collection = '' AND a.did = up.did AND a.taken_down <> up.applied
    RETURNING a.did
), reproject AS (
    INSERT INTO fold_status (did, reproject, active_changed) SELECT did, true, false FROM accounts
    ON CONFLICT (did) DO UPDATE SET reproject = true
)
INSERT INTO fold_changed (did, collection, rkey)
SELECT did, collection, rkey FROM up WHERE collection NOT IN ('', 'blob')
ON CONFLICT DO NOTHING
"""

# An account entering or leaving `deleted` or a takedown removes or restores all its projection rows.
CHANGED_BY_STATUS = """
INSERT INTO fold_changed (did, collection, rkey)
SELECT r.did, r.collection, r.rkey FROM records r JOIN fold_status s ON s.did = r.did
WHERE s.reproject
ON CONFLICT DO NOTHING
"""

# Each collection re-projects its changed records (indexer/fold/collections/).
PROJECT = tuple(stmt for collection in COLLECTIONS for stmt in collection.project)

# Authors going (in)active: their rows follow, and so do the counts on everything they liked or commented on
# (the rows that count toward a track flip last).
STATUS_FLIPS = (
    *(c.flip for c in COLLECTIONS if not c.counted),
    *(c.flip for c in COLLECTIONS if c.counted),
)

# Counts move by exact deltas (every like/comment/play row inserted, deleted or flipped in this batch). A track
# (re)projected in this batch has no trustworthy old count, so it is counted in full instead: that is what
# makes a like that arrived before its track count once the track arrives.
APPLY_COUNTS = (
    """
    UPDATE tracks t SET like_count = t.like_count + d.likes, comment_count = t.comment_count + d.comments,
                        play_count = t.play_count + d.plays
    FROM (SELECT uri, sum(likes)::int AS likes, sum(comments)::int AS comments, sum(plays)::int AS plays
          FROM fold_deltas GROUP BY uri) d
    WHERE t.uri = d.uri AND (d.likes <> 0 OR d.comments <> 0 OR d.plays <> 0)
      AND NOT EXISTS (SELECT 1 FROM fold_new_tracks n WHERE n.uri = t.uri)
    """,
    """
    UPDATE tracks t
    SET like_count = (SELECT count(*) FROM likes l WHERE l.subject_uri = t.uri AND l.author_active),
        comment_count = (SELECT count(*) FROM comments c WHERE c.subject_uri = t.uri AND c.author_active),
        play_count = (SELECT count(*) FROM plays p WHERE p.track_uri = t.uri AND p.author_active)
    FROM fold_new_tracks n
    WHERE t.uri = n.uri
      AND (EXISTS (SELECT 1 FROM likes l WHERE l.subject_uri = t.uri AND l.author_active)
           OR EXISTS (SELECT 1 FROM comments c WHERE c.subject_uri = t.uri AND c.author_active)
           OR EXISTS (SELECT 1 FROM plays p WHERE p.track_uri = t.uri AND p.author_active))
    """,
)

FOLD = (
    ENSURE_ACTORS,
    FOLD_IDENTITY,
    FOLD_ACCOUNT,
    FOLD_RECORDS,
    # After the records: a record and its takedown may share a batch, and both list it in `fold_changed`.
    FOLD_TAKEDOWNS,
    CHANGED_BY_STATUS,
    *PROJECT,
    *STATUS_FLIPS,
    *APPLY_COUNTS,
)
# The fold in one round trip.
FOLD_SQL = ";\n".join(FOLD)

SAVE_CURSOR = """
INSERT INTO cursors (source, cursor, event_time, updated_at) VALUES (%(source)s, %(cursor)s, %(event_time)s, now())
ON CONFLICT (source) DO UPDATE
SET cursor = excluded.cursor, event_time = coalesce(excluded.event_time, cursors.event_time), updated_at = now()
"""


# -- The same rules over the whole log at once, for `rebuild` (indexer/fold/rebuild.py) ---------------------------
# Each statement fills one empty fold-state table from `events` and gives every row the value the live fold
# converges to, whatever the batches: the maximum of the very order the live statements compare with. Two
# events of one record never tie on (rev, op) (they would share a dedup key), so the id only breaks ties
# between what the log cannot hold twice; ordering on it too makes each statement a function of the log.
# (Sorted bytewise: cheaper than the database's collation, and equality, all DISTINCT ON needs, is the same.)
_REBUILD_RECORDS = f"""
INSERT INTO records (did, collection, rkey, rev, op, event_id)
SELECT DISTINCT ON (did COLLATE "C", collection COLLATE "C", rkey) did, collection, rkey, rev, {_OP_RANK}, id
FROM events WHERE kind = 'commit'{{share}}
ORDER BY did COLLATE "C", collection COLLATE "C", rkey, rev DESC, {_OP_RANK} DESC, id DESC
"""
REBUILD_RECORDS = _REBUILD_RECORDS.format(share="")


def rebuild_records_share(share: int, shares: int) -> str:
    """REBUILD_RECORDS for the DIDs of one of `shares` disjoint shares (by a hash of the DID): a record's events
    all share its DID, so the shares, run by as many connections at once, insert exactly REBUILD_RECORDS' rows."""
    if not 0 <= share < shares:
        raise ValueError(f"share {share} of {shares}")
    return _REBUILD_RECORDS.format(share=f" AND (hashtext(did) & 2147483647) % {int(shares)} = {int(share)}")


REBUILD_TAKEDOWNS = f"""
INSERT INTO takedowns (did, collection, rkey, applied, reason, event_id, updated_at)
SELECT DISTINCT ON (did, coalesce(collection, ''), coalesce(rkey, ''))
       did, coalesce(collection, ''), coalesce(rkey, ''), {_OP_RANK} < 2, record->>'reason', id,
       coalesce(event_time, received_at)
FROM events WHERE kind = 'takedown'
ORDER BY did, coalesce(collection, ''), coalesce(rkey, ''), id DESC
"""

# Newest first by (event time, seq, id), missing times and seqs lowest: the order of `_NEWER`.
_LATEST = "did, coalesce(event_time, '-infinity') DESC, coalesce(seq, -1) DESC, id DESC"

# Every DID of the log ('' is the owner of audio objects, no account), with its latest handle and status and
# whether the operator took the account down (after REBUILD_TAKEDOWNS).
REBUILD_ACTORS = f"""
INSERT INTO actors (did, handle, handle_time, handle_seq, handle_event_id, status, active, status_time,
                    status_seq, status_event_id, taken_down)
SELECT d.did, h.handle, h.event_time, h.seq, h.id,
       CASE WHEN s.id IS NULL THEN 'active'
            WHEN s.active THEN 'active' ELSE coalesce(nullif(s.status, ''), 'inactive') END,
       CASE WHEN s.id IS NULL THEN true ELSE s.active END, s.event_time, s.seq, s.id,
       coalesce(k.applied, false)
FROM (SELECT DISTINCT did FROM events WHERE did <> '') d
LEFT JOIN (SELECT DISTINCT ON (did) did, id, handle, seq, event_time FROM events WHERE kind = 'identity'
           ORDER BY {_LATEST}) h ON h.did = d.did
LEFT JOIN (SELECT DISTINCT ON (did) did, id, active, status, seq, event_time FROM events WHERE kind = 'account'
           ORDER BY {_LATEST}) s ON s.did = d.did
LEFT JOIN takedowns k ON k.did = d.did AND k.collection = '' AND k.rkey = '' AND k.applied
ORDER BY d.did
"""

# Every collection's projection over the whole log (`Collection.rebuild`): each record's latest event, into
# empty tables, by the rules of the live statements (indexer/fold/collections/projection.py `over_log`).
REBUILD_PROJECT = tuple(stmt for collection in COLLECTIONS for stmt in collection.rebuild)
