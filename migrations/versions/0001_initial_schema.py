"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 02:38:23.732777
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# Lexicon integers are unbounded; the projections keep them in bigint and drop what does not fit, so no
# record can fail a batch on a cast.
_BIGINT_FN = """
CREATE OR REPLACE FUNCTION plyr_bigint(v jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(v) = 'number' AND (v #>> '{}') ~ '^-?[0-9]{1,18}$'
              THEN (v #>> '{}')::bigint END
$$
"""


def upgrade() -> None:
    op.execute(_BIGINT_FN)
    op.create_table(
        "actors",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("handle", sa.Text(), nullable=True),
        sa.Column("handle_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handle_seq", sa.BigInteger(), nullable=True),
        sa.Column("handle_event_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.Text(), server_default="active", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("status_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_seq", sa.BigInteger(), nullable=True),
        sa.Column("status_event_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("did"),
    )
    op.create_table(
        "comments",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("rkey", sa.Text(collation="C"), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("cid", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("author_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("subject_uri", sa.Text(), nullable=False),
        sa.Column("subject_cid", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sort_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("did", "rkey"),
    )
    op.create_index("comments_subject_idx", "comments", ["subject_uri", "timestamp_ms"], unique=False)
    op.create_table(
        "cursors",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_cursor", sa.BigInteger(), nullable=True),
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("operation", sa.Text(), nullable=True),
        sa.Column("collection", sa.Text(), nullable=True),
        sa.Column("rkey", sa.Text(collation="C"), nullable=True),
        sa.Column("rev", sa.Text(collation="C"), nullable=True),
        sa.Column("cid", sa.Text(), nullable=True),
        sa.Column("record", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("invalid", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handle", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("dedup", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup"),
    )
    op.create_table(
        "likes",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("rkey", sa.Text(collation="C"), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("cid", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("author_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("subject_uri", sa.Text(), nullable=False),
        sa.Column("subject_cid", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sort_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("did", "rkey"),
    )
    op.create_table(
        "list_items",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("rkey", sa.Text(collation="C"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("subject_uri", sa.Text(), nullable=False),
        sa.Column("subject_cid", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("did", "rkey", "position"),
    )
    op.create_index("list_items_subject_idx", "list_items", ["subject_uri"], unique=False)
    op.create_table(
        "lists",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("rkey", sa.Text(collation="C"), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("cid", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("author_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("list_type", sa.Text(), nullable=True),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sort_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("did", "rkey"),
    )
    op.create_table(
        "profiles",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("cid", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("author_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("bio", sa.Text(), nullable=True),
        sa.Column("avatar", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("did"),
    )
    op.create_table(
        "records",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("rkey", sa.Text(collation="C"), nullable=False),
        sa.Column("rev", sa.Text(collation="C"), nullable=False),
        sa.Column("op", sa.SmallInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("did", "collection", "rkey"),
    )
    op.create_table(
        "rejections",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_cursor", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("did", sa.Text(), nullable=True),
        sa.Column("collection", sa.Text(), nullable=True),
        sa.Column("rkey", sa.Text(), nullable=True),
        sa.Column("rev", sa.Text(), nullable=True),
        sa.Column("event", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("dedup", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup"),
    )
    op.create_index("rejections_reason_idx", "rejections", ["reason", "id"], unique=False)
    op.create_table(
        "tracks",
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("rkey", sa.Text(collation="C"), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("cid", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("author_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("artist", sa.Text(), nullable=False),
        sa.Column("album", sa.Text(), nullable=True),
        sa.Column("duration", sa.BigInteger(), nullable=True),
        sa.Column("file_type", sa.Text(), nullable=False),
        sa.Column("audio_url", sa.Text(), nullable=True),
        sa.Column("audio_blob_cid", sa.Text(), nullable=True),
        sa.Column("audio_blob_mime", sa.Text(), nullable=True),
        sa.Column("image_url", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sort_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("like_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("comment_count", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("did", "rkey"),
        sa.UniqueConstraint("uri"),
    )
    op.create_index("tracks_did_sort_idx", "tracks", ["did", "sort_at", "cid"], unique=False)
    op.create_index("tracks_sort_idx", "tracks", ["sort_at", "cid"], unique=False)


    # Like and comment counts are rewritten often; free space on each page lets those updates stay HOT.
    op.execute("ALTER TABLE tracks SET (fillfactor = 85)")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS plyr_bigint(jsonb)")
    op.drop_index("tracks_sort_idx", table_name="tracks")
    op.drop_index("tracks_did_sort_idx", table_name="tracks")
    op.drop_table("tracks")
    op.drop_index("rejections_reason_idx", table_name="rejections")
    op.drop_table("rejections")
    op.drop_table("records")
    op.drop_table("profiles")
    op.drop_table("lists")
    op.drop_index("list_items_subject_idx", table_name="list_items")
    op.drop_table("list_items")
    op.drop_table("likes")
    op.drop_table("events")
    op.drop_table("cursors")
    op.drop_index("comments_subject_idx", table_name="comments")
    op.drop_table("comments")
    op.drop_table("actors")
