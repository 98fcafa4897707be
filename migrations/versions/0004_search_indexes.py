"""search indexes: exact and prefix matches of searchTracks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:00:00.000000

searchTracks fetches its ranks best first, each with its own LIMIT. Exact and prefix matches (ranks 0 and 1)
are one range scan of each of these btrees: `text_pattern_ops` makes `LIKE 'q%'` an index range whatever the
database collation, and still serves `=`. Word-prefix, substring and fuzzy matches use the trigram indexes
of migration 0002 where pg_trgm exists.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in ("title", "artist"):
        # Covering and partial: a common word is the prefix of thousands of titles, and the newest 50 of them
        # are found by an index-only scan of all of them (no heap visit per match). The planner takes an
        # index-only scan only when every column the query names is in the index: both columns are, since
        # each branch of the search ranks on both and leaves to the other the tracks the other finds.
        op.execute(
            f"CREATE INDEX tracks_{column}_lower_idx ON tracks (lower({column}) text_pattern_ops)"
            " INCLUDE (title, artist, sort_at, cid, uri) WHERE author_active"
        )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS tracks_artist_lower_idx")
    op.execute("DROP INDEX IF EXISTS tracks_title_lower_idx")
