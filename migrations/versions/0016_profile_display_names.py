"""Profile display names kept on the profile's row

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 09:00:00.000000

`profiles.display_name` holds the profile record's `displayName` (a string, its first 640 characters, as an
actor view shows it; NULL otherwise), written by the fold with the rest of the row
(indexer/fold/collections/profile.py). Every view of an actor (track authors, featured artists, likers,
commenters, search) read it from the record in the log, a lookup and a JSON parse per actor shown; the column
makes it a plain read of a row the view already joins. Filled here from each profile's own log event, which is
what the fold and `rebuild` write, so no rebuild is needed. Where pg_trgm exists, the column gets the trigram
index searchActors' name matches use (as handles have since migration 0011).
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


_TRIGRAM = """
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
    EXECUTE 'CREATE INDEX IF NOT EXISTS profiles_display_name_trgm_idx'
      ' ON profiles USING gin (lower(display_name) gin_trgm_ops)';
  END IF;
END
$$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE profiles ADD COLUMN display_name text")
    op.execute(
        """
        UPDATE profiles p SET display_name = left(e.record->>'displayName', 640)
        FROM events e
        WHERE e.id = p.event_id AND jsonb_typeof(e.record->'displayName') = 'string'
        """
    )
    op.execute(_TRIGRAM)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS profiles_display_name_trgm_idx")
    op.execute("ALTER TABLE profiles DROP COLUMN display_name")
