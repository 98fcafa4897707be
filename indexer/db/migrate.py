"""Run Alembic migrations programmatically (on start and via `plyr-appview migrate`).

Every command checks the schema on start, and the database is nearly always at the latest revision already:
`upgrade` reads the revision the database is at (one query) and the latest one the migration files declare
(their `revision` and `down_revision` lines), and only when they differ starts Alembic, whose import alone costs
a command more time than the rest of its start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

_DECLARED = re.compile(r'^(revision|down_revision)\s*=\s*(?:"([^"]*)"|None)\s*$', re.M)


def migrations_dir() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "migrations", here.parents[1] / "_migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("migrations directory not found")


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["conninfo"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    if revision == "head" and (latest := head()) is not None and current(database_url) == latest:
        return
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


def head() -> str | None:
    """The latest revision the migration files declare: the one no other revises. None when the files do not
    say it plainly (a file without both lines, several heads): Alembic then decides."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (migrations_dir() / "versions").glob("*.py"):
        declared = {key: value for key, value in _DECLARED.findall(path.read_text())}
        if "revision" not in declared or "down_revision" not in declared:
            return None
        revisions.add(declared["revision"])
        revised.add(declared["down_revision"])
    heads = revisions - revised
    return next(iter(heads)) if len(heads) == 1 else None


def current(database_url: str) -> str | None:
    import psycopg

    with psycopg.connect(database_url) as conn:
        if conn.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])
