"""albums and search beyond tracks: the indexes of getActorAlbums, getAlbum, searchActors, searchLists

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 09:00:00.000000

Albums are read from the projections that already exist (a track's `album` name, `fm.plyr.list` records of
listType album), so these are indexes only and `rebuild` has nothing new to refold:

- an artist's tracks by album name (getAlbum by name, the name-only albums of getActorAlbums);
- an artist's album lists by name (which list a name joins);
- where pg_trgm exists, trigram indexes for substring and fuzzy matches of list names (searchLists), handles
  (searchActors) and track descriptions (searchTracks). Without pg_trgm those matches scan, as in 0002: every
  match of those methods is at least a substring match, so a btree would not spare the scan.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TRIGRAM = """
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
    EXECUTE 'CREATE INDEX IF NOT EXISTS lists_name_trgm_idx ON lists USING gin (lower(name) gin_trgm_ops)';
    -- Handles are stored lower-cased.
    EXECUTE 'CREATE INDEX IF NOT EXISTS actors_handle_trgm_idx ON actors USING gin (handle gin_trgm_ops)';
    EXECUTE 'CREATE INDEX IF NOT EXISTS tracks_description_trgm_idx'
      ' ON tracks USING gin (lower(description) gin_trgm_ops)';
  END IF;
END
$$
"""


def upgrade() -> None:
    op.execute("CREATE INDEX tracks_did_album_idx ON tracks (did, album) WHERE album IS NOT NULL AND author_active")
    op.execute("CREATE INDEX lists_did_album_idx ON lists (did, name) WHERE list_type = 'album'")
    op.execute(_TRIGRAM)


def downgrade() -> None:
    for name in (
        "tracks_description_trgm_idx",
        "actors_handle_trgm_idx",
        "lists_name_trgm_idx",
        "lists_did_album_idx",
        "tracks_did_album_idx",
    ):
        op.execute(f"DROP INDEX IF EXISTS {name}")
