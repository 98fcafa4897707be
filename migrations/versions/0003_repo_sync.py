"""repo_sync: repos marked for a full fetch (firehose gaps, #sync, backfill, reconciliation)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repo_sync",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_rev", sa.Text(collation="C"), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("did"),
    )
    op.create_index(
        "repo_sync_pending_idx",
        "repo_sync",
        ["marked_at"],
        postgresql_where=sa.text("synced_at IS NULL OR synced_at < marked_at"),
    )


def downgrade() -> None:
    op.drop_index("repo_sync_pending_idx", table_name="repo_sync")
    op.drop_table("repo_sync")
