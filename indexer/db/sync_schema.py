"""Tables of the repo-sync machinery (firehose gap detection, backfill, reconciliation), on the same
`metadata` as the index so Alembic sees one schema.

`repo_sync` has one row per repo that was ever marked for a full fetch (`getRepo`). A repo is pending while
`synced_at` is NULL or older than `marked_at`: marking again after a sync makes it pending again, and a
resync that was killed leaves its row pending, so `backfill` / `resync` simply pick up where they stopped.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, Table, Text, text

from indexer.db.schema import C, metadata

repo_sync = Table(
    "repo_sync",
    metadata,
    Column("did", Text, primary_key=True),
    # Why it was (last) marked: backfill, sync, outdated_cursor, rev_gap, too_big, behind, identity_unavailable.
    Column("reason", Text, nullable=False),
    Column("marked_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("synced_at", DateTime(timezone=True)),
    # Rev of the last commit fetched (getRepo) or confirmed (getLatestCommit) for this repo.
    Column("last_rev", Text(collation=C)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Index("repo_sync_pending_idx", "marked_at", postgresql_where=text("synced_at IS NULL OR synced_at < marked_at")),
)
