"""labels: the current labels of the configured labelers

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 09:00:00.000000

Labels come from labelers (`com.atproto.label.subscribeLabels`), not from repositories, so they are not events of
the log: `labels` holds, per (src, uri, val), the newest label a labeler signed (a negation included, so an
older label delivered again cannot come back), written by indexer/labels in the same transaction as the
labeler's cursor. `cts` and `exp` are kept as the labeler wrote them (the signature covers those exact strings)
next to their parsed times.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("src", sa.Text(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("val", sa.Text(), nullable=False),
        sa.Column("cid", sa.Text(), nullable=True),
        sa.Column("neg", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("cts", sa.Text(), nullable=False),
        sa.Column("cts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exp", sa.Text(), nullable=True),
        sa.Column("exp_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sig", sa.LargeBinary(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("src", "uri", "val"),
    )
    op.create_index("labels_uri_idx", "labels", ["uri"])


def downgrade() -> None:
    op.drop_index("labels_uri_idx", table_name="labels")
    op.drop_table("labels")
