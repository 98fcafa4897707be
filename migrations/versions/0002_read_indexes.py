"""read indexes for the XRPC API

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:30:00.000000

Each index serves one read path of appview/xrpc (named in the comment). pg_trgm is installed when the server
ships it (Debian's and the official images do) and we may create it; the search falls back to plain matching
where it is missing, so its absence is not an error.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TRIGRAM = """
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')
     AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
    BEGIN
      CREATE EXTENSION pg_trgm;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE NOTICE 'pg_trgm available but not creatable here; search runs without it';
    END;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
    -- searchTracks: substring (LIKE '%q%') and fuzzy (word similarity) on title and artist.
    EXECUTE 'CREATE INDEX IF NOT EXISTS tracks_title_trgm_idx ON tracks USING gin (lower(title) gin_trgm_ops)';
    EXECUTE 'CREATE INDEX IF NOT EXISTS tracks_artist_trgm_idx ON tracks USING gin (lower(artist) gin_trgm_ops)';
  END IF;
END
$$
"""


def upgrade() -> None:
    # getActorLikes, getActorProfile (likeCount): an actor's likes, newest first.
    op.execute("CREATE INDEX likes_did_sort_idx ON likes (did, sort_at, cid)")
    # getLikes: a track's likes, newest first.
    op.execute("CREATE INDEX likes_subject_sort_idx ON likes (subject_uri, sort_at, cid)")
    # viewer.like on every track view: the viewer's likes of the tracks on the page.
    op.execute("CREATE INDEX likes_did_subject_idx ON likes (did, subject_uri)")
    # getActorLists, getActorProfile (listCount).
    op.execute("CREATE INDEX lists_did_sort_idx ON lists (did, sort_at, cid)")
    # `actor` parameters given as a handle.
    op.execute("CREATE INDEX actors_handle_idx ON actors (handle)")
    op.execute(_TRIGRAM)


def downgrade() -> None:
    for name in (
        "tracks_artist_trgm_idx",
        "tracks_title_trgm_idx",
        "actors_handle_idx",
        "lists_did_sort_idx",
        "likes_did_subject_idx",
        "likes_subject_sort_idx",
        "likes_did_sort_idx",
    ):
        op.execute(f"DROP INDEX IF EXISTS {name}")
