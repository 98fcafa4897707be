"""audio_objects, audio_flags: uploaded audio and tracks pointing at audio we do not hold

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 05:00:00.000000

`tracks_audio_sha256_idx` finds the tracks referencing one stored object (`/audio-files/<sha256>` in their
audioUrl): cleanup re-checks references right before deleting an object, in one index probe. Plain string
functions, not a regular expression: the expression is computed for every such track the fold writes, and a
regex with a bounded repetition costs some 40 µs a row where strpos/substr cost under 2.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audio_objects",
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mime_type", sa.Text(), nullable=False),
        sa.Column("file_type", sa.Text(), nullable=False),
        sa.Column("duration", sa.Integer(), nullable=False),
        sa.Column("uploaded_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "audio_flags",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("rkey", sa.Text(collation="C"), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("did", "rkey", "sha256"),
    )
    op.create_index("audio_flags_sha256_idx", "audio_flags", ["sha256"])
    op.execute(
        "CREATE INDEX tracks_audio_sha256_idx ON tracks"
        " (lower(substr(audio_url, strpos(audio_url, '/audio-files/') + 13, 64)))"
        " WHERE audio_url LIKE '%/audio-files/%'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS tracks_audio_sha256_idx")
    op.drop_index("audio_flags_sha256_idx", table_name="audio_flags")
    op.drop_table("audio_flags")
    op.drop_table("audio_objects")
