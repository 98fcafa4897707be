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


def test_the_declared_head_is_alembics_and_an_upgrade_behind_it_runs(db_url: str) -> None:
    from alembic.script import ScriptDirectory

    assert migrate.head() == ScriptDirectory.from_config(migrate.alembic_config(db_url)).get_current_head()
    # One revision behind: `upgrade` must not take the fast path.
    migrate.downgrade(db_url, "-1")
    assert migrate.current(db_url) != migrate.head()
    migrate.upgrade(db_url)
    assert migrate.current(db_url) == migrate.head()
    assert _diff(db_url) == []


async def test_profile_display_names_are_filled_from_the_log(db_url: str, validator: Any) -> None:
    """Migration 0016 fills `profiles.display_name` from each profile's log event with what the fold writes: a
    string's first 640 characters, NULL for anything else."""
    from bench.synth import BASE_US, commit, make_did, profile_record
    from tests.helpers import PROFILE, ingest, rows

    names: list[Any] = ["Luna Moth", "x" * 700, 42, None]
    dids = [make_did(900 + i) for i in range(len(names))]
    records = []
    for did, name in zip(dids, names, strict=True):
        record = profile_record("bio", micros=BASE_US)
        if name is not None:
            record["displayName"] = name
        records.append(commit(did, PROFILE, "self", "3kaaaaaaaaa22", record))
    await ingest(db_url, validator, records)
    query = "SELECT did, display_name FROM profiles ORDER BY did"
    folded = await rows(db_url, query)
    assert dict(folded) == dict(zip(dids, ["Luna Moth", "x" * 640, None, None], strict=True))
    migrate.downgrade(db_url, "0015")
    migrate.upgrade(db_url)
    assert await rows(db_url, query) == folded
