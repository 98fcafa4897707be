"""`plyr-appview reconcile`: compare known repos with their PDS (getLatestCommit, then listRecords) and resync
those behind."""

from __future__ import annotations

import argparse
from typing import Any

from appview.cli.command import EXIT_OK, Command
from appview.cli.runtime import database, print_json, run
from appview.cli.stack import sync_stack
from indexer.metrics import Metrics
from indexer.settings import Settings


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--did", action="append", help="only this repo (repeatable)")


async def reconcile(settings: Settings, url: str, dids: list[str] | None) -> dict[str, Any]:
    async with sync_stack(settings, url, Metrics()) as sync:
        pending = await sync.reconciler.resync_pending()
        stats = await sync.reconciler.run_once(dids)
    return {"marked_resynced": pending.as_dict(), **stats.as_dict()}


def _run(args: argparse.Namespace, settings: Settings) -> int:
    with database(settings) as url:
        result = run(lambda: reconcile(settings, url, args.did))
    print_json(result)
    return EXIT_OK


COMMAND = Command(_arguments, _run)
