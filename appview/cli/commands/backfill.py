"""`plyr-appview backfill` (whole repos found by relay, PDS or DID) and `plyr-appview resync` (the repos marked
in `repo_sync`): fetch repos with getRepo, check them, and fold their records at the commit's rev."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import httpx
import psycopg

from appview.cli.command import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Command, CommandError, positive_int
from appview.cli.runtime import database, print_json, progress_bar, run
from appview.cli.stack import sync_stack
from indexer.atproto.syntax import is_did
from indexer.metrics import Metrics
from indexer.settings import Settings
from indexer.sync import marks
from indexer.sync.backfill import BackfillStats, RepoFailure, repos_by_collection, repos_of_pds

log = logging.getLogger("plyr_appview")


def _fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=positive_int, default=8, help="repos fetched at once (default 8)")
    parser.add_argument(
        "--per-host", type=positive_int, default=2, help="repos fetched at once from one PDS (default 2)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it is drawn only on a terminal)")


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
            try:
                async for did in listing:
                    dids.append(did)
                    chunk.append(did)
                    if len(chunk) >= 1000:
                        await marks.discover(conn, chunk)
                        chunk = []
            except (httpx.HTTPError, RepoFailure, ValueError) as exc:
                # What was listed before the failure stays marked; a rerun lists again and fetches the rest.
                await marks.discover(conn, chunk)
                named = f"--relay {args.relay}" if args.relay else f"--pds {args.pds}"
                raise CommandError(
                    f"cannot list the repos of {named} ({_why(exc)}); check the URL and the network"
                ) from None
            await marks.discover(conn, chunk)
    log.info("repos found", extra={"repos": len(dids)})
    return dids


def _why(exc: Exception) -> str:
    if isinstance(exc, RepoFailure):
        return f"{exc.reason}: {exc.detail[:200]}"
    text = str(exc).strip() or type(exc).__name__
    return text[:1].lower() + text[1:300]


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
    bad = [did for did in getattr(args, "did", None) or [] if not is_did(did)]
    if bad:
        raise CommandError(f"--did {bad[0]!r} is not a DID (did:plc:... or did:web:...)", status=EXIT_USAGE)
    with database(settings) as url:
        result = run(lambda: fetch(settings, url, args))
    print_json(result)
    if result["failed"]:
        # The summary says which; `plyr-appview resync` retries them (they stay marked in repo_sync).
        print(
            f"error: {result['failed']} repo(s) failed to fetch; see the log, then run `plyr-appview resync`",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


BACKFILL = Command(_backfill_arguments, _run)
RESYNC = Command(_fetch_arguments, _run)
