"""Tables, as SQLAlchemy Core metadata. Migrations (migrations/versions) create them; the hot path speaks SQL
through psycopg directly (see indexer/fold/sql.py) because set-based batch statements are clearer in SQL.

Three layers:
- `events`: the append-only log, the source of truth. Never updated, never deleted from.
- fold state (`records`, `actors`): per record key the winning event, per DID the latest handle and status.
- projections (`tracks`, `track_features`, `likes`, `lists`, `list_items`, `comments`, `profiles`,
  `bsky_profiles`, `plays`, `actor_status`): read models derived from the fold state only, so `rebuild` can drop
  and refold them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# Revisions (TIDs) and record keys compare bytewise.
C = "C"


def _tstz(name: str, **kw: object) -> Column[object]:
    return Column(name, DateTime(timezone=True), **kw)  # type: ignore[arg-type]


events = Table(
    "events",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("source", Text, nullable=False),
    Column("source_cursor", BigInteger),
    Column("did", Text, nullable=False),
    Column("kind", Text, nullable=False),  # commit | identity | account
    Column("operation", Text),  # create | update | delete
    Column("collection", Text),
    Column("rkey", Text(collation=C)),
    Column("rev", Text(collation=C)),
    Column("cid", Text),
    Column("record", JSONB),
    # Lexicon violation, if any: the event is logged (its rev still orders the record) but never projected.
    Column("invalid", Text),
    # record.createdAt, parsed at ingest so a strange but valid timestamp can never fail a batch in SQL.
    _tstz("created_at"),
    Column("handle", Text),
    Column("active", Boolean),
    Column("status", Text),
    Column("seq", BigInteger),
    _tstz("event_time"),
    _tstz("received_at", nullable=False, server_default=text("now()")),
    # blake2b-128 of (did, kind, collection, rkey, rev, operation) for commits and of the whole payload for
    # identity/account events: at-least-once delivery stores each event once.
    Column("dedup", LargeBinary, nullable=False, unique=True),
)

rejections = Table(
    "rejections",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("source", Text, nullable=False),
    Column("source_cursor", BigInteger),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("did", Text),
    Column("collection", Text),
    Column("rkey", Text),
    Column("rev", Text),
    Column("event", Text),
    _tstz("received_at", nullable=False, server_default=text("now()")),
    # The same bad input delivered twice is one rejection.
    Column("dedup", LargeBinary, nullable=False, unique=True),
    Index("rejections_reason_idx", "reason", "id"),
)

# The log's unfolded tail (migration 0017): one row while the log holds events the fold has not applied, which
# only a bulk replay leaves (indexer/capture/bulk.py) until the rebuild that ends it deletes the row.
unfolded_log = Table(
    "unfolded_log",
    metadata,
    Column("one", Boolean, primary_key=True, server_default=text("true")),
    Column("after_id", BigInteger, nullable=False),
    _tstz("since", nullable=False, server_default=text("now()")),
    CheckConstraint("one"),
)

cursors = Table(
    "cursors",
    metadata,
    Column("source", Text, primary_key=True),
    Column("cursor", BigInteger, nullable=False),
    _tstz("event_time"),
    _tstz("updated_at", nullable=False, server_default=text("now()")),
)

# Live connection state of each host the indexer follows (migration 0006): one row per (source, host), written by
# the indexer on every connection transition and touched every few seconds (`updated_at`), read by
# `/xrpc/_health`, `/status` and `plyr-appview status`. Not derived from the log; see indexer/source_status.py.
source_status = Table(
    "source_status",
    metadata,
    # The cursor's source name: `jetstream` (every v1 host), `jetstream-v2:<host>`, `firehose:<host>`.
    Column("source", Text, primary_key=True),
    Column("host", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # jetstream | jetstream-v2 | firehose
    Column("url", Text, nullable=False),
    # The host the source is using or trying now (the others of a failover list wait their turn).
    Column("active", Boolean, nullable=False, server_default=text("false")),
    Column("connected", Boolean, nullable=False, server_default=text("false")),
    # When the current state (connected or not) began.
    _tstz("since", nullable=False, server_default=text("now()")),
    _tstz("last_connected_at"),
    Column("last_error", Text),
    # Consecutive failed connection attempts since the last successful one.
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    _tstz("updated_at", nullable=False, server_default=text("now()")),
)

records = Table(
    "records",
    metadata,
    Column("did", Text, primary_key=True),
    Column("collection", Text, primary_key=True),
    Column("rkey", Text(collation=C), primary_key=True),
    Column("rev", Text(collation=C), nullable=False),
    Column("op", SmallInteger, nullable=False),  # 0 create, 1 update, 2 delete (a tombstone, kept forever)
    Column("event_id", BigInteger, nullable=False),
)

actors = Table(
    "actors",
    metadata,
    Column("did", Text, primary_key=True),
    Column("handle", Text),
    _tstz("handle_time"),
    Column("handle_seq", BigInteger),
    Column("handle_event_id", BigInteger),
    Column("status", Text, nullable=False, server_default="active"),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    _tstz("status_time"),
    Column("status_seq", BigInteger),
    Column("status_event_id", BigInteger),
    # An operator's takedown of the whole account (fold state from `takedowns`): its records leave the
    # projections like a deleted account's, and come back on undo.
    Column("taken_down", Boolean, nullable=False, server_default=text("false")),
    Index("actors_handle_idx", "handle"),
)

# Operator takedowns (migration 0007), folded from the log's `takedown` events (indexer/moderation/takedowns.py):
# per subject the latest event, applied or undone. A subject is an account (collection and rkey ''), a record
# (did, collection, rkey; it need not be indexed yet) or an uploaded audio object (did '', collection 'blob',
# rkey its sha256). Fold state like `records`: `rebuild` refolds it from the log.
takedowns = Table(
    "takedowns",
    metadata,
    Column("did", Text, primary_key=True),
    Column("collection", Text, primary_key=True),
    Column("rkey", Text(collation=C), primary_key=True),
    Column("applied", Boolean, nullable=False),
    Column("reason", Text),
    Column("event_id", BigInteger, nullable=False),
    _tstz("updated_at", nullable=False),
)

tracks = Table(
    "tracks",
    metadata,
    Column("did", Text, primary_key=True),
    Column("rkey", Text(collation=C), primary_key=True),
    Column("uri", Text, nullable=False, unique=True),
    Column("cid", Text, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    # Copy of actors.active: reads and counts filter on it without a join.
    Column("author_active", Boolean, nullable=False, server_default=text("true")),
    Column("title", Text, nullable=False),
    Column("artist", Text, nullable=False),
    Column("album", Text),
    Column("duration", BigInteger),
    Column("file_type", Text, nullable=False),
    Column("audio_url", Text),
    Column("audio_blob_cid", Text),
    Column("audio_blob_mime", Text),
    Column("image_url", Text),
    Column("description", Text),
    _tstz("created_at"),
    _tstz("indexed_at", nullable=False),
    # min(createdAt, indexedAt): a backdated or future-dated record cannot jump the feed.
    _tstz("sort_at", nullable=False),
    Column("like_count", Integer, nullable=False, server_default="0"),
    Column("comment_count", Integer, nullable=False, server_default="0"),
    # Plays (teal.fm) of active authors that name this track (migration 0012).
    Column("play_count", Integer, nullable=False, server_default="0"),
    Index("tracks_sort_idx", "sort_at", "cid"),
    Index("tracks_did_sort_idx", "did", "sort_at", "cid"),
)

# Who a track features (migration 0013): one row per distinct `features[].did` of a projected track, written by
# the track projection (indexer/fold/collections/track.py) with the track's sort position, so getActorTracks'
# `featured` walk is a keyset range scan of (feature_did, sort_at, cid). Whether the track is shown is read from
# `tracks` (its author's status), so these rows never flip.
track_features = Table(
    "track_features",
    metadata,
    Column("did", Text, primary_key=True),
    Column("rkey", Text(collation=C), primary_key=True),
    Column("feature_did", Text, primary_key=True),
    Column("cid", Text, nullable=False),
    _tstz("sort_at", nullable=False),
    Index("track_features_feature_sort_idx", "feature_did", "sort_at", "cid"),
)

# searchTracks, exact and prefix matches (migration 0004): covering, so a common prefix is an index-only scan.
for _column in ("title", "artist"):
    Index(
        f"tracks_{_column}_lower_idx",
        func.lower(tracks.c[_column]).label(f"lower_{_column}"),
        postgresql_ops={f"lower_{_column}": "text_pattern_ops"},
        postgresql_include=["title", "artist", "sort_at", "cid", "uri"],
        postgresql_where=tracks.c.author_active,
    )

likes = Table(
    "likes",
    metadata,
    Column("did", Text, primary_key=True),
    Column("rkey", Text(collation=C), primary_key=True),
    Column("uri", Text, nullable=False),
    Column("cid", Text, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("author_active", Boolean, nullable=False, server_default=text("true")),
    Column("subject_uri", Text, nullable=False),
    Column("subject_cid", Text, nullable=False),
    _tstz("created_at"),
    _tstz("indexed_at", nullable=False),
    _tstz("sort_at", nullable=False),
    # Read paths of appview/xrpc (migration 0002); the first also serves the fold's count lookups by subject.
    Index("likes_subject_sort_idx", "subject_uri", "sort_at", "cid"),
    Index("likes_did_sort_idx", "did", "sort_at", "cid"),
    Index("likes_did_subject_idx", "did", "subject_uri"),
    # getActivity's walk of new likes (migration 0013).
    Index("likes_sort_idx", "sort_at", "cid"),
)

comments = Table(
    "comments",
    metadata,
    Column("did", Text, primary_key=True),
    Column("rkey", Text(collation=C), primary_key=True),
    Column("uri", Text, nullable=False),
    Column("cid", Text, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("author_active", Boolean, nullable=False, server_default=text("true")),
    Column("subject_uri", Text, nullable=False),
    Column("subject_cid", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("timestamp_ms", BigInteger),
    _tstz("created_at"),
    _tstz("indexed_at", nullable=False),
    _tstz("sort_at", nullable=False),
    Index("comments_subject_idx", "subject_uri", "timestamp_ms"),
    # getActivity's walk of new comments (migration 0013).
    Index("comments_sort_idx", "sort_at", "cid"),
)

lists = Table(
    "lists",
    metadata,
    Column("did", Text, primary_key=True),
    Column("rkey", Text(collation=C), primary_key=True),
    Column("uri", Text, nullable=False),
    Column("cid", Text, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("author_active", Boolean, nullable=False, server_default=text("true")),
    Column("name", Text),
    Column("list_type", Text),
    Column("item_count", Integer, nullable=False),
    _tstz("created_at"),
    _tstz("indexed_at", nullable=False),
    _tstz("sort_at", nullable=False),
    Index("lists_did_sort_idx", "did", "sort_at", "cid"),
    # getActivity's walk of new lists (migration 0013).
    Index("lists_sort_idx", "sort_at", "cid"),
)

list_items = Table(
    "list_items",
    metadata,
    Column("did", Text, primary_key=True),
    Column("rkey", Text(collation=C), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("subject_uri", Text, nullable=False),
    Column("subject_cid", Text, nullable=False),
    Index("list_items_subject_idx", "subject_uri"),
)

profiles = Table(
    "profiles",
    metadata,
    Column("did", Text, primary_key=True),
    Column("cid", Text, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("author_active", Boolean, nullable=False, server_default=text("true")),
    Column("bio", Text),
    Column("avatar", Text),
    _tstz("created_at"),
    _tstz("indexed_at", nullable=False),
    # The record's displayName as actor views show it (migration 0016: indexer/fold/collections/profile.py).
    Column("display_name", Text),
)

# Actors' Bluesky identity (migration 0014): the display name and avatar blob of the `app.bsky.actor.profile`
# of DIDs with records of our own namespace (indexer/fold/collections/bsky_profile.py says which enter the log).
bsky_profiles = Table(
    "bsky_profiles",
    metadata,
    Column("did", Text, primary_key=True),
    Column("rkey", Text(collation=C), nullable=False),
    Column("cid", Text, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("author_active", Boolean, nullable=False, server_default=text("true")),
    Column("display_name", Text),
    Column("avatar_cid", Text),
    Column("avatar_mime", Text),
    _tstz("indexed_at", nullable=False),
)

# Albums and search beyond tracks (migration 0011; trigram indexes only where pg_trgm exists, not declared).
Index(
    "tracks_did_album_idx",
    tracks.c.did,
    tracks.c.album,
    postgresql_where=tracks.c.album.isnot(None) & tracks.c.author_active,
)
Index("lists_did_album_idx", lists.c.did, lists.c.name, postgresql_where=lists.c.list_type == "album")

# teal.fm plays (migration 0012; indexer/fold/collections/play.py), of both collections, keyed by collection
# too; `track_uri` is the fm.plyr.track the play's origin names, NULL when it names none (an unlinkable play).
plays = Table(
    "plays",
    metadata,
    Column("did", Text, primary_key=True),
    Column("collection", Text, primary_key=True),
    Column("rkey", Text(collation=C), primary_key=True),
    Column("uri", Text, nullable=False),
    Column("cid", Text, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("author_active", Boolean, nullable=False, server_default=text("true")),
    Column("track_uri", Text),
    # The record's playedTime, when readable.
    _tstz("played_at"),
    _tstz("indexed_at", nullable=False),
    _tstz("sort_at", nullable=False),
    # A track's plays (recounts); the unlinkable ones (getStats).
    Index("plays_track_sort_idx", "track_uri", "sort_at", postgresql_where=text("track_uri IS NOT NULL")),
    Index("plays_unlinked_idx", "author_active", postgresql_where=text("track_uri IS NULL")),
    # Plays made in a window (getTopTracks by plays since a time).
    Index("plays_sort_idx", "sort_at", postgresql_where=text("track_uri IS NOT NULL")),
)

# What an actor is playing now (migration 0012; indexer/fold/collections/status.py): one row per actor and
# teal.fm status collection, shown until `expires_at`.
actor_status = Table(
    "actor_status",
    metadata,
    Column("did", Text, primary_key=True),
    Column("collection", Text, primary_key=True),
    Column("rkey", Text(collation=C), nullable=False),
    Column("uri", Text, nullable=False),
    Column("cid", Text, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("author_active", Boolean, nullable=False, server_default=text("true")),
    Column("track_uri", Text),
    _tstz("started_at", nullable=False),
    _tstz("expires_at", nullable=False),
    _tstz("indexed_at", nullable=False),
)

PROJECTIONS = (
    "tracks", "track_features", "likes", "comments", "lists", "list_items", "profiles", "bsky_profiles", "plays",
    "actor_status",
)  # fmt: skip
FOLD_STATE = ("records", "actors", "takedowns")

# Uploaded audio (migration 0005). Not a projection: uploads are not events, and `rebuild` leaves them alone.
# One row per stored object (key `audio/<sha256>`); `uploaded_at` is the latest upload of those bytes, so a
# cleanup can tell an object about to be referenced by a record (an upload precedes its record) from an orphan.
audio_objects = Table(
    "audio_objects",
    metadata,
    Column("sha256", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mime_type", Text, nullable=False),
    Column("file_type", Text, nullable=False),
    Column("duration", Integer, nullable=False),
    Column("uploaded_by", Text, nullable=False),
    _tstz("created_at", nullable=False, server_default=text("now()")),
    _tstz("uploaded_at", nullable=False, server_default=text("now()")),
)

# Tracks whose audioUrl is on our own origin but whose object was not there when the record was indexed.
audio_flags = Table(
    "audio_flags",
    metadata,
    Column("did", Text, primary_key=True),
    Column("rkey", Text(collation=C), primary_key=True),
    Column("sha256", Text, primary_key=True),
    Column("reason", Text, nullable=False),
    _tstz("first_seen", nullable=False, server_default=text("now()")),
    Index("audio_flags_sha256_idx", "sha256"),
)

# Reference counts of stored audio: the digest in a track's audioUrl path `/audio-files/<sha256>`, whatever the
# host (a foreign host using the same path only makes us keep an object longer). Same expression as
# indexer/audio/refs.py and migration 0005.
Index(
    "tracks_audio_sha256_idx",
    # Spelled as Postgres prints it back, so migrations and this declaration compare equal.
    text("""lower(substr(audio_url, strpos(audio_url, '/audio-files/'::text) + 13, 64))"""),
    _table=tracks,
    postgresql_where=tracks.c.audio_url.like("%/audio-files/%"),
)

# Labels of the configured labelers (indexer/labels): per (src, uri, val) the newest one signed, negations
# included. Not part of the log: a labeler's stream is its own source of truth, followed by its own cursor.
labels = Table(
    "labels",
    metadata,
    Column("src", Text, primary_key=True),
    Column("uri", Text, primary_key=True),
    Column("val", Text, primary_key=True),
    Column("cid", Text),
    Column("neg", Boolean, nullable=False, server_default=text("false")),
    # As signed (the text), and parsed (to order labels and to expire them).
    Column("cts", Text, nullable=False),
    _tstz("cts_at", nullable=False),
    Column("exp", Text),
    _tstz("exp_at"),
    Column("sig", LargeBinary, nullable=False),
    Column("seq", BigInteger, nullable=False),
    _tstz("received_at", nullable=False, server_default=text("now()")),
    Index("labels_uri_idx", "uri"),
)

# Rate-limit counters (migration 0009; appview/ratelimit.py): units a subject (`ip:<address>` or a DID) spent in
# the fixed window of `policy` starting at `window_start` (unix seconds). UNLOGGED: no WAL per request; a crash
# resets the counters, which only forgives.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("policy", Text, primary_key=True),
    Column("subject", Text, primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("hits", BigInteger, nullable=False),
    _tstz("expires_at", nullable=False),
    Index("rate_limits_expires_idx", "expires_at"),
    prefixes=["UNLOGGED"],
)

# Service-auth token ids accepted, until the token expires (migration 0009; appview/auth.py): a replay is
# refused by every replica.
service_auth_jtis = Table(
    "service_auth_jtis",
    metadata,
    Column("issuer", Text, primary_key=True),
    Column("jti", Text, primary_key=True),
    _tstz("expires_at", nullable=False),
    Index("service_auth_jtis_expires_idx", "expires_at"),
)
