"""What commands share: the database they run against, the event loop they run in, and how they report (JSON on
stdout, progress on stderr). The pieces of the indexer the ingest commands wire are in appview/cli/stack.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

from appview.cli.command import CommandError, Interrupted, first_line
from indexer.settings import Settings

log = logging.getLogger("plyr_appview")

T = TypeVar("T")


@contextlib.contextmanager
def database(settings: Settings, *, migrate: bool = True) -> Iterator[str]:
    """The Postgres URL to run against: DATABASE_URL, else the embedded server under the data directory
    (started here, stopped on exit if this process started it). Migrated unless `migrate` is False, in which
    case a database without our schema is refused. Every way this can fail is a CommandError naming the fix."""
    from indexer.db.embedded import database_url

    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(database_url(settings.database_url, settings.data_dir))
        except OSError as exc:
            raise CommandError(
                f"cannot use the data directory {settings.data_dir} ({_lower_first(exc.strerror or str(exc))}); set"
                " PLYR_APPVIEW_DATA_DIR or --data-dir to a writable directory, or DATABASE_URL to a server"
            ) from None
        _check_database(url, migrate=migrate, explicit=settings.database_url is not None)
        yield url


def _check_database(url: str, *, migrate: bool, explicit: bool) -> None:
    import psycopg

    from indexer.db import migrate as migrations

    where = _describe(url)
    fix = "check DATABASE_URL" if explicit else "check the embedded server's log under the data directory"
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
        if migrate:
            migrations.upgrade(url)
        elif migrations.current(url) is None:
            raise CommandError(f"the database at {where} has no plyr-appview schema; run `plyr-appview migrate`")
    except psycopg.OperationalError as exc:
        raise CommandError(f"cannot connect to Postgres at {where} ({_reason(exc)}); {fix}") from None


def _describe(url: str) -> str:
    """host:port/dbname of a Postgres URL or conninfo string, without credentials."""
    import psycopg

    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the configured address"
    host = str(params.get("host") or "localhost")
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}".rstrip("/")


def _reason(exc: Exception) -> str:
    """The cause libpq gives, without its multi-line hints: 'connection refused', 'password authentication
    failed for user "x"', 'database "y" does not exist'."""
    text = first_line(exc)
    reason = text.rsplit("failed: ", 1)[-1].strip()
    for severity in ("FATAL:", "ERROR:"):
        reason = reason.removeprefix(severity).strip()
    return _lower_first(reason) if reason else text


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def run(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; SIGINT/SIGTERM cancel it so context managers (the embedded server) clean up, and
    `Interrupted` is raised."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        stopping = False

        def stop() -> None:
            # The first signal starts a clean shutdown; another one while it runs must not cut it short (a
            # second cancel would interrupt the cleanup it is waiting for), so it is only acknowledged.
            nonlocal stopping
            if stopping:
                log.info("already stopping")
                return
            stopping = True
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop)
        return await coro_factory()

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        log.info("stopped")
        raise Interrupted from None


def print_json(value: object, *, indent: int | None = None) -> None:
    """Machine-readable output: stdout, one JSON document."""
    print(json.dumps(value, indent=indent))


def progress_bar(*, desc: str, unit: str, disable: bool, total: int | None = None, initial: int = 0) -> tqdm[Any]:
    """A progress bar on stderr, drawn only for a person at a terminal: in a pipe or a log file it would be
    noise (and terminal escapes) between JSON lines."""
    return tqdm(
        total=total,
        initial=initial,
        unit=unit,
        disable=disable or not sys.stderr.isatty(),
        file=sys.stderr,
        desc=desc,
        dynamic_ncols=True,
    )
