"""Alembic environment. The URL comes from the caller (indexer.db.migrate) through the config object."""

from __future__ import annotations

import psycopg
from alembic import context
from sqlalchemy import create_engine, pool

import indexer.db.sync_schema  # noqa: F401  (registers its tables on `metadata`)
from indexer.db.schema import metadata

config = context.config


def run_migrations_online() -> None:
    # A libpq connection string (URL or key=value form), passed by indexer.db.migrate.
    conninfo = config.attributes["conninfo"]
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            # One migrator at a time, even with several replicas starting together.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7243001)")
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `plyr-appview migrate`")
run_migrations_online()
