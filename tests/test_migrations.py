"""Migrations and the Core table definitions agree, and migrations go down and up again cleanly."""

from __future__ import annotations

from typing import Any

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

import indexer.db.sync_schema  # noqa: F401  (registers its tables on `metadata`)
from indexer.db import migrate
from indexer.db.schema import metadata


def _diff(url: str) -> list[Any]:
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    # Trigram indexes exist only where pg_trgm does; they are created by migration, not declared.
    return [d for d in diffs if not (d[0] == "remove_index" and "trgm" in d[1].name)]


def test_schema_matches_migrations(db_url: str) -> None:
    assert _diff(db_url) == []


def test_downgrade_to_base_and_up_again(db_url: str) -> None:
    head = migrate.current(db_url)
    assert head is not None
    migrate.downgrade(db_url, "base")
    assert migrate.current(db_url) is None
    migrate.upgrade(db_url)
    assert migrate.current(db_url) == head
    assert _diff(db_url) == []
