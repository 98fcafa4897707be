"""plays: teal.fm plays and now-playing statuses, and a play count on tracks

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 09:00:00.000000

`plays` and `actor_status` are projections of the `fm.teal.feed.play` / `fm.teal.alpha.feed.play` and
`fm.teal.actor.status` / `fm.teal.alpha.actor.status` records (indexer/fold/collections/play.py, status.py);
`tracks.play_count` counts the plays of active authors that name the track. Sources asked only for `fm.plyr.*`
before this revision, so the log holds no such records yet: everything starts empty and fills as they arrive
(a `backfill` fetches those already published).

Two functions the projections use:
- `plyr_track_uri(origin)`: the at:// URI of the `fm.plyr.track` a play's origin names, or NULL (the accepted
  forms are documented in indexer/fold/collections/play.py);
- `plyr_timestamptz(v)`: a JSON string holding an RFC 3339 datetime with a zone as a timestamptz, else NULL
  (whatever a record holds, a projection never fails on it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_DID = r"did:[a-z]+:[A-Za-z0-9._:%-]*[A-Za-z0-9._-]"
_TID = r"[2-7a-j][2-7a-z]{12}"
# An http(s) URL whose path ends in /track/<did>/<rkey> (first: the URL's own path says what it is), else an
# at:// URI of a track anywhere in the text, not followed by more of a record key; then the same once %3A and %2F
# are decoded.
_AT_URI = rf"at://({_DID})/fm\.plyr\.track/({_TID})(?![A-Za-z0-9._:~-])"
_TRACK_PATH = rf"^https?://[^/?#\s]+(?:/[^?#\s]*)?/track/({_DID})/({_TID})/?([?#]|$)"

_TRACK_URI_FN = rf"""
CREATE OR REPLACE FUNCTION plyr_track_uri(origin text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT 'at://' || m[1] || '/fm.plyr.track/' || m[2]
  FROM (SELECT coalesce(regexp_match(o, '{_TRACK_PATH}'), regexp_match(o, '{_AT_URI}'),
                        regexp_match(d, '{_TRACK_PATH}'), regexp_match(d, '{_AT_URI}')) AS m
        FROM (SELECT origin AS o,
                     regexp_replace(regexp_replace(origin, '%3[Aa]', ':', 'g'), '%2[Ff]', '/', 'g') AS d
              WHERE length(origin) <= 2048) s) x
  WHERE m IS NOT NULL
$$
"""

_DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"

_TIMESTAMPTZ_FN = rf"""
CREATE OR REPLACE FUNCTION plyr_timestamptz(v jsonb) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
  IF v IS NULL OR jsonb_typeof(v) <> 'string' OR length(v #>> '{{}}') > 64
     OR (v #>> '{{}}') !~ '{_DATETIME}'
  THEN
    RETURN NULL;
  END IF;
  RETURN (v #>> '{{}}')::timestamptz;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(_TRACK_URI_FN)
    op.execute(_TIMESTAMPTZ_FN)
    op.add_column("tracks", sa.Column("play_count", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "plays",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("rkey", sa.Text(collation="C"), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("cid", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("author_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("track_uri", sa.Text(), nullable=True),
        sa.Column("played_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sort_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("did", "collection", "rkey"),
    )
    op.create_index(
        "plays_track_sort_idx", "plays", ["track_uri", "sort_at"], postgresql_where=sa.text("track_uri IS NOT NULL")
    )
    op.create_index("plays_unlinked_idx", "plays", ["author_active"], postgresql_where=sa.text("track_uri IS NULL"))
    op.create_index("plays_sort_idx", "plays", ["sort_at"], postgresql_where=sa.text("track_uri IS NOT NULL"))
    op.create_table(
        "actor_status",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("rkey", sa.Text(collation="C"), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("cid", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("author_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("track_uri", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("did", "collection"),
    )


def downgrade() -> None:
    op.drop_table("actor_status")
    op.drop_index("plays_sort_idx", table_name="plays")
    op.drop_index("plays_unlinked_idx", table_name="plays")
    op.drop_index("plays_track_sort_idx", table_name="plays")
    op.drop_table("plays")
    op.drop_column("tracks", "play_count")
    op.execute("DROP FUNCTION IF EXISTS plyr_timestamptz(jsonb)")
    op.execute("DROP FUNCTION IF EXISTS plyr_track_uri(text)")
