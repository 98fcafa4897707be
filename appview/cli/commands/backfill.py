"""`plyr-appview backfill` (whole repos found by relay, PDS or DID) and `plyr-appview resync` (the repos marked
in `repo_sync`): fetch repos with getRepo, check them, and fold their records at the commit's rev."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import httpx
import psycopg

from appview.cli.command import EXIT_INTERRUPTED, EXIT_OK, Command
from appview.cli.runtime import Interrupted, database, print_json, progress_bar, run, sync_stack
from indexer.metrics import Metrics
from indexer.settings import Settings
from indexer.sync import marks
from indexer.sync.backfill import BackfillStats, repos_by_collection, repos_of_pds

log = logging.getLogger("plyr_appview")


def _fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=8, help="repos fetched at once (default 8)")
    parser.add_argument("--per-host", type=int, default=2, help="repos fetched at once from one PDS (default 2)")
    parser.add_argument("--no-progress", action="store_true")


def _backfill_arguments(parser: argparse.ArgumentParser) -> None:
    found = parser.add_mutually_exclusive_group(required=True)
    found.add_argument("--relay", help="relay URL: repos from listReposByCollection")
    found.add_argument("--pds", help="PDS URL: every repo it hosts (listRepos)")
    found.add_argument("--did", action="append", help="a repo's DID (repeatable)")
    _fetch_arguments(parser)


async def _mark(url: str, args: argparse.Namespace, client: httpx.AsyncClient) -> list[str]:
    """Mark the repos to fetch in `repo_sync`; the DIDs marked."""
    dids: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if args.did:
            dids = list(dict.fromkeys(args.did))
            for did in dids:
                await marks.mark(conn, did, "backfill")
        else:
            listing = repos_by_collection(client, args.relay) if args.relay else repos_of_pds(client, args.pds)
            chunk: list[str] = []
            async for did in listing:
                dids.append(did)
                chunk.append(did)
                if len(chunk) >= 1000:
                    await marks.discover(conn, chunk)
                    chunk = []
            await marks.discover(conn, chunk)
    log.info("repos found", extra={"repos": len(dids)})
    return dids


async def fetch(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    stack = sync_stack(settings, url, Metrics(), concurrency=args.concurrency, per_host=args.per_host)
    async with stack as sync:
        dids = await _mark(url, args, sync.client) if args.command == "backfill" else []
        bar = progress_bar(desc=args.command, unit="repo", disable=args.no_progress)

        def on_start(total: int) -> None:
            bar.total = total
            bar.refresh()

        def on_repo(stats: BackfillStats) -> None:
            bar.set_postfix(records=stats.records, deletes=stats.deletes, failed=stats.failed, refresh=False)
            bar.update(1)

        stats = await sync.backfiller.run_pending(on_start=on_start, on_repo=on_repo)
        bar.close()
    result: dict[str, Any] = {"listed": len(dids), **stats.as_dict()}
    log.info(f"{args.command} done", extra=result)
    return result


def _run(args: argparse.Namespace, settings: Settings) -> int:
    with database(settings) as url:
        try:
            result = run(lambda: fetch(settings, url, args))
        except Interrupted:
            return EXIT_INTERRUPTED
    print_json(result)
    return EXIT_OK


BACKFILL = Command(
    "backfill", "fetch whole repos (getRepo) and fold their fm.plyr.* records", _backfill_arguments, _run
)
RESYNC = Command(
    "resync", "fetch the repos marked for resync (rev gaps, #sync, OutdatedCursor, ...)", _fetch_arguments, _run
)
