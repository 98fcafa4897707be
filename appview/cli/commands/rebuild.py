"""`plyr-appview rebuild`: refold the whole event log into fresh projections, in one transaction, and print the
state hash before and after (equal unless the projections had drifted from the log)."""

from __future__ import annotations

import argparse

import psycopg

from appview.cli.command import EXIT_OK, Command, positive_int
from appview.cli.runtime import database, print_json, progress_bar, run
from indexer.fold.rebuild import rebuild
from indexer.settings import Settings
from indexer.status import state_hash


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size", type=positive_int, default=20_000, help="log events folded per step (default 20000)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it is drawn only on a terminal)")


async def _hash(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await state_hash(conn)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    bar = progress_bar(desc="rebuild", unit="ev", disable=args.no_progress)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    with database(settings) as url:
        before = run(lambda: _hash(url))
        folded = run(lambda: rebuild(url, batch_size=args.batch_size, progress=progress))
        bar.close()
        after = run(lambda: _hash(url))
    print_json({"events": folded, "state_hash_before": before, "state_hash_after": after})
    return EXIT_OK


COMMAND = Command("rebuild", "refold the whole event log into fresh projections", _arguments, _run)
