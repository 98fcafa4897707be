"""Change notifications: a statement trigger on every table the API reads

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 09:00:00.000000

Each committed change to one of these tables notifies the channel `plyr_index_changed` (indexer/db/notify.py),
which the API's page cache listens to (appview/page_cache.py). Statement-level, with an empty payload: a
transaction sends one notification however many statements and rows it changes.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# As of this revision (indexer/db/notify.py holds the current list).
TABLES = (
    "actors",
    "takedowns",
    "tracks",
    "track_features",
    "likes",
    "comments",
    "lists",
    "list_items",
    "profiles",
    "bsky_profiles",
    "plays",
    "actor_status",
    "labels",
    "audio_objects",
    "audio_flags",
)


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION plyr_index_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('plyr_index_changed', '');
            RETURN NULL;
        END
        $$
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION plyr_index_changed()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER {table}_changed ON {table}")
    op.execute("DROP FUNCTION plyr_index_changed()")
