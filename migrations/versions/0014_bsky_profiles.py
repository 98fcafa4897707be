"""Bluesky identity: the bsky_profiles projection

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 09:00:00.000000

`bsky_profiles` holds, per actor the index knows (one with records of our own namespace), the display name and
avatar of their `app.bsky.actor.profile` record (indexer/fold/collections/bsky_profile.py). It starts empty:
the log holds no Bluesky profiles before this version, so there is nothing to fill and no rebuild is needed.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE bsky_profiles (
            did text PRIMARY KEY,
            rkey text COLLATE "C" NOT NULL,
            cid text NOT NULL,
            event_id bigint NOT NULL,
            author_active boolean NOT NULL DEFAULT true,
            display_name text,
            avatar_cid text,
            avatar_mime text,
            indexed_at timestamptz NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE bsky_profiles")
