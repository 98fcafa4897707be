"""takedowns: operator takedowns of accounts, records and uploaded audio

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 19:00:00.000000

Takedowns are events in the log (kind `takedown`), folded into `takedowns` (per subject the latest) and, for
accounts, into `actors.taken_down`. A database upgraded from 0006 has no takedown events, so both start empty.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("actors", sa.Column("taken_down", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.create_table(
        "takedowns",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("rkey", sa.Text(collation="C"), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("did", "collection", "rkey"),
    )


def downgrade() -> None:
    op.drop_table("takedowns")
    op.drop_column("actors", "taken_down")
