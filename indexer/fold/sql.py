"""The fold, as set-based SQL over one batch of newly appended events (`fold_batch`).

The same statements serve live ingest (the batch is what was just appended) and `rebuild` (the batch is a
range of the log), so a rebuilt index equals the incrementally built one. The fold is confluent, i.e. its result
does not depend on how events are cut into batches:
- a record's state is the maximum (rev, op) over all its events: deletes (op 2) are tombstones kept forever,
  and an event whose rev is not newer than the stored one changes nothing;
- an actor's handle and status are the maximum (event time, seq, event id) over its identity/account events;
- projections are a function of that state: each batch recomputes exactly the rows whose inputs changed;
  like/comment counts move by the exact delta of the rows changed, and a track (re)projected in the batch is
  counted in full, whichever side (like or track) arrived last.
"""

from __future__ import annotations

TEMP_TABLES = (
    """
    CREATE TEMP TABLE IF NOT EXISTS batch_in (
        ord int, source text, source_cursor bigint, did text, kind text, operation text, collection text,
        rkey text COLLATE "C", rev text COLLATE "C", cid text, record jsonb, invalid text,
        created_at timestamptz, handle text, active boolean, status text, seq bigint,
        event_time timestamptz, dedup bytea
    ) ON COMMIT DELETE ROWS
    """,
    """
    CREATE TEMP TABLE IF NOT EXISTS rejections_in (
        source text, source_cursor bigint, reason text, detail text, did text, collection text, rkey text,
        rev text, event text, dedup bytea
    ) ON COMMIT DELETE ROWS
    """,
    """
    CREATE TEMP TABLE IF NOT EXISTS fold_batch (
        id bigint PRIMARY KEY, did text NOT NULL, kind text NOT NULL, op smallint, collection text,
        rkey text COLLATE "C", rev text COLLATE "C", handle text, active boolean, status text, seq bigint,
        event_time timestamptz
    ) ON COMMIT DELETE ROWS
    """,
    """
    CREATE TEMP TABLE IF NOT EXISTS fold_changed (
        did text, collection text, rkey text COLLATE "C", PRIMARY KEY (did, collection, rkey)
    ) ON COMMIT DELETE ROWS
    """,
    """
    CREATE TEMP TABLE IF NOT EXISTS fold_status (
        did text PRIMARY KEY, deleted_changed boolean NOT NULL, active_changed boolean NOT NULL
    ) ON COMMIT DELETE ROWS
    """,
    "CREATE TEMP TABLE IF NOT EXISTS fold_deltas (uri text, likes int, comments int) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS fold_new_tracks (uri text PRIMARY KEY) ON COMMIT DELETE ROWS",
)

COPY_EVENTS = (
    "COPY batch_in (ord, source, source_cursor, did, kind, operation, collection, rkey, rev, cid, record,"
    " invalid, created_at, handle, active, status, seq, event_time, dedup) FROM STDIN"
)
COPY_REJECTIONS = (
    "COPY rejections_in (source, source_cursor, reason, detail, did, collection, rkey, rev, event, dedup) FROM STDIN"
)

INSERT_REJECTIONS = """
INSERT INTO rejections (source, source_cursor, reason, detail, did, collection, rkey, rev, event, dedup)
SELECT source, source_cursor, reason, detail, did, collection, rkey, rev, event, dedup FROM rejections_in
ON CONFLICT (dedup) DO NOTHING
"""

_FOLD_BATCH_COLUMNS = "id, did, kind, op, collection, rkey, rev, handle, active, status, seq, event_time"
_OP_RANK = "CASE operation WHEN 'create' THEN 0 WHEN 'update' THEN 1 WHEN 'delete' THEN 2 END"

# Append to the log; only events not already there are folded (the log and the fold commit together, so an
# event present in the log has been folded).
APPEND_EVENTS = f"""
WITH ins AS (
    INSERT INTO events (source, source_cursor, did, kind, operation, collection, rkey, rev, cid, record,
                        invalid, created_at, handle, active, status, seq, event_time, dedup)
    SELECT source, source_cursor, did, kind, operation, collection, rkey, rev, cid, record,
           invalid, created_at, handle, active, status, seq, event_time, dedup
    FROM batch_in ORDER BY ord
    ON CONFLICT (dedup) DO NOTHING
    RETURNING id, did, kind, operation, collection, rkey, rev, handle, active, status, seq, event_time
)
INSERT INTO fold_batch ({_FOLD_BATCH_COLUMNS})
SELECT id, did, kind, {_OP_RANK}, collection, rkey, rev, handle, active, status, seq, event_time FROM ins
"""

LOAD_LOG_RANGE = f"""
INSERT INTO fold_batch ({_FOLD_BATCH_COLUMNS})
SELECT id, did, kind, {_OP_RANK}, collection, rkey, rev, handle, active, status, seq, event_time
FROM events WHERE id > %(after)s AND id <= %(upto)s
"""

