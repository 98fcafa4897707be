"""What commands share: the database they run against, the event loop they run in, and the pieces of the
indexer they wire together (batch writers, the sync stack). Typed, so each command reads as its wiring."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from tqdm import tqdm

from appview.cli.command import CommandError, first_line
from indexer.atproto.identity.did_docs import DidDocuments
from indexer.atproto.netguard import NetGuard, guarded_client
from indexer.fold.writer import BatchWriter
from indexer.metrics import Metrics
from indexer.settings import Settings
from indexer.sync.backfill import Backfiller, SyncMetrics
from indexer.sync.reconcile import Reconciler

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


class Interrupted(Exception):
    """SIGINT or SIGTERM ended the command before it finished."""


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


def batch_writer(
    settings: Settings, url: str, metrics: Metrics, batch_size: int | None = None, *, fold: bool = True
) -> BatchWriter:
    """The writer live sources, replays and backfills fold through (`fold=False`: a bulk replay's, which only
    appends to the log: indexer/capture/bulk.py)."""
    return BatchWriter.configured(settings, url, metrics=metrics, batch_size=batch_size, fold=fold)


@dataclass(frozen=True)
class SyncStack:
    backfiller: Backfiller
    reconciler: Reconciler
    docs: DidDocuments
    # For hosts the operator names (--relay, --pds); repos are fetched through the SSRF guard instead.
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def sync_stack(
    settings: Settings, url: str, metrics: Metrics, *, concurrency: int = 8, per_host: int = 2
) -> AsyncIterator[SyncStack]:
    """Backfill and reconcile, with a batch writer of their own.

    Repos are fetched from the PDS their DID document names, which anyone can point anywhere: those requests go
    through the SSRF guard. Hosts the operator names are not second-guessed."""
    timeout = httpx.Timeout(60.0, connect=10.0)
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client,
        guarded_client(NetGuard(allow_private=settings.allow_private_hosts), timeout=timeout) as repo_client,
        DidDocuments(settings.plc_url, client=client, allow_private_hosts=settings.allow_private_hosts) as docs,
        batch_writer(settings, url, metrics) as writer,
    ):
        sync_metrics = SyncMetrics(metrics.registry)
        backfiller = Backfiller(
            url,
            writer,
            docs,
            client=repo_client,
            verify=settings.verify_signatures,
            concurrency=concurrency,
            per_host=per_host,
            metrics=sync_metrics,
        )
        reconciler = Reconciler(url, backfiller, docs, client=repo_client, metrics=sync_metrics)
        yield SyncStack(backfiller, reconciler, docs, client)