ENSURE_ACTORS = """
INSERT INTO actors (did) SELECT DISTINCT did FROM fold_batch ORDER BY did ON CONFLICT (did) DO NOTHING
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
INSERT INTO fold_status (did, deleted_changed, active_changed)
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

# An account entering or leaving `deleted` removes or restores all its projection rows.
CHANGED_BY_STATUS = """
INSERT INTO fold_changed (did, collection, rkey)
SELECT r.did, r.collection, r.rkey FROM records r JOIN fold_status s ON s.did = r.did
WHERE s.deleted_changed
ON CONFLICT DO NOTHING
"""

# Rows to (re)project: live, valid, author not deleted. Deactivated/taken-down authors keep their rows (hidden
# at read time and excluded from counts) so reactivation shows them again without a refold.
_LIVE = """
FROM fold_changed c
JOIN records r ON r.did = c.did AND r.collection = c.collection AND r.rkey = c.rkey
JOIN events e ON e.id = r.event_id
JOIN actors a ON a.did = r.did{extra}
WHERE c.collection = '{collection}' AND r.op < 2 AND e.invalid IS NULL AND a.status <> 'deleted'
"""


_ITEMS = ", jsonb_array_elements(e.record->'items') WITH ORDINALITY AS i(item, ord)"


def _live(collection: str, extra: str = "") -> str:
    return _LIVE.format(collection=collection, extra=extra)


def _uri(collection: str) -> str:
    return f"'at://' || r.did || '/{collection}/' || r.rkey"


_SORT_AT = "least(coalesce(e.created_at, e.received_at), e.received_at)"


def _delete(table: str, collection: str) -> str:
    return (
        f"DELETE FROM {table} t USING fold_changed c WHERE c.collection = '{collection}'"
        " AND t.did = c.did AND t.rkey = c.rkey"
    )


def _counted(statement: str, column: str, sign: str = "") -> str:
    """Wrap a DELETE/INSERT/UPDATE of likes or comments so each row it touched becomes a count delta on its
    subject: {sign}1 per row whose author is active (for a status flip, +1 or -1 by the new status)."""
    delta = f"{sign}count(*) FILTER (WHERE author_active)"
    if sign == "flip":
        delta = "sum(CASE WHEN author_active THEN 1 ELSE -1 END)"
    other = "comments" if column == "likes" else "likes"
    return (
        f"WITH changed AS ({statement} RETURNING t.subject_uri, t.author_active)\n"
        f"INSERT INTO fold_deltas (uri, {column}, {other}) SELECT subject_uri, {delta}, 0 FROM changed"
        " GROUP BY subject_uri"
    )


TRACK = "fm.plyr.track"
LIKE = "fm.plyr.like"
COMMENT = "fm.plyr.comment"
LIST = "fm.plyr.list"
PROFILE = "fm.plyr.actor.profile"

PROJECT = (
    _delete("tracks", TRACK),
    f"""
    WITH ins AS (
        INSERT INTO tracks (did, rkey, uri, cid, event_id, author_active, title, artist, album, duration,
                            file_type, audio_url, audio_blob_cid, audio_blob_mime, image_url, description,
                            created_at, indexed_at, sort_at)
        SELECT r.did, r.rkey, {_uri(TRACK)}, e.cid, e.id, a.active, e.record->>'title', e.record->>'artist',
               e.record->>'album', plyr_bigint(e.record->'duration'), e.record->>'fileType',
               e.record->>'audioUrl',
               coalesce(e.record->'audioBlob'->'ref'->>'$link', e.record->'audioBlob'->>'cid'),
               e.record->'audioBlob'->>'mimeType', e.record->>'imageUrl', e.record->>'description',
               e.created_at, e.received_at, {_SORT_AT}
        {_live(TRACK)}
        RETURNING uri
    )
    INSERT INTO fold_new_tracks (uri) SELECT uri FROM ins
    """,
    _counted(_delete("likes", LIKE), "likes", "-"),
    _counted(
        f"""
        INSERT INTO likes AS t (did, rkey, uri, cid, event_id, author_active, subject_uri, subject_cid, created_at,
                                indexed_at, sort_at)
        SELECT r.did, r.rkey, {_uri(LIKE)}, e.cid, e.id, a.active, e.record->'subject'->>'uri',
               e.record->'subject'->>'cid', e.created_at, e.received_at, {_SORT_AT}
        {_live(LIKE)}
        """,
        "likes",
    ),
    _counted(_delete("comments", COMMENT), "comments", "-"),
    _counted(
        f"""
        INSERT INTO comments AS t (did, rkey, uri, cid, event_id, author_active, subject_uri, subject_cid, text,
                                   timestamp_ms, created_at, indexed_at, sort_at)
        SELECT r.did, r.rkey, {_uri(COMMENT)}, e.cid, e.id, a.active, e.record->'subject'->>'uri',
               e.record->'subject'->>'cid', e.record->>'text', plyr_bigint(e.record->'timestampMs'),
               e.created_at, e.received_at, {_SORT_AT}
        {_live(COMMENT)}
        """,
        "comments",
    ),
    _delete("lists", LIST),
    _delete("list_items", LIST),
    f"""
    INSERT INTO lists (did, rkey, uri, cid, event_id, author_active, name, list_type, item_count, created_at,
                       indexed_at, sort_at)
    SELECT r.did, r.rkey, {_uri(LIST)}, e.cid, e.id, a.active, e.record->>'name', e.record->>'listType',
           jsonb_array_length(e.record->'items'), e.created_at, e.received_at, {_SORT_AT}
    {_live(LIST)}
    """,
    f"""
    INSERT INTO list_items (did, rkey, position, subject_uri, subject_cid)
    SELECT r.did, r.rkey, (i.ord - 1)::int, i.item->'subject'->>'uri', i.item->'subject'->>'cid'
    {_live(LIST, _ITEMS)}
    """,
    "DELETE FROM profiles t USING fold_changed c"
    f" WHERE c.collection = '{PROFILE}' AND t.did = c.did AND c.rkey = 'self'",
    f"""
    INSERT INTO profiles (did, cid, event_id, author_active, bio, avatar, created_at, indexed_at)
    SELECT r.did, e.cid, e.id, a.active, e.record->>'bio', e.record->>'avatar', e.created_at, e.received_at
    {_live(PROFILE)} AND r.rkey = 'self'
    """,
)


def _flip(table: str) -> str:
    # Rows (re)projected in this batch already carry the new status; only older rows flip.
    return (
        f"UPDATE {table} t SET author_active = a.active FROM fold_status s JOIN actors a ON a.did = s.did"
        " WHERE s.active_changed AND t.did = s.did AND t.author_active <> a.active"
    )


# Authors going (in)active: their rows follow, and so do the counts on everything they liked or commented on.
STATUS_FLIPS = (
    _flip("tracks"),
    _flip("lists"),
    _flip("profiles"),
    _counted(_flip("likes"), "likes", "flip"),
    _counted(_flip("comments"), "comments", "flip"),
)

# Counts move by exact deltas (every like/comment row inserted, deleted or flipped in this batch). A track
# (re)projected in this batch has no trustworthy old count, so it is counted in full instead: that is what
# makes a like that arrived before its track count once the track arrives.
APPLY_COUNTS = (
    """
    UPDATE tracks t SET like_count = t.like_count + d.likes, comment_count = t.comment_count + d.comments
    FROM (SELECT uri, sum(likes)::int AS likes, sum(comments)::int AS comments FROM fold_deltas GROUP BY uri) d
    WHERE t.uri = d.uri AND (d.likes <> 0 OR d.comments <> 0)
      AND NOT EXISTS (SELECT 1 FROM fold_new_tracks n WHERE n.uri = t.uri)
    """,
    """
    UPDATE tracks t
    SET like_count = (SELECT count(*) FROM likes l WHERE l.subject_uri = t.uri AND l.author_active),
        comment_count = (SELECT count(*) FROM comments c WHERE c.subject_uri = t.uri AND c.author_active)
    FROM fold_new_tracks n
    WHERE t.uri = n.uri
      AND (EXISTS (SELECT 1 FROM likes l WHERE l.subject_uri = t.uri AND l.author_active)
           OR EXISTS (SELECT 1 FROM comments c WHERE c.subject_uri = t.uri AND c.author_active))
    """,
)

FOLD = (
    ENSURE_ACTORS,
    FOLD_IDENTITY,
    FOLD_ACCOUNT,
    FOLD_RECORDS,
    CHANGED_BY_STATUS,
    *PROJECT,
    *STATUS_FLIPS,
    *APPLY_COUNTS,
)

SAVE_CURSOR = """
INSERT INTO cursors (source, cursor, event_time, updated_at) VALUES (%(source)s, %(cursor)s, %(event_time)s, now())
ON CONFLICT (source) DO UPDATE
SET cursor = excluded.cursor, event_time = coalesce(excluded.event_time, cursors.event_time), updated_at = now()
"""

# Shared by every batch writer, exclusive for `rebuild`: a rebuild never interleaves with live folding.
FOLD_LOCK_KEY = 7243002
LOCK_SHARED = f"SELECT pg_advisory_xact_lock_shared({FOLD_LOCK_KEY})"
LOCK_EXCLUSIVE = f"SELECT pg_advisory_xact_lock({FOLD_LOCK_KEY})"
